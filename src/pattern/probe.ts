/**
 * Confirms a match before rewriting: runs the matched region, cut out as a model of its own, in
 * stock onnxruntime-node on random probe inputs and compares it with the fused op's float64
 * reference. Regions with the same structure and constants (a model's repeated layers) are probed once.
 *
 * The probe model computes in float64: every float tensor, Cast and constant of the region becomes
 * double, so adversarial inputs (decays down to -1e4, large q/k/v) do not drown a wrong constant in
 * float32 rounding, and the comparison is as tight as float64 allows (numeric.ts TOLERANCE.float64).
 * The inputs are still rounded to their element type first, as the region would see them.
 */
import * as ort from "onnxruntime-node";
import type { Node, Value } from "../ir/graph.js";
import { onnx, encodeMessage } from "../ir/onnx.js";
import {
  arrayToTensor,
  float32ToBfloat16,
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToFloat16,
  isExternal,
  readExternalBytes,
  tensorToFloat64,
} from "../ir/tensor.js";
import { TOLERANCE, compareValues, relativeL2, seededRandom } from "../numeric.js";
import { structuralKey } from "./structural-key.js";
import { BFLOAT16, FLOAT16, FLOAT_TYPES } from "../ops.js";

// Kept exported here for the callers that import them from the probe.
export { relativeL2, seededRandom };

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

function probeShape(inp: ProbeInput): number[] {
  const s = inp.shape ?? inp.value.staticShape;
  if (!s) throw new Error(`probe input ${inp.value.name} has no static shape`);
  return s;
}

/** Rounds float64 data to what a tensor of that element type holds. */
function roundTo(data: Float64Array, elemType: number): Float64Array {
  if (elemType === FLOAT16) return data.map((x) => float16ToFloat32(float32ToFloat16(x)));
  if (elemType === BFLOAT16) return data.map((x) => bfloat16ToFloat32(float32ToBfloat16(x)));
  return data.map((x) => Math.fround(x));
}

export async function probeRegion(spec: ProbeSpec): Promise<ProbeResult> {
  const key = signature(spec);
  const hit = cache.get(key);
  if (hit) return hit;
  const tolerance = TOLERANCE.float64!;
  const rand = seededRandom(0x9e3779b9);
  const data = spec.inputs.map((inp) => {
    const shape = probeShape(inp);
    const raw = inp.generate(
      rand,
      shape.reduce((a, b) => a * b, 1),
    );
    return roundTo(raw, inp.value.type?.elemType ?? 1);
  });
  let result: ProbeResult;
  try {
    const bytes = buildProbeModel(spec);
    const session = await ort.InferenceSession.create(bytes, {
      graphOptimizationLevel: "disabled",
      intraOpNumThreads: 2,
      logSeverityLevel: 3,
    });
    try {
      const feeds: Record<string, ort.Tensor> = {};
      spec.inputs.forEach((inp, i) => (feeds[`probe_in_${i}`] = new ort.Tensor("float64", data[i]!, probeShape(inp))));
      const got = await session.run(feeds);
      const want = spec.reference(data);
      const compared = spec.outputs.map((_, i) =>
        compareValues(got[`probe_out_${i}`]!.data as Float64Array, want[i]!, "the reference"),
      );
      const errors = compared.map((c) => (c.mismatch ? Infinity : c.relL2));
      const ok = errors.every((e) => e <= tolerance);
      result = { ok, errors, tolerance, message: ok ? undefined : mismatchMessage(spec, compared, tolerance) };
    } finally {
      await session.release();
    }
  } catch (e) {
    result = {
      ok: false,
      errors: [],
      tolerance,
      message: `the region could not be run as a probe: ${(e as Error).message.split("\n")[0]}`,
    };
  }
  cache.set(key, result);
  return result;
}

function mismatchMessage(spec: ProbeSpec, compared: ReturnType<typeof compareValues>[], tolerance: number): string {
  const special = compared.findIndex((c) => c.mismatch);
  if (special >= 0)
    return `probe output ${spec.outputs[special]!.name} differs from the reference: ${compared[special]!.mismatch}`;
  return `probe outputs differ from the reference: relative L2 error ${compared.map((c) => c.relL2.toExponential(2)).join(", ")} > ${tolerance}`;
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
    input.push(vi(`probe_in_${i}`, DOUBLE, probeShape(inp)));
    nodes.push({ opType: "Identity", input: [`probe_in_${i}`], output: [v.name], name: `probe_in_${i}` });
  });
  const order = topoOrder(spec.nodes);
  const initializers = new Map<string, onnx.ITensorProto>();
  for (const n of order) {
    nodes.push({
      ...n.proto,
      input: n.inputs.map((v) => v?.name ?? ""),
      output: n.outputs.map((v) => v?.name ?? ""),
      attribute: (n.proto.attribute ?? []).map((a) => inDouble(n.opType, a)),
    });
    for (const v of n.inputs)
      if (v?.initializer && !(v.producer && spec.nodes.has(v.producer))) initializers.set(v.name, toDouble(inlined(v)));
  }
  spec.outputs.forEach((v, i) => {
    nodes.push({ opType: "Identity", input: [v.name], output: [`probe_out_${i}`], name: `probe_out_${i}` });
    output.push({ name: `probe_out_${i}`, type: { tensorType: { elemType: DOUBLE } } });
  });
  const model: onnx.IModelProto = {
    irVersion: spec.model.irVersion,
    opsetImport: spec.model.opsetImport,
    producerName: "gdn-fuse probe",
    graph: { name: "probe", node: nodes, input, output, initializer: [...initializers.values()] },
  };
  return encodeMessage(onnx.ModelProto, onnx.ModelProto.fromObject(model));
}

const DOUBLE = 11;
/** Element types the probe computes in double: the gdn float types and double itself. */
const PROBE_FLOAT_TYPES: ReadonlySet<number> = new Set([...FLOAT_TYPES, DOUBLE]);

/** A float tensor as double (other element types unchanged). */
function toDouble(t: onnx.ITensorProto): onnx.ITensorProto {
  if (!PROBE_FLOAT_TYPES.has(t.dataType ?? 0) || t.dataType === DOUBLE) return t;
  return arrayToTensor(t.name ?? "", (t.dims ?? []).map(Number), DOUBLE, tensorToFloat64(t));
}

/**
 * A node attribute of the region in the float64 probe: Cast targets, Constant values and
 * ConstantOfShape fills of a float type become double.
 */
function inDouble(opType: string, a: onnx.IAttributeProto): onnx.IAttributeProto {
  if (opType === "Cast" && a.name === "to" && PROBE_FLOAT_TYPES.has(Number(a.i))) return { ...a, i: DOUBLE };
  if (a.t) return { ...a, t: toDouble(a.t) };
  if (opType === "Constant" && a.name === "value_float")
    return {
      name: "value",
      type: onnx.AttributeProto.AttributeType.TENSOR,
      t: arrayToTensor("", [], DOUBLE, [a.f ?? 0]),
    };
  if (opType === "Constant" && a.name === "value_floats")
    return {
      name: "value",
      type: onnx.AttributeProto.AttributeType.TENSOR,
      t: arrayToTensor("", [a.floats?.length ?? 0], DOUBLE, a.floats ?? []),
    };
  return a;
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
