/**
 * The serving form of a fused gated-delta layer (docs/serving.md): packed tokens of many sequences, state pools and
 * pool indices as graph inputs, the updated pools as graph outputs, gdn opset 2.
 */
import { GdnFuseError } from "../errors.js";
import { int64ToNumber, onnx } from "../ir/onnx.js";
import { arrayToTensor, tensorToArray } from "../ir/tensor.js";
import { GDN_DOMAIN } from "../ops.js";

export interface ServingFormOptions {
  /**
   * Speculative decoding: `state_indices` is [N, max_tokens] (token t of sequence n writes its recurrent state
   * into slot state_indices[n, t]), the conv pool has its own `conv_state_indices` [N], `num_accepted_tokens` [N]
   * is an input, and the delta rule is the recurrent op. Without it `state_indices` [N] serves both pools.
   */
  speculative?: { maxTokens: number };
  /** Positions the conv state pool keeps; default W-1, or W-2+maxTokens when speculative. */
  convStateSize?: number;
}

/** Graph input and output names of the serving form. */
export const SERVING_NAMES = {
  cuSeqlens: "cu_seqlens",
  stateIndices: "state_indices",
  convStateIndices: "conv_state_indices",
  numAcceptedTokens: "num_accepted_tokens",
  convPool: "conv_state_pool",
  recurrentPool: "recurrent_state_pool",
  convPoolOut: "conv_state_pool_out",
  recurrentPoolOut: "recurrent_state_pool_out",
} as const;

const INT64 = onnx.TensorProto.DataType.INT64;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const refuse = (why: string) => new GdnFuseError("E_USAGE", `toServingForm: ${why}`);

type Dim = number | string;
function valueInfo(name: string, elemType: number, dims: Dim[]): onnx.IValueInfoProto {
  const dim = dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}
const dimsOf = (v: onnx.IValueInfoProto | undefined): Dim[] | undefined =>
  v?.type?.tensorType?.shape?.dim?.map((d) => (d.dimParam ? d.dimParam : int64ToNumber(d.dimValue)));
const elemOf = (v: onnx.IValueInfoProto | undefined) => v?.type?.tensorType?.elemType ?? FLOAT;

/** The one node of each op the layer must have. */
function layerNodes(graph: onnx.IGraphProto) {
  const gdn = (graph.node ?? []).filter((n) => n.domain === GDN_DOMAIN);
  const one = (ops: string[], what: string) => {
    const found = gdn.filter((n) => ops.includes(n.opType ?? ""));
    if (found.length !== 1) throw refuse(`the model has ${found.length} gdn ${what} nodes, a fused layer has 1`);
    return found[0]!;
  };
  return {
    conv: one(["CausalConv1d"], "CausalConv1d"),
    delta: one(["ChunkGatedDeltaRule", "RecurrentGatedDeltaRule"], "delta-rule"),
  };
}

function initializer(graph: onnx.IGraphProto, name: string | undefined): onnx.ITensorProto | undefined {
  return (graph.initializer ?? []).find((t) => t.name === name);
}

/** Reshape targets [b, T, heads, dim] get T = -1 (any token count) and b = 1 (one packed row). */
function freeTokenAxis(graph: onnx.IGraphProto): void {
  for (const node of graph.node ?? []) {
    if (node.opType !== "Reshape" || (node.domain ?? "") !== "") continue;
    const shape = initializer(graph, node.input?.[1]);
    if (!shape) throw refuse(`Reshape node '${node.name}' has a shape that is not a constant`);
    const dims = Array.from(tensorToArray(shape) as ArrayLike<number | bigint>, Number);
    if (dims.length !== 4) throw refuse(`Reshape node '${node.name}' has shape [${dims}], expected [B,T,heads,dim]`);
    const name = `${node.name}_serving_shape`;
    const shared = (graph.node ?? []).some((n) => n !== node && n.input?.includes(shape.name ?? ""));
    if (!shared) graph.initializer = graph.initializer!.filter((t) => t !== shape);
    const target = BigInt64Array.from([1n, -1n, BigInt(dims[2]!), BigInt(dims[3]!)]);
    graph.initializer!.push(arrayToTensor(name, [4], INT64, target));
    node.input![1] = name;
  }
}

/**
 * The decode form feeds the conv output [B,C,1] straight to a channel Gather (T = 1 makes [B,C,1] and [B,1,C] the
 * same memory); with many tokens the conv output is transposed to [1,T,C] first and the Gather reads axis 2.
 */
