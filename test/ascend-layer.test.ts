/**
 * Whole fused gated-delta layers on the `ascend` backend over the CANN simulator (GDN_FUSE_ASCEND=sim): every
 * node of every layer fixture (prefill and decode, Qwen3-Next and Qwen3.5, fp32/fp16/bf16, dynamic batch) runs
 * on the device (strict placement), the outputs match the fixture's test data, and the only host<->device
 * copies of a run are the graph's own inputs and outputs. `npm run test:ascend` runs it against real CANN.
 */
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { seededRandom } from "../src/numeric.js";
import { oneNodeModel } from "../src/ops-model.js";
import { ascendSimCounters, ascendStats } from "../src/runtime/index.js";
import { fixtureCases, fuseCase, histogram, MODELS, runtimeLoadError, TOLERANCE } from "./helpers/cases.js";
import { numberToFloat16, readDataSet, relativeL2, toOrtTensor, type TensorFile } from "./helpers/tensor-io.js";
import { REAL_ASCEND, useAscendDevice } from "./helpers/ascend.js";

const skip = runtimeLoadError();
useAscendDevice();

/**
 * The device runs the delta-rule core in bf16 (q, k, v, beta, state rounded to 8 mantissa bits, unit roundoff
 * 2^-9 ~ 2e-3, float32 accumulation) and the rest in float32 or the model's type. One bf16 rounding of the core's
 * operands gives a relative L2 error of a few 1e-3 after the gated norm and the output projection, whatever the
 * model's own type: the tolerance the fixtures use for bfloat16 outputs (test/helpers/cases.ts, 1e-2, which is
 * src/numeric.ts's bfloat16 2e-3 widened for PyTorch's per-op bf16 rounding) is the one that fits.
 */
const DEVICE_TOLERANCE = TOLERANCE.bfloat16!;
const LAYERS = fixtureCases().filter((c) => c.startsWith("layer_"));
const BYTES: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2, int64: 8, int32: 4 };

const bytesOf = (t: TensorFile) => t.dims.reduce((a, d) => a * Number(d), 1) * BYTES[t.type]!;

/**
 * ONNX's Einsum takes no bfloat16 (Einsum-12's T), so ORT refuses the fused bf16 layers' Einsum before any EP
 * sees it. As in test/layer-halfprec.test.ts, its operands are cast to float32 and its result back to bfloat16
 * (float32 accumulation, one rounding: what a bf16 GEMM does); the Casts run on the device too, except the one
 * of the weight, which ORT folds into a float32 initializer. Returns the number of Casts left after folding.
 */
function widenBf16Einsum(model: onnx.IModelProto): number {
  const g = model.graph!;
  const types = new Map<string, number>();
  for (const v of [...g.valueInfo!, ...g.input!, ...g.output!]) types.set(v.name!, v.type!.tensorType!.elemType!);
  for (const t of g.initializer!) types.set(t.name!, t.dataType!);
  const cast = (input: string, output: string, to: number): onnx.INodeProto => ({
    opType: "Cast",
    name: output,
    input: [input],
    output: [output],
    attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: to }],
  });
  const initializers = new Set(g.initializer!.map((t) => t.name!));
  let casts = 0;
  g.node = g.node!.flatMap((n) => {
    if (n.opType !== "Einsum" || !n.input!.some((i) => types.get(i) === BF16)) return [n];
    const inputs = n.input!.map((i) => `${n.name}_${i}_f32`);
    const y = n.output![0]!;
    casts += 1 + n.input!.filter((i) => !initializers.has(i)).length;
    return [
      ...n.input!.map((i, k) => cast(i, inputs[k]!, FLOAT)),
      { ...n, input: inputs, output: [`${y}_f32`] },
      cast(`${y}_f32`, y, BF16),
    ];
  });
  return casts;
}
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const BF16 = onnx.TensorProto.DataType.BFLOAT16;

async function fusedLayer(name: string): Promise<{ file: string; ops: Record<string, number> }> {
  const { model } = await fuseCase(name);
  const casts = name.endsWith("_bf16") ? widenBf16Einsum(model.proto) : 0;
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-layer-")), "model.onnx");
  writeFileSync(file, encodeMessage(onnx.ModelProto, model.proto as onnx.ModelProto));
  const ops = histogram(model.proto);
  if (casts > 0) ops.Cast = casts;
  return { file, ops };
}

