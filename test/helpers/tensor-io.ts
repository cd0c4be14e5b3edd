/**
 * Test helpers shared across suites: read ONNX TensorProto files (test_data_set_N/*.pb) and compare tensors.
 *
 *   const t = readTensorProto("…/input_0.pb");   // { name, dims, type: "float32" | "float16" | …, data }
 *   relativeL2(actualTensor, expected)            // ||a - b|| / ||b||, fp16/bf16 bits decoded when typed
 *
 * `type` uses onnxruntime's tensor type names; float16 and bfloat16 data are Uint16Array bit patterns,
 * bool is Uint8Array, string is string[].
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { decodeMessage, onnx } from "../../src/ir/onnx.js";
import { elemTypeName, tensorDims, tensorToArray, type TensorArray } from "../../src/ir/tensor.js";

export type TensorData = TensorArray | string[];

export interface TensorFile {
  name: string;
  dims: number[];
  type: string;
  data: TensorData;
}

/** Decodes a TensorProto from bytes: the library's decoder (src/ir/tensor.ts), and string tensors. */
export function decodeTensorProto(bytes: Uint8Array): TensorFile {
  const p = decodeMessage(onnx.TensorProto, bytes);
  const name = p.name ?? "";
  const dims = tensorDims(p);
  if (p.dataType === onnx.TensorProto.DataType.STRING) {
    const dec = new TextDecoder();
    return { name, dims, type: "string", data: (p.stringData ?? []).map((s) => dec.decode(s)) };
  }
  return { name, dims, type: elemTypeName(p.dataType ?? 0), data: tensorToArray(p) };
}

/** Reads a TensorProto file (e.g. test_data_set_0/input_0.pb). */
export function readTensorProto(path: string): TensorFile {
  return decodeTensorProto(readFileSync(path));
}

/** The input_N.pb or output_N.pb files of a test-data folder, in the order of N. */
export function readDataSet(dir: string, prefix: "input" | "output"): TensorFile[] {
  const index = (f: string) => Number(f.slice(prefix.length + 1, -3));
  return readdirSync(dir)
    .filter((f) => new RegExp(`^${prefix}_\\d+\\.pb$`).test(f))
    .sort((a, b) => index(a) - index(b))
    .map((f) => readTensorProto(join(dir, f)));
}

/** An onnxruntime Tensor of a TensorProto's data; bfloat16 travels as uint16 bits (the gdn runtime's convention). */
export function toOrtTensor(t: TensorFile): ort.Tensor {
  const type = t.type === "bfloat16" ? "uint16" : t.type;
  return new ort.Tensor(type as "float32", t.data as Float32Array, t.dims);
}

/** IEEE half bits <-> number: the library's own converters (src/ir/tensor.ts). */
export { float16ToFloat32 as float16ToNumber, float32ToFloat16 as numberToFloat16 } from "../../src/ir/tensor.js";
import { bfloat16ToFloat32, float16ToFloat32 } from "../../src/ir/tensor.js";
import { relativeL2 as sharedRelativeL2 } from "../../src/numeric.js";

/** Data of a tensor-like value as float64 (float16/bfloat16 bits decoded when `type` says so). */
export function toFloat64(t: { type?: string; data: unknown } | ArrayLike<number> | ArrayLike<bigint>): Float64Array {
  const typed = typeof t === "object" && t !== null && "data" in t && !ArrayBuffer.isView(t);
  const type = typed ? (t as { type?: string }).type : undefined;
  const data = (typed ? (t as { data: unknown }).data : t) as ArrayLike<number | bigint>;
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (type === "float16") out[i] = float16ToFloat32(Number(v));
    else if (type === "bfloat16") out[i] = bfloat16ToFloat32(Number(v));
    else out[i] = Number(v);
  }
  return out;
}

/**
 * ||a - b||_2 / ||b||_2 over the entries finite in both, with b the reference (src/numeric.ts: 0 when
 * both are all zeros; Infinity on a length mismatch or when NaN/±Inf sit at other positions).
 * Accepts typed arrays or tensor-likes ({ type, data }: onnxruntime Tensors, readTensorProto results).
 */
export function relativeL2(
  a: { type?: string; data: unknown } | ArrayLike<number> | ArrayLike<bigint>,
  b: { type?: string; data: unknown } | ArrayLike<number> | ArrayLike<bigint>,
): number {
  return sharedRelativeL2(toFloat64(a), toFloat64(b));
}
