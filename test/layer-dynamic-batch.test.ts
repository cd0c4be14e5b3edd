/**
 * Layer passes on a dynamic-batch export (dim_param "batch" on dim 0; T, heads, head sizes static):
 * layer_qwen3next_decode_dynb fuses to the same 12 nodes as layer_qwen3next_decode_b2, nothing in the
 * fused graph bakes a batch size in, and it reproduces PyTorch at B=2 (test_data_set_0) and B=3
 * (test_data_set_1) through the gdn runtime (the ort/onnx targets run both sets in
 * passes/targets/lowering.test.ts). Near miss: a symbolic head count, refused with reasons by three
 * passes (a layout Reshape that bakes batch 2 in: passes/layer-layout.test.ts).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Graph, type Value } from "../src/ir/graph.js";
import { constantOf } from "../src/ir/constant.js";
import type { onnx } from "../src/ir/onnx.js";
import type { Target } from "../src/pipeline/index.js";
import {
  LAYERS_AFTER_CORES,
  MODELS,
  TOLERANCE,
  declareType,
  fuseCase,
  mutateAndFuse,
  opCounts,
  runAgainstCase,
  skippedOf,
} from "./helpers/index.js";

const DYNB = "layer_qwen3next_decode_dynb";
const STATIC = "layer_qwen3next_decode_b2";
const has = (name: string) => existsSync(join(MODELS, name, "test_data_set_0"));

/**
 * What in a graph could fix the batch size: dim 0 of every Reshape target (must be 0 = copy, or -1),
 * of every Expand shape and Tile repeats (must be 1), and of every declared shape of rank >= 2 that is
 * not an initializer (must be the symbol "batch").
 */
function batchLeaks(model: onnx.IModelProto): string[] {
  const g = Graph.fromProto(model.graph!);
  const leaks: string[] = [];
  const first = (v: Value | undefined) => (v ? constantOf(v)?.data[0] : undefined);
  for (const n of g.nodes) {
    if (n.domain !== "") continue;
    if (n.opType === "Reshape" && first(n.inputs[1]) !== 0 && first(n.inputs[1]) !== -1)
      leaks.push(`${n.name}: Reshape target dim 0 = ${first(n.inputs[1])}`);
    if ((n.opType === "Expand" || n.opType === "Tile") && first(n.inputs[1]) !== 1)
      leaks.push(`${n.name}: ${n.opType} dim 0 = ${first(n.inputs[1])}`);
  }
  const inits = new Set((model.graph!.initializer ?? []).map((t) => t.name));
  for (const vi of [...model.graph!.input!, ...(model.graph!.valueInfo ?? []), ...model.graph!.output!]) {
    const dims = vi.type?.tensorType?.shape?.dim ?? [];
    if (inits.has(vi.name!) || dims.length < 2) continue;
    if (dims[0]!.dimParam !== "batch") leaks.push(`${vi.name}: declared dim 0 = ${JSON.stringify(dims[0])}`);
  }
  return leaks;
}

