/**
 * Errors of the gdn backend: one line, no ONNX Runtime source locations, always a GdnFuseError with a code.
 */
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { oneNodeModel } from "../src/ops-model.js";
import "../src/runtime/index.js";
import { oneLineMessage } from "../src/runtime/backend.js";
import { loadRuntime } from "../src/runtime/index.js";
import { externalWeightModel } from "./helpers/index.js";

const { onnx } = onnxProto;
const ready = loadRuntime().opsLibraryPath !== null;
const GDN = { executionProviders: ["gdn"] };

/** Creating a gdn session on `model` (bytes, or a path) is refused with a GdnFuseError of this code and message. */
async function expectCreateRefused(model: Uint8Array | string, code: string, message: string): Promise<void> {
  const create =
    typeof model === "string" ? ort.InferenceSession.create(model, GDN) : ort.InferenceSession.create(model, GDN);
  const err = await create.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(GdnFuseError);
  expect(err).toMatchObject({ code, message });
}

describe("gdn backend: one-line errors", () => {
  it("drops ORT's source location and C++ signature, and joins lines", () => {
    expect(
      oneLineMessage(
        "Node () Op (GatedRMSNorm) /onnxruntime_src/onnxruntime/core/session/custom_ops.cc:1333 void onnxruntime::InferOutputTypes(const onnx::OpSchema&, gsl::span<const KernelDef* const>, onnx::InferenceContext&) [CustomOP type inferencing error]: no kernel def matches node inputs for Op: GatedRMSNorm\n",
      ),
    ).toBe(
      "Node () Op (GatedRMSNorm) [CustomOP type inferencing error]: no kernel def matches node inputs for Op: GatedRMSNorm",
    );
    expect(oneLineMessage("first\n  second\n")).toBe("first second");
    expect(oneLineMessage("/onnxruntime_src/onnxruntime/core/framework/x.h:12 onnxruntime::Foo::Bar() x failed")).toBe(
      "x failed",
    );
  });

  it.skipIf(!ready)("a gdn node whose input types match no kernel: one line, E_RUNTIME", async () => {
    const bytes = oneNodeModel({
      opType: "GatedRMSNorm",
      inputs: [{ name: "x" }, { name: "gate", elemType: onnx.TensorProto.DataType.FLOAT16 }, { name: "weight" }],
      outputs: [{ name: "y" }],
      nodeName: "",
    });
    await expectCreateRefused(
      bytes,
      "E_RUNTIME",
      "cannot create session: Node () Op (GatedRMSNorm) [CustomOP type inferencing error]: no kernel def matches node inputs for Op: GatedRMSNorm",
    );
  });
});

type Attr = { name: string; type: number; f?: number; i?: number; s?: Uint8Array };
const A = onnx.AttributeProto.AttributeType;
/** A one-node gdn.GatedRMSNorm or gdn.ChunkGatedDeltaRule model with the given attributes. */
function gdnModel(op: "GatedRMSNorm" | "ChunkGatedDeltaRule", attributes: Attr[], gdnOpset = 1): Uint8Array {
  const inputs = op === "GatedRMSNorm" ? ["x", "gate", "weight"] : ["query", "key", "value", "g", "beta"];
  const outputs = op === "GatedRMSNorm" ? ["y"] : ["output"];
  return oneNodeModel({
    opType: op,
    inputs: inputs.map((name) => ({ name })),
    outputs: outputs.map((name) => ({ name })),
    attributes,
    gdnOpset,
  });
}

describe.skipIf(!ready)("gdn backend: gdn nodes are checked against the op contract before the session is made", () => {
  const dir = mkdtempSync(join(tmpdir(), "gdn-contract-"));
  const cases: [string, Uint8Array, string][] = [
    [
      "an unknown attribute",
      gdnModel("GatedRMSNorm", [{ name: "eps", type: A.FLOAT, f: 1e-5 }]),
      "GatedRMSNorm node 'n0': unknown attribute 'eps' (known: epsilon)",
    ],
    [
      "an int attribute given as a float",
      gdnModel("ChunkGatedDeltaRule", [{ name: "chunk_size", type: A.FLOAT, f: 64 }]),
      "ChunkGatedDeltaRule node 'n0': attribute chunk_size must be an int, got a float",
    ],
    [
      "a string attribute given as an int",
      gdnModel("ChunkGatedDeltaRule", [{ name: "state_layout", type: A.INT, i: 1 }]),
      "ChunkGatedDeltaRule node 'n0': attribute state_layout must be a string, got an int",
    ],
    [
      "a value out of range",
      gdnModel("ChunkGatedDeltaRule", [{ name: "chunk_size", type: A.INT, i: 4096 }]),
      "ChunkGatedDeltaRule node 'n0': attribute chunk_size must be in 1..1024, got 4096",
    ],
    [
      "a string value not allowed",
      gdnModel("ChunkGatedDeltaRule", [{ name: "state_layout", type: A.STRING, s: new TextEncoder().encode("KV") }]),
      `ChunkGatedDeltaRule node 'n0': attribute state_layout must be "kv" or "vk", got "KV"`,
    ],
    [
      "another gdn opset",
      gdnModel("GatedRMSNorm", [], 3),
      "the model imports gdn opset 3; this runtime implements gdn opsets 1 and 2",
    ],
  ];
  it.each(cases)("%s, as bytes and by path", async (_what, bytes, message) => {
    const path = join(dir, `m${cases.findIndex((c) => c[1] === bytes)}.onnx`);
    writeFileSync(path, bytes);
    await expectCreateRefused(bytes, "E_MODEL", `cannot create session: ${message}`);
    await expectCreateRefused(path, "E_MODEL", `cannot create session (${path}): ${message}`);
  });

  it("valid attributes pass", async () => {
    const s = await ort.InferenceSession.create(
      gdnModel("ChunkGatedDeltaRule", [
        { name: "chunk_size", type: A.INT, i: 16 },
        { name: "state_layout", type: A.STRING, s: new TextEncoder().encode("vk") },
        { name: "scale", type: A.FLOAT, f: 0.5 },
      ]),
      { executionProviders: ["gdn"] },
    );
    await s.release();
  });
});

describe("gdn backend: a model given as bytes cannot use external data", () => {
  it("is refused with a clear error instead of reading files relative to the working directory", async () => {
    const bytes = externalWeightModel([
      { key: "location", value: "weights.bin" },
      { key: "length", value: "12" },
    ]);
    await expectCreateRefused(
      bytes,
      "E_EXTERNAL_DATA",
      "cannot create session: the model has external data (initializer 'w' in weights.bin), which a model given as bytes cannot locate; give the model by path (its external data files are found next to it)",
    );
  });
});
