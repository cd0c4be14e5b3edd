/**
 * Mutants of whole exported layers at the layer passes' boundaries and constants (gating, causal
 * conv, gated RMSNorm, GQA repeat, layout). Each is either refused by the pass it concerns, with
 * the stage and reason asserted, or fused and then proven equal to the mutated original: the
 * original runs in stock onnxruntime, the fused model on the gdn runtime, on adversarial inputs
 * (hidden-state magnitudes up to 8). Every mutant runs with the core probe on and off: the layer
 * passes must refuse by their own checks, not by the probe, and fuse the same with it off (the
 * equality run, the slow part, is done once, with the probe on).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import type { Node, Value } from "../src/ir/graph.js";
import { decodeMessage, encodeMessage, onnx } from "../src/ir/onnx.js";
import { arrayToTensor, float16ToFloat32, float32ToFloat16, tensorToFloat64 } from "../src/ir/tensor.js";
import { compareValues, seededRandom, toleranceOf } from "../src/numeric.js";
import { declareType, setInput, type Dim } from "../src/ir/index.js";
import type { FuseReport } from "../src/pipeline/index.js";
import { Mutator, loadCase, mutateAndFuse, runtimeLoadError } from "./helpers/index.js";

const PREFILL = "layer_qwen3next_prefill_t96";
const DECODE = "layer_qwen3next_decode_b2";
const QWEN35_PREFILL = "layer_qwen35_prefill_t64";
const QWEN35_DECODE = "layer_qwen35_decode_b2";
const PREFILL_FP16 = "layer_qwen3next_prefill_t96_fp16";
const DECODE_FP16 = "layer_qwen35_decode_b2_fp16";
const DECODE_BF16 = "layer_qwen35_decode_b2_bf16";
const PREFILL_DYNB = "layer_qwen3next_prefill_dynb";
const DECODE_DYNB = "layer_qwen3next_decode_dynb";

const runtime = runtimeLoadError();

// ---- finding and changing parts of the exported layers (node and value names of the exports) ----

function node(m: Mutator, name: string): Node {
  const n = m.graph.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}

function value(m: Mutator, name: string): Value {
  const v = m.graph.values.get(name);
  if (!v) throw new Error(`no value ${name}`);
  return v;
}

/** Input i of node `n` becomes a new constant (the old one may be shared with other nodes). */
function setConstant(
  m: Mutator,
  n: Node,
  i: number,
  dims: number[],
  elemType: number,
  data: number[] | bigint[],
): void {
  setInput(n, i, m.graph.addInitializer(arrayToTensor(`${n.name}_mutant_${i}`, dims, elemType, data)));
}

/** Consumers of `from` read `to`; `drop` (now unused) leaves the graph. */
function bypass(m: Mutator, from: Value, to: Value, drop: Node): void {
  m.graph.replaceAllUses(from, to);
  m.graph.removeNodes([drop]);
}

/**
 * Mutator.insertOn, and the new value declared with the type and shape of the value it follows
 * (an exported intermediate value may carry no declared type; the passes read declared types).
 */
function insert(
  m: Mutator,
  v: Value,
  opType: string,
  opts: Parameters<Mutator["insertOn"]>[2],
  shape?: readonly Dim[],
): Node {
  const n = m.insertOn(v, opType, opts);
  const s = shape ?? v.type?.shape;
  if (!s) throw new Error(`insert: ${v.name} has no declared shape; pass one`);
  declareType(m.graph, n.output(), v.type?.elemType ?? 1, s);
  return n;
}

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

interface Refusal {
  pass: string;
  stage: string;
  reason: string;
  /** The fused op that must not appear (a prefix of a key of report.fused). */
  op: string;
}

interface Mutant {
  name: string;
  model: string;
  mutate(m: Mutator): void;
  /** The refusal that must be reported (the rest of the layer may still fuse). */
  refused?: Refusal;
  /** Fused (partly or wholly): the fused model must equal the mutated original on adversarial inputs. */
  equal?: boolean;
}