function transposeConvOutput(graph: onnx.IGraphProto, conv: onnx.INodeProto): void {
  const y = conv.output![0]!;
  const users = (graph.node ?? []).filter((n) => n.input?.includes(y));
  if (users.length === 1 && users[0]!.opType === "Transpose") return;
  if (users.length !== 1 || users[0]!.opType !== "Gather") {
    const ops = users.map((u) => u.opType).join(", ");
    throw refuse(`the CausalConv1d output '${y}' feeds ${ops || "nothing"}, expected a Transpose or a Gather`);
  }
  const gather = users[0]!;
  const axis = gather.attribute?.find((a) => a.name === "axis");
  if (!axis || int64ToNumber(axis.i) !== 1) {
    throw refuse(`Gather node '${gather.name}' after the conv must gather axis 1`);
  }
  axis.i = 2;
  const transposed = `${y}_serving_btc`;
  graph.node!.splice(graph.node!.indexOf(gather), 0, {
    name: `${conv.name}_serving_transpose`,
    opType: "Transpose",
    input: [y],
    output: [transposed],
    attribute: [{ name: "perm", type: onnx.AttributeProto.AttributeType.INTS, ints: [0, 2, 1] }],
  });
  gather.input![0] = transposed;
}

function convDims(graph: onnx.IGraphProto, conv: onnx.INodeProto): { C: number; W: number } {
  const weight = initializer(graph, conv.input?.[1]);
  if (!weight) throw refuse(`the CausalConv1d weight '${conv.input?.[1]}' is not an initializer`);
  const dims = (weight.dims ?? []).map(int64ToNumber);
  return { C: dims[0]!, W: dims.at(-1)! };
}

function stateDims(graph: onnx.IGraphProto, delta: onnx.INodeProto): Dim[] {
  const byName = (name: string | undefined) =>
    [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])].find((v) => v.name === name);
  const dims = dimsOf(byName(delta.input?.[5])) ?? dimsOf(byName(delta.output?.[1]));
  if (dims && dims.length === 4 && dims.slice(1).every((d) => typeof d === "number")) return dims.slice(1);
  return stateDimsFromHeads(graph, delta);
}

/** A layer without state inputs (prefill): heads and K, V from the Reshape + Split that make q, k, v. */
function stateDimsFromHeads(graph: onnx.IGraphProto, delta: onnx.INodeProto): Dim[] {
  const unknown = refuse(
    `the ${delta.opType} state shape is not known (no state input or output, and q/k/v ` +
      "do not come from one Split of a [B,T,heads,K+K+V] Reshape)",
  );
  const producer = (v: string | undefined) => (graph.node ?? []).find((n) => n.output?.includes(v ?? ""));
  const split = producer(delta.input?.[0]);
  const reshape = producer(split?.input?.[0]);
  const sizes = initializer(graph, split?.input?.[1]);
  const shape = initializer(graph, reshape?.input?.[1]);
  if (split?.opType !== "Split" || reshape?.opType !== "Reshape" || !sizes || !shape) throw unknown;
  const [K, , V] = Array.from(tensorToArray(sizes) as ArrayLike<number | bigint>, Number);
  const heads = Number((tensorToArray(shape) as ArrayLike<number | bigint>)[2]);
  if (!K || !V || !heads) throw unknown;
  const layout = delta.attribute?.find((a) => a.name === "state_layout");
  const vk = layout?.s ? new TextDecoder().decode(layout.s) === "vk" : false;
  return vk ? [heads, V, K] : [heads, K, V];
}

/**
 * Rewrites a fused gated-delta layer (as fuse-model writes it, prefill or decode) into its serving form.
 * Graph inputs: the packed hidden states [1, T_total, hidden], `cu_seqlens` [N+1], `state_indices` ([N]; or
 * [N, max_tokens] when speculative, then also `conv_state_indices` [N] and `num_accepted_tokens` [N]),
 * `conv_state_pool` [slots, C, S] and `recurrent_state_pool` [slots, ...state dims]. Graph outputs: the layer
 * output and both pools after the step (bind the pools themselves as these outputs to update them in place).
 * Throws a GdnFuseError naming what it cannot rewrite.
 */
