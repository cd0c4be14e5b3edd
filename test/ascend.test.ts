/**
 * The `ascend` backend over the gdn-fuse CANN simulator (GDN_FUSE_ASCEND=sim): the fused core fixtures run
 * their delta-rule ops in the Ascend plugin EP (aclnn gated-delta ops, bf16 on the device) and match their
 * test data within bf16 tolerances; placement, fallback and the failure modes are reported as documented.
 * `npm run test:ascend` runs the same file against real CANN (docs/ascend.md).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import * as ort from "onnxruntime-node";
import { afterEach, describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { attr } from "../src/ir/graph.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { oneNodeModel } from "../src/ops-model.js";
import {
  ascendEpLibraryPath,
  ascendSimCounters,
  ascendStats,
  type AscendStats,
  type AscendTestFault,
} from "../src/runtime/index.js";
import { CORE_PASSES, fixtureCases, fuseCase, MODELS, runtimeLoadError, TOLERANCE } from "./helpers/cases.js";
import { readDataSet, relativeL2, toOrtTensor } from "./helpers/tensor-io.js";
import { REAL_ASCEND, useAscendDevice } from "./helpers/ascend.js";

const REAL = REAL_ASCEND;
const skip = runtimeLoadError();
useAscendDevice();

// bf16 on the device (inputs, outputs and the state are rounded to 8 mantissa bits; accumulation in float32).
const BF16_TOLERANCE = TOLERANCE.bfloat16;
const CORES = fixtureCases().filter((c) => c.startsWith("chunk_") || c.startsWith("recurrent_"));

/** The case's test_data_set_0 input or output tensors, in order. */
const dataSet = (name: string, prefix: "input" | "output") =>
  readDataSet(join(MODELS, name, "test_data_set_0"), prefix);

async function fusedFile(name: string): Promise<string> {
  const { model } = await fuseCase(name, { passes: CORE_PASSES });
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-")), "model.onnx");
  writeFileSync(file, encodeMessage(onnx.ModelProto, model.proto as onnx.ModelProto));
  return file;
}

async function ascendSession(file: string, testFault?: AscendTestFault, strict = false): Promise<ort.InferenceSession> {
  const ep = { name: "ascend", deviceId: 0, strict, ...(testFault ? { testFault } : {}) };
  return ort.InferenceSession.create(file, { executionProviders: [ep as unknown as string], intraOpNumThreads: 2 });
}

/** Runs the case on the session; relative L2 error of each output against the case's test data. */
async function errors(session: ort.InferenceSession, name: string): Promise<number[]> {
  const feeds: Record<string, ort.Tensor> = {};
  const inputs = dataSet(name, "input");
  session.inputNames.forEach((n, i) => (feeds[n] = toOrtTensor(inputs[i]!)));
  const out = await session.run(feeds);
  return dataSet(name, "output").map((want, i) => {
    const got = out[session.outputNames[i]!]!;
    return relativeL2(want.type === "bfloat16" ? { type: "bfloat16", data: got.data } : got, want);
  });
}

describe.skipIf(skip !== undefined)("ascend backend on the CANN simulator", () => {
  it.each(CORES)("%s: the delta-rule op runs on the device and matches the test data", async (name) => {
    const session = await ascendSession(await fusedFile(name));
    try {
      const before = ascendStats(session);
      const errs = await errors(session, name);
      for (const e of errs) expect(e).toBeLessThan(BF16_TOLERANCE);
      const stats = ascendStats(session);
      const op = name.startsWith("chunk_") ? "gdn.ChunkGatedDeltaRule" : "gdn.RecurrentGatedDeltaRule";
      expect(stats.nodesOnDevice).toEqual({ [op]: 1 });
      expect(stats.fallbackReasons.filter((r) => r.startsWith("gdn."))).toEqual([]);
      expect(stats.copiesH2D).toBeGreaterThan(before.copiesH2D);
      expect(stats.copiesD2H).toBeGreaterThan(before.copiesD2H);
    } finally {
      await session.release();
    }
  });
  // Whole fused layers run entirely on the device: test/ascend-layer.test.ts.
});

// ------------------------------------------------------------------------------------------------------------
// One-node models against a float64 reference: layouts, L2 norm, GQA, recurrent slicing, fallback, faults.

