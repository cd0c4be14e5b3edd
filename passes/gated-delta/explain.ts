/**
 * Accounts for every node of a core region: each node must be typed by one rule below, or the
 * candidate is refused naming the node, its op and the value it sits on. A fusion is a proof, not a
 * guess: the fused op replaces exactly what these rules explain, node by node.
 *
 * Values are typed by their sources: which of query, key, value, g, beta and the state they are
 * computed from. Rules are split by what an op can do to the numbers:
 *  - layout ops (Transpose, Reshape, Slice, Gather, Scatter*, ...) only move or select elements;
 *    their index constants are checked where the algorithm fixes them (padding, the solve rows);
 *  - arithmetic ops must each be one step of the gated delta rule, with their constants and operand
 *    order checked (l2norm, scale, decay, masks, eye, delta Sub, state products);
 *  - any other op (Clip, Min, Relu, ...) is not part of the algorithm.
 */
import { constantOf, isConstantValue, type Node, scalarOf, type Value } from "../../src/ir/index.js";
import { check, fail, permOf } from "../../src/pattern/index.js";

export const SOURCES = ["query", "key", "value", "g", "beta", "state"] as const;
export type Source = (typeof SOURCES)[number];
const bit = (s: Source) => 1 << SOURCES.indexOf(s);
const G = bit("g");
const STATE = bit("state");

/** Ops that only move, select, copy or convert elements (never combine two of them). */
const LAYOUT_OPS = new Set([
  "Transpose",
  "Reshape",
  "Slice",
  "Gather",
  "Unsqueeze",
  "Squeeze",
  "Concat",
  "Pad",
  "ScatterND",
  "ScatterElements",
  "Identity",
  "Expand",
  "Shape",
  "Range",
  "Cast",
]);

export interface ExplainInput {
  kind: "chunk" | "recurrent";
  /** Region nodes (including the final-state nodes and constant helpers). */
  nodes: ReadonlySet<Node>;
  /** The value each source enters the region by (entry Transpose outputs, the state or zeros). */
  sources: Map<Value, Source>;
  /** The exit Transpose (time back before heads). */
  exit: Node;
  /** Nodes already typed by the motif matchers (l2norm, scale). */
  motifs: Map<Node, string>;
  /** The zeros the core starts from when it has no state input. */
  stateConst?: Value;
  /** Chunked form: the CumSum of g and the chunk size. */
  cumsum?: Node;
  chunkSize?: number;
  /** Tokens: the recurrent form unrolls T steps, the chunked form ceil(T / chunkSize) chunks. */
  T: number;
  /** Whether the final state is an output (without it, the last state update is dead and not exported). */
  hasFinalState: boolean;
}

/** The rule that explains each node. Throws a MatchFailure naming the first node no rule explains. */
export function explainRegion(x: ExplainInput): Map<Node, string> {
  const order = topoOrder(x.nodes);
  const src = sourceBits(order, x);
  const rules = new Map<Node, string>();
  for (const n of order) rules.set(n, explainNode(n, x, src, rules));
  checkStepCounts(rules, x);
  checkDistinctGathers(order);
  return rules;
}

/**
 * The unrolled loops read chunk c (token t) of a [B,H,N,...] tensor with Gather(x, c, axis 2): two
 * such Gathers of one value never read the same index (a loop step reading another step's slice does).
 * Rows of the solve (axis 3) are checked by the chunk pass.
 */
function checkDistinctGathers(order: Node[]): void {
  const seen = new Map<string, Node>();
  for (const n of order) {
    if (n.opType !== "Gather" || n.attrInt("axis", 0) !== 2 || !n.inputs[0] || isConstantValue(n.inputs[0])) continue;
    const i = isConstantValue(n.inputs[1]) ? scalarOf(n.inputs[1]) : undefined;
    if (i === undefined) continue;
    const key = `${n.inputs[0].name}|${i}`;
    const other = seen.get(key);
    check(
      !other,
      "loop",
      `${n.name} and ${other?.name} both gather index ${i} of ${n.inputs[0].name}; each loop step reads its own slice`,
      n,
    );
    seen.set(key, n);
  }
}

