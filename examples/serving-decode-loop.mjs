// A continuous-batching decode loop over one fused gated-delta layer with state pools (docs/serving.md).
// Sequences join and leave between steps; one step is speculative (3 draft tokens, 1 accepted). Every output is
// checked against running each sequence alone, token by token, through the original fused layer.
//
//   node examples/serving-decode-loop.mjs [path/to/layer/model.onnx]
//
// GDN_FUSE_SRC names the folder of gdn-fuse's compiled src/ (default: the installed package "gdn-fuse").
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as ort from "onnxruntime-node";

const src = process.env.GDN_FUSE_SRC;
const lib = await import(src ? pathToFileURL(join(src, "index.js")).href : "gdn-fuse");
await import(src ? pathToFileURL(join(src, "runtime", "index.js")).href : "gdn-fuse/runtime");
const { loadModel, fuseModel, toServingForm, onnx } = lib;

const here = dirname(fileURLToPath(import.meta.url));
const modelPath = process.argv[2] ?? join(here, "..", "models", "layer_qwen3next_decode_dynb", "model.onnx");

// 1. Fuse the exported decode layer, and make its speculative serving form (up to 4 tokens per step).
const MAX_TOKENS = 4;
const { proto } = await loadModel(modelPath);
await fuseModel(proto, { probe: false });
const layerBytes = onnx.ModelProto.encode(proto).finish();
const serving = toServingForm(proto, { speculative: { maxTokens: MAX_TOKENS } });
const servingBytes = onnx.ModelProto.encode(onnx.ModelProto.fromObject(serving)).finish();
const GDN = { executionProviders: ["gdn"], intraOpNumThreads: 2 };
const layer = await ort.InferenceSession.create(layerBytes, GDN);
const step = await ort.InferenceSession.create(servingBytes, GDN);

// Static dims of a serving input (the first pool dim, "slots", is ours to choose).
const dimsOf = (name) =>
  serving.graph.input
    .find((i) => i.name === name)
    .type.tensorType.shape.dim.map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue)));
const HIDDEN = dimsOf("hidden_states")[2];
const CONV_DIMS = dimsOf("conv_state_pool").slice(1);
const REC_DIMS = dimsOf("recurrent_state_pool").slice(1);
const CONV_ROW = CONV_DIMS[0] * CONV_DIMS[1];
const REC_ROW = REC_DIMS.reduce((n, d) => n * d, 1);

// 2. The pools. Each sequence owns MAX_TOKENS recurrent slots (token t of a step writes its state into the t-th)
//    and one conv slot; a sequence that leaves gives its slots back.
const SLOTS = 16;
let convPool = new Float32Array(SLOTS * CONV_ROW);
let recPool = new Float32Array(SLOTS * REC_ROW);
const free = Array.from({ length: SLOTS }, (_, i) => i);
const sequences = new Map();

let seed = 7;
const random = (n) =>
  Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  });

function join_(name) {
  const slots = free.splice(0, MAX_TOKENS);
  for (const s of slots) {
    convPool.fill(0, s * CONV_ROW, (s + 1) * CONV_ROW); // a new sequence starts from zero states
    recPool.fill(0, s * REC_ROW, (s + 1) * REC_ROW);
  }
  // accepted = 1: the state to continue from is in the first slot (zeros for a new sequence).
  sequences.set(name, { slots, accepted: 1, alone: aloneState() });
}
function leave(name) {
  free.push(...sequences.get(name).slots);
  sequences.delete(name);
}

