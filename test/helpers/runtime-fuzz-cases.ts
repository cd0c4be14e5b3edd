/**
 * Cases of the runtime fuzzer (test/runtime-fuzz.test.ts), run inside child processes by child-fuzz.ts.
 * Each case is derived from its index and a fixed seed: one of the five gdn ops in a one-node model, with
 * a structure-aware mix of valid and broken run-time inputs and attributes (ranks 0-6, zero and huge dims,
 * mismatched dims, every dtype, wrong attribute types and values, missing and extra inputs, preallocated outputs
 * of the wrong size or type, detached and SharedArrayBuffer-backed buffers).
 *
 * A case returns a short description of its outputs, or throws. Any error that is not a one-line GdnFuseError
 * with a code is rethrown as a plain Error starting with "NOT A GDNFUSEERROR", which the test counts as a failure.
 */
import * as ort from "onnxruntime-node";
import { GdnFuseError } from "../../src/errors.js";
import { onnx } from "../../src/ir/onnx.js";
import { seededRandom } from "../../src/numeric.js";
import { oneNodeModel } from "../../src/ops-model.js";
import { GDN_CONTRACT, type OpContract } from "../../src/ops.js";
import "../../src/runtime/index.js";

ort.env.logLevel = "fatal"; // the cases fail on purpose; ORT's log of each failure is noise
const SEED = Number(process.env.GDN_FUZZ_SEED ?? 20261202);
const OPS = Object.keys(GDN_CONTRACT) as (keyof typeof GDN_CONTRACT)[];

/** The project's seeded generator (src/numeric.ts) with the draws case generation needs. */
function makeRng(seed: number) {
  const next = seededRandom(seed);
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
  };
}
type Rng = ReturnType<typeof makeRng>;

const DTYPES = [
  "float32",
  "float16",
  "bfloat16",
  "float64",
  "int32",
  "int64",
  "int8",
  "uint8",
  "uint16",
  "bool",
  "string",
] as const;
type DType = (typeof DTYPES)[number];
const ONNX_TYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
};
const HUGE = [2 ** 31, 2 ** 32 + 1, 2 ** 40, 2 ** 53, 2 ** 62];

interface InputCase {
  name: string;
  declared: DType;
  dims: number[];
  /** dims the Tensor claims (differs from dims when the case lies about its size) */
  claimed?: number[];
  buffer: "plain" | "shared" | "detached";
  values: "normal" | "extreme";
}

/** The shapes the contract expects for a consistent problem of size (B,T,H,K,V). */
function validShapes(op: string, s: Record<string, number>, layout: string): Record<string, number[]> {
  const { B, T, Hk, Hv, K, V, C, W, S, D } = s as Record<string, number>;
  switch (op) {
    case "ChunkGatedDeltaRule":
    case "RecurrentGatedDeltaRule":
      return {
        query: [B, T, Hk, K],
        key: [B, T, Hk, K],
        value: [B, T, Hv, V],
        g: [B, T, Hv],
        beta: [B, T, Hv],
        initial_state: layout === "vk" ? [B, Hv, V, K] : [B, Hv, K, V],
        cu_seqlens: [2],
        ssm_state_indices: [1],
        num_accepted_tokens: [1],
        output: [B, T, Hv, V],
        final_state: layout === "vk" ? [B, Hv, V, K] : [B, Hv, K, V],
      };
    case "CausalConv1d":
      return {
        x: [B, C, T],
        weight: s.w2 ? [C, W] : [C, 1, W],
        bias: [C],
        conv_state: [B, C, S],
        cu_seqlens: [2],
        conv_state_indices: [1],
        num_accepted_tokens: [1],
        has_initial_state: [1],
        y: [B, C, T],
        conv_state_out: [B, C, S],
      };
    case "GatedDeltaGating":
      return { a: [B, T, Hv], b: [B, T, Hv], A_log: [Hv], dt_bias: [Hv], g: [B, T, Hv], beta: [B, T, Hv] };
    default:
      return { x: [B, T, D], gate: [B, T, D], weight: [D], y: [B, T, D] };
  }
}

