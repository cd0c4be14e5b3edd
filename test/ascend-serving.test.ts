/**
 * gdn opset 2 serving inputs on the `ascend` backend over the CANN simulator (docs/ascend.md, "Serving inputs"):
 * packed batches (cu_seqlens), state pools (ssm_state_indices, 1-D and 2-D) and speculative decoding
 * (num_accepted_tokens) run in the EP's aclnn path and match each sequence run alone through the EP's plain path.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { onnx } from "../src/ir/onnx.js";
import { TOLERANCE } from "../src/numeric.js";
import { oneNodeModel, type TensorSpec } from "../src/ops-model.js";
import { ascendStats } from "../src/runtime/index.js";
import { runtimeLoadError } from "./helpers/cases.js";
import { useAscendDevice } from "./helpers/ascend.js";
import { relativeL2 } from "./helpers/tensor-io.js";

const skip = runtimeLoadError();
useAscendDevice();
afterAll(async () => {
  for (const s of plainSessions.values()) await (await s).release();
});

type Op = "ChunkGatedDeltaRule" | "RecurrentGatedDeltaRule";
type Layout = "kv" | "vk";
const Hk = 2,
  Hv = 4,
  K = 16,
  V = 8;
const STATE = Hv * K * V; // floats per state slot
const I64 = onnx.TensorProto.DataType.INT64,
  I32 = onnx.TensorProto.DataType.INT32;

function attributes(layout: Layout): onnx.IAttributeProto[] {
  return [
    { name: "use_qk_l2norm", type: onnx.AttributeProto.AttributeType.INT, i: 1 },
    { name: "state_layout", type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(layout) },
  ];
}

const stateDims = (rows: number, layout: Layout) => (layout === "kv" ? [rows, Hv, K, V] : [rows, Hv, V, K]);

/** The token inputs of a [B,T] call. */
function tokenSpecs(B: number, T: number): TensorSpec[] {
  return [
    { name: "query", dims: [B, T, Hk, K] },
    { name: "key", dims: [B, T, Hk, K] },
    { name: "value", dims: [B, T, Hv, V] },
    { name: "g", dims: [B, T, Hv] },
    { name: "beta", dims: [B, T, Hv] },
  ];
}

function file(bytes: Uint8Array): string {
  const path = join(mkdtempSync(join(tmpdir(), "gdn-ascend-serving-")), "model.onnx");
  writeFileSync(path, bytes);
  return path;
}

async function ascendSession(path: string): Promise<ort.InferenceSession> {
  const ep = { name: "ascend", deviceId: 0 } as unknown as string;
  return ort.InferenceSession.create(path, { executionProviders: [ep], intraOpNumThreads: 2 });
}

// ------------------------------------------------------------------------------------------------ serving calls

interface Serving {
  op: Op;
  layout: Layout;
  /** tokens of each sequence (packed with cu_seqlens) */
  lengths: number[];
  /** state pool slots; absent: one state per sequence */
  slots?: number;
  /** [N] or [N][Tmax] */
  indices?: number[] | number[][];
  accepted?: number[];
  indexType?: number;
  /** gdn opset of the model (default 2) */
  opset?: number;
}

function servingModel(c: Serving): Uint8Array {
  const T = c.lengths.reduce((a, b) => a + b, 0),
    N = c.lengths.length;
  const rows = c.slots ?? N;
  const idx = c.indices;
  const inputs: TensorSpec[] = [
    ...tokenSpecs(1, T),
    { name: "initial_state", dims: stateDims(rows, c.layout) },
    { name: "cu_seqlens", elemType: I64, dims: [N + 1] },
  ];
  if (idx) {
    const dims = Array.isArray(idx[0]) ? [N, (idx[0] as number[]).length] : [N];
    inputs.push({ name: "ssm_state_indices", elemType: c.indexType ?? I32, dims });
  }
  if (c.accepted) inputs.push({ name: "num_accepted_tokens", elemType: c.indexType ?? I32, dims: [N] });
  return oneNodeModel({
    opType: c.op,
    nodeName: "core",
    inputs,
    outputs: [
      { name: "output", dims: [1, T, Hv, V] },
      { name: "final_state", dims: stateDims(rows, c.layout) },
    ],
    attributes: attributes(c.layout),
    gdnOpset: c.opset ?? 2,
  });
}

/** Deterministic pseudo-random floats in [lo, hi). */
function rand(n: number, seed: number, lo: number, hi: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + ((s >>> 8) / 2 ** 24) * (hi - lo);
  });
}

