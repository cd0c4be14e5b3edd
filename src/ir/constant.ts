/**
 * Reads constant values: initializers, `Constant` nodes, and small constant subgraphs the exporter
 * leaves unfolded when its optimizer is off (Cast/Reshape/Concat/Expand/Trilu/... of constants).
 * Values are float64 arrays (int64 shapes and bool masks fit exactly), row-major with their dims.
 */
import type { onnx } from "./onnx.js";
import type { Node, Value } from "./graph.js";
import { int64ToNumber as toNumber } from "./onnx.js";
import { tensorToFloat64 } from "./tensor.js";

export interface ConstTensor {
  dims: number[];
  data: Float64Array;
  elemType: number;
}

const MAX_FOLD_ELEMENTS = 1 << 22;
/** Constant subgraphs in exports are shallow; a deeper chain is data, and not worth a deep recursion. */
const MAX_FOLD_DEPTH = 48;
const cache = new WeakMap<Value, ConstTensor | null>();
let depth = 0;

/** The constant a value holds, or undefined when it depends on a graph input or an unsupported op. */
export function constantOf(v: Value | undefined): ConstTensor | undefined {
  if (!v) return undefined;
  const hit = cache.get(v);
  if (hit !== undefined) return hit ?? undefined;
  if (v.isGraphInput || (!v.initializer && !v.producer)) return undefined;
  if (depth >= MAX_FOLD_DEPTH) return undefined; // not cached: a shallower query may still fold it
  cache.set(v, null); // guards cycles
  let r: ConstTensor | undefined;
  depth++;
  try {
    r = v.initializer ? fromTensor(v.initializer, v.graph?.baseDir) : foldNode(v.producer!, v);
  } catch {
    r = undefined;
  } finally {
    depth--;
  }
  if (r && r.data.length > MAX_FOLD_ELEMENTS) r = undefined;
  cache.set(v, r ?? null);
  return r;
}

const FOLDABLE = new Set([
  "Identity",
  "Cast",
  "CastLike",
  "Neg",
  "Sqrt",
  "Reciprocal",
  "Exp",
  "Not",
  "Add",
  "Sub",
  "Mul",
  "Div",
  "Pow",
  "Equal",
  "Less",
  "Greater",
  "Where",
  "Reshape",
  "Unsqueeze",
  "Squeeze",
  "Concat",
  "Expand",
  "Range",
  "Trilu",
  "Gather",
]);
const isConstCache = new WeakMap<Value, boolean>();

/**
 * Whether a value is a constant, without computing it (cheap: no tensor is decoded). A few values it
 * accepts may still not fold (e.g. an unsupported Gather axis); constantOf is the final word.
 */
export function isConstantValue(v: Value | undefined): boolean {
  if (!v || v.isGraphInput) return false;
  if (v.initializer) return true;
  const p = v.producer;
  if (!p || (p.domain !== "" && p.domain !== "ai.onnx")) return false;
  const hit = isConstCache.get(v);
  if (hit !== undefined) return hit;
  if (depth >= MAX_FOLD_DEPTH) return false;
  isConstCache.set(v, false); // guards cycles
  depth++;
  let r: boolean;
  try {
    if (p.opType === "Constant") r = true;
    else if (p.opType === "Shape" || p.opType === "Size") r = !!p.inputs[0]?.staticShape;
    else if (p.opType === "CastLike") r = isConstantValue(p.inputs[0]) && !!p.inputs[1]?.type?.elemType;
    else r = FOLDABLE.has(p.opType) && p.inputs.every((i) => !i || isConstantValue(i));
  } finally {
    depth--;
  }
  isConstCache.set(v, r);
  return r;
}

/** Forgets folded values (call after rewriting the graph). */
export function clearConstantCache(v: Value): void {
  cache.delete(v);
}

/** A scalar constant (any shape with one element), or undefined. */
export function scalarOf(v: Value | undefined): number | undefined {
  const c = constantOf(v);
  return c && c.data.length === 1 ? c.data[0] : undefined;
}

export function fromTensor(t: onnx.ITensorProto, baseDir?: string): ConstTensor {
  return { dims: (t.dims ?? []).map(toNumber), data: tensorToFloat64(t, baseDir), elemType: t.dataType ?? 0 };
}

const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
const strides = (dims: number[]) => {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i]!;
  }
  return s;
};