/** The dtype the contract wants for an input (float32 for most; int64 for the reserved index inputs). */
/** The serving inputs of gdn opset 2 (the fuzzer's models are opset 1, where they are refused). */
const SERVING_INPUTS = new Set([
  "cu_seqlens",
  "ssm_state_indices",
  "conv_state_indices",
  "num_accepted_tokens",
  "has_initial_state",
]);

function validType(name: string): DType {
  return SERVING_INPUTS.has(name) ? "int64" : "float32";
}

function mutateDims(rng: Rng, dims: number[]): { dims: number[]; claimed?: number[] } {
  const d = [...dims];
  switch (rng.int(0, 6)) {
    case 0: // another rank, 0..6
      return { dims: Array.from({ length: rng.int(0, 6) }, () => rng.int(0, 4)) };
    case 1: // a zero dim
      if (d.length) d[rng.int(0, d.length - 1)] = 0;
      return { dims: d };
    case 2: // a huge dim next to a zero one: zero elements, but sizes that overflow when multiplied naively
      if (d.length < 2) return { dims: [0, rng.pick(HUGE)] };
      d[rng.int(0, d.length - 1)] = 0;
      d[rng.int(0, d.length - 1)] = rng.pick(HUGE);
      return { dims: d.map((x) => (x === 0 || x > 2 ** 30 ? x : x)) };
    case 3: // a huge dim the data does not hold (the Tensor lies about its dims)
      if (!d.length) return { dims: d, claimed: [rng.pick(HUGE)] };
      {
        const c = [...d];
        c[rng.int(0, c.length - 1)] = rng.pick(HUGE);
        return { dims: d, claimed: c };
      }
    case 4: // one dim off by one
      if (d.length) {
        const i = rng.int(0, d.length - 1);
        d[i] = Math.max(0, d[i]! + rng.pick([-1, 1]));
      }
      return { dims: d };
    case 5: // one dim doubled
      if (d.length) {
        const i = rng.int(0, d.length - 1);
        d[i] = d[i]! * 2;
      }
      return { dims: d };
    default: // an extra or a missing axis
      return { dims: rng.chance(0.5) ? [...d, rng.int(1, 3)] : d.slice(1) };
  }
}

function attrValue(rng: Rng, kind: string, valid: () => number | string): onnx.IAttributeProto {
  const r = rng.next();
  if (r < 0.55) return typed(kind, valid());
  if (r < 0.7) return typed(rng.pick(["float", "int", "string", "floats", "ints", "tensor"]), valid()); // wrong type, mostly
  if (kind === "float") return typed(kind, rng.pick([Number.NaN, Infinity, -Infinity, -1, -1e30, 1e30, 0]));
  if (kind === "int") return typed(kind, rng.pick([-1, 0, 2, 1025, 2 ** 31, -(2 ** 31), 2 ** 53]));
  return typed(kind, rng.pick(["", "KV", "relu", "x".repeat(300), "kv\u0000"]));
}

function typed(kind: string, v: number | string): onnx.IAttributeProto {
  const num = typeof v === "number" ? v : 1;
  const type = onnx.AttributeProto.AttributeType;
  switch (kind) {
    case "float":
      return { type: type.FLOAT, f: num };
    case "int":
      return { type: type.INT, i: Number.isFinite(num) ? Math.trunc(num) : 0 };
    case "string":
      return { type: type.STRING, s: new TextEncoder().encode(String(v)) };
    case "floats":
      return { type: type.FLOATS, floats: [num, num] };
    case "ints":
      return { type: type.INTS, ints: [1, 2] };
    default:
      return { type: type.TENSOR, t: { dataType: 1, dims: [1], floatData: [num] } };
  }
}

