/**
 * gdn opset 2 CausalConv1d serving inputs (docs/ops.md): packed sequences (cu_seqlens), a conv state pool
 * (conv_state_indices), has_initial_state, and speculative decoding (num_accepted_tokens). Every mode is checked
 * against running each sequence alone through the plain op (bit for bit: same kernel arithmetic) and against a
 * float64 reference; each bad serving input gives its one-line error.
 */
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from "../src/ir/tensor.js";
import { loadRuntime } from "../src/runtime/index.js";

const ready = loadRuntime().opsLibraryPath !== null;
type DType = "float32" | "float16" | "bfloat16";
const ELEM = { float32: 1, float16: 10, bfloat16: 16, int32: 6, int64: 7, bool: 9 } as const;
const C = 6;
const W = 4;

// ------------------------------------------------------------------ model and session

interface Io {
  name: string;
  elem: number;
}
/** A one-node CausalConv1d model; an input named "" is absent. */
function convModel(inputs: Io[], outputs: Io[], stateSize = 0, opset = 2): Uint8Array {
  const vi = (t: Io): onnx.IValueInfoProto => ({ name: t.name, type: { tensorType: { elemType: t.elem } } });
  const model: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [
      { domain: "", version: 17 },
      { domain: "gdn", version: opset },
    ],
    graph: {
      name: "conv",
      node: [
        {
          name: "conv",
          opType: "CausalConv1d",
          domain: "gdn",
          input: inputs.map((t) => t.name),
          output: outputs.map((t) => t.name),
          attribute: [{ name: "state_size", type: onnx.AttributeProto.AttributeType.INT, i: stateSize }],
        },
      ],
      input: inputs.filter((t) => t.name !== "").map(vi),
      output: outputs.map(vi),
    },
  };
  return encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(model));
}

/** Float data rounded to `dt` (so that the float64 reference sees exactly the op's inputs). */
function rounded(n: number, seed: number, dt: DType): Float64Array {
  let s = seed >>> 0;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return roundTo(-1 + (2 * s) / 2 ** 32, dt);
  });
}
function roundTo(v: number, dt: DType): number {
  if (dt === "float16") return float16ToFloat32(float32ToFloat16(v));
  if (dt === "bfloat16") return bfloat16ToFloat32(float32ToBfloat16(v));
  return Math.fround(v);
}
function floatTensor(data: ArrayLike<number>, dims: number[], dt: DType): ort.Tensor {
  if (dt === "float32") return new ort.Tensor("float32", Float32Array.from(data), dims);
  const bits = Uint16Array.from(data, dt === "float16" ? float32ToFloat16 : float32ToBfloat16);
  return new ort.Tensor(dt === "float16" ? "float16" : ("uint16" as "float16"), bits, dims);
}
function floatData(t: ort.Tensor, dt: DType): Float64Array {
  const d = t.data as ArrayLike<number>;
  if (dt === "float32") return Float64Array.from(d);
  return Float64Array.from(d, dt === "float16" ? float16ToFloat32 : bfloat16ToFloat32);
}
const int64 = (v: number[]) => new ort.Tensor("int64", BigInt64Array.from(v.map(BigInt)), [v.length]);
const int32 = (v: number[]) => new ort.Tensor("int32", Int32Array.from(v), [v.length]);

interface ServingCall {
  dt: DType;
  x: Float64Array; // [1,C,T_total] packed, or [B,C,T]
  xDims: number[];
  weight: Float64Array; // [C,1,W], float32
  bias?: Float64Array; // [C], float32
  state?: Float64Array; // [rows,C,S]
  stateDims?: number[];
  cu?: number[];
  indices?: number[];
  accepted?: number[];
  hasInit?: boolean[];
  index32?: boolean; // int32 index inputs (else int64)
  stateSize?: number;
}

