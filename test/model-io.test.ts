// Round trips of every corpus model through loadModel + saveModel with no passes: the decoded protos
// (unknown fields included) must be equal field by field, node metadata_props must survive, and the
// re-saved models must still compute PyTorch's outputs in stock onnxruntime-node.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, test } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { loadModel, saveModel } from "../src/ir/model-io.js";
import {
  decodeMessage,
  encodeMessage,
  getNodeMetadata,
  onnx,
  setNodeMetadata,
  unknownFieldNumbers,
} from "../src/ir/onnx.js";
import { TOLERANCE, float32Info, modelOf, readDataSet, relativeL2, toOrtTensor } from "./helpers/index.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The shared exporter corpus (../shared/corpus, or GDN_FUSE_CORPUS) and the project's own models/. */
const SOURCES: [string, string][] = [
  ["shared", process.env.GDN_FUSE_CORPUS ?? path.resolve(HERE, "../../shared/corpus")],
  ["models", path.resolve(HERE, "../models")],
];
const cases = SOURCES.flatMap(([label, dir]) =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((d) => fs.existsSync(path.join(dir, d, "model.onnx")))
        .sort()
        .map((d) => ({ id: `${label}/${d}`, dir: path.join(dir, d) }))
    : [],
);
const MODELS_DIR = path.resolve(HERE, "../models");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-fuse-model-io-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The first path at which two decoded messages differ (undefined when equal); bytes compared whole. */
function firstDifference(a: unknown, b: unknown, at = "model"): string | undefined {
  if (a === b) return undefined;
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.length === b.length && Buffer.compare(a, b) === 0
      ? undefined
      : `${at}: bytes differ (${a.length} vs ${b.length})`;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${at}: length ${a.length} vs ${b.length}`;
    for (let i = 0; i < a.length; i++) {
      const d = firstDifference(a[i], b[i], `${at}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    for (const k of new Set([...Object.keys(ra), ...Object.keys(rb)])) {
      const d = firstDifference(ra[k], rb[k], `${at}.${k}`);
      if (d) return d;
    }
    return undefined;
  }
  return `${at}: ${String(a)} vs ${String(b)}`;
}

function countTaggedNodes(m: onnx.IModelProto): number {
  return (m.graph?.node ?? []).filter((n) => Object.keys(getNodeMetadata(n)).length > 0).length;
}

describe("round trip through loadModel + saveModel", () => {
  test("finds the corpus", () => {
    expect(cases.filter((c) => c.id.startsWith("models/")).length).toBeGreaterThanOrEqual(9);
  });

  for (const { id, dir } of cases) {
    test(`keeps every field of ${id}`, async () => {
      const src = path.join(dir, "model.onnx");
      const out = path.join(tmp, id, "model.onnx");
      const model = await loadModel(src);
      await saveModel(model, out);
      const before = decodeMessage(onnx.ModelProto, fs.readFileSync(src));
      const after = decodeMessage(onnx.ModelProto, fs.readFileSync(out));
      expect(firstDifference(after, before)).toBeUndefined();
      const tagged = countTaggedNodes(after);
      expect(tagged).toBe(countTaggedNodes(before));
      expect(tagged).toBeGreaterThan(0); // torch.onnx sets NodeProto.metadata_props (field 9)
      expect(fs.readdirSync(path.dirname(out))).toEqual(["model.onnx"]); // no temp files left
    });
  }

  const runnable = cases.filter(
    ({ id, dir }) => !id.includes("/bench_") && fs.existsSync(path.join(dir, "test_data_set_0")),
  );
  for (const { id, dir } of runnable) {
    const model = decodeMessage(onnx.ModelProto, fs.readFileSync(path.join(dir, "model.onnx")));
    const io = [...(model.graph?.input ?? []), ...(model.graph?.output ?? [])];
    // stock onnxruntime-node has no bfloat16 tensor type; those models are covered by the field-by-field test
    const hasBf16 = io.some((v) => v.type?.tensorType?.elemType === 16);
    const halfPrecision = io.some((v) => v.type?.tensorType?.elemType === 10);
    test.skipIf(hasBf16)(`the re-saved ${id} still computes PyTorch's outputs in onnxruntime`, async () => {
      const out = path.join(tmp, "ort", id, "model.onnx");
      await saveModel(await loadModel(path.join(dir, "model.onnx")), out);
      const session = await ort.InferenceSession.create(out, {
        graphOptimizationLevel: "disabled",
        intraOpNumThreads: 2,
      });
      const dataDir = path.join(dir, "test_data_set_0");
      const inputs = readDataSet(dataDir, "input");
      const outputs = readDataSet(dataDir, "output");
      const feeds: Record<string, ort.Tensor> = {};
      session.inputNames.forEach((input, i) => (feeds[input] = toOrtTensor(inputs[i]!)));
      const results = await session.run(feeds);
      // A model that computes in float16 carries that error into its float32 outputs too (e.g. a state).
      const tol = TOLERANCE[halfPrecision ? "float16" : "float32"];
      session.outputNames.forEach((output, i) => {
        expect(relativeL2(results[output]!, outputs[i]!), `${id} ${output}`).toBeLessThanOrEqual(tol);
      });
      await session.release();
    });
  }
});

