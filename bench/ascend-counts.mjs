#!/usr/bin/env node
// Device-side counts of the bench cases on the ascend backend over the gdn-fuse CANN simulator
// (`npm run bench:ascend [-- --cases a,b] [-- --state-layout vk]`): per step (one session.run, after a
// warm-up run), the aclnn kernels launched, the host's synchronisations with the device, and the host<->device
// copies. Counts, not times: the simulator's time says nothing about a device. Needs `npm run build:ts`.
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const CASES = {
  prefill_t512: { op: "ChunkGatedDeltaRule", B: 1, T: 512 },
  prefill_t2048: { op: "ChunkGatedDeltaRule", B: 1, T: 2048 },
  decode_b1: { op: "RecurrentGatedDeltaRule", B: 1, T: 1 },
  decode_b8: { op: "RecurrentGatedDeltaRule", B: 8, T: 1 },
  decode_b64: { op: "RecurrentGatedDeltaRule", B: 64, T: 1 },
};
const DEFAULT_CASES = ["prefill_t512", "decode_b1", "decode_b8", "decode_b64"];
const H = 32,
  K = 128,
  V = 128; // bench/run.mjs's shapes (Qwen3-Next's value heads and head sizes)

const argv = process.argv.slice(2).filter((a) => a !== "--");
let names = DEFAULT_CASES;
let layout = "kv";
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--cases") names = argv[++i].split(",");
  else if (argv[i] === "--state-layout") layout = argv[++i];
  else {
    console.error("usage: node bench/ascend-counts.mjs [--cases a,b] [--state-layout kv|vk]");
    process.exit(2);
  }
}
const unknown = names.filter((n) => !CASES[n]);
if (unknown.length > 0 || !["kv", "vk"].includes(layout)) {
  const cases = Object.keys(CASES).join(", ");
  console.error(`bench:ascend: unknown case ${unknown.join(", ")} or layout ${layout}; cases: ${cases}`);
  process.exit(2);
}
const dist = (p) => join(ROOT, "dist", "src", p);
if (!existsSync(dist("index.js"))) {
  console.error("bench:ascend: dist/ is missing; run npm run build:ts");
  process.exit(1);
}

process.env.GDN_FUSE_ASCEND = "sim";
const ort = await import("onnxruntime-node");
const { deltaRuleModel, onnx } = await import(pathToFileURL(dist("index.js")).href);
const { ascendSimCounters, ascendStats } = await import(pathToFileURL(dist("runtime/index.js")).href);

function model(c) {
  const attrs = [
    { name: "use_qk_l2norm", type: onnx.AttributeProto.AttributeType.INT, i: 1 },
    { name: "state_layout", type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(layout) },
  ];
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-counts-")), "model.onnx");
  writeFileSync(file, deltaRuleModel(c.op, { B: c.B, T: c.T, Hk: H, Hv: H, K, V }, attrs));
  return file;
}

function feeds(session) {
  const out = {};
  for (const m of session.inputMetadata) {
    const n = m.shape.reduce((a, b) => a * b, 1);
    const g = m.name === "g";
    const data = Float32Array.from({ length: n }, (_, i) => (g ? -0.1 : ((i % 13) - 6) / 60));
    out[m.name] = new ort.Tensor("float32", data, m.shape);
  }
  return out;
}

const diff = (a, b) => Object.fromEntries(Object.keys(a).map((k) => [k, a[k] - b[k]]));
const mib = (bytes) => (bytes / 2 ** 20).toFixed(2);

console.log(
  `| case | op | kernels launched | host syncs (stream + event) | H2D copies (MiB) | D2H copies (MiB) | ` +
    `device allocations |`,
);
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
for (const name of names) {
  const c = CASES[name];
  const options = { executionProviders: [{ name: "ascend", deviceId: 0 }] };
  const session = await ort.InferenceSession.create(model(c), options);
  const x = feeds(session);
  await session.run(x); // warm-up
  const [stats0, sim0] = [ascendStats(session), ascendSimCounters()];
  await session.run(x);
  const [stats1, sim1] = [ascendStats(session), ascendSimCounters()];
  const s = diff(sim1, sim0);
  const fields = ["copiesH2D", "copiesD2H", "bytesH2D", "bytesD2H"];
  const copies = Object.fromEntries(fields.map((k) => [k, stats1[k] - stats0[k]]));
  const op = Object.keys(stats1.nodesOnDevice).join(", ") || "(none on the device)";
  console.log(
    `| ${name} (B=${c.B}, T=${c.T}) | ${op} | ${s.launches} | ${s.streamSyncs} + ${s.eventSyncs} | ` +
      `${copies.copiesH2D} (${mib(copies.bytesH2D)}) | ${copies.copiesD2H} (${mib(copies.bytesD2H)}) | ${s.mallocs} |`,
  );
  await session.release();
}
console.log(
  `\nH=${H}, K=${K}, V=${V}, float32 graph I/O, state layout ${layout}, use_qk_l2norm=1. Counts per step ` +
    "(one session.run); the H2D/D2H columns are the session's own copies (ascendStats), the rest the simulator's.",
);
