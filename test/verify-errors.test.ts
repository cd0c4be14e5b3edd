// verifyModels on inputs that onnxruntime or the proto decoder rejects: every failure is a GdnFuseError
// with a code and a one-line message (never a raw ORT/protobuf error, which the CLI would print as an
// "internal error"). And the model the caller already loaded is used as it is (no second decode).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { loadModel } from "../src/ir/model-io.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { arrayToTensor } from "../src/ir/tensor.js";
import { verifyModels } from "../src/verify/index.js";
import { runtimeLoadError } from "./helpers/index.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-verify-errors-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const noRuntime = runtimeLoadError();

/** y = x + 1 over x: float32 [dim]; written to `name`.onnx. */
function addOne(name: string, dim: number): string {
  const vi = (n: string): onnx.IValueInfoProto => ({
    name: n,
    type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: dim }] } } },
  });
  const proto: onnx.IModelProto = {
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name,
      node: [{ opType: "Add", input: ["x", "one"], output: ["y"], name: "add" }],
      initializer: [arrayToTensor("one", [], 1, [1])],
      input: [vi("x")],
      output: [vi("y")],
    },
  };
  const file = path.join(tmp, `${name}.onnx`);
  fs.writeFileSync(file, encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(proto)));
  return file;
}

/** A test-data folder whose input_0.pb is `tensor`. */
function dataWith(name: string, tensor: onnx.ITensorProto): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "input_0.pb"), encodeMessage(onnx.TensorProto, onnx.TensorProto.fromObject(tensor)));
  return dir;
}

/** The GdnFuseError `p` rejects with (fails the test on anything else). */
async function gdnError(p: Promise<unknown>): Promise<GdnFuseError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, String(e)).toBeInstanceOf(GdnFuseError);
  const g = e as GdnFuseError;
  expect(g.message).not.toContain("\n");
  return g;
}

describe.skipIf(noRuntime !== undefined)("verifyModels errors", () => {
  const model = addOne("add4", 4);

  test("an input of another shape than the model's is ORT's one-line refusal, E_RUNTIME", async () => {
    const data = dataWith("shape", arrayToTensor("x", [3], 1, [1, 2, 3]));
    const e = await gdnError(verifyModels(model, model, { dataDir: data }));
    expect(e.code).toBe("E_RUNTIME");
    expect(e.message).toMatch(/^running the original model in onnxruntime failed: .*x.*$/);
  });

  test("an input of another element type (int32 for float) is refused, E_RUNTIME", async () => {
    const data = dataWith("type", { name: "x", dims: [4], dataType: 6, int32Data: [1, 2, 3, 4] });
    const e = await gdnError(verifyModels(model, model, { dataDir: data }));
    expect(e.code).toBe("E_RUNTIME");
    expect(e.message).toMatch(/^running the original model in onnxruntime failed: /);
  });

  test("an input whose data does not fill its dims is refused naming the file, E_VERIFY", async () => {
    const data = dataWith("short", { name: "x", dims: [4], dataType: 1, floatData: [1, 2] });
    const e = await gdnError(verifyModels(model, model, { dataDir: data }));
    expect(e.code).toBe("E_VERIFY");
    expect(e.message).toBe(`${path.join(data, "input_0.pb")}: tensor "x": 2 elements stored for dims [4] (4)`);
  });

  test("a string input is refused naming the file, E_VERIFY", async () => {
    const data = dataWith("string", { name: "x", dims: [1], dataType: 8, stringData: [new TextEncoder().encode("a")] });
    const e = await gdnError(verifyModels(model, model, { dataDir: data }));
    expect(e.code).toBe("E_VERIFY");
    expect(e.message).toBe(`${path.join(data, "input_0.pb")}: tensor "x": element type string is not supported here`);
  });

  test("random inputs for a dimension too large to allocate are refused, E_VERIFY", async () => {
    const huge = addOne("huge", 2 ** 40);
    const e = await gdnError(verifyModels(huge, huge));
    expect(e.code).toBe("E_VERIFY");
    expect(e.message).toMatch(/^cannot make the model's inputs: /);
  });

  test("the caller's loaded model is used as it is: its inputs, its file", async () => {
    const loaded = await loadModel(model);
    const r = await verifyModels(loaded, model);
    expect(r).toMatchObject({ ok: true, source: "random", outputs: [{ name: "y", relL2: 0 }] });
  });

  test("a loaded model without a file is refused, E_VERIFY", async () => {
    const loaded = await loadModel(new Uint8Array(fs.readFileSync(model)));
    const e = await gdnError(verifyModels(loaded, model));
    expect(e.code).toBe("E_VERIFY");
    expect(e.message).toBe("the original model was loaded from bytes; verifying needs its file (loadModel(path))");
  });
});