interface Plan {
  op: string;
  attrs: onnx.IAttributeProto[];
  inputs: (InputCase | null)[];
  outputs: { name: string; declared: DType; prealloc?: InputCase }[];
}

function plan(index: number): Plan {
  const rng = makeRng(SEED * 1_000_003 + index);
  const op = rng.pick(OPS);
  const contract: OpContract = GDN_CONTRACT[op];
  const attrs: onnx.IAttributeProto[] = [];
  let layout = "kv";
  for (const [name, spec] of Object.entries(contract.attributes)) {
    if (!rng.chance(0.5)) continue;
    const valid = () =>
      spec.kind === "string"
        ? rng.pick(name === "state_layout" ? ["kv", "vk"] : ["silu", "none"])
        : name === "chunk_size"
          ? rng.pick([1, 16, 64, 1024])
          : name === "use_qk_l2norm"
            ? rng.int(0, 1)
            : name === "state_size"
              ? rng.int(0, 4)
              : name === "epsilon"
                ? rng.pick([1e-6, 1e-5, 0])
                : rng.pick([0, 0.125, 1]);
    const a = attrValue(rng, spec.kind, valid);
    if (name === "state_layout" && a.s) layout = new TextDecoder().decode(a.s as Uint8Array);
    attrs.push({ ...a, name });
  }
  if (rng.chance(0.05)) attrs.push({ ...typed("int", 1), name: rng.pick(["bogus", "Scale", "eps", "chunk"]) });

  const Hk = rng.int(1, 3);
  const sizes: Record<string, number> = {
    B: rng.int(1, 3),
    T: rng.pick([1, 2, 3, 17, 65]),
    Hk,
    Hv: Hk * rng.int(1, 2),
    K: rng.int(1, 9),
    V: rng.int(1, 9),
    C: rng.int(1, 6),
    W: rng.int(1, 4),
    D: rng.int(1, 33),
    w2: rng.int(0, 1),
  };
  sizes.S = Math.max(0, sizes.W! - 1 + rng.int(0, 1));
  const zeroSized = rng.chance(0.06);
  if (zeroSized) {
    // a consistent problem with zero elements but huge dims: loops over the huge dims must not run
    const keys = op.endsWith("DeltaRule")
      ? ["B", "T", "Hk", "K", "V"]
      : op === "CausalConv1d"
        ? ["B", "C", "T"]
        : op === "GatedDeltaGating"
          ? ["B", "T", "Hk"]
          : ["B", "T", "D"];
    const zero = rng.pick(keys);
    sizes[zero] = 0;
    sizes[rng.pick(keys.filter((k) => k !== zero))] = rng.pick(HUGE);
    sizes.Hv = sizes.Hk! * (sizes.Hv! / Hk);
  }
  const shapes = validShapes(op, sizes, layout);
  const broken = !zeroSized && rng.chance(0.6); // about 40% of cases stay fully valid
  const inputs: (InputCase | null)[] = contract.inputs.map((name, i) => {
    const optional = i >= contract.required;
    const reserved = SERVING_INPUTS.has(name);
    if (optional && (reserved ? !rng.chance(0.05) : rng.chance(0.4))) return null;
    if (!optional && broken && rng.chance(0.04)) return null; // a required input missing
    return { name, declared: validType(name), dims: shapes[name]!, buffer: "plain", values: "normal" };
  });
  while (inputs.length && inputs[inputs.length - 1] === null) inputs.pop();
  if (broken) {
    const present = inputs.filter((x): x is InputCase => x !== null);
    for (let m = rng.int(1, 2); m > 0 && present.length; m--) {
      const target = rng.pick(present);
      const kind = rng.int(0, 9);
      if (kind <= 3) Object.assign(target, mutateDims(rng, target.dims));
      else if (kind <= 5) target.declared = rng.pick(DTYPES);
      else if (kind === 6) target.buffer = rng.pick(["shared", "detached"] as const);
      else if (kind === 7) target.values = "extreme";
      else if (kind === 8)
        inputs.push({
          name: `extra${inputs.length}`,
          declared: "float32",
          dims: [1],
          buffer: "plain",
          values: "normal",
        });
      else target.declared = rng.pick(["float16", "bfloat16"] as const);
    }
  } else if (rng.chance(0.3)) {
    const floats = inputs.filter((x): x is InputCase => x !== null && x.declared === "float32");
    if (floats.length) rng.pick(floats).buffer = "shared";
  }
  const outputs = contract.outputs.map((name, i) => {
    const declared: DType = name === "g" || name === "final_state" ? "float32" : (inputs[0]?.declared ?? "float32");
    const o: Plan["outputs"][number] = { name, declared };
    if (i > 0 && rng.chance(0.15)) return null;
    if (rng.chance(0.25)) {
      const mutated = broken && rng.chance(0.5) ? mutateDims(rng, shapes[name]!) : { dims: shapes[name]! };
      o.prealloc = {
        name,
        declared: broken && rng.chance(0.2) ? rng.pick(DTYPES) : declared,
        ...mutated,
        buffer: broken && rng.chance(0.2) ? rng.pick(["shared", "detached"] as const) : "plain",
        values: "normal",
      };
    }
    return o;
  });
  while (outputs.length && outputs[outputs.length - 1] === null) outputs.pop();
  return { op, attrs, inputs, outputs: outputs.map((o) => o ?? { name: "", declared: "float32" as DType }) };
}

