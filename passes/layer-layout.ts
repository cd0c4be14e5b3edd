/**
 * layer-layout: after the layer passes, a fused gated-delta layer still carries the exporter's layout
 * nodes (Qwen3-Next's fix_query_key_value_ordering reshape/split/concat, the conv transposes, the
 * head reshapes, the [N,V] flattening around the norm). This pass reads what they do by running them
 * on index ramps (layer-layout-eval.ts) and rewrites the layer into one fixed form:
 *
 *   hidden ─ MatMul(W') ─ Split ─┬ xc ─ Transpose ─ CausalConv1d(w') ─ [Gather] ─ [Transpose] ─ Reshape ─ Split ─ q,k,v ─┐
 *                                ├ z ─ Reshape [B,T,Hv,V] ────────────────────────────────────────────────────────┐       │
 *                                └ b, a ─ GatedDeltaGating ─ g, beta ─────────────────────────────────── core(q,k,v,g,beta)
 *                                                                                         GatedRMSNorm(o, z, w) ─ Einsum(W_out) ─> out
 *
 * - W' gathers the columns of every input projection (one or several MatMuls of the same hidden
 *   state) in the order the consumers need them: conv channels, z, b, a. The original weights stay
 *   only if something else still reads them.
 * - Conv channels: with K == V the order is [q heads | k heads | v heads] and one Reshape to
 *   [B,T,2Hk+Hv,K] + Split(axis 2) gives q, k, v. With K != V, q/k/v cannot come out of one Split
 *   unless every value head carries its own q/k channels: the order is, per value head h,
 *   [q(h/n) | k(h/n) | v(h)] (n = Hv/Hk; the key channels are duplicated when n > 1, which the
 *   depthwise conv and the per-head L2 norm commute with), then Reshape [B,T,Hv,2K+V] + Split(axis 3).
 * - A conv with a state (input or output) keeps its channel order (the state is the model's
 *   interface); a Gather after the conv reorders the channels instead, unless the order already fits.
 * - T == 1: the transpose after the conv is a reshape and folds into the head Reshape.
 * - GatedRMSNorm normalises the last axis, so it reads o [B,T,Hv,V] directly; out_proj becomes
 *   Einsum("bthv,hvd->btd") over the weight reshaped to [Hv,V,D] (opset >= 12; else Reshape + MatMul).
 * Result: 12 nodes per layer (11 when no reorder is needed after a stateful conv at T == 1).
 * Checks: static T, heads, head sizes and channels (the batch may be symbolic), constant projection
 * and out_proj weights of one element type, every consumer element traced to one projection column /
 * conv channel / norm row with its own (b, t).
 * Symbolic batch: the chains are traced at batch 2 and at batch 3 and must move elements the same way
 * at both; the rewrite copies the batch in its Reshape targets (0) and declares it by its symbol, so
 * no batch size is baked into the fused layer.
 */
import {
  addTagged,
  arrayToTensor,
  attr,
  constantOf,
  declareType,
  defaultOpset,
  type Dim,
  dimsOf,
  fusedOp,
  type Graph,
  type Node,
  sameDim,
  sameDims,
  setInput,
  showDims,
  staticDim,
  tensorToArray,
  type Value,
} from "../src/ir/index.js";
import {
  CORE_ANCHORS,
  candidatePass,
  check,
  fail,
  MatchFailure,
  type PassContext,
  structuralKey,
} from "../src/pattern/index.js";
import { ConvIn, ConvOut, DeltaRuleIn, DeltaRuleOut, GatingIn, GatingOut, GdnOp, RmsNormIn } from "../src/ops.js";
import { RampEvaluator, isLayoutNode, layoutSources, rampsFor, type Ramp } from "./layer-layout-eval.js";

