/**
 * Shared lowering of gdn nodes onto stock operators, for the `ort` (com.microsoft contrib ops of
 * onnxruntime 1.30) and `onnx` (ONNX opset 27) targets. Each lowering checks what the target can
 * express and fails at stage "target" with a reason otherwise; the gdn node then stays (and the
 * report lists it as skipped).
 */
import {
  addTagged,
  arrayToTensor,
  attr,
  constantOf,
  dimsOf,
  type Graph,
  defaultOpset,
  type onnx,
  type Node,
  showDims,
  staticDim,
  type Value,
} from "../../src/ir/index.js";
import { candidatePass, check, type Pass, type PassContext, type Target } from "../../src/pattern/index.js";
import {
  ConvAttr,
  ConvIn,
  ConvOut,
  DEFAULT_CONV_ACTIVATION,
  DEFAULT_STATE_LAYOUT,
  DeltaRuleAttr,
  DeltaRuleIn,
  DeltaRuleOut,
  FLOAT,
  GDN_CONTRACT,
  GDN_DOMAIN,
  GatingIn,
  GatingOut,
  GdnOp,
  L2NORM_EPS,
  RMS_NORM_EPS,
  RmsNormAttr,
  RmsNormIn,
  RmsNormOut,
} from "../../src/ops.js";

export const MS_DOMAIN = "com.microsoft";
const INT64_MAX = 9223372036854775807n;

/** Emits nodes for one lowering, tagged with the pass name. */
export class Emitter {
  readonly nodes: Node[] = [];
  constructor(
    readonly ctx: PassContext,
    readonly base: string,
  ) {}
  get g(): Graph {
    return this.ctx.graph;
  }
  op(
    opType: string,
    inputs: (Value | undefined)[],
    outputs: (Value | string)[] | number = 1,
    attributes: onnx.IAttributeProto[] = [],
    domain = "",
  ): Value[] {
    const outs =
      typeof outputs === "number" ? Array.from({ length: outputs }, (_, i) => `${this.base}_${opType}_${i}`) : outputs;
    const n = addTagged(this.g, this.ctx.pass, {
      opType,
      domain,
      name: `${this.base}_${opType}`,
      inputs,
      outputs: outs,
      attributes,
    });
    this.nodes.push(n);
    return n.outputs as Value[];
  }
  one(opType: string, inputs: (Value | undefined)[], attributes: onnx.IAttributeProto[] = [], domain = ""): Value {
    return this.op(opType, inputs, 1, attributes, domain)[0]!;
  }
  ints(values: (number | bigint)[]): Value {
    return this.g.addInitializer(
      arrayToTensor(
        `${this.base}_i64`,
        [values.length],
        7,
        values.map((v) => BigInt(v)),
      ),
    );
  }
  scalar(value: number, elemType = 1): Value {
    return this.g.addInitializer(arrayToTensor(`${this.base}_c`, [], elemType, [value]));
  }
  floats(values: ArrayLike<number>, dims: number[]): Value {
    return this.g.addInitializer(arrayToTensor(`${this.base}_f32`, dims, 1, values));
  }
  /** Slice over axis 2 from `start` to the end. */
  sliceTail(x: Value, start: number): Value {
    return this.one("Slice", [x, this.ints([start]), this.ints([INT64_MAX]), this.ints([2])]);
  }
}

/** What one target states; `loweringPass` supplies the candidate loop, the checks and the core/conv lowering. */
export interface TargetLowering {
  name: string;
  description: string;
  target: Target;
  /** The domain of the target's LinearAttention and CausalConvWithState (cores and convs become those). */
  domain: string;
  /** Whether LinearAttention needs the key heads repeated up to the value heads (ONNX's does). */
  repeatKeys: boolean;
  /** The target's form of GatedDeltaGating and GatedRMSNorm: the op the report names, and its emission. */
  gating: { op: string; emit(e: Emitter, p: GatingParts): void };
  norm: { op: string; emit(e: Emitter, p: NormParts): void };
  /** Runs after every gdn node was tried (opset and IR version the lowered ops need). */
  finish(ctx: PassContext): void;
}

