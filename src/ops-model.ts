/**
 * One-node models of the gdn ops, for running a fused op directly (tests, benchmarks, a user's own
 * harness) without hand-writing ONNX protos.
 */
import { encodeMessage, onnx } from "./ir/onnx.js";
import { GDN_DOMAIN, GDN_OPSET, type GdnOp } from "./ops.js";

/**
 * A graph input or output: float32 unless `elemType` says otherwise; no `dims` means unknown rank. The name ""
 * is an absent optional input or output: the node has "" there and the graph no input or output for it.
 */
export interface TensorSpec {
  name: string;
  elemType?: number;
  dims?: (number | string)[];
}

export interface OneNodeSpec {
  opType: keyof typeof GdnOp | string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  attributes?: onnx.IAttributeProto[];
  /** Default "n0". */
  nodeName?: string;
  /** Default the gdn opset this library implements. */
  gdnOpset?: number;
}

/** The encoded ModelProto of one gdn-domain node whose inputs and outputs are the graph's. */
export function oneNodeModel(spec: OneNodeSpec): Uint8Array {
  const vi = (t: TensorSpec): onnx.IValueInfoProto => ({
    name: t.name,
    type: {
      tensorType: {
        elemType: t.elemType ?? onnx.TensorProto.DataType.FLOAT,
        ...(t.dims
          ? { shape: { dim: t.dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) } }
          : {}),
      },
    },
  });
  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [
      { domain: "", version: 17 },
      { domain: GDN_DOMAIN, version: spec.gdnOpset ?? GDN_OPSET },
    ],
    producerName: "gdn-fuse oneNodeModel",
    graph: {
      name: spec.opType,
      node: [
        {
          name: spec.nodeName ?? "n0",
          opType: spec.opType,
          domain: GDN_DOMAIN,
          input: spec.inputs.map((t) => t.name),
          output: spec.outputs.map((t) => t.name),
          attribute: spec.attributes ?? [],
        },
      ],
      input: spec.inputs.filter((t) => t.name !== "").map(vi),
      output: spec.outputs.filter((t) => t.name !== "").map(vi),
    },
  };
  return encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(model));
}

/**
 * A float32 delta-rule node (ChunkGatedDeltaRule or RecurrentGatedDeltaRule) over [B,T,Hk,K] q/k,
 * [B,T,Hv,V] v, [B,T,Hv] g/beta, with an initial state in and the final state out ([B,Hv,K,V], "kv").
 * The first output is named `outputName` (an exported layer names it "core_attn_out").
 */
export function deltaRuleModel(
  opType: "ChunkGatedDeltaRule" | "RecurrentGatedDeltaRule",
  d: { B: number; T: number; Hk: number; Hv: number; K: number; V: number },
  attributes: onnx.IAttributeProto[] = [],
  outputName = "output",
): Uint8Array {
  const { B, T, Hk, Hv, K, V } = d;
  return oneNodeModel({
    opType,
    inputs: [
      { name: "query", dims: [B, T, Hk, K] },
      { name: "key", dims: [B, T, Hk, K] },
      { name: "value", dims: [B, T, Hv, V] },
      { name: "g", dims: [B, T, Hv] },
      { name: "beta", dims: [B, T, Hv] },
      { name: "initial_state", dims: [B, Hv, K, V] },
    ],
    outputs: [
      { name: outputName, dims: [B, T, Hv, V] },
      { name: "final_state", dims: [B, Hv, K, V] },
    ],
    attributes,
  });
}
