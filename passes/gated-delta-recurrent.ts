/**
 * gated-delta-recurrent: transformers' torch_recurrent_gated_delta_rule (decode, T tokens unrolled)
 * -> gdn.RecurrentGatedDeltaRule.
 *
 * Anchor: Exp of g_t (the state decay), where g_t is a time slice of g moved to [B,H,T]. Then the
 * core region, one decay per token (T Exp nodes), the delta-rule Sub order, and a probe run.
 *
 *   for each token t:  S = S * exp(g_t);  kv = sum(S * k_t, -2);  d = (v_t - kv) * beta_t;
 *                      S = S + k_t d^T;   o_t = sum(S * q_t, -2)
 */
import type { Node } from "../src/ir/index.js";
import { candidatePass, check } from "../src/pattern/index.js";
import { GdnOp } from "../src/ops.js";
import { delimitCore, gEntryUpstream, type CoreRegion } from "./gated-delta/core-region.js";
import { fuseCore } from "./gated-delta/fuse-core.js";

const SLICE_OPS = new Set(["Gather", "Slice", "Squeeze"]);

export const gatedDeltaRecurrent = candidatePass({
  name: "gated-delta-recurrent",
  description: "recurrent gated delta rule (decode) -> gdn.RecurrentGatedDeltaRule",
  anchors: ["Exp"],
  accept: (exp) => gEntryOf(exp) !== undefined,
  async rewrite(exp, ctx) {
    const region = matchRecurrent(exp);
    const { dims, scale, useQkL2norm, state, finalState } = region;
    const details = { ...dims, B: region.batch, scale, useQkL2norm, initialState: !!state, finalState: !!finalState };
    return fuseCore(ctx, region, GdnOp.RecurrentGatedDeltaRule, details);
  },
});

/** The Transpose(0,2,1) of g when the Exp reads a time slice of it; cheap anchor filter. */
function gEntryOf(exp: Node): Node | undefined {
  const slice = exp.inputs[0]?.producer;
  if (!slice || !SLICE_OPS.has(slice.opType)) return undefined;
  if (slice.opType === "Gather" && slice.attrInt("axis", 0) !== 2) return undefined;
  return gEntryUpstream(slice.inputs[0]!, 4);
}

export function matchRecurrent(exp: Node): CoreRegion {
  const gEntry = gEntryOf(exp);
  check(gEntry, "anchor", "Exp does not read a time slice of g", exp);
  const r = delimitCore(exp, gEntry, { kind: "recurrent" });
  const decays = [...r.nodes].filter((n) => n.opType === "Exp").length;
  check(decays === r.dims.T, "steps", `the region has ${decays} state decays exp(g_t) for ${r.dims.T} tokens`, exp);
  return r;
}
