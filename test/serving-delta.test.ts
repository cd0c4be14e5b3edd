/**
 * gdn opset 2 serving inputs of the delta-rule ops on the CPU backend (issue 13): packed variable-length batches
 * (cu_seqlens), state pools (ssm_state_indices [N] and, recurrent, [N,Tmax]) and speculative decoding
 * (num_accepted_tokens). Every mode is compared with running each sequence alone through the plain op and with
 * the float64 reference; the pool is checked to be updated in place when bound as the output; every bad input
 * gives its one-line message.
 */
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { float16ToFloat32, float32ToFloat16 } from "../src/ir/tensor.js";
import { oneNodeModel, type TensorSpec } from "../src/ops-model.js";
import { gatedDeltaReference } from "../src/reference/gated-delta.js";
import { loadRuntime } from "../src/runtime/index.js";
import { relativeL2 } from "./helpers/tensor-io.js";
import { TOLERANCE } from "../src/numeric.js";

const opsLibrary = (() => {
  try {
    return loadRuntime().opsLibraryPath;
  } catch {
    return null;
  }
})();
const ready = opsLibrary !== null && readFileSync(opsLibrary).includes("RegisterCustomOps");

type Op = "ChunkGatedDeltaRule" | "RecurrentGatedDeltaRule";
type DType = "float32" | "float16" | "bfloat16";
type Layout = "kv" | "vk";
const DT = onnx.TensorProto.DataType;
const ELEM: Record<DType, number> = { float32: DT.FLOAT, float16: DT.FLOAT16, bfloat16: DT.BFLOAT16 };
const TOL: Record<DType, number> = TOLERANCE;
const GDN = { executionProviders: ["gdn"], intraOpNumThreads: 2 };

interface Dims {
  Hk: number;
  Hv: number;
  K: number;
  V: number;
}

/** Deterministic pseudo-random floats in [lo, hi). */
function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + ((hi - lo) * s) / 2 ** 32;
  });
}

const bf16Bits = (x: number): number => {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
};
const bf16Value = (b: number): number => new Float32Array(Uint32Array.of(b << 16).buffer)[0]!;

/** A float tensor of `type` from float32 values, and the values it really holds (rounded to the type). */
function floatTensor(type: DType, x: Float32Array, dims: number[]): { tensor: ort.Tensor; held: Float32Array } {
  if (type === "float32") return { tensor: new ort.Tensor("float32", x, dims), held: x };
  const bits = Uint16Array.from(x, type === "float16" ? float32ToFloat16 : bf16Bits);
  const held = Float32Array.from(bits, type === "float16" ? float16ToFloat32 : bf16Value);
  return { tensor: new ort.Tensor(type === "float16" ? "float16" : "uint16", bits, dims), held };
}

function outputValues(type: DType, t: ort.Tensor): Float32Array {
  if (type === "float32") return t.data as Float32Array;
  return Float32Array.from(t.data as Uint16Array, type === "float16" ? float16ToFloat32 : bf16Value);
}

interface ModelSpec {
  op: Op;
  dtype?: DType;
  layout?: Layout;
  chunkSize?: number;
  l2norm?: boolean;
  /** Serving inputs present: cu_seqlens, ssm_state_indices, num_accepted_tokens. */
  cu?: "int32" | "int64";
  indices?: "int32" | "int64";
  accepted?: "int32" | "int64";
  noInitialState?: boolean;
  opset?: number;
}

/** One delta-rule node with symbolic dims (one session serves every shape). */
function servingModel(m: ModelSpec): Uint8Array {
  const t = ELEM[m.dtype ?? "float32"];
  const int = (x: "int32" | "int64") => (x === "int32" ? DT.INT32 : DT.INT64);
  const inputs: TensorSpec[] = [
    { name: "query", elemType: t },
    { name: "key", elemType: t },
    { name: "value", elemType: t },
    { name: "g" },
    { name: "beta", elemType: t },
    { name: m.noInitialState ? "" : "initial_state" },
    { name: m.cu ? "cu_seqlens" : "", elemType: m.cu && int(m.cu) },
    { name: m.indices ? "ssm_state_indices" : "", elemType: m.indices && int(m.indices) },
  ];
  if (m.accepted) inputs.push({ name: "num_accepted_tokens", elemType: int(m.accepted) });
  while (inputs.at(-1)!.name === "") inputs.pop();
  const { STRING, INT } = onnx.AttributeProto.AttributeType;
  const attributes: onnx.IAttributeProto[] = [
    { name: "state_layout", type: STRING, s: new TextEncoder().encode(m.layout ?? "kv") },
    { name: "use_qk_l2norm", type: INT, i: m.l2norm ? 1 : 0 },
  ];
  if (m.chunkSize && m.op === "ChunkGatedDeltaRule") attributes.push({ name: "chunk_size", type: INT, i: m.chunkSize });
  const bytes = oneNodeModel({
    opType: m.op,
    inputs: inputs.filter((i) => i.name !== ""),
    outputs: [{ name: "output", elemType: t }, { name: "final_state" }],
    attributes,
    gdnOpset: m.opset ?? 2,
  });
  // An absent optional input before a present one: the node keeps its empty name, the graph has no such input.
  const model = onnx.ModelProto.decode(bytes);
  model.graph!.node![0]!.input = inputs.map((i) => i.name);
  return encodeMessage(onnx.ModelProto, model);
}