export function toServingForm(model: onnx.IModelProto, options: ServingFormOptions = {}): onnx.IModelProto {
  const out = onnx.ModelProto.decode(onnx.ModelProto.encode(onnx.ModelProto.fromObject(model)).finish());
  const graph = out.graph;
  if (!graph) throw refuse("the model has no graph");
  const { conv, delta } = layerNodes(graph);
  const { C, W } = convDims(graph, conv);
  const spec = options.speculative;
  if (spec && !(Number.isInteger(spec.maxTokens) && spec.maxTokens >= 1)) {
    throw refuse(`speculative.maxTokens must be an integer >= 1, got ${spec.maxTokens}`);
  }
  const S = options.convStateSize ?? (spec ? W - 2 + spec.maxTokens : W - 1);
  if (!(Number.isInteger(S) && S >= W - 1)) {
    throw refuse(`convStateSize must be an integer >= W-1 = ${W - 1}, got ${S}`);
  }
  const state = stateDims(graph, delta);
  const hidden = hiddenInput(graph, conv, delta);
  const N = SERVING_NAMES;

  transposeConvOutput(graph, conv);
  freeTokenAxis(graph);
  // The conv keeps one pool slot per sequence; with per-token recurrent slots it gets its own index input.
  const convIndices: string = spec ? N.convStateIndices : N.stateIndices;
  const accepted = spec ? N.numAcceptedTokens : "";
  const [x, weight, bias] = [conv.input![0]!, conv.input![1]!, conv.input?.[2] ?? ""];
  conv.input = [x, weight, bias, N.convPool, N.cuSeqlens, convIndices, accepted];
  conv.output = [conv.output![0]!, N.convPoolOut];
  setIntAttr(conv, "state_size", S);
  if (spec && delta.opType === "ChunkGatedDeltaRule") {
    delta.opType = "RecurrentGatedDeltaRule";
    delta.attribute = (delta.attribute ?? []).filter((a) => a.name !== "chunk_size");
  }
  const servingInputs = [N.recurrentPool, N.cuSeqlens, N.stateIndices, ...(spec ? [accepted] : [])];
  delta.input = [...delta.input!.slice(0, 5), ...servingInputs];
  delta.output = [delta.output![0]!, N.recurrentPoolOut];

  const layerOut = graph.output!.find((o) => !isStateOutput(o.name, model));
  graph.input = [
    valueInfo(hidden.name!, elemOf(hidden), [1, "T_total", dimsOf(hidden)![2]!]),
    valueInfo(N.cuSeqlens, INT64, ["N_plus_1"]),
    valueInfo(N.stateIndices, INT64, spec ? ["N", spec.maxTokens] : ["N"]),
    ...(spec ? [valueInfo(N.convStateIndices, INT64, ["N"]), valueInfo(N.numAcceptedTokens, INT64, ["N"])] : []),
    valueInfo(N.convPool, elemOf(hidden), ["slots", C, S]),
    valueInfo(N.recurrentPool, FLOAT, ["slots", ...state]),
  ];
  graph.output = [
    valueInfo(layerOut!.name!, elemOf(layerOut), [1, "T_total", dimsOf(layerOut)![2]!]),
    valueInfo(N.convPoolOut, elemOf(hidden), ["slots", C, S]),
    valueInfo(N.recurrentPoolOut, FLOAT, ["slots", ...state]),
  ];
  graph.valueInfo = [];
  out.opsetImport = (out.opsetImport ?? []).map((o) => (o.domain === GDN_DOMAIN ? { ...o, version: 2 } : o));
  return out;
}

/** The layer's hidden-state input: the one graph input that is neither state. */
function hiddenInput(graph: onnx.IGraphProto, conv: onnx.INodeProto, delta: onnx.INodeProto): onnx.IValueInfoProto {
  const states = [conv.input?.[3], delta.input?.[5]];
  const inits = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? []).filter((i) => !states.includes(i.name ?? "") && !inits.has(i.name));
  if (inputs.length !== 1) throw refuse(`the layer has ${inputs.length} graph inputs besides its states, expected 1`);
  const dims = dimsOf(inputs[0]);
  if (!dims || dims.length !== 3 || typeof dims[2] !== "number") {
    throw refuse(`the input '${inputs[0]!.name}' must be [B,T,hidden] with a static hidden size`);
  }
  return inputs[0]!;
}

function isStateOutput(name: string | null | undefined, model: onnx.IModelProto): boolean {
  const nodes = model.graph?.node ?? [];
  return nodes.some((n) => n.domain === GDN_DOMAIN && (n.output?.length ?? 0) > 1 && n.output?.[1] === name);
}

function setIntAttr(node: onnx.INodeProto, name: string, value: number): void {
  const attrs = (node.attribute ?? []).filter((a) => a.name !== name);
  node.attribute = [...attrs, { name, type: onnx.AttributeProto.AttributeType.INT, i: value }];
}