/** Steps the algorithm has a fixed number of: a removed or duplicated one fails here. */
function checkStepCounts(rules: Map<Node, string>, x: ExplainInput): void {
  const count = (rule: string) => [...rules.values()].filter((r) => r === rule).length;
  const C = x.chunkSize ?? 1;
  const N = Math.ceil(x.T / C);
  // one state update per chunk (per token), the last one only when the final state is an output
  const updates = (x.kind === "chunk" ? N : x.T) - (x.hasFinalState ? 0 : 1);
  const expected: [string, number, string][] =
    x.kind === "chunk"
      ? [
          ["g_cum", 1, "cumulative sum of g"],
          ["decay_diff", 1, "decay difference g_i - g_j"],
          ["decay_mask", 1, "decay mask"],
          ["attn_mask", 1, "K K^T mask"],
          ["attn_neg", 1, "negation of attn"],
          ["eye", 1, "identity added to attn"],
          ["row_sum", C - 1, "solve row sum"],
          ["delta", N, "delta Sub v - prediction"],
          ["scale", 1, "query scale"],
          ["state_decay", updates, "state decay S * exp(g_last)"],
          ["state_update", updates, "state update S + k^T v_new"],
        ]
      : [
          ["decay", x.T, "state decay exp(g_t)"],
          ["delta", x.T, "delta Sub v - prediction"],
          ["row_sum", 2 * x.T, "sum over the state rows"],
          ["scale", 1, "query scale"],
          ["state_decay", updates, "state decay S * exp(g_t)"],
          ["state_update", updates, "state update S + k_t delta^T"],
        ];
  const anchor = x.cumsum ?? [...rules.keys()][0];
  for (const [rule, n, what] of expected) {
    const got = count(rule);
    check(
      got === n,
      "steps",
      `the region has ${got} ${what} step${got === 1 ? "" : "s"}; ${x.kind === "chunk" ? `chunks of ${C} over ${x.T} tokens need` : `${x.T} tokens need`} ${n}`,
      anchor,
    );
  }
}

/** The region's nodes, producers before consumers (the node list may be in any order). */
function topoOrder(nodes: ReadonlySet<Node>): Node[] {
  const out: Node[] = [];
  const done = new Set<Node>();
  for (const root of nodes) {
    const stack: [Node, boolean][] = [[root, false]];
    while (stack.length) {
      const [n, expanded] = stack.pop()!;
      if (done.has(n)) continue;
      if (expanded) {
        done.add(n);
        out.push(n);
        continue;
      }
      stack.push([n, true]);
      for (const v of n.inputs)
        if (v?.producer && nodes.has(v.producer) && !done.has(v.producer)) stack.push([v.producer, false]);
    }
  }
  return out;
}

/** Bit set of the sources each value is computed from (0 for constants). */
function sourceBits(order: Node[], x: ExplainInput): (v: Value | undefined) => number {
  const bits = new Map<Value, number>();
  for (const [v, s] of x.sources) bits.set(v, bit(s));
  if (x.stateConst) bits.set(x.stateConst, STATE);
  const of = (v: Value | undefined) => (v ? (bits.get(v) ?? 0) : 0);
  for (const n of order) {
    const b = n.inputs.reduce((acc, v) => acc | of(v), 0);
    for (const o of n.outputs) if (o && !bits.has(o)) bits.set(o, b);
  }
  return of;
}