export const layerLayout = candidatePass({
  name: "layer-layout",
  description:
    "rewrites the layout nodes of a fused gated-delta layer (projection split/concat, conv transposes, head reshapes, norm flattening) into 12 nodes",
  anchors: CORE_ANCHORS,
  rewrite(core, ctx) {
    const m = matchLayer(core);
    const made = rewriteLayer(ctx, m);
    // The old layout nodes and projections become dead; the pipeline removes them after the pass.
    return {
      op: `${fusedOp(core)}[layout]`,
      node: core.name,
      replacedNodes: m.replaced,
      details: { layout: m.K === m.V ? "heads" : "per-value-head", reorderAfterConv: m.hasState, nodes: made + 4 },
    };
  },
});

/** A projection column: source s (a projection MatMul output), column col. */
interface Col {
  s: number;
  col: number;
}

interface Projection {
  out: Value; // MatMul output [B,T,N]
  weight: Value; // [D,N]
  N: number;
}

interface LayerMatch {
  core: Node;
  causalConv: Node;
  gating: Node;
  norm: Node;
  outMatMul: Node;
  hidden: Value;
  proj: Projection[];
  B: number | string; // a symbolic batch (dim_param) is kept symbolic in the rewrite
  T: number;
  Hk: number;
  Hv: number;
  K: number;
  V: number;
  C: number;
  hasState: boolean;
  chanSrc: (Col | undefined)[]; // conv input channel c <- projection column
  qChan: number[]; // [h*K + i] -> conv channel
  kChan: number[];
  vChan: number[];
  aCols: Col[];
  bCols: Col[];
  zCols: Col[]; // [h*V + i]
  outRow: number[]; // [h*V + i] -> row of the out_proj weight
  replaced: number; // layout nodes traced + projection MatMuls + out_proj
}

const sameShape = (a: readonly number[] | undefined, b: readonly number[]) =>
  !!a && a.length === b.length && a.every((d, i) => d === b[i]);

/** Follows single-consumer layout nodes (one output each) from v; returns the last value and its consumer. */
function forward(v: Value): { end: Value; user: Node | undefined } {
  let cur = v;
  for (;;) {
    if (cur.isGraphOutput || cur.consumers.size !== 1) return { end: cur, user: undefined };
    const u = [...cur.consumers][0]!;
    if (!isLayoutNode(u) || u.outputs.length !== 1 || u.inputs[0] !== cur) return { end: cur, user: u };
    cur = u.output();
  }
}

