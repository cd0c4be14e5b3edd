/**
 * The pass on a deep model: 48 layers, 36 of them the exported Qwen3-Next gated-delta layer. Every
 * core and layer op fuses, the regions share one probe, and the fused stack still computes what the
 * unfused one does. (Its time and memory are measured by `npm run bench`, row pass_48layer.)
 */
import { describe, expect, it } from "vitest";
import { fuseModel } from "../src/pipeline/index.js";
import { buildLayerStack, loadCase } from "./helpers/index.js";

describe("synthetic 48-layer stack", () => {
  it("fuses all 36 gated-delta layers", async () => {
    const layer = await loadCase("layer_qwen3next_prefill_t96");
    const stack = buildLayerStack(layer.proto, { layers: 48, otherEvery: 4 });
    expect(stack.graph!.node!.length).toBeGreaterThan(36_000);
    const r = await fuseModel(stack);
    expect(r.fused["gdn.ChunkGatedDeltaRule"]).toBe(36);
    expect(r.fused["gdn.CausalConv1d"]).toBe(36);
    expect(r.fused["gdn.GatedRMSNorm"]).toBe(36);
    expect(r.fused["gdn.GatedDeltaGating"]).toBe(36);
    expect(r.passes.flatMap((p) => p.skipped)).toEqual([]);
  });
});