interface Case {
  op: "ChunkGatedDeltaRule" | "RecurrentGatedDeltaRule";
  B: number;
  T: number;
  Hk: number;
  Hv: number;
  K: number;
  V: number;
  l2norm: 0 | 1;
  layout: "kv" | "vk";
  /** false: the final_state output is omitted (empty name) */
  finalState?: boolean;
}

function deltaRuleModel(c: Case): Uint8Array {
  const state = c.layout === "kv" ? [c.B, c.Hv, c.K, c.V] : [c.B, c.Hv, c.V, c.K];
  const [qk, v, gb] = [
    [c.B, c.T, c.Hk, c.K],
    [c.B, c.T, c.Hv, c.V],
    [c.B, c.T, c.Hv],
  ];
  return oneNodeModel({
    opType: c.op,
    nodeName: "core",
    gdnOpset: 1,
    inputs: [
      { name: "query", dims: qk },
      { name: "key", dims: qk },
      { name: "value", dims: v },
      { name: "g", dims: gb },
      { name: "beta", dims: gb },
      { name: "initial_state", dims: state },
    ],
    // "": an omitted optional output
    outputs: [
      { name: "output", dims: v },
      { name: c.finalState === false ? "" : "final_state", dims: state },
    ],
    attributes: [attr.int("use_qk_l2norm", c.l2norm), attr.string("state_layout", c.layout)],
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

function inputs(c: Case): Record<string, Float32Array> {
  const { B, T, Hk, Hv, K, V } = c;
  const qkRange = c.l2norm ? 1 : 1 / Math.sqrt(K); // without the op's L2 norm, keep |k| <= 1 as the device requires
  return {
    query: rand(B * T * Hk * K, 1, -qkRange, qkRange),
    key: rand(B * T * Hk * K, 2, -qkRange, qkRange),
    value: rand(B * T * Hv * V, 3, -1, 1),
    g: rand(B * T * Hv, 4, -1, 0),
    beta: rand(B * T * Hv, 5, 0.05, 0.95),
    initial_state: rand(B * Hv * K * V, 6, -0.5, 0.5),
  };
}

/** docs/ops.md's recurrence in float64; state in the case's layout. */
function reference(c: Case, x: Record<string, Float32Array>): { output: Float64Array; final_state: Float64Array } {
  const { B, T, Hk, Hv, K, V } = c;
  const output = new Float64Array(B * T * Hv * V);
  const final_state = new Float64Array(B * Hv * K * V);
  const sIdx = (b: number, h: number, i: number, j: number) =>
    // i over K, j over V
    c.layout === "kv" ? ((b * Hv + h) * K + i) * V + j : ((b * Hv + h) * V + j) * K + i;
  const norm = (v: number[]) => {
    if (!c.l2norm) return v;
    const r = 1 / Math.sqrt(v.reduce((a, e) => a + e * e, 0) + 1e-6);
    return v.map((e) => e * r);
  };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hv; h++) {
      const hk = Math.floor(h / (Hv / Hk));
      const S = Array.from({ length: K }, (_, i) =>
        Array.from({ length: V }, (_, j) => x.initial_state![sIdx(b, h, i, j)]!),
      );
      for (let t = 0; t < T; t++) {
        const row = (name: string, H: number, D: number, hh: number) =>
          Array.from(x[name]!.subarray(((b * T + t) * H + hh) * D, ((b * T + t) * H + hh + 1) * D));
        const q = norm(row("query", Hk, K, hk)).map((e) => e / Math.sqrt(K));
        const k = norm(row("key", Hk, K, hk));
        const v = row("value", Hv, V, h);
        const a = Math.exp(x.g![(b * T + t) * Hv + h]!);
        const beta = x.beta![(b * T + t) * Hv + h]!;
        for (let j = 0; j < V; j++) {
          let sk = 0;
          for (let i = 0; i < K; i++) sk += a * S[i]![j]! * k[i]!;
          const u = beta * (v[j]! - sk);
          let o = 0;
          for (let i = 0; i < K; i++) {
            S[i]![j] = a * S[i]![j]! + k[i]! * u;
            o += S[i]![j]! * q[i]!;
          }
          output[((b * T + t) * Hv + h) * V + j] = o;
        }
      }
      for (let i = 0; i < K; i++) for (let j = 0; j < V; j++) final_state[sIdx(b, h, i, j)] = S[i]![j]!;
    }
  }
  return { output, final_state };
}

function modelFile(c: Case): string {
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-op-")), "model.onnx");
  writeFileSync(file, deltaRuleModel(c));
  return file;
}

async function runCase(session: ort.InferenceSession, c: Case): Promise<{ output: number; final_state: number }> {
  const x = inputs(c);
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) {
    const dims = (session.inputMetadata.find((m) => m.name === name) as unknown as { shape: number[] }).shape;
    feeds[name] = new ort.Tensor("float32", x[name]!, dims);
  }
  const out = await session.run(feeds);
  const want = reference(c, x);
  return {
    output: relativeL2(out.output!, want.output),
    final_state: out.final_state === undefined ? 0 : relativeL2(out.final_state, want.final_state),
  };
}