async function runConv(c: ServingCall): Promise<{ y: Float64Array; state: Float64Array | null }> {
  const idx = (v: number[]) => (c.index32 ? int32(v) : int64(v));
  const xe = ELEM[c.dt];
  const ie = c.index32 ? ELEM.int32 : ELEM.int64;
  const feeds: Record<string, ort.Tensor> = {
    x: floatTensor(c.x, c.xDims, c.dt),
    weight: new ort.Tensor("float32", Float32Array.from(c.weight), [C, 1, W]),
  };
  const absent = { name: "", elem: 0 };
  const inputs: Io[] = [{ name: "x", elem: xe }, { name: "weight", elem: 1 }, absent, absent];
  const add = (i: number, name: string, elem: number, t: ort.Tensor) => {
    while (inputs.length <= i) inputs.push({ name: "", elem: 0 });
    inputs[i] = { name, elem };
    feeds[name] = t;
  };
  if (c.bias) add(2, "bias", 1, new ort.Tensor("float32", Float32Array.from(c.bias), [C]));
  if (c.state) add(3, "conv_state", xe, floatTensor(c.state, c.stateDims!, c.dt));
  if (c.cu) add(4, "cu_seqlens", ie, idx(c.cu));
  if (c.indices) add(5, "conv_state_indices", ie, idx(c.indices));
  if (c.accepted) add(6, "num_accepted_tokens", ie, idx(c.accepted));
  if (c.hasInit) {
    const flags = new ort.Tensor("bool", Uint8Array.from(c.hasInit, Number), [c.hasInit.length]);
    add(7, "has_initial_state", ELEM.bool, flags);
  }
  const model = convModel(
    inputs,
    [
      { name: "y", elem: xe },
      { name: "conv_state_out", elem: xe },
    ],
    c.stateSize ?? 0,
  );
  const session = await ort.InferenceSession.create(model, { executionProviders: ["gdn"], intraOpNumThreads: 2 });
  try {
    const r = await session.run(feeds);
    return { y: floatData(r.y!, c.dt), state: floatData(r.conv_state_out!, c.dt) };
  } finally {
    await session.release();
  }
}

async function convError(c: ServingCall): Promise<string> {
  try {
    await runConv(c);
  } catch (e) {
    return (e as Error).message;
  }
  return "no error";
}

// ------------------------------------------------------------------ float64 reference

/** One sequence: y = act(bias + conv(history ++ x)), the history being the last W-1 of `state` (zeros: null). */
function referenceSequence(x: Float64Array[], state: Float64Array[] | null, weight: Float64Array, S: number) {
  const y: Float64Array[] = [];
  const out: Float64Array[] = [];
  for (let c = 0; c < C; c++) {
    const xs = [...(state ? state[c]! : new Float64Array(S)), ...x[c]!];
    const row = new Float64Array(x[c]!.length);
    for (let t = 0; t < row.length; t++) {
      let z = 0;
      for (let j = 0; j < W; j++) z += weight[c * W + j]! * xs[S + t - (W - 1) + j]!;
      row[t] = z / (1 + Math.exp(-z));
    }
    y.push(row);
    out.push(Float64Array.from(xs.slice(xs.length - S)));
  }
  return { y, state: out };
}

// ------------------------------------------------------------------ helpers over [rows,C,len] buffers

const channelRows = (buf: Float64Array, row: number, len: number, t0 = 0, n = len) =>
  Array.from({ length: C }, (_, c) => buf.slice((row * C + c) * len + t0, (row * C + c) * len + t0 + n));
const flat = (rows: Float64Array[]) => Float64Array.from(rows.flatMap((r) => [...r]));
function pack(seqs: Float64Array[][]): Float64Array {
  const total = seqs.reduce((a, s) => a + s[0]!.length, 0);
  const out = new Float64Array(C * total);
  let t0 = 0;
  for (const s of seqs) {
    for (let c = 0; c < C; c++) out.set(s[c]!, c * total + t0);
    t0 += s[0]!.length;
  }
  return out;
}
const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};
const TOL: Record<DType, number> = { float32: 1e-5, float16: 4e-3, bfloat16: 3e-2 };

/** The plain op on one sequence ([1,C,L], state [1,C,S] or none). */
async function alone(dt: DType, x: Float64Array[], state: Float64Array[] | null, weight: Float64Array, S: number) {
  const L = x[0]!.length;
  return runConv({
    dt,
    x: flat(x),
    xDims: [1, C, L],
    weight,
    ...(state ? { state: flat(state), stateDims: [1, C, S] } : { stateSize: S }),
  });
}

// ------------------------------------------------------------------ tests

