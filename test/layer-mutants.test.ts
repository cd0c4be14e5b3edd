/**
 * Mutants of whole exported layers at the layer passes' boundaries and constants (causal conv, gated
 * RMSNorm, GQA repeat, layout; the gating's are beside its pass, passes/layer-gating.test.ts). Each is
 * either refused by the pass it concerns, with the stage and reason asserted, or fused and then proven
 * equal to the mutated original on adversarial inputs, with the core probe on and off (the runner:
 * test/helpers/layer-mutants.ts).
 */
import { describe, expect, it } from "vitest";
import type { Node, Value } from "../src/ir/graph.js";
import { onnx } from "../src/ir/onnx.js";
import { setInput } from "../src/ir/index.js";
import {
  insert,
  node,
  setConstant,
  setSliceRange,
  testMutants,
  value,
  type Mutant,
  type Mutator,
} from "./helpers/index.js";

const PREFILL = "layer_qwen3next_prefill_t96";
const DECODE = "layer_qwen3next_decode_b2";
const QWEN35_PREFILL = "layer_qwen35_prefill_t64";
const QWEN35_DECODE = "layer_qwen35_decode_b2";
const PREFILL_FP16 = "layer_qwen3next_prefill_t96_fp16";
const DECODE_FP16 = "layer_qwen35_decode_b2_fp16";
const DECODE_DYNB = "layer_qwen3next_decode_dynb";

// ---- edits only these mutants make (the shared ones are in test/helpers/layer-mutants.ts) ----------

/** Consumers of `from` read `to`; `drop` (now unused) leaves the graph. */
function bypass(m: Mutator, from: Value, to: Value, drop: Node): void {
  m.graph.replaceAllUses(from, to);
  m.graph.removeNodes([drop]);
}

/** A new float32 graph input of these dims. */
function addGraphInput(m: Mutator, name: string, dims: number[]): Value {
  const v = m.graph.value(name);
  v.isGraphInput = true;
  m.graph.inputs.push(v);
  v.type = { elemType: 1, shape: dims };
  (m.graph.proto.input ??= []).push({
    name,
    type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  return v;
}

const ramp = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));

// ---- the mutants ---------------------------------------------------------------------------------

const CONV = { pass: "layer-causal-conv1d", op: "gdn.CausalConv1d" };
const NORM = { pass: "layer-gated-rmsnorm", op: "gdn.GatedRMSNorm" };
const GQA = { pass: "layer-gqa-repeat", op: "gdn.ChunkGatedDeltaRule[gqa]" };
const LAYOUT = { pass: "layer-layout", op: "gdn.ChunkGatedDeltaRule[layout]" };
const LAYOUT_DECODE = { pass: "layer-layout", op: "gdn.RecurrentGatedDeltaRule[layout]" };

/** The conv's refusal when anything but SiLU follows it. */
const CONV_NOT_SILU = {
  ...CONV,
  stage: "activation",
  reason: "the conv output is not followed by SiLU (x * sigmoid(x)) alone",
};

