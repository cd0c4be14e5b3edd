/**
 * The shared test harness: import from here. Fixture cases and running fused models on their test
 * data (cases.ts), fusing with a mutation in between (fuse.ts, mutate.ts), TensorProto files and
 * tensors (tensor-io.ts); the numeric comparison and the tolerance table are the library's (src/numeric.ts).
 */
export * from "./cases.js";
export * from "./paths.js";
export * from "./fuse.js";
export * from "./mutate.js";
export * from "./tensor-io.js";
export { TOLERANCE, compareValues, seededRandom, toleranceOf } from "../../src/numeric.js";
export * from "./graph-edit.js";
export { buildLayerStack } from "./layer-stack.js";
export { externalWeightModel } from "./models.js";
