/** Small hand-made models the runtime tests share (one-node gdn models come from src/ops-model.ts). */
import { encodeMessage, onnx } from "../../src/ir/onnx.js";

/**
 * y = x + w over float32 [3], with w stored as external data described by `externalData` (e.g. location
 * weights.bin, offset, length): the bytes of the model.
 */
export function externalWeightModel(externalData: { key: string; value: string }[]): Uint8Array {
  const vi = (name: string) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 3 }] } } } });
  const w = { name: "w", dims: [3], dataType: 1, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL, externalData };
  const model = onnx.ModelProto.fromObject({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "ext",
      node: [{ opType: "Add", input: ["x", "w"], output: ["y"] }],
      initializer: [w],
      input: [vi("x")],
      output: [vi("y")],
    },
  });
  return encodeMessage(onnx.ModelProto, model);
}
