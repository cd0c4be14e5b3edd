/**
 * The lowering reads an attribute a gdn node leaves out as the op contract's default (src/ops.ts), not
 * as a value of its own: a CausalConv1d without `activation` is a SiLU conv (docs/ops.md).
 */
import { describe, expect, it } from "vitest";
import { fuseModel, loadModel, oneNodeModel, type Target } from "../../src/index.js";
import { attr } from "../../src/ir/graph.js";

function convModel(attributes: ReturnType<typeof attr.string>[]): Uint8Array {
  return oneNodeModel({
    opType: "CausalConv1d",
    inputs: [
      { name: "x", dims: [1, 4, 6] },
      { name: "weight", dims: [4, 1, 3] },
    ],
    outputs: [{ name: "y", dims: [1, 4, 6] }],
    attributes,
  });
}

async function loweredActivation(model: Uint8Array, target: Target): Promise<string | undefined> {
  const m = await loadModel(model);
  const report = await fuseModel(m.proto, { target, passes: [target === "ort" ? "lower-to-ort" : "lower-to-onnx"] });
  expect(report.passes[0]!.applied).toHaveLength(1);
  const conv = m.proto.graph!.node!.find((n) => n.opType === "CausalConvWithState");
  const a = conv?.attribute?.find((x) => x.name === "activation");
  return a?.s ? Buffer.from(a.s).toString() : undefined;
}

describe("lowering: attributes left out take the contract's defaults", () => {
  for (const target of ["ort", "onnx"] as const) {
    it(`a CausalConv1d without activation lowers to a SiLU CausalConvWithState (${target})`, async () => {
      expect(await loweredActivation(convModel([]), target)).toBe("silu");
      expect(await loweredActivation(convModel([attr.string("activation", "none")]), target)).toBe("none");
    });
  }
});