// 3. One serving step: tokens[name] = the hidden states of the tokens each sequence feeds (1, or 1 + drafts).
async function servingStep(tokens) {
  const names = [...sequences.keys()].filter((n) => tokens[n]);
  const lengths = names.map((n) => tokens[n].length / HIDDEN);
  const total = lengths.reduce((a, b) => a + b, 0);
  const hidden = new Float32Array(total * HIDDEN);
  const cu = [0];
  names.forEach((n, i) => {
    hidden.set(tokens[n], cu[i] * HIDDEN);
    cu.push(cu[i] + lengths[i]);
  });
  const i64 = (v, dims) => new ort.Tensor("int64", BigInt64Array.from(v.map(BigInt)), dims);
  const seqs = names.map((n) => sequences.get(n));
  const out = await step.run({
    hidden_states: new ort.Tensor("float32", hidden, [1, total, HIDDEN]),
    cu_seqlens: i64(cu, [cu.length]),
    state_indices: i64(
      seqs.flatMap((s) => s.slots),
      [names.length, MAX_TOKENS],
    ),
    conv_state_indices: i64(
      seqs.map((s) => s.slots[0]),
      [names.length],
    ),
    num_accepted_tokens: i64(
      seqs.map((s) => s.accepted),
      [names.length],
    ),
    conv_state_pool: new ort.Tensor("float32", convPool, [SLOTS, ...CONV_DIMS]),
    recurrent_state_pool: new ort.Tensor("float32", recPool, [SLOTS, ...REC_DIMS]),
  });
  convPool = out.conv_state_pool_out.data;
  recPool = out.recurrent_state_pool_out.data;
  const y = out.output.data;
  return Object.fromEntries(names.map((n, i) => [n, y.slice(cu[i] * HIDDEN, cu[i + 1] * HIDDEN)]));
}

// 4. The reference: one sequence alone through the original fused layer, one token per call.
function aloneState() {
  const zeros = (name) => {
    const dims = [
      1,
      ...proto.graph.input
        .find((i) => i.name === name)
        .type.tensorType.shape.dim.slice(1)
        .map((d) => Number(d.dimValue)),
    ];
    return new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
  };
  return { conv: zeros("conv_state"), rec: zeros("recurrent_state") };
}
async function alone(state, tokens) {
  const outputs = [];
  for (let t = 0; t < tokens.length / HIDDEN; t++) {
    const r = await layer.run({
      hidden_states: new ort.Tensor("float32", tokens.slice(t * HIDDEN, (t + 1) * HIDDEN), [1, 1, HIDDEN]),
      conv_state: state.conv,
      recurrent_state: state.rec,
    });
    state = { conv: r.new_conv_state, rec: r.new_recurrent_state };
    outputs.push(...r.output.data);
  }
  return { state, outputs: Float32Array.from(outputs) };
}

let worst = 0;
function check(name, got, want) {
  let num = 0,
    den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  const err = Math.sqrt(num / Math.max(den, 1e-30));
  worst = Math.max(worst, err);
  if (!(err < 1e-5)) throw new Error(`${name}: relative error ${err} against running the sequence alone`);
}

// Plain decode step: every sequence feeds one token; next time it continues from that token's state (slot 0).
async function decodeStep(label) {
  const tokens = Object.fromEntries([...sequences.keys()].map((n) => [n, random(HIDDEN)]));
  const out = await servingStep(tokens);
  for (const [n, s] of sequences) {
    const ref = await alone(s.alone, tokens[n]);
    check(`${label} ${n}`, out[n], ref.outputs);
    s.alone = ref.state;
    s.accepted = 1;
  }
}

// 5. The loop.
join_("a");
join_("b");
await decodeStep("step 1");
join_("c");
await decodeStep("step 2");
leave("b");
await decodeStep("step 3");

// Speculative step: "a" feeds its next token and 3 drafts; "c" feeds one token.
const drafts = random(MAX_TOKENS * HIDDEN);
const cToken = random(HIDDEN);
const out = await servingStep({ a: drafts, c: cToken });
const a = sequences.get("a"),
  c = sequences.get("c");
const aRef = await alone(a.alone, drafts); // each output: the sequence with the tokens before it
check("speculative a", out.a, aRef.outputs);
const cRef = await alone(c.alone, cToken);
check("speculative c", out.c, cRef.outputs);
c.alone = cRef.state;
// Verification kept the token and 1 draft: "a" continues after 2 tokens (the states of slots[1]).
a.accepted = 2;
a.alone = (await alone(a.alone, drafts.slice(0, 2 * HIDDEN))).state;
await decodeStep("after the speculative step");
join_("d");
await decodeStep("step 6");

console.log(`OK: ${sequences.size} sequences running, every output within ${worst.toExponential(1)} of running alone`);