function matchLayer(core: Node): LayerMatch {
  const [q, k, v, g, beta] = core.inputs;
  const qs = dimsOf(q),
    vs = dimsOf(v);
  const numeric = (s: Dim[] | undefined) =>
    s?.length === 4 && s[0] !== undefined && s.slice(1).every((d) => typeof d === "number");
  check(
    numeric(qs) && numeric(vs) && sameDims(dimsOf(k), qs) && sameDim(vs![0], qs![0]) && vs![1] === qs![1],
    "shape",
    `query ${showDims(qs)}, key ${showDims(dimsOf(k))} and value ${showDims(vs)} are not [B,T,H,D] tensors of one batch with static T, heads and head sizes`,
    core,
  );
  const [B, T, Hk, K] = qs as [number | string, number, number, number];
  const [, , Hv, V] = vs as [number | string, number, number, number];
  check(Hv % Hk === 0, "shape", `value heads ${Hv} are not a multiple of key heads ${Hk}`, core);
  const gating = g?.producer;
  const gatingOk = gating?.opType === GdnOp.GatedDeltaGating;
  const gatesCore = gatingOk && gating.outputs[GatingOut.g] === g && gating.outputs[GatingOut.beta] === beta;
  check(gating && gatesCore, "gating", "g and beta do not come from one gdn.GatedDeltaGating", gating ?? core);
  // q, k, v: one CausalConv1d's output through layout nodes
  const qkvSources = [q!, k!, v!].flatMap((x) => layoutSources(x).sources);
  const y = qkvSources[0]!;
  const causalConv = y.producer;
  const convOk = causalConv?.opType === GdnOp.CausalConv1d && causalConv.outputs[ConvOut.y] === y;
  const qkvReason = "query, key and value are not all rearrangements of one gdn.CausalConv1d output";
  check(causalConv && convOk && qkvSources.every((s) => s === y), "conv", qkvReason, causalConv ?? core);
  const x = causalConv.inputs[ConvIn.x]!;
  const xs = dimsOf(x);
  const C = xs?.length === 3 ? staticDim(x, 1) : undefined;
  check(
    xs?.length === 3 && sameDim(xs[0], B) && xs[2] === T && C !== undefined,
    "conv",
    `the conv input ${showDims(xs)} is not a [${B},C,${T}] tensor with static C`,
    causalConv,
  );
  // norm after the core, out_proj after the norm
  const o = core.outputs[DeltaRuleOut.output]!;
  const toNorm = forward(o);
  const norm = toNorm.user;
  const normReason = "the core output does not go (through layout nodes only) to a gdn.GatedRMSNorm";
  check(
    norm?.opType === GdnOp.GatedRMSNorm && norm.inputs[RmsNormIn.x] === toNorm.end,
    "norm",
    normReason,
    norm ?? core,
  );
  const yn = norm.output();
  const toOut = forward(yn);
  const outMatMul = toOut.user;
  check(
    outMatMul && outMatMul.opType === "MatMul" && outMatMul.domain === "" && outMatMul.inputs[0] === toOut.end,
    "out_proj",
    "the norm output does not go (through layout nodes only) to the out_proj MatMul",
    outMatMul ?? norm,
  );
  const wOut = outMatMul.inputs[1]!;
  check(constantOf(wOut)?.dims.length === 2, "out_proj", "the out_proj weight is not a constant 2-d matrix", outMatMul);
  // input projections: every source of the conv input, a, b and the gate is hidden @ W
  const a = gating.inputs[GatingIn.a]!,
    b = gating.inputs[GatingIn.b]!,
    gate = norm.inputs[RmsNormIn.gate]!;
  const projOuts: Value[] = [];
  for (const target of [x, a, b, gate])
    for (const s of layoutSources(target).sources) if (!projOuts.includes(s)) projOuts.push(s);
  let hidden: Value | undefined;
  const proj = projOuts.map((s): Projection => {
    const mm = s.producer;
    check(
      mm && mm.opType === "MatMul" && mm.domain === "" && mm.outputs[0] === s,
      "projection",
      `${s.name} comes from ${mm?.opType ?? "a graph input"}, not an input projection MatMul`,
      mm,
    );
    hidden ??= mm.inputs[0];
    check(mm.inputs[0] === hidden, "projection", "the input projections do not all read the same hidden state", mm);
    const w = constantOf(mm.inputs[1]);
    check(w?.dims.length === 2, "projection", "the projection weight is not a constant 2-d matrix", mm);
    return { out: s, weight: mm.inputs[1]!, N: w.dims[1]! };
  });
  // [B,T,D]: from the hidden state's declared type, else from the projections' outputs.
  const hs = dimsOf(hidden);
  const shapes = hs ? [hs] : proj.map((p) => dimsOf(p.out));
  for (const s of shapes)
    check(
      s?.length === 3 && sameDim(s[0], B) && s[1] === T,
      "projection",
      `the hidden state / projection output ${showDims(s)} is not a [${B},${T},·] tensor`,
      proj[0]!.out.producer,
    );
  const types = new Set(proj.map((p) => constantOf(p.weight)!.elemType));
  check(types.size === 1, "projection", "the projection weights differ in element type", proj[0]!.out.producer);
  const traced = new Set<Node>();
  for (const val of [q!, k!, v!, x, a, b, gate, norm.inputs[RmsNormIn.x]!, outMatMul.inputs[0]!])
    layoutSources(val).nodes.forEach((n) => traced.add(n));
  const replaced = traced.size + proj.length + 1;
  const hasState = !!causalConv.inputs[ConvIn.convState] || !!causalConv.outputs[ConvOut.convStateOut];
  const layer = {
    core,
    causalConv,
    gating,
    norm,
    outMatMul,
    hidden: hidden!,
    proj,
    B,
    T,
    Hk,
    Hv,
    K,
    V,
    C,
    hasState,
    replaced,
  };
  // A symbolic batch is traced at two probe sizes: the layout must move elements the same way at both
  // (else it depends on the batch, e.g. a Reshape that bakes one batch size in, and is refused).
  // Layers with the same structure trace the same way: a model's repeated layers are traced once.
  const order = core.graph.nodes.filter((n) => traced.has(n));
  const { key, ids } = structuralKey(
    order,
    [...proj.map((p) => p.out), y, o, yn].map((value) => ({ value })),
  );
  const iface = [q!, k!, v!, x, a, b, gate, norm.inputs[RmsNormIn.x]!, outMatMul.inputs[0]!].map(
    (val) => ids.get(val) ?? `?${val.name}`,
  );
  const cacheKey = `${key}|${iface}|${JSON.stringify({ B, T, Hk, Hv, K, V, C, N: proj.map((p) => p.N), out: constantOf(wOut)!.dims })}`;
  const hit = traceCache.get(cacheKey);
  if (hit) return { ...layer, ...hit };
  const result = traceLayer(layer, B, q!, k!, v!, y, core);
  if (traceCache.size > 256) traceCache.clear();
  traceCache.set(cacheKey, result);
  return { ...layer, ...result };
}

