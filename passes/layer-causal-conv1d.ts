/**
 * layer-causal-conv1d: depthwise causal conv1d + SiLU -> gdn.CausalConv1d.
 *
 * Prefill (causal_conv1d_fn written as nn.Conv1d with padding W-1):
 *   x [B,C,T] ─ Conv(group=C, pads=[W-1, p]) ─ Slice(axis 2, 0:T) ─ x*Sigmoid(x) ─> y
 * Decode (causal_conv1d_update made functional):
 *   state [B,C,S], x [B,C,T] ─ Concat(axis 2) ─┬ Conv(group=C, no pads) ─ Slice(axis 2, last T) ─ SiLU ─> y
 *                                              └ Slice(axis 2, last S) ──────────────────────────> new state
 * The state size S is written as the state_size attribute (HF keeps S = W; FLA/vLLM keep W-1).
 * Checks: depthwise weight [C,1,W], stride/dilation 1, the causal left padding W-1, the output
 * slice, and the SiLU activation.
 */
import { attr, constantOf, dimsOf, fusedOp, type Node, showDims, staticDim, type Value } from "../src/ir/index.js";
import {
  candidatePass,
  addGdnNode,
  check,
  checkFloatType,
  resolveIndex,
  siluInput,
  sliceOf,
  soleConsumer,
} from "../src/pattern/index.js";
import { ConvAttr, FLOAT, GdnOp, typeName } from "../src/ops.js";

export const layerCausalConv1d = candidatePass({
  name: "layer-causal-conv1d",
  description: "depthwise causal Conv1d + SiLU (prefill and decode state update) -> gdn.CausalConv1d",
  anchors: ["Conv"],
  accept: (conv) => constantOf(conv.inputs[1])?.dims.length === 3,
  rewrite(conv, ctx) {
    const m = matchConv(conv);
    const remove = [m.mul, ...(m.stateSlice ? [m.stateSlice] : [])];
    ctx.graph.removeNodes(remove);
    const inputs: (Value | undefined)[] = [m.x, conv.inputs[1], conv.inputs[2], m.state];
    while (inputs.length && !inputs[inputs.length - 1]) inputs.pop();
    const node = addGdnNode(ctx, {
      opType: GdnOp.CausalConv1d,
      name: "CausalConv1d",
      inputs,
      outputs: m.stateOut ? [m.y, m.stateOut] : [m.y],
      attributes: [attr.string(ConvAttr.activation, "silu"), attr.int(ConvAttr.stateSize, m.S)],
    });
    return {
      op: fusedOp(node),
      node: node.name,
      replacedNodes: m.count,
      details: { C: m.C, W: m.W, S: m.S, decode: !!m.state },
    };
  },
});

interface ConvMatch {
  x: Value;
  state?: Value;
  y: Value;
  stateOut?: Value;
  mul: Node;
  stateSlice?: Node;
  C: number;
  W: number;
  S: number;
  count: number;
}