interface Tokens {
  query: Float32Array;
  key: Float32Array;
  value: Float32Array;
  g: Float32Array;
  beta: Float32Array;
}

function tokens(T: number, seed: number): Tokens {
  return {
    query: rand(T * Hk * K, seed + 1, -1, 1),
    key: rand(T * Hk * K, seed + 2, -1, 1),
    value: rand(T * Hv * V, seed + 3, -1, 1),
    g: rand(T * Hv, seed + 4, -1, 0),
    beta: rand(T * Hv, seed + 5, 0.05, 0.95),
  };
}

/** Tokens [t0, t0 + n) of a packed call, as a [1,n] call's feeds. */
function tokenFeeds(x: Tokens, t0: number, n: number): Record<string, ort.Tensor> {
  const part = (a: Float32Array, per: number, dims: number[]) =>
    new ort.Tensor("float32", a.slice(t0 * per, (t0 + n) * per), [1, n, ...dims]);
  return {
    query: part(x.query, Hk * K, [Hk, K]),
    key: part(x.key, Hk * K, [Hk, K]),
    value: part(x.value, Hv * V, [Hv, V]),
    g: part(x.g, Hv, [Hv]),
    beta: part(x.beta, Hv, [Hv]),
  };
}

function indexTensor(values: number[], dims: number[], type: number | undefined): ort.Tensor {
  return type === I64
    ? new ort.Tensor("int64", BigInt64Array.from(values.map(BigInt)), dims)
    : new ort.Tensor("int32", Int32Array.from(values), dims);
}

interface Result {
  output: Float32Array;
  pool: Float32Array;
}

async function runServing(c: Serving, x: Tokens, pool: Float32Array): Promise<Result> {
  const session = await ascendSession(file(servingModel(c)));
  try {
    const T = c.lengths.reduce((a, b) => a + b, 0),
      N = c.lengths.length;
    const cu = [0];
    for (const l of c.lengths) cu.push(cu.at(-1)! + l);
    const feeds: Record<string, ort.Tensor> = {
      ...tokenFeeds(x, 0, T),
      initial_state: new ort.Tensor("float32", pool.slice(), stateDims(pool.length / STATE, c.layout)),
      cu_seqlens: indexTensor(cu, [N + 1], I64),
    };
    if (c.indices) {
      const twoD = Array.isArray(c.indices[0]);
      const flat = (c.indices as (number | number[])[]).flat();
      feeds.ssm_state_indices = indexTensor(flat, twoD ? [N, flat.length / N] : [N], c.indexType);
    }
    if (c.accepted) feeds.num_accepted_tokens = indexTensor(c.accepted, [N], c.indexType);
    const out = await session.run(feeds);
    expect(ascendStats(session).nodesOnDevice).toEqual({ [`gdn.${c.op}`]: 1 });
    return { output: out.output!.data as Float32Array, pool: out.final_state!.data as Float32Array };
  } finally {
    await session.release();
  }
}

// --------------------------------------------------------------------------- each sequence alone, plain path

const plainSessions = new Map<string, Promise<ort.InferenceSession>>();

/** An opset-1 [1,T] model: the EP's plain path (no serving inputs). */
function plainSession(op: Op, layout: Layout, T: number): Promise<ort.InferenceSession> {
  const key = `${op}/${layout}/${T}`;
  let s = plainSessions.get(key);
  if (!s) {
    const bytes = oneNodeModel({
      opType: op,
      inputs: [...tokenSpecs(1, T), { name: "initial_state", dims: stateDims(1, layout) }],
      outputs: [
        { name: "output", dims: [1, T, Hv, V] },
        { name: "final_state", dims: stateDims(1, layout) },
      ],
      attributes: attributes(layout),
    });
    s = ascendSession(file(bytes));
    plainSessions.set(key, s);
  }
  return s;
}

async function runAlone(op: Op, layout: Layout, x: Tokens, t0: number, n: number, state: Float32Array) {
  const session = await plainSession(op, layout, n);
  const initial_state = new ort.Tensor("float32", state, stateDims(1, layout));
  const out = await session.run({ ...tokenFeeds(x, t0, n), initial_state });
  return { output: out.output!.data as Float32Array, state: out.final_state!.data as Float32Array };
}

const slot = (pool: Float32Array, s: number) => pool.slice(s * STATE, (s + 1) * STATE);