const BASE: Case = { op: "RecurrentGatedDeltaRule", B: 2, T: 19, Hk: 2, Hv: 4, K: 16, V: 24, l2norm: 1, layout: "kv" };

describe.skipIf(skip !== undefined)("ascend delta-rule kernels against a float64 reference", () => {
  it.each([
    ["recurrent, T=19 in slices of 8, kv, L2 norm, GQA", BASE],
    ["recurrent, vk, no L2 norm", { ...BASE, T: 5, layout: "vk", l2norm: 0 } as Case],
    ["chunk, T=19, kv, L2 norm, GQA", { ...BASE, op: "ChunkGatedDeltaRule" } as Case],
    ["chunk, vk, no L2 norm, Hk=Hv", { ...BASE, op: "ChunkGatedDeltaRule", Hk: 4, layout: "vk", l2norm: 0 } as Case],
    ["chunk with final_state omitted", { ...BASE, op: "ChunkGatedDeltaRule", finalState: false } as Case],
  ])("%s", async (_, c) => {
    const session = await ascendSession(modelFile(c));
    try {
      const err = await runCase(session, c);
      expect(err.output).toBeLessThan(BF16_TOLERANCE);
      expect(err.final_state).toBeLessThan(BF16_TOLERANCE);
      expect(ascendStats(session).nodesOnDevice).toEqual({ [`gdn.${c.op}`]: 1 });
    } finally {
      await session.release();
    }
  });

  it("a head size beyond aclnnChunkGatedDeltaRule's limit stays on the CPU, with the reason, and computes the CPU result", async () => {
    const c: Case = { ...BASE, op: "ChunkGatedDeltaRule", T: 6, K: 160 };
    const session = await ascendSession(modelFile(c));
    try {
      const stats = ascendStats(session);
      expect(stats.nodesOnDevice).toEqual({});
      expect(stats.nodesOnCpu).toEqual({ "gdn.ChunkGatedDeltaRule": 1 });
      expect(stats.fallbackReasons).toEqual([
        "gdn.ChunkGatedDeltaRule node 'core': head sizes K=160, V=24 exceed aclnnChunkGatedDeltaRule's limit of 128",
      ]);
      const err = await runCase(session, c);
      expect(err.output).toBeLessThan(TOLERANCE.float32); // float32 CPU kernel, not bf16
      expect(err.final_state).toBeLessThan(TOLERANCE.float32);
    } finally {
      await session.release();
    }
  });

  it("a deviceId that is not a non-negative integer is a usage error", async () => {
    const ep = { name: "ascend", deviceId: -1 } as unknown as string;
    await expect(ort.InferenceSession.create(modelFile(BASE), { executionProviders: [ep] })).rejects.toThrow(
      new GdnFuseError("E_USAGE", "ascend deviceId must be a non-negative integer, got -1"),
    );
  });

  it("ascendStats refuses a session of another backend", async () => {
    const session = await ort.InferenceSession.create(modelFile(BASE), { executionProviders: ["gdn"] });
    try {
      expect(() => ascendStats(session)).toThrow(
        new GdnFuseError("E_USAGE", "ascendStats: the session was not created on the ascend backend"),
      );
    } finally {
      await session.release();
    }
  });

  it("strict placement turns a node left on the CPU into a session-creation error naming it and why", async () => {
    const file = modelFile({ ...BASE, op: "ChunkGatedDeltaRule", T: 6, K: 160 });
    await expect(ascendSession(file, undefined, true)).rejects.toThrow(
      new GdnFuseError(
        "E_RUNTIME",
        "cannot create an ascend session: strict placement: gdn.ChunkGatedDeltaRule node 'core': head sizes K=160, V=24 " +
          "exceed aclnnChunkGatedDeltaRule's limit of 128 (it would run on the CPU)",
      ),
    );
    const fits = await ascendSession(modelFile(BASE), undefined, true); // nothing left on the CPU: created
    await fits.release();
  });

  it.skipIf(REAL)("the simulator rejects a host pointer handed to the aclnn op (test fault host_pointer)", async () => {
    const session = await ascendSession(modelFile(BASE), "host_pointer");
    try {
      await expect(runCase(session, BASE)).rejects.toThrow(
        /RecurrentGatedDeltaRule on Ascend: aclnnRecurrentGatedDeltaRuleGetWorkspaceSize failed with CANN error 161002: .*query data is a host or foreign pointer \(not from aclrtMalloc\)/,
      );
    } finally {
      await session.release();
    }
  });

  it("a removed stream synchronisation (test fault skip_sync) gives wrong results", async () => {
    // A shape no other test runs: the stale output buffer ORT's CPU arena hands out cannot hold this result.
    const c: Case = { ...BASE, op: "ChunkGatedDeltaRule", T: 11 };
    const session = await ascendSession(modelFile(c), "skip_sync");
    try {
      const err = await runCase(session, c);
      expect(err.output).toBeGreaterThan(0.5);
      expect(err.final_state).toBeGreaterThan(0.5);
    } finally {
      await session.release();
    }
  });

  it("two sessions in one process count their own copies: the graph's inputs and outputs, per run", async () => {
    const c: Case = { ...BASE, op: "ChunkGatedDeltaRule" };
    const file = modelFile(c);
    const [a, b] = [await ascendSession(file), await ascendSession(file)];
    try {
      await runCase(a, c);
      await runCase(a, c);
      await runCase(b, c);
      const inBytes = Object.values(inputs(c)).reduce((n, x) => n + x.byteLength, 0);
      const outBytes = 4 * (c.B * c.T * c.Hv * c.V + c.B * c.Hv * c.K * c.V);
      const perRuns = (runs: number) => ({
        copiesH2D: 6 * runs,
        copiesD2H: 2 * runs,
        bytesH2D: inBytes * runs,
        bytesD2H: outBytes * runs,
      });
      expect(copies(ascendStats(a))).toEqual(perRuns(2));
      expect(copies(ascendStats(b))).toEqual(perRuns(1));
    } finally {
      await a.release();
      await b.release();
    }
  });

  // The kernels only enqueue: the host waits once, for the outputs' D2H copies (the end of the run finds the
  // stream idle). Per-kernel synchronisation would add one per kernel.
  it.skipIf(REAL)("a run synchronises the stream once, at the graph outputs, not per kernel", async () => {
    const c: Case = { ...BASE, T: 19 }; // recurrent: 3 slices of <= 8 tokens, one aclnn call each
    const session = await ascendSession(modelFile(c));
    try {
      await runCase(session, c); // warm-up (the first run may create streams)
      const before = ascendSimCounters();
      const err = await runCase(session, c);
      const after = ascendSimCounters();
      expect(err.output).toBeLessThan(BF16_TOLERANCE);
      expect(after.launches - before.launches).toBe(LAUNCHES_RECURRENT_T19);
      expect(after.streamSyncs - before.streamSyncs).toBe(1);
      expect(after.liveBytes).toBe(before.liveBytes); // scratch and ORT's blocks freed after the synchronisation
      expect(after.eventSyncs - before.eventSyncs).toBe(0);
    } finally {
      await session.release();
    }
  });
});

