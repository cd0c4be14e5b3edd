/**
 * onnxruntime-common Tensor <-> the addon's plain tensor descriptors. Numeric data is never copied on the way
 * in (the addon binds OrtValues over the Tensor's own buffer). bfloat16, which onnxruntime-common has no type
 * for, travels as a 'uint16' Tensor holding the raw bf16 bits, in both directions.
 */
import { markAsUntransferable } from "node:worker_threads";
import { Tensor } from "onnxruntime-node";
import { GdnFuseError } from "../errors.js";
import type { NativeTensor } from "./addon.js";

type ArrayCtor = { new (buffer: ArrayBuffer, byteOffset?: number, length?: number): ArrayBufferView };

const ARRAYS: Record<string, ArrayCtor> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  bfloat16: Uint16Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

/** Element types the gdn backend accepts (plus 'string'). */
export const SUPPORTED_TYPES: readonly string[] = [...Object.keys(ARRAYS), "string"];

function isTensorLike(v: unknown): v is Tensor {
  return typeof v === "object" && v !== null && "type" in v && "dims" in v && "location" in v;
}

/**
 * Unwraps a Tensor for the addon. `what` names it in errors ("input 'x'"); `modelType` is the element type the
 * model declares, used to bind a 'uint16' Tensor to a bfloat16 input.
 */
export function toNative(name: string, what: string, value: unknown, modelType?: string): NativeTensor {
  if (!isTensorLike(value)) throw new GdnFuseError("E_RUNTIME", `${what} is not a Tensor`);
  if (value.location !== "cpu" && value.location !== "cpu-pinned") {
    throw new GdnFuseError("E_RUNTIME", `${what} lives on '${value.location}'; the gdn backend takes CPU tensors only`);
  }
  let type: string = value.type;
  if (!SUPPORTED_TYPES.includes(type)) {
    throw new GdnFuseError("E_RUNTIME", `${what} has type '${type}', which the gdn backend does not support`);
  }
  if (type === "uint16" && modelType === "bfloat16") type = "bfloat16";
  // ORT's own message for this names neither the input nor the model; say both.
  if (modelType !== undefined && SUPPORTED_TYPES.includes(modelType) && type !== modelType) {
    const hint = modelType === "bfloat16" ? " (pass bfloat16 as a 'uint16' Tensor of the bits)" : "";
    throw new GdnFuseError(
      "E_RUNTIME",
      `${what} has type '${value.type}', but the model declares '${modelType}'${hint}`,
    );
  }
  const data = value.data as NativeTensor["data"];
  if (ArrayBuffer.isView(data)) pin(data.buffer, what);
  return { name, type, dims: value.dims, data };
}

/**
 * The addon reads and writes a tensor's memory in place on a worker thread. Transferring its ArrayBuffer
 * (postMessage, structuredClone) during the run would hand that memory to a new owner that may free it under
 * the run. Marked untransferable, a transfer copies the buffer instead and this one stays attached. The mark is
 * permanent (Node has no way to remove it); a SharedArrayBuffer cannot be detached and needs none.
 * A resizable ArrayBuffer is refused: shrinking it unmaps its pages at once, and no mark prevents that (a growable
 * SharedArrayBuffer only grows, so it is fine). `what` names the buffer in the error ("input 'x'").
 */
export function pin(buffer: ArrayBufferLike, what: string): void {
  if (!(buffer instanceof ArrayBuffer)) return;
  if ((buffer as { resizable?: boolean }).resizable === true) {
    const why = "resize() could take its memory away while the runtime uses it";
    throw new GdnFuseError(
      "E_RUNTIME",
      `${what}: its ArrayBuffer is resizable (${why}); use a fixed-length ArrayBuffer`,
    );
  }
  markAsUntransferable(buffer);
}

/**
 * Model bytes given to create(): ORT parses them on a worker thread, so they are pinned like a tensor's buffer.
 * create() hands them to the backend a tick after the caller, so a transfer made at once has already detached them.
 */
export function pinModelBytes(bytes: Uint8Array): void {
  pin(bytes.buffer, "model bytes");
  if (bytes.buffer instanceof ArrayBuffer && isDetached(bytes.buffer)) {
    const message = "model bytes: their ArrayBuffer is detached (transferred away); pass the model over live memory";
    throw new GdnFuseError("E_RUNTIME", message);
  }
}

/** Node 20 has no ArrayBuffer.prototype.detached; a view of a detached buffer cannot be constructed. */
function isDetached(buffer: ArrayBuffer): boolean {
  try {
    new Uint8Array(buffer, 0, 0);
    return false;
  } catch {
    return true;
  }
}

/** Wraps an ORT-allocated output (fresh ArrayBuffer owned by JS) into a Tensor without copying. */
export function fromNative(t: NativeTensor): Tensor {
  if (t.type === "string") return new Tensor("string", t.data as string[], t.dims);
  const ctor = ARRAYS[t.type];
  if (ctor === undefined) throw new GdnFuseError("E_RUNTIME", `output of unsupported type '${t.type}'`);
  const data = new ctor(t.data as ArrayBuffer);
  const type = t.type === "bfloat16" ? "uint16" : t.type;
  return new Tensor(type as "float32", data as Float32Array, t.dims);
}
