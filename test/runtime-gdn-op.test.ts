/**
 * A fused gdn op through the gdn backend: a hand-built one-node model with gdn.RecurrentGatedDeltaRule,
 * checked against a float64 reference. Runs when the op library is built (exports RegisterCustomOps);
 * otherwise the clear "library not found / not loadable" error is checked instead.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterEach, describe, expect, it } from "vitest";
import "../src/runtime/index.js";
import { deltaRuleModel } from "../src/ops-model.js";
import { loadRuntime } from "../src/runtime/index.js";
import { transpileRuntime } from "./helpers/runtime-js.js";
import { ROOT, TOLERANCE, relativeL2 } from "./helpers/index.js";

const GDN = { executionProviders: ["gdn"] };

const opsLibrary = loadRuntime().opsLibraryPath;
/** Built and exporting the entry point (a library still being written may be an empty stub). */
const ready = opsLibrary !== null && readFileSync(opsLibrary).includes("RegisterCustomOps");

const [B, T, H, K, V] = [2, 3, 2, 4, 5];

const CHILD = `
import * as ort from "onnxruntime-node";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);
await import(job.runtimeUrl);
const session = await ort.InferenceSession.create(Uint8Array.from(job.model), { executionProviders: ["gdn"] });
const feeds = {};
for (const [name, [data, dims]] of Object.entries(job.feeds)) feeds[name] = new ort.Tensor("float32", Float32Array.from(data), dims);
const res = await session.run(feeds);
await session.release();
const out = {};
for (const [name, t] of Object.entries(res)) out[name] = { dims: t.dims, data: Array.from(t.data) };
process.stdout.write(JSON.stringify(out));
`;

function recurrentModel(): Uint8Array {
  return deltaRuleModel("RecurrentGatedDeltaRule", { B, T, Hk: H, Hv: H, K, V });
}

/** Deterministic pseudo-random floats in [lo, hi). */
function rand(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return lo + ((hi - lo) * s) / 2 ** 32;
  });
}

/** S' = exp(g) S; u = beta (v - S'^T k); S = S' + k u^T; o = S^T (q / sqrt(K)) — in float64. */
function reference(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  g: Float32Array,
  beta: Float32Array,
  s0: Float32Array,
) {
  const out = new Float64Array(B * T * H * V);
  const state = Float64Array.from(s0);
  const scale = 1 / Math.sqrt(K);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const S = (i: number, j: number) => ((b * H + h) * K + i) * V + j;
      for (let t = 0; t < T; t++) {
        const bth = (b * T + t) * H + h;
        const decay = Math.exp(g[bth]!);
        for (let i = 0; i < K * V; i++) state[(b * H + h) * K * V + i]! *= decay;
        const u = new Float64Array(V);
        for (let j = 0; j < V; j++) {
          let kv = 0;
          for (let i = 0; i < K; i++) kv += state[S(i, j)]! * k[bth * K + i]!;
          u[j] = beta[bth]! * (v[bth * V + j]! - kv);
        }
        for (let i = 0; i < K; i++) for (let j = 0; j < V; j++) state[S(i, j)]! += k[bth * K + i]! * u[j]!;
        for (let j = 0; j < V; j++) {
          let o = 0;
          for (let i = 0; i < K; i++) o += state[S(i, j)]! * q[bth * K + i]! * scale;
          out[bth * V + j] = o;
        }
      }
    }
  }
  return { out, state };
}

describe("gdn backend: gdn.RecurrentGatedDeltaRule", () => {
  // Restores the library the run started with (npm run test:sanitize points it at the sanitized build).
  const startingLibrary = process.env.GDN_FUSE_OPS_LIBRARY;
  afterEach(() => {
    if (startingLibrary === undefined) delete process.env.GDN_FUSE_OPS_LIBRARY;
    else process.env.GDN_FUSE_OPS_LIBRARY = startingLibrary;
  });

  // Runs in a child process: a crash inside the op library must fail this test, not take the test runner down.
  it.skipIf(!ready)("runs a one-node gdn model and matches the float64 reference", () => {
    const q = rand(B * T * H * K, 1);
    const k = rand(B * T * H * K, 2, -0.5, 0.5);
    const v = rand(B * T * H * V, 3);
    const g = rand(B * T * H, 4, -1, -0.01);
    const beta = rand(B * T * H, 5, 0.1, 0.9);
    const s0 = rand(B * H * K * V, 6, -0.3, 0.3);
    const { dir, runtimeUrl } = transpileRuntime();
    const script = join(dir, "gdn-op-child.mjs");
    writeFileSync(script, CHILD);
    const job = {
      runtimeUrl,
      model: Array.from(recurrentModel()),
      feeds: {
        query: [Array.from(q), [B, T, H, K]],
        key: [Array.from(k), [B, T, H, K]],
        value: [Array.from(v), [B, T, H, V]],
        g: [Array.from(g), [B, T, H]],
        beta: [Array.from(beta), [B, T, H]],
        initial_state: [Array.from(s0), [B, H, K, V]],
      },
    };
    const child = spawnSync(process.execPath, [script], {
      input: JSON.stringify(job),
      encoding: "utf8",
      timeout: 60_000,
    });
    const status = child.signal ? `killed by ${child.signal}` : `exit code ${child.status}`;
    expect(child.status, `child ${status}; stderr:\n${child.stderr.slice(-2000)}`).toBe(0);
    const res = JSON.parse(child.stdout) as Record<string, { dims: number[]; data: number[] }>;
    const ref = reference(q, k, v, g, beta, s0);
    expect(res.output!.dims).toEqual([B, T, H, V]);
    expect(res.final_state!.dims).toEqual([B, H, K, V]);
    expect(relativeL2(res.output!.data, ref.out)).toBeLessThanOrEqual(TOLERANCE.float32);
    expect(relativeL2(res.final_state!.data, ref.state)).toBeLessThanOrEqual(TOLERANCE.float32);
  });

  it.skipIf(ready)("without a usable op library, a gdn model fails with a clear message", async () => {
    await expect(ort.InferenceSession.create(recurrentModel(), GDN)).rejects.toThrow(
      /model uses gdn ops but the gdn op library (was not found at|at .* could not be loaded).*run npm rebuild/,
    );
  });

  it("GDN_FUSE_OPS_LIBRARY must point at a file", async () => {
    process.env.GDN_FUSE_OPS_LIBRARY = "/nonexistent/libgdn_ops.so";
    await expect(ort.InferenceSession.create(recurrentModel(), GDN)).rejects.toThrow(
      "GDN_FUSE_OPS_LIBRARY points at /nonexistent/libgdn_ops.so, which does not exist",
    );
  });

  it("GDN_FUSE_OPS_LIBRARY pointing at something that is not an op library is an error, not a crash", async () => {
    const notALibrary = join(ROOT, "package.json");
    process.env.GDN_FUSE_OPS_LIBRARY = notALibrary;
    await expect(ort.InferenceSession.create(recurrentModel(), GDN)).rejects.toThrow(
      `cannot register the gdn op library ${notALibrary}`,
    );
  });
});
