/**
 * The gdn op library against hostile attributes and inputs (issue 10, section 3): every case must give an
 * immediate, one-line error or a correct (possibly empty) result, never a crash, a hang or garbage.
 * Each model runs in a child process (through the gdn runtime), so a crash or a hang fails one test instead
 * of taking the test runner down.
 */
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { decodeMessage, encodeMessage, onnx } from "../src/ir/onnx.js";
import { TOLERANCE, relativeL2, seededRandom } from "../src/numeric.js";
import { oneNodeModel } from "../src/ops-model.js";
import { gatedDeltaReference } from "../src/reference/gated-delta.js";
import { transpileRuntime } from "./helpers/runtime-js.js";

const AT = onnx.AttributeProto.AttributeType;

/** One session per job; runs its feeds `runs` times; reports outputs or the first error (message, first line kept). */
const CHILD = `
import * as ort from "onnxruntime-node";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const job = JSON.parse(input);
await import(job.runtimeUrl);
const report = { rssBefore: process.memoryUsage().rss };
try {
  const session = await ort.InferenceSession.create(Uint8Array.from(job.model), { executionProviders: ["gdn"], intraOpNumThreads: 2 });
  try {
    for (const feeds of job.runs) {
      const f = {};
      for (const [name, [type, data, dims]] of Object.entries(feeds))
        f[name] = new ort.Tensor(type, type === "int64" ? BigInt64Array.from(data.map(BigInt)) : Float32Array.from(data, Number), dims);
      const fetches = {};
      for (const [name, dims] of Object.entries(job.fetches ?? {}))
        fetches[name] = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
      const res = job.fetches ? await session.run(f, fetches) : await session.run(f);
      report.outputs = {};
      for (const [name, t] of Object.entries(res))
        report.outputs[name] = { dims: t.dims, data: Array.from(t.data.length > 4096 ? t.data.subarray(0, 4096) : t.data, (x) => (typeof x === "bigint" ? Number(x) : Number.isFinite(x) ? x : String(x))) };
    }
  } finally {
    await session.release();
  }
} catch (e) {
  report.error = String(e.message);
}
globalThis.gc?.();
report.rssAfter = process.memoryUsage().rss;
process.stdout.write(JSON.stringify(report));
`;

type Feed = [type: "float32" | "int64", data: number[], dims: number[]];
interface Report {
  error?: string;
  outputs?: Record<string, { dims: number[]; data: (number | string)[] }>;
  rssBefore: number;
  rssAfter: number;
  stderr: string;
}

let childScript: { script: string; runtimeUrl: string } | null = null;
function child(): { script: string; runtimeUrl: string } {
  if (childScript === null) {
    const { dir, runtimeUrl } = transpileRuntime();
    const script = join(dir, "ops-hostile-child.mjs");
    writeFileSync(script, CHILD);
    childScript = { script, runtimeUrl };
  }
  return childScript;
}

