/**
 * Mutants of whole exported layers (test/layer-mutants.test.ts, passes/layer-gating.test.ts): the edits they
 * share and the runner. A mutant is either refused by the pass it concerns, with the stage and reason
 * asserted, or fused and then proven equal to the mutated original: the original runs in stock onnxruntime,
 * the fused model on the gdn runtime, on adversarial inputs (hidden-state magnitudes up to 8). Every mutant
 * runs with the core probe on and off: the layer passes must refuse by their own checks, not by the probe,
 * and fuse the same with it off (the equality run, the slow part, is done once, with the probe on).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { expect, it } from "vitest";
import type { Node, Value } from "../../src/ir/graph.js";
import { declareType, setInput, type Dim } from "../../src/ir/index.js";
import { decodeMessage, encodeMessage, onnx } from "../../src/ir/onnx.js";
import { arrayToTensor, float16ToFloat32, float32ToFloat16 } from "../../src/ir/tensor.js";
import { compareValues, seededRandom, toleranceOf } from "../../src/numeric.js";
import type { FuseReport } from "../../src/pipeline/index.js";
import { runtimeLoadError } from "./cases.js";
import { loadCase, mutateAndFuse } from "./fuse.js";
import type { Mutator } from "./mutate.js";

// ---- finding and changing parts of the exported layers (node and value names of the exports) ----

/** The node of the mutated graph with this name. */
export function node(m: Mutator, name: string): Node {
  const n = m.graph.nodes.find((x) => x.name === name);
  if (!n) throw new Error(`no node ${name}`);
  return n;
}

/** The value of the mutated graph with this name. */
export function value(m: Mutator, name: string): Value {
  const v = m.graph.values.get(name);
  if (!v) throw new Error(`no value ${name}`);
  return v;
}

/** Input i of node `n` becomes a new constant (the old one may be shared with other nodes). */
export function setConstant(
  m: Mutator,
  n: Node,
  i: number,
  dims: number[],
  elemType: number,
  data: number[] | bigint[],
): void {
  setInput(n, i, m.graph.addInitializer(arrayToTensor(`${n.name}_mutant_${i}`, dims, elemType, data)));
}

/** The one-axis Slice `n` keeps elements start:end (new int64 [1] constants for its starts and ends). */
export function setSliceRange(m: Mutator, n: Node, start: number, end: number): void {
  setConstant(m, n, 1, [1], 7, [BigInt(start)]);
  setConstant(m, n, 2, [1], 7, [BigInt(end)]);
}

/**
 * Mutator.insertOn, and the new value declared with the type and shape of the value it follows
 * (an exported intermediate value may carry no declared type; the passes read declared types).
 */
export function insert(
  m: Mutator,
  v: Value,
  opType: string,
  opts: Parameters<Mutator["insertOn"]>[2],
  shape?: readonly Dim[],
): Node {
  const n = m.insertOn(v, opType, opts);
  const s = shape ?? v.type?.shape;
  if (!s) throw new Error(`insert: ${v.name} has no declared shape; pass one`);
  declareType(m.graph, n.output(), v.type?.elemType ?? 1, s);
  return n;
}

// ---- the mutants and their runner ----------------------------------------------------------------

export interface Refusal {
  pass: string;
  stage: string;
  reason: string;
  /** The fused op that must not appear (a prefix of a key of report.fused). */
  op: string;
}

export interface Mutant {
  name: string;
  model: string;
  mutate(m: Mutator): void;
  /** The refusal that must be reported (the rest of the layer may still fuse). */
  refused?: Refusal;
  /** Fused (partly or wholly): the fused model must equal the mutated original on adversarial inputs. */
  equal?: boolean;
}

