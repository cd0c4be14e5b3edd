/**
 * The gated-delta kernels through the whole stack (gdn runtime -> ORT -> op library) against the
 * float64 reference on random inputs, over the grid the contract promises: T in {1,2,63,64,65,200},
 * B in {1,3}, GQA (Hv = 2 Hk), K != V, a nonzero initial state, both state layouts, decays near 0 and
 * <= -20, float32 and float16. Also runs the native float64 test program (native/test).
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { attr } from "../src/ir/graph.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { oneNodeModel } from "../src/ops-model.js";
import { float16ToFloat32, float32ToFloat16 } from "../src/ir/tensor.js";
import { TOLERANCE, relativeL2, seededRandom } from "../src/numeric.js";
import { gatedDeltaReference, type GatedDeltaDims } from "../src/reference/gated-delta.js";
import "../src/runtime/index.js";
import { ROOT } from "./helpers/cases.js";

type Layout = "kv" | "vk";
interface Case {
  op: "ChunkGatedDeltaRule" | "RecurrentGatedDeltaRule";
  dims: GatedDeltaDims;
  layout: Layout;
  dtype: "float32" | "float16";
  decay: "near0" | "strong";
  l2: boolean;
}

const ELEM = { float32: 1, float16: 10 } as const;

function model(c: Case): Uint8Array {
  const { B, T, Hk, Hv, K, V } = c.dims;
  const st = c.layout === "kv" ? [B, Hv, K, V] : [B, Hv, V, K];
  const e = ELEM[c.dtype];
  return oneNodeModel({
    opType: c.op,
    gdnOpset: 1,
    inputs: [
      { name: "q", elemType: e, dims: [B, T, Hk, K] },
      { name: "k", elemType: e, dims: [B, T, Hk, K] },
      { name: "v", elemType: e, dims: [B, T, Hv, V] },
      { name: "g", dims: [B, T, Hv] },
      { name: "beta", elemType: e, dims: [B, T, Hv] },
      { name: "s0", dims: st },
    ],
    outputs: [
      { name: "o", elemType: e, dims: [B, T, Hv, V] },
      { name: "s1", dims: st },
    ],
    attributes: [attr.int("use_qk_l2norm", c.l2 ? 1 : 0), attr.string("state_layout", c.layout)],
  });
}

/** inPlace: o and s1 are fetched into preallocated Tensors, s1 into the very Tensor fed as s0 (a decode loop's state). */
async function runCase(c: Case, inPlace = false): Promise<{ out: number; state: number }> {
  const { B, T, Hk, Hv, K, V } = c.dims;
  const rand = seededRandom(T * 1000 + B * 10 + (c.layout === "vk" ? 1 : 0));
  const sym = (n: number, s: number) => Float64Array.from({ length: n }, () => (2 * rand() - 1) * s);
  const kScale = c.l2 ? 1 : 1 / Math.sqrt(K);
  const round = (a: Float64Array) =>
    c.dtype === "float16" ? a.map((x) => float16ToFloat32(float32ToFloat16(x))) : a.map(Math.fround);
  const q = round(sym(B * T * Hk * K, 1)),
    k = round(sym(B * T * Hk * K, kScale)),
    v = round(sym(B * T * Hv * V, 1));
  const g = Float64Array.from({ length: B * T * Hv }, () =>
    Math.fround(c.decay === "near0" ? -0.01 * rand() : -20 - 10 * rand()),
  );
  const beta = round(Float64Array.from({ length: B * T * Hv }, () => 0.05 + 0.9 * rand()));
  const s0 = sym(B * Hv * K * V, 0.1).map(Math.fround);
  const ref = gatedDeltaReference({ query: q, key: k, value: v, g, beta, initialState: s0 }, c.dims, {
    useQkL2norm: c.l2,
    stateLayout: c.layout,
  });
  const t = (a: Float64Array, dims: number[], type = c.dtype) =>
    type === "float16"
      ? new ort.Tensor("float16", Uint16Array.from(a, float32ToFloat16), dims)
      : new ort.Tensor("float32", Float32Array.from(a), dims);
  const st = c.layout === "kv" ? [B, Hv, K, V] : [B, Hv, V, K];
  const session = await ort.InferenceSession.create(model(c), { executionProviders: ["gdn"], intraOpNumThreads: 2 });
  try {
    const feeds = {
      q: t(q, [B, T, Hk, K]),
      k: t(k, [B, T, Hk, K]),
      v: t(v, [B, T, Hv, V]),
      g: t(g, [B, T, Hv], "float32"),
      beta: t(beta, [B, T, Hv]),
      s0: t(s0, st, "float32"),
    };
    const fetches = inPlace ? { o: t(new Float64Array(B * T * Hv * V), [B, T, Hv, V]), s1: feeds.s0 } : undefined;
    const r = fetches ? await session.run(feeds, fetches) : await session.run(feeds);
    if (fetches) {
      expect(r.s1).toBe(feeds.s0);
      expect(r.o).toBe(fetches.o);
    }
    const o = r.o!.data as Float32Array | Uint16Array;
    const out =
      c.dtype === "float16"
        ? Float64Array.from(o as Uint16Array, float16ToFloat32)
        : Float64Array.from(o as Float32Array);
    return {
      out: relativeL2(out, ref.output),
      state: relativeL2(Float64Array.from(r.s1!.data as Float32Array), ref.finalState),
    };
  } finally {
    await session.release();
  }
}