const traceCache = new Map<string, Traced>();

/** Traces at B, or at each probe batch size when B is symbolic (the traces must agree). */
function traceLayer(
  layer: Omit<LayerMatch, keyof Traced>,
  B: number | string,
  q: Value,
  k: Value,
  v: Value,
  y: Value,
  core: Node,
): Traced {
  if (typeof B === "number") return trace(layer, B, q, k, v, y);
  const atProbe = (Bp: number): Traced => {
    try {
      return trace(layer, Bp, q, k, v, y);
    } catch (e) {
      if (e instanceof MatchFailure) fail(e.stage, `traced with "${B}" = ${Bp}: ${e.reason}`, e.node);
      throw e;
    }
  };
  const [first, ...others] = PROBE_BATCHES.map(atProbe);
  for (const [i, t] of others.entries())
    check(
      JSON.stringify(t) === JSON.stringify(first),
      "layout",
      `the layout traced at batch ${PROBE_BATCHES[i + 1]} differs from batch ${PROBE_BATCHES[0]}: it depends on the batch size`,
      core,
    );
  return first!;
}

/** Batch sizes a symbolic batch is traced at (two, so a layout that depends on the batch is caught). */
export const PROBE_BATCHES = [2, 3] as const;

type Traced = Pick<LayerMatch, "chanSrc" | "qChan" | "kChan" | "vChan" | "aCols" | "bCols" | "zCols" | "outRow">;

