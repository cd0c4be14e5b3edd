/**
 * What the layer-level passes share: the candidate loop (a MatchFailure becomes a skipped entry
 * with its stage, reason and node), rewiring one input of an existing node, tagging new nodes,
 * and small constant readers. The layer passes run after the cores, so the fused core nodes
 * (gdn.ChunkGatedDeltaRule / gdn.RecurrentGatedDeltaRule) are their anchors where they can be.
 */
import type { Graph, Node, NewNode, Value } from "../src/ir/graph.js";
import { constantOf, scalarOf } from "../src/ir/constant.js";
import { setNodeMetadata } from "../src/ir/onnx.js";
import { check } from "../src/pattern/match.js";
import { CREATED_BY_KEY, type PassContext } from "../src/pipeline/pass.js";
import { GDN_DOMAIN, GDN_OPSET, GdnOp } from "../src/ops.js";

export const FLOAT = 1;

// ---- shapes with symbolic dims -------------------------------------------------------------------
// Real exports have a dynamic batch: a dim_param such as "batch" on dim 0. Value.staticShape is then
// undefined, so the layer passes read the dims they need one by one (heads, channels, head sizes, T,
// S must be numbers) and compare whole shapes dim by dim: a symbolic dim equals only the same symbol.

/** A declared dim: a number, a symbol (dim_param, e.g. "batch"), or unknown. */
export type Dim = number | string | undefined;

/** The declared shape of v (symbolic dims kept), or undefined when its rank is unknown. */
export function dimsOf(v: Value | undefined): Dim[] | undefined {
  return v?.type?.shape;
}

/** Dim i of v (negative: from the end) when it is a number; undefined when symbolic or unknown. */
export function staticDim(v: Value | undefined, i: number): number | undefined {
  const s = v?.type?.shape;
  if (!s) return undefined;
  const d = s[i < 0 ? i + s.length : i];
  return typeof d === "number" ? d : undefined;
}

/** Two dims are the same when both are the same number or the same symbol (unknown is never the same). */
export const sameDim = (a: Dim, b: Dim): boolean => a !== undefined && a === b;

/** Whole shapes equal dim by dim (same rank; symbolic dims equal only to the same symbol). */
export function sameDims(a: readonly Dim[] | undefined, b: readonly Dim[] | undefined): boolean {
  return !!a && !!b && a.length === b.length && a.every((d, i) => sameDim(d, b[i]));
}

/** A shape for a reason text: [batch,1,4,16]; "?" for an unknown dim; "unknown rank" without a shape. */
export function showDims(s: readonly Dim[] | undefined): string {
  return s ? `[${s.map((d) => d ?? "?").join(",")}]` : "[unknown rank]";
}

/**
 * The output dims of Reshape(x, target) for x of dims `input` (symbols allowed). 0 copies the input
 * dim (allowzero=0); -1 takes what is left, which is a symbol only when exactly one input symbol is
 * left over and the numeric rest divides out to 1. Undefined when that cannot be told statically (an
 * unknown input dim, a product of symbols, a symbol not carried over) or the sizes do not fit.
 */
export function reshapeDims(input: readonly Dim[], target: readonly number[], allowzero = false): Dim[] | undefined {
  if (input.some((d) => d === undefined)) return undefined;
  const out: Dim[] = target.map((d, i) => (d === 0 && !allowzero ? input[i] : d));
  if (out.some((d) => d === undefined)) return undefined;
  const symbols = input.filter((d): d is string => typeof d === "string");
  let inNum = input.reduce<number>((a, d) => a * (typeof d === "number" ? d : 1), 1);
  for (const d of out) {
    if (typeof d !== "string") continue;
    const i = symbols.indexOf(d);
    if (i < 0) return undefined;
    symbols.splice(i, 1);
  }
  const outNum = out.reduce<number>((a, d) => a * (typeof d === "number" && d !== -1 ? d : 1), 1);
  const free = out.filter((d) => d === -1).length;
  if (free > 1) return undefined;
  if (free === 0) return symbols.length === 0 && inNum === outNum ? out : undefined;
  if (outNum === 0 || inNum % outNum !== 0) return undefined;
  inNum /= outNum;
  const rest: Dim = symbols.length === 0 ? inNum : symbols.length === 1 && inNum === 1 ? symbols[0] : undefined;
  return rest === undefined ? undefined : out.map((d) => (d === -1 ? rest : d));
}
const INT64_MAX_ISH = 2 ** 62;

/** The candidate loop all passes share. */
export { forEachCandidate } from "../src/pipeline/candidates.js";

/** Nodes of a standard-domain op type. */
export function nodesOf(g: Graph, opType: string): Node[] {
  return g.nodes.filter((n) => n.opType === opType && n.domain === "");
}

/** The fused gated-delta cores (chunked and recurrent). */
export function coreNodes(g: Graph): Node[] {
  return g.nodes.filter((n) => n.domain === GDN_DOMAIN && (n.opType === GdnOp.ChunkGatedDeltaRule || n.opType === GdnOp.RecurrentGatedDeltaRule));
}

/** Replaces input i of an existing node. */
export function setInput(n: Node, i: number, v: Value | undefined): void {
  const old = n.inputs[i];
  n.inputs[i] = v;
  if (old && !n.inputs.includes(old)) old.consumers.delete(n);
  v?.consumers.add(n);
}

