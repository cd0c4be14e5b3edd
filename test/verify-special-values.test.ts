// --verify compares NaN and ±Inf positions exactly (and their signs) and the finite entries by
// relative L2: a fused model that hides a NaN, invents one, or flips an infinity fails with the
// check that failed; an unchanged model whose outputs hold infinities passes (Inf - Inf is no error).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { arrayToTensor } from "../src/ir/tensor.js";
import { compareValues, relativeL2 } from "../src/numeric.js";
import { formatVerify, verifyModels } from "../src/verify/index.js";
import { runtimeLoadError } from "./helpers/cases.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-verify-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const noRuntime = runtimeLoadError();

/** x: 8 values with negatives at 1, 3, 6 and an exact zero at 5. */
const X = [1, -2, 3, -4, 0.5, 0, -0.25, 2];

/** Writes y = chain(x) as a model: each entry of `ops` is [opType, extra initializer operand?]. */
function model(name: string, ops: [string, number?][]): string {
  const node: onnx.INodeProto[] = [];
  const initializer: onnx.ITensorProto[] = [];
  let cur = "x";
  ops.forEach(([opType, operand], i) => {
    const out = i === ops.length - 1 ? "y" : `t${i}`;
    const inputs = [cur];
    if (operand !== undefined) {
      initializer.push(arrayToTensor(`c${i}`, [], 1, [operand]));
      inputs.push(`c${i}`);
    }
    node.push({ opType, input: inputs, output: [out], name: `n${i}` });
    cur = out;
  });
  const vi = (n: string): onnx.IValueInfoProto => ({
    name: n,
    type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: X.length }] } } },
  });
  const proto: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: { name, node, initializer, input: [vi("x")], output: [vi("y")] },
  };
  const file = path.join(tmp, `${name}.onnx`);
  fs.writeFileSync(file, encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(proto)));
  return file;
}

function dataDir(): string {
  const dir = path.join(tmp, "data");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "input_0.pb"), encodeMessage(onnx.TensorProto, arrayToTensor("x", [X.length], 1, X)));
  return dir;
}

describe("compareValues", () => {
  test("Inf - Inf of the same sign is no difference; the finite entries are compared", () => {
    expect(compareValues([Infinity, -Infinity, 1, 2], [Infinity, -Infinity, 1, 2])).toEqual({
      relL2: 0,
      maxAbs: 0,
      mismatch: undefined,
    });
    expect(relativeL2([Infinity, 3, 4], [Infinity, 3, 4.5])).toBeCloseTo(0.5 / Math.sqrt(9 + 4.5 * 4.5), 12);
  });

  test("NaN and ±Inf positions must match; every kind of difference is named with its count and first index", () => {
    const c = compareValues([NaN, 1, NaN, 5, -Infinity, 7], [0, NaN, NaN, 5, Infinity, NaN]);
    expect(c.mismatch).toBe(
      "NaN at 1 position where the original has finite values (first at index 0); " +
        "finite values at 2 positions where the original has NaN (first at index 1); " +
        "-Inf at 1 position where the original has +Inf (first at index 4)",
    );
    expect(relativeL2([NaN, 1, NaN, 5, -Infinity, 7], [0, NaN, NaN, 5, Infinity, NaN])).toBe(Infinity);
    expect(compareValues([1, 2], [1, 2, 3]).mismatch).toBe("2 values where the original has 3");
  });
});

describe.skipIf(!!noRuntime)("verifyModels: special values", () => {
  const data = dataDir();
  const log = model("log", [["Log"]]); // NaN at the negatives, -Inf at 0

  test("NaN where the original is finite fails, naming the output, the count and the first index", async () => {
    const r = await verifyModels(model("identity", [["Identity"]]), model("sqrt", [["Sqrt"]]), { dataDir: data });
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.specialValues).toBe(
      'output "y": NaN at 3 positions where the original has finite values (first at index 1)',
    );
    expect(formatVerify(r)).toMatch(
      /^FAIL y: .*; output "y": NaN at 3 positions where the original has finite values \(first at index 1\)$/,
    );
  });

  test("finite values where the original has NaN fail (a fusion that hides a NaN)", async () => {
    const r = await verifyModels(log, model("log_abs", [["Abs"], ["Log"]]), { dataDir: data });
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.specialValues).toBe(
      'output "y": finite values at 3 positions where the original has NaN (first at index 1)',
    );
  });

  test("an infinity of the other sign fails", async () => {
    const r = await verifyModels(model("div0", [["Div", 0]]), model("neg_div0", [["Neg"], ["Div", 0]]), {
      dataDir: data,
    });
    expect(r.ok).toBe(false);
    expect(r.outputs[0]!.specialValues).toBe(
      'output "y": -Inf at 4 positions where the original has +Inf (first at index 0); +Inf at 3 positions where the original has -Inf (first at index 1)',
    );
  });

  test("an unchanged model with infinities and NaN in its output passes", async () => {
    const r = await verifyModels(log, log, { dataDir: data });
    expect(r.outputs[0]).toMatchObject({ ok: true, relL2: 0, maxAbs: 0, specialValues: undefined });
    expect(r.ok).toBe(true);
  });
});