/** One run of a data set: relative L2 error per output and the copies the run made. */
async function runSet(session: ort.InferenceSession, name: string, set: string) {
  const inputs = readDataSet(join(MODELS, name, set), "input"),
    outputs = readDataSet(join(MODELS, name, set), "output");
  const feeds: Record<string, ort.Tensor> = {};
  session.inputNames.forEach((n, i) => (feeds[n] = toOrtTensor(inputs[i]!)));
  const before = ascendStats(session);
  const out = await session.run(feeds);
  const after = ascendStats(session);
  const errors = outputs.map((want, i) => {
    const got = out[session.outputNames[i]!]!;
    return relativeL2(want.type === "bfloat16" ? { type: "bfloat16", data: got.data } : got, want);
  });
  const copies = {
    h2d: after.copiesH2D - before.copiesH2D,
    d2h: after.copiesD2H - before.copiesD2H,
    bytesH2D: after.bytesH2D - before.bytesH2D,
    bytesD2H: after.bytesD2H - before.bytesD2H,
  };
  const expected = {
    h2d: inputs.length,
    d2h: outputs.length,
    bytesH2D: inputs.reduce((a, t) => a + bytesOf(t), 0),
    bytesD2H: outputs.reduce((a, t) => a + bytesOf(t), 0),
  };
  return { errors, copies, expected };
}

describe.skipIf(skip !== undefined)("fused layers entirely on the Ascend device (CANN simulator)", () => {
  it("covers every layer fixture", () => {
    expect(LAYERS).toHaveLength(10);
  });

  it.each(LAYERS)("%s: every node on the device, copies only at the graph's inputs and outputs", async (name) => {
    const { file, ops } = await fusedLayer(name);
    const ep = { name: "ascend", deviceId: 0, strict: true } as unknown as string;
    const session = await ort.InferenceSession.create(file, { executionProviders: [ep], intraOpNumThreads: 2 });
    try {
      const stats = ascendStats(session);
      expect(stats.nodesOnCpu).toEqual({});
      expect(stats.fallbackReasons).toEqual([]);
      expect(stats.nodesOnDevice).toEqual(ops);
      const sets = ["test_data_set_0", "test_data_set_1"].filter((s) => existsSync(join(MODELS, name, s)));
      for (const set of sets) {
        const { errors, copies, expected } = await runSet(session, name, set);
        for (const e of errors) expect(e).toBeLessThan(DEVICE_TOLERANCE);
        expect(copies).toEqual(expected);
      }
    } finally {
      await session.release();
    }
  });

  // release() frees the ONNX Runtime session, and with it the layer's weights on the device, at once: not when the
  // garbage collector finds the JS object. A server that swaps models must get its device memory back.
  it.skipIf(REAL_ASCEND)(
    "release() frees the session's device memory at once, without a garbage collection",
    async () => {
      const name = "layer_qwen3next_decode_b2";
      const { file } = await fusedLayer(name);
      const ep = { name: "ascend", deviceId: 0, strict: true } as unknown as string;
      const keeper = await ort.InferenceSession.create(file, { executionProviders: [ep] }); // keeps the simulator loaded
      try {
        const before = ascendSimCounters().liveBytes;
        const session = await ort.InferenceSession.create(file, { executionProviders: [ep] });
        await runSet(session, name, "test_data_set_0");
        expect(ascendSimCounters().liveBytes).toBeGreaterThan(before); // the weights
        await session.release();
        expect(ascendSimCounters().liveBytes).toBe(before);
      } finally {
        await keeper.release();
      }
    },
  );
});

// ------------------------------------------------------------------------------------------------------------
// One-node layer models: a node beyond a primitive's limit stays on the CPU (or fails strict placement), and a
// device kernel refuses a bad input with the CPU op library's contract message.

const F32 = (name: string, dims: (number | string)[]) => ({ name, dims });

function convModel(C: number): string {
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-conv-")), "model.onnx");
  writeFileSync(
    file,
    oneNodeModel({
      opType: "CausalConv1d",
      inputs: [F32("x", [1, C, 2]), F32("weight", [C, 1, 4])],
      outputs: [F32("y", [1, C, 2])],
    }),
  );
  return file;
}