/** Numpy-style broadcast of two shapes. */
function broadcastDims(a: number[], b: number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error("broadcast");
    out.push(Math.max(x, y));
  }
  return out;
}

function broadcastTo(t: ConstTensor, dims: number[]): Float64Array {
  const out = new Float64Array(size(dims));
  const src = [...new Array(dims.length - t.dims.length).fill(1), ...t.dims];
  const ss = strides(src);
  const ds = strides(dims);
  for (let i = 0; i < out.length; i++) {
    let off = 0;
    for (let d = 0; d < dims.length; d++) {
      const idx = Math.floor(i / ds[d]!) % dims[d]!;
      off += (src[d] === 1 ? 0 : idx) * ss[d]!;
    }
    out[i] = t.data[off]!;
  }
  return out;
}

function binary(
  a: ConstTensor,
  b: ConstTensor,
  f: (x: number, y: number) => number,
  elemType = a.elemType,
): ConstTensor {
  const dims = broadcastDims(a.dims, b.dims);
  const x = broadcastTo(a, dims);
  const y = broadcastTo(b, dims);
  const data = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) data[i] = f(x[i]!, y[i]!);
  return { dims, data, elemType };
}

function unary(a: ConstTensor, f: (x: number) => number): ConstTensor {
  return { dims: a.dims, data: a.data.map(f), elemType: a.elemType };
}

const INT_TYPES = new Set([2, 3, 4, 5, 6, 7, 12, 13]);
function castValue(x: number, to: number): number {
  if (to === 9) return x !== 0 ? 1 : 0;
  if (to === 1) return Math.fround(x);
  if (INT_TYPES.has(to)) return Math.trunc(x);
  return x;
}

