/**
 * Index-ramp evaluation of layout-only subgraphs (a helper of layer-layout, not a pass).
 *
 * A chain of Reshape / Transpose / Split / Concat / Slice / Squeeze / Unsqueeze / Flatten / Gather
 * (constant indices) / Identity only moves elements. Feeding each source tensor an integer ramp
 * (element i of source s holds offset(s) + i) and running the chain tells, for every element of the
 * result, which source element it is: the permutation is read off the graph, never hand-derived.
 * Static shapes are required; shapes, axes, sizes and indices must be constants.
 */
import { constantOf, intsOf, type Node, type Value } from "../src/ir/index.js";
import { check, fail } from "../src/pattern/index.js";

/** Op types that only move elements (standard domain). */
export const LAYOUT_OPS: ReadonlySet<string> = new Set([
  "Reshape",
  "Transpose",
  "Split",
  "Concat",
  "Slice",
  "Squeeze",
  "Unsqueeze",
  "Flatten",
  "Gather",
  "Identity",
]);
/** The evaluator refuses chains whose tensors exceed this many elements (a layer at prefill size is far below). */
export const MAX_RAMP_ELEMENTS = 1 << 24;

export interface Ramp {
  shape: number[];
  data: Int32Array;
}

export const isLayoutNode = (n: Node | undefined): n is Node => !!n && n.domain === "" && LAYOUT_OPS.has(n.opType);

/** The data inputs of a layout node (shape/axes/index operands excluded). */
function dataInputs(n: Node): Value[] {
  if (n.opType === "Concat") return n.inputs.filter((v): v is Value => !!v);
  return n.inputs[0] ? [n.inputs[0]] : [];
}

/**
 * The values a layout chain ending in `v` starts from (the first values, walking back, whose producer
 * is not a layout op), and the layout nodes on the way.
 */
