/**
 * Fixture cases under models/ (the project's own corpus, see models/README.md): reading reports,
 * and running fused models on the gdn runtime against the case's test_data_set_0.
 */
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { expect } from "vitest";
import { encodeMessage, onnx } from "../../src/ir/onnx.js";
import type { FuseReport } from "../../src/pipeline/index.js";
import type { SkippedCandidate } from "../../src/pattern/index.js";
import { loadRuntime } from "../../src/runtime/index.js";
import { fuseCase } from "./fuse.js";
import { MODELS } from "./paths.js";
import { readDataSet, relativeL2, toOrtTensor, type TensorFile } from "./tensor-io.js";
import { TOLERANCE, toleranceOf } from "../../src/numeric.js";

// Also reachable from here (files that import cases.js): the paths and the fusion helpers.
export { ROOT, MODELS, SHARED_CORPUS } from "./paths.js";
export { CORE_PASSES, LAYER_PASSES, fuseCase, loadCase } from "./fuse.js";
export { TOLERANCE } from "../../src/numeric.js";

/** The bound: a fused gated-delta layer is at most this many nodes (test/layer-fusion.test.ts counts them). */
export const MAX_LAYER_NODES = 12;

/**
 * What a fused whole-layer case holds besides its four gdn ops. Prefill: MatMul, Split, Transpose, conv,
 * Transpose, Reshape, Split (q,k,v), Reshape (z), gating, core, norm, Einsum. Decode (T = 1, the conv keeps its
 * state's channel order): a Gather reorders the channels after the conv, the transpose after it is a reshape
 * (T = 1) and folds into the head Reshape.
 */
export const FUSED_LAYER_LAYOUT = {
  prefill: { MatMul: 1, Split: 2, Transpose: 2, Reshape: 2, Einsum: 1 },
  decode: { MatMul: 1, Split: 2, Transpose: 1, Gather: 1, Reshape: 2, Einsum: 1 },
};

/** The op histogram (see histogram) of a fused whole-layer case: its layout nodes and one of each gdn op. */
export function fusedLayerHistogram(core: string, layout: Record<string, number>): Record<string, number> {
  return { ...layout, [`gdn.${core}`]: 1, "gdn.GatedDeltaGating": 1, "gdn.CausalConv1d": 1, "gdn.GatedRMSNorm": 1 };
}

/** Why the gdn runtime cannot load here (its first line), or undefined when it can. */
export function runtimeLoadError(): string | undefined {
  try {
    loadRuntime();
    return undefined;
  } catch (e) {
    return (e as Error).message.split("\n")[0];
  }
}

/** Whether fixture case `name` has its model in models/ (tests of an absent case are skipped). */
export function hasCase(name: string): boolean {
  return existsSync(join(MODELS, name, "model.onnx"));
}

/** Cases with test data (bench_* have none). */
export function fixtureCases(): string[] {
  return readdirSync(MODELS).filter((c) => existsSync(join(MODELS, c, "test_data_set_0")));
}

/** Fused op counts of a report, e.g. { "gdn.ChunkGatedDeltaRule": 1 }. */
export function opCounts(model: onnx.IModelProto): Record<string, number> {
  const c: Record<string, number> = {};
  for (const n of model.graph?.node ?? []) {
    const k = `${n.domain || "ai.onnx"}.${n.opType}`;
    c[k] = (c[k] ?? 0) + 1;
  }
  return c;
}

/** Op-type counts of a graph: default-domain ops by name, others as "domain.OpType". */
export function histogram(model: onnx.IModelProto): Record<string, number> {
  const h: Record<string, number> = {};
  for (const n of model.graph?.node ?? []) {
    const k = n.domain ? `${n.domain}.${n.opType}` : n.opType!;
    h[k] = (h[k] ?? 0) + 1;
  }
  return h;
}

/** The input or output tensors of a case's test-data set. */
function dataSet(name: string, prefix: "input" | "output", set = "test_data_set_0"): TensorFile[] {
  return readDataSet(join(MODELS, name, set), prefix);
}

/**
 * Runs a (fused) model on the gdn runtime on the case's inputs; returns each output's relative L2
 * error against output_N.pb and the tolerance for its type.
 */