function foldNode(n: Node, out: Value): ConstTensor | undefined {
  if (n.outputs[0] !== out) return undefined; // only single-output folding
  if (n.opType === "Constant") return foldConstantNode(n);
  if (n.domain !== "" && n.domain !== "ai.onnx") return undefined;
  const ins = n.inputs.map((v) => (v ? constantOf(v) : undefined));
  const c = (i: number) => ins[i];
  const all = () => n.inputs.every((v, i) => !v || ins[i]);
  switch (n.opType) {
    case "Shape": {
      const s = n.inputs[0]?.staticShape;
      if (!s) return undefined;
      const start = n.attrInt("start", 0)!;
      const end = n.attrInt("end", s.length)!;
      const dims = s.slice(start < 0 ? s.length + start : start, end < 0 ? s.length + end : end);
      return { dims: [dims.length], data: Float64Array.from(dims), elemType: 7 };
    }
    case "Size": {
      const s = n.inputs[0]?.staticShape;
      return s ? { dims: [], data: Float64Array.of(size(s)), elemType: 7 } : undefined;
    }
  }
  if (n.opType === "CastLike") {
    // The second input only supplies the element type.
    const src = c(0);
    const to = n.inputs[1]?.type?.elemType;
    return src && to ? { dims: src.dims, data: src.data.map((x) => castValue(x, to)), elemType: to } : undefined;
  }
  if (!all()) return undefined;
  const a = c(0)!;
  switch (n.opType) {
    case "Identity":
      return a;
    case "Cast": {
      const to = n.attrInt("to")!;
      return { dims: a.dims, data: a.data.map((x) => castValue(x, to)), elemType: to };
    }
    case "Neg":
      return unary(a, (x) => -x);
    case "Sqrt":
      return unary(a, Math.sqrt);
    case "Reciprocal":
      return unary(a, (x) => 1 / x);
    case "Exp":
      return unary(a, Math.exp);
    case "Not":
      return unary(a, (x) => (x ? 0 : 1));
    case "Add":
      return binary(a, c(1)!, (x, y) => x + y);
    case "Sub":
      return binary(a, c(1)!, (x, y) => x - y);
    case "Mul":
      return binary(a, c(1)!, (x, y) => x * y);
    case "Div":
      return binary(a, c(1)!, (x, y) => (INT_TYPES.has(a.elemType) ? Math.trunc(x / y) : x / y));
    case "Pow":
      return binary(a, c(1)!, (x, y) => x ** y);
    case "Equal":
      return binary(a, c(1)!, (x, y) => (x === y ? 1 : 0), 9);
    case "Less":
      return binary(a, c(1)!, (x, y) => (x < y ? 1 : 0), 9);
    case "Greater":
      return binary(a, c(1)!, (x, y) => (x > y ? 1 : 0), 9);
    case "Where": {
      const dims = broadcastDims(broadcastDims(a.dims, c(1)!.dims), c(2)!.dims);
      const m = broadcastTo(a, dims),
        x = broadcastTo(c(1)!, dims),
        y = broadcastTo(c(2)!, dims);
      return { dims, data: m.map((mi, i) => (mi ? x[i]! : y[i]!)), elemType: c(1)!.elemType };
    }
    case "Reshape": {
      const shape = Array.from(c(1)!.data);
      const total = a.data.length;
      const dims = shape.map((d, i) => (d === 0 && !n.attrInt("allowzero", 0) ? a.dims[i]! : d));
      const known = dims.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
      return { dims: dims.map((d) => (d === -1 ? total / known : d)), data: a.data, elemType: a.elemType };
    }
    case "Unsqueeze": {
      const axes = (c(1) ? Array.from(c(1)!.data) : (n.attrInts("axes") ?? [])).map((x) =>
        x < 0 ? x + a.dims.length + (c(1)?.data.length ?? 1) : x,
      );
      const dims = [...a.dims];
      for (const ax of [...axes].sort((p, q) => p - q)) dims.splice(ax, 0, 1);
      return { dims, data: a.data, elemType: a.elemType };
    }
    case "Squeeze": {
      const axes = c(1) ? Array.from(c(1)!.data) : n.attrInts("axes");
      const norm = axes?.map((x) => (x < 0 ? x + a.dims.length : x));
      return {
        dims: a.dims.filter((d, i) => (norm ? !norm.includes(i) : d !== 1)),
        data: a.data,
        elemType: a.elemType,
      };
    }
    case "Concat": {
      const parts = ins.filter((t): t is ConstTensor => !!t);
      if (parts.some((p) => p.dims.length !== 1)) return undefined;
      const data = new Float64Array(parts.reduce((s, p) => s + p.data.length, 0));
      let off = 0;
      for (const p of parts) {
        data.set(p.data, off);
        off += p.data.length;
      }
      return { dims: [data.length], data, elemType: a.elemType };
    }
    case "Expand": {
      const dims = broadcastDims(a.dims, Array.from(c(1)!.data));
      return { dims, data: broadcastTo(a, dims), elemType: a.elemType };
    }
    case "Range": {
      const [start, limit, delta] = [a.data[0]!, c(1)!.data[0]!, c(2)!.data[0]!];
      const len = Math.max(Math.ceil((limit - start) / delta), 0);
      return {
        dims: [len],
        data: Float64Array.from({ length: len }, (_, i) => start + i * delta),
        elemType: a.elemType,
      };
    }
    case "Trilu": {
      if (a.dims.length < 2) return undefined;
      const k = c(1) ? c(1)!.data[0]! : 0;
      const upper = n.attrInt("upper", 1) === 1;
      const [r, cols] = a.dims.slice(-2) as [number, number];
      const data = a.data.map((x, i) => {
        const col = i % cols;
        const row = Math.floor(i / cols) % r;
        return (upper ? col - row >= k : col - row <= k) ? x : 0;
      });
      return { dims: a.dims, data, elemType: a.elemType };
    }
    case "Gather": {
      if (a.dims.length !== 1 || n.attrInt("axis", 0) !== 0) return undefined;
      const idx = c(1)!;
      return {
        dims: idx.dims,
        data: idx.data.map((i) => a.data[i < 0 ? i + a.data.length : i]!),
        elemType: a.elemType,
      };
    }
    default:
      return undefined;
  }
}

function foldConstantNode(n: Node): ConstTensor | undefined {
  const a = n.proto.attribute?.[0];
  if (!a) return undefined;
  switch (a.name) {
    case "value":
      return a.t ? fromTensor(a.t) : undefined;
    case "value_float":
      return { dims: [], data: Float64Array.of(a.f ?? 0), elemType: 1 };
    case "value_floats":
      return { dims: [a.floats?.length ?? 0], data: Float64Array.from(a.floats ?? []), elemType: 1 };
    case "value_int":
      return { dims: [], data: Float64Array.of(toNumber(a.i)), elemType: 7 };
    case "value_ints":
      return { dims: [a.ints?.length ?? 0], data: Float64Array.from((a.ints ?? []).map(toNumber)), elemType: 7 };
    default:
      return undefined;
  }
}