/** Traces every element of the layer's layout chains at batch size B (index ramps, layer-layout-eval.ts). */
function trace(m: Omit<LayerMatch, keyof Traced>, B: number, q: Value, k: Value, v: Value, y: Value): Traced {
  const { core, causalConv, gating, norm, outMatMul, proj, T, Hk, Hv, K, V, C } = m;
  const x = causalConv.inputs[ConvIn.x]!,
    gate = norm.inputs[RmsNormIn.gate]!;
  const a = gating.inputs[GatingIn.a]!,
    b = gating.inputs[GatingIn.b]!;
  const o = core.outputs[DeltaRuleOut.output]!,
    yn = norm.output(),
    wOut = outMatMul.inputs[1]!;
  // ---- trace every element --------------------------------------------------------------------
  const P = rampsFor(proj.map((p) => ({ value: p.out, shape: [B, T, p.N] })));
  const evalP = new RampEvaluator(P.ramps);
  const colOf = (id: number): { b: number; t: number; c: Col } => {
    const { source, index } = P.locate(id);
    return { b: index[0]!, t: index[1]!, c: { s: source, col: index[2]! } };
  };
  // x[b,c,t] = proj[b,t,col(c)]
  const X = evalP.eval(x);
  const chanSrc: (Col | undefined)[] = new Array(C);
  forEachIndex(X, (idx, id) => {
    const [bb, c, tt] = idx as [number, number, number];
    const r = colOf(id);
    if (r.b !== bb || r.t !== tt)
      fail("layout", `conv input [${bb},${c},${tt}] reads hidden position [${r.b},${r.t}]`, causalConv);
    chanSrc[c] = agree(chanSrc[c], r.c, `conv channel ${c}`, causalConv);
  });
  const perFeature = (val: Value, H: number, D: number, what: string, at: Node): Col[] => {
    const R = evalP.eval(val);
    check(sameShape(R.shape, D ? [B, T, H, D] : [B, T, H]), "layout", `${what} has shape [${R.shape}]`, at);
    const cols: Col[] = [];
    forEachIndex(R, (idx, id) => {
      const r = colOf(id);
      if (r.b !== idx[0] || r.t !== idx[1])
        fail("layout", `${what} at [${idx}] reads hidden position [${r.b},${r.t}]`, at);
      const f = D ? idx[2]! * D + idx[3]! : idx[2]!;
      cols[f] = agree(cols[f], r.c, `${what} feature ${f}`, at);
    });
    return cols;
  };
  const aCols = perFeature(a, Hv, 0, "a", gating);
  const bCols = perFeature(b, Hv, 0, "b", gating);
  // q/k/v[b,t,h,i] = y[b, chan(h,i), t]
  const Y = rampsFor([{ value: y, shape: [B, C, T] }]);
  const evalY = new RampEvaluator(Y.ramps);
  const chans = (val: Value, H: number, D: number, what: string): number[] => {
    const R = evalY.eval(val);
    const out: number[] = [];
    forEachIndex(R, (idx, id) => {
      const { index } = Y.locate(id);
      if (index[0] !== idx[0] || index[2] !== idx[1])
        fail("layout", `${what} at [${idx}] reads conv output [${index}]`, causalConv);
      const f = idx[2]! * D + idx[3]!;
      if (out[f] !== undefined && out[f] !== index[1])
        fail("layout", `${what} feature ${f} reads conv channels ${out[f]} and ${index[1]}`, causalConv);
      out[f] = index[1]!;
    });
    check(out.length === H * D, "layout", `${what} does not read every head`, causalConv);
    return out;
  };
  const qChan = chans(q, Hk, K, "query"),
    kChan = chans(k, Hk, K, "key"),
    vChan = chans(v, Hv, V, "value");
  for (const c of [...qChan, ...kChan, ...vChan])
    check(chanSrc[c], "layout", `conv channel ${c} does not come from a projection column`, causalConv);
  // norm rows: normX[r, i] = o[b,t,h,i]
  const O = rampsFor([{ value: o, shape: [B, T, Hv, V] }]);
  const NX = new RampEvaluator(O.ramps).eval(norm.inputs[RmsNormIn.x]!);
  check(
    NX.shape[NX.shape.length - 1] === V && NX.data.length === B * T * Hv * V,
    "norm",
    `the norm reads [${NX.shape}]; its last axis must be the value dim ${V}`,
    norm,
  );
  const rows: [number, number, number][] = [];
  forEachIndex(NX, (_idx, id, f) => {
    const { index } = O.locate(id);
    if (index[3] !== f % V) fail("norm", "the norm's last axis is not the value dim of one head", norm);
    const r = Math.floor(f / V);
    const row = (rows[r] ??= [index[0]!, index[1]!, index[2]!]);
    if (row[0] !== index[0] || row[1] !== index[1] || row[2] !== index[2])
      fail("norm", `norm row ${r} mixes heads`, norm);
  });
  // gate[r, i] = proj[b, t, z(h, i)]
  const G = evalP.eval(gate);
  check(sameShape(G.shape, NX.shape), "norm", `the gate [${G.shape}] and x [${NX.shape}] differ`, norm);
  const zCols: Col[] = [];
  forEachIndex(G, (_idx, id, f) => {
    const [bb, tt, h] = rows[Math.floor(f / V)]!;
    const r = colOf(id);
    if (r.b !== bb || r.t !== tt)
      fail("norm", `the gate row of [${bb},${tt},${h}] reads hidden position [${r.b},${r.t}]`, norm);
    const feat = h * V + (f % V);
    zCols[feat] = agree(zCols[feat], r.c, `gate feature ${feat}`, norm);
  });
  // out_proj input[b,t,j] = normOut[r(b,t,h), i]
  const YN = rampsFor([{ value: yn, shape: NX.shape }]);
  const M = new RampEvaluator(YN.ramps).eval(outMatMul.inputs[0]!);
  const J = constantOf(wOut)!.dims[0]!;
  check(
    sameShape(M.shape, [B, T, J]) && J === Hv * V,
    "out_proj",
    `out_proj reads [${M.shape}], not [${B},${T},${Hv * V}]`,
    outMatMul,
  );
  const outRow: number[] = [];
  forEachIndex(M, (idx, id) => {
    const f = id; // yn is the only source: the id is its flat index
    const [bb, tt, h] = rows[Math.floor(f / V)]!;
    if (bb !== idx[0] || tt !== idx[1])
      fail("out_proj", `out_proj input [${idx}] reads the norm row of [${bb},${tt},${h}]`, outMatMul);
    const feat = h * V + (f % V);
    if (outRow[feat] !== undefined && outRow[feat] !== idx[2])
      fail("out_proj", `norm feature ${feat} goes to out_proj rows ${outRow[feat]} and ${idx[2]}`, outMatMul);
    outRow[feat] = idx[2]!;
  });
  if (m.hasState)
    for (let c = 0; c < C; c++)
      check(
        chanSrc[c],
        "layout",
        `conv channel ${c} (kept: the conv has a state) does not come from a projection column`,
        causalConv,
      );
  return { chanSrc, qChan, kChan, vChan, aCols, bCols, zCols, outRow };
}

