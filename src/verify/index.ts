/**
 * Verification of a fusion: runs the original model on stock onnxruntime-node and the fused model on
 * the gdn runtime, on a test-data folder (ONNX backend-test layout: input_N.pb / output_N.pb) or on
 * random inputs of the right shapes, and compares every output.
 * An output passes when its NaN and ±Inf entries sit where the original's do (same signs) and its
 * finite entries agree in relative L2 within the tolerance of the output's type (src/numeric.ts TOLERANCE).
 */
import fs from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { GdnFuseError, type ErrorCode } from "../errors.js";
import { decodeMessage, onnx } from "../ir/onnx.js";
import { elemTypeName, float16ToFloat32, float32ToFloat16, tensorToArray } from "../ir/tensor.js";
import { loadModel, type LoadedModel } from "../ir/model-io.js";
import { TOLERANCE, compareValues, seededRandom, toleranceOf } from "../numeric.js";
import type { AscendStats } from "../runtime/ascend.js";

export interface VerifyOutput {
  name: string;
  maxAbs: number;
  relL2: number;
  tolerance: number;
  ok: boolean;
  /** Where NaN/±Inf of the fused output differ from the original's (one line), when they do. */
  specialValues?: string;
}

export interface VerifyResult {
  ok: boolean;
  outputs: VerifyOutput[];
  /** Where the inputs came from: the test-data folder, or "random". */
  source: string;
  /** What ran the fused model: "gdn" or "ascend". */
  runtime: string;
  /** With runtime "ascend": what ran where and what moved (ascendStats of the verifying session). */
  ascendStats?: AscendStats;
}

/**
 * Runs `fn` (an ORT or proto call on user-supplied models and files); whatever it throws that is not a
 * GdnFuseError becomes one with `code` and the message `describe(first line of the error)`.
 */
async function userFacing<T>(
  code: ErrorCode,
  describe: (reason: string) => string,
  fn: () => T | Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof GdnFuseError) throw e;
    throw new GdnFuseError(code, describe(firstLine(e)), { cause: e });
  }
}

/** The first line of an error's message. */
function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!.trim();
}

export { TOLERANCE };

/** Where the fused model runs: the gdn backend (CPU) or the ascend backend (an Ascend NPU, or the CANN simulator
 * when GDN_FUSE_ASCEND=sim). */
export type VerifyEp = "gdn" | "ascend";

export interface VerifyOptions {
  dataDir?: string;
  seed?: number;
  /** default "gdn" */
  ep?: VerifyEp;
}

/**
 * Runs the original model (stock onnxruntime) and the fused one (options.ep's runtime) on the same inputs and
 * compares every output. `original` is the original's path, or the model as loadModel(path) returned it, so a
 * caller that holds it does not decode it again: only its graph inputs (which fusion keeps) and its path are
 * read, and onnxruntime loads the original from that path.
 */
export async function verifyModels(
  original: string | LoadedModel,
  fusedPath: string,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const ep = options.ep ?? "gdn";
  const originalPath = typeof original === "string" ? original : original.path;
  if (originalPath === undefined) {
    throw new GdnFuseError(
      "E_VERIFY",
      "the original model was loaded from bytes; verifying needs its file (loadModel(path))",
    );
  }
  if (typeof original === "string") original = await loadModel(original);
  const graphInputs = (original.proto.graph?.input ?? []).filter(
    (i) => !(original.proto.graph?.initializer ?? []).some((t) => t.name === i.name),
  );
  const feeds = await userFacing(
    "E_VERIFY",
    (why) => `cannot make the model's inputs: ${why}`,
    () => (options.dataDir ? readInputs(options.dataDir, graphInputs) : randomInputs(graphInputs, options.seed ?? 1)),
  );

  const want = await userFacing(
    "E_RUNTIME",
    (why) => `running the original model in onnxruntime failed: ${why}`,
    async () => {
      const ref = await ort.InferenceSession.create(originalPath, {
        graphOptimizationLevel: "disabled",
        intraOpNumThreads: 2,
      });
      try {
        return await ref.run(feeds);
      } finally {
        await ref.release();
      }
    },
  );

  const runtime = await import("../runtime/index.js"); // registers the "gdn" and "ascend" backends
  let ascendStats: AscendStats | undefined;
  const failed = (why: string) => `running the fused model on the ${ep} runtime failed: ${why}`;
  const got = await userFacing("E_RUNTIME", failed, async () => {
    const provider = ep === "ascend" ? ({ name: "ascend", deviceId: 0 } as unknown as string) : "gdn";
    const options = { executionProviders: [provider], intraOpNumThreads: 2 };
    const fused = await ort.InferenceSession.create(fusedPath, options);
    try {
      const out = await fused.run(feeds);
      if (ep === "ascend") ascendStats = runtime.ascendStats(fused);
      return out;
    } finally {
      await fused.release();
    }
  });

  // On the Ascend device every output, whatever its element type, gets at least bfloat16's tolerance: the aclnn
  // gated-delta ops take bf16 inputs and state and return bf16 (8 mantissa bits, float32 accumulation), which
  // puts the outputs about 4e-3 from a float32 or float64 computation (docs/ascend.md, "Precision").
  const minTolerance = ep === "ascend" ? TOLERANCE.bfloat16 : 0;
  const outputs = Object.keys(want).map((name): VerifyOutput => {
    const gotT = got[name] as ort.Tensor | undefined;
    if (!gotT) throw new GdnFuseError("E_VERIFY", `the fused model has no output "${name}"`);
    return compareOutput(name, gotT, want[name] as ort.Tensor, minTolerance);
  });
  const source = options.dataDir ?? "random";
  const result: VerifyResult = { ok: outputs.every((o) => o.ok), outputs, source, runtime: ep };
  return ascendStats ? { ...result, ascendStats } : result;
}

