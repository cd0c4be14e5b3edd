/**
 * Every model fixture in models/ (cores and whole layers, prefill and decode, fp32/fp16/bf16), fused, on the
 * `ascend` backend over the CANN simulator (or real CANN under `npm run test:ascend`): it matches its test data
 * within the device's bf16 tolerance, the ops of DEVICE_OPS run on the device, and the same model gives exactly
 * the CPU backend's result when the EP declines every node.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { ascendStats, type AscendTestFault } from "../src/runtime/index.js";
import { fixtureCases, fuseCase, histogram, MODELS, runtimeLoadError, TOLERANCE } from "./helpers/cases.js";
import { readDataSet, relativeL2, toOrtTensor } from "./helpers/tensor-io.js";
import { useAscendDevice } from "./helpers/ascend.js";

/**
 * The op types the Ascend EP must run on the device in every fused fixture: the single list to extend when the
 * layer ops (gdn.CausalConv1d, gdn.GatedDeltaGating, gdn.GatedRMSNorm, MatMul, ...) get device kernels.
 */
// Every gdn op runs on the device; test/ascend-layer.test.ts checks the standard ops of each layer too.
export const DEVICE_OPS = [
  "gdn.ChunkGatedDeltaRule",
  "gdn.RecurrentGatedDeltaRule",
  "gdn.CausalConv1d",
  "gdn.GatedDeltaGating",
  "gdn.GatedRMSNorm",
];
/** The device computes in bf16 with float32 accumulation, whatever the model's element type. */
const DEVICE_TOLERANCE = TOLERANCE.bfloat16!;

const skip = runtimeLoadError();
useAscendDevice();

/** The case's test_data_set_0 input or output tensors, in order. */
const dataSet = (name: string, prefix: "input" | "output") =>
  readDataSet(join(MODELS, name, "test_data_set_0"), prefix);

type Outputs = Record<string, ort.Tensor>;

async function run(file: string, ep: unknown, name: string): Promise<{ out: Outputs; session: ort.InferenceSession }> {
  const session = await ort.InferenceSession.create(file, { executionProviders: [ep as string], intraOpNumThreads: 2 });
  const inputs = dataSet(name, "input");
  const feeds: Record<string, ort.Tensor> = {};
  session.inputNames.forEach((n, i) => (feeds[n] = toOrtTensor(inputs[i]!)));
  return { out: await session.run(feeds), session };
}

/** Relative L2 error of each output against the case's test data. */
function errors(out: Outputs, outputNames: readonly string[], name: string): number[] {
  return dataSet(name, "output").map((want, i) => {
    const got = out[outputNames[i]!]!;
    return relativeL2(want.type === "bfloat16" ? { type: "bfloat16", data: got.data } : got, want);
  });
}

/**
 * ORT's CPU EP has no bfloat16 MatMul/Einsum (layer-halfprec.test.ts does the same): in bf16 layers those read
 * Cast(float32) inputs and Cast their output back (float32 accumulation, one rounding, as a bf16 GEMM does).
 */
function widenStockBf16(graph: onnx.IGraphProto): void {
  const bf16 = new Set<string>();
  for (const v of [...graph.valueInfo!, ...graph.input!]) if (v.type?.tensorType?.elemType === BF16) bf16.add(v.name!);
  for (const t of graph.initializer!) if (t.dataType === BF16) bf16.add(t.name!);
  const cast = (input: string, output: string, to: number): onnx.INodeProto => ({
    opType: "Cast",
    input: [input],
    output: [output],
    attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: to }],
  });
  graph.node = graph.node!.flatMap((n) => {
    if (n.domain || !["MatMul", "Einsum"].includes(n.opType!) || !n.input!.some((i) => bf16.has(i))) return [n];
    const ins = n.input!.map((i) => `${n.name}_${i}_f32`);
    const y = n.output![0]!;
    return [
      ...n.input!.map((i, k) => cast(i, ins[k]!, 1)),
      { ...n, input: ins, output: [`${y}_f32`] },
      cast(`${y}_f32`, y, BF16),
    ];
  });
}
const BF16 = onnx.TensorProto.DataType.BFLOAT16;

async function fusedFile(name: string): Promise<{ file: string; ops: Record<string, number> }> {
  const { model } = await fuseCase(name, { probe: false });
  if (name.endsWith("_bf16")) widenStockBf16(model.proto.graph!);
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-model-")), "model.onnx");
  writeFileSync(file, encodeMessage(onnx.ModelProto, model.proto as onnx.ModelProto));
  return { file, ops: histogram(model.proto) };
}

const ascend = (testFault?: AscendTestFault) => ({ name: "ascend", deviceId: 0, ...(testFault ? { testFault } : {}) });

describe.skipIf(skip !== undefined)("every fused model in models/ on the ascend backend", () => {
  it.each(fixtureCases())("%s", async (name) => {
    const { file, ops } = await fusedFile(name);
    const device = await run(file, ascend(), name);
    try {
      for (const e of errors(device.out, device.session.outputNames, name)) expect(e).toBeLessThan(DEVICE_TOLERANCE);
      const stats = ascendStats(device.session);
      const want = Object.fromEntries(DEVICE_OPS.filter((op) => ops[op]).map((op) => [op, ops[op]]));
      expect(want["gdn.ChunkGatedDeltaRule"] ?? want["gdn.RecurrentGatedDeltaRule"]).toBeGreaterThan(0);
      for (const [op, count] of Object.entries(want)) expect(stats.nodesOnDevice[op], op).toBe(count);
      expect(stats.fallbackReasons.filter((r) => DEVICE_OPS.some((op) => r.startsWith(`${op} `)))).toEqual([]);
    } finally {
      await device.session.release();
    }

    // Declined by the EP, every node runs on our CPU kernels: exactly the gdn backend's outputs.
    const declined = await run(file, ascend("decline_all"), name);
    const cpu = await run(file, "gdn", name);
    try {
      expect(ascendStats(declined.session).nodesOnDevice).toEqual({});
      for (const output of cpu.session.outputNames) {
        expect(Array.from(declined.out[output]!.data as Float32Array), output).toEqual(
          Array.from(cpu.out[output]!.data as Float32Array),
        );
      }
    } finally {
      await declined.session.release();
      await cpu.session.release();
    }
  });
});