/** "value", or "query, key and beta" for a value computed from several sources. */
export function describeSources(b: number): string {
  const names = SOURCES.filter((s) => b & bit(s));
  if (names.length === 0) return "a constant";
  if (names.length === 1) return names[0]!;
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

type Bits = (v: Value | undefined) => number;

function explainNode(n: Node, x: ExplainInput, src: Bits, rules: ReadonlyMap<Node, string>): string {
  const motif = x.motifs.get(n);
  if (motif) return motif;
  if (n.outputs.every((o) => !o || isConstantValue(o))) return "constant"; // evaluated and checked where used
  const on = describeSources(n.inputs.reduce((acc, v) => acc | src(v), 0));
  const refuse = (why = "is not part of the gated delta rule"): never =>
    fail("region", `${n.opType} ${n.name} on ${on} ${why}`, n);
  if (n.domain !== "" && n.domain !== "ai.onnx") refuse();
  if (n.opType === "Transpose") return explainTranspose(n, x, src, refuse);
  if (LAYOUT_OPS.has(n.opType)) return explainLayout(n, x, refuse);
  const data = n.inputs.filter((v) => v && !isConstantValue(v)) as Value[];
  const consts = n.inputs.filter((v) => v && isConstantValue(v)) as Value[];
  const isStateConst = (v: Value) => v === x.stateConst;
  switch (n.opType) {
    case "Mul":
    case "Add":
    case "MatMul":
      // Products and sums of two computed terms: k*beta, v*beta, q K^T, attn @ v, S*exp(g), S + k u^T.
      // A constant operand is only ever the zeros the state starts from; the scale, eps and eye are motifs.
      // The same value twice (x*x, x+x) is only the l2norm's square, a motif.
      if (data.length === 2 && data[0] === data[1])
        return refuse("squares or doubles one value; the algorithm never does");
      if (data.length === 2 || (data.length === 1 && consts.length === 1 && isStateConst(consts[0]!))) {
        const [a, b] = [n.inputs[0], n.inputs[1]];
        // S * exp(g): the state times a g-only factor; S' + update: the Add that reads a decayed state
        if (n.opType === "Mul" && ((src(a) & STATE && src(b) === G) || (src(b) & STATE && src(a) === G)))
          return "state_decay";
        if (n.opType === "Add" && [a, b].some((v) => v?.producer && rules.get(v.producer) === "state_decay"))
          return "state_update";
        return "product";
      }
      if (n.opType === "Add" && x.kind === "chunk" && isEyeAdd(n, x.chunkSize!)) return "eye";
      return refuse();
    case "Sub":
      return explainSub(n, x, src, refuse);
    case "Exp":
      // exp of g terms only: the decay factors.
      if (src(n.inputs[0]) === G) return "decay";
      return refuse();
    case "ReduceSum":
      return explainReduceSum(n, refuse);
    case "CumSum":
      if (n === x.cumsum) return "g_cum";
      return refuse();
    case "Where":
      // masked_fill(triu(ones, 1), -inf) of the decay; the mask's content is checked in the chunk pass.
      if (
        x.kind === "chunk" &&
        isChunkMask(n.inputs[0], x.chunkSize!) &&
        scalarOf(n.inputs[1]) !== undefined &&
        src(n.inputs[2]) === G
      )
        return "decay_mask";
      return refuse();
    case "Trilu":
      // the strictly lower K K^T product (its k and upper attributes are checked in the chunk pass).
      if (x.kind === "chunk" && data.length === 1 && data[0] === n.inputs[0]) return "attn_mask";
      return refuse();
    case "Neg":
      // attn = -(masked K K^T): the only negation of the algorithm.
      if (x.kind === "chunk" && n.inputs[0]?.producer?.opType === "Trilu") return "attn_neg";
      return refuse();
    default:
      return refuse();
  }
}

function isChunkMask(v: Value | undefined, C: number): boolean {
  const c = isConstantValue(v) ? constantOf(v) : undefined;
  return !!c && c.dims.length >= 2 && c.dims.slice(-2).join() === `${C},${C}`;
}

/** attn + eye: the constant must be exactly the C x C identity. */
function isEyeAdd(n: Node, C: number): boolean {
  const cv = n.inputs.find((v) => isConstantValue(v));
  const c = constantOf(cv);
  if (!c || c.dims.slice(-2).join() !== `${C},${C}` || c.data.length !== C * C) return false;
  for (let i = 0; i < C; i++)
    for (let j = 0; j < C; j++)
      if (c.data[i * C + j] !== (i === j ? 1 : 0))
        fail("eye", `the identity added to attn differs at row ${i}, column ${j}`, n);
  return true;
}

/**
 * The three subtractions of the algorithm, each with its operand order:
 *  - decay:  g_i - g_j      = Unsqueeze(g_cum, -1) - Unsqueeze(g_cum, -2)
 *  - last:   g_last - g     = (a one-element slice of g_cum) - g_cum
 *  - delta:  v - (state prediction): operands differ in state dependence (order checked by the delta-rule check)
 */
function explainSub(n: Node, x: ExplainInput, src: Bits, refuse: (why?: string) => never): string {
  const [a, b] = n.inputs;
  const [sa, sb] = [src(a), src(b)];
  if ((sa & STATE) !== (sb & STATE) && !isConstantValue(a) && !isConstantValue(b)) return "delta";
  if (x.kind !== "chunk" || sa !== G || sb !== G) return refuse();
  const ua = unsqueezeAxis(a),
    ub = unsqueezeAxis(b);
  if (ua !== undefined && ub !== undefined) {
    const rank = (a?.producer?.inputs[0]?.rank ?? 4) + 1;
    const norm = (ax: number) => (ax < 0 ? ax + rank : ax);
    check(
      norm(ua) === rank - 1 && norm(ub) === rank - 2,
      "decay",
      `the decay Sub computes g_j - g_i (Unsqueeze axes ${ua} and ${ub}); g_i - g_j = g[..., :, None] - g[..., None, :] expected`,
      n,
    );
    return "decay_diff";
  }
  if (b?.producer === x.cumsum && isLastSlice(a, x.chunkSize!)) return "decay_last";
  return refuse("is not a subtraction of the gated delta rule (g_i - g_j, g_last - g, or v - prediction)");
}

function unsqueezeAxis(v: Value | undefined): number | undefined {
  const p = v?.producer;
  if (p?.opType !== "Unsqueeze") return undefined;
  const axes = p.inputs[1] ? constantOf(p.inputs[1])?.data : p.attrInts("axes");
  return axes && axes.length === 1 ? Number(axes[0]) : undefined;
}

/** g_cum[..., -1:] (or index C-1): the last element of each chunk. */
function isLastSlice(v: Value | undefined, C: number): boolean {
  const p = v?.producer;
  if (!p) return false;
  if (p.opType === "Slice") {
    const s = constantOf(p.inputs[1])?.data,
      e = constantOf(p.inputs[2])?.data;
    return !!s && !!e && s.length === 1 && (s[0] === -1 || s[0] === C - 1) && e[0]! >= C;
  }
  if (p.opType === "Unsqueeze" || p.opType === "Identity") return isLastSlice(p.inputs[0], C);
  if (p.opType === "Gather") {
    const i = scalarOf(p.inputs[1]);
    return i === -1 || i === C - 1;
  }
  return false;
}

/** sum over the second-to-last axis: the solve rows' (row * sub).sum(-2), and the recurrent S^T k, S^T q. */
function explainReduceSum(n: Node, refuse: (why?: string) => never): string {
  const axes = n.inputs[1] ? constantOf(n.inputs[1])?.data : n.attrInts("axes");
  const rank = n.inputs[0]?.rank;
  const ax = axes?.length === 1 ? Number(axes[0]) : undefined;
  if (ax === undefined || !(ax === -2 || (rank !== undefined && ax === rank - 2)) || n.attrInt("keepdims", 1) !== 0)
    refuse(
      `(axes [${axes ? Array.from(axes) : ""}], keepdims ${n.attrInt("keepdims", 1)}) is not a sum over the second-to-last axis`,
    );
  return "row_sum";
}

/**
 * The Transposes of the algorithm: the entries and the exit; K^T (the last two axes swapped on a
 * value computed from key, or key and g only); and the axis swaps (3,1,2,0) the exporter wraps around each solve row's ScatterND.
 * A transposed attn, state or value has no rule.
 */
function explainTranspose(n: Node, x: ExplainInput, src: Bits, refuse: (why?: string) => never): string {
  if (n === x.exit || x.sources.has(n.output())) return "entry_exit";
  const p = permOf(n) ?? [];
  const r = p.length;
  const swapsLastTwo = r >= 2 && p.every((a, i) => a === (i === r - 1 ? r - 2 : i === r - 2 ? r - 1 : i));
  const s = src(n.inputs[0]);
  if (swapsLastTwo && (s === bit("key") || s === (bit("key") | G))) return "key_t"; // K^T, (k * exp(g_last - g))^T
  const aroundScatter =
    n.inputs[0]?.producer?.opType === "ScatterND" ||
    (n.output().consumers.size > 0 && [...n.output().consumers].every((c) => c.opType === "ScatterND"));
  if (p.join() === "3,1,2,0" && aroundScatter) return "row_layout";
  return refuse(`(perm ${p.join(",")}) is not a transpose of the gated delta rule`);
}

/** Layout ops: only element moves. The pad value and pads of the chunk padding are fixed by the algorithm. */
function explainLayout(n: Node, x: ExplainInput, refuse: (why?: string) => never): string {
  if (n.opType === "Pad") {
    const mode = n.attrString("mode") ?? "constant";
    const value = n.inputs[2] ? scalarOf(n.inputs[2]) : 0;
    check(
      mode === "constant" && value === 0,
      "padding",
      `${n.name} pads with ${mode === "constant" ? value : mode}; the chunk padding is zeros`,
      n,
    );
    const pads = constantOf(n.inputs[1])?.data;
    const r = pads ? pads.length / 2 : 0;
    // only after the time axis (axis 2 of [B,H,T,(D)]), never before any axis
    const ok = !!pads && Array.from(pads).every((p, i) => p === 0 || i === r + 2) && !n.inputs[3];
    check(
      ok,
      "padding",
      `${n.name} pads [${pads ? Array.from(pads) : "?"}]; the chunk padding only extends the time axis at its end`,
      n,
    );
    return "pad";
  }
  if (n.opType === "Cast") {
    // Casts to float32 after the entries of a half-precision core (the cast back is outside the typed set).
    const to = n.attrInt("to");
    if (to === 1 && [...x.sources.keys()].includes(n.inputs[0]!)) return "cast";
    return refuse(`(to ${to}) is not the cast of an input to float32`);
  }
  return "layout";
}
