#!/usr/bin/env node
// gdn-fuse benchmark (`npm run bench [-- --json FILE] [-- --quick] [-- --cases a,b]`). Not part of the tests.
//
// For each case every implementation runs in this one process, on 2 intra-op threads, warmed up, median of
// >= 10 runs, and its outputs are checked against the others (relative L2 <= 1e-4, src/numeric.ts) so a fast wrong kernel
// cannot win:
//   gdn                   our fused graph through the `gdn` backend (gdn-fuse/runtime, our op library)
//   ort-linear-attention  the same function lowered for stock ORT (L2-norm ops + com.microsoft.LinearAttention),
//                         stock onnxruntime-node CPU
//   unfused               the exporter's graph (where the corpus has one), stock onnxruntime-node CPU
//   state-copy            decode: one copy of the state's bytes (read once + write once) in this process
// The machine's fp32 FMA peak and copy bandwidth come from bench/peak.cc (built here, -march=native);
// the 48-layer fusion pass is timed in its own process (bench/pass48.mjs) for its peak RSS.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const OUT = join(ROOT, "build", "bench");
const DIST = join(OUT, "dist");
const THREADS = 2;

// ---- arguments ----
const argv = process.argv.slice(2);
const opt = { json: null, quick: false, cases: null, runs: 10, noBuild: false };
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--json") opt.json = argv[++i];
  else if (a === "--quick") opt.quick = true;
  else if (a === "--cases") opt.cases = argv[++i].split(",");
  else if (a === "--runs") opt.runs = Math.max(10, Number(argv[++i]));
  else if (a === "--no-build") opt.noBuild = true;
  else if (a !== "--") {
    console.error(
      `bench: unknown argument ${a}\nusage: node bench/run.mjs [--json FILE] [--quick] [--cases list] [--runs N] [--no-build]`,
    );
    process.exit(2);
  }
}
const ALL_CASES = [
  "pass_48layer",
  "prefill_t512",
  "prefill_t2048",
  "prefill_t8192",
  "decode_b1",
  "decode_b8",
  "decode_b64",
  "serve_prefill",
  "serve_decode",
];
const CASES = opt.cases ?? (opt.quick ? ALL_CASES.filter((c) => c !== "prefill_t8192") : ALL_CASES);
const log = (...a) => console.error(...a);

// ---- build: TypeScript sources -> build/bench/dist (type errors elsewhere do not stop the emit), peak helper ----
mkdirSync(OUT, { recursive: true });
if (!opt.noBuild || !existsSync(join(DIST, "test", "helpers", "layer-stack.js"))) {
  log("bench: compiling TypeScript into build/bench/dist");
  // bench/tsconfig.json: the package's sources and the test fixture the bench uses (the synthetic layer stack)
  const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
  spawnSync(process.execPath, [tsc, "-p", join(ROOT, "bench", "tsconfig.json"), "--outDir", DIST], {
    stdio: ["ignore", "ignore", "inherit"],
  });
}
const PEAK = join(OUT, "peak");
if (!opt.noBuild || !existsSync(PEAK)) {
  execFileSync(
    process.env.CXX || "g++",
    ["-O2", "-march=native", "-std=c++17", join(ROOT, "bench", "peak.cc"), "-o", PEAK, "-pthread"],
    {
      stdio: "inherit",
    },
  );
}

const imp = (p) => import(pathToFileURL(join(DIST, p)).href);
const ort = await import("onnxruntime-node");
const { onnx } = await imp("src/ir/onnx.js");
const { loadModel } = await imp("src/ir/model-io.js");
const { fuseModel } = await imp("src/index.js"); // the package entry registers the built-in passes
const { attr } = await imp("src/ir/graph.js");
const { deltaRuleModel, oneNodeModel } = await imp("src/ops-model.js");
const { LONG_SEQUENCE_FLOAT32_TOLERANCE, relativeL2, seededRandom } = await imp("src/numeric.js");
await imp("src/runtime/index.js");
const { loadRuntime } = await imp("src/runtime/index.js");

