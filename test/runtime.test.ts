/**
 * The `gdn` onnxruntime-node backend on unfused models: corpus parity, tensor types, preallocated outputs,
 * and errors that reject (never crash).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { describe, expect, it } from "vitest";
import "../src/runtime/index.js";
import { loadRuntime } from "../src/runtime/index.js";
import {
  SHARED_CORPUS,
  TOLERANCE,
  externalWeightModel,
  numberToFloat16,
  readDataSet,
  relativeL2,
  toOrtTensor,
  toleranceOf,
} from "./helpers/index.js";

const { onnx } = onnxProto;
const CORPUS = SHARED_CORPUS;
const GDN = { executionProviders: ["gdn"] };

const cases = existsSync(CORPUS)
  ? readdirSync(CORPUS).filter((c) => !c.startsWith("bench_") && existsSync(join(CORPUS, c, "test_data_set_0")))
  : [];

/** A one-node model: y = op(x...), built with onnx-proto. */
function tinyModel(
  opType: string,
  inputs: [string, number, number[]][],
  outputs: [string, number, number[]][],
): Uint8Array {
  const vi = ([name, elemType, dims]: [string, number, number[]]) => ({
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
  });
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "tiny",
      node: [{ opType, input: inputs.map((i) => i[0]), output: outputs.map((o) => o[0]) }],
      input: inputs.map(vi),
      output: outputs.map(vi),
    },
  }).finish();
}

const T = onnx.TensorProto.DataType;

describe("gdn backend: runtime", () => {
  it("loads the addon and onnxruntime-node's own ONNX Runtime", () => {
    const info = loadRuntime();
    expect(info.ortLibraryPath).toContain("onnxruntime-node");
    expect(info.ortVersion).toBe("1.30.0");
    expect(info.ortApiVersion).toBe(29);
  });
});

describe("gdn backend: corpus parity (unfused models)", () => {
  it.each(cases)("%s matches test_data_set_0", async (name) => {
    const dir = join(CORPUS, name, "test_data_set_0");
    const inputs = readDataSet(dir, "input");
    const expected = readDataSet(dir, "output");
    const session = await ort.InferenceSession.create(join(CORPUS, name, "model.onnx"), {
      ...GDN,
      intraOpNumThreads: 2,
      graphOptimizationLevel: "all",
    });
    try {
      const feeds: Record<string, ort.Tensor> = {};
      session.inputNames.forEach((n, i) => (feeds[n] = toOrtTensor(inputs[i]!)));
      const results = await session.run(feeds);
      session.outputNames.forEach((n, i) => {
        const got = results[n]!;
        const want = expected[i]!;
        expect(got.type).toBe(want.type);
        expect(got.dims).toEqual(want.dims);
        const tol = toleranceOf(want.type) ?? TOLERANCE.float32;
        expect(relativeL2(got, want), `${name}:${n}`).toBeLessThanOrEqual(tol);
      });
    } finally {
      await session.release();
    }
  });

  it("loads a model from a Uint8Array too", async () => {
    const name = "recurrent_t4_b2";
    const session = await ort.InferenceSession.create(
      new Uint8Array(readFileSync(join(CORPUS, name, "model.onnx"))),
      GDN,
    );
    const dir = join(CORPUS, name, "test_data_set_0");
    const inputs = readDataSet(dir, "input");
    const feeds = Object.fromEntries(session.inputNames.map((n, i) => [n, toOrtTensor(inputs[i]!)]));
    const out = await session.run(feeds);
    expect(relativeL2(out[session.outputNames[0]!]!, readDataSet(dir, "output")[0]!)).toBeLessThanOrEqual(
      TOLERANCE.float32,
    );
    expect(session.inputMetadata[0]).toMatchObject({
      name: "query",
      isTensor: true,
      type: "float32",
      shape: [2, 4, 2, 16],
    });
    await session.release();
  });
});

