/**
 * layer-gated-rmsnorm: near misses of the gated RMSNorm, each made by editing the norm of a core-fused
 * exported layer. Another eps is read into the fused node; other shapes of the norm are refused with
 * the stage and reason.
 */
import { describe, expect, it } from "vitest";
import type { Graph } from "../src/ir/graph.js";
import { arrayToTensor } from "../src/ir/tensor.js";
import { CORE_PASSES, fuseLayers, hasCase, mutateAndFuse, refusals } from "../test/helpers/index.js";
import { only } from "../test/helpers/graph-edit.js";

const PREFILL = "layer_qwen3next_prefill_t96";
const normAdd = (g: Graph) => only(g, (n) => n.opType === "Add" && n.inputs[0]?.producer?.opType === "ReduceMean");

describe.skipIf(!hasCase(PREFILL))("layer-gated-rmsnorm near misses", () => {
  it("reads another RMSNorm eps (1e-5) into the fused node", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      const add = normAdd(g);
      add.inputs[1] = g.addInitializer(arrayToTensor("eps_1e5", [], 1, [1e-5]));
    });
    expect(r.allFused["gdn.GatedRMSNorm"]).toBe(1);
    const norm = r.model.proto.graph!.node!.find((n) => n.opType === "GatedRMSNorm")!;
    expect(norm.attribute!.find((a) => a.name === "epsilon")!.f).toBeCloseTo(1e-5, 10);
  }, 60_000);

  it("rejects an RMSNorm with eps added outside the square root, with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      // rsqrt(mean + eps) -> 1 / (sqrt(mean) + eps)
      const add = normAdd(g);
      const sqrt = [...add.output().consumers][0]!;
      const recip = [...sqrt.output().consumers][0]!;
      const mean = add.inputs[0]!;
      sqrt.inputs = [mean];
      mean.consumers.add(sqrt);
      add.inputs = [sqrt.output(), add.inputs[1]];
      recip.inputs = [add.output()];
      sqrt.output().consumers.delete(recip);
      sqrt.output().consumers.add(add);
      mean.consumers.delete(add);
      add.output().consumers.delete(sqrt);
      add.output().consumers.add(recip);
    });
    expect(r.allFused["gdn.GatedRMSNorm"]).toBeUndefined();
    const reason = expect.stringContaining("not + eps");
    expect(refusals(r, "layer-gated-rmsnorm")).toEqual([{ stage: "eps", reason }]);
  }, 60_000);

  it("rejects a (1 + w) RMSNorm weight, with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      const wMul = only(
        g,
        (n) => n.opType === "Mul" && !!n.inputs[0]?.initializer && n.inputs[0].name.includes("norm"),
      );
      const one = g.addInitializer(arrayToTensor("one", [], 1, [1]));
      const plus = g.addNode({ opType: "Add", inputs: [one, wMul.inputs[0]!], outputs: ["one_plus_w"] });
      wMul.inputs[0]!.consumers.delete(wMul);
      wMul.inputs[0] = plus.output();
      plus.output().consumers.add(wMul);
    });
    expect(r.allFused["gdn.GatedRMSNorm"]).toBeUndefined();
    expect(refusals(r, "layer-gated-rmsnorm")).toEqual([
      { stage: "weight", reason: "the norm weight is (1 + w) (offset weight), not w" },
    ]);
  }, 60_000);
});

const PREFILL_FP16 = "layer_qwen3next_prefill_t96_fp16";

describe.skipIf(!hasCase(PREFILL_FP16))("layer-gated-rmsnorm, half precision", () => {
  it("rejects a gated RMSNorm that returns float32 from float16 x (no Cast back), with reason", async () => {
    let mean = "";
    const r = await mutateAndFuse(
      PREFILL_FP16,
      ({ graph: g }) => {
        // drop the final `.to(input_dtype)`: the out_proj then reads the float32 product
        mean = g.nodes.find((n) => n.opType === "ReduceMean")!.name;
        const last = g.nodes.filter(
          (n) =>
            n.opType === "Cast" &&
            n.attrInt("to") === 10 &&
            n.inputs[0]?.producer?.opType === "Mul" &&
            n.inputs[0].producer.inputs.some((v) => v?.producer?.opType === "Mul"),
        );
        expect(last).toHaveLength(1);
        g.replaceAllUses(last[0]!.output(), last[0]!.inputs[0]!);
        g.removeNodes(last);
      },
      { first: { passes: CORE_PASSES }, passes: ["layer-gated-rmsnorm"] },
    );
    expect(r.fused).toEqual({});
    expect(r.passes[0]!.skipped).toEqual([
      expect.objectContaining({
        anchor: mean,
        stage: "dtype",
        reason: "the norm weight is float16; GatedRMSNorm takes it in x's type (float32) or float32",
      }),
    ]);
  }, 60_000);
});
