/**
 * Core mutants: each graph has one change inside a gated-delta core region (an extra op on a value
 * after the entry Transposes or before the exit, a changed constant, swapped operands, a removed or
 * duplicated step). The structural matcher alone must refuse every one, naming the stage and the
 * node, so each runs with the probe on and off and both must give the same refusal.
 */
import { describe, expect, it } from "vitest";
import type { Node } from "../../src/ir/graph.js";
import { constantOf, isConstantValue } from "../../src/ir/constant.js";
import { firstSkip, mutateAndFuse, type Mutator } from "../../test/helpers/index.js";

interface Mutant {
  name: string;
  fixture: string;
  /** Applies the change; returns the node the refusal must name. */
  mutate: (m: Mutator) => Node;
  stage: string;
  /** The exact reason, or a part of it. */
  reason: string | ((n: Node) => string);
  exact?: boolean;
  /** The refusal names the node in its reason (with the node it clashes with) rather than as `node`. */
  namedInReason?: boolean;
}

const PASSES = ["gated-delta-chunk", "gated-delta-recurrent"];
const notPart = (role: string) => (n: Node) => `${n.opType} ${n.name} on ${role} is not part of the gated delta rule`;
const ALL = "query, key, value, g, beta and state";

/** An elementwise op on a core value: `op(v, ...operands)`. */
const on =
  (role: Parameters<Mutator["coreValue"]>[0], op: string, operands: number[][] = [], constDims?: number[]) =>
  (m: Mutator) =>
    m.insertOn(m.coreValue(role), op, { operands, constDims });

const isOp = (op: string) => (n: Node) => n.opType === op;
const constDims = (n: Node, i: number) =>
  isConstantValue(n.inputs[i]) ? constantOf(n.inputs[i])?.dims.join() : undefined;
const unsqueezed = (n: Node, i: number) => n.inputs[i]?.producer?.opType === "Unsqueeze";

