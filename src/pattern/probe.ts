/**
 * Confirms a match before rewriting: runs the matched region, cut out as a model of its own, in
 * stock onnxruntime-node on random probe inputs and compares it with the fused op's float64
 * reference. Regions with the same structure and constants (a model's repeated layers) are probed once.
 */
import * as ort from "onnxruntime-node";
import type { Node, Value } from "../ir/graph.js";
import { onnx, encodeMessage } from "../ir/onnx.js";
import { float32ToBfloat16, bfloat16ToFloat32, float16ToFloat32, float32ToFloat16, isExternal, readExternalBytes } from "../ir/tensor.js";
import { structuralKey } from "./structural-key.js";

export interface ProbeInput {
  value: Value;
  /** Concrete shape to probe with (default: the value's static shape; needed when a dim is symbolic). */
  shape?: number[];
  /** Fills the probe data (float64) for this input; shape is the value's static shape. */
  generate(rand: () => number, count: number): Float64Array;
}

export interface ProbeSpec {
  nodes: ReadonlySet<Node>;
  inputs: ProbeInput[];
  outputs: Value[];
  model: onnx.IModelProto;
  /** The reference: outputs in the same order, from the inputs as the region sees them (after rounding to their type). */
  reference(inputs: Float64Array[]): Float64Array[];
}

export interface ProbeResult {
  ok: boolean;
  errors: number[]; // relative L2 error per output
  tolerance: number;
  message?: string;
}

const cache = new Map<string, ProbeResult>();

/** Seeded uniform [0,1) generator (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** ||a - b|| / ||b||; entries where the reference b is NaN (not computed) are left out. */
export function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(b[i]!)) continue;
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  if (!Number.isFinite(num)) return Infinity;
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

function probeShape(inp: ProbeInput): number[] {
  const s = inp.shape ?? inp.value.staticShape;
  if (!s) throw new Error(`probe input ${inp.value.name} has no static shape`);
  return s;
}

/** Rounds float64 data to what a tensor of that element type holds. */
function roundTo(data: Float64Array, elemType: number): Float64Array {
  if (elemType === 10) return data.map((x) => float16ToFloat32(float32ToFloat16(x)));
  if (elemType === 16) return data.map((x) => bfloat16ToFloat32(float32ToBfloat16(x)));
  return data.map((x) => Math.fround(x));
}

export async function probeRegion(spec: ProbeSpec): Promise<ProbeResult> {
  const key = signature(spec);
  const hit = cache.get(key);
  if (hit) return hit;
  const halfTypes = [...spec.inputs.map((i) => i.value), ...spec.outputs].some((v) => v.type?.elemType !== 1);
  const tolerance = halfTypes ? 1e-2 : 1e-4;
  const rand = seededRandom(0x9e3779b9);
  const data = spec.inputs.map((inp) => {
    const shape = probeShape(inp);
    const raw = inp.generate(rand, shape.reduce((a, b) => a * b, 1));
    return roundTo(raw, inp.value.type?.elemType ?? 1);
  });
  let result: ProbeResult;
  try {
    const bytes = buildProbeModel(spec);
    const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: "disabled", intraOpNumThreads: 2, logSeverityLevel: 3 });
    try {
      const feeds: Record<string, ort.Tensor> = {};
      spec.inputs.forEach((inp, i) => (feeds[`probe_in_${i}`] = new ort.Tensor("float32", Float32Array.from(data[i]!), probeShape(inp))));
      const got = await session.run(feeds);
      const want = spec.reference(data);
      const errors = spec.outputs.map((_, i) => relativeL2(got[`probe_out_${i}`]!.data as Float32Array, want[i]!));
      const ok = errors.every((e) => e <= tolerance);
      result = { ok, errors, tolerance, message: ok ? undefined : `probe outputs differ from the reference: relative L2 error ${errors.map((e) => e.toExponential(2)).join(", ")} > ${tolerance}` };
    } finally {
      await session.release();
    }
  } catch (e) {
    result = { ok: false, errors: [], tolerance, message: `the region could not be run as a probe: ${(e as Error).message.split("\n")[0]}` };
  }
  cache.set(key, result);
  return result;
}

function buildProbeModel(spec: ProbeSpec): Uint8Array {
  const nodes: onnx.INodeProto[] = [];
  const input: onnx.IValueInfoProto[] = [];
  const output: onnx.IValueInfoProto[] = [];
  const vi = (name: string, elemType: number, shape: number[]): onnx.IValueInfoProto => ({
    name,
    type: { tensorType: { elemType, shape: { dim: shape.map((d) => ({ dimValue: d })) } } },
  });
  spec.inputs.forEach((inp, i) => {
    const v = inp.value;
    input.push(vi(`probe_in_${i}`, 1, probeShape(inp)));
    nodes.push({ opType: "Cast", input: [`probe_in_${i}`], output: [v.name], name: `probe_cast_in_${i}`, attribute: [{ name: "to", type: 2, i: v.type?.elemType ?? 1 }] });
  });
  const order = topoOrder(spec.nodes);
  const initializers = new Map<string, onnx.ITensorProto>();
  for (const n of order) {
    nodes.push({ ...n.proto, input: n.inputs.map((v) => v?.name ?? ""), output: n.outputs.map((v) => v?.name ?? "") });
    for (const v of n.inputs) if (v?.initializer && !(v.producer && spec.nodes.has(v.producer))) initializers.set(v.name, inlined(v));
  }
  spec.outputs.forEach((v, i) => {
    nodes.push({ opType: "Cast", input: [v.name], output: [`probe_out_${i}`], name: `probe_cast_out_${i}`, attribute: [{ name: "to", type: 2, i: 1 }] });
    output.push({ name: `probe_out_${i}`, type: { tensorType: { elemType: 1 } } });
  });
  const model: onnx.IModelProto = {
    irVersion: spec.model.irVersion,
    opsetImport: spec.model.opsetImport,
    producerName: "gdn-fuse probe",
    graph: { name: "probe", node: nodes, input, output, initializer: [...initializers.values()] },
  };
  return encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(model));
}

/** The probe model is built in memory: an initializer kept in an external file is inlined. */
function inlined(v: Value): onnx.ITensorProto {
  const t = v.initializer!;
  if (!isExternal(t)) return t;
  const { externalData: _e, dataLocation: _d, ...rest } = t;
  return { ...rest, rawData: readExternalBytes(t, v.graph?.baseDir ?? ".") };
}

function topoOrder(nodes: ReadonlySet<Node>): Node[] {
  // The graph's node list is kept topologically sorted; filter it to preserve that order.
  const g = [...nodes][0]?.graph;
  return g ? g.nodes.filter((n) => nodes.has(n)) : [];
}

/** Regions with the same structure, constants and probe shapes share one probe result. */
function signature(spec: ProbeSpec): string {
  const { key, ids } = structuralKey(
    topoOrder(spec.nodes),
    spec.inputs.map((inp) => ({ value: inp.value, tag: `:${inp.value.type?.elemType}:${probeShape(inp)}` })),
  );
  return `${key};out:${spec.outputs.map((v) => ids.get(v)).join(",")}`;
}
