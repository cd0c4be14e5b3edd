/** The fused ops' domain and opset (docs/ops.md is the contract). */
export const GDN_DOMAIN = "gdn";
export const GDN_OPSET = 1;
/**
 * gdn opset 2: the delta-rule ops' inputs 6-8 (cu_seqlens, ssm_state_indices, num_accepted_tokens) take the serving
 * engines' meaning. Opset-1 models keep loading; the runtime refuses those inputs in them.
 */
export const GDN_OPSET_SERVING = 2;
/** The gdn opsets this runtime implements. */
export const GDN_OPSETS: readonly number[] = [GDN_OPSET, GDN_OPSET_SERVING];

export const GdnOp = {
  ChunkGatedDeltaRule: "ChunkGatedDeltaRule",
  RecurrentGatedDeltaRule: "RecurrentGatedDeltaRule",
  CausalConv1d: "CausalConv1d",
  GatedDeltaGating: "GatedDeltaGating",
  GatedRMSNorm: "GatedRMSNorm",
} as const;

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

const DELTA_RULE_INPUTS = ["query", "key", "value", "g", "beta", "initial_state", "cu_seqlens", "ssm_state_indices", "num_accepted_tokens"];
const DELTA_RULE_ATTRS = {
  scale: { kind: "float", default: 0, check: finite },
  use_qk_l2norm: { kind: "int", default: 0, check: oneOf(0, 1) },
  state_layout: { kind: "string", default: "kv", check: oneOf("kv", "vk") },
} satisfies Record<string, AttrContract>;

/**
 * The op contract of gdn opset 1 (docs/ops.md; native/common/gdn_contract.h is the C++ version): input and
 * output names, and each attribute's type, default and allowed values.
 */
export const GDN_CONTRACT: Readonly<Record<keyof typeof GdnOp, OpContract>> = {
  ChunkGatedDeltaRule: {
    inputs: DELTA_RULE_INPUTS.slice(0, 8),
    required: 5,
    outputs: ["output", "final_state"],
    attributes: { ...DELTA_RULE_ATTRS, chunk_size: { kind: "int", default: 64, check: intIn(1, 1024) } },
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
      "x", "weight", "bias", "conv_state",
      "cu_seqlens", "conv_state_indices", "num_accepted_tokens", "has_initial_state",
    ],
    opset1Inputs: 4,
    required: 2,
    outputs: ["y", "conv_state_out"],
    attributes: {
      activation: { kind: "string", default: "silu", check: oneOf("silu", "none") },
      state_size: { kind: "int", default: 0, check: intIn(0, 16777216, " (0 means W-1)") },
    },
  },
  GatedDeltaGating: { inputs: ["a", "b", "A_log", "dt_bias"], required: 4, outputs: ["g", "beta"], attributes: {} },
  GatedRMSNorm: {
    inputs: ["x", "gate", "weight"],
    required: 3,
    outputs: ["y"],
    attributes: { epsilon: { kind: "float", default: 1e-6, check: finiteNonNegative } },
  },
};
