/**
 * The gdn op contract on the TypeScript side (docs/ops.md is the prose, native/common/gdn_contract.h the
 * C++ version; test/contract.test.ts checks the two agree): op names, input and output positions by name,
 * attribute names, types, defaults and ranges, element types, and the constants the ops fix.
 */
export const GDN_DOMAIN = "gdn";
export const GDN_OPSET = 1;
/**
 * gdn opset 2: the delta-rule ops' inputs 6-8 (cu_seqlens, ssm_state_indices, num_accepted_tokens) take the serving
 * engines' meaning. Opset-1 models keep loading; the runtime refuses those inputs in them.
 */
export const GDN_OPSET_SERVING = 2;
/** The gdn opsets this runtime implements. */
export const GDN_OPSETS: readonly number[] = [GDN_OPSET, GDN_OPSET_SERVING];

/** What a fusion run can emit: gdn ops, stock ORT contrib ops, or ONNX standard ops. */
export const TARGETS = ["gdn", "ort", "onnx"] as const;
export type Target = (typeof TARGETS)[number];

export const GdnOp = {
  ChunkGatedDeltaRule: "ChunkGatedDeltaRule",
  RecurrentGatedDeltaRule: "RecurrentGatedDeltaRule",
  CausalConv1d: "CausalConv1d",
  GatedDeltaGating: "GatedDeltaGating",
  GatedRMSNorm: "GatedRMSNorm",
} as const;

// ---- positions of inputs and outputs (gdn_contract.h: delta_rule::kQuery, causal_conv1d::kConvState, ...) --
/** ChunkGatedDeltaRule / RecurrentGatedDeltaRule inputs (cu_seqlens and after: reserved in opset 1). */
export const DeltaRuleIn = {
  query: 0,
  key: 1,
  value: 2,
  g: 3,
  beta: 4,
  initialState: 5,
  cuSeqlens: 6,
  ssmStateIndices: 7,
  numAcceptedTokens: 8,
} as const;
export const DeltaRuleOut = { output: 0, finalState: 1 } as const;
/** CausalConv1d inputs (cu_seqlens and after: gdn opset 2). */
export const ConvIn = {
  x: 0,
  weight: 1,
  bias: 2,
  convState: 3,
  cuSeqlens: 4,
  convStateIndices: 5,
  numAcceptedTokens: 6,
  hasInitialState: 7,
} as const;
export const ConvOut = { y: 0, convStateOut: 1 } as const;
export const GatingIn = { a: 0, b: 1, aLog: 2, dtBias: 3 } as const;
export const GatingOut = { g: 0, beta: 1 } as const;
export const RmsNormIn = { x: 0, gate: 1, weight: 2 } as const;
export const RmsNormOut = { y: 0 } as const;

// ---- attribute names and the values the contract fixes ------------------------------------------------
export const DeltaRuleAttr = {
  scale: "scale",
  useQkL2norm: "use_qk_l2norm",
  stateLayout: "state_layout",
  chunkSize: "chunk_size",
} as const;
export const ConvAttr = { activation: "activation", stateSize: "state_size" } as const;
export const RmsNormAttr = { epsilon: "epsilon" } as const;

/** Chunk size hint of ChunkGatedDeltaRule: default and upper bound. */
export const DEFAULT_CHUNK_SIZE = 64;
export const MAX_CHUNK_SIZE = 1024;
/** State layouts: "kv" keeps the state as [B,Hv,K,V], "vk" as [B,Hv,V,K]. */
export const DEFAULT_STATE_LAYOUT = "kv";
/** CausalConv1d's activation when the attribute is left out. */
export const DEFAULT_CONV_ACTIVATION = "silu";
/** Upper bound of CausalConv1d's state_size (0 means W-1). */
export const MAX_STATE_SIZE = 2 ** 24;
/** eps of the in-kernel q/k L2 norm (use_qk_l2norm): x * rsqrt(sum(x^2) + eps), as transformers' l2norm. */
export const L2NORM_EPS = 1e-6;
/** GatedRMSNorm's default epsilon. */
export const RMS_NORM_EPS = 1e-6;
/** GatedDeltaGating's softplus: x itself above this (torch's threshold). */
export const SOFTPLUS_THRESHOLD = 20;

// ---- element types (onnx.TensorProto.DataType values) -----------------------------------------------
export const FLOAT = 1;
export const FLOAT16 = 10;
export const BFLOAT16 = 16;
/** Element types of activations the gdn ops take (float32, float16, bfloat16). */
export const FLOAT_TYPES: ReadonlySet<number> = new Set([FLOAT, FLOAT16, BFLOAT16]);
const FLOAT_TYPE_NAMES: Record<number, string> = { [FLOAT]: "float32", [FLOAT16]: "float16", [BFLOAT16]: "bfloat16" };
/** "float32", "float16", "bfloat16", "type N", or "unknown". */
export const typeName = (t: number | undefined): string =>
  t === undefined ? "unknown" : (FLOAT_TYPE_NAMES[t] ?? `type ${t}`);

