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
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | string[];

export interface TensorFile {
  name: string;
  dims: number[];
  type: string;
  data: TensorData;
}

const DT = onnx.TensorProto.DataType;

const TYPES: Record<
  number,
  {
    type: string;
    ctor: {
      new (b: ArrayBuffer): Exclude<TensorData, string[]>;
      from(a: ArrayLike<number> | ArrayLike<bigint>): Exclude<TensorData, string[]>;
    };
  }
> = {
  [DT.FLOAT]: { type: "float32", ctor: Float32Array },
  [DT.DOUBLE]: { type: "float64", ctor: Float64Array },
  [DT.FLOAT16]: { type: "float16", ctor: Uint16Array },
  [DT.BFLOAT16]: { type: "bfloat16", ctor: Uint16Array },
  [DT.INT8]: { type: "int8", ctor: Int8Array },
  [DT.UINT8]: { type: "uint8", ctor: Uint8Array },
  [DT.INT16]: { type: "int16", ctor: Int16Array },
  [DT.UINT16]: { type: "uint16", ctor: Uint16Array },
  [DT.INT32]: { type: "int32", ctor: Int32Array },
  [DT.UINT32]: { type: "uint32", ctor: Uint32Array },
  [DT.INT64]: { type: "int64", ctor: BigInt64Array },
  [DT.UINT64]: { type: "uint64", ctor: BigUint64Array },
  [DT.BOOL]: { type: "bool", ctor: Uint8Array },
} as never;

type Longish = number | { toString(): string };
const toNumber = (v: Longish): number => (typeof v === "number" ? v : Number(v.toString()));
const toBigInt = (v: Longish): bigint => BigInt(typeof v === "number" ? v : v.toString());

/** Decodes a TensorProto from bytes. */
export function decodeTensorProto(bytes: Uint8Array): TensorFile {
  const p = onnx.TensorProto.decode(bytes);
  const dims = (p.dims as Longish[]).map(toNumber);
  const name = p.name ?? "";
  if (p.dataType === DT.STRING) {
    const dec = new TextDecoder();
    return { name, dims, type: "string", data: (p.stringData as Uint8Array[]).map((s) => dec.decode(s)) };
  }
  const entry = TYPES[p.dataType];
  if (entry === undefined) throw new Error(`${name}: unsupported TensorProto data_type ${p.dataType}`);
  const { type, ctor } = entry;
  let data: Exclude<TensorData, string[]>;
  if (p.rawData && p.rawData.length > 0) {
    // copy: protobuf hands out views (a Node Buffer's slice() does not copy) that may be unaligned
    const raw = new Uint8Array(p.rawData.length);
    raw.set(p.rawData);
    data = new ctor(raw.buffer);
  } else if (type === "float32") {
    data = Float32Array.from(p.floatData);
  } else if (type === "float64") {
    data = Float64Array.from(p.doubleData);
  } else if (type === "int64") {
    data = BigInt64Array.from((p.int64Data as Longish[]).map(toBigInt));
  } else if (type === "uint64") {
    data = BigUint64Array.from((p.uint64Data as Longish[]).map(toBigInt));
  } else if (type === "uint32") {
    data = Uint32Array.from((p.uint64Data as Longish[]).map(toNumber));
  } else {
    // int32_data carries int32/int16/int8/uint16/uint8/bool and the bits of float16/bfloat16
    data = ctor.from(p.int32Data);
  }
  const count = dims.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`${name}: ${data.length} elements for dims [${dims.join(",")}]`);
  return { name, dims, type, data };
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
