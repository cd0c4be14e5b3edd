/**
 * Layer-level fusions (target gdn), whole pipeline: exact fused-op counts and node histograms per case,
 * every fused layer at most 12 nodes, and parity with test_data_set_0 through the gdn runtime. Each
 * layer pass's own near misses are beside it (passes/layer-*.test.ts).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Node } from "../src/ir/graph.js";
import type { onnx } from "../src/ir/onnx.js";
import {
  FUSED_LAYER_LAYOUT,
  MAX_LAYER_NODES,
  LAYERS_AFTER_CORES,
  MODELS,
  appliedOps,
  expectMatchesCase,
  fusedLayerHistogram,
  gdnCores,
  hasCase,
  histogram,
  mutateAndFuse,
  runtimeLoadError,
} from "./helpers/index.js";

const runtime = runtimeLoadError();

/**
 * Nodes of one fused gated-delta layer: every node the layer's outputs depend on (the out_proj output,
 * and the conv and recurrent state outputs when there are any), walking back until the layer input,
 * the hidden state the input projection MatMul reads. All nodes count (Constant nodes too); graph
 * inputs and initializers are not nodes. The walk must reach nothing but the hidden state and the
 * layer's own state inputs, so it cannot leak into the rest of a model.
 */
function layerNodes(model: onnx.IModelProto, core: Node): Node[] {
  let conv = core.inputs[0]!.producer!;
  while (conv.opType !== "CausalConv1d") conv = conv.inputs[0]!.producer!;
  let hidden = conv.inputs[0]!;
  while (hidden.producer && hidden.producer.opType !== "MatMul") hidden = hidden.producer.inputs[0]!;
  hidden = hidden.producer!.inputs[0]!;
  const norm = [...core.output().consumers].find((n) => n.opType === "GatedRMSNorm")!;
  const out = [...norm.output().consumers][0]!.output();
  const exits = [out, core.outputs[1], conv.outputs[1]].filter((v): v is NonNullable<typeof v> => !!v);
  const allowed = new Set([hidden, core.inputs[5], conv.inputs[3]]);
  const seen = new Set<Node>();
  const stack = exits.map((v) => v.producer!);
  while (stack.length) {
    const n = stack.pop()!;
    if (seen.has(n)) continue;
    seen.add(n);
    for (const v of n.inputs) {
      if (!v || v.initializer || allowed.has(v)) continue;
      expect(v.producer, `${n.name} reads ${v.name}, outside the layer`).toBeDefined();
      stack.push(v.producer!);
    }
  }
  expect(model.graph!.node!.length).toBeGreaterThanOrEqual(seen.size);
  return [...seen];
}

const { prefill: PREFILL_LAYOUT, decode: DECODE_LAYOUT } = FUSED_LAYER_LAYOUT;
const CASES = [
  { name: "layer_qwen3next_prefill_t96", core: "ChunkGatedDeltaRule", layers: 1, nodes: 12, extra: PREFILL_LAYOUT },
  { name: "layer_qwen3next_decode_b2", core: "RecurrentGatedDeltaRule", layers: 1, nodes: 12, extra: DECODE_LAYOUT },
  { name: "model_qwen35_tiny_t50", core: "ChunkGatedDeltaRule", layers: 3, nodes: 200, extra: {} },
  { name: "layer_qwen35_prefill_t64", core: "ChunkGatedDeltaRule", layers: 1, nodes: 12, extra: PREFILL_LAYOUT },
  { name: "layer_qwen35_decode_b2", core: "RecurrentGatedDeltaRule", layers: 1, nodes: 12, extra: DECODE_LAYOUT },
].filter((c) => hasCase(c.name));

describe("layer-level fusions (target gdn)", () => {
  it.each(CASES)(
    "fuses every gated-delta layer of $name",
    async (c) => {
      const r = await mutateAndFuse(c.name, undefined, LAYERS_AFTER_CORES);
      const [model, fused, n] = [r.model.proto, r.allFused, c.layers];
      expect(fused).toEqual({
        [`gdn.${c.core}`]: n,
        "gdn.GatedDeltaGating": n,
        "gdn.CausalConv1d": n,
        "gdn.GatedRMSNorm": n,
      });
      const h = histogram(model);
      for (const op of [c.core, "GatedDeltaGating", "CausalConv1d", "GatedRMSNorm"]) expect(h[`gdn.${op}`]).toBe(n);
      expect(model.graph!.node!.length).toBe(c.nodes);
      // Whole-layer cases: the graph is the layer; everything left besides the 4 gdn ops is projections and layout.
      if (c.layers === 1) expect(h).toEqual(fusedLayerHistogram(c.core, c.extra));
      // The decode state size is explicit: HF keeps W = 4 positions.
      const conv = model.graph!.node!.find((x) => x.opType === "CausalConv1d")!;
      const S = Number(conv.attribute!.find((a) => a.name === "state_size")!.i);
      expect(S).toBe(c.name.includes("decode") ? 4 : 0);
    },
    120_000,
  );

  it.each(CASES)(
    `fuses each gated-delta layer of $name into at most ${MAX_LAYER_NODES} nodes`,
    async (c) => {
      const r = await mutateAndFuse(c.name, undefined, LAYERS_AFTER_CORES);
      const model = r.model.proto;
      const found = gdnCores(model);
      expect(found).toHaveLength(c.layers);
      for (const core of found) expect(layerNodes(model, core).length).toBe(MAX_LAYER_NODES);
      // A whole-layer case is nothing but the layer.
      if (c.layers === 1) expect(layerNodes(model, found[0]!).length).toBe(model.graph!.node!.length);
      expect(appliedOps(r, "layer-layout")).toEqual(Array(c.layers).fill(`gdn.${c.core}[layout]`));
    },
    120_000,
  );

  it.skipIf(runtime !== undefined).each(CASES.filter((c) => existsSync(join(MODELS, c.name, "test_data_set_0"))))(
    "fused $name matches test_data_set_0 through the gdn runtime",
    async (c) => {
      const { model } = await mutateAndFuse(c.name, undefined, LAYERS_AFTER_CORES);
      await expectMatchesCase(model.proto, c.name);
    },
    120_000,
  );
  if (runtime !== undefined) it.skip(`gdn runtime parity: native build absent (${runtime})`, () => {});
});
