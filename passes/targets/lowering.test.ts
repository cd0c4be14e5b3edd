/**
 * The ort and onnx targets: each layer case fused, lowered, and run in stock onnxruntime-node
 * (nothing of ours loaded in this file) against the PyTorch outputs of test_data_set_0 (and of
 * test_data_set_1 where a case has one: the dynamic-batch layer, run at a second batch size).
 * onnxruntime 1.30 loads ONNX opset 27 only with ALLOW_RELEASED_ONNX_OPSET_ONLY=0 (docs/targets.md).
 */
process.env.ALLOW_RELEASED_ONNX_OPSET_ONLY = "0";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { attr, type Graph } from "../../src/ir/graph.js";
import type { onnx } from "../../src/ir/onnx.js";
import type { Target } from "../../src/pipeline/index.js";
import { MODELS, TOLERANCE, histogram, mutateAndFuse, runAgainstCase } from "../../test/helpers/index.js";

/**
 * Fuses for `target` in one fuseModel call (the cores emit gdn ops, the lowering pass rewrites them).
 * With `mutate`, fuses for gdn first, edits the fused graph, then runs only the lowering pass.
 */
async function fuseFor(name: string, target: Target, mutate?: (g: Graph) => void) {
  const lowerOnly = { first: { target: "gdn" as const }, target, passes: [`lower-to-${target}`] };
  const r = mutate
    ? await mutateAndFuse(name, (m) => mutate(m.graph), lowerOnly)
    : await mutateAndFuse(name, undefined, { target });
  return { model: r.model.proto, fused: r.first ?? r, lowered: r };
}

/** Runs a lowered model in stock onnxruntime-node (nothing of ours loaded) on a data set; relative L2 per output. */
async function runStock(model: onnx.IModelProto, name: string, set = "test_data_set_0"): Promise<number[]> {
  return (await runAgainstCase(model, name, ["cpu"], undefined, set)).map((o) => o.err);
}

interface Case {
  name: string;
  layers: number;
  nodes: Record<"ort" | "onnx", number>;
}
const CASES: Case[] = [
  { name: "layer_qwen3next_prefill_t96", layers: 1, nodes: { ort: 24, onnx: 30 } },
  { name: "layer_qwen3next_decode_b2", layers: 1, nodes: { ort: 27, onnx: 33 } },
  // dynamic batch (dim_param "batch"): the same graph as decode_b2, run at B=2 and B=3
  { name: "layer_qwen3next_decode_dynb", layers: 1, nodes: { ort: 27, onnx: 33 } },
  { name: "model_qwen35_tiny_t50", layers: 3, nodes: { ort: 236, onnx: 254 } },
  { name: "layer_qwen35_prefill_t64", layers: 1, nodes: { ort: 24, onnx: 30 } },
  { name: "layer_qwen35_decode_b2", layers: 1, nodes: { ort: 27, onnx: 33 } },
];
const TARGET_OPS = {
  ort: [
    "com.microsoft.LinearAttention",
    "com.microsoft.CausalConvWithState",
    "com.microsoft.LinearAttentionGate",
    "com.microsoft.GatedRMSNorm",
  ],
  onnx: ["LinearAttention", "CausalConvWithState", "RMSNormalization"],
};
const REPORTED = {
  ort: [
    "com.microsoft.LinearAttention",
    "com.microsoft.CausalConvWithState",
    "com.microsoft.LinearAttentionGate",
    "com.microsoft.GatedRMSNorm",
  ],
  onnx: [
    "ai.onnx.LinearAttention",
    "ai.onnx.CausalConvWithState",
    "ai.onnx.Softplus+Sigmoid",
    "ai.onnx.RMSNormalization",
  ],
};

const present = CASES.filter((c) => existsSync(join(MODELS, c.name, "test_data_set_0")));

