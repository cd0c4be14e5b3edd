/** The fused ops' domain and opset (docs/ops.md is the contract). */
export const GDN_DOMAIN = "gdn";
export const GDN_OPSET = 1;

export const GdnOp = {
  ChunkGatedDeltaRule: "ChunkGatedDeltaRule",
  RecurrentGatedDeltaRule: "RecurrentGatedDeltaRule",
  CausalConv1d: "CausalConv1d",
  GatedDeltaGating: "GatedDeltaGating",
  GatedRMSNorm: "GatedRMSNorm",
} as const;