function agree(prev: Col | undefined, c: Col, what: string, at: Node): Col {
  if (prev && (prev.s !== c.s || prev.col !== c.col))
    fail("layout", `${what} reads two different projection columns`, at);
  return c;
}

function forEachIndex(r: Ramp, f: (idx: number[], id: number, flat: number) => void): void {
  const rank = r.shape.length;
  const idx = new Array<number>(rank).fill(0);
  for (let flat = 0; flat < r.data.length; flat++) {
    f(idx, r.data[flat]!, flat);
    for (let a = rank - 1; a >= 0; a--) {
      if (++idx[a]! < r.shape[a]!) break;
      idx[a] = 0;
    }
  }
}

/** The channel list after the conv: original conv channels in the order the q/k/v Split needs. */
function channelOrder(m: LayerMatch): {
  order: number[];
  groups: number;
  width: number;
  axis: number;
  sizes: number[];
  qHeads: number;
} {
  const { Hk, Hv, K, V } = m;
  if (K === V) {
    return {
      order: [...m.qChan, ...m.kChan, ...m.vChan],
      groups: 2 * Hk + Hv,
      width: K,
      axis: 2,
      sizes: [Hk, Hk, Hv],
      qHeads: Hk,
    };
  }
  const n = Hv / Hk;
  const order: number[] = [];
  for (let h = 0; h < Hv; h++) {
    const hk = Math.floor(h / n);
    order.push(
      ...m.qChan.slice(hk * K, hk * K + K),
      ...m.kChan.slice(hk * K, hk * K + K),
      ...m.vChan.slice(h * V, h * V + V),
    );
  }
  return { order, groups: Hv, width: 2 * K + V, axis: 3, sizes: [K, K, V], qHeads: Hv };
}

/** Rows (axis 0) of a constant, gathered; keeps the element type (float16/bfloat16 bits untouched). */
function gatherRows(v: Value, rows: number[], name: string): ReturnType<typeof arrayToTensor> {
  const c = constantOf(v)!;
  const rowSize = c.data.length / c.dims[0]!;
  const dims = [rows.length, ...c.dims.slice(1)];
  const raw = v.initializer ? tryArray(v) : undefined;
  const src: ArrayLike<number> = raw ?? c.data;
  const out = raw
    ? new (raw.constructor as Float32ArrayConstructor)(rows.length * rowSize)
    : new Float64Array(rows.length * rowSize);
  rows.forEach((r, i) => {
    for (let j = 0; j < rowSize; j++) out[i * rowSize + j] = src[r * rowSize + j]!;
  });
  return arrayToTensor(name, dims, c.elemType, out);
}

