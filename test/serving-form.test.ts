/**
 * toServingForm: the serving form of each fused layer fixture (graph inputs and outputs, refusals), and its outputs
 * against running each sequence alone through the original fused layer. The numeric part needs the delta-rule
 * serving inputs (serve-delta): it runs when a one-node RecurrentGatedDeltaRule with cu_seqlens runs.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import ts from "typescript";
import { beforeAll, describe, expect, it } from "vitest";
import { fuseModel, GdnFuseError, onnx, oneNodeModel, toServingForm } from "../src/index.js";
import { encodeMessage } from "../src/ir/onnx.js";
import { loadRuntime } from "../src/runtime/index.js";
import { readTensorProto } from "./helpers/tensor-io.js";
import { ROOT } from "./helpers/cases.js";
import { transpileRuntime } from "./helpers/runtime-js.js";

const MODELS = join(ROOT, "models");
const ready = loadRuntime().opsLibraryPath !== null;
const LAYERS = [
  { name: "layer_qwen35_decode_b2", decode: true },
  { name: "layer_qwen3next_decode_b2", decode: true },
  { name: "layer_qwen35_prefill_t64", decode: false },
  { name: "layer_qwen3next_prefill_t96", decode: false },
];

async function fused(name: string): Promise<onnx.ModelProto> {
  const proto = onnx.ModelProto.decode(readFileSync(join(MODELS, name, "model.onnx")));
  await fuseModel(proto, { probe: false });
  return proto;
}
const names = (vs: onnx.IValueInfoProto[] | null | undefined) => (vs ?? []).map((v) => v.name);

/** Capability probe: a recurrent delta rule with cu_seqlens (gdn opset 2) runs. */
async function servingDeltaRuns(): Promise<boolean> {
  if (!ready) return false;
  const model = oneNodeModel({
    opType: "RecurrentGatedDeltaRule",
    gdnOpset: 2,
    inputs: [
      { name: "q", dims: [1, 2, 1, 2] },
      { name: "k", dims: [1, 2, 1, 2] },
      { name: "v", dims: [1, 2, 1, 2] },
      { name: "g", dims: [1, 2, 1] },
      { name: "beta", dims: [1, 2, 1] },
      { name: "s", dims: [2, 1, 2, 2] },
      { name: "cu", elemType: 7, dims: [3] },
    ],
    outputs: [{ name: "o" }, { name: "fs" }],
  });
  try {
    const session = await ort.InferenceSession.create(model, { executionProviders: ["gdn"] });
    const f = (n: number, dims: number[]) => new ort.Tensor("float32", new Float32Array(n).fill(0.5), dims);
    await session.run({
      q: f(4, [1, 2, 1, 2]),
      k: f(4, [1, 2, 1, 2]),
      v: f(4, [1, 2, 1, 2]),
      g: f(2, [1, 2, 1]),
      beta: f(2, [1, 2, 1]),
      s: f(8, [2, 1, 2, 2]),
      cu: new ort.Tensor("int64", BigInt64Array.of(0n, 1n, 2n), [3]),
    });
    await session.release();
    return true;
  } catch {
    return false;
  }
}
const servingDeltaAvailable = await servingDeltaRuns();

describe("toServingForm: graph inputs and outputs", () => {
  it.each(LAYERS)("$name", async ({ name, decode }) => {
    const serving = toServingForm(await fused(name));
    const g = serving.graph!;
    expect(names(g.input)).toEqual([
      "hidden_states",
      "cu_seqlens",
      "state_indices",
      "conv_state_pool",
      "recurrent_state_pool",
    ]);
    expect(names(g.output)).toEqual(["output", "conv_state_pool_out", "recurrent_state_pool_out"]);
    expect(serving.opsetImport!.find((o) => o.domain === "gdn")!.version).toBe(2);
    const conv = g.node!.find((n) => n.opType === "CausalConv1d")!;
    expect(conv.input!.slice(3)).toEqual(["conv_state_pool", "cu_seqlens", "state_indices", ""]);
    const delta = g.node!.find((n) => n.opType === (decode ? "RecurrentGatedDeltaRule" : "ChunkGatedDeltaRule"))!;
    expect(delta.input!.slice(5)).toEqual(["recurrent_state_pool", "cu_seqlens", "state_indices"]);
  });

  it("speculative: [N, max_tokens] indices, accepted counts, the recurrent op, conv state W-2+max_tokens", async () => {
    const serving = toServingForm(await fused("layer_qwen35_prefill_t64"), { speculative: { maxTokens: 4 } });
    const g = serving.graph!;
    expect(names(g.input)).toContain("num_accepted_tokens");
    expect(g.node!.filter((n) => n.opType === "RecurrentGatedDeltaRule")).toHaveLength(1);
    const pool = g.input!.find((i) => i.name === "conv_state_pool")!;
    expect(pool.type!.tensorType!.shape!.dim!.map((d) => d.dimValue ?? d.dimParam)).toEqual(["slots", 224, 6]);
  });

  it("refuses what it cannot rewrite, with the reason", async () => {
    const unfused = onnx.ModelProto.decode(readFileSync(join(MODELS, "layer_qwen35_decode_b2", "model.onnx")));
    expect(() => toServingForm(unfused)).toThrow(
      new GdnFuseError("E_USAGE", "toServingForm: the model has 0 gdn CausalConv1d nodes, a fused layer has 1"),
    );
    expect(() => toServingForm(unfused)).toThrow(GdnFuseError);
    const model = await fused("layer_qwen35_decode_b2");
    expect(() => toServingForm(model, { convStateSize: 2 })).toThrow(
      "toServingForm: convStateSize must be an integer >= W-1 = 3, got 2",
    );
  });
});