describe("lossless onnx namespace", () => {
  test("keeps fields the 1.10 schema lacks and writes them back", () => {
    // NodeProto with overload (field 8, string) and metadata_props (field 9), both unknown to onnx 1.10
    const node = onnx.NodeProto.create({ opType: "Add", input: ["a", "b"], output: ["c"] });
    setNodeMetadata(node, "pkg.gdn_fuse.pass", "gated-delta-chunk");
    const w = onnx.NodeProto.encode(node);
    w.uint32((8 << 3) | 2).string("ovl");
    const decoded = decodeMessage(onnx.NodeProto, w.finish());
    expect(unknownFieldNumbers(decoded)).toEqual([9, 8]);
    expect(getNodeMetadata(decoded)).toEqual({ "pkg.gdn_fuse.pass": "gated-delta-chunk" });
    const again = decodeMessage(onnx.NodeProto, encodeMessage(onnx.NodeProto, decoded));
    expect(again.$unknown).toEqual(decoded.$unknown);
  });

  test("keeps unknown fields of nested messages inside their parent's length", () => {
    const node = onnx.NodeProto.create({ opType: "Relu", input: ["x"], output: ["y"] });
    setNodeMetadata(node, "k", "v");
    const graph = onnx.GraphProto.create({
      name: "g",
      node: [node, onnx.NodeProto.create({ opType: "Neg", input: ["y"], output: ["z"] })],
    });
    const model = modelOf(graph);
    const back = decodeMessage(onnx.ModelProto, encodeMessage(onnx.ModelProto, model));
    expect(getNodeMetadata(back.graph!.node![0]!)).toEqual({ k: "v" });
    expect(back.graph!.node![1]!.opType).toBe("Neg");
    expect(back.graph!.node![1]!.$unknown).toBeUndefined();
  });

  test("setNodeMetadata replaces a key and keeps the others", () => {
    const node = onnx.NodeProto.create({ opType: "Relu" });
    setNodeMetadata(node, "a", "1");
    setNodeMetadata(node, "b", "2");
    setNodeMetadata(node, "a", "3");
    expect(getNodeMetadata(node)).toEqual({ a: "3", b: "2" });
    expect(node.$unknown).toHaveLength(2);
  });
});