describe("gdn backend: external data", () => {
  it("a path model finds its external data next to it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "gdn-extdata-"));
    try {
      const w = new Float32Array([10, 20, 30]);
      writeFileSync(join(dir, "weights.bin"), new Uint8Array(w.buffer));
      const location = { key: "location", value: "weights.bin" };
      const bytes = externalWeightModel([location, { key: "offset", value: "0" }, { key: "length", value: "12" }]);
      writeFileSync(join(dir, "model.onnx"), bytes);
      const session = await ort.InferenceSession.create(join(dir, "model.onnx"), GDN);
      const { y } = await session.run({ x: new ort.Tensor("float32", new Float32Array([1, 2, 3]), [3]) });
      expect(Array.from(y!.data as Float32Array)).toEqual([11, 22, 33]);
      await session.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("gdn backend: element types", () => {
  const cases: [string, number, () => ort.Tensor][] = [
    ["float32", T.FLOAT, () => new ort.Tensor("float32", new Float32Array([1.5, -2, 3, 0.25]), [2, 2])],
    ["float64", T.DOUBLE, () => new ort.Tensor("float64", new Float64Array([1.5, -2, 3, 1e300]), [2, 2])],
    ["float16", T.FLOAT16, () => new ort.Tensor("float16", new Uint16Array([1, 2, 3, 4].map(numberToFloat16)), [2, 2])],
    ["int64", T.INT64, () => new ort.Tensor("int64", new BigInt64Array([1n, -2n, 2n ** 40n, 0n]), [2, 2])],
    ["int32", T.INT32, () => new ort.Tensor("int32", new Int32Array([1, -2, 3, 4]), [2, 2])],
    ["int16", T.INT16, () => new ort.Tensor("int16", new Int16Array([1, -2, 3, 4]), [2, 2])],
    ["int8", T.INT8, () => new ort.Tensor("int8", new Int8Array([1, -2, 3, 4]), [2, 2])],
    ["uint8", T.UINT8, () => new ort.Tensor("uint8", new Uint8Array([1, 2, 3, 255]), [2, 2])],
    ["bool", T.BOOL, () => new ort.Tensor("bool", new Uint8Array([1, 0, 0, 1]), [2, 2])],
    ["string", T.STRING, () => new ort.Tensor("string", ["a", "", "héllo", "d"], [2, 2])],
    // bfloat16 travels as uint16 bits
    ["bfloat16", T.BFLOAT16, () => new ort.Tensor("uint16", new Uint16Array([0x3f80, 0xc000, 0x4040, 0]), [2, 2])],
  ];
  it.each(cases)("%s round-trips through Identity", async (type, elem, make) => {
    const session = await ort.InferenceSession.create(
      tinyModel("Identity", [["x", elem, [2, 2]]], [["y", elem, [2, 2]]]),
      GDN,
    );
    const x = make();
    const { y } = await session.run({ x });
    expect(y!.type).toBe(type === "bfloat16" ? "uint16" : type);
    expect(y!.dims).toEqual([2, 2]);
    expect(Array.from(y!.data as ArrayLike<unknown>)).toEqual(Array.from(x.data as ArrayLike<unknown>));
    if (type === "bfloat16") expect(session.inputMetadata[0]).toMatchObject({ type: "bfloat16" });
    await session.release();
  });

  it("computes, not just copies (Add in float16)", async () => {
    const session = await ort.InferenceSession.create(
      tinyModel(
        "Add",
        [
          ["a", T.FLOAT16, [3]],
          ["b", T.FLOAT16, [3]],
        ],
        [["c", T.FLOAT16, [3]]],
      ),
      GDN,
    );
    const h = (xs: number[]) => new ort.Tensor("float16", new Uint16Array(xs.map(numberToFloat16)), [3]);
    const { c } = await session.run({ a: h([1, 2, 3]), b: h([0.5, 0.25, -3]) });
    expect(relativeL2(c!, { type: "float32", data: [1.5, 2.25, 0] })).toBe(0);
    await session.release();
  });
});

describe("gdn backend: preallocated outputs", () => {
  it("writes into the user's buffer and returns a tensor sharing it", async () => {
    const name = "recurrent_t1_b3";
    const dir = join(CORPUS, name, "test_data_set_0");
    const session = await ort.InferenceSession.create(join(CORPUS, name, "model.onnx"), GDN);
    const inputs = readDataSet(dir, "input");
    const expected = readDataSet(dir, "output");
    const feeds = Object.fromEntries(session.inputNames.map((n, i) => [n, toOrtTensor(inputs[i]!)]));
    const buffer = new Float32Array(3 * 1 * 4 * 48).fill(Number.NaN);
    const out = new ort.Tensor("float32", buffer, [3, 1, 4, 48]);
    const results = await session.run(feeds, { core_attn_out: out });
    expect(results.core_attn_out).toBe(out);
    expect(results.core_attn_out!.data).toBe(buffer);
    expect(relativeL2(buffer, expected[0]!)).toBeLessThanOrEqual(TOLERANCE.float32);
    expect(Object.keys(results)).toEqual(["core_attn_out"]);

    // mixed: one preallocated, one allocated by ORT
    const state = new ort.Tensor("float32", new Float32Array(3 * 4 * 32 * 48), [3, 4, 32, 48]);
    const both = await session.run(feeds, { core_attn_out: null, final_state: state });
    expect(both.final_state).toBe(state);
    expect(relativeL2(state, expected[1]!)).toBeLessThanOrEqual(TOLERANCE.float32);
    expect(relativeL2(both.core_attn_out!, expected[0]!)).toBeLessThanOrEqual(TOLERANCE.float32);
    await session.release();
  });

  it("rejects a preallocated output of the wrong shape", async () => {
    const session = await ort.InferenceSession.create(join(CORPUS, "recurrent_t1_b3", "model.onnx"), GDN);
    const inputs = readDataSet(join(CORPUS, "recurrent_t1_b3", "test_data_set_0"), "input");
    const feeds = Object.fromEntries(session.inputNames.map((n, i) => [n, toOrtTensor(inputs[i]!)]));
    const bad = new ort.Tensor("float32", new Float32Array(10), [10]);
    await expect(session.run(feeds, { core_attn_out: bad })).rejects.toMatchObject({ code: "E_RUNTIME" });
    await session.release();
  });
});

describe("gdn backend: errors reject with ORT's message, the process survives", () => {
  const model = join(CORPUS, "recurrent_t4_b2", "model.onnx");
  const feedsFor = (session: ort.InferenceSession) =>
    Object.fromEntries(
      session.inputMetadata.map((m) => {
        const dims = (m as { shape: readonly number[] }).shape as number[];
        return [m.name, new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)), dims)];
      }),
    );

  it("wrong rank", async () => {
    const session = await ort.InferenceSession.create(model, GDN);
    const feeds = { ...feedsFor(session), query: new ort.Tensor("float32", new Float32Array(2 * 4 * 32), [2, 4, 32]) };
    const err = await session.run(feeds).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: "E_RUNTIME", ortErrorCode: "ORT_INVALID_ARGUMENT" });
    expect((err as Error).message).toContain("Invalid rank for input: query Got: 3 Expected: 4");
    // the stack points at the caller, not at the addon
    expect((err as Error).stack).toContain("runtime.test.ts");
    await session.release();
  });

  it("wrong dtype", async () => {
    const session = await ort.InferenceSession.create(model, GDN);
    const feeds = { ...feedsFor(session), g: new ort.Tensor("int32", new Int32Array(2 * 4 * 2), [2, 4, 2]) };
    await expect(session.run(feeds)).rejects.toThrow("input 'g' has type 'int32', but the model declares 'float32'");
    await session.release();
  });

  it("missing input", async () => {
    const session = await ort.InferenceSession.create(model, GDN);
    const { beta: _beta, ...feeds } = feedsFor(session);
    await expect(session.run(feeds)).rejects.toThrow("input 'beta' is missing in 'feeds'");
    await session.release();
  });

  it("unknown input name", async () => {
    const session = await ort.InferenceSession.create(model, GDN);
    const feeds = { ...feedsFor(session), bogus: new ort.Tensor("float32", new Float32Array(1), [1]) };
    await expect(session.run(feeds)).rejects.toThrow("Invalid input name: bogus");
    await session.release();
  });

  it("data length not matching dims", async () => {
    const session = await ort.InferenceSession.create(model, GDN);
    const q = new ort.Tensor("float32", new Float32Array(2 * 4 * 2 * 16), [2, 4, 2, 16]);
    Object.defineProperty(q, "dims", { value: [2, 4, 2, 17] });
    await expect(session.run({ ...feedsFor(session), query: q })).rejects.toThrow(
      "input 'query': data holds 1024 bytes but a float32 tensor of dims [2,4,2,17] needs 1088",
    );
    await session.release();
  });

  it("disposed session", async () => {
    const session = await ort.InferenceSession.create(model, GDN);
    const feeds = feedsFor(session);
    await session.release();
    await expect(session.run(feeds)).rejects.toThrow("session is disposed");
    await session.release(); // twice is fine
  });

  it("dispose while a run is in flight: the run completes", async () => {
    const session = await ort.InferenceSession.create(model, GDN);
    const pending = session.run(feedsFor(session));
    await session.release();
    const out = await pending;
    expect(out.core_attn_out!.dims).toEqual([2, 4, 2, 16]);
  });

  it("garbage model bytes", async () => {
    const err = await ort.InferenceSession.create(new Uint8Array([8, 1, 0xff, 0xff, 0x13, 7, 7]), GDN).catch(
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "E_RUNTIME", ortErrorCode: "ORT_INVALID_PROTOBUF" });
    expect((err as Error).message).toContain("protobuf parsing failed");
  });

  it("missing model file", async () => {
    await expect(ort.InferenceSession.create("/nonexistent/model.onnx", GDN)).rejects.toThrow(
      /cannot create session \(\/nonexistent\/model\.onnx\): .*(No such file|does not exist|Load model)/,
    );
  });

  it("bad session options", async () => {
    await expect(
      ort.InferenceSession.create(model, { ...GDN, graphOptimizationLevel: "max" as "all" }),
    ).rejects.toMatchObject({
      code: "E_USAGE",
      message: expect.stringContaining("graphOptimizationLevel must be one of"),
    });
  });

  it("accepts the common session and run options", async () => {
    const session = await ort.InferenceSession.create(model, {
      ...GDN,
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "disabled",
      logSeverityLevel: 3,
      enableCpuMemArena: false,
      enableMemPattern: false,
      logId: "t",
      extra: { session: { intra_op: { allow_spinning: "0" } } },
    });
    const out = await session.run(feedsFor(session), { logSeverityLevel: 3, tag: "run-1" });
    expect(Object.keys(out).sort()).toEqual(["core_attn_out", "final_state"]);
    await session.release();
  });
});
