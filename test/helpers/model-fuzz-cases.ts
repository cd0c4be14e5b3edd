/**
 * Structure-aware model fuzzing: each case takes a valid model (fixtures from models/, plus a small one
 * with external data and an If subgraph), sets one to three of its *fields* to hostile values (dims, data
 * types, raw_data lengths, external data entries, attributes, node inputs/outputs, names, opsets,
 * ir_version, value_info shapes, node order), then runs load + fuse + save + reload the way the CLI does.
 *
 * runCase returns "rejected E_CODE" when a GdnFuseError stops it, "fused N" when the model went through;
 * anything else thrown (a TypeError, a RangeError, an ORT error) propagates and counts against the case,
 * as does a written model that does not load back. Run through test/helpers/child-fuzz.ts.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
// The package entry registers the built-in passes (the child processes this runs in get no vitest setup).
import "../../src/index.js";
import { GdnFuseError } from "../../src/errors.js";
import { loadModel, saveModel } from "../../src/ir/model-io.js";
import { decodeMessage, encodeMessage, onnx } from "../../src/ir/onnx.js";
import { seededRandom } from "../../src/numeric.js";
import { fuseModel } from "../../src/pipeline/index.js";
import { externalFloat32, float32Info, modelOf } from "./models.js";
import { MODELS } from "./paths.js";

const FIXTURES = ["recurrent_t1_b1_opset23_nol2", "recurrent_t1_b3", "layer_qwen35_decode_b2"];
const SEED = 0x5eed_f022;

type Rand = () => number;
type Int64 = number | { low: number; high: number; unsigned: boolean };

/** A graph attribute of an If: the one-node subgraph `node` (its output float32 [2]), named for the branch. */
const branch = (name: string, node: onnx.INodeProto): onnx.IAttributeProto => ({
  name,
  type: 5,
  g: { name: name.replace("_branch", ""), output: [float32Info(node.output![0]!, [2])], node: [node] },
});

/** y = If(c, then: x + w (w external, 8 bytes at offset 16 of w.bin), else: x - k); k a Constant. */
function extSubgraphModel(): onnx.ModelProto {
  return modelOf({
    name: "ext",
    input: [float32Info("x", [2]), { name: "c", type: { tensorType: { elemType: 9, shape: { dim: [] } } } }],
    output: [float32Info("y", [2])],
    initializer: [
      externalFloat32(
        "w",
        [2],
        { key: "location", value: "w.bin" },
        { key: "offset", value: "16" },
        { key: "length", value: "8" },
      ),
    ],
    node: [
      {
        name: "k0",
        opType: "Constant",
        output: ["k"],
        attribute: [{ name: "value", type: 4, t: { dims: [2], dataType: 1, floatData: [1, 2] } }],
      },
      {
        name: "if0",
        opType: "If",
        input: ["c"],
        output: ["y"],
        attribute: [
          branch("then_branch", { name: "add0", opType: "Add", input: ["x", "w"], output: ["t"] }),
          branch("else_branch", { name: "sub0", opType: "Sub", input: ["x", "k"], output: ["e"] }),
        ],
      },
    ],
  });
}

const EXT_BYTES = Buffer.from(Float32Array.from({ length: 8 }, (_, i) => i).buffer);
let bases: { name: string; bytes: Uint8Array; external: boolean }[] | undefined;
function baseModels(): NonNullable<typeof bases> {
  bases ??= [
    ...FIXTURES.map((f) => ({
      name: f,
      bytes: fs.readFileSync(path.join(MODELS, f, "model.onnx")) as Uint8Array,
      external: false,
    })),
    { name: "ext-subgraph", bytes: encodeMessage(onnx.ModelProto, extSubgraphModel()), external: true },
  ];
  return bases;
}

// ---- picking targets ----------------------------------------------------------------------------
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int64 = (v: bigint): Int64 => ({
  low: Number(BigInt.asIntN(32, v)),
  high: Number(BigInt.asIntN(32, v >> 32n)),
  unsigned: false,
});

/** Every graph of the model: the main one and all subgraphs. */
function graphs(m: onnx.IModelProto): onnx.IGraphProto[] {
  const out: onnx.IGraphProto[] = [];
  const visit = (g: onnx.IGraphProto): void => {
    out.push(g);
    for (const n of g.node ?? [])
      for (const a of n.attribute ?? []) for (const s of [a.g, ...(a.graphs ?? [])]) if (s) visit(s);
  };
  if (m.graph) visit(m.graph);
  return out;
}

