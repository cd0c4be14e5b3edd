/**
 * Fixture cases under models/ (the project's own corpus, see models/README.md): loading, fusing,
 * and running fused models on the gdn runtime against the case's test_data_set_0.
 */
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { loadModel, type LoadedModel } from "../../src/ir/model-io.js";
import { encodeMessage, onnx } from "../../src/ir/onnx.js";
import { DEFAULT_PASSES, fuseModel, type FuseOptions, type FuseReport } from "../../src/pipeline/index.js";
import { loadRuntime } from "../../src/runtime/index.js";
import { readTensorProto, relativeL2, type TensorFile } from "./tensor-io.js";
import { TOLERANCE as SHARED_TOLERANCE } from "../../src/numeric.js";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const MODELS = join(ROOT, "models");
/** The shared corpus beside the checkout (CI lays ../shared next to the clone). */
export const SHARED_CORPUS = resolve(ROOT, "..", "shared", "corpus");

/** The core passes, and the layer-level passes in their default order. */
export const CORE_PASSES = ["gated-delta-chunk", "gated-delta-recurrent"];
export const LAYER_PASSES = DEFAULT_PASSES.filter((p) => p.startsWith("layer-"));

/** Why the gdn runtime cannot load here (its first line), or undefined when it can. */
export function runtimeLoadError(): string | undefined {
  try {
    loadRuntime();
    return undefined;
  } catch (e) {
    return (e as Error).message.split("\n")[0];
  }
}

/** Cases with test data (bench_* have none). */
export function fixtureCases(): string[] {
  return readdirSync(MODELS).filter((c) => existsSync(join(MODELS, c, "test_data_set_0")));
}

export async function loadCase(name: string): Promise<LoadedModel> {
  return loadModel(join(MODELS, name, "model.onnx"));
}

export async function fuseCase(name: string, options: FuseOptions = {}): Promise<{ model: LoadedModel; report: FuseReport }> {
  const model = await loadCase(name);
  const report = await fuseModel(model.proto, options);
  return { model, report };
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

function dataSet(name: string, prefix: "input" | "output", set = "test_data_set_0"): TensorFile[] {
  const dir = join(MODELS, name, set);
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${prefix}_`) && f.endsWith(".pb"))
    .sort((a, b) => Number(a.slice(prefix.length + 1, -3)) - Number(b.slice(prefix.length + 1, -3)))
    .map((f) => readTensorProto(join(dir, f)));
}

/** bfloat16 travels as uint16 bits through the gdn runtime. */
const toTensor = (t: TensorFile) => new ort.Tensor((t.type === "bfloat16" ? "uint16" : t.type) as "float32", t.data as Float32Array, t.dims);

/**
 * Tolerance on the relative L2 error against PyTorch's outputs, by element type: verify's (src/numeric.ts),
 * except bfloat16, whose PyTorch outputs round every intermediate op to 8 bits.
 */
export const TOLERANCE: Record<string, number> = { ...SHARED_TOLERANCE, bfloat16: 1e-2 };

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
    session.inputNames.forEach((n, i) => (feeds[n] = toTensor(inputs[i]!)));
    const out = await session.run(feeds);
    // A mutated model may have dropped trailing outputs; compare the ones it has.
    return dataSet(name, "output", set).slice(0, session.outputNames.length).map((want, i) => {
      const got = out[session.outputNames[i]!]!;
      const tol = TOLERANCE[want.type] ?? 1e-5;
      const actual = want.type === "bfloat16" ? { type: "bfloat16", data: got.data } : got;
      return { name: session.outputNames[i]!, err: relativeL2(actual, want), tol };
    });
  } finally {
    await session.release();
  }
}

export { relativeL2 };