/** Runs `model` (bytes) on float32 feeds; int64 feeds given as bigint arrays. */
async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["gdn"], intraOpNumThreads: 2 });
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}
const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor("float32", data, dims);
const i64 = (v: number[], dims = [v.length]) => new ort.Tensor("int64", BigInt64Array.from(v.map(BigInt)), dims);

describe.skipIf(!servingDeltaAvailable)("toServingForm: equals each sequence alone through the fused layer", () => {
  let layers: Record<string, onnx.ModelProto> = {};
  beforeAll(async () => {
    layers = Object.fromEntries(await Promise.all(LAYERS.map(async (l) => [l.name, await fused(l.name)] as const)));
  });

  it.each(LAYERS)("$name: its test batch as packed sequences in pool slots 3 and 1", async ({ name, decode }) => {
    const dir = join(MODELS, name, "test_data_set_0");
    const x = readTensorProto(join(dir, "input_0.pb"));
    const [B, T, H] = x.dims as [number, number, number];
    const original = encodeMessage(onnx.ModelProto, layers[name]!);
    const feedsAlone: Record<string, ort.Tensor> = { hidden_states: f32(x.data as Float32Array, x.dims) };
    const serving = toServingForm(layers[name]!, decode ? { convStateSize: 4 } : {});
    const g = serving.graph!;
    const dimsOf = (n: string) =>
      g
        .input!.find((i) => i.name === n)!
        .type!.tensorType!.shape!.dim!.slice(1)
        .map((d) => Number(d.dimValue));
    const [C, S] = dimsOf("conv_state_pool");
    const st = dimsOf("recurrent_state_pool");
    const slots = 4,
      slotOf = [3, 1];
    const convPool = new Float32Array(slots * C! * S!);
    const recPool = new Float32Array(slots * st.reduce((a, b) => a * b, 1));
    if (decode) {
      const conv = readTensorProto(join(dir, "input_1.pb")),
        rec = readTensorProto(join(dir, "input_2.pb"));
      feedsAlone.conv_state = f32(conv.data as Float32Array, conv.dims);
      feedsAlone.recurrent_state = f32(rec.data as Float32Array, rec.dims);
      const cs = C! * S!,
        rs = recPool.length / slots;
      for (let b = 0; b < B; b++) {
        convPool.set((conv.data as Float32Array).subarray(b * cs, (b + 1) * cs), slotOf[b]! * cs);
        recPool.set((rec.data as Float32Array).subarray(b * rs, (b + 1) * rs), slotOf[b]! * rs);
      }
    }
    const alone = await run(original, feedsAlone);
    const r = await run(encodeMessage(onnx.ModelProto, serving), {
      hidden_states: f32(x.data as Float32Array, [1, B * T, H]),
      cu_seqlens: i64(Array.from({ length: B + 1 }, (_, n) => n * T)),
      state_indices: i64(slotOf),
      conv_state_pool: f32(convPool, [slots, C!, S!]),
      recurrent_state_pool: f32(recPool, [slots, ...st]),
    });
    expect(Array.from(r.output!.data as Float32Array)).toEqual(Array.from(alone.output!.data as Float32Array));
    if (decode) {
      const rs = recPool.length / slots;
      const newRec = alone.new_recurrent_state!.data as Float32Array;
      for (let b = 0; b < B; b++) {
        const got = (r.recurrent_state_pool_out!.data as Float32Array).subarray(slotOf[b]! * rs, (slotOf[b]! + 1) * rs);
        expect(Array.from(got)).toEqual(Array.from(newRec.subarray(b * rs, (b + 1) * rs)));
      }
    }
  });
});

describe.skipIf(!servingDeltaAvailable)("examples/serving-decode-loop.mjs (docs/serving.md)", () => {
  it("runs: sequences join and leave, a speculative step with 3 drafts and 1 accepted; all as if run alone", () => {
    const { dir } = transpileRuntime();
    transpilePasses(dir);
    const r = spawnSync(process.execPath, [join(ROOT, "examples", "serving-decode-loop.mjs")], {
      env: { ...process.env, GDN_FUSE_SRC: join(dir, "src") },
      encoding: "utf8",
      timeout: 120_000,
    });
    expect(r.stderr).not.toContain("Error");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^OK: 3 sequences running, every output within .* of running alone$/m);
  });
});

/** The fusion passes (passes/*.ts, imported by src/pipeline) beside the plain-JS copy of src/ that the example loads. */
function transpilePasses(dir: string): void {
  for (const f of readdirSync(join(ROOT, "passes"), { recursive: true, encoding: "utf8" })) {
    if (!f.endsWith(".ts") || f.endsWith(".test.ts")) continue;
    const js = ts.transpileModule(readFileSync(join(ROOT, "passes", f), "utf8"), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: f,
    }).outputText;
    const dest = join(dir, "passes", f.replace(/\.ts$/, ".js"));
    mkdirSync(join(dest, ".."), { recursive: true });
    writeFileSync(dest, js);
  }
}