describe.runIf(has(DYNB) && has(STATIC))("dynamic-batch layer (target gdn)", () => {
  it("fuses layer_qwen3next_decode_dynb to 12 nodes, op for op as layer_qwen3next_decode_b2", async () => {
    const dyn = await fuseCase(DYNB);
    const fixed = await fuseCase(STATIC);
    expect(dyn.model.proto.graph!.node!.length).toBe(12);
    expect(opCounts(dyn.model.proto)).toEqual(opCounts(fixed.model.proto));
    expect(dyn.report.fused).toEqual(fixed.report.fused);
    expect(dyn.report.fused).toEqual({
      "gdn.RecurrentGatedDeltaRule": 1,
      "gdn.GatedDeltaGating": 1,
      "gdn.CausalConv1d": 1,
      "gdn.GatedRMSNorm": 1,
    });
    for (const p of dyn.report.passes) expect(p.skipped, p.name).toEqual([]);
    const layout = dyn.report.passes.find((p) => p.name === "layer-layout")!.applied;
    expect(layout.map((a) => a.op)).toEqual(["gdn.RecurrentGatedDeltaRule[layout]"]);
  }, 120_000);

  it.each(["test_data_set_0", "test_data_set_1"])(
    "fuses layer_qwen3next_decode_dynb and matches %s through the gdn runtime",
    async (set) => {
      const { model } = await fuseCase(DYNB);
      const outs = await runAgainstCase(model.proto, DYNB, ["gdn"], undefined, set);
      expect(outs).toHaveLength(3); // output, new_conv_state, new_recurrent_state
      for (const o of outs) expect(o.err, o.name).toBeLessThanOrEqual(TOLERANCE.float32);
    },
    120_000,
  );

  it.each(["gdn", "ort", "onnx"] as Target[])(
    "fuses layer_qwen3next_decode_dynb for %s without baking a batch size in",
    async (target) => {
      const { model } = await fuseCase(DYNB, { target });
      expect(batchLeaks(model.proto)).toEqual([]);
    },
    120_000,
  );

  it("fuses the prefill layer exported with a dynamic batch to 12 nodes; zeros of a run-time shape are no initial state", async () => {
    const PREFILL = "layer_qwen3next_prefill_dynb";
    const { model, report } = await fuseCase(PREFILL);
    expect(model.proto.graph!.node!.length).toBe(12);
    expect(report.fused).toEqual({
      "gdn.ChunkGatedDeltaRule": 1,
      "gdn.GatedDeltaGating": 1,
      "gdn.CausalConv1d": 1,
      "gdn.GatedRMSNorm": 1,
    });
    const core = model.proto.graph!.node!.find((n) => n.opType === "ChunkGatedDeltaRule")!;
    expect(core.input).toHaveLength(5); // the Expand(0, Shape(...)) state was dropped
    expect(report.passes[0]!.applied[0]!.details).toMatchObject({ B: "batch", initialState: false });
    expect(batchLeaks(model.proto)).toEqual([]);
    for (const set of ["test_data_set_0", "test_data_set_1"])
      for (const o of await runAgainstCase(model.proto, PREFILL, ["gdn"], undefined, set))
        expect(o.err, `${set} ${o.name}`).toBeLessThanOrEqual(TOLERANCE.float32);
  }, 120_000);

  it("rejects a symbolic head count, with reason (layer-gqa-repeat, layer-gating, layer-layout)", async () => {
    const layer = await mutateAndFuse(
      DYNB,
      ({ graph: g }) => {
        const core = g.nodes.find((n) => n.opType === "RecurrentGatedDeltaRule")!;
        const v = core.inputs[2]!;
        declareType(g, v, v.type!.elemType, ["batch", 1, "heads", 24]);
      },
      LAYERS_AFTER_CORES,
    );
    const reason = "the value [batch,1,heads,24] has no static head count (dim 2 of [B,T,H,V])";
    expect(skippedOf(layer, "layer-gqa-repeat")).toMatchObject([{ stage: "shape", reason }]);
    expect(skippedOf(layer, "layer-gating")).toMatchObject([{ stage: "shape", reason }]);
    const s = skippedOf(layer, "layer-layout");
    expect(s).toHaveLength(1);
    expect(s[0]!.stage).toBe("shape");
    expect(s[0]!.reason).toContain("value [batch,1,heads,24]");
  }, 120_000);
});

// Core-only dynamic-batch cases: no layer around the core, so the layer passes find nothing, and say
// so by structure (the same reasons as the static core-only exports), never by a symbolic batch.
const CORE_ONLY = ["chunk_t100_dynb", "recurrent_t1_dynb"].filter(has);

describe("dynamic-batch core-only cases", () => {
  it.each(CORE_ONLY)(
    "fuses the core of %s; the layer passes give structural reasons only",
    async (name) => {
      const { model, report } = await fuseCase(name);
      expect(model.proto.graph!.node!.length).toBe(1);
      const skipped = report.passes.filter((p) => p.name.startsWith("layer-")).flatMap((p) => p.skipped);
      expect(skipped.map((s) => [s.pass, s.stage])).toEqual([
        ["layer-gqa-repeat", "anchor"],
        ["layer-gating", "beta"],
        ["layer-layout", "gating"],
      ]);
      for (const s of skipped) expect(s.reason).not.toMatch(/static|batch|shape/);
    },
    120_000,
  );
});
