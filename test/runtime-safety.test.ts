/**
 * The gdn backend cannot be crashed from JavaScript: buffers transferred (detached) before or during a run,
 * SharedArrayBuffer-backed tensors, and worker_threads terminated with runs in flight.
 * Each case that could kill its process runs in a child process; the test asserts how the child ended.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { deltaRuleModel } from "../src/ops-model.js";
import { loadRuntime } from "../src/runtime/index.js";
import { REAL_ASCEND } from "./helpers/ascend.js";
import { transpileRuntime } from "./helpers/runtime-js.js";

const ready = loadRuntime().opsLibraryPath !== null;

/** A one-node gdn.ChunkGatedDeltaRule model over float32 [B,T,H,K|V] inputs, with an initial state. */
export function chunkModel(B: number, T: number, H: number, K: number, V: number): Uint8Array {
  return deltaRuleModel("ChunkGatedDeltaRule", { B, T, Hk: H, Hv: H, K, V });
}

// Shared by the child scripts: the model's feeds (deterministic, bounded values) and a max-abs-difference.
const COMMON = `
import * as ort from "onnxruntime-node";
const [B, T, H, K, V] = [2, 256, 4, 64, 64];
export const dims = { query: [B, T, H, K], key: [B, T, H, K], value: [B, T, H, V], g: [B, T, H], beta: [B, T, H], initial_state: [B, H, K, V] };
export const size = (d) => d.reduce((a, b) => a * b, 1);
export function feeds(makeArray = (n) => new Float32Array(n)) {
  const out = {};
  let seed = 1;
  for (const [name, d] of Object.entries(dims)) {
    const a = makeArray(size(d));
    for (let i = 0; i < a.length; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const r = seed / 2 ** 32;
      a[i] = name === "g" ? -0.5 * r : name === "beta" ? r : name === "query" || name === "key" ? (r - 0.5) * 0.2 : r - 0.5;
    }
    out[name] = new ort.Tensor("float32", a, d);
  }
  return out;
}
export const outputDims = [B, T, H, V];
export function maxDiff(a, b) {
  let m = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
export function session() {
  return ort.InferenceSession.create(process.env.GDN_MODEL, { executionProviders: ["gdn"], intraOpNumThreads: 1 });
}
export { ort };
`;

/** mode: how a buffer the run uses is moved away while the run is in flight. */
const TRANSFER = `
import { MessageChannel } from "node:worker_threads";
const { feeds, maxDiff, outputDims, session, size, ort } = await import(process.env.GDN_COMMON);
await import(process.env.GDN_RUNTIME);
const [what, how] = process.argv.slice(2);
const s = await session();
const want = (await s.run(feeds())).output.data;
const f = feeds();
const out = new ort.Tensor("float32", new Float32Array(size(outputDims)), outputDims);
const pending = s.run(f, what === "output" ? { output: out } : undefined);
const victim = what === "output" ? out.data.buffer : f.value.data.buffer;
let moved;
if (how === "structuredClone") moved = structuredClone(victim, { transfer: [victim] });
else {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(victim, [victim]);
  moved = await new Promise((r) => port2.once("message", r));
  port1.close();
}
// free the moved memory and reuse it with large values: a run still reading or writing it shows garbage or crashes
new Float32Array(moved).fill(3.9e29);
moved = undefined;
for (let i = 0; i < 4; i++) { globalThis.gc(); new Float32Array(victim.byteLength / 4 || 1 << 20).fill(3.9e29); }
const res = await pending;
const got = what === "output" ? out.data : res.output.data;
console.log(JSON.stringify({ diff: maxDiff(got, want), stillAttached: victim.byteLength > 0, sameTensor: what !== "output" || res.output === out }));
`;

/** A detached buffer handed to run(), or a SharedArrayBuffer-backed tensor: a clear error or correct values. */
const BUFFERS = `
const { feeds, maxDiff, outputDims, session, size, ort } = await import(process.env.GDN_COMMON);
await import(process.env.GDN_RUNTIME);
const s = await session();
const want = (await s.run(feeds())).output.data;
const result = {};
const f = feeds();
structuredClone(f.beta.data.buffer, { transfer: [f.beta.data.buffer] });
result.detachedInput = await s.run(f).then(() => "ran", (e) => e.code + ": " + e.message);
const out = new ort.Tensor("float32", new Float32Array(size(outputDims)), outputDims);
structuredClone(out.data.buffer, { transfer: [out.data.buffer] });
result.detachedOutput = await s.run(feeds(), { output: out }).then(() => "ran", (e) => e.code + ": " + e.message);
const shared = feeds((n) => new Float32Array(new SharedArrayBuffer(n * 4)));
const sharedOut = new ort.Tensor("float32", new Float32Array(new SharedArrayBuffer(size(outputDims) * 4)), outputDims);
const r = await s.run(shared, { output: sharedOut }).then((r) => r, (e) => e.code + ": " + e.message);
result.shared = typeof r === "string" ? r : { diff: maxDiff(sharedOut.data, want), same: r.output === sharedOut };
console.log(JSON.stringify(result));
`;