describe.skipIf(!ready)("CausalConv1d opset 2: packed prefill with a state pool", () => {
  const cases: { dt: DType; S: number; index32: boolean }[] = [
    { dt: "float32", S: W - 1, index32: false },
    { dt: "float32", S: W, index32: true },
    { dt: "float16", S: W - 1, index32: true },
    { dt: "bfloat16", S: W, index32: false },
  ];
  const what = "$dt, S = $S: uneven lengths (incl. 0 and 1), unused and reused slots, has_initial_state";
  it.each(cases)(what, async ({ dt, S, index32 }) => {
    const lengths = [5, 0, 1, 9, 3, 2];
    const indices = [4, 1, 0, 6, 2, 1]; // slot 1 twice: sequence 1 has no tokens (skipped); slots 3, 5 unused
    const hasInit = [true, true, false, true, true, true];
    const slots = 7;
    const weight = rounded(C * W, 11, "float32");
    const pool = rounded(slots * C * S, 12, dt);
    const seqs = lengths.map((L, n) => channelRows(rounded(C * L, 100 + n, dt), 0, L));
    const cu = lengths.reduce((a, L) => [...a, a.at(-1)! + L], [0]);
    const r = await runConv({
      dt,
      x: pack(seqs),
      xDims: [1, C, cu.at(-1)!],
      weight,
      state: pool,
      stateDims: [slots, C, S],
      cu,
      indices,
      hasInit,
      index32,
      stateSize: S,
    });
    const expectedPool = Float64Array.from(pool);
    let t0 = 0;
    for (let n = 0; n < lengths.length; n++) {
      const L = lengths[n]!;
      const start = hasInit[n] ? channelRows(pool, indices[n]!, S) : null;
      const plain = await alone(dt, seqs[n]!, start, weight, S);
      const ref = referenceSequence(seqs[n]!, start, weight, S);
      const got = flat(Array.from({ length: C }, (_, c) => r.y.slice(c * cu.at(-1)! + t0, c * cu.at(-1)! + t0 + L)));
      expect(got).toEqual(plain.y);
      expect(maxAbsDiff(got, flat(ref.y))).toBeLessThan(TOL[dt]);
      if (L > 0) expectedPool.set(plain.state!, indices[n]! * C * S);
      t0 += L;
    }
    expect(r.state).toEqual(expectedPool);
  });

  it("without a pool: conv_state is [N,C,S], one row per sequence (length 0 keeps its row)", async () => {
    const S = W - 1;
    const lengths = [3, 0, 7];
    const weight = rounded(C * W, 21, "float32");
    const state = rounded(lengths.length * C * S, 22, "float32");
    const seqs = lengths.map((L, n) => channelRows(rounded(C * L, 200 + n, "float32"), 0, L));
    const cu = [0, 3, 3, 10];
    const r = await runConv({
      dt: "float32",
      x: pack(seqs),
      xDims: [1, C, 10],
      weight,
      state,
      stateDims: [3, C, S],
      cu,
    });
    const rows = [];
    for (let n = 0; n < 3; n++) {
      // A sequence of length 0 keeps its row (the reference; compared directly, not through a T = 0 plain call).
      if (lengths[n] === 0) rows.push(flat(referenceSequence(seqs[n]!, channelRows(state, n, S), weight, S).state));
      else rows.push((await alone("float32", seqs[n]!, channelRows(state, n, S), weight, S)).state!);
    }
    expect(r.state).toEqual(Float64Array.from(rows.flatMap((a) => [...a])));
  });
});

/**
 * Speculative decoding: each step feeds 1 + d tokens (d drafts); the next step's num_accepted_tokens says how many
 * of them were kept. The pool holds S = W-2 + 1 + d positions. Expected: running the sequence alone through the
 * plain op over its accepted tokens.
 */