/**
 * What the serving call must compute, from each sequence run alone through the plain path: 1-D indices (or none)
 * run the sequence in one plain call; with 2-D indices the state after token t (to slot idx[n,t]) is that of a
 * plain call over its first t+1 tokens.
 */
async function expected(c: Serving, x: Tokens, pool: Float32Array): Promise<Result> {
  const output = new Float32Array(x.value.length);
  const after = pool.slice();
  let t0 = 0;
  for (let n = 0; n < c.lengths.length; n++) {
    const len = c.lengths[n]!;
    const row = c.indices?.[n];
    if (len > 0 && Array.isArray(row)) {
      // The state after token t: the sequence's first t+1 tokens run alone.
      const start = slot(pool, row[(c.accepted?.[n] ?? 1) - 1]!);
      for (let t = 0; t < len; t++) {
        const r = await runAlone(c.op, c.layout, x, t0, t + 1, start);
        if (t === len - 1) output.set(r.output, t0 * Hv * V);
        after.set(r.state, row[t]! * STATE);
      }
    } else if (len > 0) {
      const s = (row as number | undefined) ?? n;
      const r = await runAlone(c.op, c.layout, x, t0, len, slot(pool, s));
      output.set(r.output, t0 * Hv * V);
      after.set(r.state, s * STATE);
    }
    t0 += len;
  }
  return { output, pool: after };
}

/** Slots no sequence writes: unchanged, bit for bit. */
function untouched(c: Serving, rows: number): number[] {
  const written = new Set<number>();
  c.lengths.forEach((len, n) => {
    const row = c.indices?.[n];
    if (len === 0) return;
    if (Array.isArray(row)) row.slice(0, len).forEach((s) => written.add(s));
    else written.add((row as number | undefined) ?? n);
  });
  return [...Array(rows).keys()].filter((s) => !written.has(s));
}

async function check(c: Serving, seed: number): Promise<void> {
  const T = c.lengths.reduce((a, b) => a + b, 0);
  const rows = c.slots ?? c.lengths.length;
  const x = tokens(T, seed);
  const pool = rand(rows * STATE, seed + 9, -0.5, 0.5);
  const got = await runServing(c, x, pool);
  const want = await expected(c, x, pool);
  if (T > 0) expect(relativeL2(got.output, want.output)).toBeLessThan(TOLERANCE.bfloat16!);
  expect(relativeL2(got.pool, want.pool)).toBeLessThan(TOLERANCE.bfloat16!);
  for (const s of untouched(c, rows)) expect(slot(got.pool, s)).toEqual(slot(pool, s));
}

// ------------------------------------------------------------------------------------------------------- tests

