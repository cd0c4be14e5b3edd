/**
 * layer-causal-conv1d: near misses of the depthwise causal conv + SiLU, made by editing the conv of a
 * core-fused exported layer (another activation, non-causal pads, a float16 conv with a float16 or
 * bfloat16 weight). Refusals name the stage and reason; the float16 conv fuses and matches PyTorch.
 */
import { describe, expect, it } from "vitest";
import { attr, type Graph } from "../src/ir/graph.js";
import { constantOf } from "../src/ir/constant.js";
import { arrayToTensor } from "../src/ir/tensor.js";
import {
  TOLERANCE,
  expectMatchesCaseIfRuntime,
  fuseLayers,
  hasCase,
  refusals,
  skippedOf,
} from "../test/helpers/index.js";
import { declareType, gdnCores, only, setInput } from "../test/helpers/graph-edit.js";

const PREFILL = "layer_qwen3next_prefill_t96";

describe.skipIf(!hasCase(PREFILL))("layer-causal-conv1d near misses", () => {
  it("rejects a conv followed by another activation instead of SiLU, with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      const sig = only(g, (n) => n.opType === "Sigmoid" && n.inputs[0]?.producer?.opType === "Slice");
      sig.proto.opType = "Tanh";
    });
    expect(r.allFused["gdn.CausalConv1d"]).toBeUndefined();
    expect(refusals(r, "layer-causal-conv1d")).toEqual([
      { stage: "activation", reason: "the conv output goes through Tanh, not SiLU (x * sigmoid(x))" },
    ]);
  }, 60_000);

  it("rejects a conv without causal padding, with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      const conv = only(g, (n) => n.opType === "Conv");
      conv.proto.attribute = conv.proto.attribute!.filter((a) => a.name !== "pads").concat(attr.ints("pads", [1, 1]));
    });
    expect(r.allFused["gdn.CausalConv1d"]).toBeUndefined();
    expect(refusals(r, "layer-causal-conv1d")).toEqual([
      { stage: "padding", reason: "Conv pads [1,1] are not causal: the left pad must be W-1 = 3" },
    ]);
  }, 60_000);
});

// ---- float16: the conv of the prefill layer computed in float16 (weights cast in memory) ----
describe.skipIf(!hasCase(PREFILL))("float16 causal conv", () => {
  /** x -> Cast(fp16) -> Conv(fp16 weight) -> Slice -> SiLU (fp16) -> Cast(fp32) -> the rest, as an fp16 export writes it. */
  const convInFloat16 = (g: Graph) => {
    const conv = only(g, (n) => n.opType === "Conv");
    const w = constantOf(conv.inputs[1])!;
    setInput(conv, 1, g.addInitializer(arrayToTensor("conv_w16", w.dims, 10, w.data)));
    const x = conv.inputs[0]!;
    const cast = g.addNode({ opType: "Cast", inputs: [x], outputs: ["conv_x16"], attributes: [attr.int("to", 10)] });
    declareType(g, cast.output(), 10, x.staticShape!);
    setInput(conv, 0, cast.output());
    // conv -> Slice -> Sigmoid / Mul: all float16 now
    const slice = [...conv.output().consumers][0]!;
    const mul = [...slice.output().consumers].find((n) => n.opType === "Mul")!;
    const sig = [...slice.output().consumers].find((n) => n.opType === "Sigmoid")!;
    for (const v of [conv.output(), slice.output(), sig.output(), mul.output()]) declareType(g, v, 10, v.staticShape!);
    const y = mul.output();
    const users = [...y.consumers];
    const back = g.addNode({ opType: "Cast", inputs: [y], outputs: ["conv_y32"], attributes: [attr.int("to", 1)] });
    declareType(g, back.output(), 1, y.staticShape!);
    for (const u of users) setInput(u, u.inputs.indexOf(y), back.output());
  };

  it("fuses a float16 causal conv (float16 weight) and matches within the float16 tolerance", async () => {
    const r = await fuseLayers(PREFILL, convInFloat16);
    expect(r.allFused["gdn.CausalConv1d"]).toBe(1);
    const conv = gdnCores(r.model.proto)[0]!.graph.nodes.find((n) => n.opType === "CausalConv1d")!;
    expect(conv.inputs[0]!.type?.elemType).toBe(10);
    // layer-layout does not see through the Casts: the layer keeps its layout nodes, with the reason.
    expect(skippedOf(r, "layer-layout")[0]).toMatchObject({
      stage: "conv",
      reason: "query, key and value are not all rearrangements of one gdn.CausalConv1d output",
    });
    await expectMatchesCaseIfRuntime(r.model.proto, PREFILL, { tol: TOLERANCE.float16 });
  }, 60_000);

  it("rejects a bfloat16 conv weight on a float16 input, with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      convInFloat16(g);
      const conv = only(g, (n) => n.opType === "Conv");
      const w = constantOf(conv.inputs[1])!;
      setInput(conv, 1, g.addInitializer(arrayToTensor("conv_wbf16", w.dims, 16, w.data)));
    });
    expect(r.allFused["gdn.CausalConv1d"]).toBeUndefined();
    const s = skippedOf(r, "layer-causal-conv1d");
    expect(s[0]).toMatchObject({
      stage: "dtype",
      reason:
        "the conv weight is bfloat16 and the input float16; CausalConv1d takes a weight in the input's type or float32",
    });
  }, 60_000);
});
