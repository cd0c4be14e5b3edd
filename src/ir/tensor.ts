/**
 * TensorProto <-> typed arrays, element-type names, float16/bfloat16 bit conversions, and external data
 * (a tensor whose bytes live in a file beside the model). Reading an external tensor reads only its byte
 * range; every location is checked to stay inside the model folder.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { GdnFuseError } from "../errors.js";
import { fileKind } from "./file-safety.js";
import { int64ToBigInt, int64ToNumber, onnx } from "./onnx.js";

export type TensorArray =
  | Float32Array
  | Float64Array
  | Uint16Array // uint16, float16 bits, bfloat16 bits
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array // uint8, bool
  | Uint32Array
  | BigUint64Array;

const NAMES: Record<number, string> = {
  1: "float32",
  2: "uint8",
  3: "int8",
  4: "uint16",
  5: "int16",
  6: "int32",
  7: "int64",
  8: "string",
  9: "bool",
  10: "float16",
  11: "float64",
  12: "uint32",
  13: "uint64",
  14: "complex64",
  15: "complex128",
  16: "bfloat16",
  17: "float8e4m3fn",
  18: "float8e4m3fnuz",
  19: "float8e5m2",
  20: "float8e5m2fnuz",
  21: "uint4",
  22: "int4",
  23: "float4e2m1",
  24: "float8e8m0",
};
const BY_NAME: Record<string, number> = Object.fromEntries(Object.entries(NAMES).map(([k, v]) => [v, Number(k)]));
BY_NAME.float = 1;
BY_NAME.double = 11;
BY_NAME.half = 10;

/** Bytes per element of every fixed-size ONNX type (4-bit types pack two per byte, see tensorByteSize). */
const ONNX_BYTES: Record<number, number> = {
  1: 4,
  2: 1,
  3: 1,
  4: 2,
  5: 2,
  6: 4,
  7: 8,
  9: 1,
  10: 2,
  11: 8,
  12: 4,
  13: 8,
  14: 8,
  15: 16,
  16: 2,
  17: 1,
  18: 1,
  19: 1,
  20: 1,
  24: 1,
};
const FOUR_BIT = new Set([21, 22, 23]);
/** The data types tensorToArray supports, and their bytes per element (undefined otherwise). */
const ARRAY_TYPES = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16];
const SIZES: Record<number, number> = Object.fromEntries(ARRAY_TYPES.map((t) => [t, ONNX_BYTES[t]!]));

/** Bytes of `count` elements of a data type (exact, BigInt); undefined for string and unknown types. */
export function tensorByteSize(dataType: number, count: bigint): bigint | undefined {
  if (FOUR_BIT.has(dataType)) return (count + 1n) / 2n;
  const size = ONNX_BYTES[dataType];
  return size === undefined ? undefined : count * BigInt(size);
}

/** The type name ONNX's messages use ("float", "double", "int64", ...). */
export function onnxTypeName(dataType: number): string {
  return dataType === 1 ? "float" : dataType === 11 ? "double" : elemTypeName(dataType);
}

/** "float32", "float16", "int64", ... for an onnx.TensorProto.DataType number ("type<N>" when unknown). */
export function elemTypeName(dataType: number): string {
  return NAMES[dataType] ?? `type${dataType}`;
}

/** The DataType number for a name ("float32"/"float", "float16"/"half", "int64", ...), or undefined. */
export function elemTypeFromName(name: string): number | undefined {
  return BY_NAME[name.toLowerCase()];
}

/** Bytes per element, or undefined for string and sub-byte types. */
export function elemTypeSize(dataType: number): number | undefined {
  return SIZES[dataType] ?? (dataType === 14 ? 8 : dataType === 15 ? 16 : undefined);
}

// ---- float16 / bfloat16 -------------------------------------------------------------------------
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function float16ToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 -> float16 bits, round to nearest even. */
export function float32ToFloat16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++; // a carry into the exponent is correct rounding
  return sign | half;
}

export function bfloat16ToFloat32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