/** Runs `model` with each feed set in a fresh node; fails the test on a crash or after `timeoutMs` (a hang). */
async function runInChild(
  model: Uint8Array,
  runs: Record<string, Feed>[],
  timeoutMs = 20_000,
  fetches?: Record<string, number[]>, // preallocated float32 outputs: name -> dims
): Promise<Report> {
  const { script, runtimeUrl } = child();
  const proc = spawn(process.execPath, ["--expose-gc", script], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "",
    stderr = "";
  proc.stdout.on("data", (d) => (stdout += d));
  proc.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  // -Infinity / NaN travel as strings (JSON has no such numbers); the child reads them back with Number().
  const nonFinite = (_: string, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v);
  proc.stdin.end(JSON.stringify({ runtimeUrl, model: Array.from(model), runs, fetches }, nonFinite));
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
    proc.on("close", (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  const how = signal
    ? `killed by ${signal}${signal === "SIGKILL" ? ` (no answer within ${timeoutMs} ms)` : ""}`
    : `exit code ${code}`;
  expect(code, `child ${how}; stderr:\n${stderr.slice(-2000)}`).toBe(0);
  return { ...(JSON.parse(stdout) as Omit<Report, "stderr">), stderr };
}

type Attr = onnx.IAttributeProto;
const int = (name: string, i: number | bigint): Attr =>
  ({ name, type: AT.INT, i: typeof i === "bigint" ? i.toString() : i }) as Attr;
const float = (name: string, f: number): Attr => ({ name, type: AT.FLOAT, f });
const str = (name: string, s: string): Attr => ({ name, type: AT.STRING, s: new TextEncoder().encode(s) });

/** A one-node gdn model (the library's builder); inputs/outputs without a shape (rank unknown) unless `shapes` gives one. */
function oneNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes: Attr[] = [],
  shapes: Record<string, number[]> = {},
) {
  const spec = (name: string) => ({ name, ...(shapes[name] ? { dims: shapes[name] } : {}) });
  return oneNodeModel({ opType, inputs: inputs.map(spec), outputs: outputs.map(spec), attributes });
}

/** `model` with `nodes` appended and their outputs (name, element type) made graph outputs. */
function withNodes(model: Uint8Array, nodes: onnx.INodeProto[], outputs: [string, number][]): Uint8Array {
  const m = decodeMessage(onnx.ModelProto, model);
  m.graph!.node!.push(...nodes.map((n) => onnx.NodeProto.fromObject(n)));
  for (const [name, elemType] of outputs)
    m.graph!.output!.push(onnx.ValueInfoProto.fromObject({ name, type: { tensorType: { elemType } } }));
  return encodeMessage(onnx.ModelProto, m);
}

const zeros = (dims: number[]): Feed => ["float32", new Array(dims.reduce((a, b) => a * b, 1)).fill(0), dims];
const DR_IN = ["query", "key", "value", "g", "beta"];
/** The shapes of a delta-rule node's five required inputs. */
const deltaRuleShapes = (B: number, T: number, Hk: number, Hv: number, K: number, V: number) => ({
  query: [B, T, Hk, K],
  key: [B, T, Hk, K],
  value: [B, T, Hv, V],
  g: [B, T, Hv],
  beta: [B, T, Hv],
});

describe("CausalConv1d: attribute state_size is bounded at session creation", () => {
  const x = zeros([1, 2, 3]),
    weight: Feed = ["float32", [1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 4]];
  it("state_size 2^63-1 is rejected when the session is created (was: SIGSEGV at run)", async () => {
    const r = await runInChild(
      oneNode("CausalConv1d", ["x", "weight"], ["y", "conv_state_out"], [int("state_size", 2n ** 63n - 1n)]),
      [{ x, weight }],
    );
    expect(r.error).toContain(
      "CausalConv1d node 'n0': attribute state_size must be in 0..16777216 (0 means W-1), got 9223372036854775807",
    );
  });
  it("state_size 2^62 is rejected too (was: a 64-byte scratch, writes before it, a later valid run crashes)", async () => {
    const r = await runInChild(
      oneNode("CausalConv1d", ["x", "weight"], ["y", "conv_state_out"], [int("state_size", 2n ** 62n)]),
      [
        { x, weight },
        { x, weight },
      ],
    );
    expect(r.error).toContain(
      "CausalConv1d node 'n0': attribute state_size must be in 0..16777216 (0 means W-1), got 4611686018427387904",
    );
  });
  it("a state_size above W-1 runs (conv_state_out holds the last S inputs, zero padded)", async () => {
    const r = await runInChild(
      oneNode(
        "CausalConv1d",
        ["x", "weight"],
        ["y", "conv_state_out"],
        [int("state_size", 5), str("activation", "none")],
      ),
      [{ x: ["float32", [1, 2, 3, 4, 5, 6], [1, 2, 3]], weight }],
    );
    expect(r.error).toBeUndefined();
    expect(r.outputs!.conv_state_out!.dims).toEqual([1, 2, 5]);
    expect(r.outputs!.conv_state_out!.data).toEqual([0, 0, 1, 2, 3, 0, 0, 4, 5, 6]);
  });
});

describe("zero-size inputs with a huge dimension give an immediate empty result (was: a loop over 2^40 rows)", () => {
  const HUGE = 2 ** 40;
  it("GatedDeltaGating with a, b [2^40, 1, 0]", async () => {
    const r = await runInChild(oneNode("GatedDeltaGating", ["a", "b", "A_log", "dt_bias"], ["g", "beta"]), [
      { a: ["float32", [], [HUGE, 1, 0]], b: ["float32", [], [HUGE, 1, 0]], A_log: zeros([0]), dt_bias: zeros([0]) },
    ]);
    expect(r.error).toBeUndefined();
    expect(r.outputs!.g!.dims).toEqual([HUGE, 1, 0]);
    expect(r.outputs!.beta!.dims).toEqual([HUGE, 1, 0]);
  });
});

describe("attributes of the wrong type are rejected at session creation", () => {
  const cases: [string, string, Attr, string][] = [
    [
      "ChunkGatedDeltaRule",
      "use_qk_l2norm as FLOAT 1.0",
      float("use_qk_l2norm", 1),
      "attribute use_qk_l2norm must be an int, got a float",
    ],
    ["ChunkGatedDeltaRule", "scale as INT 2", int("scale", 2), "attribute scale must be a float, got an int"],
    [
      "RecurrentGatedDeltaRule",
      "state_layout as INT",
      int("state_layout", 1),
      "attribute state_layout must be a string, got an int",
    ],
    [
      "ChunkGatedDeltaRule",
      "chunk_size as STRING",
      str("chunk_size", "64"),
      "attribute chunk_size must be an int, got a string",
    ],
    ["GatedRMSNorm", "epsilon as INT", int("epsilon", 1), "attribute epsilon must be a float, got an int"],
    [
      "CausalConv1d",
      "activation as FLOAT",
      float("activation", 0),
      "attribute activation must be a string, got a float",
    ],
  ];
  const io: Record<string, [string[], string[]]> = {
    ChunkGatedDeltaRule: [DR_IN, ["output"]],
    RecurrentGatedDeltaRule: [DR_IN, ["output"]],
    GatedRMSNorm: [["x", "gate", "weight"], ["y"]],
    CausalConv1d: [["x", "weight"], ["y"]],
  };
  it.each(cases)("%s: %s", async (op, _, attr, message) => {
    const [inputs, outputs] = io[op]!;
    const r = await runInChild(oneNode(op, inputs, outputs, [attr]), []);
    expect(r.error).toContain(`${op} node 'n0': ${message}`);
  });
  it("GatedRMSNorm: a negative epsilon is rejected at session creation, not at the first run", async () => {
    const r = await runInChild(oneNode("GatedRMSNorm", ["x", "gate", "weight"], ["y"], [float("epsilon", -1)]), []);
    expect(r.error).toContain("GatedRMSNorm node 'n0': attribute epsilon must be a finite value >= 0, got -1");
  });
});

describe("ChunkGatedDeltaRule with very negative g matches the float64 reference and the recurrent op", () => {
  const [B, T, Hk, Hv, K, V] = [1, 40, 1, 2, 8, 8];
  const shapes = { ...deltaRuleShapes(B, T, Hk, Hv, K, V), initial_state: [B, Hv, K, V] };
  const rand = seededRandom(7);
  const sym = (n: number, s = 1) => Array.from({ length: n }, () => Math.fround((2 * rand() - 1) * s));
  const q = sym(B * T * Hk * K),
    k = sym(B * T * Hk * K, 0.3),
    v = sym(B * T * Hv * V),
    s0 = sym(B * Hv * K * V, 0.1);
  const beta = Array.from({ length: B * T * Hv }, () => Math.fround(0.1 + 0.8 * rand()));
  const finite = () => Array.from({ length: B * T * Hv }, () => Math.fround(-0.05 * rand()));
  const gCases: [string, number[]][] = [
    ["all -inf", new Array(B * T * Hv).fill(-Infinity)],
    ["all -3e38", new Array(B * T * Hv).fill(-3e38)],
    ["one -inf among finite values", finite().map((x, i) => (i === 2 * Hv + 1 ? -Infinity : x))],
    ["-3e38 every 7th token", finite().map((x, i) => (Math.floor(i / Hv) % 7 === 3 ? -3e38 : x))],
  ];
  it.each(gCases)("%s", async (_, g) => {
    const ref = gatedDeltaReference({ query: q, key: k, value: v, g, beta, initialState: s0 }, { B, T, Hk, Hv, K, V });
    const feeds: Record<string, Feed> = {};
    for (const [name, data] of Object.entries({ query: q, key: k, value: v, g, beta, initial_state: s0 }))
      feeds[name] = ["float32", data, shapes[name as keyof typeof shapes]];
    const outs: Report["outputs"][] = [];
    for (const op of ["ChunkGatedDeltaRule", "RecurrentGatedDeltaRule"]) {
      const r = await runInChild(oneNode(op, [...DR_IN, "initial_state"], ["output", "final_state"], [], shapes), [
        feeds,
      ]);
      expect(r.error).toBeUndefined();
      const o = r.outputs!.output!.data,
        s = r.outputs!.final_state!.data;
      expect(
        o.every((x) => typeof x === "number"),
        `${op} output has ${o.find((x) => typeof x !== "number")}`,
      ).toBe(true);
      expect(
        s.every((x) => typeof x === "number"),
        `${op} final_state has ${s.find((x) => typeof x !== "number")}`,
      ).toBe(true);
      expect(relativeL2(o as number[], ref.output), op).toBeLessThanOrEqual(TOLERANCE.float32);
      expect(relativeL2(s as number[], ref.finalState), op).toBeLessThanOrEqual(TOLERANCE.float32);
      outs.push(r.outputs);
    }
    expect(relativeL2(outs[0]!.output!.data as number[], outs[1]!.output!.data as number[])).toBeLessThanOrEqual(
      TOLERANCE.float32,
    );
  });
});

describe("output shape inference", () => {
  const [B, T, Hk, Hv, K, V] = [1, 3, 1, 2, 4, 6];
  const feeds: Record<string, Feed> = {
    query: zeros([B, T, Hk, K]),
    key: zeros([B, T, Hk, K]),
    value: zeros([B, T, Hv, V]),
    g: zeros([B, T, Hv]),
    beta: zeros([B, T, Hv]),
  };
  it("inputs of unknown rank: Shape(output) is computed, not folded to [] (default optimisation)", async () => {
    const shapeOf = (i: string, o: string): onnx.INodeProto => ({ opType: "Shape", input: [i], output: [o] });
    const INT64 = onnx.TensorProto.DataType.INT64;
    const model = withNodes(
      oneNode("ChunkGatedDeltaRule", DR_IN, ["output", "final_state"]),
      [shapeOf("output", "output_shape"), shapeOf("final_state", "state_shape")],
      [
        ["output_shape", INT64],
        ["state_shape", INT64],
      ],
    );
    const r = await runInChild(model, [feeds]);
    expect(r.error).toBeUndefined();
    expect(r.outputs!.output_shape!.data).toEqual([B, T, Hv, V]);
    expect(r.outputs!.state_shape!.data).toEqual([B, Hv, K, V]);
  });
  for (const layout of ["kv", "vk"]) {
    it(`final_state without initial_state (${layout}): inferred [B,Hv,${layout === "kv" ? "K,V" : "V,K"}], no ORT shape-merge warning`, async () => {
      const shapes = deltaRuleShapes(B, T, Hk, Hv, K, V);
      const stateShape = layout === "kv" ? [B, Hv, K, V] : [B, Hv, V, K];
      const model = oneNode(
        "RecurrentGatedDeltaRule",
        DR_IN,
        ["output", "final_state"],
        [str("state_layout", layout)],
        {
          ...shapes,
          output: [B, T, Hv, V],
          final_state: stateShape,
        },
      );
      const r = await runInChild(model, [feeds]);
      expect(r.error).toBeUndefined();
      expect(r.outputs!.final_state!.dims).toEqual(stateShape);
      expect(r.stderr).not.toContain("Error merging shape info");
    });
  }
});

describe("per-thread scratch is released after a large call", () => {
  it("ChunkGatedDeltaRule K = V = 8192 (a 256 MB state in scratch) leaves RSS within 96 MB of where it started", async () => {
    const [K, V] = [8192, 8192];
    const model = oneNode("ChunkGatedDeltaRule", DR_IN, ["output"]);
    const r = await runInChild(
      model,
      [
        {
          query: zeros([1, 1, 1, K]),
          key: zeros([1, 1, 1, K]),
          value: zeros([1, 1, 1, V]),
          g: zeros([1, 1, 1]),
          beta: zeros([1, 1, 1]),
        },
      ],
      60_000,
    );
    expect(r.error).toBeUndefined();
    expect((r.rssAfter - r.rssBefore) / 2 ** 20).toBeLessThan(96);
  });
});

describe("one-line messages", () => {
  it("a preallocated output of the wrong shape names the node, the output, the given and the expected shape", async () => {
    const r = await runInChild(
      oneNode("GatedRMSNorm", ["x", "gate", "weight"], ["y"]),
      [{ x: zeros([2, 4]), gate: zeros([2, 4]), weight: zeros([4]) }],
      20_000,
      {
        y: [2, 5],
      },
    );
    expect(r.error).toContain("GatedRMSNorm node 'n0': output y was given with shape [2,5], expected [2,4]");
    expect(r.error).not.toContain("onnxruntime_src");
    expect(r.error!.trim()).not.toContain("\n");
  });
});