/** Adds a node tagged with the pass that made it. */
export function addTagged(g: Graph, pass: string, spec: NewNode): Node {
  const n = g.addNode(spec);
  setNodeMetadata(n.proto, CREATED_BY_KEY, pass);
  return n;
}

/** Adds a gdn-domain node (tagged; declares the gdn opset). */
export function addGdnNode(ctx: PassContext, pass: string, spec: Omit<NewNode, "domain">): Node {
  ctx.requireOpset(GDN_DOMAIN, GDN_OPSET);
  return addTagged(ctx.graph, pass, { ...spec, domain: GDN_DOMAIN });
}

/** Integer constant (list), or undefined. */
export function intsOf(v: Value | undefined): number[] | undefined {
  const c = constantOf(v);
  return c ? Array.from(c.data) : undefined;
}

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
  for (const [a, b] of [[0, 1], [1, 0]] as const) {
    const s = mul.inputs[b]?.producer;
    if (s && s.opType === "Sigmoid" && s.domain === "" && s.inputs[0] === mul.inputs[a]) return mul.inputs[a];
  }
  return undefined;
}

/** Slice parameters on one axis, when starts/ends/axes/steps are constants (axes normalised to >= 0). */
export function sliceOf(n: Node): { start: number; end: number; axis: number; step: number } | undefined {
  if (n.opType !== "Slice" || n.domain !== "") return undefined;
  const rank = n.inputs[0]?.rank;
  const starts = n.inputs[1] ? intsOf(n.inputs[1]) : n.attrInts("starts");
  const ends = n.inputs[2] ? intsOf(n.inputs[2]) : n.attrInts("ends");
  const axes = n.inputs[3] ? intsOf(n.inputs[3]) : n.attrInts("axes") ?? starts?.map((_, i) => i);
  const steps = n.inputs[4] ? intsOf(n.inputs[4]) : starts?.map(() => 1);
  if (!starts || !ends || !axes || !steps || starts.length !== 1 || ends.length !== 1 || axes.length !== 1 || steps.length !== 1) return undefined;
  const axis = axes[0]! < 0 && rank !== undefined ? axes[0]! + rank : axes[0]!;
  return { start: starts[0]!, end: Math.min(ends[0]!, INT64_MAX_ISH), axis, step: steps[0]! };
}

/** Resolves a Slice start/end against a dim (negative from the end, clamped). */
export function resolveIndex(i: number, dim: number): number {
  const r = i < 0 ? i + dim : i;
  return Math.max(0, Math.min(dim, r));
}

/** A scalar constant or a constant every element of which equals one value. */
export function uniformScalar(v: Value | undefined): number | undefined {
  const s = scalarOf(v);
  if (s !== undefined) return s;
  const c = constantOf(v);
  if (!c || c.data.length === 0) return undefined;
  const x = c.data[0]!;
  return c.data.every((y) => y === x) ? x : undefined;
}

/** Checks a value has a float32 element type (stage/reason for the failure). */
export function checkFloat32(v: Value | undefined, stage: string, what: string, node?: Node): void {
  const t = v?.type?.elemType;
  check(t === FLOAT, stage, `${what} has element type ${t ?? "unknown"}; only float32 is fused by this pass`, node);
}

/** Element types the gdn layer ops take for activations (docs/ops.md: float32, float16, bfloat16). */
export const FLOAT_TYPES: ReadonlySet<number> = new Set([1, 10, 16]);
const TYPE_NAMES: Record<number, string> = { 1: "float32", 10: "float16", 16: "bfloat16" };
export const typeName = (t: number | undefined) => (t === undefined ? "unknown" : TYPE_NAMES[t] ?? `type ${t}`);

/** Checks a value is float32, float16 or bfloat16 (what the gdn layer ops accept). */
export function checkFloatType(v: Value | undefined, stage: string, what: string, node?: Node): number {
  const t = v?.type?.elemType;
  check(t !== undefined && FLOAT_TYPES.has(t), stage, `${what} has element type ${typeName(t)}; the gdn ops take float32, float16 or bfloat16`, node);
  return t;
}

export const fusedOp = (n: Node) => `${n.domain || "ai.onnx"}.${n.opType}`;

/**
 * Sets a value's element type and shape, and writes it to the graph's value_info (created or
 * updated), so the type survives a save/load between passes (the lowering reads head counts from it).
 * A string dim is written as a dim_param (a symbolic batch), an undefined one as an unknown dim.
 */
export function declareType(g: Graph, v: Value, elemType: number, shape: readonly Dim[]): void {
  v.type = { elemType, shape: [...shape] };
  const dim = shape.map((d) => (typeof d === "number" ? { dimValue: d } : typeof d === "string" ? { dimParam: d } : {}));
  const type = { tensorType: { elemType, shape: { dim } } };
  if (v.valueInfo) {
    v.valueInfo.type = type;
    return;
  }
  if (v.isGraphInput || v.isGraphOutput) return;
  v.valueInfo = { name: v.name, type };
  (g.proto.valueInfo ??= []).push(v.valueInfo);
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
  return t === 10 || t === 16 ? src : undefined;
}

/** The sole consumer of `v` when it is a Cast to `to` (any type when `to` is omitted). */
export function castConsumer(v: Value, to?: number): Node | undefined {
  const c = soleConsumer(v);
  const t = castTarget(c);
  return t !== undefined && (to === undefined || t === to) ? c : undefined;
}
