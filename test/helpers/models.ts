/**
 * Small hand-made models the tests share (one-node gdn models come from src/ops-model.ts), and their parts: a
 * float32 graph input or output, a float32 initializer in external data.
 */
import { encodeMessage, onnx } from "../../src/ir/onnx.js";

/** A float32 graph input, output or value_info of these dims. */
export function float32Info(name: string, dims: readonly number[]): onnx.IValueInfoProto {
  return { name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } };
}

/** A float32 initializer of these dims whose bytes are external data, described by the `externalData` entries. */
export function externalFloat32(
  name: string,
  dims: number[],
  ...externalData: { key: string; value: string }[]
): onnx.ITensorProto {
  return { name, dims, dataType: 1, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData };
}

/** A model of IR version 8 that imports the default opset `opset` (and no other). */
export function modelOf(graph: onnx.IGraphProto, opset = 18): onnx.ModelProto {
  return onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ domain: "", version: opset }], graph });
}

/**
 * y = x + w over float32 [3], with w stored as external data described by `externalData` (e.g. location
 * weights.bin, offset, length): the bytes of the model.
 */
export function externalWeightModel(externalData: { key: string; value: string }[]): Uint8Array {
  const graph = {
    name: "ext",
    node: [{ opType: "Add", input: ["x", "w"], output: ["y"] }],
    initializer: [externalFloat32("w", [3], ...externalData)],
    input: [float32Info("x", [3])],
    output: [float32Info("y", [3])],
  };
  return encodeMessage(onnx.ModelProto, modelOf(graph, 17));
}