export function layoutSources(v: Value): { sources: Value[]; nodes: Node[] } {
  const sources: Value[] = [];
  const nodes = new Set<Node>();
  const stack = [v];
  const seen = new Set<Value>();
  while (stack.length) {
    const x = stack.pop()!;
    if (seen.has(x)) continue;
    seen.add(x);
    const p = x.producer;
    if (isLayoutNode(p) && !x.initializer) {
      nodes.add(p);
      stack.push(...dataInputs(p));
    } else sources.push(x);
  }
  return { sources, nodes: [...nodes] };
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
function strides(s: readonly number[]): number[] {
  const r = new Array<number>(s.length).fill(1);
  for (let i = s.length - 2; i >= 0; i--) r[i] = r[i + 1]! * s[i + 1]!;
  return r;
}
const normAxis = (a: number, rank: number) => (a < 0 ? a + rank : a);

/** Evaluates layout chains on ramps; `ramps` holds the sources, results are memoised per value. */
export class RampEvaluator {
  private readonly memo = new Map<Value, Ramp>();
  constructor(ramps: Map<Value, Ramp>) {
    for (const [v, r] of ramps) this.memo.set(v, r);
  }

  eval(v: Value): Ramp {
    const hit = this.memo.get(v);
    if (hit) return hit;
    const p = v.producer;
    check(
      isLayoutNode(p),
      "layout",
      `${v.name} is produced by ${p?.opType ?? "nothing"}, not a layout op or a known source`,
      p,
    );
    const outs = this.run(p);
    p.outputs.forEach((o, i) => o && outs[i] && this.memo.set(o, outs[i]!));
    const r = this.memo.get(v);
    check(r, "layout", `${p.opType} ${p.name} gave no value for ${v.name}`, p);
    return r;
  }

  private run(n: Node): (Ramp | undefined)[] {
    const x = this.eval(n.inputs[0]!);
    const rank = x.shape.length;
    switch (n.opType) {
      case "Identity":
        return [x];
      case "Reshape": {
        const target = intsOf(n.inputs[1]);
        check(target, "layout", `the Reshape ${n.name} target is not a constant`, n);
        const allowzero = n.attrInt("allowzero", 0) === 1;
        const dims = target.map((d, i) => (d === 0 && !allowzero ? x.shape[i]! : d));
        const known = size(dims.filter((d) => d !== -1));
        const shape = dims.map((d) => (d === -1 ? size(x.shape) / known : d));
        check(
          size(shape) === x.data.length && shape.every((d) => Number.isInteger(d) && d >= 0),
          "layout",
          `the Reshape ${n.name} to [${target}] does not fit [${x.shape}]`,
          n,
        );
        return [{ shape, data: x.data }];
      }
      case "Flatten": {
        const axis = normAxis(n.attrInt("axis", 1)!, rank);
        return [{ shape: [size(x.shape.slice(0, axis)), size(x.shape.slice(axis))], data: x.data }];
      }
      case "Squeeze":
      case "Unsqueeze": {
        const axes = n.inputs[1] ? intsOf(n.inputs[1]) : n.attrInts("axes");
        if (n.opType === "Squeeze") {
          const ax = (axes ?? x.shape.flatMap((d, i) => (d === 1 ? [i] : []))).map((a) => normAxis(a, rank));
          return [{ shape: x.shape.filter((_, i) => !ax.includes(i)), data: x.data }];
        }
        check(axes, "layout", `the Unsqueeze ${n.name} axes are not constant`, n);
        const outRank = rank + axes.length;
        const ax = axes.map((a) => normAxis(a, outRank));
        const shape: number[] = [];
        for (let i = 0, j = 0; i < outRank; i++) shape.push(ax.includes(i) ? 1 : x.shape[j++]!);
        return [{ shape, data: x.data }];
      }
      case "Transpose": {
        const perm = n.attrInts("perm") ?? x.shape.map((_, i) => rank - 1 - i);
        const st = strides(x.shape);
        return [
          affine(
            x,
            perm.map((p) => x.shape[p]!),
            0,
            perm.map((p) => st[p]!),
          ),
        ];
      }
      case "Slice": {
        const starts = n.inputs[1] ? intsOf(n.inputs[1]) : n.attrInts("starts");
        const ends = n.inputs[2] ? intsOf(n.inputs[2]) : n.attrInts("ends");
        check(starts && ends, "layout", `the Slice ${n.name} bounds are not constant`, n);
        const axes = (n.inputs[3] ? intsOf(n.inputs[3]) : n.attrInts("axes")) ?? starts.map((_, i) => i);
        const steps = (n.inputs[4] ? intsOf(n.inputs[4]) : undefined) ?? starts.map(() => 1);
        const st = strides(x.shape);
        const shape = [...x.shape],
          srcStrides = [...st];
        let base = 0;
        axes.forEach((a0, i) => {
          const a = normAxis(a0, rank),
            d = x.shape[a]!,
            step = steps[i]!;
          check(step > 0, "layout", `the Slice ${n.name} has a negative step`, n);
          const clamp = (v: number) => Math.max(0, Math.min(d, v < 0 ? v + d : v));
          const lo = clamp(starts[i]!),
            hi = clamp(Math.min(ends[i]!, 2 ** 53));
          base += lo * st[a]!;
          srcStrides[a] = step * st[a]!;
          shape[a] = Math.max(0, Math.ceil((hi - lo) / step));
        });
        return [affine(x, shape, base, srcStrides)];
      }
      case "Gather": {
        const idx = constantOf(n.inputs[1]);
        check(idx, "layout", `the Gather ${n.name} indices are not constant`, n);
        const axis = normAxis(n.attrInt("axis", 0)!, rank);
        const d = x.shape[axis]!;
        const picks = Array.from(idx.data, (i) => (i < 0 ? i + d : i));
        const shape = [...x.shape.slice(0, axis), ...idx.dims, ...x.shape.slice(axis + 1)];
        const k = idx.dims.length;
        const st = strides(idx.dims);
        return [
          gatherBy(x, shape, (o) => {
            let flat = 0;
            for (let i = 0; i < k; i++) flat += o[axis + i]! * st[i]!;
            return [...o.slice(0, axis), picks[flat]!, ...o.slice(axis + k)];
          }),
        ];
      }
      case "Split": {
        const axis = normAxis(n.attrInt("axis", 0)!, rank);
        const d = x.shape[axis]!;
        const count = n.outputs.length;
        let sizes = (n.inputs[1] ? intsOf(n.inputs[1]) : n.attrInts("split")) ?? undefined;
        if (!sizes) {
          const each = Math.ceil(d / count);
          sizes = Array.from({ length: count }, (_, i) => Math.max(0, Math.min(each, d - i * each)));
        }
        check(
          sizes.length === count && sizes.reduce((a, b) => a + b, 0) === d,
          "layout",
          `the Split ${n.name} sizes [${sizes}] do not cover ${d}`,
          n,
        );
        const st = strides(x.shape);
        let start = 0;
        return sizes.map((s) => {
          const shape = [...x.shape];
          shape[axis] = s;
          const r = affine(x, shape, start * st[axis]!, st);
          start += s;
          return r;
        });
      }
      case "Concat": {
        const parts = n.inputs.filter((v): v is Value => !!v).map((v) => this.eval(v));
        const axis = normAxis(n.attrInt("axis", 0)!, rank);
        const shape = [...x.shape];
        shape[axis] = parts.reduce((a, p) => a + p.shape[axis]!, 0);
        const outer = size(shape.slice(0, axis)),
          inner = size(shape.slice(axis + 1));
        const out = new Int32Array(size(shape));
        let f = 0;
        for (let o = 0; o < outer; o++)
          for (const p of parts) {
            const block = p.shape[axis]! * inner;
            out.set(p.data.subarray(o * block, o * block + block), f);
            f += block;
          }
        return [{ shape, data: out }];
      }
      default:
        fail("layout", `${n.opType} is not a layout op`, n);
    }
  }
}

function at(x: Ramp, idx: number[]): number {
  const st = strides(x.shape);
  let f = 0;
  for (let i = 0; i < idx.length; i++) f += idx[i]! * st[i]!;
  return x.data[f]!;
}

/** out[o] = x.data[base + sum_a o[a] * srcStrides[a]] over every index o of `shape` (no allocation per element). */
function affine(x: Ramp, shape: number[], base: number, srcStrides: number[]): Ramp {
  const n = size(shape);
  if (n > MAX_RAMP_ELEMENTS) fail("layout", `a layout tensor of ${n} elements is too large to evaluate`);
  const out = new Int32Array(n);
  const rank = shape.length;
  if (n === 0) return { shape, data: out };
  const idx = new Array<number>(rank).fill(0);
  let src = base;
  for (let f = 0; f < n; f++) {
    out[f] = x.data[src]!;
    for (let a = rank - 1; a >= 0; a--) {
      src += srcStrides[a]!;
      if (++idx[a]! < shape[a]!) break;
      src -= srcStrides[a]! * shape[a]!;
      idx[a] = 0;
    }
  }
  return { shape, data: out };
}

/** out[o] = x[src(o)] over every index o of `shape`. */
function gatherBy(x: Ramp, shape: number[], src: (o: number[]) => number[]): Ramp {
  const n = size(shape);
  if (n > MAX_RAMP_ELEMENTS) fail("layout", `a layout tensor of ${n} elements is too large to evaluate`);
  const out = new Int32Array(n);
  const st = strides(shape);
  for (let f = 0; f < n; f++) out[f] = at(x, src(st.map((s, i) => Math.floor(f / s) % shape[i]!)));
  return { shape, data: out };
}

/** Ramps for sources with these shapes: source s holds offsets[s] + i; `locate` inverts an element. */
export function rampsFor(sources: { value: Value; shape: number[] }[]): {
  ramps: Map<Value, Ramp>;
  locate: (id: number) => { source: number; index: number[] };
} {
  const ramps = new Map<Value, Ramp>();
  const offsets: number[] = [];
  let total = 0;
  for (const { value, shape } of sources) {
    const n = size(shape);
    if (total + n > MAX_RAMP_ELEMENTS)
      fail("layout", `the layer's layout tensors exceed ${MAX_RAMP_ELEMENTS} elements; too large to evaluate`);
    offsets.push(total);
    const data = new Int32Array(n);
    for (let i = 0; i < n; i++) data[i] = total + i;
    ramps.set(value, { shape, data });
    total += n;
  }
  const st = sources.map(({ shape }) => strides(shape));
  const locate = (id: number) => {
    let s = offsets.length - 1;
    while (s > 0 && offsets[s]! > id) s--;
    let rest = id - offsets[s]!;
    const k = st[s]!;
    const index = new Array<number>(k.length);
    for (let a = 0; a < k.length; a++) {
      index[a] = Math.floor(rest / k[a]!);
      rest -= index[a]! * k[a]!;
    }
    return { source: s, index };
  };
  return { ramps, locate };
}

export { strides as rowMajorStrides };