/**
 * A resizable ArrayBuffer shrunk while a run uses it: V8 takes the pages away at once, so
 * the native side would read or write unmapped memory. Such buffers are refused; a growable SharedArrayBuffer (it
 * never shrinks) works, grown during the run.
 */
const RESIZABLE = `
const { feeds, maxDiff, outputDims, session, size, ort } = await import(process.env.GDN_COMMON);
await import(process.env.GDN_RUNTIME);
const s = await session();
const want = (await s.run(feeds())).output.data;
const refused = (e) => e.code + ": " + e.message;
function resizable(a, grow = false) {
  const buffer = grow ? new SharedArrayBuffer(a.byteLength, { maxByteLength: 2 * a.byteLength })
    : new ArrayBuffer(a.byteLength, { maxByteLength: a.byteLength });
  const copy = new a.constructor(buffer, 0, a.length);
  copy.set(a);
  return copy;
}
const result = {};
const f = feeds();
f.value = new ort.Tensor("float32", resizable(f.value.data), f.value.dims);
let pending = s.run(f);
f.value.data.buffer.resize(0);
result.input = await pending.then(() => "ran", refused);
const out = new ort.Tensor("float32", resizable(new Float32Array(size(outputDims))), outputDims);
pending = s.run(feeds(), { output: out });
out.data.buffer.resize(0);
result.output = await pending.then(() => "ran", refused);
const g = feeds();
g.value = new ort.Tensor("float32", resizable(g.value.data, true), g.value.dims);
pending = s.run(g);
g.value.data.buffer.grow(2 * g.value.data.byteLength);
result.growable = await pending.then((r) => maxDiff(r.output.data, want), refused);
console.log(JSON.stringify(result));
`;

/**
 * Model bytes moved away around a session's creation (argv: backend). Transferred at once, they reach the backend
 * detached (create() hands them over after a tick): refused. Transferred while ORT waits to parse them on the thread
 * pool (kept busy here): a transfer must copy them, and the session is created from the bytes given. A resizable
 * buffer is refused.
 */
const MODEL_BYTES = `
import { readFileSync } from "node:fs";
import { pbkdf2 } from "node:crypto";
const { ort } = await import(process.env.GDN_COMMON);
await import(process.env.GDN_RUNTIME);
const backend = process.argv[2];
if (backend === "ascend") process.env.GDN_FUSE_ASCEND = "sim";
const options = { executionProviders: [backend === "ascend" ? { name: "ascend", deviceId: 0 } : "gdn"] };
const created = (s) => (s.release(), "created");
const failed = (e) => e.code + ": " + e.message;
const file = readFileSync(process.env.GDN_MODEL);
const result = {};
let bytes = new Uint8Array(file);
let pending = ort.InferenceSession.create(bytes, options);
structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
result.detachedAtOnce = await pending.then(created, failed);
bytes = new Uint8Array(file);
const busy = Array.from({ length: 16 }, () => new Promise((r) => pbkdf2("x", "y", 50000, 32, "sha256", r)));
pending = ort.InferenceSession.create(bytes, options);
await new Promise((r) => setTimeout(r, 20));
const moved = structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
new Uint8Array(moved).fill(0xff); // what a new owner of the memory might write
result.duringCreate = await pending.then(created, failed);
result.stillAttached = bytes.byteLength === file.length;
await Promise.all(busy);
const resizable = new Uint8Array(new ArrayBuffer(file.length, { maxByteLength: file.length }));
resizable.set(file);
result.resizable = await ort.InferenceSession.create(resizable, options).then(created, failed);
console.log(JSON.stringify(result));
`;

/**
 * Many sessions created, used and released (argv: backend, cycles): the device memory they used comes back and the
 * process's RSS stays bounded. On "ascend" each session also runs an AscendDeviceLoop whose state stays on the
 * device, released before or after its session in turn; a "keeper" session keeps the simulator loaded throughout.
 */