describe.each(["ort", "onnx"] as const)("target %s", (target) => {
  it.each(present)(
    "fuses $name and matches its data sets in stock onnxruntime",
    async (c) => {
      const { model, lowered } = await fuseFor(c.name, target);
      const report = lowered;
      expect(report.passes[0]!.skipped).toEqual([]);
      expect(report.fused).toEqual(Object.fromEntries(REPORTED[target].map((op) => [op, c.layers])));
      const h = histogram(model);
      expect(Object.keys(h).filter((k) => k.startsWith("gdn."))).toEqual([]);
      for (const op of TARGET_OPS[target]) expect(h[op], op).toBe(c.layers);
      expect(model.graph!.node!.length).toBe(c.nodes[target]);
      if (target === "onnx") expect(model.opsetImport!.find((o) => !o.domain)?.version).toBe(27);
      const sets = readdirSync(join(MODELS, c.name))
        .filter((d) => d.startsWith("test_data_set_"))
        .sort();
      for (const set of sets) {
        const errs = await runStock(model, c.name, set);
        expect(errs.length).toBe(readdirSync(join(MODELS, c.name, set)).filter((f) => f.startsWith("output_")).length);
        for (const e of errs) expect(e, set).toBeLessThanOrEqual(TOLERANCE.float32);
      }
    },
    120_000,
  );

  it('rejects a core with state_layout "vk", with reason', async () => {
    const { model, lowered } = await fuseFor("layer_qwen3next_decode_b2", target, (g) => {
      const core = g.nodes.find((n) => n.opType === "RecurrentGatedDeltaRule")!;
      core.proto.attribute = core.proto
        .attribute!.filter((a) => a.name !== "state_layout")
        .concat(attr.string("state_layout", "vk"));
    });
    const skipped = lowered!.passes[0]!.skipped;
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ stage: "target", node: expect.stringContaining("RecurrentGatedDeltaRule") });
    expect(skipped[0]!.reason).toContain('state_layout "vk"');
    expect(histogram(model)["gdn.RecurrentGatedDeltaRule"]).toBe(1); // left as it was, not lowered wrongly
    expect(
      lowered!.fused[target === "ort" ? "com.microsoft.LinearAttention" : "ai.onnx.LinearAttention"],
    ).toBeUndefined();
  }, 60_000);
});

// Half-precision layers: the conv and the norm lower (the contrib/standard ops take float16/bfloat16),
// the core and the gating stay gdn ops with a "target" refusal: LinearAttention's decay and beta share
// the query's type while the gdn contract keeps g float32, and the gate ops return g in a's type.
const HALF = [
  { name: "layer_qwen3next_prefill_t96_fp16", core: "ChunkGatedDeltaRule", elem: 10 },
  { name: "layer_qwen3next_prefill_t64_bf16", core: "ChunkGatedDeltaRule", elem: 16 },
  { name: "layer_qwen35_decode_b2_bf16", core: "RecurrentGatedDeltaRule", elem: 16 },
].filter((c) => existsSync(join(MODELS, c.name, "model.onnx")));

describe.each(["ort", "onnx"] as const)("target %s, half-precision layers", (target) => {
  it.each(HALF)(
    "rejects the core and the gating of $name (element type $elem), with reason",
    async (c) => {
      const { fused: report } = await fuseFor(c.name, target);
      const lower = report.passes.find((p) => p.name === `lower-to-${target}`)!;
      expect(lower.skipped.map((s) => [s.anchor, s.stage])).toEqual([
        [c.core, "target"],
        ["GatedDeltaGating", "target"],
      ]);
      expect(lower.skipped[0]!.reason).toBe(
        `query has element type ${c.elem}; the lowering handles float32 only (LinearAttention's decay/beta share the query's type)`,
      );
      expect(lower.skipped[1]!.reason).toMatch(/^a\/b are not float32/);
      const domain = target === "ort" ? "com.microsoft" : "ai.onnx";
      expect(report.fused).toEqual({
        [`gdn.${c.core}`]: 1,
        "gdn.GatedDeltaGating": 1,
        [`${domain}.CausalConvWithState`]: 1,
        [target === "ort" ? "com.microsoft.GatedRMSNorm" : "ai.onnx.RMSNormalization"]: 1,
      });
    },
    120_000,
  );
});