describe.skipIf(!ready)("CausalConv1d opset 2: speculative decoding (num_accepted_tokens)", () => {
  const dts: DType[] = ["float32", "float16", "bfloat16"];
  const grid = [1, 2, 3, 4].flatMap((d) => dts.map((dt) => ({ d, dt })));
  it.each(grid)("$d drafts, $dt: every acceptance count", async ({ d, dt }) => {
    const T = d + 1;
    const S = W - 2 + T;
    const prefix = 6;
    const weight = rounded(C * W, 31 + d, "float32");
    // T sequences; sequence n accepts n+1 tokens of its first speculative step. Slots reversed, slot 0 unused.
    const N = T;
    const indices = Array.from({ length: N }, (_, n) => N - n);
    const history = Array.from({ length: N }, (_, n) => channelRows(rounded(C * prefix, 300 + n, dt), 0, prefix));
    // Prefill (plain step, packed) fills the pool with each sequence's last S inputs.
    const slots = N + 1;
    const pool0 = new Float64Array(slots * C * S);
    const prefill = await runConv({
      dt,
      x: pack(history),
      xDims: [1, C, N * prefix],
      weight,
      state: pool0,
      stateDims: [slots, C, S],
      cu: Array.from({ length: N + 1 }, (_, n) => n * prefix),
      indices,
      hasInit: Array(N).fill(false),
    });
    // Step 1 after a plain step: num_accepted_tokens = S-W+2 reads the end of the state.
    const step1 = history.map((_, n) => channelRows(rounded(C * T, 400 + n, dt), 0, T));
    // Each step packs N sequences of T tokens over the same pool slots.
    const stepOf = { dt, xDims: [1, C, N * T], weight, stateDims: [slots, C, S], indices };
    const cu = Array.from({ length: N + 1 }, (_, n) => n * T);
    const r1 = await runConv({
      ...stepOf,
      x: pack(step1),
      state: prefill.state!,
      cu,
      accepted: Array(N).fill(S - W + 2),
    });
    // Step 2: sequence n accepted n+1 of step 1's tokens.
    const step2 = history.map((_, n) => channelRows(rounded(C * T, 500 + n, dt), 0, T));
    const accepted = Array.from({ length: N }, (_, n) => n + 1);
    const r2 = await runConv({ ...stepOf, x: pack(step2), state: r1.state!, cu, accepted });
    for (let n = 0; n < N; n++) {
      const cat = (a: Float64Array[], b: Float64Array[], bn: number) =>
        a.map((row, c) => Float64Array.from([...row, ...b[c]!.slice(0, bn)]));
      const y1 = (await alone(dt, cat(history[n]!, step1[n]!, T), null, weight, S)).y;
      const kept = cat(history[n]!, step1[n]!, accepted[n]!);
      const plain = await alone(dt, cat(kept, step2[n]!, T), null, weight, S);
      const ref = referenceSequence(cat(kept, step2[n]!, T), null, weight, S);
      const slice = (y: Float64Array, L: number, t0: number, len: number) =>
        flat(Array.from({ length: C }, (_, c) => y.slice(c * L + t0, c * L + t0 + len)));
      const L0 = prefix + T,
        L1 = prefix + accepted[n]! + T;
      expect(slice(r1.y, N * T, n * T, T)).toEqual(slice(y1, L0, prefix, T));
      const got = slice(r2.y, N * T, n * T, T);
      expect(got).toEqual(slice(plain.y, L1, L1 - T, T));
      expect(maxAbsDiff(got, slice(flat(ref.y), L1, L1 - T, T))).toBeLessThan(TOL[dt]);
    }
    expect(channelRows(r2.state!, 0, S)).toEqual(channelRows(pool0, 0, S)); // the unused slot is untouched
  });

  it("unpacked [N,C,T] with a [N,C,S] state (no indices), W-2+T < S keeps the tail", async () => {
    const T = 2,
      S = W + 2,
      N = 2;
    const weight = rounded(C * W, 41, "float32");
    const state = rounded(N * C * S, 42, "float32");
    const x = rounded(N * C * T, 43, "float32");
    const r = await runConv({
      dt: "float32",
      x,
      xDims: [N, C, T],
      weight,
      state,
      stateDims: [N, C, S],
      accepted: [2, 4],
    });
    for (let n = 0; n < N; n++) {
      const a = [2, 4][n]!;
      const st = channelRows(state, n, S);
      const window = st.map((row) => row.slice(a - 1, a - 1 + W - 1));
      const xr = channelRows(x, n, T);
      const ref = referenceSequence(xr, window, weight, W - 1);
      expect(maxAbsDiff(flat(channelRows(r.y, n, T)), flat(ref.y))).toBeLessThan(1e-5);
      const want = st.map((row, c) => Float64Array.from([...window[c]!.slice(1), ...xr[c]!, ...row.slice(W - 2 + T)]));
      expect(channelRows(r.state!, n, S)).toEqual(want);
    }
  });
});