/** The plan's one-node model (an absent input or output is named ""). */
function model(p: Plan): Uint8Array {
  return oneNodeModel({
    opType: p.op,
    inputs: p.inputs.map((x) => (x ? { name: x.name, elemType: ONNX_TYPE[x.declared] } : { name: "" })),
    outputs: p.outputs.map((o) => ({ name: o.name, elemType: ONNX_TYPE[o.declared] })),
    attributes: p.attrs,
    nodeName: "",
  });
}

const MAX_ELEMENTS = 1 << 20;

function tensor(x: InputCase, rng: Rng): ort.Tensor {
  const count = x.dims.reduce((a, b) => a * b, 1);
  if (count > MAX_ELEMENTS || x.dims.some((d) => !Number.isSafeInteger(d))) {
    // cannot hold the data: a small tensor that claims the big dims
    const t = new ort.Tensor("float32", new Float32Array(count === 0 ? 0 : 1), [count === 0 ? 0 : 1]);
    Object.defineProperty(t, "dims", { value: x.dims });
    Object.defineProperty(t, "type", { value: x.declared === "bfloat16" ? "uint16" : x.declared });
    return t;
  }
  let t: ort.Tensor;
  if (x.declared === "string") {
    t = new ort.Tensor(
      "string",
      Array.from({ length: count }, (_, i) => `s${i}`),
      x.dims,
    );
  } else {
    const type = x.declared === "bfloat16" ? "uint16" : x.declared;
    const Ctor = {
      float32: Float32Array,
      float64: Float64Array,
      float16: Uint16Array,
      uint16: Uint16Array,
      int32: Int32Array,
      int64: BigInt64Array,
      int8: Int8Array,
      uint8: Uint8Array,
      bool: Uint8Array,
    }[type]!;
    const bytes = count * Ctor.BYTES_PER_ELEMENT;
    const buf = x.buffer === "shared" ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
    const data = new Ctor(buf as ArrayBuffer);
    fill(data, x, rng);
    t = new ort.Tensor(type as "float32", data as Float32Array, x.dims);
    if (x.buffer === "detached") structuredClone(buf, { transfer: [buf as ArrayBuffer] });
  }
  if (x.claimed) Object.defineProperty(t, "dims", { value: x.claimed });
  return t;
}