/** Compares one output of the fused model with the original's (special values first, then relative L2). */
export function compareOutput(name: string, got: ort.Tensor, want: ort.Tensor, minTolerance = 0): VerifyOutput {
  const tolerance = Math.max(toleranceOf(want.type) ?? 0, minTolerance);
  const c = compareValues(toNumbers(got, want.type), toNumbers(want));
  const specialValues = c.mismatch && `output "${name}": ${c.mismatch}`;
  return {
    name,
    maxAbs: c.maxAbs,
    relL2: c.relL2,
    tolerance,
    ok: !specialValues && c.relL2 <= tolerance,
    specialValues,
  };
}

/** Formats a result as the CLI prints it: one line per output. */
export function formatVerify(r: VerifyResult): string {
  return r.outputs.map(formatOutput).join("\n");
}

function formatOutput(o: VerifyOutput): string {
  const errors = `max abs ${o.maxAbs.toExponential(3)}, relative L2 ${o.relL2.toExponential(3)}`;
  return `${o.ok ? "ok  " : "FAIL"} ${o.name}: ${errors} (tolerance ${o.tolerance})${o.specialValues ? `; ${o.specialValues}` : ""}`;
}

function readInputs(dir: string, inputs: onnx.IValueInfoProto[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^input_\d+\.pb$/.test(f)) : [];
  if (files.length === 0)
    throw new GdnFuseError("E_IO", `${dir}: no input_N.pb files (ONNX test_data_set layout expected)`);
  for (const f of files) {
    const i = Number(/\d+/.exec(f)![0]);
    const file = path.join(dir, f);
    let t: onnx.TensorProto;
    try {
      t = decodeMessage(onnx.TensorProto, fs.readFileSync(file));
    } catch (e) {
      throw new GdnFuseError("E_IO", `${file}: not a TensorProto (${e instanceof Error ? e.message : String(e)})`, {
        cause: e,
      });
    }
    const name = inputs.some((x) => x.name === t.name) ? t.name! : inputs[i]?.name;
    if (!name) throw new GdnFuseError("E_VERIFY", `${f}: the model has no input ${i}`);
    try {
      feeds[name] = toOrtTensor(t);
    } catch (e) {
      // the tensor's own complaint (a GdnFuseError too) does not say which file it is in
      throw new GdnFuseError("E_VERIFY", `${file}: ${firstLine(e)}`, { cause: e });
    }
  }
  return feeds;
}

function toOrtTensor(t: onnx.ITensorProto): ort.Tensor {
  const type = elemTypeName(t.dataType ?? 0);
  const dims = (t.dims ?? []).map(Number);
  const data = tensorToArray(t);
  if (type === "bfloat16")
    throw new GdnFuseError("E_VERIFY", "bfloat16 test inputs cannot be fed to stock onnxruntime-node");
  return new ort.Tensor(type as "float32", data as Float32Array, dims);
}

/** Random inputs: floats in [-1, 1) (decays g <= 0 where the input is named g), ints 0, bools false. */
function randomInputs(inputs: onnx.IValueInfoProto[], seed: number): Record<string, ort.Tensor> {
  const rand = seededRandom(seed);
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of inputs) {
    const tt = i.type?.tensorType;
    const dims = (tt?.shape?.dim ?? []).map((d) => (d.dimParam ? 1 : Number(d.dimValue ?? 1)));
    const n = dims.reduce((a, b) => a * b, 1);
    const type = elemTypeName(tt?.elemType ?? 1);
    const f = () => (i.name === "g" ? -2 * rand() : 2 * rand() - 1);
    if (type === "float32") feeds[i.name!] = new ort.Tensor("float32", Float32Array.from({ length: n }, f), dims);
    else if (type === "float16")
      feeds[i.name!] = new ort.Tensor(
        "float16",
        Uint16Array.from({ length: n }, () => float32ToFloat16(f())),
        dims,
      );
    else if (type === "int64") feeds[i.name!] = new ort.Tensor("int64", new BigInt64Array(n), dims);
    else if (type === "int32") feeds[i.name!] = new ort.Tensor("int32", new Int32Array(n), dims);
    else if (type === "bool") feeds[i.name!] = new ort.Tensor("bool", new Uint8Array(n), dims);
    else
      throw new GdnFuseError(
        "E_VERIFY",
        `input "${i.name}": cannot make random data of type ${type}; pass a test-data folder`,
      );
  }
  return feeds;
}

function toNumbers(t: ort.Tensor, asType = t.type): Float64Array {
  const d = t.data as ArrayLike<number | bigint>;
  if (asType === "float16" && d instanceof Uint16Array) return Float64Array.from(d, float16ToFloat32);
  return Float64Array.from(d as ArrayLike<number>, (x) => Number(x));
}