export function matchConv(conv: Node): ConvMatch {
  const w = constantOf(conv.inputs[1])!;
  const [C, one, W] = w.dims as [number, number, number];
  check(
    one === 1 && conv.attrInt("group", 1) === C,
    "depthwise",
    `Conv weight [${w.dims}] with group ${conv.attrInt("group", 1)} is not depthwise [C,1,W] with group C`,
    conv,
  );
  check(
    (conv.attrInts("strides") ?? [1]).every((s) => s === 1) &&
      (conv.attrInts("dilations") ?? [1]).every((d) => d === 1),
    "depthwise",
    "Conv has a stride or dilation other than 1",
    conv,
  );
  const autoPad = conv.attrString("auto_pad") ?? "NOTSET";
  check(autoPad === "NOTSET", "padding", `Conv uses auto_pad ${autoPad}; explicit causal pads expected`, conv);
  const bias = conv.inputs[2] ? constantOf(conv.inputs[2]) : undefined;
  check(
    !conv.inputs[2] || (bias && bias.dims.length === 1 && bias.dims[0] === C),
    "bias",
    `the conv bias is ${bias ? `a constant of shape [${bias.dims}]` : "not a constant"}; CausalConv1d takes a constant bias of [${C}]`,
    conv,
  );
  const pads = conv.attrInts("pads") ?? [0, 0];
  const input = conv.inputs[0]!;
  const xType = checkFloatType(input, "dtype", "the conv input", conv);
  const wType = conv.inputs[1]?.type?.elemType;
  check(
    wType === xType || wType === FLOAT,
    "dtype",
    `the conv weight is ${typeName(wType)} and the input ${typeName(xType)}; CausalConv1d takes a weight in the input's type or float32`,
    conv,
  );
  const cat = input.producer;
  const decode = pads[0] === 0 && cat?.opType === "Concat" && cat.domain === "" && cat.inputs.length === 2;
  let x: Value, state: Value | undefined, stateOut: Value | undefined, stateSlice: Node | undefined;
  let S = 0;
  let count = 1;
  if (decode) {
    const axis = cat.attrInt("axis", 0)!;
    check(axis === 2 || axis === -1, "decode", `the Concat in front of the Conv joins axis ${axis}, not time`, cat);
    check(
      pads[1] === 0,
      "padding",
      `the decode Conv pads [${pads}]; the concatenated state provides the causal context`,
      conv,
    );
    state = cat.inputs[0]!;
    x = cat.inputs[1]!;
    const sShape = dimsOf(state);
    const sLen = staticDim(state, 2);
    check(
      sShape?.length === 3 && sShape[1] === C && sLen !== undefined,
      "decode",
      `the conv state ${showDims(sShape)} is not a [B,${C},S] tensor with static S`,
      cat,
    );
    S = sLen;
    check(S >= W - 1, "decode", `the conv state holds ${S} positions, fewer than W-1 = ${W - 1}`, cat);
    count++;
    for (const u of cat.output().consumers) {
      if (u === conv) continue;
      const sl = sliceOf(u);
      const len = S + (x.rank === 3 ? (staticDim(x, 2) ?? NaN) : NaN);
      check(
        sl && sl.axis === 2 && sl.step === 1,
        "state",
        `the concatenation is also read by ${u.opType}, not the state-update Slice`,
        u,
      );
      check(
        resolveIndex(sl.start, len) === len - S && resolveIndex(sl.end, len) === len,
        "state",
        `the state update keeps columns ${sl.start}:${sl.end} of ${len}, not the last S = ${S}`,
        u,
      );
      check(!stateSlice, "state", "two slices of the concatenation", u);
      stateSlice = u;
      stateOut = u.output();
      count++;
    }
  } else {
    check(
      pads.length === 2 && pads[0] === W - 1,
      "padding",
      `Conv pads [${pads}] are not causal: the left pad must be W-1 = ${W - 1}`,
      conv,
    );
    x = input;
  }
  const xShape = dimsOf(x);
  const T = xShape?.length === 3 ? staticDim(x, 2) : undefined;
  check(
    xShape?.length === 3 && xShape[1] === C && T !== undefined,
    "shape",
    `the conv input ${showDims(xShape)} is not a [B,${C},T] tensor with static T`,
    conv,
  );
  // Output slice: the T causal outputs.
  const convLen = decode ? S + T - W + 1 : T + pads[0]! + pads[1]! - W + 1;
  let y = conv.output();
  const after = soleConsumer(y);
  const sl = after ? sliceOf(after) : undefined;
  if (sl) {
    check(sl.axis === 2 && sl.step === 1, "slice", "the Slice after the Conv is not over time with step 1", after);
    const lo = resolveIndex(sl.start, convLen),
      hi = resolveIndex(sl.end, convLen);
    const want = decode ? convLen - T : 0;
    check(
      lo === want && hi === want + T,
      "slice",
      `the Slice keeps conv outputs ${lo}:${hi}; the causal outputs are ${want}:${want + T}`,
      after,
    );
    y = after!.output();
    count++;
  } else check(convLen === T, "slice", `the Conv gives ${convLen} steps for T = ${T} and no Slice trims them`, conv);
  // Activation: SiLU as x * sigmoid(x).
  const users = [...y.consumers];
  const mul = users.find((u) => u.opType === "Mul");
  const sig = users.find((u) => u.opType === "Sigmoid");
  const act = users.find((u) => u.opType !== "Mul" && u.opType !== "Sigmoid");
  check(
    !act || (mul && sig),
    "activation",
    `the conv output goes through ${act?.opType}, not SiLU (x * sigmoid(x))`,
    act,
  );
  check(
    mul && siluInput(mul) === y && users.length === 2,
    "activation",
    "the conv output is not followed by SiLU (x * sigmoid(x)) alone",
    mul ?? conv,
  );
  count += 2;
  return { x, state, y: mul.output(), stateOut, mul, stateSlice, C, W, S, count };
}