function fill(data: ArrayLike<number | bigint> & { [i: number]: number | bigint }, x: InputCase, rng: Rng): void {
  const isBig = data instanceof BigInt64Array;
  const isFloat = data instanceof Float32Array || data instanceof Float64Array;
  for (let i = 0; i < data.length; i++) {
    let v: number;
    if (x.values === "extreme") v = rng.pick([Number.NaN, Infinity, -Infinity, -1e30, 1e30, 0, -0, 3.4e38]);
    else if (x.name === "g" || x.name === "A_log") v = -rng.next();
    else if (x.name === "beta" || x.name === "b") v = rng.next();
    else v = rng.next() - 0.5;
    if (isBig) data[i] = BigInt(rng.int(-2, 8));
    else if (isFloat) data[i] = v;
    else data[i] = x.declared === "float16" || x.declared === "bfloat16" ? rng.int(0, 0x3c00) : rng.int(0, 3);
  }
}

// One session per distinct model: most cases differ in their run-time inputs only.
const sessions = new Map<string, Promise<ort.InferenceSession>>();
function session(bytes: Uint8Array): Promise<ort.InferenceSession> {
  const key = Buffer.from(bytes).toString("base64");
  let s = sessions.get(key);
  if (!s) {
    if (sessions.size >= 64) {
      const [oldest, p] = sessions.entries().next().value!;
      sessions.delete(oldest);
      void p.then(
        (x) => x.release(),
        () => undefined,
      );
    }
    s = ort.InferenceSession.create(bytes, { executionProviders: ["gdn"], intraOpNumThreads: 1, logSeverityLevel: 4 });
    sessions.set(key, s);
  }
  return s;
}

/** A description of what a case does, for the report of a case that crashed. */
export function describeCase(index: number): string {
  const p = plan(index);
  const io = (x: InputCase | null) =>
    x
      ? `${x.name}:${x.declared}${JSON.stringify(x.dims)}${x.claimed ? `(claims ${JSON.stringify(x.claimed)})` : ""}${x.buffer !== "plain" ? `/${x.buffer}` : ""}${x.values !== "normal" ? "/extreme" : ""}`
      : "-";
  const attrs = p.attrs.map(
    (a) =>
      `${a.name}=${a.type === 1 ? a.f : a.type === 2 ? a.i : a.type === 3 ? JSON.stringify(new TextDecoder().decode(a.s as Uint8Array)) : `<type ${a.type}>`}`,
  );
  const pre = p.outputs.filter((o) => o.prealloc).map((o) => io(o.prealloc!));
  return `${p.op}(${p.inputs.map(io).join(", ")}) attrs {${attrs.join(", ")}}${pre.length ? ` preallocated ${pre.join(", ")}` : ""}`;
}

export async function runCase(index: number): Promise<string> {
  const p = plan(index);
  const rng = makeRng(SEED * 7 + index);
  try {
    const s = await session(model(p));
    const feeds: Record<string, ort.Tensor> = {};
    for (const x of p.inputs) if (x) feeds[x.name] = tensor(x, rng);
    const fetches: Record<string, ort.Tensor | null> = {};
    for (const o of p.outputs) if (o.name) fetches[o.name] = o.prealloc ? tensor(o.prealloc, rng) : null;
    const res = await s.run(feeds, fetches as ort.InferenceSession.FetchesType);
    return Object.entries(res)
      .map(([n, t]) => `${n}${JSON.stringify(t.dims)}`)
      .join(" ");
  } catch (e) {
    if (e instanceof GdnFuseError && e.code && !e.message.includes("\n")) throw e;
    const m = e instanceof Error ? e.message : String(e);
    throw new Error(
      `NOT A GDNFUSEERROR (${(e as Error)?.name}${e instanceof GdnFuseError ? ", " + JSON.stringify(e.message.split("\n").length) + " lines" : ""}): ${m.replace(/\n/g, "\\n").slice(0, 300)}`,
    );
  }
}