const GATING = { pass: "layer-gating", op: "gdn.GatedDeltaGating" };
const CONV = { pass: "layer-causal-conv1d", op: "gdn.CausalConv1d" };
const NORM = { pass: "layer-gated-rmsnorm", op: "gdn.GatedRMSNorm" };
const GQA = { pass: "layer-gqa-repeat", op: "gdn.ChunkGatedDeltaRule[gqa]" };
const LAYOUT = { pass: "layer-layout", op: "gdn.ChunkGatedDeltaRule[layout]" };
const LAYOUT_DECODE = { pass: "layer-layout", op: "gdn.RecurrentGatedDeltaRule[layout]" };

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
    refused: { ...CONV, stage: "activation", reason: "the conv output is not followed by SiLU (x * sigmoid(x)) alone" },
  },
  {
    name: "Sigmoid where SiLU's x * sigmoid(x) is expected",
    model: DECODE,
    mutate: (m) => bypass(m, value(m, "silu"), value(m, "val_87"), node(m, "node_silu")),
    refused: { ...CONV, stage: "activation", reason: "the conv output is not followed by SiLU (x * sigmoid(x)) alone" },
  },
  {
    name: "conv output slice shifted by one step (not causal)",
    model: PREFILL,
    mutate: (m) => {
      const s = node(m, "node_slice_1");
      setConstant(m, s, 1, [1], 7, [1n]);
      setConstant(m, s, 2, [1], 7, [97n]);
    },
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
    mutate: (m) => {
      const s = node(m, "node_copy");
      setConstant(m, s, 1, [1], 7, [0n]);
      setConstant(m, s, 2, [1], 7, [4n]);
    },
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
    refused: { ...CONV, stage: "activation", reason: "the conv output is not followed by SiLU (x * sigmoid(x)) alone" },
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

// ---- running a mutant ----------------------------------------------------------------------------

async function runMutant(
  mu: Mutant,
  probe: boolean,
): Promise<{ report: FuseReport; original: onnx.IModelProto; fused: onnx.IModelProto }> {
  let graphBytes: Uint8Array | undefined;
  const r = await mutateAndFuse(
    mu.model,
    (m) => {
      mu.mutate(m);
      graphBytes = encodeMessage(onnx.GraphProto, m.graph.toProto() as onnx.GraphProto);
    },
    { probe },
  );
  const base = await loadCase(mu.model);
  const original = { ...base.proto, graph: decodeMessage(onnx.GraphProto, graphBytes!) };
  return { report: r, original, fused: r.model.proto };
}

/** Adversarial inputs: magnitudes 0.1, 1 or 8 per element (states in [-1,1]); a symbolic batch probed at 3. */
function adversarialFeeds(model: onnx.IModelProto): Record<string, ort.Tensor> {
  const rand = seededRandom(7);
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of model.graph!.input!) {
    const tt = i.type!.tensorType!;
    const dims = tt.shape!.dim!.map((d) => (d.dimParam ? 3 : Number(d.dimValue)));
    const n = dims.reduce((a, b) => a * b, 1);
    const scale = i.name === "hidden_states" ? () => [0.1, 1, 8][Math.floor(rand() * 3)]! : () => 1;
    const data = Array.from({ length: n }, () => (2 * rand() - 1) * scale());
    feeds[i.name!] =
      tt.elemType === 10
        ? new ort.Tensor("float16", Uint16Array.from(data, float32ToFloat16), dims)
        : new ort.Tensor("float32", Float32Array.from(data), dims);
  }
  return feeds;
}

const toNumbers = (t: ort.Tensor) =>
  t.type === "float16"
    ? Float64Array.from(t.data as Uint16Array, float16ToFloat32)
    : Float64Array.from(t.data as Float32Array);

async function expectEqualOnAdversarialInputs(original: onnx.IModelProto, fused: onnx.IModelProto): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "gdn-mutant-"));
  const write = (name: string, m: onnx.IModelProto) => {
    const file = join(dir, name);
    writeFileSync(file, encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(m)));
    return file;
  };
  const feeds = adversarialFeeds(original);
  const ref = await ort.InferenceSession.create(write("original.onnx", original), {
    graphOptimizationLevel: "disabled",
    intraOpNumThreads: 2,
  });
  const want = await ref.run(feeds);
  await ref.release();
  const fusedSession = await ort.InferenceSession.create(write("fused.onnx", fused), {
    executionProviders: ["gdn"],
    intraOpNumThreads: 2,
  });
  const got = await fusedSession.run(feeds);
  await fusedSession.release();
  for (const name of Object.keys(want)) {
    const c = compareValues(toNumbers(got[name]!), toNumbers(want[name]!));
    expect(c.mismatch, name).toBeUndefined();
    expect(c.relL2, name).toBeLessThanOrEqual(toleranceOf(want[name]!.type)!);
  }
}

describe.skipIf(!!runtime)("layer mutants", () => {
  it("has at least 15 mutants over prefill, decode, Qwen3.5, half-precision and dynamic-batch layers", () => {
    expect(MUTANTS.length).toBeGreaterThanOrEqual(15);
    expect(new Set(MUTANTS.map((m) => m.model)).size).toBeGreaterThanOrEqual(8);
  });

  for (const mu of MUTANTS)
    for (const probe of [true, false])
      it(`${mu.model}: ${mu.name} (probe ${probe ? "on" : "off"})`, async () => {
        const { report, original, fused } = await runMutant(mu, probe);
        if (mu.refused) {
          const { pass, stage, reason, op } = mu.refused;
          const skipped = report.passes.find((p) => p.name === pass)!.skipped;
          expect(
            skipped.map((s) => ({ stage: s.stage, reason: s.reason })),
            JSON.stringify(report.passes.flatMap((p) => p.skipped)),
          ).toContainEqual({ stage, reason });
          expect(Object.keys(report.fused).filter((k) => k.startsWith(op))).toEqual([]);
        } else {
          expect(report.passes.flatMap((p) => p.skipped)).toEqual([]);
        }
        if (mu.equal && probe) await expectEqualOnAdversarialInputs(original, fused);
      });
});
