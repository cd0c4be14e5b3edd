/**
 * lower-to-ort: rewrites gdn nodes into operators stock onnxruntime-node 1.30 runs on CPU
 * (com.microsoft contrib ops; docs/targets.md lists what cannot be expressed):
 *   gdn.ChunkGatedDeltaRule / RecurrentGatedDeltaRule -> [L2 norm ops] + Reshape + com.microsoft.LinearAttention
 *        (update_rule "gated_delta", q_num_heads = Hk, kv_num_heads = Hv: it shares key heads itself) + Reshape
 *   gdn.CausalConv1d      -> com.microsoft.CausalConvWithState (+ Slice/Concat when the state keeps S > W-1 positions)
 *   gdn.GatedDeltaGating  -> com.microsoft.LinearAttentionGate(a, dt_bias, -exp(A_log), b)
 *   gdn.GatedRMSNorm      -> com.microsoft.GatedRMSNorm(x, weight, gate)
 * Runs only for target "ort"; reads nothing but ctx.target's gdn nodes.
 */
import { attr } from "../../src/ir/index.js";
import { MS_DOMAIN, decayScale, loweringPass } from "./lowering.js";

export const lowerToOrt = loweringPass({
  name: "lower-to-ort",
  description: "lowers gdn ops to com.microsoft contrib ops of stock onnxruntime 1.30 (target ort)",
  target: "ort",
  domain: MS_DOMAIN,
  repeatKeys: false,
  gating: {
    op: "LinearAttentionGate",
    emit(e, { a, b, aLog, dtBias, g, beta }) {
      e.op("LinearAttentionGate", [a, dtBias, decayScale(e, aLog), b], [g, beta], [], MS_DOMAIN);
    },
  },
  norm: {
    op: "GatedRMSNorm",
    emit(e, { x, gate, weight, y, eps }) {
      e.op("GatedRMSNorm", [x, weight, gate], [y], [attr.float("epsilon", eps)], MS_DOMAIN);
    },
  },
  finish(ctx) {
    ctx.requireOpset(MS_DOMAIN, 1);
  },
});