const CYCLES = `
const { ort } = await import(process.env.GDN_COMMON);
const runtime = await import(process.env.GDN_RUNTIME);
const { deltaRuleModel } = await import(new URL("../ops-model.js", process.env.GDN_RUNTIME).href);
const [backend, cycles] = [process.argv[2], Number(process.argv[3])];
if (backend === "ascend") process.env.GDN_FUSE_ASCEND = "sim";
const [B, T, H, K, V] = [1, 2, 2, 16, 16];
const model = deltaRuleModel("RecurrentGatedDeltaRule", { B, T, Hk: H, Hv: H, K, V });
const ep = backend === "ascend" ? { name: "ascend", deviceId: 0 } : "gdn";
const create = () => ort.InferenceSession.create(model, { executionProviders: [ep], intraOpNumThreads: 1 });
const tensor = (dims, v) => new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(v), dims);
const step = { query: tensor([B, T, H, K], 0.1), key: tensor([B, T, H, K], 0.1), value: tensor([B, T, H, V], 0.5),
  g: tensor([B, T, H], -0.1), beta: tensor([B, T, H], 0.5) };
const first = { ...step, initial_state: tensor([B, H, K, V], 0) };
const keeper = await create();
const live = () => (backend === "ascend" ? runtime.ascendSimCounters().liveBytes : 0);
const rss = () => { globalThis.gc(); return process.memoryUsage().rss; };
let liveBefore, rssBefore;
for (let i = 0; i < cycles; i++) {
  if (i === 20) [liveBefore, rssBefore] = [live(), rss()]; // after the allocators' warm-up
  const s = await create();
  if (backend === "ascend") {
    const loop = new runtime.AscendDeviceLoop(s, { final_state: "initial_state" });
    await loop.step(first);
    await loop.step(step);
    if (i % 2) { loop.release(); await s.release(); } else { await s.release(); loop.release(); }
  } else {
    await s.run(first);
    await s.release();
  }
}
const result = { liveBytesGrowth: live() - liveBefore, rssGrowthMB: Math.round((rss() - rssBefore) / 2 ** 20) };
await keeper.release();
console.log(JSON.stringify(result));
`;

/** Workers with several runs in flight terminated at seeded random points; then the parent runs the model. */
const TERMINATE = `
import { Worker, isMainThread, parentPort } from "node:worker_threads";
const { feeds, maxDiff, session } = await import(process.env.GDN_COMMON);
await import(process.env.GDN_RUNTIME);
if (!isMainThread) {
  const s = await session();
  const f = feeds();
  parentPort.postMessage("ready");
  for (;;) await Promise.all(Array.from({ length: 4 }, () => s.run(f)));
} else {
  let seed = 7;
  const rounds = Number(process.argv[2]);
  for (let i = 0; i < rounds; i++) {
    const w = new Worker(new URL(import.meta.url), { env: process.env });
    await new Promise((r, j) => { w.once("message", r); w.once("error", j); });
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    await new Promise((r) => setTimeout(r, (seed / 2 ** 32) * 40));
    await w.terminate();
  }
  const s = await session();
  const a = (await s.run(feeds())).output.data, b = (await s.run(feeds())).output.data;
  console.log(JSON.stringify({ rounds, diff: maxDiff(a, b), length: a.length }));
}
`;

const RESIZABLE_WHY =
  "its ArrayBuffer is resizable (resize() could take its memory away while the runtime uses it); use a fixed-length ArrayBuffer";

interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

let env: NodeJS.ProcessEnv;
let dir: string;
beforeAll(() => {
  const runtime = transpileRuntime();
  dir = runtime.dir;
  const tmp = mkdtempSync(join(tmpdir(), "gdn-safety-"));
  writeFileSync(join(tmp, "model.onnx"), chunkModel(2, 256, 4, 64, 64));
  writeFileSync(join(dir, "safety-common.mjs"), COMMON);
  writeFileSync(join(dir, "safety-transfer.mjs"), TRANSFER);
  writeFileSync(join(dir, "safety-buffers.mjs"), BUFFERS);
  writeFileSync(join(dir, "safety-terminate.mjs"), TERMINATE);
  writeFileSync(join(dir, "safety-resizable.mjs"), RESIZABLE);
  writeFileSync(join(dir, "safety-cycles.mjs"), CYCLES);
  writeFileSync(join(dir, "safety-model-bytes.mjs"), MODEL_BYTES);
  env = {
    ...process.env,
    GDN_MODEL: join(tmp, "model.onnx"),
    GDN_COMMON: new URL(`file://${join(dir, "safety-common.mjs")}`).href,
    GDN_RUNTIME: runtime.runtimeUrl,
  };
});