const GRID: Case[] = [];
for (const op of ["ChunkGatedDeltaRule", "RecurrentGatedDeltaRule"] as const)
  for (const T of [1, 2, 63, 64, 65, 200])
    for (const B of [1, 3]) {
      const layout: Layout = (T + B) % 2 === 0 ? "kv" : "vk";
      GRID.push({
        op,
        dims: { B, T, Hk: 2, Hv: 4, K: 32, V: 48 },
        layout,
        dtype: "float32",
        decay: T % 3 === 0 ? "strong" : "near0",
        l2: B === 1,
      });
    }
for (const op of ["ChunkGatedDeltaRule", "RecurrentGatedDeltaRule"] as const)
  for (const layout of ["kv", "vk"] as const)
    GRID.push({
      op,
      dims: { B: 2, T: 65, Hk: 2, Hv: 4, K: 32, V: 48 },
      layout,
      dtype: "float16",
      decay: "near0",
      l2: true,
    });

describe("gated-delta kernels through the gdn runtime vs the float64 reference", () => {
  it.each(
    GRID.map((c) => [`${c.op} B=${c.dims.B} T=${c.dims.T} ${c.layout} ${c.dtype} g ${c.decay} l2=${c.l2}`, c] as const),
  )("%s", async (_, c) => {
    const { out, state } = await runCase(c);
    expect(out).toBeLessThanOrEqual(TOLERANCE[c.dtype]);
    expect(state).toBeLessThanOrEqual(TOLERANCE[c.dtype]);
  });
});

describe("final_state written into the Tensor fed as initial_state (in place), preallocated output", () => {
  // Hv = 8 over Hk = 2 and B = 3: several work items (head groups) read and write the one state buffer.
  const cases: Case[] = [];
  for (const op of ["ChunkGatedDeltaRule", "RecurrentGatedDeltaRule"] as const)
    for (const layout of ["kv", "vk"] as const)
      cases.push({
        op,
        dims: { B: 3, T: op === "ChunkGatedDeltaRule" ? 65 : 2, Hk: 2, Hv: 8, K: 32, V: 48 },
        layout,
        dtype: "float32",
        decay: "near0",
        l2: true,
      });
  it.each(cases.map((c) => [`${c.op} ${c.layout}`, c] as const))("%s", async (_, c) => {
    const { out, state } = await runCase(c, true);
    expect(out).toBeLessThanOrEqual(TOLERANCE.float32);
    expect(state).toBeLessThanOrEqual(TOLERANCE.float32);
  });
});

