// External data: models whose weights live in files beside them. Loading reads no weight bytes but checks
// every reference; saving carries the files byte-identical (or inlines small tensors); locations that leave
// the model folder are refused. Also: TensorProto <-> typed array conversions and float16/bfloat16 bits.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, test } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { loadModel, saveModel } from "../src/ir/model-io.js";
import { decodeMessage, encodeMessage, onnx } from "../src/ir/onnx.js";
import {
  arrayToTensor,
  bfloat16ToFloat32,
  elemTypeName,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
  tensorToArray,
} from "../src/ir/tensor.js";
import { externalFloat32, float32Info, modelOf } from "./helpers/index.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-fuse-external-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Ext {
  name: string;
  dims: number[];
  location: string;
  offset: number;
  length?: number;
}

function externalTensor(e: Ext): onnx.ITensorProto {
  const entries = [
    { key: "location", value: e.location },
    { key: "offset", value: String(e.offset) },
  ];
  if (e.length !== undefined) entries.push({ key: "length", value: String(e.length) });
  return externalFloat32(e.name, e.dims, ...entries);
}

/** Y = X + W + B (all [2, 3] float32) with W and B in external data. */
function addModel(w: Ext, b: Ext): onnx.ModelProto {
  return modelOf({
    name: "add",
    input: [float32Info("X", [2, 3])],
    output: [float32Info("Y", [2, 3])],
    initializer: [externalTensor(w), externalTensor(b)],
    node: [
      { name: "add0", opType: "Add", input: ["X", w.name], output: ["T"] },
      { name: "add1", opType: "Add", input: ["T", b.name], output: ["Y"] },
    ],
  });
}

const W = Float32Array.from([1, 2, 3, 4, 5, 6]);
const B = Float32Array.from([0.5, 0.25, 0.125, -1, -2, -3]);
const bytesOf = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** A model folder with weights.bin: 64 bytes of padding, W, B. */
function writeAddModel(dir: string, overrides: Partial<Ext> = {}): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "weights.bin"), Buffer.concat([Buffer.alloc(64, 7), bytesOf(W), bytesOf(B)]));
  const model = addModel(
    { name: "W", dims: [2, 3], location: "weights.bin", offset: 64, length: 24, ...overrides },
    { name: "B", dims: [2, 3], location: "weights.bin", offset: 88, length: 24 },
  );
  const file = path.join(dir, "model.onnx");
  fs.writeFileSync(file, encodeMessage(onnx.ModelProto, model));
  return file;
}

async function loadError(file: string): Promise<GdnFuseError> {
  const e = await loadModel(file).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GdnFuseError);
  return e as GdnFuseError;
}

async function runAdd(file: string): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(file, { graphOptimizationLevel: "disabled" });
  const x = new ort.Tensor("float32", Float32Array.from([10, 20, 30, 40, 50, 60]), [2, 3]);
  const y = (await session.run({ X: x })).Y!.data as Float32Array;
  await session.release();
  return y;
}
const EXPECTED_Y = Float32Array.from([11.5, 22.25, 33.125, 43, 53, 63]);

