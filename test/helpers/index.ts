/**
 * The shared test harness: import from here.
 * - paths.ts: the root, models/ and the shared corpus; cases.ts: running a fused model on a case's test
 *   data, reading reports (skippedOf, refusals, appliedOps), op counts.
 * - fuse.ts: the one "load a case, fuse, edit, fuse" helper (mutateAndFuse, fuseLayers, fuseCase);
 *   mutate.ts: the Mutator edits; graph-edit.ts: small lookups and edits of the layer tests.
 * - layer-mutants.ts: whole-layer mutants (their shared edits and the runner, testMutants);
 *   core-near-misses.ts: near misses of the gated-delta cores (testCoreNearMisses).
 * - cli.ts: fuse-model run in-process (runCli).
 * - tensor-io.ts: TensorProto files, test-data sets, ort.Tensor conversion, relativeL2 of tensors.
 * - layer-stack.ts, models.ts: fixture models built in memory (the 48-layer stack, an external-weight model) and
 *   their parts (modelOf, float32Info, externalFloat32).
 * The numeric comparison, the tolerance table and the seeded generator are the library's (src/numeric.ts).
 */
export * from "./cases.js";
export * from "./paths.js";
export * from "./fuse.js";
export * from "./mutate.js";
export * from "./tensor-io.js";
export * from "./graph-edit.js";
export * from "./layer-mutants.js";
export * from "./core-near-misses.js";
export * from "./cli.js";
export { buildLayerStack } from "./layer-stack.js";
export * from "./models.js";
export { TOLERANCE, compareValues, seededRandom, toleranceOf } from "../../src/numeric.js";