/** A GatedDeltaGating node's inputs (checked float32) and outputs, the node detached. */
export interface GatingParts {
  a: Value;
  b: Value;
  aLog: Value;
  dtBias: Value | undefined;
  g: Value;
  beta: Value;
}

/** A GatedRMSNorm node's inputs, output and epsilon, the node detached. */
export interface NormParts {
  x: Value;
  gate: Value;
  weight: Value;
  y: Value;
  eps: number;
}

interface CoreDims {
  Hk: number;
  Hv: number;
  K: number;
  V: number;
}

/** The pass that lowers every gdn node for one target; each refused node is kept and reported. */
export function loweringPass(t: TargetLowering): Pass {
  return candidatePass({
    name: t.name,
    description: t.description,
    anchors: [`${GDN_DOMAIN}.*`],
    targets: [t.target],
    rewrite(n, ctx) {
      const e = new Emitter(ctx, n.name);
      // Check first (before touching the graph), then detach the gdn node and emit its replacement.
      const emit = lowering(t, e, n);
      check(emit, "target", `${ctx.target} has no lowering for gdn.${n.opType}`, n);
      emit();
      const op = `${t.domain || "ai.onnx"}.${reportedOp(t, n.opType)}`;
      const details = { from: `gdn.${n.opType}`, nodes: e.nodes.length };
      return { op, node: e.nodes.map((x) => x.name).join(","), replacedNodes: 1, details };
    },
    finish: t.finish,
  });
}

/** The target op a gdn op becomes, as the report names it. */
function reportedOp(t: TargetLowering, gdnOp: string): string {
  if (gdnOp === GdnOp.CausalConv1d) return "CausalConvWithState";
  if (gdnOp === GdnOp.GatedDeltaGating) return t.gating.op;
  if (gdnOp === GdnOp.GatedRMSNorm) return t.norm.op;
  return "LinearAttention";
}

/** Checks what the target can express of node n, and returns the emission (undefined: no lowering). */
function lowering(t: TargetLowering, e: Emitter, n: Node): (() => void) | undefined {
  switch (n.opType) {
    case GdnOp.ChunkGatedDeltaRule:
    case GdnOp.RecurrentGatedDeltaRule: {
      const dims = coreDims(n);
      return () => lowerCore(e, n, dims, t.domain, t.repeatKeys);
    }
    case GdnOp.CausalConv1d:
      return () => lowerConv(e, n, t.domain);
    case GdnOp.GatedDeltaGating: {
      checkGatingTypes(n);
      return () => {
        const { ins, outs } = detach(e, n);
        const [a, b, aLog, dtBias] = [ins[GatingIn.a]!, ins[GatingIn.b]!, ins[GatingIn.aLog]!, ins[GatingIn.dtBias]];
        t.gating.emit(e, { a, b, aLog, dtBias, g: outs[GatingOut.g]!, beta: outs[GatingOut.beta]! });
      };
    }
    case GdnOp.GatedRMSNorm:
      return () => {
        const eps = n.attrFloat(RmsNormAttr.epsilon, RMS_NORM_EPS)!;
        const { ins, outs } = detach(e, n);
        const [x, gate, weight] = [ins[RmsNormIn.x]!, ins[RmsNormIn.gate]!, ins[RmsNormIn.weight]!];
        t.norm.emit(e, { x, gate, weight, y: outs[RmsNormOut.y]!, eps });
      };
    default:
      return undefined;
  }
}

/** Detaches a gdn node so its output values can be re-produced; returns its inputs/outputs. */
function detach(e: Emitter, n: Node): { ins: (Value | undefined)[]; outs: (Value | undefined)[] } {
  const ins = [...n.inputs];
  const outs = [...n.outputs];
  e.g.removeNodes([n]);
  return { ins, outs };
}