/** Two tests per mutant, with the core probe on and off ("<model>: <name> (probe on)"); skipped without a runtime. */
export function testMutants(mutants: readonly Mutant[]): void {
  const runtime = runtimeLoadError();
  for (const mu of mutants)
    for (const probe of [true, false])
      it.skipIf(!!runtime)(`${mu.model}: ${mu.name} (probe ${probe ? "on" : "off"})`, async () => {
        const { report, original, fused } = await runMutant(mu, probe);
        if (mu.refused) {
          const { pass, stage, reason, op } = mu.refused;
          const skipped = report.passes.find((p) => p.name === pass)!.skipped;
          expect(
            skipped.map((s) => ({ stage: s.stage, reason: s.reason })),
            JSON.stringify(report.passes.flatMap((p) => p.skipped)),
          ).toContainEqual({ stage, reason });
          expect(Object.keys(report.fused).filter((k) => k.startsWith(op))).toEqual([]);
        } else {
          expect(report.passes.flatMap((p) => p.skipped)).toEqual([]);
        }
        if (mu.equal && probe) await expectEqualOnAdversarialInputs(original, fused);
      });
}

async function runMutant(
  mu: Mutant,
  probe: boolean,
): Promise<{ report: FuseReport; original: onnx.IModelProto; fused: onnx.IModelProto }> {
  let graphBytes: Uint8Array | undefined;
  const r = await mutateAndFuse(
    mu.model,
    (m) => {
      mu.mutate(m);
      graphBytes = encodeMessage(onnx.GraphProto, m.graph.toProto() as onnx.GraphProto);
    },
    { probe },
  );
  const base = await loadCase(mu.model);
  const original = { ...base.proto, graph: decodeMessage(onnx.GraphProto, graphBytes!) };
  return { report: r, original, fused: r.model.proto };
}

/** Adversarial inputs: magnitudes 0.1, 1 or 8 per element (states in [-1,1]); a symbolic batch probed at 3. */
function adversarialFeeds(model: onnx.IModelProto): Record<string, ort.Tensor> {
  const rand = seededRandom(7);
  const feeds: Record<string, ort.Tensor> = {};
  for (const i of model.graph!.input!) {
    const tt = i.type!.tensorType!;
    const dims = tt.shape!.dim!.map((d) => (d.dimParam ? 3 : Number(d.dimValue)));
    const n = dims.reduce((a, b) => a * b, 1);
    const scale = i.name === "hidden_states" ? () => [0.1, 1, 8][Math.floor(rand() * 3)]! : () => 1;
    const data = Array.from({ length: n }, () => (2 * rand() - 1) * scale());
    feeds[i.name!] =
      tt.elemType === 10
        ? new ort.Tensor("float16", Uint16Array.from(data, float32ToFloat16), dims)
        : new ort.Tensor("float32", Float32Array.from(data), dims);
  }
  return feeds;
}

const toNumbers = (t: ort.Tensor) =>
  t.type === "float16"
    ? Float64Array.from(t.data as Uint16Array, float16ToFloat32)
    : Float64Array.from(t.data as Float32Array);

async function expectEqualOnAdversarialInputs(original: onnx.IModelProto, fused: onnx.IModelProto): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "gdn-mutant-"));
  const write = (name: string, m: onnx.IModelProto) => {
    const file = join(dir, name);
    writeFileSync(file, encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(m)));
    return file;
  };
  const feeds = adversarialFeeds(original);
  const ref = await ort.InferenceSession.create(write("original.onnx", original), {
    graphOptimizationLevel: "disabled",
    intraOpNumThreads: 2,
  });
  const want = await ref.run(feeds);
  await ref.release();
  const fusedSession = await ort.InferenceSession.create(write("fused.onnx", fused), {
    executionProviders: ["gdn"],
    intraOpNumThreads: 2,
  });
  const got = await fusedSession.run(feeds);
  await fusedSession.release();
  for (const name of Object.keys(want)) {
    const c = compareValues(toNumbers(got[name]!), toNumbers(want[name]!));
    expect(c.mismatch, name).toBeUndefined();
    expect(c.relL2, name).toBeLessThanOrEqual(toleranceOf(want[name]!.type)!);
  }
}
