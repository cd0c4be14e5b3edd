/**
 * layer-layout: the layout rewrite around a fused layer is refused, with the stage and reason, when the
 * layer is not what the rewrite assumes: a projection with a bias (static prefill layer), a Reshape that
 * bakes batch 2 into a dynamic-batch export. The gdn ops still fuse; only the layout stays as exported.
 */
import { describe, expect, it } from "vitest";
import { constantOf } from "../src/ir/constant.js";
import { arrayToTensor } from "../src/ir/tensor.js";
import { fuseLayers, hasCase, opCounts, refusals, skippedOf } from "../test/helpers/index.js";
import { i64, only, setInput } from "../test/helpers/graph-edit.js";

const PREFILL = "layer_qwen3next_prefill_t96";
const DYNB = "layer_qwen3next_decode_dynb";

describe.skipIf(!hasCase(PREFILL))("layer-layout near misses", () => {
  it("rejects a layer whose projection adds a bias, with reason (layer-layout)", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      const mm = only(g, (n) => n.opType === "MatMul" && constantOf(n.inputs[1])?.dims[1] === 8); // in_proj_ba
      const out = mm.output();
      const users = [...out.consumers];
      const bias = g.addInitializer(arrayToTensor("ba_bias", [8], 1, new Float32Array(8)));
      const add = g.addNode({ opType: "Add", inputs: [out, bias], outputs: ["ba_biased"] });
      add.output().type = out.type;
      for (const u of users) setInput(u, u.inputs.indexOf(out), add.output());
    });
    expect(refusals(r, "layer-layout")).toEqual([
      { stage: "projection", reason: "ba_biased comes from Add, not an input projection MatMul" },
    ]);
    expect(r.model.proto.graph!.node!.length).toBe(27); // the exporter's 26 + the Add: nothing rewritten
  }, 60_000);
});

describe.skipIf(!hasCase(DYNB))("layer-layout on a dynamic batch", () => {
  it("rejects a layout Reshape that bakes batch 2 in, with reason (layer-layout)", async () => {
    const r = await fuseLayers(DYNB, (g) => {
      // a/b heads: Reshape(split, [-1,1,4]) -> Reshape(split, [2,1,4]): right at B=2 only.
      const reshape = g.nodes.find(
        (n) => n.opType === "Reshape" && n.inputs[0]?.name === "split_with_sizes_1_split_0",
      )!;
      setInput(reshape, 1, i64(g, "baked_b2", [2, 1, 4]));
    });
    const reason = 'traced with "batch" = 3: the Reshape node_Reshape_326 to [2,1,4] does not fit [3,1,2,2]';
    expect(skippedOf(r, "layer-layout")).toEqual([
      expect.objectContaining({ stage: "layout", node: "node_Reshape_326", reason }),
    ]);
    // the gdn ops still fuse; only the layout rewrite is refused
    const counts = opCounts(r.model.proto);
    expect(counts["gdn.RecurrentGatedDeltaRule"]).toBe(1);
    expect(counts["gdn.GatedDeltaGating"]).toBe(1);
    expect(counts["ai.onnx.Einsum"]).toBeUndefined();
  }, 120_000);
});