describe("external data", () => {
  test("loads, reads only the tensor's range, and saves with the file carried byte-identical", async () => {
    const file = writeAddModel(path.join(tmp, "ok"));
    const model = await loadModel(file);
    const w = model.proto.graph!.initializer![0]!;
    expect(Array.from(tensorToArray(w, model.baseDir) as Float32Array)).toEqual(Array.from(W));
    for (const mode of ["copy", "link"] as const) {
      const out = path.join(tmp, `saved-${mode}`, "model.onnx");
      await saveModel(model, out, { externalData: mode });
      expect(fs.readFileSync(path.join(tmp, `saved-${mode}`, "weights.bin"))).toEqual(
        fs.readFileSync(path.join(tmp, "ok", "weights.bin")),
      );
      expect(Array.from(await runAdd(out))).toEqual(Array.from(EXPECTED_Y));
    }
    expect(fs.statSync(path.join(tmp, "saved-link", "weights.bin")).ino).toBe(
      fs.statSync(path.join(tmp, "ok", "weights.bin")).ino,
    );
  });

  test("inlines tensors below --inline-below and leaves the caller's model untouched", async () => {
    const file = writeAddModel(path.join(tmp, "inline-src"));
    const model = await loadModel(file);
    const out = path.join(tmp, "inline", "model.onnx");
    await saveModel(model, out, { inlineBelow: 25 });
    const saved = decodeMessage(onnx.ModelProto, fs.readFileSync(out));
    for (const t of saved.graph!.initializer!) {
      expect(t.dataLocation).toBe(onnx.TensorProto.DataLocation.DEFAULT);
      expect(t.externalData).toEqual([]);
    }
    expect(Array.from(tensorToArray(saved.graph!.initializer![1]!) as Float32Array)).toEqual(Array.from(B));
    expect(fs.existsSync(path.join(tmp, "inline", "weights.bin"))).toBe(false); // nothing refers to it now
    expect(Array.from(await runAdd(out))).toEqual(Array.from(EXPECTED_Y));
    expect(model.proto.graph!.initializer![1]!.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
  });

  test("an external file shared with the output folder is left alone", async () => {
    const file = writeAddModel(path.join(tmp, "same-dir"));
    const before = fs.statSync(path.join(tmp, "same-dir", "weights.bin"));
    await saveModel(await loadModel(file), path.join(tmp, "same-dir", "fused.onnx"));
    expect(fs.statSync(path.join(tmp, "same-dir", "weights.bin")).mtimeMs).toBe(before.mtimeMs);
    expect(fs.readdirSync(path.join(tmp, "same-dir")).sort()).toEqual(["fused.onnx", "model.onnx", "weights.bin"]);
  });

  test("rejects an absolute location, with the location and the model folder", async () => {
    const dir = path.join(tmp, "abs");
    const file = writeAddModel(dir, { location: path.join(dir, "weights.bin") });
    const e = await loadError(file);
    expect(e.code).toBe("E_EXTERNAL_DATA");
    expect(e.message).toContain(path.join(dir, "weights.bin"));
    expect(e.message).toContain("absolute");
    expect(e.message).toContain(`model folder ${dir}`);
  });

  test("rejects a location escaping with '..', with reason", async () => {
    const dir = path.join(tmp, "dotdot", "m");
    const file = writeAddModel(dir, { location: "../weights.bin" });
    fs.copyFileSync(path.join(dir, "weights.bin"), path.join(tmp, "dotdot", "weights.bin"));
    const e = await loadError(file);
    expect(e.code).toBe("E_EXTERNAL_DATA");
    expect(e.message).toContain('"../weights.bin"');
    expect(e.message).toContain("'..'");
  });

  test("rejects a symlink that leaves the model folder, with reason", async () => {
    const dir = path.join(tmp, "symlink");
    const file = writeAddModel(dir, { location: "escape.bin" });
    fs.writeFileSync(path.join(tmp, "outside.bin"), Buffer.alloc(200));
    fs.symlinkSync(path.join(tmp, "outside.bin"), path.join(dir, "escape.bin"));
    const e = await loadError(file);
    expect(e.code).toBe("E_EXTERNAL_DATA");
    expect(e.message).toContain("outside the model folder");
  });

  test("rejects a missing file and a range past the end of the file", async () => {
    const missing = await loadError(writeAddModel(path.join(tmp, "missing"), { location: "nope.bin" }));
    expect(missing.code).toBe("E_EXTERNAL_DATA");
    expect(missing.message).toContain('"nope.bin" of tensor "W" does not exist');
    const past = await loadError(writeAddModel(path.join(tmp, "past"), { offset: 100, length: 24 }));
    expect(past.code).toBe("E_EXTERNAL_DATA");
    expect(past.message).toContain("offset 100 + length 24 exceeds the file size 112");
  });

  test("needs a folder when loading external data from bytes", async () => {
    const file = writeAddModel(path.join(tmp, "bytes"));
    const e = await loadModel(fs.readFileSync(file)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect((e as GdnFuseError).code).toBe("E_EXTERNAL_DATA");
    const ok = await loadModel(fs.readFileSync(file), { baseDir: path.join(tmp, "bytes") });
    expect(ok.baseDir).toBe(path.join(tmp, "bytes"));
  });

  test("handles a 3 GiB sparse external data file (tensors past 2 GiB)", async () => {
    const dir = path.join(tmp, "huge");
    fs.mkdirSync(dir);
    const data = path.join(dir, "huge.bin");
    const GiB = 2 ** 30;
    const offsets = [0, 2 * GiB + 4096, 3 * GiB - 4096];
    const tensors = offsets.map((_offset, i) => Float32Array.from({ length: 256 }, (_, j) => i * 1000 + j * 0.5));
    const fd = fs.openSync(data, "w");
    try {
      fs.ftruncateSync(fd, 3 * GiB);
      offsets.forEach((offset, i) => fs.writeSync(fd, bytesOf(tensors[i]!), 0, 1024, offset));
    } finally {
      fs.closeSync(fd);
    }
    const model = modelOf({
      name: "huge",
      output: offsets.map((_, i) => float32Info(`w${i}`, [256])),
      initializer: offsets.map((offset, i) =>
        externalTensor({ name: `w${i}`, dims: [256], location: "huge.bin", offset, length: 1024 }),
      ),
    });
    fs.writeFileSync(path.join(dir, "model.onnx"), encodeMessage(onnx.ModelProto, model));
    try {
      const loaded = await loadModel(path.join(dir, "model.onnx"));
      const outDir = path.join(tmp, "huge-out");
      await saveModel(loaded, path.join(outDir, "model.onnx"), { externalData: "link" });
      expect(fs.statSync(path.join(outDir, "huge.bin")).size).toBe(3 * GiB);
      const again = await loadModel(path.join(outDir, "model.onnx"));
      again.proto.graph!.initializer!.forEach((t, i) => {
        expect(Array.from(tensorToArray(t, again.baseDir) as Float32Array)).toEqual(Array.from(tensors[i]!));
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(path.join(tmp, "huge-out"), { recursive: true, force: true });
    }
  });
});

describe("tensors", () => {
  const cases: [string, number[] | bigint[]][] = [
    ["float32", [1.5, -2, 0, 3.25]],
    ["float64", [1e-300, -2, 0, Math.PI]],
    ["int8", [-128, 127, 0, 5]],
    ["uint8", [0, 255, 1, 2]],
    ["int16", [-32768, 32767, 0, 1]],
    ["int32", [-(2 ** 31), 2 ** 31 - 1, 0, 7]],
    ["int64", [-(2n ** 63n), 2n ** 63n - 1n, 0n, 42n]],
    ["bool", [1, 0, 1, 1]],
    ["float16", [1, -2, 0.5, 65504]],
    ["bfloat16", [1, -2, 0.5, 3.140625]],
  ];
  for (const [type, values] of cases) {
    test(`round trips ${type} through raw_data and the encoded proto`, () => {
      const t = arrayToTensor("t", [2, 2], type, values);
      expect(elemTypeName(t.dataType)).toBe(type);
      const back = decodeMessage(onnx.TensorProto, encodeMessage(onnx.TensorProto, t));
      const arr = tensorToArray(back);
      const decoded =
        type === "float16"
          ? Array.from(arr as Uint16Array, float16ToFloat32)
          : type === "bfloat16"
            ? Array.from(arr as Uint16Array, bfloat16ToFloat32)
            : Array.from(arr as ArrayLike<number | bigint>);
      expect(decoded).toEqual(values);
    });
  }

  test("reads the typed fields (float_data, int32_data bits, int64_data)", () => {
    const f = onnx.TensorProto.create({ dims: [2], dataType: 1, floatData: [1, 2] });
    expect(Array.from(tensorToArray(f) as Float32Array)).toEqual([1, 2]);
    const h = onnx.TensorProto.create({ dims: [2], dataType: 10, int32Data: [0x3c00, 0xc000] });
    expect(Array.from(tensorToArray(h) as Uint16Array, float16ToFloat32)).toEqual([1, -2]);
    const i = decodeMessage(
      onnx.TensorProto,
      encodeMessage(onnx.TensorProto, onnx.TensorProto.create({ dims: [2], dataType: 7, int64Data: [-3, 2 ** 40] })),
    );
    expect(Array.from(tensorToArray(i) as BigInt64Array)).toEqual([-3n, 2n ** 40n]);
  });

  test("rejects data that does not match the dims, with reason", () => {
    const t = onnx.TensorProto.create({ name: "short", dims: [3], dataType: 1, rawData: new Uint8Array(8) });
    expect(() => tensorToArray(t)).toThrow(/tensor "short": 8 data bytes for 3 float32 elements/);
  });

  test("converts float16 and bfloat16 with round-to-nearest-even", () => {
    expect(float32ToFloat16(1)).toBe(0x3c00);
    expect(float32ToFloat16(65504)).toBe(0x7bff);
    expect(float32ToFloat16(70000)).toBe(0x7c00);
    expect(float32ToFloat16(2 ** -24)).toBe(1);
    expect(float32ToFloat16(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(float32ToFloat16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(Number.isNaN(float16ToFloat32(float32ToFloat16(NaN)))).toBe(true);
    for (let bits = 0; bits < 0x7c00; bits += 37) expect(float32ToFloat16(float16ToFloat32(bits))).toBe(bits);
    expect(float32ToBfloat16(1)).toBe(0x3f80);
    expect(bfloat16ToFloat32(float32ToBfloat16(-2.5))).toBe(-2.5);
  });
});

// Strict external data fields: plain decimal offset/length, a length equal to the tensor's byte size, a
// location that names a regular file inside the model folder.
describe("external data fields", () => {
  /** The add model with W's external_data entries given verbatim (strings, so "0x10" can be written). */
  function writeRaw(dir: string, entries: Record<string, string>, dims = [2, 3]): string {
    const file = writeAddModel(dir);
    const m = decodeMessage(onnx.ModelProto, fs.readFileSync(file));
    const w = m.graph!.initializer![0]!;
    w.externalData = Object.entries(entries).map(([key, value]) => ({ key, value }));
    w.dims = dims;
    fs.writeFileSync(file, encodeMessage(onnx.ModelProto, m));
    return file;
  }
  const where = (file: string): string => `${file}: external data "weights.bin" of tensor "W"`;

  test("a length shorter than the tensor is refused on load (inline would write a short tensor)", async () => {
    const file = writeRaw(path.join(tmp, "f-short"), { location: "weights.bin", offset: "64", length: "4" });
    const e = await loadError(file);
    expect([e.code, e.message]).toEqual([
      "E_EXTERNAL_DATA",
      `${where(file)}: length 4, but dims [2, 3] of float need 24 bytes`,
    ]);
  });

  test("a length longer than the tensor is refused too", async () => {
    const file = writeRaw(path.join(tmp, "f-long"), { location: "weights.bin", offset: "64", length: "28" });
    const e = await loadError(file);
    expect(e.message).toBe(`${where(file)}: length 28, but dims [2, 3] of float need 24 bytes`);
  });

  test("negative dims on an external tensor are a model error, not a crash", async () => {
    const file = writeRaw(path.join(tmp, "f-neg"), { location: "weights.bin", offset: "64" }, [-2, 3]);
    const e = await loadError(file);
    expect([e.code, e.message]).toEqual(["E_MODEL", `${file}: initializer "W": dims [-2, 3] has a negative dim`]);
  });

  test.each(["0x10", "1e2", " 64", "+64", "-1", "64.0", "99999999999999999999"])(
    "offset %j is refused (plain decimal digits only)",
    async (offset) => {
      const file = writeRaw(path.join(tmp, `f-off-${Buffer.from(offset).toString("hex")}`), {
        location: "weights.bin",
        offset,
        length: "24",
      });
      const e = await loadError(file);
      expect([e.code, e.message]).toEqual([
        "E_EXTERNAL_DATA",
        `${where(file)}: offset ${JSON.stringify(offset)} is not a plain decimal byte count`,
      ]);
    },
  );

  test('location "." is not a regular file (not a symlink problem)', async () => {
    const file = writeRaw(path.join(tmp, "f-dot"), { location: ".", offset: "0", length: "24" });
    const e = await loadError(file);
    expect(e.code).toBe("E_EXTERNAL_DATA");
    expect(e.message).toBe(
      `${file}: external data "." of tensor "W" is not a regular file (a folder) (model folder ${path.join(tmp, "f-dot")})`,
    );
  });

  test("a location that is a FIFO is refused without opening it", async () => {
    const dir = path.join(tmp, "f-fifo");
    const file = writeRaw(dir, { location: "pipe.bin", offset: "0", length: "24" });
    expect(spawnSync("mkfifo", [path.join(dir, "pipe.bin")]).status).toBe(0);
    const e = await loadError(file);
    expect(e.message).toBe(
      `${file}: external data "pipe.bin" of tensor "W" is not a regular file (a FIFO) (model folder ${dir})`,
    );
  });
});