describe.skipIf(skip !== undefined)("layer ops at the limits of the device path", () => {
  it("a CausalConv1d beyond aclnnConvolution's groups limit stays on the CPU; strict refuses it", async () => {
    const reason = "gdn.CausalConv1d node 'n0': channels C=65536 exceed aclnnConvolution's groups limit of 65535";
    const file = convModel(65536);
    const session = await ort.InferenceSession.create(file, { executionProviders: [ascendEp(false)] });
    try {
      const stats = ascendStats(session);
      expect(stats.nodesOnDevice).toEqual({});
      expect(stats.nodesOnCpu).toEqual({ "gdn.CausalConv1d": 1 });
      expect(stats.fallbackReasons).toEqual([reason]);
    } finally {
      await session.release();
    }
    await expect(ort.InferenceSession.create(file, { executionProviders: [ascendEp(true)] })).rejects.toThrow(
      new GdnFuseError(
        "E_RUNTIME",
        `cannot create an ascend session: strict placement: ${reason} (it would run on the CPU)`,
      ),
    );
  });

  it("GatedDeltaGating on the device refuses mismatched shapes with the CPU op library's message", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-gating-")), "model.onnx");
    writeFileSync(
      file,
      oneNodeModel({
        opType: "GatedDeltaGating",
        inputs: [F32("a", [1, 2, 4]), F32("b", [1, 2, 4]), F32("A_log", ["h"]), F32("dt_bias", [4])],
        outputs: [F32("g", [1, 2, 4]), F32("beta", [1, 2, 4])],
      }),
    );
    const feeds = {
      a: new ort.Tensor("float32", new Float32Array(8), [1, 2, 4]),
      b: new ort.Tensor("float32", new Float32Array(8), [1, 2, 4]),
      A_log: new ort.Tensor("float32", new Float32Array(3), [3]),
      dt_bias: new ort.Tensor("float32", new Float32Array(4), [4]),
    };
    const messages: string[] = [];
    for (const ep of [ascendEp(true), "gdn"]) {
      const session = await ort.InferenceSession.create(file, { executionProviders: [ep] });
      try {
        if (ep !== "gdn") expect(ascendStats(session).nodesOnDevice).toEqual({ "gdn.GatedDeltaGating": 1 });
        messages.push(
          await session.run(feeds).then(
            () => "no error",
            (e: Error) => e.message,
          ),
        );
      } finally {
        await session.release();
      }
    }
    const ortMessage =
      "Non-zero status code returned while running GatedDeltaGating node. Name:'n0' " +
      `Status Message: ${CONTRACT_MESSAGE}`;
    expect(messages).toEqual([ortMessage, ortMessage]);
  });
});

const CONTRACT_MESSAGE = "GatedDeltaGating: A_log has shape [3], expected [4] [H]";
const ascendEp = (strict: boolean) => ({ name: "ascend", deviceId: 0, strict }) as unknown as string;

// ------------------------------------------------------------------------------------------------------------
// The layer kernels on paths the fixtures do not take, against the CPU op library (the contract's reference
// implementation, tested against float64 in test/kernels): bias, no activation, [C,W] weights, a state longer
// than W-1, T = 0, float16, a float32 norm weight under float16 x.

interface OpCase {
  opType: string;
  inputs: { name: string; dims: number[]; type?: "float16"; lo?: number; hi?: number }[];
  outputs: { name: string; dims: number[]; type?: "float16" }[];
  attributes?: onnx.IAttributeProto[];
}

const intAttr = (name: string, i: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i });
const strAttr = (name: string, s: string) => ({
  name,
  type: onnx.AttributeProto.AttributeType.STRING,
  s: new TextEncoder().encode(s),
});
const FP16 = onnx.TensorProto.DataType.FLOAT16;

const OP_CASES: [string, OpCase][] = [
  [
    "CausalConv1d decode: bias, no activation, [C,W] weight, state of S=5 > W-1, float16",
    {
      opType: "CausalConv1d",
      inputs: [
        { name: "x", dims: [2, 6, 3], type: "float16" },
        { name: "weight", dims: [6, 4], type: "float16" },
        { name: "bias", dims: [6], type: "float16" },
        { name: "conv_state", dims: [2, 6, 5], type: "float16" },
      ],
      outputs: [
        { name: "y", dims: [2, 6, 3], type: "float16" },
        { name: "conv_state_out", dims: [2, 6, 5], type: "float16" },
      ],
      attributes: [strAttr("activation", "none")],
    },
  ],
  [
    "CausalConv1d prefill: bias, silu, state_size 4 > W-1 with conv_state_out",
    {
      opType: "CausalConv1d",
      inputs: [
        { name: "x", dims: [1, 5, 9] },
        { name: "weight", dims: [5, 1, 3] },
        { name: "bias", dims: [5] },
      ],
      outputs: [
        { name: "y", dims: [1, 5, 9] },
        { name: "conv_state_out", dims: [1, 5, 4] },
      ],
      attributes: [intAttr("state_size", 4)],
    },
  ],
  [
    "GatedDeltaGating, float16 a and b, softplus beyond its threshold",
    {
      opType: "GatedDeltaGating",
      inputs: [
        { name: "a", dims: [2, 3, 4], type: "float16", lo: -30, hi: 30 },
        { name: "b", dims: [2, 3, 4], type: "float16" },
        { name: "A_log", dims: [4] },
        { name: "dt_bias", dims: [4] },
      ],
      outputs: [
        { name: "g", dims: [2, 3, 4] },
        { name: "beta", dims: [2, 3, 4], type: "float16" },
      ],
    },
  ],
  [
    "GatedRMSNorm, float16 x and gate, float32 weight",
    {
      opType: "GatedRMSNorm",
      inputs: [
        { name: "x", dims: [3, 2, 8], type: "float16" },
        { name: "gate", dims: [3, 2, 8], type: "float16" },
        { name: "weight", dims: [8] },
      ],
      outputs: [{ name: "y", dims: [3, 2, 8], type: "float16" }],
      attributes: [{ name: "epsilon", type: onnx.AttributeProto.AttributeType.FLOAT, f: 1e-5 }],
    },
  ],
];