describe("native kernel test program", () => {
  // Under npm run test:sanitize the script has already run these checks with the sanitizers (make ... asan).
  it.skipIf(process.env.GDN_FUSE_SANITIZE === "1")(
    "passes every float64 check (make -C native/test run)",
    async () => {
      // Asynchronous: the build and the runs take a minute on 2 cores, and a blocked worker misses vitest's RPC deadline.
      const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          "make",
          ["-s", "-C", join(ROOT, "native", "test"), "run"],
          { encoding: "utf8", timeout: 600_000, maxBuffer: 64 << 20 },
          (err, stdout, stderr) =>
            resolve({ status: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
        );
      });
      expect(r.status, r.stderr + r.stdout.slice(-2000)).toBe(0);
      const lines = r.stdout.split("\n").filter((l) => /^\d+ passed, \d+ failed$/.test(l.trim()));
      expect(lines.length).toBeGreaterThanOrEqual(1);
      for (const l of lines) expect(l.trim()).toMatch(/^\d+ passed, 0 failed$/);
    },
    600_000,
  );
});

describe("gated-delta kernels reject bad input with a clear error", () => {
  const dims = { B: 1, T: 3, Hk: 2, Hv: 4, K: 8, V: 8 };
  const base: Case = { op: "RecurrentGatedDeltaRule", dims, layout: "kv", dtype: "float32", decay: "near0", l2: false };
  const f32 = (shape: number[]) => new ort.Tensor("float32", new Float32Array(shape.reduce((a, b) => a * b, 1)), shape);
  async function runWith(feeds: Record<string, ort.Tensor>, bytes = model(base)) {
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["gdn"] });
    try {
      return await session.run(feeds);
    } finally {
      await session.release();
    }
  }
  const good = () => ({
    q: f32([1, 3, 2, 8]),
    k: f32([1, 3, 2, 8]),
    v: f32([1, 3, 4, 8]),
    g: f32([1, 3, 4]),
    beta: f32([1, 3, 4]),
    s0: f32([1, 4, 8, 8]),
  });
  const noShapes = (bytes: Uint8Array) => {
    // the same one-node model with free dims, so ORT's own shape check does not answer first
    const m = onnx.ModelProto.decode(bytes);
    for (const v of [...m.graph!.input!, ...m.graph!.output!]) v.type!.tensorType!.shape = null;
    return encodeMessage(onnx.ModelProto, m);
  };

  it("value heads not a multiple of key heads", async () => {
    const feeds = { ...good(), v: f32([1, 3, 3, 8]), g: f32([1, 3, 3]), beta: f32([1, 3, 3]), s0: f32([1, 3, 8, 8]) };
    await expect(runWith(feeds, noShapes(model(base)))).rejects.toThrow(
      "RecurrentGatedDeltaRule: value has 3 heads, which is not a multiple of the 2 key heads",
    );
  });
  it("wrong rank", async () => {
    await expect(runWith({ ...good(), q: f32([3, 2, 8]) }, noShapes(model(base)))).rejects.toThrow(
      "RecurrentGatedDeltaRule: query must have rank 4",
    );
  });
  it("mismatched state shape", async () => {
    await expect(runWith({ ...good(), s0: f32([1, 4, 8, 9]) }, noShapes(model(base)))).rejects.toThrow(
      "RecurrentGatedDeltaRule: initial_state has shape [1,4,8,9], expected [1,4,8,8]",
    );
  });
  it("wrong element type", async () => {
    await expect(runWith({ ...good(), g: new ort.Tensor("float16", new Uint16Array(12), [1, 3, 4]) })).rejects.toThrow(
      "input 'g' has type 'float16', but the model declares 'float32'",
    );
  });
  it("missing required input", async () => {
    const feeds: Record<string, ort.Tensor> = good();
    delete feeds.k;
    await expect(runWith(feeds)).rejects.toThrow(/k/);
  });
});