const sessions = new Map<string, Promise<ort.InferenceSession>>();
function session(m: ModelSpec): Promise<ort.InferenceSession> {
  const key = JSON.stringify(m);
  if (!sessions.has(key)) sessions.set(key, ort.InferenceSession.create(servingModel(m), GDN));
  return sessions.get(key)!;
}

/** Packed tokens of a batch: q, k, v, g, beta over T tokens (float32 values, rounded to dtype where they go in). */
interface Tokens {
  T: number;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  g: Float32Array;
  beta: Float32Array;
}

function tokens(T: number, d: Dims, seed: number, l2norm = false): Tokens {
  return {
    T,
    q: rand(T * d.Hk * d.K, seed),
    // without l2norm keep |k| small so that the recurrence stays contractive
    k: rand(T * d.Hk * d.K, seed + 1, l2norm ? -1 : -0.5 / Math.sqrt(d.K), l2norm ? 1 : 0.5 / Math.sqrt(d.K)),
    v: rand(T * d.Hv * d.V, seed + 2),
    g: rand(T * d.Hv, seed + 3, -1, -0.01),
    beta: rand(T * d.Hv, seed + 4, 0.1, 0.9),
  };
}

/** Tokens [a, b) of a packed batch. */
function slice(x: Tokens, a: number, b: number, d: Dims): Tokens {
  return {
    T: b - a,
    q: x.q.slice(a * d.Hk * d.K, b * d.Hk * d.K),
    k: x.k.slice(a * d.Hk * d.K, b * d.Hk * d.K),
    v: x.v.slice(a * d.Hv * d.V, b * d.Hv * d.V),
    g: x.g.slice(a * d.Hv, b * d.Hv),
    beta: x.beta.slice(a * d.Hv, b * d.Hv),
  };
}

/** Feeds of a batch of B sequences of T tokens (B = 1: packed) in `dtype`, and the values they hold. */
function feeds(x: Tokens, B: number, d: Dims, dtype: DType) {
  const T = x.T / B;
  const q = floatTensor(dtype, x.q, [B, T, d.Hk, d.K]);
  const k = floatTensor(dtype, x.k, [B, T, d.Hk, d.K]);
  const v = floatTensor(dtype, x.v, [B, T, d.Hv, d.V]);
  const beta = floatTensor(dtype, x.beta, [B, T, d.Hv]);
  const f: Record<string, ort.Tensor> = { query: q.tensor, key: k.tensor, value: v.tensor, beta: beta.tensor };
  f.g = new ort.Tensor("float32", x.g, [B, T, d.Hv]);
  const held: Tokens = { T: x.T, q: q.held, k: k.held, v: v.held, g: x.g, beta: beta.held };
  return { f, held };
}

const stateSize = (d: Dims) => d.Hv * d.K * d.V;
const stateDims = (n: number, d: Dims, layout: Layout) => (layout === "kv" ? [n, d.Hv, d.K, d.V] : [n, d.Hv, d.V, d.K]);
const intTensor = (type: "int32" | "int64", values: number[], dims: number[]) =>
  type === "int32"
    ? new ort.Tensor("int32", Int32Array.from(values), dims)
    : new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);

/** The float64 reference of one sequence from `state` (one slot, in `layout`). */
function reference(x: Tokens, d: Dims, state: ArrayLike<number>, layout: Layout, l2norm = false) {
  const r = gatedDeltaReference(
    { query: x.q, key: x.k, value: x.v, g: x.g, beta: x.beta, initialState: state },
    { B: 1, T: x.T, ...d },
    { stateLayout: layout, useQkL2norm: l2norm },
  );
  return { output: r.output, state: r.finalState };
}