describe.skipIf(!ready)("CausalConv1d opset 2: bad serving inputs give one clear error each", () => {
  const S = W - 1;
  const weight = rounded(C * W, 51, "float32");
  const base = (over: Partial<ServingCall>): ServingCall => ({
    dt: "float32",
    x: new Float64Array(C * 4),
    xDims: [1, C, 4],
    weight,
    state: new Float64Array(3 * C * S),
    stateDims: [3, C, S],
    cu: [0, 1, 4],
    indices: [0, 2],
    ...over,
  });
  const cases: [string, Partial<ServingCall>, string][] = [
    [
      "index out of range",
      { indices: [0, 3] },
      "CausalConv1d: conv_state_indices[1] = 3 is out of range for a pool of 3 slots",
    ],
    [
      "negative index",
      { indices: [-1, 0] },
      "CausalConv1d: conv_state_indices[0] = -1 is out of range for a pool of 3 slots",
    ],
    [
      "duplicate slots",
      { indices: [2, 2] },
      "CausalConv1d: conv_state_indices[1] = 2 is also the slot of sequence 0 (each slot is written by one sequence)",
    ],
    ["cu_seqlens not starting at 0", { cu: [1, 1, 4] }, "CausalConv1d: cu_seqlens must start at 0, got 1"],
    [
      "cu_seqlens decreasing",
      { cu: [0, 3, 2] },
      "CausalConv1d: cu_seqlens must be non-decreasing, got cu_seqlens[2] = 2 after 3",
    ],
    ["cu_seqlens past T", { cu: [0, 5, 5] }, "CausalConv1d: cu_seqlens[1] = 5 is past the end of x's 4 tokens"],
    ["cu_seqlens short of T", { cu: [0, 1, 3] }, "CausalConv1d: cu_seqlens must end at T = 4, got 3"],
    [
      "cu_seqlens empty",
      { cu: [], indices: [] },
      "CausalConv1d: cu_seqlens must have shape [N+1] with N >= 0, got [0]",
    ],
    [
      "B != 1 with cu_seqlens",
      { x: new Float64Array(2 * C * 2), xDims: [2, C, 2] },
      "CausalConv1d: x has batch 2, but with cu_seqlens (input 4) x must be [1,C,T_total]",
    ],
    [
      "indices of another length",
      { indices: [0] },
      "CausalConv1d: conv_state_indices has shape [1], expected [2] (one per sequence)",
    ],
    [
      "accepted count 0",
      { accepted: [0, 1] },
      "CausalConv1d: num_accepted_tokens[0] = 0 is out of range 1..1 (S-W+2 for conv_state of 3 positions and W = 4)",
    ],
    [
      "accepted count past the state",
      {
        state: new Float64Array(3 * C * 5),
        stateDims: [3, C, 5],
        cu: [0, 1, 3],
        x: new Float64Array(C * 3),
        xDims: [1, C, 3],
        accepted: [1, 4],
      },
      "CausalConv1d: num_accepted_tokens[1] = 4 is out of range 1..3 (S-W+2 for conv_state of 5 positions and W = 4)",
    ],
    [
      "state too short for the drafts",
      { accepted: [1, 1] },
      "CausalConv1d: sequence 1 has 3 tokens, but a speculative step needs W-2+3 = 5 conv_state positions, got 3",
    ],
    [
      "indices without a pool",
      { state: undefined, stateDims: undefined },
      "CausalConv1d: conv_state_indices (input 5) needs conv_state (input 3), the pool it indexes",
    ],
    [
      "has_initial_state of another length",
      { hasInit: [true] },
      "CausalConv1d: has_initial_state has shape [1], expected [2] (one per sequence)",
    ],
  ];
  it.each(cases)("%s", async (_what, over, message) => {
    expect(await convError(base(over))).toContain(message);
  });
});

describe.skipIf(!ready)("CausalConv1d: gdn opset 1 models keep their 4 inputs", () => {
  it("an opset-1 node with cu_seqlens is refused when the model is loaded", async () => {
    const model = convModel(
      [
        { name: "x", elem: 1 },
        { name: "weight", elem: 1 },
        { name: "", elem: 0 },
        { name: "", elem: 0 },
        { name: "cu", elem: 7 },
      ],
      [{ name: "y", elem: 1 }],
      0,
      1,
    );
    await expect(ort.InferenceSession.create(model, { executionProviders: ["gdn"] })).rejects.toThrow(
      "CausalConv1d node 'conv': input 4 (cu_seqlens) is defined from gdn opset 2 on; this model imports gdn opset 1",
    );
  });

  it("an opset-1 node with 4 inputs runs as before", async () => {
    const weight = rounded(C * W, 61, "float32");
    const state = rounded(2 * C * W, 62, "float32");
    const x = rounded(2 * C * 5, 63, "float32");
    const inputs = [
      { name: "x", elem: 1 },
      { name: "weight", elem: 1 },
      { name: "", elem: 0 },
      { name: "s", elem: 1 },
    ];
    const model = convModel(
      inputs,
      [
        { name: "y", elem: 1 },
        { name: "so", elem: 1 },
      ],
      0,
      1,
    );
    const session = await ort.InferenceSession.create(model, { executionProviders: ["gdn"] });
    const r = await session.run({
      x: floatTensor(x, [2, C, 5], "float32"),
      weight: new ort.Tensor("float32", Float32Array.from(weight), [C, 1, W]),
      s: floatTensor(state, [2, C, W], "float32"),
    });
    await session.release();
    for (let b = 0; b < 2; b++) {
      const ref = referenceSequence(channelRows(x, b, 5), channelRows(state, b, W), weight, W);
      expect(maxAbsDiff(floatData(r.y!, "float32").slice(b * C * 5, (b + 1) * C * 5), flat(ref.y))).toBeLessThan(1e-5);
      expect(maxAbsDiff(floatData(r.so!, "float32").slice(b * C * W, (b + 1) * C * W), flat(ref.state))).toBe(0);
    }
  });
});