/** ONNX AttributeProto types the contract uses (onnx.AttributeProto.AttributeType values). */
export type AttrKind = "float" | "int" | "string";
export const ATTR_TYPE_CODE: Record<AttrKind, number> = { float: 1, int: 2, string: 3 };

export interface AttrContract {
  kind: AttrKind;
  default: number | string;
  /** Why a value is out of the contract's range ("must be in 1..1024"), or null when it is fine. */
  check(value: number | string): string | null;
}

export interface OpContract {
  /** Input names by position; `required` leading ones must be present. */
  inputs: readonly string[];
  /** How many of `inputs` gdn opset 1 has, when later opsets added some. */
  opset1Inputs?: number;
  required: number;
  outputs: readonly string[];
  attributes: Readonly<Record<string, AttrContract>>;
}

const oneOf =
  (...allowed: (number | string)[]) =>
  (v: number | string): string | null =>
    allowed.includes(v) ? null : `must be ${allowed.map((a) => JSON.stringify(a)).join(" or ")}`;
const finite = (v: number | string): string | null =>
  typeof v === "number" && Number.isFinite(v) ? null : `must be finite`;
const intIn =
  (min: number, max: number, note = "") =>
  (v: number | string): string | null =>
    typeof v === "number" && v >= min && v <= max ? null : `must be in ${min}..${max}${note}`;
const finiteNonNegative = (v: number | string): string | null =>
  typeof v === "number" && Number.isFinite(v) && v >= 0 ? null : `must be a finite value >= 0`;

const DELTA_RULE_INPUTS = [
  "query",
  "key",
  "value",
  "g",
  "beta",
  "initial_state",
  "cu_seqlens",
  "ssm_state_indices",
  "num_accepted_tokens",
];
const DELTA_RULE_ATTRS = {
  [DeltaRuleAttr.scale]: { kind: "float", default: 0, check: finite },
  [DeltaRuleAttr.useQkL2norm]: { kind: "int", default: 0, check: oneOf(0, 1) },
  [DeltaRuleAttr.stateLayout]: { kind: "string", default: DEFAULT_STATE_LAYOUT, check: oneOf("kv", "vk") },
} satisfies Record<string, AttrContract>;

/**
 * The op contract of gdn opsets 1 and 2 (docs/ops.md; native/common/gdn_contract.h is the C++ version): input and
 * output names, and each attribute's type, default and allowed values. The names are the same in both opsets; in
 * opset 2 the delta-rule inputs from DeltaRuleIn.cuSeqlens on (cu_seqlens int32/int64 [N+1],
 * ssm_state_indices int32/int64 [N] or, recurrent only, [N,Tmax], num_accepted_tokens int32/int64 [N]) serve
 * packed sequences, state pools and speculative decoding; opset 1 reserves them.
 */
export const GDN_CONTRACT: Readonly<Record<keyof typeof GdnOp, OpContract>> = {
  ChunkGatedDeltaRule: {
    inputs: DELTA_RULE_INPUTS.slice(0, 8),
    required: 5,
    outputs: ["output", "final_state"],
    attributes: {
      ...DELTA_RULE_ATTRS,
      [DeltaRuleAttr.chunkSize]: { kind: "int", default: DEFAULT_CHUNK_SIZE, check: intIn(1, MAX_CHUNK_SIZE) },
    },
  },
  RecurrentGatedDeltaRule: {
    inputs: DELTA_RULE_INPUTS,
    required: 5,
    outputs: ["output", "final_state"],
    attributes: DELTA_RULE_ATTRS,
  },
  CausalConv1d: {
    // From gdn opset 2: packed sequences, a conv state pool, speculative decoding (docs/ops.md).
    inputs: [
      "x",
      "weight",
      "bias",
      "conv_state",
      "cu_seqlens",
      "conv_state_indices",
      "num_accepted_tokens",
      "has_initial_state",
    ],
    opset1Inputs: 4,
    required: 2,
    outputs: ["y", "conv_state_out"],
    attributes: {
      [ConvAttr.activation]: { kind: "string", default: DEFAULT_CONV_ACTIVATION, check: oneOf("silu", "none") },
      [ConvAttr.stateSize]: { kind: "int", default: 0, check: intIn(0, MAX_STATE_SIZE, " (0 means W-1)") },
    },
  },
  GatedDeltaGating: { inputs: ["a", "b", "A_log", "dt_bias"], required: 4, outputs: ["g", "beta"], attributes: {} },
  GatedRMSNorm: {
    inputs: ["x", "gate", "weight"],
    required: 3,
    outputs: ["y"],
    attributes: { [RmsNormAttr.epsilon]: { kind: "float", default: RMS_NORM_EPS, check: finiteNonNegative } },
  },
};