function coreDims(n: Node): CoreDims {
  // Head counts and sizes become attributes and must be numbers; the batch and T may be symbolic.
  const [q, v] = [n.inputs[DeltaRuleIn.query], n.inputs[DeltaRuleIn.value]];
  const [Hk, K, Hv, V] = [staticDim(q, 2), staticDim(q, 3), staticDim(v, 2), staticDim(v, 3)];
  check(
    q?.rank === 4 && v?.rank === 4 && Hk !== undefined && K !== undefined && Hv !== undefined && V !== undefined,
    "target",
    `query ${showDims(dimsOf(q))} / value ${showDims(dimsOf(v))} are not [B,T,H,D] tensors with static heads and head sizes (they are needed as attributes)`,
    n,
  );
  const layout = n.attrString(DeltaRuleAttr.stateLayout) ?? DEFAULT_STATE_LAYOUT;
  check(
    layout === "kv",
    "target",
    `state_layout "${layout}": LinearAttention keeps the state as [B,H,K,V] ("kv") only`,
    n,
  );
  const { query, key, value, g, beta, initialState } = DeltaRuleIn;
  for (const i of [query, key, value, g, beta, initialState]) {
    const t = n.inputs[i]?.type?.elemType;
    const what = GDN_CONTRACT.RecurrentGatedDeltaRule.inputs[i];
    const reason = `${what} has element type ${t}; the lowering handles float32 only (LinearAttention's decay/beta share the query's type)`;
    if (n.inputs[i]) check(t === FLOAT, "target", reason, n);
  }
  check(Hv % Hk === 0, "target", `value heads ${Hv} are not a multiple of key heads ${Hk}`, n);
  const scale = n.attrFloat(DeltaRuleAttr.scale, 0)!;
  check(scale !== 0, "target", "scale 0 means 1/sqrt(K) in LinearAttention; an explicit non-zero scale is required", n);
  return { Hk, Hv, K, V };
}

/** x * 1/sqrt(sum(x^2, -1) + eps) as stock ops (ReduceSumSquare, Add, Sqrt, Div). */
function l2norm(e: Emitter, x: Value): Value {
  const opset = defaultOpset(e.ctx.model);
  const ss =
    opset >= 18
      ? e.one("ReduceSumSquare", [x, e.ints([-1])], [attr.int("keepdims", 1)])
      : e.one("ReduceSumSquare", [x], [attr.ints("axes", [-1]), attr.int("keepdims", 1)]);
  const root = e.one("Sqrt", [e.one("Add", [ss, e.scalar(L2NORM_EPS)])]);
  return e.one("Div", [x, root]);
}

/** The core as (com.microsoft | ONNX-27) LinearAttention on packed [B,T,H*D] tensors. */
function lowerCore(e: Emitter, n: Node, d: CoreDims, domain: string, repeatKeys: boolean): void {
  const l2 = n.attrInt(DeltaRuleAttr.useQkL2norm, 0) === 1;
  const scale = n.attrFloat(DeltaRuleAttr.scale, 0)!;
  const chunk = n.attrInt(DeltaRuleAttr.chunkSize);
  const { ins, outs } = detach(e, n);
  let [q, k] = [ins[DeltaRuleIn.query]!, ins[DeltaRuleIn.key]!];
  const [v, g, beta] = [ins[DeltaRuleIn.value]!, ins[DeltaRuleIn.g]!, ins[DeltaRuleIn.beta]!];
  const state = ins[DeltaRuleIn.initialState];
  const [output, finalState] = [outs[DeltaRuleOut.output]!, outs[DeltaRuleOut.finalState]];
  if (l2) [q, k] = [l2norm(e, q), l2norm(e, k)];
  const n_ = d.Hv / d.Hk;
  const pack = (x: Value, H: number, D: number) => e.one("Reshape", [x, e.ints([0, 0, H * D])]);
  const repeat = (x: Value) =>
    e.one("Reshape", [
      e.one("Expand", [e.one("Unsqueeze", [x, e.ints([3])]), e.ints([1, 1, 1, n_, 1])]),
      e.ints([0, 0, d.Hv * d.K]),
    ]);
  const qHeads = repeatKeys ? d.Hv : d.Hk;
  const [q3, k3] = repeatKeys && n_ > 1 ? [repeat(q), repeat(k)] : [pack(q, d.Hk, d.K), pack(k, d.Hk, d.K)];
  const v3 = pack(v, d.Hv, d.V);
  const attrs = [
    attr.string("update_rule", "gated_delta"),
    attr.int("q_num_heads", qHeads),
    attr.int("kv_num_heads", d.Hv),
    attr.float("scale", scale),
  ];
  if (chunk !== undefined && domain === MS_DOMAIN) attrs.push(attr.int("chunk_size", chunk));
  // Both outputs are required by the schema (onnxruntime 1.30 rejects a node without present_state).
  const laOutputs = [`${e.base}_packed`, finalState ?? `${e.base}_present_state`];
  const la = e.op("LinearAttention", [q3, k3, v3, state, g, beta], laOutputs, attrs, domain);
  e.op("Reshape", [la[0]!, e.ints([0, 0, d.Hv, d.V])], [output]);
}

