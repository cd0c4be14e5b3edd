// Runs fixture cases through this machine's onnxruntime-node (stock CPU EP, optimizer off) against
// their test_data_set_N/output_N.pb and records the relative L2 errors in models/manifest.json as
// ort_node_relerr (test_data_set_0) and ort_node_relerr_other_batch (test_data_set_1, where present).
//
//   node models/check-ort-node.mjs case [case ...]
//
// bfloat16 cases: ORT's CPU EP has no bfloat16 Conv/MatMul/..., so for the check ONLY the graph is
// widened to float32 in memory (bf16 initializers, Constants, Casts to bf16, graph inputs/outputs and
// value_info become float32) and the inputs are fed as float32 (exact).  The result then differs from
// PyTorch by bf16 rounding of the intermediate tensors; ort_node_mode says "bf16-widened-to-fp32".
// The committed model.onnx is never changed.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";

const { onnx } = onnxProto;
const DT = onnx.TensorProto.DataType;
const HERE = dirname(fileURLToPath(import.meta.url));

const f16 = (h) => {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
};
const bf16Buf = new DataView(new ArrayBuffer(4));
const bf16 = (h) => (bf16Buf.setUint32(0, h << 16), bf16Buf.getFloat32(0));

function decode(p) {
  const dims = p.dims.map(Number);
  const n = dims.reduce((a, b) => a * b, 1);
  const raw = p.rawData && p.rawData.length ? Uint8Array.from(p.rawData) : null;
  switch (p.dataType) {
    case DT.FLOAT: return { type: "float32", dims, data: raw ? new Float32Array(raw.buffer) : Float32Array.from(p.floatData) };
    case DT.FLOAT16: return { type: "float16", dims, data: raw ? new Uint16Array(raw.buffer) : Uint16Array.from(p.int32Data) };
    case DT.BFLOAT16: return { type: "bfloat16", dims, data: raw ? new Uint16Array(raw.buffer) : Uint16Array.from(p.int32Data) };
    case DT.INT64: return { type: "int64", dims, data: raw ? new BigInt64Array(raw.buffer) : BigInt64Array.from(p.int64Data.map((v) => BigInt(v.toString()))) };
    default: throw new Error(`data_type ${p.dataType} (${n} elements) not handled`);
  }
}
const asF64 = (t) => Float64Array.from(t.data, (v) => (t.type === "float16" ? f16(v) : t.type === "bfloat16" ? bf16(v) : Number(v)));

/** bf16 -> f32 in place on a TensorProto. */
function widenTensor(t) {
  if (t.dataType !== DT.BFLOAT16) return;
  const bits = decode(t).data;
  const f = Float32Array.from(bits, bf16);
  t.dataType = DT.FLOAT; t.rawData = new Uint8Array(f.buffer); t.int32Data = [];
}
function widenType(vi) {
  const tt = vi.type?.tensorType;
  if (tt && tt.elemType === DT.BFLOAT16) tt.elemType = DT.FLOAT;
}
function widenGraph(g) {
  g.initializer.forEach(widenTensor);
  [...g.input, ...g.output, ...g.valueInfo].forEach(widenType);
  for (const n of g.node) {
    for (const a of n.attribute) {
      if (a.name === "to" && Number(a.i) === DT.BFLOAT16) a.i = DT.FLOAT;
      if (a.t) widenTensor(a.t);
      if (a.g) widenGraph(a.g);
    }
  }
}

function dataSet(dir, prefix) {
  return readdirSync(dir).filter((f) => f.startsWith(prefix + "_") && f.endsWith(".pb"))
    .sort((a, b) => Number(a.slice(prefix.length + 1, -3)) - Number(b.slice(prefix.length + 1, -3)))
    .map((f) => decode(onnx.TensorProto.decode(readFileSync(join(dir, f)))));
}

async function check(name) {
  const m = onnx.ModelProto.decode(readFileSync(join(HERE, name, "model.onnx")));
  const isBf16 = (vi) => vi.type?.tensorType?.elemType === DT.BFLOAT16;
  const hasBf16 = [...m.graph.input, ...m.graph.output].some(isBf16) || m.graph.initializer.some((t) => t.dataType === DT.BFLOAT16);
  if (hasBf16) widenGraph(m.graph);
  const bytes = onnx.ModelProto.encode(m).finish();
  const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: "disabled", intraOpNumThreads: 2 });
  const res = {};
  for (const [set, key] of [["test_data_set_0", "ort_node_relerr"], ["test_data_set_1", "ort_node_relerr_other_batch"]]) {
    const dir = join(HERE, name, set);
    if (!existsSync(dir)) continue;
    const ins = dataSet(dir, "input"), outs = dataSet(dir, "output");
    const feeds = {};
    s.inputNames.forEach((n, i) => {
      const t = ins[i];
      feeds[n] = t.type === "bfloat16" ? new ort.Tensor("float32", Float32Array.from(t.data, bf16), t.dims)
        : new ort.Tensor(t.type, t.data, t.dims);
    });
    const got = await s.run(feeds);
    res[key] = s.outputNames.map((n, i) => {
      const a = asF64(got[n]), b = asF64(outs[i]);
      let num = 0, den = 0;
      for (let j = 0; j < b.length; j++) { num += (a[j] - b[j]) ** 2; den += b[j] ** 2; }
      return a.length !== b.length ? Infinity : Math.sqrt(num) / (Math.sqrt(den) || 1);
    });
  }
  await s.release();
  res.ort_node_status = "ok";
  res.ort_node_mode = hasBf16 ? "bf16-widened-to-fp32" : "as-is";
  res.ort_node_version = ort.env.versions?.common ?? "1.30.0";
  return res;
}

const manifestPath = join(HERE, "manifest.json");
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
for (const name of process.argv.slice(2)) {
  let r;
  try { r = await check(name); } catch (e) { r = { ort_node_status: "failed", ort_node_error: String(e?.message ?? e).slice(0, 500) }; }
  console.log(name, JSON.stringify(r));
  manifest[name] = { ...manifest[name], ...r };
}
writeFileSync(manifestPath, JSON.stringify(manifest, null, 1) + "\n");