function tryArray(v: Value): Float32Array | Uint16Array | Float64Array | undefined {
  try {
    const a = tensorToArray(v.initializer!);
    return a instanceof Float32Array || a instanceof Uint16Array || a instanceof Float64Array ? a : undefined;
  } catch {
    return undefined;
  }
}

/** Projection columns of several [D,N] weights gathered into one [D, cols.length] weight. */
function gatherColumns(m: LayerMatch, cols: Col[], name: string): ReturnType<typeof arrayToTensor> {
  const ws = m.proj.map((p) => ({
    c: constantOf(p.weight)!,
    raw: p.weight.initializer ? tryArray(p.weight) : undefined,
  }));
  const D = ws[0]!.c.dims[0]!;
  check(
    ws.every((w) => w.c.dims[0] === D),
    "projection",
    "the projection weights differ in input size",
    m.proj[0]!.out.producer,
  );
  const elemType = ws[0]!.c.elemType;
  const allRaw = ws.every((w) => w.raw && w.raw.constructor === ws[0]!.raw!.constructor);
  const Ctor = allRaw ? (ws[0]!.raw!.constructor as Float32ArrayConstructor) : Float64Array;
  const out = new Ctor(D * cols.length);
  const N = cols.length;
  cols.forEach(({ s, col }, j) => {
    const w = ws[s]!;
    const src: ArrayLike<number> = allRaw ? w.raw! : w.c.data;
    const Ns = m.proj[s]!.N;
    for (let d = 0; d < D; d++) out[d * N + j] = src[d * Ns + col]!;
  });
  return arrayToTensor(name, [D, N], elemType, out);
}

function ints(g: Graph, base: string, values: number[]): Value {
  return g.addInitializer(
    arrayToTensor(
      `${base}_i64`,
      [values.length],
      7,
      values.map((x) => BigInt(x)),
    ),
  );
}