/**
 * Appends Neg(Neg(.)) (no Ascend kernel: it runs on the CPU, and is exact) to the layer's first graph output, so
 * that a CPU node reads a device output.
 */
function withCpuTail(graph: onnx.IGraphProto): void {
  const out = graph.output![0]!.name!;
  const producer = graph.node!.find((n) => n.output!.includes(out))!;
  producer.output = producer.output!.map((o) => (o === out ? `${out}_device` : o));
  graph.node!.push(
    { opType: "Neg", name: "cpu_tail_0", input: [`${out}_device`], output: [`${out}_negated`] },
    { opType: "Neg", name: "cpu_tail_1", input: [`${out}_negated`], output: [out] },
  );
}

// A fused layer runs wholly on the device; a CPU node after it (here Neg(Neg(y))) reads its output through
// MemcpyToHost and waits for it with an event (ORT's notification); the run synchronises the stream once.
const LAYER_WAIT = "a CPU node after a device layer waits for it with an event; skip_sync breaks it";
it.skipIf(REAL || skip !== undefined)(LAYER_WAIT, async () => {
  const { model } = await fuseCase("layer_qwen3next_prefill_t96", { probe: false });
  withCpuTail(model.proto.graph!);
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-")), "model.onnx");
  writeFileSync(file, encodeMessage(onnx.ModelProto, model.proto as onnx.ModelProto));
  const session = await ascendSession(file);
  try {
    await errors(session, "layer_qwen3next_prefill_t96");
    const before = ascendSimCounters();
    for (const e of await errors(session, "layer_qwen3next_prefill_t96")) expect(e).toBeLessThan(BF16_TOLERANCE);
    const after = ascendSimCounters();
    expect([after.eventSyncs - before.eventSyncs, after.streamSyncs - before.streamSyncs]).toEqual([1, 1]);
  } finally {
    await session.release();
  }
  const broken = await ascendSession(file, "skip_sync");
  try {
    // The layer output: the CPU nodes computed it from the device's output before it was written. (Outputs
    // copied from the device are left as ORT's CPU arena hands them out, which may hold an earlier run's values.)
    const [layerOutput] = await errors(broken, "layer_qwen3next_prefill_t96");
    expect(layerOutput).toBeGreaterThan(0.5);
  } finally {
    await broken.release();
  }
});

