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
import { attr, type Node } from "../../src/ir/index.js";
import type { Pass } from "../../src/pattern/index.js";
import {
  GatingIn,
  GatingOut,
  GdnOp,
  RMS_NORM_EPS,
  RmsNormAttr,
  RmsNormIn,
  RmsNormOut,
} from "../../src/ops.js";
import { MS_DOMAIN, checkGatingTypes, decayScale, detach, lowerAll, lowerConv, lowerCore } from "./lowering.js";

const NAME = "lower-to-ort";

const TARGET_OP: Record<string, string> = {
  [GdnOp.ChunkGatedDeltaRule]: "com.microsoft.LinearAttention",
  [GdnOp.RecurrentGatedDeltaRule]: "com.microsoft.LinearAttention",
  [GdnOp.CausalConv1d]: "com.microsoft.CausalConvWithState",
  [GdnOp.GatedDeltaGating]: "com.microsoft.LinearAttentionGate",
  [GdnOp.GatedRMSNorm]: "com.microsoft.GatedRMSNorm",
};

export const lowerToOrt: Pass = {
  name: NAME,
  description: "lowers gdn ops to com.microsoft contrib ops of stock onnxruntime 1.30 (target ort)",
  anchors: ["gdn.*"],
  targets: ["ort"],
  async run(ctx) {
    await lowerAll(ctx, NAME, (n: Node) => TARGET_OP[n.opType] ?? n.opType, {
      core: (e, n, d) => lowerCore(e, n, d, MS_DOMAIN, false),
      conv: (e, n) => lowerConv(e, n, MS_DOMAIN),
      gating: (e, n) => {
        checkGatingTypes(n);
        const { ins, outs } = detach(e, n);
        const [a, b] = [ins[GatingIn.a], ins[GatingIn.b]];
        const [aLog, dtBias] = [ins[GatingIn.aLog]!, ins[GatingIn.dtBias]];
        const gateOutputs = [outs[GatingOut.g]!, outs[GatingOut.beta]!];
        e.op("LinearAttentionGate", [a, dtBias, decayScale(e, aLog), b], gateOutputs, [], MS_DOMAIN);
      },
      norm: (e, n) => {
        const eps = n.attrFloat(RmsNormAttr.epsilon, RMS_NORM_EPS)!;
        const { ins, outs } = detach(e, n);
        const normInputs = [ins[RmsNormIn.x], ins[RmsNormIn.weight], ins[RmsNormIn.gate]];
        e.op("GatedRMSNorm", normInputs, [outs[RmsNormOut.y]!], [attr.float("epsilon", eps)], MS_DOMAIN);
      },
    });
    ctx.requireOpset(MS_DOMAIN, 1);
  },
};