describe.skipIf(skip !== undefined)("ascend serving inputs (gdn opset 2) on the CANN simulator", () => {
  for (const layout of ["kv", "vk"] as const) {
    it(`chunk, ${layout}: packed uneven lengths with 0 and 1, one state per sequence`, async () => {
      await check({ op: "ChunkGatedDeltaRule", layout, lengths: [5, 0, 1, 19, 7] }, 10);
    });

    it(`chunk, ${layout}: a pool with unused slots, 1-D indices, int64`, async () => {
      const c: Serving = { op: "ChunkGatedDeltaRule", layout, lengths: [3, 0, 17, 1], slots: 8, indices: [6, 2, 0, 5] };
      await check({ ...c, indexType: I64 }, 20);
    });

    it(`recurrent, ${layout}: packed lengths 1, 12 (two calls of <= 8 tokens), 0 and 3 over a pool`, async () => {
      const indices = [4, 0, 5, 2];
      await check({ op: "RecurrentGatedDeltaRule", layout, lengths: [1, 12, 0, 3], slots: 6, indices }, 30);
    });

    it(`recurrent, ${layout}: spec decode, 1..8 tokens with 2-D indices and several acceptance counts`, async () => {
      const lengths = [1, 4, 8, 3, 2];
      const indices = lengths.map((_, n) => Array.from({ length: 8 }, (_, t) => n * 8 + t));
      for (const accepted of [
        [1, 1, 1, 1, 1],
        [8, 3, 8, 2, 5],
        [4, 4, 2, 3, 1],
      ]) {
        const c: Serving = { op: "RecurrentGatedDeltaRule", layout, lengths, slots: 44, indices, accepted };
        await check(c, 40 + accepted[1]!);
      }
    });
  }

  it("recurrent: 2-D indices without num_accepted_tokens start from the first column", async () => {
    const indices = [
      [3, 1, 7],
      [0, 2, 4],
    ];
    await check({ op: "RecurrentGatedDeltaRule", layout: "kv", lengths: [3, 2], slots: 9, indices }, 50);
  });

  it("recurrent: 12 tokens with 2-D indices run in two calls, the second continuing from token 7's slot", async () => {
    const indices = [Array.from({ length: 12 }, (_, t) => 20 - t), [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0]];
    const c: Serving = { op: "RecurrentGatedDeltaRule", layout: "vk", lengths: [12, 2], slots: 21, indices };
    await check({ ...c, accepted: [2, 2] }, 60);
  });

  it("a decode loop over a pool: sequences join and leave, slots are reused", async () => {
    const op = "RecurrentGatedDeltaRule",
      layout = "kv",
      slots = 4;
    let pool: Float32Array = rand(slots * STATE, 70, -0.5, 0.5);
    let reference: Float32Array = pool.slice();
    const steps: Serving[] = [
      { op, layout, lengths: [1, 1], slots, indices: [0, 2] },
      { op, layout, lengths: [1, 1, 1], slots, indices: [0, 2, 3] }, // a sequence joins in slot 3
      { op, layout, lengths: [1, 0, 1], slots, indices: [3, 1, 2] }, // slot 0 leaves; length 0 leaves slot 1 alone
      { op, layout, lengths: [1], slots, indices: [0] }, // a new sequence reuses slot 0 (its state as left)
    ];
    for (const [i, step] of steps.entries()) {
      const x = tokens(
        step.lengths.reduce((a, b) => a + b, 0),
        80 + i,
      );
      pool = (await runServing(step, x, pool)).pool;
      reference = (await expected(step, x, reference)).pool;
      expect(relativeL2(pool, reference)).toBeLessThan(TOLERANCE.bfloat16!);
    }
  });

  it("serving inputs in a gdn opset-1 model stay on the CPU, with the reason", async () => {
    const c: Serving = { op: "ChunkGatedDeltaRule", layout: "kv", lengths: [2, 3], opset: 1 };
    const session = await ascendSession(file(servingModel(c)));
    try {
      const stats = ascendStats(session);
      expect(stats.nodesOnDevice).toEqual({});
      expect(stats.fallbackReasons).toEqual([
        "gdn.ChunkGatedDeltaRule node 'core': input cu_seqlens is reserved in gdn opset 1",
      ]);
    } finally {
      await session.release();
    }
  });

  it.each([
    [[0, 3, 2], undefined, "cu_seqlens must be non-decreasing, got cu_seqlens[2] = 2 after cu_seqlens[1] = 3"],
    [[0, 2, 4], undefined, "cu_seqlens must end at T = 5, got cu_seqlens[2] = 4"],
    [[1, 2, 5], undefined, "cu_seqlens[0] must be 0, got 1"],
    [[0, 2, 5], [1, 4], "ssm_state_indices[1] = 4 is out of range for a pool of 4 slots"],
    [[0, 2, 5], [3, 3], "ssm_state_indices writes slot 3 twice in one call (sequences 0 and 1)"],
    [[0, 2, 5], [-1, 0], "ssm_state_indices[0] = -1 is out of range for a pool of 4 slots"],
  ])("bad serving input cu_seqlens %j, indices %j: %s", async (cu, indices, message) => {
    const pool = indices ? { slots: 4, indices } : {};
    const c: Serving = { op: "RecurrentGatedDeltaRule", layout: "kv", lengths: [2, 3], ...pool };
    const session = await ascendSession(file(servingModel(c)));
    try {
      const x = tokens(5, 90);
      const rows = indices ? 4 : 2;
      const feeds: Record<string, ort.Tensor> = {
        ...tokenFeeds(x, 0, 5),
        initial_state: new ort.Tensor("float32", new Float32Array(rows * STATE), stateDims(rows, "kv")),
        cu_seqlens: indexTensor(cu, [3], I64),
        ...(indices ? { ssm_state_indices: indexTensor(indices, [2], I32) } : {}),
      };
      await expect(session.run(feeds)).rejects.toThrow(`RecurrentGatedDeltaRule on Ascend: ${message}`);
    } finally {
      await session.release();
    }
  });

  it("spec decode: num_accepted_tokens out of range and a start slot another sequence writes are refused", async () => {
    const indices = [
      [0, 1, 2],
      [3, 4, 5],
    ];
    const base: Serving = { op: "RecurrentGatedDeltaRule", layout: "kv", lengths: [2, 1], slots: 6, indices };
    const range = (n: number, a: number) =>
      `num_accepted_tokens[${n}] = ${a} is out of range 1..3 (the columns of ssm_state_indices)`;
    const cases: [number[][], number[], string][] = [
      [indices, [0, 1], range(0, 0)],
      [indices, [1, 4], range(1, 4)],
      [
        [
          [0, 1, 2],
          [3, 0, 5],
        ],
        [1, 2],
        "sequence 1 starts from slot 0, which sequence 0 writes in the same call",
      ],
      [
        [
          [0, 1, 2],
          [1, 4, 5],
        ],
        [1, 1],
        "ssm_state_indices writes slot 1 twice in one call (sequence 0 token 1 and sequence 1 token 0)",
      ],
    ];
    const session = await ascendSession(file(servingModel({ ...base, accepted: [1, 1] })));
    try {
      for (const [indices, accepted, message] of cases) {
        const feeds: Record<string, ort.Tensor> = {
          ...tokenFeeds(tokens(3, 91), 0, 3),
          initial_state: new ort.Tensor("float32", new Float32Array(6 * STATE), stateDims(6, "kv")),
          cu_seqlens: indexTensor([0, 2, 3], [3], I64),
          ssm_state_indices: indexTensor(indices.flat(), [2, 3], I32),
          num_accepted_tokens: indexTensor(accepted, [2], I32),
        };
        await expect(session.run(feeds)).rejects.toThrow(`RecurrentGatedDeltaRule on Ascend: ${message}`);
      }
    } finally {
      await session.release();
    }
  });
});