const MUTANTS: Mutant[] = [
  // the gating fuses around an edit of its input b; the layout refuses the Mul as a projection source
  {
    name: "b scaled per head before the Sigmoid (gating fuses around it; layout refuses)",
    model: PREFILL,
    mutate: (m) =>
      void insert(
        m,
        value(m, "_unsafe_view_2"),
        "Mul",
        { operands: [[1, 2, 1, 0.5]], constDims: [4], only: (n) => n.opType === "Sigmoid" },
        [2, 96, 4],
      ),
    refused: {
      ...LAYOUT,
      stage: "projection",
      reason: "_unsafe_view_2_mul comes from Mul, not an input projection MatMul",
    },
    equal: true,
  },
  // causal conv: Conv(pads W-1) - Slice(0:T) - x * sigmoid(x)
  {
    name: "per-channel Mul between the conv and its SiLU",
    model: PREFILL,
    mutate: (m) =>
      void insert(
        m,
        value(m, "slice_1"),
        "Mul",
        { operands: [ramp(160, (i) => (i === 7 ? 2 : 1))], constDims: [1, 160, 1] },
        [2, 160, 96],
      ),
    refused: CONV_NOT_SILU,
  },
  {
    name: "Sigmoid where SiLU's x * sigmoid(x) is expected",
    model: DECODE,
    mutate: (m) => bypass(m, value(m, "silu"), value(m, "val_87"), node(m, "node_silu")),
    refused: CONV_NOT_SILU,
  },
  {
    name: "conv output slice shifted by one step (not causal)",
    model: PREFILL,
    mutate: (m) => setSliceRange(m, node(m, "node_slice_1"), 1, 97),
    refused: { ...CONV, stage: "slice", reason: "the Slice keeps conv outputs 1:97; the causal outputs are 0:96" },
  },
  {
    name: "conv bias read from a graph input (not a constant the layout can reorder)",
    model: PREFILL,
    mutate: (m) => setInput(node(m, "node_Conv_4563"), 2, addGraphInput(m, "conv_bias", [160])),
    refused: {
      ...CONV,
      stage: "bias",
      reason: "the conv bias is not a constant; CausalConv1d takes a constant bias of [160]",
    },
  },
  {
    name: "decode conv padded on the left",
    model: QWEN35_DECODE,
    mutate: (m) => {
      const conv = m.graph.nodes.find((n) => n.opType === "Conv")!;
      conv.proto.attribute = conv.proto
        .attribute!.filter((a) => a.name !== "pads")
        .concat({ name: "pads", type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 0] });
    },
    refused: { ...CONV, stage: "padding", reason: "Conv pads [1,0] are not causal: the left pad must be W-1 = 3" },
  },
  {
    name: "decode conv state keeps the first S columns, not the last",
    model: DECODE,
    mutate: (m) => setSliceRange(m, node(m, "node_copy"), 0, 4),
    refused: { ...CONV, stage: "state", reason: "the state update keeps columns 0:4 of 5, not the last S = 4" },
  },
  {
    name: "per-channel Mul between the conv and its SiLU (float16 decode)",
    model: DECODE_FP16,
    mutate: (m) => {
      const slice = m.graph.nodes.find((n) => n.opType === "Slice" && n.inputs[0]?.producer?.opType === "Conv")!;
      insert(
        m,
        slice.output(),
        "Mul",
        { operands: [ramp(160, (i) => (i === 3 ? 0.5 : 1))], constDims: [1, 160, 1] },
        [2, 160, 1],
      );
    },
    refused: CONV_NOT_SILU,
  },
  // gated RMSNorm: w * x * rsqrt(mean(x^2) + eps) * silu(z)
  {
    name: "per-channel Mul between the normalised value and the weight",
    model: PREFILL,
    mutate: (m) =>
      void insert(
        m,
        value(m, "mul_78"),
        "Mul",
        { operands: [ramp(24, (i) => 1 + i / 24)], constDims: [24] },
        [2, 96, 4, 24],
      ),
    refused: {
      ...NORM,
      stage: "gate",
      reason: "the weighted norm is multiplied by a second constant (norm.weight), not by silu(gate)",
    },
  },
  {
    name: "Sigmoid of the gate where SiLU is expected",
    model: PREFILL,
    mutate: (m) => bypass(m, value(m, "silu_1"), value(m, "val_3816"), node(m, "node_silu_1")),
    refused: { ...NORM, stage: "gate", reason: "the gate goes through Sigmoid, not SiLU (gate * sigmoid(gate))" },
  },
  {
    name: "x^3 instead of x^2 under the mean",
    model: QWEN35_PREFILL,
    mutate: (m) =>
      setConstant(
        m,
        m.graph.nodes.find((n) => n.opType === "Pow")!,
        1,
        [],
        1,
        [3],
      ),
    refused: { ...NORM, stage: "anchor", reason: "ReduceMean does not read x^2" },
  },
  {
    name: "the norm's Sqrt from another domain",
    model: DECODE,
    mutate: (m) =>
      void (m.graph.nodes.find(
        (n) => n.opType === "Sqrt" && n.inputs[0]?.producer?.inputs[0]?.producer?.opType === "ReduceMean",
      )!.proto.domain = "com.example"),
    refused: { ...NORM, stage: "eps", reason: "mean(x^2) + eps goes to com.example.Sqrt, not Sqrt" },
  },
  {
    name: "another eps (1e-3) is read into the fused norm",
    model: PREFILL,
    mutate: (m) => setConstant(m, node(m, "node_add_71"), 1, [], 1, [1e-3]),
    equal: true,
  },
  {
    name: "per-channel Mul after the gated norm (norm fuses; layout refuses)",
    model: QWEN35_PREFILL,
    mutate: (m) => {
      const gMul = m.graph.nodes.find(
        (n) =>
          n.opType === "Mul" &&
          n.inputs.some(
            (v) => v?.producer?.opType === "Mul" && v.producer.inputs.some((x) => x?.producer?.opType === "Sigmoid"),
          ) &&
          n.inputs.some((v) => v?.producer?.inputs.some((x) => !!x?.initializer)),
      )!;
      const D = gMul.inputs[0]!.type?.shape?.at(-1) ?? gMul.inputs[1]!.type!.shape!.at(-1);
      if (typeof D !== "number") throw new Error("no static norm width");
      insert(
        m,
        gMul.output(),
        "Mul",
        { operands: [ramp(D, (i) => (i % 2 ? 1 : 1.25))], constDims: [D] },
        gMul.inputs[0]!.type?.shape ?? gMul.inputs[1]!.type!.shape!,
      );
    },
    refused: {
      ...LAYOUT,
      stage: "out_proj",
      reason: "the norm output does not go (through layout nodes only) to the out_proj MatMul",
    },
    equal: true,
  },
  // GQA repeat and layout
  {
    name: "query and key swapped at the core (every pass reads the roles off the graph)",
    model: PREFILL,
    mutate: (m) => {
      const core = m.graph.nodes.find((n) => n.opType === "Transpose" && n.inputs[0]?.name === "repeat_interleave");
      const coreK = m.graph.nodes.find((n) => n.opType === "Transpose" && n.inputs[0]?.name === "repeat_interleave_1");
      if (!core || !coreK) throw new Error("no entry transposes of q and k");
      const q = value(m, "repeat_interleave"),
        k = value(m, "repeat_interleave_1");
      setInput(core, 0, k);
      setInput(coreK, 0, q);
    },
    equal: true,
  },
  {
    name: "q and k channels swapped in the projection concat (layout traces the permutation)",
    model: DECODE,
    mutate: (m) => {
      const cat = node(m, "node_cat");
      cat.inputs = [cat.inputs[1], cat.inputs[0], cat.inputs[2]];
    },
    equal: true,
  },
  {
    name: "the key repeated in tiled order (h % Hk)",
    model: QWEN35_DECODE,
    mutate: (m) => {
      // Unsqueeze the key before its heads: Expand copies whole head groups (repeat), not each head (repeat_interleave).
      const un = m.graph.nodes.filter(
        (n) =>
          n.opType === "Unsqueeze" &&
          n.output().consumers.size === 1 &&
          [...n.output().consumers][0]!.opType === "Expand",
      )[1]!;
      setConstant(m, un, 1, [1], 7, [2n]);
      const ex = [...un.output().consumers][0]!;
      const reps = Array.from(ex.inputs[1]!.initializer ? decodeInts(ex.inputs[1]!) : []);
      setConstant(m, ex, 1, [5], 7, [reps[0]!, reps[1]!, reps[3]!, reps[2]!, reps[4]!].map(BigInt));
    },
    refused: {
      ...GQA,
      op: "gdn.RecurrentGatedDeltaRule[gqa]",
      stage: "repeat",
      reason: "the key is unsqueezed at axis 2, not after the head axis (3): that is not repeat_interleave over heads",
    },
  },
  {
    name: "one column of the b/a projection scaled (layout refuses a non-projection source; the rest fuses)",
    model: DECODE_DYNB,
    mutate: (m) =>
      void insert(m, value(m, "linear_1"), "Mul", { operands: [ramp(8, (i) => (i === 5 ? 3 : 1))], constDims: [8] }, [
        "batch",
        1,
        8,
      ]),
    refused: {
      ...LAYOUT_DECODE,
      stage: "projection",
      reason: "linear_1_mul comes from Mul, not an input projection MatMul",
    },
    equal: true,
  },
  {
    name: "in_proj output scaled per batch entry (layout refuses a non-projection source)",
    model: DECODE,
    mutate: (m) => void insert(m, value(m, "linear"), "Mul", { operands: [[1, 2]], constDims: [2, 1, 1] }, [2, 1, 256]),
    refused: {
      ...LAYOUT_DECODE,
      stage: "projection",
      reason: "linear_mul comes from Mul, not an input projection MatMul",
    },
    equal: true,
  },
  {
    name: "a scaled per head before its float32 Cast (float16 prefill: gating fuses around it; layout refuses)",
    model: PREFILL_FP16,
    mutate: (m) =>
      void insert(m, value(m, "_unsafe_view_3"), "Mul", { operands: [[1, 1.5, 1, 1]], constDims: [4] }, [2, 96, 4]),
    refused: {
      ...LAYOUT,
      stage: "projection",
      reason: "_unsafe_view_3_mul comes from Mul, not an input projection MatMul",
    },
    equal: true,
  },
];

function decodeInts(v: Value): number[] {
  const t = v.initializer!;
  const raw = t.rawData!;
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return Array.from({ length: raw.byteLength / 8 }, (_, i) => Number(dv.getBigInt64(i * 8, true)));
}

describe("layer mutants", () => {
  it("has at least 15 mutants over prefill, decode, Qwen3.5, half-precision and dynamic-batch layers", () => {
    // With the gating's 10 (passes/layer-gating.test.ts: also bfloat16 decode, dynamic-batch prefill): 30 over 9.
    expect(MUTANTS.length).toBeGreaterThanOrEqual(15);
    expect(new Set(MUTANTS.map((m) => m.model)).size).toBeGreaterThanOrEqual(7);
  });

  testMutants(MUTANTS);
});
