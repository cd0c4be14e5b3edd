/**
 * The `ascend` backend over the gdn-fuse CANN simulator (GDN_FUSE_ASCEND=sim): the fused core fixtures run
 * their delta-rule ops in the Ascend plugin EP (aclnn gated-delta ops, bf16 on the device) and match their
 * test data within bf16 tolerances; placement, fallback and the failure modes are reported as documented.
 * `npm run test:ascend` runs the same file against real CANN (docs/ascend.md).
 */
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { ascendStats, type AscendTestFault } from "../src/runtime/index.js";
import { CORE_PASSES, fixtureCases, fuseCase, MODELS, runtimeLoadError } from "./helpers/cases.js";
import { readTensorProto, relativeL2, type TensorFile } from "./helpers/tensor-io.js";

const REAL = process.env.GDN_FUSE_ASCEND_REAL === "1"; // npm run test:ascend: real CANN, no simulator
const skip = runtimeLoadError();
const savedEnv = process.env.GDN_FUSE_ASCEND;
beforeAll(() => {
  if (!REAL) process.env.GDN_FUSE_ASCEND = "sim";
});
afterAll(() => {
  if (savedEnv === undefined) delete process.env.GDN_FUSE_ASCEND;
  else process.env.GDN_FUSE_ASCEND = savedEnv;
});

// bf16 on the device (inputs, outputs and the state are rounded to 8 mantissa bits; accumulation in float32).
const BF16_TOLERANCE = 2e-2;
const CORES = fixtureCases().filter((c) => c.startsWith("chunk_") || c.startsWith("recurrent_"));

function dataSet(name: string, prefix: "input" | "output"): TensorFile[] {
  const dir = join(MODELS, name, "test_data_set_0");
  const files = readdirSync(dir).filter((f) => f.startsWith(`${prefix}_`) && f.endsWith(".pb"));
  files.sort((a, b) => Number(a.slice(prefix.length + 1, -3)) - Number(b.slice(prefix.length + 1, -3)));
  return files.map((f) => readTensorProto(join(dir, f)));
}

/** bfloat16 travels as uint16 bits. */
const toTensor = (t: TensorFile) => new ort.Tensor((t.type === "bfloat16" ? "uint16" : t.type) as "float32", t.data as Float32Array, t.dims);

async function fusedFile(name: string): Promise<string> {
  const { model } = await fuseCase(name, { passes: CORE_PASSES });
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-")), "model.onnx");
  writeFileSync(file, encodeMessage(onnx.ModelProto, model.proto as onnx.ModelProto));
  return file;
}

async function ascendSession(file: string, testFault?: AscendTestFault): Promise<ort.InferenceSession> {
  const ep = { name: "ascend", deviceId: 0, ...(testFault ? { testFault } : {}) };
  return ort.InferenceSession.create(file, { executionProviders: [ep as unknown as string], intraOpNumThreads: 2 });
}

/** Runs the case on the session; relative L2 error of each output against the case's test data. */
async function errors(session: ort.InferenceSession, name: string): Promise<number[]> {
  const feeds: Record<string, ort.Tensor> = {};
  const inputs = dataSet(name, "input");
  session.inputNames.forEach((n, i) => (feeds[n] = toTensor(inputs[i]!)));
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
      const onDevice = Object.values(stats.nodesOnDevice).reduce((a, b) => a + b, 0);
      expect(onDevice).toBe(1);
      expect(stats.fallbackReasons).toEqual([]);
      expect(stats.copiesH2D).toBeGreaterThan(before.copiesH2D);
      expect(stats.copiesD2H).toBeGreaterThan(before.copiesD2H);
    } finally {
      await session.release();
    }
  });
});