describe.skipIf(skip !== undefined)("CausalConv1d in gdn opset 2 on the ascend backend", () => {
  const C = 3,
    W = 4,
    S = 3,
    T = 5;
  const convModel = (serving: boolean) =>
    oneNodeModel({
      opType: "CausalConv1d",
      nodeName: "conv",
      inputs: [
        { name: "x", dims: [1, C, T] },
        { name: "weight", dims: [C, 1, W] },
        { name: "bias", dims: [C] },
        { name: "conv_state", dims: [serving ? 4 : 1, C, S] },
        ...(serving
          ? [
              { name: "cu_seqlens", elemType: I64, dims: [3] },
              { name: "conv_state_indices", elemType: I64, dims: [2] },
            ]
          : []),
      ],
      outputs: [
        { name: "y", dims: [1, C, T] },
        { name: "conv_state_out", dims: [serving ? 4 : 1, C, S] },
      ],
      gdnOpset: 2,
    });
  const feeds = (serving: boolean): Record<string, ort.Tensor> => ({
    x: new ort.Tensor("float32", rand(C * T, 5, -1, 1), [1, C, T]),
    weight: new ort.Tensor("float32", rand(C * W, 6, -1, 1), [C, 1, W]),
    bias: new ort.Tensor("float32", rand(C, 7, -1, 1), [C]),
    conv_state: new ort.Tensor("float32", rand((serving ? 4 : 1) * C * S, 8, -1, 1), [serving ? 4 : 1, C, S]),
    ...(serving
      ? { cu_seqlens: indexTensor([0, 2, 5], [3], I64), conv_state_indices: indexTensor([3, 1], [2], I64) }
      : {}),
  });

  it.each([false, true])(
    "serving inputs %s: on the device only without them; the gdn backend's numbers",
    async (serving) => {
      const path = file(convModel(serving));
      const device = await ascendSession(path);
      const cpu = await ort.InferenceSession.create(path, { executionProviders: ["gdn"] });
      try {
        const [got, want] = [await device.run(feeds(serving)), await cpu.run(feeds(serving))];
        const stats = ascendStats(device);
        if (serving) {
          expect(stats.nodesOnCpu).toEqual({ "gdn.CausalConv1d": 1 });
          expect(stats.fallbackReasons).toEqual([
            "gdn.CausalConv1d node 'conv': serving input cu_seqlens has no Ascend kernel yet",
          ]);
          expect(got.y!.data).toEqual(want.y!.data); // the CPU kernels ran it
          expect(got.conv_state_out!.data).toEqual(want.conv_state_out!.data);
        } else {
          expect(stats.nodesOnDevice).toEqual({ "gdn.CausalConv1d": 1 });
          expect(relativeL2(got.y!, want.y!)).toBeLessThan(TOLERANCE.bfloat16!);
        }
      } finally {
        await Promise.all([device.release(), cpu.release()]);
      }
    },
  );
});