/** Runs a child script (asynchronously: vitest's worker must keep answering its RPC meanwhile). */
function child(script: string, args: string[], timeoutMs = 60_000): Promise<ChildEnd> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--expose-gc", join(dir, script), ...args], { env, timeout: timeoutMs });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    p.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

function parsed(end: ChildEnd): Record<string, unknown> {
  const how = end.signal ? `killed by ${end.signal}` : `exit code ${end.code}`;
  expect({ code: end.code, signal: end.signal }, `child ${how}; stderr:\n${end.stderr.slice(-1500)}`).toEqual({
    code: 0,
    signal: null,
  });
  return JSON.parse(end.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
}

describe.skipIf(!ready)("gdn backend: buffers moved away from a run", () => {
  it.each([
    ["input", "structuredClone"],
    ["input", "postMessage"],
    ["output", "structuredClone"],
    ["output", "postMessage"],
  ])("an %s buffer transferred by %s during the run: no crash, the right values, still attached", async (what, how) => {
    const r = parsed(await child("safety-transfer.mjs", [what, how]));
    expect(r).toEqual({ diff: 0, stillAttached: true, sameTensor: true });
  });

  it("a detached buffer is refused, a SharedArrayBuffer-backed tensor works", async () => {
    const r = parsed(await child("safety-buffers.mjs", []));
    expect(r).toEqual({
      detachedInput:
        "E_RUNTIME: input 'beta': its ArrayBuffer is detached (transferred away); pass a tensor over live memory",
      detachedOutput:
        "E_RUNTIME: output 'output': its ArrayBuffer is detached (transferred away); pass a tensor over live memory",
      shared: { diff: 0, same: true },
    });
  });

  it("a resizable ArrayBuffer is refused (shrunk under a run it crashed the process); a growable SharedArrayBuffer works", async () => {
    const r = parsed(await child("safety-resizable.mjs", []));
    expect(r).toEqual({
      input: `E_RUNTIME: input 'value': ${RESIZABLE_WHY}`,
      output: `E_RUNTIME: output 'output': ${RESIZABLE_WHY}`,
      growable: 0,
    });
  });
});

describe.skipIf(!ready)("gdn and ascend backends: model bytes moved away during create()", () => {
  it.each(REAL_ASCEND ? ["gdn"] : ["gdn", "ascend"])(
    "on %s: detached ones are refused, a transfer during create() copies them, resizable ones are refused",
    async (backend) => {
      const r = parsed(await child("safety-model-bytes.mjs", [backend]));
      expect(r).toEqual({
        detachedAtOnce:
          "E_RUNTIME: model bytes: their ArrayBuffer is detached (transferred away); pass the model over live memory",
        duringCreate: "created",
        stillAttached: true,
        resizable: `E_RUNTIME: model bytes: ${RESIZABLE_WHY}`,
      });
    },
  );
});

describe.skipIf(!ready)("gdn and ascend backends: many sessions created and released", () => {
  // Bounds: a leaked session or device loop per cycle would grow device memory at once and RSS by far more than
  // the 180 cycles' allocator noise (measured: 2-5 MB).
  it.each(REAL_ASCEND ? ["gdn"] : ["gdn", "ascend"])(
    "200 cycles on %s: no device memory left behind, RSS bounded",
    async (backend) => {
      const r = parsed(await child("safety-cycles.mjs", [backend, "200"], 100_000));
      expect(r.liveBytesGrowth).toBe(0);
      // Under ASan (npm run test:sanitize) freed memory sits in its quarantine: RSS says nothing there.
      if (process.env.GDN_FUSE_SANITIZE !== "1") expect(r.rssGrowthMB).toBeLessThan(40);
    },
  );
});

describe.skipIf(!ready)("gdn backend: worker_threads teardown", () => {
  it("20 workers terminated with runs in flight: the process survives and runs the model", async () => {
    const r = parsed(await child("safety-terminate.mjs", ["20"], 100_000));
    expect(r).toEqual({ rounds: 20, diff: 0, length: 2 * 256 * 4 * 64 });
  });
});