function tensors(m: onnx.IModelProto): onnx.ITensorProto[] {
  const out: onnx.ITensorProto[] = [];
  for (const g of graphs(m)) {
    out.push(...(g.initializer ?? []));
    for (const n of g.node ?? []) for (const a of n.attribute ?? []) if (a.t) out.push(a.t);
  }
  return out;
}

const nodes = (m: onnx.IModelProto): onnx.INodeProto[] => graphs(m).flatMap((g) => g.node ?? []);
const attributes = (m: onnx.IModelProto): onnx.IAttributeProto[] => nodes(m).flatMap((n) => n.attribute ?? []);
const valueInfos = (m: onnx.IModelProto): onnx.IValueInfoProto[] =>
  graphs(m).flatMap((g) => [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]);
const allNames = (m: onnx.IModelProto): string[] =>
  [...valueInfos(m).map((v) => v.name ?? ""), ...nodes(m).flatMap((n) => n.output ?? [])].filter((s) => s !== "");

// ---- mutations ----------------------------------------------------------------------------------
const HOSTILE_DIMS: Int64[] = [-1, 0, 2 ** 31, 2 ** 40, int64(2n ** 63n - 1n), int64(-(2n ** 63n)), 1, 3];
const HOSTILE_TYPES = [0, 8, 99, -1, 10, 7, 16, 21, 14, 24, 25];
const LOCATIONS = [
  "w.bin",
  "../w.bin",
  "/etc/passwd",
  ".",
  "",
  "missing.bin",
  "sub/../w.bin",
  "w.bin\u0000x",
  "model.onnx",
];
const NUMBERS = ["0", "16", "8", "0x10", "-1", "1e2", " 8", "99999999999999999999", "4", "12", "1000000"];

type Mutation = (m: onnx.ModelProto, r: Rand) => string;