describe("bad input", () => {
  test("names a missing file", async () => {
    const err = await loadModel(path.join(tmp, "missing.onnx")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GdnFuseError);
    expect((err as GdnFuseError).code).toBe("E_IO");
    expect((err as GdnFuseError).message).toContain("missing.onnx");
  });

  test("rejects a protobuf that is not a model, with reason", async () => {
    // a well-formed protobuf: producer fields only, and a field ModelProto does not have
    const w = onnx.ModelProto.encode(onnx.ModelProto.create({ producerName: "pytorch", docString: "hello" }));
    const bytes = w
      .uint32((100 << 3) | 2)
      .string("extra")
      .finish();
    const err = (await loadModel(bytes, { name: "t.pb" }).catch((e: unknown) => e)) as GdnFuseError;
    expect(err.code).toBe("E_PARSE");
    expect(err.message).toMatch(
      /^t\.pb: is a protobuf message but not an ONNX model \(no graph, no opset_import, ir_version 0\)$/,
    );
  });

  test("rejects a node reading an undefined value, with reason", async () => {
    const model = modelOf({
      name: "g",
      input: [{ name: "x" }],
      output: [{ name: "y" }],
      node: [{ name: "add0", opType: "Add", input: ["x", "ghost"], output: ["y"] }],
    });
    const err = (await loadModel(encodeMessage(onnx.ModelProto, model)).catch((e: unknown) => e)) as GdnFuseError;
    expect(err.code).toBe("E_MODEL");
    expect(err.message).toContain('node "add0" (Add) reads "ghost"');
  });

  test("refuses to overwrite the input model unless asked", async () => {
    const file = path.join(tmp, "self", "model.onnx");
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.copyFileSync(path.join(MODELS_DIR, "recurrent_t1_b3", "model.onnx"), file);
    const model = await loadModel(file);
    const err = (await saveModel(model, file).catch((e: unknown) => e)) as GdnFuseError;
    expect(err.code).toBe("E_USAGE");
    expect(err.message).toBe(`${file}: is the input model; refusing to write over it (pass overwriteInput)`);
    await saveModel(model, file, { overwriteInput: true });
    expect(fs.readdirSync(path.dirname(file))).toEqual(["model.onnx"]);
  });

  test("leaves no partial file when the output folder cannot be made", async () => {
    const blocker = path.join(tmp, "a-file");
    fs.writeFileSync(blocker, "x");
    const model = await loadModel(path.join(MODELS_DIR, "recurrent_t1_b3", "model.onnx"));
    const err = (await saveModel(model, path.join(blocker, "sub", "out.onnx")).catch(
      (e: unknown) => e,
    )) as GdnFuseError;
    expect(err.code).toBe("E_IO");
    expect(fs.readFileSync(blocker, "utf8")).toBe("x");
  });
});

