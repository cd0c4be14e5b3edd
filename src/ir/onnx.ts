/**
 * The one module that imports `onnx-proto` (ONNX 1.10.2 schema, protobufjs 6 static code).
 *
 * The generated decoders drop fields the 1.10 schema does not know (NodeProto.metadata_props = 9,
 * overload = 8, GraphProto.metadata_props, newer FunctionProto fields, ...), and torch.onnx sets some
 * of them. This module patches every message type's `decode`/`encode` so that unknown fields are kept
 * as raw bytes (tag + value) in `$unknown` and written back on encode, which makes a load/save round
 * trip lossless. Import `onnx` from here, never from "onnx-proto".
 */
import protobuf from "protobufjs/minimal.js";
import onnxProtoPkg from "onnx-proto";

export import onnx = onnxProtoPkg.onnx;

/** Raw bytes of fields the 1.10 schema does not know, each chunk one field: tag varint + value. */
export type UnknownFields = Uint8Array[];

declare module "onnx-proto" {
  // Declaration merging: every message may carry the fields its schema lacks.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace onnx {
    interface IModelProto {
      $unknown?: UnknownFields;
    }
    interface ModelProto {
      $unknown?: UnknownFields;
    }
    interface IGraphProto {
      $unknown?: UnknownFields;
    }
    interface GraphProto {
      $unknown?: UnknownFields;
    }
    interface INodeProto {
      $unknown?: UnknownFields;
    }
    interface NodeProto {
      $unknown?: UnknownFields;
    }
    interface IAttributeProto {
      $unknown?: UnknownFields;
    }
    interface AttributeProto {
      $unknown?: UnknownFields;
    }
    interface ITensorProto {
      $unknown?: UnknownFields;
    }
    interface TensorProto {
      $unknown?: UnknownFields;
    }
    interface IValueInfoProto {
      $unknown?: UnknownFields;
    }
    interface ValueInfoProto {
      $unknown?: UnknownFields;
    }
    interface IFunctionProto {
      $unknown?: UnknownFields;
    }
    interface FunctionProto {
      $unknown?: UnknownFields;
    }
    interface ITypeProto {
      $unknown?: UnknownFields;
    }
    interface TypeProto {
      $unknown?: UnknownFields;
    }
  }
}

/** A decode failure with the byte offset it happened at; `truncated` when the input ended early. */
export class ProtoDecodeError extends Error {
  constructor(
    message: string,
    readonly offset: number,
    readonly truncated: boolean,
  ) {
    super(message);
    this.name = "ProtoDecodeError";
  }
}

interface HasUnknown {
  $unknown?: UnknownFields;
}
type RawWriteFn = (val: Uint8Array, buf: Uint8Array, pos: number) => void;
interface PushableWriter {
  _push(fn: RawWriteFn, len: number, val: Uint8Array): protobuf.Writer;
}
interface MessageType {
  name: string;
  decode(reader: protobuf.Reader | Uint8Array, length?: number): object;
  encode(message: object, writer?: protobuf.Writer): protobuf.Writer;
}

const toBuffer = (u: Uint8Array): Buffer =>
  Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/**
 * A reader that remembers where the last varint started (the tag, in a decoder's default branch) and
 * captures what a top-level `skipType` skipped into the innermost decode's unknown-field list.
 */
class TrackingReader extends protobuf.BufferReader {
  lastVarintStart = 0;
  private skipDepth = 0;
  readonly unknownStack: UnknownFields[] = [];

  constructor(buffer: Uint8Array) {
    super(toBuffer(buffer));
  }

  override uint32(): number {
    const start = this.pos;
    const value = super.uint32();
    this.lastVarintStart = start;
    return value;
  }

  override skipType(wireType: number): protobuf.Reader {
    const top = this.skipDepth === 0 ? this.unknownStack[this.unknownStack.length - 1] : undefined;
    const tagStart = this.lastVarintStart;
    this.skipDepth++;
    try {
      super.skipType(wireType);
    } finally {
      this.skipDepth--;
    }
    if (top) top.push(new Uint8Array(this.buf.subarray(tagStart, this.pos)));
    return this;
  }
}

const writeRaw: RawWriteFn = (val, buf, pos) => buf.set(val, pos);
const PATCHED = Symbol.for("gdn-fuse.onnx.lossless");

function patchType(type: MessageType): void {
  const marked = type as unknown as Record<symbol, boolean>;
  if (marked[PATCHED]) return;
  marked[PATCHED] = true;
  const decode = type.decode.bind(type);
  const encode = type.encode.bind(type);

  type.decode = function decodeKeepingUnknown(input: protobuf.Reader | Uint8Array, length?: number): object {
    if (!(input instanceof TrackingReader)) {
      if (input instanceof protobuf.Reader) {
        const tracking = new TrackingReader(input.buf);
        tracking.pos = input.pos;
        tracking.len = input.len;
        try {
          return type.decode(tracking, length);
        } finally {
          input.pos = tracking.pos;
        }
      }
      return type.decode(new TrackingReader(input), length);
    }
    const start = input.pos;
    const unknown: UnknownFields = [];
    input.unknownStack.push(unknown);
    let message: HasUnknown;
    try {
      message = decode(input, length) as HasUnknown;
    } finally {
      input.unknownStack.pop();
    }
    if (length !== undefined && input.pos !== start + length) {
      throw new ProtoDecodeError(
        `${type.name} field overruns its length (ends at byte ${input.pos}, declared end ${start + length})`,
        input.pos,
        false,
      );
    }
    if (unknown.length > 0) message.$unknown = unknown;
    return message;
  };

  type.encode = function encodeKeepingUnknown(message: object, writer?: protobuf.Writer): protobuf.Writer {
    const out = encode(message, writer);
    const unknown = (message as HasUnknown).$unknown;
    if (unknown) for (const raw of unknown) (out as unknown as PushableWriter)._push(writeRaw, raw.length, raw);
    return out;
  };
}