const MUTATIONS: Mutation[] = [
  function dims(m, r) {
    const t = pick(r, tensors(m));
    const d = [...(t.dims ?? [])] as Int64[];
    const v = pick(r, HOSTILE_DIMS);
    if (d.length === 0 || r() < 0.2) d.push(v);
    else d[Math.floor(r() * d.length)] = v;
    t.dims = d as never;
    return `dims of ${t.name}`;
  },
  function dropDim(m, r) {
    const t = pick(r, tensors(m));
    t.dims = (t.dims ?? []).slice(1);
    return `drop a dim of ${t.name}`;
  },
  function dataType(m, r) {
    const t = pick(r, tensors(m));
    t.dataType = pick(r, HOSTILE_TYPES);
    return `data_type of ${t.name} = ${t.dataType}`;
  },
  function rawDataLength(m, r) {
    const t = pick(
      r,
      tensors(m).filter((x) => (x.rawData?.length ?? 0) > 0),
    );
    if (!t) return "no raw_data";
    const raw = t.rawData!;
    const len = pick(r, [0, 1, raw.length - 1, raw.length + 1, raw.length * 2, Math.floor(raw.length / 2)]);
    const out = new Uint8Array(Math.max(0, len));
    out.set(raw.subarray(0, Math.min(raw.length, out.length)));
    t.rawData = out;
    return `raw_data of ${t.name} to ${out.length} bytes`;
  },
  function typedField(m, r) {
    const t = pick(r, tensors(m));
    const field = pick(r, ["floatData", "int32Data", "int64Data", "doubleData", "stringData", "uint64Data"] as const);
    const values = field === "stringData" ? [new Uint8Array([65])] : [1, 2, 3].slice(0, 1 + Math.floor(r() * 3));
    (t as Record<string, unknown>)[field] = values;
    if (r() < 0.5) delete (t as Record<string, unknown>).rawData;
    return `${field} on ${t.name}`;
  },
  function externalData(m, r) {
    const t = pick(r, tensors(m));
    t.dataLocation = pick(r, [1, 1, 1, 2, 0]) as onnx.TensorProto.DataLocation;
    const entries = [{ key: "location", value: pick(r, LOCATIONS) }];
    if (r() < 0.8) entries.push({ key: "offset", value: pick(r, NUMBERS) });
    if (r() < 0.7) entries.push({ key: "length", value: pick(r, NUMBERS) });
    if (r() < 0.1) entries.push({ key: "location", value: "w.bin" });
    t.externalData = entries;
    if (r() < 0.7) delete (t as Record<string, unknown>).rawData;
    return `external data of ${t.name}: ${JSON.stringify(entries)}`;
  },
  function attributeType(m, r) {
    const a = pick(r, attributes(m));
    if (!a) return "no attribute";
    a.type = pick(r, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 99]) as onnx.AttributeProto.AttributeType;
    return `type of attribute ${a.name} = ${a.type}`;
  },
  function attributeValue(m, r) {
    const a = pick(r, attributes(m));
    if (!a) return "no attribute";
    const rec = a as Record<string, unknown>;
    switch (Math.floor(r() * 7)) {
      case 0:
        rec.i = pick(r, [-1, 0, 2 ** 31, int64(2n ** 63n - 1n), 1_000_000]);
        break;
      case 1:
        rec.ints = [pick(r, [-1, 0, 2 ** 40, 7]), pick(r, [-5, 3])];
        break;
      case 2:
        rec.f = pick(r, [NaN, Infinity, -0, 1e30]);
        break;
      case 3:
        rec.s = new Uint8Array([0xff, 0xfe]);
        break;
      case 4:
        rec.t = { dims: [2], dataType: 1, rawData: new Uint8Array(3) };
        break;
      case 5:
        rec.g = { name: "bogus", output: [{ name: "nowhere" }] };
        break;
      default:
        a.name = pick(r, ["", "axis", "value", "then_branch"]);
    }
    return `value of attribute ${a.name}`;
  },
  function dropAttribute(m, r) {
    const n = pick(
      r,
      nodes(m).filter((x) => (x.attribute?.length ?? 0) > 0),
    );
    if (!n) return "no attribute";
    const as = n.attribute!;
    if (r() < 0.5) as.splice(Math.floor(r() * as.length), 1);
    else as.push({ ...as[0]! });
    return `attributes of ${n.name}`;
  },
  function nodeInput(m, r) {
    const ns = nodes(m).filter((x) => (x.input?.length ?? 0) > 0);
    const n = pick(r, ns);
    if (!n) return "no inputs";
    const i = Math.floor(r() * n.input!.length);
    const later = pick(r, ns.slice(ns.indexOf(n)));
    n.input![i] = pick(r, [
      "ghost",
      "",
      n.output?.[0] ?? "self",
      later.output?.[0] ?? "later",
      pick(r, allNames(m)),
      n.input![0]!,
    ]);
    return `input ${i} of ${n.name} = ${n.input![i]}`;
  },
  function nodeOutput(m, r) {
    const n = pick(r, nodes(m));
    const outs = n.output ?? [];
    if (outs.length === 0 || r() < 0.15) n.output = [];
    else outs[Math.floor(r() * outs.length)] = pick(r, ["", "fresh", pick(r, allNames(m)), outs[0]!]);
    return `outputs of ${n.name}`;
  },
  function opType(m, r) {
    const n = pick(r, nodes(m));
    if (r() < 0.5) n.opType = pick(r, ["", "Frobnicate", "Loop", "If", "Scan", "MatMul", "Reshape", "Add"]);
    else n.domain = pick(r, ["gdn", "com.microsoft", "ai.onnx", "nope", ""]);
    return `op of ${n.name}`;
  },
  function rename(m, r) {
    const g = pick(r, graphs(m));
    const list = [...(g.input ?? []), ...(g.initializer ?? [])] as { name?: string | null }[];
    const v = pick(r, list);
    if (!v) return "nothing to rename";
    v.name = pick(r, ["", pick(r, allNames(m)), "renamed", "x".repeat(300)]);
    return `rename to ${v.name?.slice(0, 20)}`;
  },
  function opset(m, r) {
    if (m.opsetImport.length === 0) m.opsetImport.push({ domain: "", version: 18 });
    const o = m.opsetImport[0]!;
    switch (Math.floor(r() * 4)) {
      case 0:
        o.version = pick(r, [0, -1, 1, 99999, int64(2n ** 63n - 1n)]) as never;
        break;
      case 1:
        m.opsetImport = [];
        break;
      case 2:
        m.opsetImport.push({ domain: o.domain, version: 17 });
        break;
      default:
        o.domain = pick(r, ["gdn", "com.microsoft", "x"]);
    }
    return "opset_import";
  },
  function irVersion(m, r) {
    m.irVersion = pick(r, [0, -1, 1, 3, 100, int64(2n ** 62n)]) as never;
    return `ir_version ${String(m.irVersion)}`;
  },
  function valueInfo(m, r) {
    const v = pick(r, valueInfos(m));
    const tt = v.type?.tensorType;
    if (!tt || r() < 0.15) {
      v.type = r() < 0.5 ? null : { sequenceType: { elemType: { tensorType: { elemType: 99 } } } };
      return `type of ${v.name}`;
    }
    if (r() < 0.4) tt.elemType = pick(r, HOSTILE_TYPES);
    else
      tt.shape = {
        dim: [{ dimValue: pick(r, HOSTILE_DIMS) as never }, { dimParam: pick(r, ["", "batch", "\u0000"]) }],
      };
    return `value_info ${v.name}`;
  },
  function nodeOrder(m, r) {
    const g = pick(r, graphs(m));
    const ns = g.node ?? [];
    if (ns.length < 2) return "one node";
    const i = Math.floor(r() * ns.length);
    const j = Math.floor(r() * ns.length);
    [ns[i], ns[j]] = [ns[j]!, ns[i]!];
    return `swap nodes ${i} and ${j}`;
  },
  function graphOutputs(m, r) {
    const g = m.graph!;
    const outs = g.output ?? [];
    if (r() < 0.3) g.output = [];
    else if (r() < 0.5) outs.push({ ...outs[0]! });
    else if (outs[0]) outs[0].name = pick(r, ["", "ghost", pick(r, allNames(m))]);
    return "graph outputs";
  },
];

