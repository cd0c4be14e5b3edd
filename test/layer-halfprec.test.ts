/**
 * Half-precision layers (models/*_fp16, *_bf16: HF layers run with `layer.to(dtype)`): the exports put
 * Casts inside the layer patterns (`a.float()` in the gating, the float32 section of the gated RMSNorm).
 * The layer passes absorb them, so a float16/bfloat16 layer fuses to the same 12 nodes as a float32 one,
 * and the fused graph reproduces PyTorch's outputs through the gdn runtime. (The gated RMSNorm's
 * half-precision near miss is in passes/layer-gated-rmsnorm.test.ts.)
 */
import { describe, expect, it } from "vitest";
import { onnx } from "../src/ir/onnx.js";
import {
  FUSED_LAYER_LAYOUT,
  LAYERS_AFTER_CORES,
  TOLERANCE,
  fusedLayerHistogram,
  hasCase,
  histogram,
  mutateAndFuse,
  runAgainstCase,
  runtimeLoadError,
} from "./helpers/index.js";

const runtime = runtimeLoadError();
const { prefill: PREFILL, decode: DECODE } = FUSED_LAYER_LAYOUT;
const CASES = [
  {
    name: "layer_qwen3next_prefill_t96_fp16",
    dtype: "float16",
    core: "ChunkGatedDeltaRule",
    layout: PREFILL,
    unfused: 1031,
  },
  {
    name: "layer_qwen3next_prefill_t64_bf16",
    dtype: "bfloat16",
    core: "ChunkGatedDeltaRule",
    layout: PREFILL,
    unfused: 1005,
  },
  {
    name: "layer_qwen35_decode_b2_fp16",
    dtype: "float16",
    core: "RecurrentGatedDeltaRule",
    layout: DECODE,
    unfused: 94,
  },
  {
    name: "layer_qwen35_decode_b2_bf16",
    dtype: "bfloat16",
    core: "RecurrentGatedDeltaRule",
    layout: DECODE,
    unfused: 94,
  },
] as const;
const present = CASES.filter((c) => hasCase(c.name));

/** The layer fused in two steps (cores, then the layer passes), and its node count before. */
async function fuse(name: string) {
  const r = await mutateAndFuse(name, undefined, LAYERS_AFTER_CORES);
  return { model: r.model.proto, before: r.first!.nodesBefore, cores: r.first!, layer: r };
}

/**
 * Test-only: each standard MatMul/Einsum reading bfloat16 gets Cast(float32) inputs and a Cast back to
 * bfloat16 on its output (float32 accumulation, one rounding: what a bf16 GEMM does). Returns the op types.
 */
function widenStockBf16(model: onnx.IModelProto): string[] {
  const g = model.graph!;
  const types = new Map<string, number>();
  for (const v of [...g.valueInfo!, ...g.input!, ...g.output!]) types.set(v.name!, v.type!.tensorType!.elemType!);
  for (const t of g.initializer!) types.set(t.name!, t.dataType!);
  const out: onnx.INodeProto[] = [];
  const widened: string[] = [];
  for (const n of g.node!) {
    if (n.domain || !["MatMul", "Einsum"].includes(n.opType!) || !n.input!.some((i) => types.get(i) === 16)) {
      out.push(n);
      continue;
    }
    widened.push(n.opType!);
    const ins = n.input!.map((i) => {
      out.push({
        opType: "Cast",
        input: [i],
        output: [`${n.name}_${i}_f32`],
        attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
      });
      return `${n.name}_${i}_f32`;
    });
    const y = n.output![0]!;
    out.push({ ...n, input: ins, output: [`${y}_f32`] });
    out.push({
      opType: "Cast",
      input: [`${y}_f32`],
      output: [y],
      attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: 16 }],
    });
  }
  g.node = out;
  return widened;
}

describe("half-precision layers (target gdn)", () => {
  it.each(present)(
    "fuses $name ($dtype) to 12 nodes, Casts absorbed",
    async (c) => {
      const { model, before, cores, layer } = await fuse(c.name);
      expect(before).toBe(c.unfused);
      expect(cores.fused).toEqual({ [`gdn.${c.core}`]: 1 });
      expect(layer.fused).toEqual({ "gdn.GatedDeltaGating": 1, "gdn.CausalConv1d": 1, "gdn.GatedRMSNorm": 1 });
      for (const p of layer.passes) expect(p.skipped, p.name).toEqual([]);
      // no Cast left: the graph's interface is in the model dtype (recurrent state float32 = the core's)
      expect(histogram(model)).toEqual(fusedLayerHistogram(c.core, c.layout));
      expect(model.graph!.node!.length).toBe(12);
      const elem = c.dtype === "float16" ? 10 : 16;
      const norm = model.graph!.node!.find((n) => n.opType === "GatedRMSNorm")!;
      const gating = model.graph!.node!.find((n) => n.opType === "GatedDeltaGating")!;
      const types = new Map<string, number>();
      for (const v of [...model.graph!.valueInfo!, ...model.graph!.input!, ...model.graph!.output!])
        types.set(v.name!, v.type!.tensorType!.elemType!);
      for (const t of model.graph!.initializer!) types.set(t.name!, t.dataType!);
      // the norm reads x, gate and weight in the model dtype; the gating reads a and b in it and returns float32 g
      expect(norm.input!.map((i) => types.get(i))).toEqual([elem, elem, elem]);
      expect(gating.input!.slice(0, 2).map((i) => types.get(i))).toEqual([elem, elem]);
      expect(types.get(gating.output![0]!)).toBe(1);
    },
    120_000,
  );

  it.skipIf(runtime !== undefined).each(present)(
    "fused $name reproduces PyTorch through the gdn runtime",
    async (c) => {
      const { model } = await fuse(c.name);
      // The gdn ops run bfloat16 natively; the stock CPU EP has no bfloat16 MatMul/Einsum (nor Conv: the
      // unfused bf16 export does not load in ORT either), so in this check only those are widened.
      if (c.dtype === "bfloat16") expect(widenStockBf16(model)).toEqual(["MatMul", "Einsum"]);
      const errs = await runAgainstCase(model, c.name);
      // Every output against the compute type's tolerance, the float32 recurrent state too: it is computed
      // from half-precision projections and conv.
      for (const e of errs) expect(e.err, e.name).toBeLessThanOrEqual(TOLERANCE[c.dtype]);
      if (process.env.GDN_PRINT_ERRORS) console.log(c.name, JSON.stringify(errs));
    },
    120_000,
  );
  if (runtime !== undefined) it.skip(`gdn runtime parity: native build absent (${runtime})`, () => {});
  if (present.length < CASES.length)
    it.skip(`absent fixtures: ${CASES.filter((c) => !present.includes(c))
      .map((c) => c.name)
      .join(", ")} (models/README.md)`, () => {});
});