function isMessageType(v: unknown): v is MessageType {
  if (typeof v !== "function") return false;
  const t = v as unknown as Partial<MessageType>;
  return typeof t.decode === "function" && typeof t.encode === "function";
}

function patchNamespace(ns: object, seen: Set<object>): void {
  if (seen.has(ns)) return;
  seen.add(ns);
  for (const key of Object.keys(ns)) {
    const value: unknown = (ns as Record<string, unknown>)[key];
    if (isMessageType(value)) {
      patchType(value);
      patchNamespace(value, seen); // nested types, e.g. TypeProto.Tensor
    }
  }
}

patchNamespace(onnx, new Set());

/**
 * Decodes one message with unknown fields kept. Throws ProtoDecodeError (with the byte offset) for
 * anything malformed, including nesting too deep for the stack.
 */
export function decodeMessage<T>(
  type: { decode(r: protobuf.Reader | Uint8Array, l?: number): T },
  bytes: Uint8Array,
): T {
  const reader = new TrackingReader(bytes);
  try {
    return type.decode(reader);
  } catch (e) {
    if (e instanceof ProtoDecodeError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    const truncated = e instanceof RangeError && /index out of range/.test(msg);
    if (e instanceof RangeError && /call stack/i.test(msg)) {
      throw new ProtoDecodeError("messages nested too deeply", reader.pos, false);
    }
    throw new ProtoDecodeError(msg, Math.min(reader.pos, bytes.length), truncated);
  }
}

/** Encodes a message (unknown fields included) to bytes. */
export function encodeMessage<M>(type: { encode(m: M, w?: protobuf.Writer): protobuf.Writer }, message: M): Uint8Array {
  return type.encode(message).finish();
}

/** The raw unknown fields of a message ([] when none). */
export function unknownFields(message: object): UnknownFields {
  return (message as HasUnknown).$unknown ?? [];
}

/** Field numbers of a message's unknown fields, in order (for diagnostics and tests). */
export function unknownFieldNumbers(message: object): number[] {
  return unknownFields(message).map((raw) => protobuf.Reader.create(raw).uint32() >>> 3);
}

// NodeProto.metadata_props: field 9, wire type 2 -> tag 74; StringStringEntryProto key = 1 (tag 10), value = 2 (tag 18).
const NODE_METADATA_TAG = (9 << 3) | 2;

function parseMetadataEntry(raw: Uint8Array): { key: string; value: string } | undefined {
  const r = protobuf.Reader.create(raw);
  if (r.uint32() !== NODE_METADATA_TAG) return undefined;
  const end = r.uint32() + r.pos;
  let key = "";
  let value = "";
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === 10) key = r.string();
    else if (tag === 18) value = r.string();
    else r.skipType(tag & 7);
  }
  return { key, value };
}

function encodeMetadataEntry(key: string, value: string): Uint8Array {
  const w = protobuf.Writer.create().uint32(NODE_METADATA_TAG).fork();
  w.uint32(10).string(key).uint32(18).string(value);
  return w.ldelim().finish();
}

/** A node's metadata_props (ONNX >= 1.16 field 9), read from its unknown fields. */
export function getNodeMetadata(node: onnx.INodeProto): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of unknownFields(node)) {
    const entry = parseMetadataEntry(raw);
    if (entry) out[entry.key] = entry.value;
  }
  return out;
}

/** Sets (or replaces) one metadata_props entry on a node; other unknown fields are left as they are. */
export function setNodeMetadata(node: onnx.INodeProto, key: string, value: string): void {
  const chunk = encodeMetadataEntry(key, value);
  const fields = unknownFields(node);
  const kept = fields.filter((raw) => parseMetadataEntry(raw)?.key !== key);
  const at = fields.findIndex((raw) => parseMetadataEntry(raw)?.key === key);
  if (at >= 0) kept.splice(Math.min(at, kept.length), 0, chunk);
  else kept.push(chunk);
  node.$unknown = kept;
}

/** An int64 field as a BigInt (exact); `unsigned` Longs (uint64 fields) stay non-negative. */
export function int64ToBigInt(v: number | protobuf.Long | null | undefined): bigint {
  if (v === null || v === undefined) return 0n;
  if (typeof v === "number") return BigInt(v);
  const bits = (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0);
  return v.unsigned ? bits : BigInt.asIntN(64, bits);
}

/** An int64 field (protobufjs gives a Long when the `long` package is present) as a JS number. */
export function int64ToNumber(v: number | protobuf.Long | null | undefined): number {
  if (typeof v === "number") return v;
  return Number(int64ToBigInt(v));
}