export async function runAgainstCase(
  model: onnx.IModelProto,
  name: string,
  executionProviders: string[] = ["gdn"],
  /** Where to write the model (its external data files must be there); default: a new temp folder. */
  dir = mkdtempSync(join(tmpdir(), "gdn-case-")),
  /** Which of the case's data sets (test_data_set_1 holds another batch size for the dynamic-batch cases). */
  set = "test_data_set_0",
): Promise<{ name: string; err: number; tol: number }[]> {
  const file = join(dir, "model-under-test.onnx");
  writeFileSync(file, encodeMessage(onnx.ModelProto, model as onnx.ModelProto));
  const session = await ort.InferenceSession.create(file, { executionProviders, intraOpNumThreads: 2 });
  try {
    const inputs = dataSet(name, "input", set);
    const feeds: Record<string, ort.Tensor> = {};
    session.inputNames.forEach((n, i) => (feeds[n] = toOrtTensor(inputs[i]!)));
    const out = await session.run(feeds);
    // A mutated model may have dropped trailing outputs; compare the ones it has.
    return dataSet(name, "output", set)
      .slice(0, session.outputNames.length)
      .map((want, i) => {
        const got = out[session.outputNames[i]!]!;
        const tol = toleranceOf(want.type) ?? TOLERANCE.float32;
        const actual = want.type === "bfloat16" ? { type: "bfloat16", data: got.data } : got;
        return { name: session.outputNames[i]!, err: relativeL2(actual, want), tol };
      });
  } finally {
    await session.release();
  }
}

/**
 * Runs `model` on a data set of case `name` (runAgainstCase, on the gdn runtime) and expects each output's error
 * within `tol`, by default the tolerance of the output's type. `label` goes before the output's name in a failure.
 */
export async function expectMatchesCase(
  model: onnx.IModelProto,
  name: string,
  { tol, set = "test_data_set_0", label = "" }: { tol?: number; set?: string; label?: string } = {},
): Promise<void> {
  for (const o of await runAgainstCase(model, name, ["gdn"], undefined, set))
    expect(o.err, label + o.name).toBeLessThanOrEqual(tol ?? o.tol);
}

/** expectMatchesCase where the gdn runtime loads; without a native build the layer tests check the fusion only. */
export async function expectMatchesCaseIfRuntime(...args: Parameters<typeof expectMatchesCase>): Promise<void> {
  if (runtimeLoadError() === undefined) await expectMatchesCase(...args);
}

/** Fuses case `name` (all passes): one `op` node and nothing else, which reproduces the case's outputs. */
export async function expectFusedToOne(name: string, op: string): ReturnType<typeof fuseCase> {
  const fused = await fuseCase(name);
  expect(fused.report.fused).toEqual({ [op]: 1 });
  expect(opCounts(fused.model.proto)).toEqual({ [op]: 1 });
  await expectMatchesCase(fused.model.proto, name);
  return fused;
}

/** The candidates `pass` skipped in a report (throws when the pass did not run). */
export function skippedOf(r: FuseReport, pass: string): SkippedCandidate[] {
  return passReport(r, pass).skipped;
}

/** The stage and reason of each candidate `pass` skipped in a report. */
export function refusals(r: FuseReport, pass: string): { stage: string; reason: string }[] {
  return skippedOf(r, pass).map(({ stage, reason }) => ({ stage, reason }));
}

/** The ops `pass` created in a report, one per applied match (e.g. "gdn.ChunkGatedDeltaRule[gqa]"). */
export function appliedOps(r: FuseReport, pass: string): string[] {
  return passReport(r, pass).applied.map((a) => a.op);
}

/** The first candidate any pass skipped. */
export function firstSkip(r: FuseReport): SkippedCandidate | undefined {
  return r.passes.flatMap((p) => p.skipped)[0];
}

function passReport(r: FuseReport, pass: string) {
  const p = r.passes.find((x) => x.name === pass);
  if (!p) throw new Error(`the report has no pass ${pass} (ran: ${r.passes.map((x) => x.name).join(", ")})`);
  return p;
}