// Validation on load, to the level of ONNX's checker (checker.cc): every case is a small valid model with
// one field made wrong, and the load must fail with that exact one-line message.
describe("validation on load", () => {
  const LABEL = "model.onnx";
  /** y = x + w, x and w float32 [2]. */
  function small(): onnx.ModelProto {
    return modelOf({
      name: "g",
      input: [float32Info("x", [2])],
      output: [float32Info("y", [2])],
      initializer: [{ name: "w", dims: [2], dataType: 1, rawData: new Uint8Array(8) }],
      node: [{ name: "add0", opType: "Add", input: ["x", "w"], output: ["y"] }],
    });
  }
  const w = (m: onnx.ModelProto): onnx.ITensorProto => m.graph!.initializer![0]!;
  const node = (m: onnx.ModelProto): onnx.INodeProto => m.graph!.node![0]!;
  const attr = (a: onnx.IAttributeProto) => (m: onnx.ModelProto) => void (node(m).attribute = [a]);
  const long = (n: bigint) => ({
    low: Number(BigInt.asIntN(32, n)),
    high: Number(BigInt.asIntN(32, n >> 32n)),
    unsigned: false,
  });
  const loop = (body: onnx.IGraphProto) => (m: onnx.ModelProto) => {
    m.graph!.node!.push({
      name: "if0",
      opType: "If",
      input: ["c"],
      output: ["z"],
      attribute: [
        { name: "then_branch", type: 5, g: body },
        { name: "else_branch", type: 5, g: { name: "e", output: [float32Info("y", [2])] } },
      ],
    });
    m.graph!.input!.push({ name: "c", type: { tensorType: { elemType: 9, shape: { dim: [] } } } });
  };

  const CASES: [string, (m: onnx.ModelProto) => void, string, string][] = [
    [
      "raw_data shorter than the dims",
      (m) => void (w(m).rawData = new Uint8Array(4)),
      "E_MODEL",
      'initializer "w": raw_data has 4 bytes, dims [2] of float need 8',
    ],
    [
      "a negative dim",
      (m) => void (w(m).dims = [2, -1]),
      "E_MODEL",
      'initializer "w": dims [2, -1] has a negative dim',
    ],
    [
      "a 2^40 dim",
      (m) => void (w(m).dims = [2 ** 40]),
      "E_MODEL",
      'initializer "w": raw_data has 8 bytes, dims [1099511627776] of float need 4398046511104',
    ],
    [
      "dims whose product overflows",
      (m) => void (w(m).dims = [long(2n ** 63n - 1n), long(2n ** 62n)] as never),
      "E_MODEL",
      'initializer "w": dims [9223372036854775807, 4611686018427387904] hold more elements than can be addressed',
    ],
    [
      "a string tensor in raw_data",
      (m) => void (w(m).dataType = 8),
      "E_MODEL",
      'initializer "w": a string tensor cannot use raw_data',
    ],
    ["an unknown data_type", (m) => void (w(m).dataType = 99), "E_MODEL", 'initializer "w": unknown data_type 99'],
    ["no data_type", (m) => void (w(m).dataType = 0), "E_MODEL", 'initializer "w": data_type is not set'],
    [
      "a typed field that does not match the data type",
      (m) => {
        delete (w(m) as { rawData?: unknown }).rawData;
        w(m).int64Data = [1, 2];
      },
      "E_MODEL",
      'initializer "w": holds int64_data, but data_type float keeps its values in float_data',
    ],
    [
      "too few typed values",
      (m) => {
        delete (w(m) as { rawData?: unknown }).rawData;
        w(m).floatData = [1];
      },
      "E_MODEL",
      'initializer "w": float_data has 1 values, dims [2] need 2',
    ],
    [
      "two value fields",
      (m) => void (w(m).floatData = [1, 2]),
      "E_MODEL",
      'initializer "w": has both raw_data and float_data',
    ],
    [
      "an attribute whose type does not match its field",
      attr({ name: "alpha", type: 1, i: 3 }),
      "E_MODEL",
      'node "add0" (Add): attribute "alpha" has type FLOAT but sets i',
    ],
    [
      "an attribute of an unknown type",
      attr({ name: "alpha", type: 99 as onnx.AttributeProto.AttributeType, f: 1 }),
      "E_MODEL",
      'node "add0" (Add): attribute "alpha" has unknown type 99',
    ],
    [
      "an attribute with no type",
      attr({ name: "alpha", f: 1 }),
      "E_MODEL",
      'node "add0" (Add): attribute "alpha" has no type',
    ],
    [
      "an attribute with two values",
      attr({ name: "alpha", type: 7, ints: [1], floats: [2] }),
      "E_MODEL",
      'node "add0" (Add): attribute "alpha" sets more than one value (floats, ints)',
    ],
    ["an attribute with no name", attr({ type: 1, f: 1 }), "E_MODEL", 'node "add0" (Add): an attribute has no name'],
    [
      "two attributes of one name",
      (m) =>
        void (node(m).attribute = [
          { name: "a", type: 1, f: 1 },
          { name: "a", type: 1, f: 2 },
        ]),
      "E_MODEL",
      'node "add0" (Add): attribute "a" is given twice',
    ],
    [
      "a duplicate graph input",
      (m) => void m.graph!.input!.push(float32Info("x", [2])),
      "E_MODEL",
      'graph input "x" is declared twice',
    ],
    [
      "a duplicate initializer",
      (m) => void m.graph!.initializer!.push(w(m)),
      "E_MODEL",
      'initializer "w" is declared twice',
    ],
    [
      "a node writing a graph input",
      (m) => void m.graph!.node!.push({ name: "n1", opType: "Neg", input: ["y"], output: ["x"] }),
      "E_MODEL",
      'node "n1" (Neg) writes "x", which is already a graph input or initializer',
    ],
    [
      "a node reading a value produced later",
      (m) => {
        m.graph!.node!.unshift({ name: "n0", opType: "Neg", input: ["y"], output: ["z"] });
      },
      "E_MODEL",
      'node "n0" (Neg) reads "y" before node "add0" (Add) produces it (nodes must be in topological order)',
    ],
    [
      "a cycle",
      (m) => {
        node(m).input = ["x", "z"];
        m.graph!.node!.push({ name: "n1", opType: "Neg", input: ["y"], output: ["z"] });
      },
      "E_MODEL",
      'node "add0" (Add) reads "z" before node "n1" (Neg) produces it (nodes must be in topological order)',
    ],
    [
      "a standard op without its first input",
      (m) => void (node(m).input = ["", "w"]),
      "E_MODEL",
      'node "add0" (Add): input 0 is required; an empty name means it is absent',
    ],
    [
      "a Concat with an empty input",
      (m) =>
        void m.graph!.node!.push({
          name: "cat0",
          opType: "Concat",
          input: ["y", "", "x"],
          output: ["z"],
          attribute: [{ name: "axis", type: 2, i: 0 }],
        }),
      "E_MODEL",
      'node "cat0" (Concat): input 1 is required; an empty name means it is absent',
    ],
    [
      "opset version 0",
      (m) => void (m.opsetImport[0]!.version = 0),
      "E_MODEL",
      'opset_import of domain "" has version 0; it must be >= 1',
    ],
    [
      "a domain imported twice",
      (m) => void m.opsetImport.push({ domain: "", version: 17 }),
      "E_MODEL",
      'opset_import lists domain "" twice',
    ],
    [
      "a node of a domain not imported",
      (m) => void (node(m).domain = "gdn"),
      "E_MODEL",
      'node "add0" (Add): domain "gdn" has no opset_import',
    ],
    [
      "an unknown elem_type on a graph input",
      (m) => void (m.graph!.input![0]!.type!.tensorType!.elemType = 77),
      "E_MODEL",
      'graph input "x": unknown elem_type 77',
    ],
    [
      "a negative dim on a value_info",
      (m) => void (m.graph!.output![0]!.type!.tensorType!.shape!.dim![0]!.dimValue = -3),
      "E_MODEL",
      'graph output "y": shape has a negative dim -3',
    ],
    ["a graph input with no name", (m) => void m.graph!.input!.push({}), "E_MODEL", "a graph input has no name"],
    [
      "a bad tensor inside a subgraph",
      loop({
        name: "body",
        output: [float32Info("v", [2])],
        initializer: [{ name: "v", dims: [3], dataType: 1, rawData: new Uint8Array(8) }],
      }),
      "E_MODEL",
      'subgraph "then_branch" of node "if0" (If): initializer "v": raw_data has 8 bytes, dims [3] of float need 12',
    ],
    [
      "a subgraph reading a value of its parent defined later",
      (m) => {
        loop({
          name: "body",
          output: [float32Info("v", [2])],
          node: [{ name: "b0", opType: "Neg", input: ["late"], output: ["v"] }],
        })(m);
        m.graph!.node!.push({ name: "n2", opType: "Neg", input: ["y"], output: ["late"] });
      },
      "E_MODEL",
      'subgraph "then_branch" of node "if0" (If): node "b0" (Neg) reads "late", which no node, initializer or graph input produces',
    ],
    [
      "a Constant whose tensor is short",
      (m) => {
        m.graph!.node!.push({
          name: "c0",
          opType: "Constant",
          output: ["k"],
          attribute: [{ name: "value", type: 4, t: { dims: [4], dataType: 7, rawData: new Uint8Array(8) } }],
        });
      },
      "E_MODEL",
      'node "c0" (Constant): attribute "value": tensor "": raw_data has 8 bytes, dims [4] of int64 need 32',
    ],
  ];

  test.each(CASES)("refuses %s", async (_what, mutate, code, message) => {
    const m = small();
    mutate(m);
    const err = (await loadModel(encodeMessage(onnx.ModelProto, m), { name: LABEL }).catch(
      (e: unknown) => e,
    )) as GdnFuseError;
    expect(err).toBeInstanceOf(GdnFuseError);
    expect([err.code, err.message]).toEqual([code, `${LABEL}: ${message}`]);
  });

  test("the unmutated model loads", async () => {
    await expect(loadModel(encodeMessage(onnx.ModelProto, small()))).resolves.toBeDefined();
  });

  test("a missing ir_version is refused", async () => {
    const m = small();
    m.irVersion = 0;
    const err = (await loadModel(encodeMessage(onnx.ModelProto, m), { name: LABEL }).catch(
      (e: unknown) => e,
    )) as GdnFuseError;
    expect(err.message).toBe(`${LABEL}: is a protobuf message but not an ONNX model (ir_version 0)`);
  });

  test("zero-element tensors with a huge dim are valid", async () => {
    const m = small();
    m.graph!.initializer!.push({ name: "e", dims: [0, long(2n ** 62n)] as never, dataType: 1 });
    await expect(loadModel(encodeMessage(onnx.ModelProto, m))).resolves.toBeDefined();
  });
});