// ---- machine ----
function machineInfo() {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "").split(/\s+/));
  const isaFlags = [
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512vl",
    "avx512bw",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
  ];
  const ortPkg = JSON.parse(readFileSync(join(ROOT, "node_modules", "onnxruntime-node", "package.json"), "utf8"));
  const rt = loadRuntime();
  const lscpu = spawnSync("lscpu", [], { encoding: "utf8" }).stdout ?? "";
  const field = (name) => new RegExp(`^${name}:\\s*(.*)$`, "m").exec(lscpu)?.[1]?.trim();
  return {
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model,
    family_model: `${field("CPU family")}/${field("Model")}`,
    logical_cpus: cpus().length,
    caches: { l1d: field("L1d cache"), l2: field("L2 cache"), l3: field("L3 cache") },
    isa: isaFlags.filter((f) => flags.has(f)),
    gdn_kernel_isa: process.env.GDN_CPU_ISA ?? "auto",
    threads: THREADS,
    node: process.version,
    onnxruntime_node: ortPkg.version,
    ort_library: rt.ortVersion ?? rt.version ?? null,
  };
}

// ---- helpers ----
function fill(n, seed, f) {
  const r = seededRandom(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f(r());
  return a;
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
function inputs(B, T, H, K, V, seed, Hk = H) {
  return {
    query: [fill(B * T * Hk * K, seed + 1, (u) => u * 2 - 1), [B, T, Hk, K]],
    key: [fill(B * T * Hk * K, seed + 2, (u) => u * 2 - 1), [B, T, Hk, K]],
    value: [fill(B * T * H * V, seed + 3, (u) => u * 2 - 1), [B, T, H, V]],
    g: [fill(B * T * H, seed + 4, (u) => -0.001 - 0.3 * u), [B, T, H]], // log decay in (-0.3, -0.001)
    beta: [fill(B * T * H, seed + 5, (u) => 0.05 + 0.9 * u), [B, T, H]],
    initial_state: [fill(B * H * K * V, seed + 6, (u) => (u * 2 - 1) * 0.1), [B, H, K, V]],
  };
}
const feedsOf = (raw) =>
  Object.fromEntries(Object.entries(raw).map(([n, [d, dims]]) => [n, new ort.Tensor("float32", d, dims)]));

/** One-node gdn model (ChunkGatedDeltaRule / RecurrentGatedDeltaRule) with the corpus models' I/O names, as a proto. */
function gdnModel(op, B, T, H, K, V, Hk = H) {
  const attrs = [attr.float("scale", 1 / Math.sqrt(K)), attr.int("use_qk_l2norm", 1)];
  if (op === "ChunkGatedDeltaRule") attrs.push(attr.int("chunk_size", 64));
  return onnx.ModelProto.decode(deltaRuleModel(op, { B, T, Hk, Hv: H, K, V }, attrs, "core_attn_out"));
}
const encode = (m) => onnx.ModelProto.encode(m).finish();
const clone = (m) => onnx.ModelProto.decode(encode(m));

async function session(bytes, provider) {
  return ort.InferenceSession.create(bytes, {
    executionProviders: [provider],
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    graphOptimizationLevel: "all",
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until this process is idle: after a run, each ORT session's intra-op threads spin for tens of ms (measured
 * here: ~40 ms of a core after stock ORT's last decode run) before they block, and on 2 cores they would take the
 * next implementation's cores. Gives up after maxMs.
 */
async function quiesce(maxMs = 1000) {
  const t0 = performance.now();
  while (performance.now() - t0 < maxMs) {
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    await sleep(10);
    const used = process.cpuUsage(c0);
    if ((used.user + used.system) / 1000 < 0.05 * (performance.now() - w0)) return;
  }
}

/**
 * Times several implementations of one case in alternating blocks (3 rounds; in each, every implementation waits
 * for the process to be idle, gets `warmup` untimed calls (and >= 20 ms of them) and then its share of timed calls), so that a load
 * change on a shared machine hits all of them alike and the ratios stay meaningful. Not one call each in turn:
 * every ORT session has its own intra-op pool whose threads spin for a while after a run, and on 2 cores they
 * would steal from the next session.
 * Returns {impl: {ms (median of all timed calls), min, samples}}.
 */
async function timeInterleaved(impls, runs, warmup) {
  const rounds = 3;
  const per = Math.ceil(runs / rounds);
  const ts = impls.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < impls.length; j++) {
      const fn = impls[j][1];
      await quiesce();
      // warm-up: `warmup` calls and at least 20 ms of them (a pool woken from its idle wait needs a few runs)
      const w0 = performance.now();
      for (let i = 0; i < warmup || performance.now() - w0 < 20; i++) await fn();
      for (let i = 0; i < per; i++) {
        const t0 = performance.now();
        await fn();
        ts[j].push(performance.now() - t0);
      }
    }
  }
  return Object.fromEntries(
    impls.map(([name], j) => [name, { ms: median(ts[j]), min: Math.min(...ts[j]), samples: ts[j].length }]),
  );
}

// ---- cases ----
const rows = [];
const checks = [];
const H = 32;
const K = 128;
const V = 128;
const CHUNK = 64;
/** FLOPs of the chunked WY form per the issue: per 64-token chunk and head 5 LxLx128 + 3 Lx128x128 GEMMs. */
const chunkFlops = (B, T) => B * H * Math.ceil(T / CHUNK) * (5 * 2 * CHUNK * CHUNK * K + 3 * 2 * CHUNK * K * V);

function check(caseName, impl, ref, res, refName) {
  for (const out of ["core_attn_out", "final_state"]) {
    const e = relativeL2(res[out].data, ref[out].data);
    const ok = e <= LONG_SEQUENCE_FLOAT32_TOLERANCE;
    checks.push({ case: caseName, impl, vs: refName, output: out, rel_l2: e, ok });
    if (!ok) log(`bench: ${caseName}: ${impl} ${out} differs from ${refName}: rel L2 ${e.toExponential(2)}`);
  }
}

/** prefill_t<T> (Hk = H) or, opt-in, prefill_t<T>_hk<Hk> (GQA: Hk key heads for the H value heads). */
async function prefillCase(name, T, Hk = H) {
  const B = 1;
  const raw = inputs(B, T, H, K, V, 1000 + T, Hk);
  const feeds = feedsOf(raw);
  const impls = [];
  let gdnProto;
  let ortProto;
  const corpus = join(ROOT, "..", "shared", "corpus", "bench_chunk_t512_h32_k128", "model.onnx");
  if (T === 512 && Hk === H && existsSync(corpus)) {
    const unfused = await loadModel(corpus);
    const unfusedBytes = encode(unfused.proto);
    gdnProto = clone(unfused.proto);
    const r = await fuseModel(gdnProto);
    if (r.fused["gdn.ChunkGatedDeltaRule"] !== 1)
      throw new Error(`bench: ${corpus} did not fuse: ${JSON.stringify(r.fused)}`);
    ortProto = clone(unfused.proto);
    await fuseModel(ortProto, { target: "ort" });
    impls.push(["unfused", await session(unfusedBytes, "cpu")]);
  } else {
    gdnProto = gdnModel("ChunkGatedDeltaRule", B, T, H, K, V, Hk);
    ortProto = clone(gdnProto);
    await fuseModel(ortProto, { target: "ort" });
  }
  impls.unshift(
    ["gdn", await session(encode(gdnProto), "gdn")],
    ["ort-linear-attention", await session(encode(ortProto), "cpu")],
  );
  const flops = chunkFlops(B, T);
  let ref;
  for (const [impl, s] of impls) {
    const out = await s.run(feeds);
    if (!ref) ref = out;
    else check(name, impl, ref, out, "gdn");
  }
  // Every implementation writes into preallocated outputs, as an application reusing its buffers does:
  // otherwise each call also page-faults a fresh output (32 MB at T=2048), the same cost for all of them.
  const timed = [];
  for (const [impl, s] of impls) {
    const fetches = {};
    for (const n of s.outputNames) {
      const like = (await s.run(feeds))[n];
      fetches[n] = new ort.Tensor(like.type, new Float32Array(like.data.length), like.dims);
    }
    const plain = await s.run(feeds);
    const pre = await s.run(feeds, fetches);
    check(name, `${impl} (preallocated outputs)`, plain, pre, `${impl} (fresh outputs)`);
    timed.push([impl, () => s.run(feeds, fetches)]);
  }
  const runs = T >= 8192 ? opt.runs : Math.max(opt.runs, 15);
  const times = await timeInterleaved(timed, runs, T >= 8192 ? 1 : 3);
  const res = {};
  for (const [impl, s] of impls) {
    const t = times[impl];
    res[impl] = t.ms;
    rows.push({ case: name, impl, ms: t.ms, min_ms: t.min, runs: t.samples, gflops: flops / t.ms / 1e6 });
    log(`  ${name} ${impl}: ${t.ms.toFixed(2)} ms`);
    await s.release();
  }
  return res;
}

async function decodeCase(name, B) {
  const T = 1;
  const raw = inputs(B, T, H, K, V, 2000 + B);
  const feeds = feedsOf(raw);
  const stateBytes = B * H * K * V * 4;
  const corpusB = {
    1: join(ROOT, "models", "bench_recurrent_t1_b1_h32_k128", "model.onnx"),
    8: join(ROOT, "..", "shared", "corpus", "bench_recurrent_t1_b8_h32_k128", "model.onnx"),
  }[B];
  let gdnProto;
  let ortProto;
  let unfusedBytes = null;
  if (corpusB && existsSync(corpusB)) {
    const unfused = await loadModel(corpusB);
    unfusedBytes = encode(unfused.proto);
    gdnProto = clone(unfused.proto);
    const r = await fuseModel(gdnProto);
    if (r.fused["gdn.RecurrentGatedDeltaRule"] !== 1 && r.fused["gdn.ChunkGatedDeltaRule"] !== 1)
      throw new Error(`bench: ${corpusB} did not fuse: ${JSON.stringify(r.fused)}`);
    ortProto = clone(unfused.proto);
    await fuseModel(ortProto, { target: "ort" });
  } else {
    gdnProto = gdnModel("RecurrentGatedDeltaRule", B, T, H, K, V);
    ortProto = clone(gdnProto);
    await fuseModel(ortProto, { target: "ort" });
  }
  const runs = Math.max(opt.runs, 30);
  const res = {};
  // gdn: a decode loop as an application runs it: preallocated output, and the state updated in place (the same
  // Tensor is fed as initial_state and fetched as final_state; the CPU backend reads each head's state before it
  // writes it), so no state bytes are copied into or out of JS and the state is streamed once in and once out.
  const g = await session(encode(gdnProto), "gdn");
  const ref = await g.run(feeds);
  const state = new ort.Tensor("float32", new Float32Array(raw.initial_state[0]), [B, H, K, V]);
  const outT = new ort.Tensor("float32", new Float32Array(B * T * H * V), [B, T, H, V]);
  {
    // the preallocated, in-place path computes the same as the plain run
    await g.run({ ...feeds, initial_state: state }, { core_attn_out: outT, final_state: state });
    check(name, "gdn(in-place)", ref, { core_attn_out: outT, final_state: state }, "gdn");
  }
  const stepFeeds = { ...feeds, initial_state: state };
  const stepFetches = { core_attn_out: outT, final_state: state };
  const step = () => g.run(stepFeeds, stepFetches);
  // floor of one run() through the gdn backend (a one-node Identity model): JS -> addon -> ORT -> callback
  const F = onnx.TensorProto.DataType.FLOAT;
  const idModel = {
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "floor",
      node: [{ opType: "Identity", input: ["x"], output: ["y"] }],
      input: [{ name: "x", type: { tensorType: { elemType: F, shape: { dim: [{ dimValue: 1 }] } } } }],
      output: [{ name: "y", type: { tensorType: { elemType: F, shape: { dim: [{ dimValue: 1 }] } } } }],
    },
  };
  const floorS = await session(encode(idModel), "gdn");
  const xT = new ort.Tensor("float32", new Float32Array(1), [1]);
  const impls = [["gdn", step, g]];
  const la = await session(encode(ortProto), "cpu");
  impls.push(["ort-linear-attention", () => la.run(feeds), la]);
  if (unfusedBytes) {
    const u = await session(unfusedBytes, "cpu");
    impls.push(["unfused", () => u.run(feeds), u]);
  }
  for (const [impl, , s] of impls) if (impl !== "gdn") check(name, impl, ref, await s.run(feeds), "gdn");
  // the state streamed once in and once out: a copy of that many bytes (reads n, writes n), timed in the same rounds
  const src = new Float32Array(B * H * K * V).fill(1);
  const dst = new Float32Array(B * H * K * V);
  const times = await timeInterleaved(
    [
      ...impls.map(([impl, fn]) => [impl, fn]),
      ["state-copy", async () => dst.set(src)],
      ["call-floor", () => floorS.run({ x: xT })],
    ],
    runs,
    5,
  );
  await floorS.release();
  for (const [impl] of [...impls, ["state-copy"]]) {
    const t = times[impl];
    res[impl] = t.ms;
    const row = { case: name, impl, ms: t.ms, min_ms: t.min, runs: t.samples, state_bytes: stateBytes };
    if (impl === "state-copy") row.gbps = (2 * stateBytes) / t.ms / 1e6;
    if (impl === "gdn") row.call_floor_ms = times["call-floor"].ms; // the same backend's run() of an Identity model
    rows.push(row);
    log(`  ${name} ${impl}: ${t.ms.toFixed(3)} ms`);
  }
  for (const [, , s] of impls) await s.release();
  return res;
}

// ---- serving (gdn opset 2): packed sequences, state pools, speculative decoding vs the plain batch ----
/** One-node opset-2 delta-rule model with the given serving inputs (dims symbolic). */
function servingModel(op, serving) {
  const I64 = onnx.TensorProto.DataType.INT64;
  const tensors = ["query", "key", "value", "g", "beta", "initial_state"].map((name) => ({ name }));
  tensors.push({ name: serving.cu ? "cu_seqlens" : "", elemType: I64 });
  tensors.push({ name: serving.idx ? "ssm_state_indices" : "", elemType: I64 });
  if (serving.accepted) tensors.push({ name: "num_accepted_tokens", elemType: I64 });
  while (tensors.at(-1).name === "") tensors.pop();
  const attrs = [attr.int("use_qk_l2norm", 1)];
  if (op === "ChunkGatedDeltaRule") attrs.push(attr.int("chunk_size", 64));
  return oneNodeModel({
    opType: op,
    nodeName: "core",
    gdnOpset: 2,
    inputs: tensors,
    outputs: [{ name: "out" }, { name: "final_state" }],
    attributes: attrs,
  });
}
const i64 = (values, dims) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);
const cuOf = (lengths) => lengths.reduce((cu, n) => [...cu, cu.at(-1) + n], [0]);

/**
 * One serving step: tokens [B,T] (B = 1 when packed), `slots` state rows fed and fetched as the same Tensor (in
 * place, as a serving loop runs), plus the serving inputs. Returns [run, tokens].
 */
async function servingStep(op, B, T, slots, serving, seed) {
  const raw = inputs(B, T, H, K, V, seed);
  const feeds = feedsOf(raw);
  const pool = fill(slots * H * K * V, seed + 7, (u) => (u * 2 - 1) * 0.1);
  const state = new ort.Tensor("float32", pool, [slots, H, K, V]);
  feeds.initial_state = state;
  if (serving.cu) feeds.cu_seqlens = i64(serving.cu, [serving.cu.length]);
  if (serving.idx) {
    const dims = Array.isArray(serving.idx[0]) ? [serving.idx.length, serving.idx[0].length] : [serving.idx.length];
    feeds.ssm_state_indices = i64(serving.idx.flat(), dims);
  }
  if (serving.accepted) feeds.num_accepted_tokens = i64(serving.accepted, [serving.accepted.length]);
  const s = await session(servingModel(op, serving), "gdn");
  const out = new ort.Tensor("float32", new Float32Array(B * T * H * V), [B, T, H, V]);
  const run = () => s.run(feeds, { out, final_state: state });
  await run();
  const first = { out: out.data.slice(), final_state: state.data.slice() }; // from the initial state
  return { run, session: s, tokens: B * T, first };
}

/** Checks that two serving steps over the same tokens and states computed the same (their first runs). */
function checkSame(caseName, a, b) {
  for (const name of ["out", "final_state"]) {
    const e = relativeL2(a.first[name], b.first[name]);
    checks.push({ case: caseName, impl: "gdn", vs: "serve_prefill_b8_t512", output: name, rel_l2: e, ok: e < 1e-4 });
  }
}

/** Times named steps in the same rounds; rows report ms and ms per token; returns {name: ms}. */
async function timeSteps(steps, runs) {
  const times = await timeInterleaved(
    steps.map(([name, st]) => [name, st.run]),
    runs,
    2,
  );
  const res = {};
  for (const [name, st] of steps) {
    const t = times[name];
    res[name] = t.ms / st.tokens;
    const row = { case: name, impl: "gdn", ms: t.ms, min_ms: t.min, runs: t.samples, tokens: st.tokens };
    rows.push({ ...row, ms_per_token: t.ms / st.tokens });
    log(`  ${name}: ${t.ms.toFixed(2)} ms (${((1000 * t.ms) / st.tokens).toFixed(1)} us/token)`);
    await st.session.release();
  }
  return res;
}

async function servePrefillCase() {
  const CH = "ChunkGatedDeltaRule";
  const eight = Array(8).fill(512);
  const uneven = [100, 700, 1250];
  const plain = await servingStep(CH, 8, 512, 8, {}, 3000);
  const packed = await servingStep(CH, 1, 4096, 8, { cu: cuOf(eight) }, 3000); // the same tokens and states
  checkSame("serve_prefill_packed_8x512", packed, plain);
  return timeSteps(
    [
      ["serve_prefill_b8_t512", plain],
      ["serve_prefill_packed_8x512", packed],
      ["serve_prefill_uneven", await servingStep(CH, 1, 2050, 3, { cu: cuOf(uneven) }, 3100)],
    ],
    opt.runs,
  );
}

async function serveDecodeCase() {
  const RE = "RecurrentGatedDeltaRule";
  const slots = Array.from({ length: 8 }, (_, n) => 7 * n + 3); // 8 of 64 pool slots
  const spec = Array.from({ length: 8 }, (_, n) => [0, 1, 2, 3].map((t) => 4 * n + t)); // 32 slots: a draft each
  const accepted = Array.from({ length: 8 }, (_, n) => (n % 4) + 1);
  return timeSteps(
    [
      ["serve_decode_b8", await servingStep(RE, 8, 1, 8, {}, 4000)], // plain decode_b8, same rounds
      ["serve_decode_pool64_b8", await servingStep(RE, 8, 1, 64, { idx: slots }, 4000)],
      [
        "serve_spec_decode_b8_t4",
        await servingStep(RE, 1, 32, 64, { cu: cuOf(Array(8).fill(4)), idx: spec, accepted }, 41),
      ],
    ],
    Math.max(opt.runs, 30),
  );
}

function passCase() {
  const r = spawnSync(process.execPath, ["--expose-gc", join(ROOT, "bench", "pass48.mjs"), DIST], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bench: pass48 failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout.trim().split("\n").pop());
  rows.push({
    case: "pass_48layer",
    impl: "gdn",
    ms: j.ms,
    max_rss_mb: j.maxRssMB,
    base_rss_mb: j.baseRssMB,
    nodes: j.nodes,
    cores: j.fused,
  });
  log(`  pass_48layer: ${j.ms.toFixed(0)} ms, peak RSS ${j.maxRssMB.toFixed(0)} MiB (${j.fused} cores)`);
  return j;
}

// ---- main ----
const machine = machineInfo();
log(
  `bench: ${machine.cpu} (${machine.isa.join(" ")}), ${THREADS} threads, node ${machine.node}, onnxruntime-node ${machine.onnxruntime_node}`,
);
const peakRuns = [0, 1, 2].map(() => JSON.parse(execFileSync(PEAK, ["fma", String(THREADS)], { encoding: "utf8" })));
const peak = { gflops: Math.max(...peakRuns.map((p) => p.gflops)), isa: peakRuns[0].isa, threads: THREADS };
const copy = JSON.parse(execFileSync(PEAK, ["copy", String(256 * 2 ** 20)], { encoding: "utf8" }));
peak.gbps = copy.gbps;
log(`bench: peak ${peak.gflops} GFLOP/s fp32 (${peak.isa}, ${THREADS} threads), memcpy ${peak.gbps} GB/s (256 MiB)`);

const summary = {};
for (const c of CASES) {
  log(`bench: ${c}`);
  if (c === "pass_48layer") summary[c] = passCase();
  else if (c.startsWith("prefill_t")) {
    const m = /^prefill_t(\d+)(?:_hk(\d+))?$/.exec(c);
    if (!m) throw new Error(`bench: unknown case ${c}`);
    summary[c] = await prefillCase(c, Number(m[1]), m[2] ? Number(m[2]) : H);
  } else if (c.startsWith("decode_b")) summary[c] = await decodeCase(c, Number(c.slice(8)));
  else if (c === "serve_prefill") summary[c] = await servePrefillCase();
  else if (c === "serve_decode") summary[c] = await serveDecodeCase();
  else throw new Error(`bench: unknown case ${c}`);
}

// ---- derived figures and targets ----
const targets = [];
for (const row of rows) if (row.gflops !== undefined) row.pct_peak = (100 * row.gflops) / peak.gflops;
for (const [c, r] of Object.entries(summary)) {
  if (c.startsWith("prefill")) {
    const T = Number(/^prefill_t(\d+)/.exec(c)[1]);
    const vsLa = r["ort-linear-attention"] / r.gdn;
    targets.push({ case: c, target: "gdn >= 2x faster than ort-linear-attention", value: vsLa, met: vsLa >= 2 });
    if (r.unfused !== undefined) {
      const vsU = r.unfused / r.gdn;
      targets.push({ case: c, target: "gdn >= 10x faster than unfused", value: vsU, met: vsU >= 10 });
    }
    if (T >= 2048) {
      const pct = (100 * chunkFlops(1, T)) / r.gdn / 1e6 / peak.gflops;
      targets.push({ case: c, target: "gdn >= 60% of fp32 peak (chunked-form FLOPs)", value: pct, met: pct >= 60 });
    }
  } else if (c.startsWith("decode")) {
    const vsLa = r["ort-linear-attention"] / r.gdn;
    targets.push({ case: c, target: "gdn >= 2x faster than ort-linear-attention", value: vsLa, met: vsLa >= 2 });
    const vsCopy = r.gdn / r["state-copy"];
    targets.push({ case: c, target: "gdn within 1.5x of state-copy", value: vsCopy, met: vsCopy <= 1.5 });
  } else if (c === "serve_prefill") {
    // time per token of packed / uneven sequences vs the plain batch B=8, T=512
    for (const name of ["serve_prefill_packed_8x512", "serve_prefill_uneven"]) {
      const x = r[name] / r.serve_prefill_b8_t512;
      targets.push({ case: name, target: "per token within 1.2x of serve_prefill_b8_t512", value: x, met: x <= 1.2 });
    }
  } else if (c === "serve_decode") {
    for (const name of ["serve_decode_pool64_b8", "serve_spec_decode_b8_t4"]) {
      const x = r[name] / r.serve_decode_b8;
      const target = "per token within 1.2x of serve_decode_b8 (plain decode_b8)";
      targets.push({ case: name, target, value: x, met: x <= 1.2 });
    }
  } else if (c === "pass_48layer") {
    targets.push({ case: c, target: "pass < 2000 ms", value: r.ms, met: r.ms < 2000 });
    targets.push({ case: c, target: "pass peak RSS < 1 GB", value: r.maxRssMB, met: r.maxRssMB * 2 ** 20 < 1e9 });
  }
}
for (const row of rows) {
  const r = summary[row.case];
  if (row.impl !== "gdn" && typeof r?.gdn === "number") row.ratio_vs_gdn = row.ms / r.gdn;
}

const fmt = (x, d = 2) => (x === undefined ? "" : x.toFixed(d));
console.log(
  `\n${machine.cpu}, ${machine.isa.join("/")}, ${THREADS} threads; peak ${peak.gflops} GFLOP/s, memcpy ${peak.gbps} GB/s`,
);
console.log(`| case | impl | ms (median) | GFLOP/s | % peak | x gdn time |`);
console.log(`| --- | --- | ---: | ---: | ---: | ---: |`);
for (const row of rows) {
  const extra = row.case === "pass_48layer" ? ` (peak RSS ${fmt(row.max_rss_mb, 0)} MiB)` : "";
  console.log(
    `| ${row.case} | ${row.impl}${extra} | ${fmt(row.ms, row.ms < 10 ? 3 : 1)} | ${fmt(row.gflops, 1)} | ${fmt(row.pct_peak, 0)} | ${fmt(row.ratio_vs_gdn)} |`,
  );
}
console.log(`\n| target | case | measured | met |`);
console.log(`| --- | --- | ---: | --- |`);
for (const t of targets) console.log(`| ${t.target} | ${t.case} | ${fmt(t.value)} | ${t.met ? "yes" : "NO"} |`);
const bad = checks.filter((c) => !c.ok);
console.log(
  `\ncorrectness: ${checks.length - bad.length}/${checks.length} output comparisons within rel L2 ${LONG_SEQUENCE_FLOAT32_TOLERANCE}` +
    (bad.length ? ` (FAILED: ${bad.map((b) => `${b.case}/${b.impl}/${b.output}`).join(", ")})` : ""),
);

if (opt.json) {
  writeFileSync(
    opt.json,
    JSON.stringify({ machine, peak, rows, targets, checks, date: new Date().toISOString() }, null, 2) + "\n",
  );
  log(`bench: wrote ${opt.json}`);
}
if (bad.length) process.exitCode = 1;