/** Runs one sequence alone through the plain op (B = 1, opset 2 without serving inputs). */
async function plainRun(op: Op, x: Tokens, d: Dims, state: Float32Array, dtype: DType, layout: Layout, chunk?: number) {
  const s = await session({ op, dtype, layout, chunkSize: chunk });
  const { f } = feeds(x, 1, d, dtype);
  f.initial_state = new ort.Tensor("float32", state, stateDims(1, d, layout));
  const r = await s.run(f);
  return { output: outputValues(dtype, r.output as ort.Tensor), state: r.final_state!.data as Float32Array };
}

const seqOffsets = (lengths: number[]) => lengths.reduce((cu, n) => [...cu, cu.at(-1)! + n], [0]);

/** Expects `got` close to the plain per-sequence run and to the float64 reference. */
type Values = ArrayLike<number>;
function expectClose(what: string, got: Values, plain: Values, ref: Values, tol: number) {
  if (got.length === 0) return;
  expect(relativeL2(got, plain), `${what} vs plain op`).toBeLessThanOrEqual(1e-6);
  expect(relativeL2(got, ref), `${what} vs float64 reference`).toBeLessThanOrEqual(tol);
}

describe.skipIf(!ready)("gdn opset 2: packed prefill (cu_seqlens)", () => {
  const lengths = [5, 0, 1, 70, 33, 64]; // 0 and 1, lengths not a multiple of the chunk size (16)
  const d: Dims = { Hk: 2, Hv: 4, K: 16, V: 8 }; // GQA, K != V
  const cases: [Op, DType, Layout][] = [
    ["ChunkGatedDeltaRule", "float32", "kv"],
    ["ChunkGatedDeltaRule", "float32", "vk"],
    ["ChunkGatedDeltaRule", "float16", "kv"],
    ["ChunkGatedDeltaRule", "bfloat16", "vk"],
    ["RecurrentGatedDeltaRule", "float32", "vk"],
    ["RecurrentGatedDeltaRule", "bfloat16", "kv"],
  ];
  it.each(cases)("%s %s %s: per-sequence states [N,...], each sequence as if alone", async (op, dtype, layout) => {
    const cu = seqOffsets(lengths);
    const x = tokens(cu.at(-1)!, d, 11);
    const N = lengths.length;
    const s0 = rand(N * stateSize(d), 12, -0.5, 0.5);
    const s = await session({ op, dtype, layout, chunkSize: 16, cu: "int32" });
    const { f, held } = feeds(x, 1, d, dtype);
    f.initial_state = new ort.Tensor("float32", s0, stateDims(N, d, layout));
    f.cu_seqlens = intTensor("int32", cu, [N + 1]);
    const r = await s.run(f);
    const out = outputValues(dtype, r.output as ort.Tensor);
    const fs = r.final_state!.data as Float32Array;
    expect(r.final_state!.dims).toEqual(stateDims(N, d, layout));
    for (let n = 0; n < N; n++) {
      const seq = slice(held, cu[n]!, cu[n + 1]!, d);
      const init = s0.slice(n * stateSize(d), (n + 1) * stateSize(d));
      const ref = reference(seq, d, init, layout);
      const one = await plainRun(op, slice(x, cu[n]!, cu[n + 1]!, d), d, init, dtype, layout, 16);
      const rows = out.slice(cu[n]! * d.Hv * d.V, cu[n + 1]! * d.Hv * d.V);
      expectClose(`sequence ${n} output`, rows, one.output, ref.output, TOL[dtype]);
      const state = fs.slice(n * stateSize(d), (n + 1) * stateSize(d));
      expectClose(`sequence ${n} state`, state, one.state, ref.state, 1e-5);
    }
    // the length-0 sequence keeps its state exactly
    expect(fs.slice(stateSize(d), 2 * stateSize(d))).toEqual(s0.slice(stateSize(d), 2 * stateSize(d)));
  });

  it("without initial_state, final_state is [N,Hv,K,V] from zeros", async () => {
    const lens = [3, 9];
    const cu = seqOffsets(lens);
    const x = tokens(12, d, 21);
    const s = await session({ op: "ChunkGatedDeltaRule", cu: "int64", noInitialState: true });
    const { f } = feeds(x, 1, d, "float32");
    f.cu_seqlens = intTensor("int64", cu, [3]);
    const r = await s.run(f);
    expect(r.final_state!.dims).toEqual([2, d.Hv, d.K, d.V]);
    for (let n = 0; n < 2; n++) {
      const ref = reference(slice(x, cu[n]!, cu[n + 1]!, d), d, new Float32Array(stateSize(d)), "kv");
      const fs = (r.final_state!.data as Float32Array).slice(n * stateSize(d), (n + 1) * stateSize(d));
      expect(relativeL2(fs, ref.state)).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe.skipIf(!ready)("gdn opset 2: state pools (ssm_state_indices [N])", () => {
  const d: Dims = { Hk: 1, Hv: 2, K: 8, V: 12 };
  const S = 8;

  /** Runs a packed prefill / decode step on `pool` with 1-D indices; `inPlace` binds the pool as final_state. */
  async function poolStep(
    op: Op,
    layout: Layout,
    x: Tokens,
    cu: number[],
    idx: number[],
    pool: ort.Tensor,
    inPlace: boolean,
  ) {
    const s = await session({ op, layout, chunkSize: 16, cu: "int64", indices: "int32" });
    const { f } = feeds(x, 1, d, "float32");
    f.initial_state = pool;
    f.cu_seqlens = intTensor("int64", cu, [cu.length]);
    f.ssm_state_indices = intTensor("int32", idx, [idx.length]);
    return inPlace ? s.run(f, { output: null as unknown as ort.Tensor, final_state: pool }) : s.run(f);
  }

  const cases: [Op, Layout, boolean][] = [
    ["ChunkGatedDeltaRule", "kv", true],
    ["ChunkGatedDeltaRule", "vk", false],
    ["RecurrentGatedDeltaRule", "vk", true],
    ["RecurrentGatedDeltaRule", "kv", false],
  ];
  it.each(cases)("%s %s in place=%s: touched slots as if alone, the others unchanged", async (op, layout, inPlace) => {
    const lengths = [7, 0, 20, 1];
    const idx = [6, 2, 0, 3]; // slot 2 belongs to the length-0 sequence: untouched
    const cu = seqOffsets(lengths);
    const x = tokens(cu.at(-1)!, d, 31);
    const before = rand(S * stateSize(d), 32, -0.5, 0.5);
    const pool = new ort.Tensor("float32", before.slice(), stateDims(S, d, layout));
    const buffer = (pool.data as Float32Array).buffer;
    const r = await poolStep(op, layout, x, cu, idx, pool, inPlace);
    const after = r.final_state!.data as Float32Array;
    if (inPlace) {
      expect(r.final_state).toBe(pool);
      expect(after.buffer).toBe(buffer); // the caller's own pool, written in place
    } else {
      expect(pool.data).toEqual(before); // the input pool is not written
    }
    const slot = (a: Float32Array, i: number) => a.slice(i * stateSize(d), (i + 1) * stateSize(d));
    for (let n = 0; n < lengths.length; n++) {
      if (lengths[n] === 0) continue;
      const seq = slice(x, cu[n]!, cu[n + 1]!, d);
      const ref = reference(seq, d, slot(before, idx[n]!), layout);
      const one = await plainRun(op, seq, d, slot(before, idx[n]!), "float32", layout, 16);
      const out = (r.output!.data as Float32Array).slice(cu[n]! * d.Hv * d.V, cu[n + 1]! * d.Hv * d.V);
      expectClose(`sequence ${n} output`, out, one.output, ref.output, 1e-5);
      expectClose(`slot ${idx[n]}`, slot(after, idx[n]!), one.state, ref.state, 1e-5);
    }
    for (const untouched of [1, 2, 4, 5, 7]) expect(slot(after, untouched)).toEqual(slot(before, untouched));
  });

  it("a decode loop reuses slots: sequences join and leave between steps, the pool updated in place", async () => {
    const op = "RecurrentGatedDeltaRule";
    const before = rand(S * stateSize(d), 41, -0.5, 0.5);
    const pool = new ort.Tensor("float32", before.slice(), stateDims(S, d, "kv"));
    const expected = Float64Array.from(before);
    const slotOf = (a: Values, i: number) =>
      Array.prototype.slice.call(a, i * stateSize(d), (i + 1) * stateSize(d)) as number[];
    const steps = [
      [5, 1, 7],
      [1, 7],
      [7, 0, 5, 1],
    ]; // slot 5 leaves after step 1 and comes back; 0 joins
    for (const [step, idx] of steps.entries()) {
      const x = tokens(idx.length, d, 50 + step);
      const r = await poolStep(op, "kv", x, seqOffsets(idx.map(() => 1)), idx, pool, true);
      for (const [n, i] of idx.entries()) {
        const ref = reference(slice(x, n, n + 1, d), d, slotOf(expected, i), "kv");
        expected.set(ref.state, i * stateSize(d));
        const out = (r.output!.data as Float32Array).slice(n * d.Hv * d.V, (n + 1) * d.Hv * d.V);
        expect(relativeL2(out, ref.output), `step ${step} sequence ${n}`).toBeLessThanOrEqual(1e-5);
      }
    }
    expect(relativeL2(pool.data as Float32Array, expected)).toBeLessThanOrEqual(1e-5);
    for (const never of [2, 3, 4, 6]) expect(slotOf(pool.data as Float32Array, never)).toEqual(slotOf(before, never));
  });
});

describe.skipIf(!ready)("gdn opset 2: speculative decoding (ssm_state_indices [N,Tmax], num_accepted_tokens)", () => {
  const d: Dims = { Hk: 1, Hv: 2, K: 8, V: 8 };
  const slot = (a: ArrayLike<number>, i: number) =>
    Float64Array.from(Array.prototype.slice.call(a, i * stateSize(d), (i + 1) * stateSize(d)) as number[]);

  // Tmax = 1..8 tokens per sequence; sequence n of a call accepts n + 1 drafts: every acceptance count 1..Tmax.
  for (const layout of ["kv", "vk"] as Layout[]) {
    it(`${layout}: 1..8 tokens, every acceptance count; token t writes its state into slot idx[n,t]`, async () => {
      const op = "RecurrentGatedDeltaRule";
      const s = await session({ op, layout, cu: "int32", indices: "int64", accepted: "int32" });
      for (let Tmax = 1; Tmax <= 8; Tmax++) {
        const N = Tmax;
        const S = N * Tmax + 3; // slot n * Tmax + t for token t of sequence n; 3 slots no one uses
        const x = tokens(N * Tmax, d, 60 + Tmax);
        const before = rand(S * stateSize(d), 70 + Tmax, -0.5, 0.5);
        const pool = new ort.Tensor("float32", before.slice(), stateDims(S, d, layout));
        const idx = Array.from({ length: N * Tmax }, (_, i) => i);
        const accepted = Array.from({ length: N }, (_, n) => n + 1);
        const { f } = feeds(x, 1, d, "float32");
        f.initial_state = pool;
        f.cu_seqlens = intTensor("int32", seqOffsets(accepted.map(() => Tmax)), [N + 1]);
        f.ssm_state_indices = intTensor("int64", idx, [N, Tmax]);
        f.num_accepted_tokens = intTensor("int32", accepted, [N]);
        const r = await s.run(f, { output: null as unknown as ort.Tensor, final_state: pool });
        const after = pool.data as Float32Array;
        for (let n = 0; n < N; n++) {
          let state = slot(before, n * Tmax + accepted[n]! - 1); // starts from the accepted draft's state
          for (let t = 0; t < Tmax; t++) {
            const ref = reference(slice(x, n * Tmax + t, n * Tmax + t + 1, d), d, state, layout);
            state = Float64Array.from(ref.state);
            const row = (n * Tmax + t) * d.Hv * d.V;
            const out = (r.output!.data as Float32Array).slice(row, row + d.Hv * d.V);
            expect(relativeL2(out, ref.output), `Tmax ${Tmax} sequence ${n} token ${t} output`).toBeLessThanOrEqual(
              1e-5,
            );
            expect(
              relativeL2(slot(after, n * Tmax + t), state),
              `Tmax ${Tmax} slot of sequence ${n} token ${t}`,
            ).toBeLessThanOrEqual(1e-5);
          }
        }
        for (let i = N * Tmax; i < S; i++) expect(slot(after, i)).toEqual(slot(before, i));
      }
    });
  }

  it("without num_accepted_tokens a sequence starts from idx[n,0]; shorter ones use their first columns", async () => {
    const s = await session({ op: "RecurrentGatedDeltaRule", cu: "int64", indices: "int32" });
    const lengths = [3, 1, 0];
    const idx = [
      [4, 0, 1],
      [2, 9, 9],
      [9, 9, 9],
    ]; // 9: unused entries (in range)
    const x = tokens(4, d, 80);
    const before = rand(10 * stateSize(d), 81, -0.5, 0.5);
    const { f } = feeds(x, 1, d, "float32");
    f.initial_state = new ort.Tensor("float32", before.slice(), stateDims(10, d, "kv"));
    f.cu_seqlens = intTensor("int64", seqOffsets(lengths), [4]);
    f.ssm_state_indices = intTensor("int32", idx.flat(), [3, 3]);
    const r = await s.run(f);
    const after = r.final_state!.data as Float32Array;
    let state = slot(before, 4);
    for (let t = 0; t < 3; t++) {
      state = Float64Array.from(reference(slice(x, t, t + 1, d), d, state, "kv").state);
      expect(relativeL2(slot(after, idx[0]![t]!), state)).toBeLessThanOrEqual(1e-5);
    }
    const second = reference(slice(x, 3, 4, d), d, slot(before, 2), "kv");
    expect(relativeL2(slot(after, 2), second.state)).toBeLessThanOrEqual(1e-5);
    for (const i of [3, 5, 6, 7, 8, 9]) expect(slot(after, i)).toEqual(slot(before, i));
  });
});

describe.skipIf(!ready)("published varlen cases against the float64 reference", () => {
  // flash-linear-attention tests/ops/test_gdn.py (test_chunk_varlen): a representative subset of its grid
  // (cu_seqlens x H/HV x D), sized for 2 cores; ONNX Runtime's LinearAttention ragged case {0,40,150,200}.
  const grid: [string, number[], Dims][] = [
    ["FLA [0,15] H=2 HV=2 D=60", [0, 15], { Hk: 2, Hv: 2, K: 60, V: 60 }],
    ["FLA [0,256,500,1000] H=2 HV=4 D=64", [0, 256, 500, 1000], { Hk: 2, Hv: 4, K: 64, V: 64 }],
    ["FLA [0,15,100,300,1200,2000] H=1 HV=2 D=128", [0, 15, 100, 300, 1200, 2000], { Hk: 1, Hv: 2, K: 128, V: 128 }],
    ["ORT ragged {0,40,150,200} H=2 D=32", [0, 40, 150, 200], { Hk: 2, Hv: 2, K: 32, V: 32 }],
  ];
  it.each(grid)("%s", async (_name, cu, d) => {
    const N = cu.length - 1;
    const x = tokens(cu.at(-1)!, d, 90 + N, true);
    const s0 = rand(N * stateSize(d), 99, -0.5, 0.5);
    const s = await session({ op: "ChunkGatedDeltaRule", l2norm: true, cu: "int64" });
    const { f } = feeds(x, 1, d, "float32");
    f.initial_state = new ort.Tensor("float32", s0, stateDims(N, d, "kv"));
    f.cu_seqlens = intTensor("int64", cu, [N + 1]);
    const r = await s.run(f);
    for (let n = 0; n < N; n++) {
      const init = s0.slice(n * stateSize(d), (n + 1) * stateSize(d));
      const ref = reference(slice(x, cu[n]!, cu[n + 1]!, d), d, init, "kv", true);
      const out = (r.output!.data as Float32Array).slice(cu[n]! * d.Hv * d.V, cu[n + 1]! * d.Hv * d.V);
      const fs = (r.final_state!.data as Float32Array).slice(n * stateSize(d), (n + 1) * stateSize(d));
      expect(relativeL2(out, ref.output), `sequence ${n} output`).toBeLessThanOrEqual(1e-5);
      expect(relativeL2(fs, ref.state), `sequence ${n} state`).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe.skipIf(!ready)("bad serving inputs: one clear error each", () => {
  const d: Dims = { Hk: 1, Hv: 1, K: 4, V: 4 };
  interface Bad {
    op?: Op;
    B?: number;
    T?: number;
    cu?: number[];
    idx?: number[];
    idxDims?: number[];
    accepted?: number[];
    slots?: number;
  }
  async function runBad(c: Bad): Promise<unknown> {
    const op = c.op ?? "RecurrentGatedDeltaRule";
    const B = c.B ?? 1;
    const T = c.T ?? 4;
    const m: ModelSpec = { op, cu: c.cu ? "int64" : undefined, indices: c.idx ? "int32" : undefined };
    if (c.accepted) m.accepted = "int64";
    const s = await session(m);
    const { f } = feeds(tokens(B * T, d, 7), B, d, "float32");
    const slots = c.slots ?? (c.idx ? 4 : c.cu ? c.cu.length - 1 : B);
    f.initial_state = new ort.Tensor("float32", new Float32Array(slots * stateSize(d)), stateDims(slots, d, "kv"));
    if (c.cu) f.cu_seqlens = intTensor("int64", c.cu, [c.cu.length]);
    if (c.idx) f.ssm_state_indices = intTensor("int32", c.idx, c.idxDims ?? [c.idx.length]);
    if (c.accepted) f.num_accepted_tokens = intTensor("int64", c.accepted, [c.accepted.length]);
    return s.run(f).then(
      () => null,
      (e: unknown) => e,
    );
  }
  const R = "RecurrentGatedDeltaRule";
  const cases: [string, Bad, string][] = [
    ["cu_seqlens not starting at 0", { cu: [1, 4] }, `${R}: cu_seqlens[0] must be 0, got 1`],
    [
      "cu_seqlens decreasing",
      { cu: [0, 3, 2, 4] },
      `${R}: cu_seqlens must be non-decreasing, got cu_seqlens[2] = 2 after cu_seqlens[1] = 3`,
    ],
    ["cu_seqlens not ending at T", { cu: [0, 1, 3] }, `${R}: cu_seqlens must end at T = 4, got cu_seqlens[2] = 3`],
    ["cu_seqlens past T", { cu: [0, 9, 4] }, `${R}: cu_seqlens must end at T = 4, got cu_seqlens[1] = 9`],
    [
      "B != 1 with cu_seqlens",
      { B: 2, T: 2, cu: [0, 4] },
      `${R}: cu_seqlens needs a packed batch of batch size 1 ([1,T,...]), got B = 2`,
    ],
    [
      "an index out of range",
      { cu: [0, 2, 4], idx: [1, 4] },
      `${R}: ssm_state_indices[1] = 4 is out of range for a pool of 4 slots`,
    ],
    [
      "a negative index",
      { cu: [0, 2, 4], idx: [-1, 0] },
      `${R}: ssm_state_indices[0] = -1 is out of range for a pool of 4 slots`,
    ],
    [
      "a 2-D index out of range",
      { cu: [0, 2, 4], idx: [0, 1, 2, 7], idxDims: [2, 2] },
      `${R}: ssm_state_indices[1,1] = 7 is out of range for a pool of 4 slots`,
    ],
    [
      "indices of another N",
      { cu: [0, 2, 4], idx: [0, 1, 2] },
      `${R}: ssm_state_indices has 3 rows, expected N = 2 (one per sequence)`,
    ],
    [
      "a slot written twice",
      { cu: [0, 2, 4], idx: [3, 3] },
      `${R}: ssm_state_indices writes slot 3 twice in one call (sequences 0 and 1)`,
    ],
    [
      "a 2-D slot written twice",
      { cu: [0, 2, 4], idx: [0, 1, 2, 1], idxDims: [2, 2] },
      `${R}: ssm_state_indices writes slot 1 twice in one call (sequence 0 token 1 and sequence 1 token 1)`,
    ],
    [
      "a start slot another sequence writes",
      { cu: [0, 2, 4], idx: [0, 1, 1, 2], idxDims: [2, 2], accepted: [1, 2] },
      `${R}: ssm_state_indices writes slot 1 twice in one call (sequence 0 token 1 and sequence 1 token 0)`,
    ],
    [
      "a read of a slot another sequence writes",
      { cu: [0, 2, 3, 4], idx: [0, 1, 3, 1, 2, 0], idxDims: [3, 2], accepted: [1, 2, 1] },
      `${R}: sequence 1 starts from slot 1, which sequence 0 writes in the same call`,
    ],
    [
      "too few index columns",
      { cu: [0, 3, 4], idx: [0, 1, 2, 3], idxDims: [2, 2] },
      `${R}: ssm_state_indices has 2 columns, fewer than the 3 tokens of sequence 0`,
    ],
    [
      "num_accepted_tokens 0",
      { cu: [0, 2, 4], idx: [0, 1, 2, 3], idxDims: [2, 2], accepted: [0, 1] },
      `${R}: num_accepted_tokens[0] = 0 is out of range 1..2 (the columns of ssm_state_indices)`,
    ],
    [
      "num_accepted_tokens above Tmax",
      { cu: [0, 2, 4], idx: [0, 1, 2, 3], idxDims: [2, 2], accepted: [1, 3] },
      `${R}: num_accepted_tokens[1] = 3 is out of range 1..2 (the columns of ssm_state_indices)`,
    ],
    [
      "num_accepted_tokens with 1-D indices",
      { cu: [0, 2, 4], idx: [0, 1], accepted: [1, 1] },
      `${R}: num_accepted_tokens needs 2-D ssm_state_indices [N,Tmax]`,
    ],
    [
      "num_accepted_tokens of another N",
      { cu: [0, 2, 4], idx: [0, 1, 2, 3], idxDims: [2, 2], accepted: [1] },
      `${R}: num_accepted_tokens has shape [1], expected [2] ([N], one per sequence)`,
    ],
    [
      "2-D indices on the chunked op",
      { op: "ChunkGatedDeltaRule", cu: [0, 2, 4], idx: [0, 1, 2, 3], idxDims: [2, 2] },
      "ChunkGatedDeltaRule: ssm_state_indices must have shape [N] " +
        "(2-D indices [N,Tmax] are for RecurrentGatedDeltaRule only), got [2,2]",
    ],
  ];
  it.each(cases)("%s", async (_what, c, message) => {
    const err = await runBad(c);
    expect(err).toBeInstanceOf(GdnFuseError);
    expect((err as Error).message).toContain(message);
    expect((err as Error).message).not.toContain("\n");
  });

  it("a pool whose state shape is not [S,Hv,K,V]", async () => {
    const s = await session({ op: R, cu: "int64", indices: "int32" });
    const { f } = feeds(tokens(4, d, 7), 1, d, "float32");
    f.initial_state = new ort.Tensor("float32", new Float32Array(3 * 4 * 5), [3, 1, 4, 5]);
    f.cu_seqlens = intTensor("int64", [0, 4], [2]);
    f.ssm_state_indices = intTensor("int32", [0], [1]);
    const err = await s.run(f).catch((e: unknown) => e);
    expect((err as Error).message).toContain(
      `${R}: initial_state has shape [3,1,4,5], expected [3,1,4,4] (a state pool [S,Hv,K,V] for state_layout "kv")`,
    );
  });

  it("ssm_state_indices without a pool", async () => {
    const s = await session({ op: R, cu: "int64", indices: "int32", noInitialState: true });
    const { f } = feeds(tokens(4, d, 7), 1, d, "float32");
    f.cu_seqlens = intTensor("int64", [0, 4], [2]);
    f.ssm_state_indices = intTensor("int32", [0], [1]);
    const err = await s.run(f).catch((e: unknown) => e);
    expect((err as Error).message).toContain(
      `${R}: ssm_state_indices needs initial_state (the state pool [S,Hv,K,V] or [S,Hv,V,K])`,
    );
  });

  it("a preallocated pool output of another shape", async () => {
    const s = await session({ op: R, cu: "int64", indices: "int32" });
    const { f } = feeds(tokens(4, d, 7), 1, d, "float32");
    f.initial_state = new ort.Tensor("float32", new Float32Array(4 * 16), [4, 1, 4, 4]);
    f.cu_seqlens = intTensor("int64", [0, 4], [2]);
    f.ssm_state_indices = intTensor("int32", [0], [1]);
    const wrong = new ort.Tensor("float32", new Float32Array(2 * 16), [2, 1, 4, 4]);
    const err = await s.run(f, { output: null as unknown as ort.Tensor, final_state: wrong }).catch((e: unknown) => e);
    expect((err as Error).message).toContain(
      `${R} node 'n0': output final_state was given with shape [2,1,4,4], expected [4,1,4,4]`,
    );
  });
});

describe.skipIf(!ready)("gdn opset 1 models keep their meaning", () => {
  it("a serving input in an opset-1 model is refused with the opset-1 message", async () => {
    const model = servingModel({ op: "ChunkGatedDeltaRule", cu: "int64", opset: 1 });
    const err = await ort.InferenceSession.create(model, GDN).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GdnFuseError);
    expect(err).toMatchObject({
      code: "E_MODEL",
      message:
        "cannot create session: ChunkGatedDeltaRule node 'n0': input 6 (cu_seqlens) is reserved in gdn opset 1 " +
        "and not implemented by the CPU backend",
    });
  });

  it("an opset-1 model without serving inputs runs as before", async () => {
    const d: Dims = { Hk: 1, Hv: 1, K: 4, V: 4 };
    const s = await session({ op: "RecurrentGatedDeltaRule", opset: 1 });
    const x = tokens(6, d, 3);
    const { f } = feeds(x, 2, d, "float32");
    const s0 = rand(2 * stateSize(d), 4);
    f.initial_state = new ort.Tensor("float32", s0, [2, 1, 4, 4]);
    const r = await s.run(f);
    for (let b = 0; b < 2; b++) {
      const ref = reference(slice(x, 3 * b, 3 * b + 3, d), d, s0.slice(16 * b, 16 * b + 16), "kv");
      const state = (r.final_state!.data as Float32Array).slice(16 * b, 16 * b + 16);
      expect(relativeL2(state, ref.state)).toBeLessThanOrEqual(1e-5);
    }
  });
});