function feedsOf(c: OpCase): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  c.inputs.forEach((t, k) => {
    const n = t.dims.reduce((a, d) => a * d, 1);
    const random = seededRandom(100 + k);
    const values = Float32Array.from({ length: n }, () => (t.lo ?? -1) + random() * ((t.hi ?? 1) - (t.lo ?? -1)));
    feeds[t.name] =
      t.type === "float16"
        ? new ort.Tensor(
            "float16",
            Uint16Array.from(values, (v) => numberToFloat16(v)),
            t.dims,
          )
        : new ort.Tensor("float32", values, t.dims);
  });
  return feeds;
}

describe.skipIf(skip !== undefined)("layer kernels on the device against the CPU op library", () => {
  it.each(OP_CASES)("%s", async (_, c) => {
    const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-op-")), "model.onnx");
    const spec = (t: { name: string; dims: number[]; type?: "float16" }) => ({
      name: t.name,
      dims: t.dims,
      ...(t.type ? { elemType: FP16 } : {}),
    });
    writeFileSync(
      file,
      oneNodeModel({
        opType: c.opType,
        inputs: c.inputs.map(spec),
        outputs: c.outputs.map(spec),
        attributes: c.attributes ?? [],
      }),
    );
    const results: Record<string, ort.Tensor>[] = [];
    for (const ep of [ascendEp(true), "gdn"]) {
      const session = await ort.InferenceSession.create(file, { executionProviders: [ep] });
      try {
        results.push(await session.run(feedsOf(c)));
      } finally {
        await session.release();
      }
    }
    const [device, cpu] = results as [Record<string, ort.Tensor>, Record<string, ort.Tensor>];
    for (const o of c.outputs) {
      const got = device[o.name]!,
        want = cpu[o.name]!;
      expect(got.dims).toEqual(want.dims);
      // float32 on the device (convolution operands as HFLOAT32), one rounding to float16 at the end
      expect(relativeL2(got, want), o.name).toBeLessThan(o.type === "float16" ? 2e-3 : 5e-4);
    }
  });
});

// The contract: conv_state_out = xs[:, :, T:T+S], the state itself when T = 0. (The CPU op library returns zeros
// here: its glue returns before the kernel when y has no elements, so this case is checked against the contract.)
describe.skipIf(skip !== undefined)("CausalConv1d on the device with T = 0", () => {
  it("passes the state through", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-op-")), "model.onnx");
    writeFileSync(
      file,
      oneNodeModel({
        opType: "CausalConv1d",
        inputs: [F32("x", [1, 3, 0]), F32("weight", [3, 1, 2]), F32("bias", [3]), F32("conv_state", [1, 3, 2])],
        outputs: [F32("y", [1, 3, 0]), F32("conv_state_out", [1, 3, 2])],
      }),
    );
    const state = Float32Array.from([0.5, -1.25, 2, 3.5, -0.75, 1]);
    const session = await ort.InferenceSession.create(file, { executionProviders: [ascendEp(true)] });
    try {
      const out = await session.run({
        x: new ort.Tensor("float32", new Float32Array(0), [1, 3, 0]),
        weight: new ort.Tensor("float32", Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 1, 2]),
        bias: new ort.Tensor("float32", Float32Array.from([1, 1, 1]), [3]),
        conv_state: new ort.Tensor("float32", state, [1, 3, 2]),
      });
      expect(out.y!.dims).toEqual([1, 3, 0]);
      expect(Array.from(out.conv_state_out!.data as Float32Array)).toEqual(Array.from(state));
    } finally {
      await session.release();
    }
  });
});
