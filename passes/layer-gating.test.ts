/**
 * layer-gating: mutants of the gating (g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b)) in whole
 * exported layers: another sign or shape of -exp(A_log), an unfolded Neg(Exp(A_log)), another softplus
 * threshold or branch order, a g scaled before the core. Each is refused with the stage and reason, or fused
 * and proven equal to the mutated original on adversarial inputs, with the core probe on and off (the runner:
 * test/helpers/layer-mutants.ts).
 */
import { describe } from "vitest";
import { setInput } from "../src/ir/index.js";
import { arrayToTensor, tensorToFloat64 } from "../src/ir/tensor.js";
import { insert, node, setConstant, testMutants, value, type Mutant, type Mutator } from "../test/helpers/index.js";

const PREFILL = "layer_qwen3next_prefill_t96";
const DECODE = "layer_qwen3next_decode_b2";
const PREFILL_DYNB = "layer_qwen3next_prefill_dynb";
const DECODE_BF16 = "layer_qwen35_decode_b2_bf16";

/** Replaces the folded -exp(A_log) constant of the g Mul by Neg(Exp(A_log)), the Exp in `domain`. */
function negExpALog(m: Mutator, domain: string, dims?: number[]): void {
  const mul = node(m, "node_mul");
  const folded = tensorToFloat64(mul.inputs[0]!.initializer!);
  const aLog = m.graph.addInitializer(
    arrayToTensor(
      "A_log",
      dims ?? [folded.length],
      1,
      Array.from(folded, (c) => Math.log(-c)),
    ),
  );
  const exp = m.graph.addNode({ opType: "Exp", domain, inputs: [aLog], outputs: ["A_log_exp"], name: "mutant_exp" });
  const neg = m.graph.addNode({ opType: "Neg", inputs: [exp.output()], outputs: ["A_log_neg"], name: "mutant_neg" });
  setInput(mul, 0, neg.output());
  m.graph.topologicalSort();
}

const GATING = { pass: "layer-gating", op: "gdn.GatedDeltaGating" };

const MUTANTS: Mutant[] = [
  // gating: g = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b)
  {
    name: "g times a per-head constant before the core",
    model: PREFILL,
    mutate: (m) => void insert(m, value(m, "mul"), "Mul", { operands: [[1, 1, 1.5, 1]], constDims: [4] }, [2, 96, 4]),
    refused: { ...GATING, stage: "g", reason: "neither operand of the g Mul is softplus(a + dt_bias)" },
  },
  {
    name: "exp(A_log) instead of -exp(A_log)",
    model: PREFILL,
    mutate: (m) => setConstant(m, node(m, "node_mul"), 0, [4], 1, [0.5, 1, 2, 4]),
    refused: { ...GATING, stage: "A_log", reason: "the softplus multiplier has element 0.5; -exp(A_log) is < 0" },
  },
  {
    name: "-exp(A_log) computed as Neg(Exp(A_log)), not folded",
    model: DECODE,
    mutate: (m) => negExpALog(m, ""),
    equal: true,
  },
  {
    name: "-exp(A_log) with an Exp of another domain",
    model: DECODE,
    mutate: (m) => negExpALog(m, "com.example"),
    refused: { ...GATING, stage: "A_log", reason: "the softplus multiplier is not a constant -exp(A_log)" },
  },
  {
    name: "Neg(Exp(A_log)) with A_log of shape [4,1]",
    model: DECODE,
    mutate: (m) => negExpALog(m, "", [4, 1]),
    refused: { ...GATING, stage: "A_log", reason: "A_log has shape [4,1], not [4]" },
  },
  {
    name: "-exp(A_log) of shape [4,1] (broadcasts over time, not over heads)",
    model: DECODE,
    mutate: (m) => {
      const mul = node(m, "node_mul");
      setConstant(m, mul, 0, [4, 1], 1, Array.from(tensorToFloat64(mul.inputs[0]!.initializer!)));
    },
    refused: { ...GATING, stage: "A_log", reason: "the softplus multiplier has shape [4,1], not [4]" },
  },
  {
    name: "softplus threshold 10 instead of 20",
    model: PREFILL,
    mutate: (m) => setConstant(m, node(m, "n9"), 1, [], 1, [10]),
    refused: {
      ...GATING,
      stage: "softplus",
      reason: "the softplus threshold is 10; torch's softplus returns x above 20",
    },
  },
  {
    name: "softplus Where with swapped branches",
    model: DECODE,
    mutate: (m) => {
      const w = node(m, "n10");
      w.inputs = [w.inputs[0], w.inputs[2], w.inputs[1]];
    },
    refused: {
      ...GATING,
      stage: "softplus",
      reason: "the softplus Where takes Add below the threshold, not Softplus(x) (operands swapped?)",
    },
  },
  {
    name: "softplus threshold changed in a dynamic-batch export",
    model: PREFILL_DYNB,
    mutate: (m) => setConstant(m, node(m, "n9"), 1, [], 1, [19.5]),
    refused: {
      ...GATING,
      stage: "softplus",
      reason: "the softplus threshold is 19.5; torch's softplus returns x above 20",
    },
  },
  {
    name: "g times a per-head constant (bfloat16 decode)",
    model: DECODE_BF16,
    mutate: (m) => {
      const gMul = m.graph.nodes.find(
        (n) => n.opType === "Mul" && n.inputs.some((v) => v?.producer?.opType === "Where"),
      )!;
      insert(m, gMul.output(), "Mul", { operands: [[1, 1, 1, 0.9]], constDims: [4] }, [2, 1, 4]);
    },
    refused: { ...GATING, stage: "g", reason: "neither operand of the g Mul is softplus(a + dt_bias)" },
  },
];

describe("layer-gating mutants", () => {
  testMutants(MUTANTS);
});