function copies(s: AscendStats): Pick<AscendStats, "copiesH2D" | "copiesD2H" | "bytesH2D" | "bytesD2H"> {
  return { copiesH2D: s.copiesH2D, copiesD2H: s.copiesD2H, bytesH2D: s.bytesH2D, bytesD2H: s.bytesD2H };
}

/** aclnn calls of one run of BASE (recurrent, T=19, kv, L2 norm): 2 L2 norms (q, k); state permute + cast; per
 * slice of <= 8 tokens 5 casts (q, k, v, beta, g), the op and the output cast (3 slices); state cast + permute. */
const LAUNCHES_RECURRENT_T19 = 2 + 2 + 3 * 7 + 2;

describe.skipIf(skip !== undefined)("GDN_FUSE_ASCEND_EP_LIBRARY and GDN_FUSE_CANN_SIM_LIBRARY", () => {
  // Restores the libraries the run started with (npm run test:sanitize points them at the sanitized builds).
  const VARIABLES = ["GDN_FUSE_ASCEND_EP_LIBRARY", "GDN_FUSE_CANN_SIM_LIBRARY"] as const;
  const starting = VARIABLES.map((v) => process.env[v]);
  afterEach(() =>
    VARIABLES.forEach((v, i) => {
      if (starting[i] === undefined) delete process.env[v];
      else process.env[v] = starting[i];
    }),
  );

  it.each(VARIABLES.filter((v) => !REAL || v === "GDN_FUSE_ASCEND_EP_LIBRARY"))(
    "%s must point at a file",
    async (v) => {
      process.env[v] = "/nonexistent/lib.so";
      await expect(ascendSession(modelFile(BASE))).rejects.toThrow(
        new GdnFuseError("E_RUNTIME", `${v} points at /nonexistent/lib.so, which does not exist`),
      );
    },
  );

  it("a relative GDN_FUSE_ASCEND_EP_LIBRARY is taken from the working directory (ORT needs an absolute path)", async () => {
    const library = ascendEpLibraryPath();
    process.env.GDN_FUSE_ASCEND_EP_LIBRARY = relative(process.cwd(), library);
    expect(ascendEpLibraryPath()).toBe(library);
    const session = await ascendSession(modelFile(BASE));
    try {
      expect((await runCase(session, BASE)).output).toBeLessThan(BF16_TOLERANCE);
      expect(ascendStats(session).nodesOnDevice).toEqual({ "gdn.RecurrentGatedDeltaRule": 1 });
    } finally {
      await session.release();
    }
  });
});