/** gdn.CausalConv1d as (com.microsoft | ONNX-27) CausalConvWithState, whose state holds W-1 positions. */
function lowerConv(e: Emitter, n: Node, domain: string): void {
  const w = n.inputs[ConvIn.weight];
  const W = staticDim(w, 2);
  check(
    w?.rank === 3 && staticDim(w, 1) === 1 && W !== undefined,
    "target",
    `the conv weight ${showDims(dimsOf(w))} is not a static [C,1,W] tensor`,
    n,
  );
  const state = n.inputs[ConvIn.convState];
  const S = state ? staticDim(state, 2) : n.attrInt(ConvAttr.stateSize, 0) || W - 1;
  check(S !== undefined, "target", `the conv state ${showDims(dimsOf(state))} has no static length (dim 2)`, n);
  const activation = n.attrString(ConvAttr.activation) ?? DEFAULT_CONV_ACTIVATION;
  const { ins, outs } = detach(e, n);
  const [x, weight, bias] = [ins[ConvIn.x]!, ins[ConvIn.weight]!, ins[ConvIn.bias]];
  const [y, stateOut] = [outs[ConvOut.y]!, outs[ConvOut.convStateOut]];
  // CausalConvWithState keeps W-1 positions; a longer state (HF keeps W) is trimmed on the way in
  // and rebuilt on the way out (the last S columns of concat(state, x)).
  const past = state && S > W - 1 ? e.sliceTail(state, S - (W - 1)) : state;
  const keepsOwnState = S === W - 1 && stateOut;
  const convOutputs = [y, keepsOwnState ? stateOut : `${e.base}_present`];
  e.op("CausalConvWithState", [x, weight, bias, past], convOutputs, [attr.string("activation", activation)], domain);
  if (stateOut && !keepsOwnState) {
    const cat = state
      ? e.one("Concat", [state, x], [attr.int("axis", 2)])
      : e.one("Pad", [x, e.ints([0, 0, S, 0, 0, 0])]);
    e.op("Slice", [cat, e.ints([-S]), e.ints([INT64_MAX]), e.ints([2])], [stateOut]);
  }
}

/** -exp(A_log) as a constant when A_log is one, else as Exp + Neg. */
export function decayScale(e: Emitter, aLog: Value): Value {
  const c = constantOf(aLog);
  if (c)
    return e.floats(
      c.data.map((x) => -Math.exp(x)),
      [c.data.length],
    );
  return e.one("Neg", [e.one("Exp", [aLog])]);
}

function checkGatingTypes(n: Node): void {
  const reason = "a/b are not float32 (the gate ops return g in the type of a; the contract's g is float32)";
  for (const i of [GatingIn.a, GatingIn.b]) check(n.inputs[i]?.type?.elemType === FLOAT, "target", reason, n);
}