// ---- one case -----------------------------------------------------------------------------------
let workDir: string | undefined;

/** Mutates a base model (chosen by index) with 1-3 field mutations; returns the bytes and what was done. */
export function mutatedModel(index: number): { bytes: Uint8Array; external: boolean; what: string } {
  const r = seededRandom(SEED ^ Math.imul(index + 1, 0x9e3779b1));
  const base = baseModels()[index % baseModels().length]!;
  const m = decodeMessage(onnx.ModelProto, base.bytes);
  const done: string[] = [];
  const count = 1 + Math.floor(r() * 3);
  for (let k = 0; k < count; k++) {
    const mutate = pick(r, MUTATIONS);
    done.push(`${mutate.name}: ${mutate(m, r)}`);
  }
  return {
    bytes: encodeMessage(onnx.ModelProto, m),
    external: base.external,
    what: `${base.name}; ${done.join("; ")}`,
  };
}

/** Load + fuse + save + reload one mutated model in a fresh folder. */
export async function runCase(index: number): Promise<string> {
  workDir ??= fs.mkdtempSync(path.join(os.tmpdir(), "gdn-model-fuzz-"));
  const dir = path.join(workDir, String(index));
  fs.mkdirSync(dir);
  try {
    const { bytes, external, what } = mutatedModel(index);
    const input = path.join(dir, "model.onnx");
    fs.writeFileSync(input, bytes);
    if (external) fs.writeFileSync(path.join(dir, "w.bin"), EXT_BYTES);
    try {
      return await loadFuseSave(input, path.join(dir, "out", "model.onnx"), index);
    } catch (e) {
      if (e instanceof GdnFuseError && e.code) {
        if (e.message.includes("\n")) throw new Error(`multi-line message (${what}): ${e.message}`);
        return `rejected ${e.code}`;
      }
      const err = e instanceof Error ? e : new Error(String(e));
      err.message = `${err.message} [case: ${what}]`;
      throw err;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function loadFuseSave(input: string, output: string, index: number): Promise<string> {
  const model = await loadModel(input);
  const report = await fuseModel(model.proto, { baseDir: model.baseDir, probe: index % 8 === 0 });
  await saveModel(model, output, { externalData: index % 3 === 0 ? "inline" : "copy" });
  try {
    await loadModel(output);
  } catch (e) {
    throw new Error(`the written model does not load back: ${e instanceof Error ? e.message : String(e)}`);
  }
  return `fused ${Object.values(report.fused).reduce((a, b) => a + b, 0)}`;
}