const MUTANTS: Mutant[] = [
  // the mutants of issue 10, with their exact reasons
  {
    name: "Clip(-5, 5) on value",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("value", "Clip", [[-5], [5]]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "Min(beta, 0.97)",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("beta", "Min", [[0.97]]),
    stage: "region",
    reason: notPart("beta"),
    exact: true,
  },
  {
    name: "Min(beta, 0.955)",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("beta", "Min", [[0.955]]),
    stage: "region",
    reason: notPart("beta"),
    exact: true,
  },
  {
    name: "Clip(-1.5, 1.5) on value",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("value", "Clip", [[-1.5], [1.5]]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "value + 5e-5",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("value", "Add", [[5e-5]]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "fp16 value + 0.004",
    fixture: "chunk_t130_fp16",
    mutate: on("value", "Add", [[0.004]]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "value of one batch entry scaled",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("value", "Mul", [[1, 1.5]], [2, 1, 1, 1]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "reversed decay Sub",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "decay",
    exact: true,
    mutate: (m) => {
      const n = m.findNode((x) => x.opType === "Sub" && unsqueezed(x, 0) && unsqueezed(x, 1), "decay Sub");
      m.swapInputs(n);
      return n;
    },
    reason:
      "the decay Sub computes g_j - g_i (Unsqueeze axes 3 and 4); g_i - g_j = g[..., :, None] - g[..., None, :] expected",
  },
  {
    name: "padding value of g",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "padding",
    exact: true,
    mutate: (m) => {
      const n = m.findNode((x) => x.opType === "Pad" && x.inputs[0] === m.coreValue("g"), "Pad of g");
      m.setInput(n, 2, [], [1]);
      return n;
    },
    reason: (n) => `${n.name} pads with 1; the chunk padding is zeros`,
  },
  // an extra op at each boundary, across fixtures
  {
    name: "Neg on query",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("query", "Neg"),
    stage: "region",
    reason: notPart("query"),
    exact: true,
  },
  {
    name: "Abs on key",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("key", "Abs"),
    stage: "region",
    reason: notPart("key"),
    exact: true,
  },
  {
    name: "Relu on g",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("g", "Relu"),
    stage: "region",
    reason: notPart("g"),
    exact: true,
  },
  {
    name: "Sigmoid on beta",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("beta", "Sigmoid"),
    stage: "region",
    reason: notPart("beta"),
    exact: true,
  },
  {
    name: "per-head Mul on key",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("key", "Mul", [[1, 1, 1, 0.5]], [1, 4, 1, 1]),
    stage: "region",
    reason: notPart("key"),
    exact: true,
  },
  {
    name: "Add on the output before the exit",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("output", "Add", [[1e-3]]),
    stage: "region",
    reason: notPart(ALL),
    exact: true,
  },
  {
    name: "Max on g (noopt)",
    fixture: "chunk_t64_noopt",
    mutate: on("g", "Max", [[-1]]),
    stage: "region",
    reason: notPart("g"),
    exact: true,
  },
  {
    name: "Clip on value (noopt)",
    fixture: "chunk_t64_noopt",
    mutate: on("value", "Clip", [[-5], [5]]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "Clip on query (fp16)",
    fixture: "chunk_t130_fp16",
    mutate: on("query", "Clip", [[-2], [2]]),
    stage: "region",
    reason: notPart("query"),
    exact: true,
  },
  {
    name: "Neg on value (bf16)",
    fixture: "chunk_t96_bf16",
    mutate: on("value", "Neg"),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "Add on g (opset 23)",
    fixture: "chunk_t64_opset23",
    mutate: on("g", "Add", [[0.01]]),
    stage: "region",
    reason: notPart("g"),
    exact: true,
  },
  {
    name: "Mul on query (opset 20, no l2norm)",
    fixture: "chunk_t70_opset20_nol2",
    mutate: on("query", "Mul", [[1, 1.01]], [1, 2, 1, 1]),
    stage: "region",
    reason: notPart("query"),
    exact: true,
  },
  {
    name: "Relu on key (Qwen3.5 copy)",
    fixture: "chunk_qwen35_t100",
    mutate: on("key", "Relu"),
    stage: "region",
    reason: notPart("key"),
    exact: true,
  },
  {
    name: "Clip on value (whole layer)",
    fixture: "layer_qwen3next_prefill_t96",
    mutate: on("value", "Clip", [[-5], [5]]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "Min on beta (whole layer, Qwen3.5)",
    fixture: "layer_qwen35_prefill_t64",
    mutate: on("beta", "Min", [[0.97]]),
    stage: "region",
    reason: notPart("beta"),
    exact: true,
  },
  {
    name: "value transposed (last two axes)",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "region",
    exact: true,
    mutate: (m) =>
      m.insertOn(m.coreValue("value"), "Transpose", { attributes: [{ name: "perm", type: 7, ints: [0, 1, 3, 2] }] }),
    reason: (n) => `Transpose ${n.name} on value (perm 0,1,3,2) is not a transpose of the gated delta rule`,
  },
  {
    name: "attn transposed (last two axes)",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "region",
    exact: true,
    mutate: (m) =>
      m.insertOn(m.findNode(isOp("Neg"), "Neg").output(), "Transpose", {
        attributes: [{ name: "perm", type: 7, ints: [0, 1, 2, 4, 3] }],
      }),
    reason: (n) => `Transpose ${n.name} on key, g and beta (perm 0,1,2,4,3) is not a transpose of the gated delta rule`,
  },
  {
    name: "token 2 reads the value of token 1 (recurrent t4)",
    fixture: "recurrent_t4_b2",
    stage: "loop",
    reason: "both gather index 1 of",
    namedInReason: true,
    mutate: (m) => {
      const v = m.coreValue("value");
      const n = m.findNode(
        (x) => x.opType === "Gather" && x.inputs[0] === v && constantOf(x.inputs[1])?.data[0] === 2,
        "Gather of token 2",
      );
      m.setInput(n, 1, [], [1], 7);
      return n;
    },
  },
  {
    name: "chunk 1 reads chunk 0 (chunk)",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "loop",
    reason: "both gather index 0 of",
    namedInReason: true,
    mutate: (m) => {
      const n = m.findNode(
        (x) =>
          x.opType === "Gather" &&
          x.attrInt("axis", 0) === 2 &&
          x.inputs[0]?.producer?.opType === "Mul" &&
          constantOf(x.inputs[1])?.data[0] === 1,
        "Gather of chunk 1",
      );
      m.setInput(n, 1, [], [0], 7);
      return n;
    },
  },
  // a second scaled input: q cannot be told apart, refused at "roles" naming both scale nodes
  {
    name: "Mul by 1 on value (semantically identical, still unexplained)",
    fixture: "chunk_t100_h4_k32_v48",
    mutate: on("value", "Mul", [[1]]),
    stage: "roles",
    reason: "expected exactly one rank-4 input scaled by a constant (the query), found 2: ",
    namedInReason: true,
  },
  {
    name: "Mul on the decayed state before the final update",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "region",
    reason: notPart("key, value, g, beta and state"),
    exact: true,
    mutate: (m) => {
      const upd = m.graph.outputs.find((o) => o.name === "final_state")!.producer!;
      const decayed = upd.inputs.find((v) => v?.producer?.opType === "Mul")!;
      return m.insertOn(decayed, "Mul", { operands: [[1.0001]] });
    },
  },
  // changed constants
  {
    name: "query scale",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "scale",
    reason: "query scale is 0.2",
    mutate: (m) => {
      m.setScalar((v) => Math.abs(v - 1 / Math.sqrt(32)) < 1e-7, 0.2);
      return m.findNode(
        (n) =>
          n.opType === "Mul" &&
          n.inputs.some((v) => v?.initializer && Math.abs((constantOf(v)?.data[0] ?? 0) - 0.2) < 1e-6),
        "scale",
      );
    },
  },
  {
    name: "l2norm eps",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "l2norm",
    reason: "eps is 0.00001",
    mutate: (m) => {
      m.setScalar((v) => Math.abs(v - 1e-6) < 1e-9, 1e-5);
      return m.findNode(
        (n) => n.opType === "Add" && n.inputs.some((v) => Math.abs((constantOf(v)?.data[0] ?? 0) - 1e-5) < 1e-9),
        "eps Add",
      );
    },
  },
  {
    name: "a decay mask element",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "mask",
    reason: "strict upper triangle (row 3, column 10)",
    mutate: (m) => {
      m.flipBoolInitializer([64, 64], 3 * 64 + 10);
      return m.findNode(isOp("Where"), "Where");
    },
  },
  {
    name: "an eye element",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "eye",
    reason: "the identity added to attn differs at row 5, column 5",
    exact: true,
    mutate: (m) => {
      const n = m.findNode((x) => x.opType === "Add" && constDims(x, 1) === "64,64", "eye Add");
      const eye: number[] = Array.from({ length: 64 * 64 }, (_, k) => (k % 65 === 0 ? 1 : 0));
      eye[5 * 65] = 0.5;
      m.setInput(n, 1, [64, 64], eye);
      return n;
    },
  },
  {
    name: "a Slice bound of solve row 58",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "solve",
    reason: (n) => `solve row 58 slices [0:57] (${n.name}); it reads [0:58]`,
    exact: true,
    mutate: (m) => {
      const n = m.findNode(
        (x) =>
          x.opType === "Slice" && x.inputs[0]?.producer?.opType === "Gather" && constantOf(x.inputs[2])?.data[0] === 58,
        "row 58 Slice",
      );
      m.setInput(n, 2, [1], [57], 7);
      return n;
    },
  },
  // swapped operands
  {
    name: "swapped delta Sub",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "delta-rule",
    reason: "value - (state prediction)",
    mutate: (m) => {
      m.swapInputsOfDeltaSub();
      return m.findNode(
        (n) => n.opType === "Sub" && ["MatMul", "ReduceSum"].includes(n.inputs[0]?.producer?.opType ?? ""),
        "swapped Sub",
      );
    },
  },
  {
    name: "swapped g_last - g Sub (Qwen3.5 copy)",
    fixture: "chunk_qwen35_t100",
    stage: "region",
    reason: "is not a subtraction of the gated delta rule",
    mutate: (m) => {
      const n = m.findNode((x) => x.opType === "Sub" && x.inputs[1]?.producer?.opType === "CumSum", "g_last Sub");
      m.swapInputs(n);
      return n;
    },
  },
  // removed or duplicated steps
  {
    name: "removed negation of attn",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "steps",
    reason: "the region has 0 negation of attn steps; chunks of 64 over 100 tokens need 1",
    exact: true,
    mutate: (m) => {
      m.bypass(m.findNode(isOp("Neg"), "Neg"));
      return m.findNode(isOp("CumSum"), "CumSum");
    },
  },
  {
    name: "removed eye Add",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "steps",
    reason: "the region has 0 identity added to attn steps; chunks of 64 over 100 tokens need 1",
    exact: true,
    mutate: (m) => {
      m.bypass(m.findNode((x) => x.opType === "Add" && constDims(x, 1) === "64,64", "eye Add"));
      return m.findNode(isOp("CumSum"), "CumSum");
    },
  },
  {
    name: "removed state update",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "steps",
    reason: "the region has 1 state update S + k^T v_new step; chunks of 64 over 100 tokens need 2",
    exact: true,
    mutate: (m) => {
      m.dropStateUpdate();
      return m.findNode(isOp("CumSum"), "CumSum");
    },
  },
  {
    name: "value squared",
    fixture: "chunk_t100_h4_k32_v48",
    stage: "region",
    exact: true,
    reason: (n) => `Mul ${n.name} on value squares or doubles one value; the algorithm never does`,
    mutate: (m) => {
      const v = m.coreValue("value");
      return m.insertOn(v, "Mul", { operands: [v] });
    },
  },
  // recurrent form
  {
    name: "Clip on value (recurrent t1)",
    fixture: "recurrent_t1_b3",
    mutate: on("value", "Clip", [[-5], [5]]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "Min(beta, 0.97) (recurrent t1)",
    fixture: "recurrent_t1_b3",
    mutate: on("beta", "Min", [[0.97]]),
    stage: "region",
    reason: notPart("beta"),
    exact: true,
  },
  {
    name: "value of one batch entry scaled (recurrent)",
    fixture: "recurrent_t1_b3",
    mutate: on("value", "Mul", [[1, 2, 1]], [3, 1, 1, 1]),
    stage: "region",
    reason: notPart("value"),
    exact: true,
  },
  {
    name: "Sigmoid on g (recurrent t4)",
    fixture: "recurrent_t4_b2",
    mutate: on("g", "Sigmoid"),
    stage: "region",
    reason: notPart("g"),
    exact: true,
  },
  {
    name: "Add on the output (recurrent t4)",
    fixture: "recurrent_t4_b2",
    mutate: on("output", "Add", [[1e-3]]),
    stage: "region",
    reason: notPart(ALL),
    exact: true,
  },
  {
    name: "Abs on key (recurrent Qwen3.5)",
    fixture: "recurrent_qwen35_t2_b2",
    mutate: on("key", "Abs"),
    stage: "region",
    reason: notPart("key"),
    exact: true,
  },
  {
    name: "Min on beta (decode layer)",
    fixture: "layer_qwen35_decode_b2",
    mutate: on("beta", "Min", [[0.97]]),
    stage: "region",
    reason: notPart("beta"),
    exact: true,
  },
  {
    name: "swapped scale Div (recurrent)",
    fixture: "recurrent_t4_b2",
    stage: "region",
    reason: notPart("query"),
    exact: true,
    mutate: (m) => {
      const n = m.findNode((x) => x.opType === "Div" && isConstantValue(x.inputs[1]), "scale Div");
      m.swapInputs(n);
      return n;
    },
  },
  {
    name: "removed state decay (recurrent t4)",
    fixture: "recurrent_t4_b2",
    stage: "steps",
    reason: "the region has 3 state decay exp(g_t) steps; 4 tokens need 4",
    exact: true,
    mutate: (m) => {
      const n = m.findNode((x) => x.opType === "Mul" && x.inputs.some((v) => v?.isGraphInput), "first state decay");
      m.bypass(
        n,
        n.inputs.findIndex((v) => v?.isGraphInput),
      );
      return m.graph.nodes[0]!;
    },
  },
];

describe("core mutants are refused by structure alone", () => {
  for (const mu of MUTANTS) {
    it(`${mu.fixture}: ${mu.name}`, async () => {
      let node: Node | undefined;
      const results = [];
      for (const probe of [true, false])
        results.push(await mutateAndFuse(mu.fixture, (m) => (node = mu.mutate(m)), { passes: PASSES, probe }));
      const reason = typeof mu.reason === "function" ? mu.reason(node!) : mu.reason;
      for (const r of results) {
        expect(r.fused).toEqual({});
        const skip = firstSkip(r)!;
        expect(skip.stage).toBe(mu.stage);
        if (mu.exact) expect(skip.reason).toBe(reason);
        else expect(skip.reason).toContain(reason);
        if (mu.namedInReason) expect(skip.reason).toContain(node!.name);
        else if (mu.stage !== "steps") expect(skip.node).toBe(node!.name);
      }
    });
  }

  it("has at least 30 mutants", () => expect(MUTANTS.length).toBeGreaterThanOrEqual(30));
});
