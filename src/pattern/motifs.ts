/**
 * Matching motifs the passes share: small shapes of the exported graph (a SiLU, a Slice on one axis, a
 * Cast around half-precision code, an L2 norm) recognised in every operand order the exporter emits,
 * and element-type checks that fail with a reason.
 */
import type { Node, Value } from "../ir/graph.js";
import { constantOf, scalarOf } from "../ir/constant.js";
import { intsOf } from "../ir/edit.js";
import { BFLOAT16, FLOAT, FLOAT16, FLOAT_TYPES, typeName } from "../ops.js";
import { check } from "./match.js";

/** The other operand of a binary node, given one of them. */
export function otherInput(n: Node, v: Value): Value | undefined {
  if (n.inputs[0] === v) return n.inputs[1];
  if (n.inputs[1] === v) return n.inputs[0];
  return undefined;
}

/** The only consumer of v, or undefined. */
export function soleConsumer(v: Value): Node | undefined {
  return v.consumers.size === 1 ? [...v.consumers][0] : undefined;
}

/** Whether `mul` computes x * sigmoid(x) (SiLU), in either operand order; returns x. */
export function siluInput(mul: Node | undefined): Value | undefined {
  if (!mul || mul.opType !== "Mul" || mul.domain !== "") return undefined;
  for (const [a, b] of [
    [0, 1],
    [1, 0],
  ] as const) {
    const s = mul.inputs[b]?.producer;
    if (s && s.opType === "Sigmoid" && s.domain === "" && s.inputs[0] === mul.inputs[a]) return mul.inputs[a];
  }
  return undefined;
}

const INT64_MAX_ISH = 2 ** 62;

/** Slice parameters on one axis, when starts/ends/axes/steps are constants (axes normalised to >= 0). */
export function sliceOf(n: Node): { start: number; end: number; axis: number; step: number } | undefined {
  if (n.opType !== "Slice" || n.domain !== "") return undefined;
  const rank = n.inputs[0]?.rank;
  const starts = n.inputs[1] ? intsOf(n.inputs[1]) : n.attrInts("starts");
  const ends = n.inputs[2] ? intsOf(n.inputs[2]) : n.attrInts("ends");
  const axes = n.inputs[3] ? intsOf(n.inputs[3]) : (n.attrInts("axes") ?? starts?.map((_, i) => i));
  const steps = n.inputs[4] ? intsOf(n.inputs[4]) : starts?.map(() => 1);
  const single = [starts, ends, axes, steps].every((a) => a?.length === 1);
  if (!starts || !ends || !axes || !steps || !single) return undefined;
  const axis = axes[0]! < 0 && rank !== undefined ? axes[0]! + rank : axes[0]!;
  return { start: starts[0]!, end: Math.min(ends[0]!, INT64_MAX_ISH), axis, step: steps[0]! };
}

/** Resolves a Slice start/end against a dim (negative from the end, clamped). */
export function resolveIndex(i: number, dim: number): number {
  const r = i < 0 ? i + dim : i;
  return Math.max(0, Math.min(dim, r));
}

/** A standard Cast node's target element type, or undefined when `n` is not one. */
export function castTarget(n: Node | undefined): number | undefined {
  return n && n.opType === "Cast" && n.domain === "" ? n.attrInt("to") : undefined;
}

/**
 * HF's half-precision layers compute in float32 and cast around it (`x.float()`, `.to(input_dtype)`).
 * When `v` is Cast(to=float32) of a float16/bfloat16 value, returns that value: a gdn op that takes
 * the half-precision value and accumulates in float32 (docs/ops.md) computes the same thing, since
 * widening to float32 is exact.  Otherwise undefined.
 */
export function widenedFrom(v: Value | undefined): Value | undefined {
  const p = v?.producer;
  const src = p?.inputs[0];
  if (castTarget(p) !== FLOAT || !src) return undefined;
  const t = src.type?.elemType;
  return t === FLOAT16 || t === BFLOAT16 ? src : undefined;
}

/** The sole consumer of `v` when it is a Cast to `to` (any type when `to` is omitted). */
export function castConsumer(v: Value, to?: number): Node | undefined {
  const c = soleConsumer(v);
  const t = castTarget(c);
  return t !== undefined && (to === undefined || t === to) ? c : undefined;
}

/** The sole consumer of `v` when it is a Cast; fails at `stage` when that Cast is not to a float type. */
export function floatCastConsumer(v: Value, stage: string, what: string): Node | undefined {
  const c = castConsumer(v);
  if (c)
    check(
      FLOAT_TYPES.has(c.attrInt("to")!),
      stage,
      `${what} is cast to ${typeName(c.attrInt("to"))}, not a float type`,
      c,
    );
  return c;
}

/** Checks a value is float32, float16 or bfloat16 (what the gdn layer ops accept); returns the type. */
export function checkFloatType(v: Value | undefined, stage: string, what: string, node?: Node): number {
  const t = v?.type?.elemType;
  const reason = `${what} has element type ${typeName(t)}; the gdn ops take float32, float16 or bfloat16`;
  check(t !== undefined && FLOAT_TYPES.has(t), stage, reason, node);
  return t;
}

export interface L2normMatch {
  out: Value;
  eps: number;
  node: Node;
  nodes: Node[];
}

/**
 * x * rsqrt(sum(x*x, -1, keepdims) + eps) in the forms the exporter emits:
 * Mul(x,x) | Pow(x,2) -> ReduceSum -> Add(eps) -> Sqrt -> Reciprocal -> Mul(x, .)   (or Div(x, Sqrt))
 */
export function matchL2norm(x: Value): L2normMatch | undefined {
  for (const sq of x.consumers) {
    const isSquare =
      (sq.opType === "Mul" && sq.inputs[0] === x && sq.inputs[1] === x) ||
      (sq.opType === "Pow" && sq.inputs[0] === x && scalarOf(sq.inputs[1]) === 2);
    if (!isSquare) continue;
    const sum = [...sq.output().consumers][0];
    if (!sum || sum.opType !== "ReduceSum" || sq.output().consumers.size !== 1) continue;
    const axes = sum.inputs[1] ? constantOf(sum.inputs[1])?.data : sum.attrInts("axes");
    const rank = x.rank ?? 4;
    const lastAxis = axes?.length === 1 && (axes[0] === -1 || axes[0] === rank - 1);
    if (!lastAxis || sum.attrInt("keepdims", 1) !== 1) continue;
    const add = [...sum.output().consumers][0];
    if (!add || add.opType !== "Add") continue;
    const epsV = add.inputs[0] === sum.output() ? add.inputs[1] : add.inputs[0];
    const eps = scalarOf(epsV);
    if (eps === undefined) continue;
    const sqrt = [...add.output().consumers][0];
    if (!sqrt || sqrt.opType !== "Sqrt") continue;
    const next = [...sqrt.output().consumers][0];
    if (next?.opType === "Reciprocal") {
      const mul = [...next.output().consumers][0];
      if (mul?.opType === "Mul" && mul.inputs.includes(x) && mul.inputs.includes(next.output()))
        return { out: mul.output(), eps, node: add, nodes: [sq, sum, add, sqrt, next, mul] };
    } else if (next?.opType === "Div" && next.inputs[0] === x && next.inputs[1] === sqrt.output()) {
      return { out: next.output(), eps, node: add, nodes: [sq, sum, add, sqrt, next] };
    }
  }
  return undefined;
}