/** Rewrites the matched layer; returns how many nodes it made. */
function rewriteLayer(ctx: PassContext, m: LayerMatch): number {
  const g = ctx.graph;
  const base = m.core.name;
  const { B, T, Hv, V } = m;
  const elemType = m.core.inputs[DeltaRuleIn.value]!.type!.elemType;
  let made = 0;
  const op = (
    opType: string,
    inputs: (Value | undefined)[],
    outputs: (Value | string)[],
    shapes: (Dim[] | undefined)[],
    attributes: ReturnType<typeof attr.int>[] = [],
  ): Value[] => {
    const n = addTagged(g, ctx.pass, { opType, name: `${base}_${opType}`, inputs, outputs, attributes });
    made++;
    n.outputs.forEach((o, i) => {
      if (o && shapes[i]) declareType(g, o, o.type?.elemType || elemType, shapes[i]);
    });
    return n.outputs as Value[];
  };
  const opset = defaultOpset(ctx.model);
  const split = (x: Value, axis: number, sizes: number[], shapes: Dim[][]): Value[] =>
    opset >= 13
      ? op(
          "Split",
          [x, ints(g, base, sizes)],
          shapes.map((_, i) => `${base}_split${i}`),
          shapes,
          [attr.int("axis", axis)],
        )
      : op(
          "Split",
          [x],
          shapes.map((_, i) => `${base}_split${i}`),
          shapes,
          [attr.int("axis", axis), attr.ints("split", sizes)],
        );

  const ch = channelOrder(m);
  // Conv channels: reorder the conv itself when it has no state, else reorder after it.
  const convChannels = m.hasState ? Array.from({ length: m.C }, (_, c) => c) : ch.order;
  const after = m.hasState && !(ch.order.length === m.C && ch.order.every((c, j) => c === j)) ? ch.order : undefined;
  const Cn = convChannels.length;
  const cols = [...convChannels.map((c) => m.chanSrc[c]!), ...m.zCols, ...m.bCols, ...m.aCols];
  const wAll = g.addInitializer(gatherColumns(m, cols, `${base}_in_proj`));
  const [projected] = op("MatMul", [m.hidden, wAll], [`${base}_in_proj`], [[B, T, cols.length]]);
  const [xc, zf, bb, aa] = split(
    projected!,
    2,
    [Cn, Hv * V, Hv, Hv],
    [
      [B, T, Cn],
      [B, T, Hv * V],
      [B, T, Hv],
      [B, T, Hv],
    ],
  );
  const [xt] = op("Transpose", [xc], [`${base}_conv_in`], [[B, Cn, T]], [attr.ints("perm", [0, 2, 1])]);
  // conv: new input; reordered weight/bias when the channels move
  setInput(m.causalConv, ConvIn.x, xt);
  if (!m.hasState) {
    const { weight, bias } = { weight: m.causalConv.inputs[ConvIn.weight]!, bias: m.causalConv.inputs[ConvIn.bias] };
    setInput(m.causalConv, ConvIn.weight, g.addInitializer(gatherRows(weight, convChannels, `${base}_conv_weight`)));
    if (bias)
      setInput(m.causalConv, ConvIn.bias, g.addInitializer(gatherRows(bias, convChannels, `${base}_conv_bias`)));
  }
  const y = m.causalConv.output();
  declareType(g, y, y.type?.elemType || elemType, [B, Cn, T]);
  let heads = y;
  if (after)
    [heads] = op(
      "Gather",
      [heads, ints(g, base, after)],
      [`${base}_qkv_order`],
      [[B, after.length, T]],
      [attr.int("axis", 1)],
    );
  const width = after?.length ?? Cn;
  if (T !== 1)
    [heads] = op("Transpose", [heads], [`${base}_conv_out`], [[B, T, width]], [attr.ints("perm", [0, 2, 1])]);
  // Reshape targets copy the batch (0, allowzero=0): nothing in the rewrite bakes a batch size in.
  const [grouped] = op(
    "Reshape",
    [heads, ints(g, base, [0, T, ch.groups, ch.width])],
    [`${base}_qkv_heads`],
    [[B, T, ch.groups, ch.width]],
  );
  const qShape = [B, T, ch.qHeads, m.K];
  const [q, k, v] = split(grouped!, ch.axis, ch.sizes, [qShape, qShape, [B, T, Hv, V]]);
  setInput(m.core, DeltaRuleIn.query, q);
  setInput(m.core, DeltaRuleIn.key, k);
  setInput(m.core, DeltaRuleIn.value, v);
  setInput(m.gating, GatingIn.a, aa);
  setInput(m.gating, GatingIn.b, bb);
  // norm on [B,T,Hv,V]; out_proj as one Einsum over (h, v)
  const [z] = op("Reshape", [zf, ints(g, base, [0, T, Hv, V])], [`${base}_z`], [[B, T, Hv, V]]);
  setInput(m.norm, RmsNormIn.x, m.core.output());
  setInput(m.norm, RmsNormIn.gate, z);
  const yn = m.norm.output();
  declareType(g, yn, yn.type?.elemType || elemType, [B, T, Hv, V]);
  const out = m.outMatMul.output();
  const wOut = m.outMatMul.inputs[1]!;
  const Dout = constantOf(wOut)!.dims[1]!;
  g.removeNodes([m.outMatMul]);
  const w3 = gatherRows(wOut, m.outRow, `${base}_out_proj`);
  if (opset >= 12) {
    w3.dims = [Hv, V, Dout];
    op("Einsum", [yn, g.addInitializer(w3)], [out], [undefined], [attr.string("equation", "bthv,hvd->btd")]);
  } else {
    const [flat] = op("Reshape", [yn, ints(g, base, [0, T, Hv * V])], [`${base}_norm_flat`], [[B, T, Hv * V]]);
    op("MatMul", [flat, g.addInitializer(w3)], [out], [undefined]);
  }
  return made;
}