export function float32ToBfloat16(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** A name for a one-line message: quoted and escaped (a corrupt file can put anything in a name). */
function quote(name: string | null | undefined): string {
  const s = name ?? "";
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}...` : s);
}

// ---- external data ------------------------------------------------------------------------------
export interface ExternalDataRef {
  location: string;
  offset: number;
  length: number | undefined;
}

export function isExternal(t: onnx.ITensorProto): boolean {
  return t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
}

/** The location/offset/length entries of an external tensor (undefined if the tensor is not external). */
export function externalDataRef(t: onnx.ITensorProto): ExternalDataRef | undefined {
  if (!isExternal(t)) return undefined;
  const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? "", e.value ?? ""]));
  const location = entries.get("location") ?? "";
  const num = (key: string): number | undefined => {
    const s = entries.get(key);
    if (s === undefined || s === "") return undefined;
    const n = Number(s);
    if (!/^[0-9]+$/.test(s) || !Number.isSafeInteger(n)) {
      // Number() would take "0x10", "1e2" and " 64"; only plain decimal digits are a byte count
      const loc = quote(entries.get("location") ?? "");
      throw new GdnFuseError(
        "E_EXTERNAL_DATA",
        `external data ${loc} of tensor ${quote(t.name)}: ${key} ${quote(s)} is not a plain decimal byte count`,
      );
    }
    return n;
  };
  return { location, offset: num("offset") ?? 0, length: num("length") };
}

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
}

/**
 * The absolute path of an external data file, after checking that `location` is relative, has no `..`,
 * and (symlinks resolved) stays inside `baseDir`, and that it is a regular file.
 */
export function resolveExternalPath(location: string, baseDir: string, tensorName = ""): string {
  const where = `external data ${quote(location)} of tensor ${quote(tensorName)}`;
  const fail = (why: string): never => {
    throw new GdnFuseError("E_EXTERNAL_DATA", `${where} ${why} (model folder ${baseDir})`);
  };
  if (location === "") fail("has no location");
  if (path.isAbsolute(location) || path.win32.isAbsolute(location) || location.includes("\0"))
    fail("is an absolute path; only paths relative to the model folder are allowed");
  if (location.split(/[\\/]/).includes("..")) fail("has a '..' component; it must stay inside the model folder");
  const full = path.resolve(baseDir, location);
  let real: string;
  let realBase: string;
  try {
    realBase = fs.realpathSync(baseDir);
    real = fs.realpathSync(full);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === "ENOENT" ? "does not exist" : `cannot be opened (${code ?? String(e)})`);
  }
  if (real !== realBase && !isInside(real, realBase))
    fail(`resolves (through a symlink) to ${real}, outside the model folder`);
  const st = fs.statSync(real);
  if (!st.isFile()) fail(`is not a regular file (${fileKind(st)})`);
  return real;
}

/** Product of the dims (1 for a scalar). */
export function tensorElementCount(t: onnx.ITensorProto): number {
  return (t.dims ?? []).reduce<number>((n, d) => n * int64ToNumber(d), 1);
}

export function tensorDims(t: onnx.ITensorProto): number[] {
  return (t.dims ?? []).map((d) => int64ToNumber(d));
}

/**
 * Checks an external tensor against its file: the file exists inside the folder and offset + length fit.
 * Returns the resolved path and byte range; reads no tensor bytes.
 */
export function checkExternalData(
  t: onnx.ITensorProto,
  baseDir: string,
): { file: string; offset: number; length: number } {
  const ref = externalDataRef(t);
  const name = t.name ?? "";
  if (!ref) throw new GdnFuseError("E_EXTERNAL_DATA", `tensor ${quote(name)} has no external data`);
  const where = `external data ${quote(ref.location)} of tensor ${quote(name)}`;
  const fail = (why: string): never => {
    throw new GdnFuseError("E_EXTERNAL_DATA", `${where}: ${why}`);
  };
  const file = resolveExternalPath(ref.location, baseDir, name);
  const size = fs.statSync(file).size;
  const dims = (t.dims ?? []).map((d) => int64ToBigInt(d));
  if (dims.some((d) => d < 0n)) fail(`dims [${dims.join(", ")}] has a negative dim`);
  const dataType = t.dataType ?? 0;
  const need = tensorByteSize(
    dataType,
    dims.reduce((n, d) => n * d, 1n),
  );
  if (need === undefined) fail(`data_type ${onnxTypeName(dataType)} cannot be stored as external data`);
  if (ref.length !== undefined && BigInt(ref.length) !== need) {
    fail(`length ${ref.length}, but dims [${dims.join(", ")}] of ${onnxTypeName(dataType)} need ${need} bytes`);
  }
  if (BigInt(ref.offset) + need! > BigInt(size)) {
    fail(`offset ${ref.offset} + length ${need} exceeds the file size ${size} (model folder ${baseDir})`);
  }
  return { file, offset: ref.offset, length: Number(need) };
}

/** Reads exactly [offset, offset + length) of a file. */
export function readFileRange(file: string, offset: number, length: number): Uint8Array {
  const out = Buffer.allocUnsafe(length);
  const fd = fs.openSync(file, "r");
  try {
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
      if (n === 0)
        throw new GdnFuseError(
          "E_EXTERNAL_DATA",
          `${file}: ended after ${offset + done} bytes, expected ${offset + length}`,
        );
      done += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/** The bytes an external tensor refers to (only that range of the file is read). */
export function readExternalBytes(t: onnx.ITensorProto, baseDir: string): Uint8Array {
  const { file, offset, length } = checkExternalData(t, baseDir);
  return readFileRange(file, offset, length);
}

// ---- TensorProto -> typed array -----------------------------------------------------------------
const LITTLE_ENDIAN = os.endianness() === "LE";

function fromBytes(bytes: Uint8Array, dataType: number, count: number, name: string): TensorArray {
  const size = SIZES[dataType]!;
  if (bytes.length !== count * size) {
    throw new GdnFuseError(
      "E_MODEL",
      `tensor ${quote(name)}: ${bytes.length} data bytes for ${count} ${elemTypeName(dataType)} elements (expected ${count * size})`,
    );
  }
  const buf = new ArrayBuffer(bytes.length);
  const u8 = new Uint8Array(buf);
  u8.set(bytes);
  if (!LITTLE_ENDIAN && size > 1) for (let i = 0; i < u8.length; i += size) u8.subarray(i, i + size).reverse();
  switch (dataType) {
    case 1:
      return new Float32Array(buf);
    case 2:
    case 9:
      return u8;
    case 3:
      return new Int8Array(buf);
    case 4:
    case 10:
    case 16:
      return new Uint16Array(buf);
    case 5:
      return new Int16Array(buf);
    case 6:
      return new Int32Array(buf);
    case 7:
      return new BigInt64Array(buf);
    case 11:
      return new Float64Array(buf);
    case 12:
      return new Uint32Array(buf);
    default:
      return new BigUint64Array(buf); // 13
  }
}

function fromFields(t: onnx.ITensorProto, dataType: number): TensorArray {
  const ints = t.int32Data ?? [];
  switch (dataType) {
    case 1:
      return Float32Array.from(t.floatData ?? []);
    case 11:
      return Float64Array.from(t.doubleData ?? []);
    case 2:
    case 9:
      return Uint8Array.from(ints);
    case 3:
      return Int8Array.from(ints);
    case 4:
    case 10:
    case 16:
      return Uint16Array.from(ints, (x) => x & 0xffff);
    case 5:
      return Int16Array.from(ints);
    case 6:
      return Int32Array.from(ints);
    case 7:
      return BigInt64Array.from(t.int64Data ?? [], (x) => int64ToBigInt(x));
    case 12:
      return Uint32Array.from(t.uint64Data ?? [], (x) => int64ToNumber(x));
    default:
      return BigUint64Array.from(t.uint64Data ?? [], (x) => BigInt.asUintN(64, int64ToBigInt(x))); // 13
  }
}

/**
 * A tensor's elements as a typed array: Float32Array, Float64Array, Uint16Array (float16/bfloat16 bits;
 * see float16ToFloat32), Int8/16/32Array, BigInt64Array (int64), Uint8Array (uint8, bool), Uint32Array,
 * BigUint64Array. External tensors need `baseDir` (the model folder); only their byte range is read.
 */
export function tensorToArray(t: onnx.ITensorProto, baseDir?: string): TensorArray {
  const dataType = t.dataType ?? 0;
  const name = t.name ?? "";
  if (SIZES[dataType] === undefined) {
    throw new GdnFuseError(
      "E_MODEL",
      `tensor ${quote(name)}: element type ${elemTypeName(dataType)} is not supported here`,
    );
  }
  const count = tensorElementCount(t);
  if (isExternal(t)) {
    if (baseDir === undefined) {
      throw new GdnFuseError(
        "E_EXTERNAL_DATA",
        `tensor ${quote(name)} has external data but no model folder was given to read it from`,
      );
    }
    return fromBytes(readExternalBytes(t, baseDir), dataType, count, name);
  }
  if (t.rawData && t.rawData.length > 0) return fromBytes(t.rawData, dataType, count, name);
  const arr = fromFields(t, dataType);
  if (arr.length !== count) {
    throw new GdnFuseError(
      "E_MODEL",
      `tensor ${quote(name)}: ${arr.length} elements stored for dims [${tensorDims(t).join(", ")}] (${count})`,
    );
  }
  return arr;
}

/** A tensor's elements as float64 numbers (float16/bfloat16 decoded, int64 via Number). */
export function tensorToFloat64(t: onnx.ITensorProto, baseDir?: string): Float64Array {
  const arr = tensorToArray(t, baseDir);
  const dt = t.dataType ?? 0;
  if (dt === 10) return Float64Array.from(arr as Uint16Array, float16ToFloat32);
  if (dt === 16) return Float64Array.from(arr as Uint16Array, bfloat16ToFloat32);
  if (arr instanceof BigInt64Array || arr instanceof BigUint64Array) return Float64Array.from(arr, (x) => Number(x));
  return Float64Array.from(arr);
}

// ---- typed array -> TensorProto -----------------------------------------------------------------
type NumericInput = TensorArray | ArrayLike<number> | ArrayLike<bigint>;

function toTyped(data: NumericInput, dataType: number): TensorArray {
  const nums = (): number[] => Array.from(data as ArrayLike<number | bigint>, (x) => Number(x));
  const bigs = (): bigint[] => Array.from(data as ArrayLike<number | bigint>, (x) => BigInt(x));
  switch (dataType) {
    case 1:
      return data instanceof Float32Array ? data : Float32Array.from(nums());
    case 11:
      return data instanceof Float64Array ? data : Float64Array.from(nums());
    case 2:
    case 9:
      return data instanceof Uint8Array ? data : Uint8Array.from(nums(), (x) => (dataType === 9 ? (x ? 1 : 0) : x));
    case 3:
      return data instanceof Int8Array ? data : Int8Array.from(nums());
    case 4:
      return data instanceof Uint16Array ? data : Uint16Array.from(nums());
    case 10:
      return data instanceof Uint16Array ? data : Uint16Array.from(nums(), float32ToFloat16);
    case 16:
      return data instanceof Uint16Array ? data : Uint16Array.from(nums(), float32ToBfloat16);
    case 5:
      return data instanceof Int16Array ? data : Int16Array.from(nums());
    case 6:
      return data instanceof Int32Array ? data : Int32Array.from(nums());
    case 7:
      return data instanceof BigInt64Array ? data : BigInt64Array.from(bigs());
    case 12:
      return data instanceof Uint32Array ? data : Uint32Array.from(nums());
    case 13:
      return data instanceof BigUint64Array ? data : BigUint64Array.from(bigs());
    default:
      throw new GdnFuseError("E_USAGE", `arrayToTensor: element type ${elemTypeName(dataType)} is not supported`);
  }
}

/**
 * A TensorProto with little-endian raw_data. `dataType` is a DataType number or a name ("float32", ...).
 * For float16/bfloat16 pass Uint16Array bits, or plain numbers/Float32Array to be converted.
 */
export function arrayToTensor(
  name: string,
  dims: readonly number[],
  dataType: number | string,
  data: NumericInput,
): onnx.TensorProto {
  const dt = typeof dataType === "number" ? dataType : elemTypeFromName(dataType);
  if (dt === undefined) throw new GdnFuseError("E_USAGE", `arrayToTensor: unknown element type "${String(dataType)}"`);
  const typed = toTyped(data, dt);
  const count = dims.reduce((n, d) => n * d, 1);
  if (typed.length !== count) {
    throw new GdnFuseError(
      "E_USAGE",
      `arrayToTensor("${name}"): ${typed.length} elements for dims [${dims.join(", ")}] (${count})`,
    );
  }
  const raw = new Uint8Array(typed.byteLength);
  raw.set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
  const size = SIZES[dt]!;
  if (!LITTLE_ENDIAN && size > 1) for (let i = 0; i < raw.length; i += size) raw.subarray(i, i + size).reverse();
  return onnx.TensorProto.create({ name, dims: [...dims], dataType: dt, rawData: raw });
}
