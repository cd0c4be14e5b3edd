/**
 * lower-to-onnx: rewrites gdn nodes into ONNX standard operators, raising the default opset to 27
 * (where LinearAttention and CausalConvWithState are defined):
 *   gdn.ChunkGatedDeltaRule / RecurrentGatedDeltaRule -> [L2 norm ops] + repeat_interleave of q/k when
 *        Hk < Hv (ONNX LinearAttention needs q_num_heads a multiple of kv_num_heads) + LinearAttention-27
 *   gdn.CausalConv1d      -> CausalConvWithState-27 (+ Slice/Concat when the state keeps S > W-1 positions)
 *   gdn.GatedDeltaGating  -> Add, Softplus, Mul(-exp(A_log)), Sigmoid
 *   gdn.GatedRMSNorm      -> RMSNormalization-23, Sigmoid, Mul, Mul
 * onnxruntime 1.30 loads opset 27 only with ALLOW_RELEASED_ONNX_OPSET_ONLY=0 (docs/targets.md).
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
import { checkGatingTypes, decayScale, detach, lowerAll, lowerConv, lowerCore } from "./lowering.js";

const NAME = "lower-to-onnx";
export const ONNX_TARGET_OPSET = 27;
/** The IR version that goes with opset 27. */
const ONNX_TARGET_IR = 13;

const TARGET_OP: Record<string, string> = {
  [GdnOp.ChunkGatedDeltaRule]: "ai.onnx.LinearAttention",
  [GdnOp.RecurrentGatedDeltaRule]: "ai.onnx.LinearAttention",
  [GdnOp.CausalConv1d]: "ai.onnx.CausalConvWithState",
  [GdnOp.GatedDeltaGating]: "ai.onnx.Softplus+Sigmoid",
  [GdnOp.GatedRMSNorm]: "ai.onnx.RMSNormalization",
};

export const lowerToOnnx: Pass = {
  name: NAME,
  description: "lowers gdn ops to ONNX opset-27 standard ops (target onnx)",
  anchors: ["gdn.*"],
  targets: ["onnx"],
  async run(ctx) {
    await lowerAll(ctx, NAME, (n: Node) => TARGET_OP[n.opType] ?? n.opType, {
      core: (e, n, d) => lowerCore(e, n, d, "", true),
      conv: (e, n) => lowerConv(e, n, ""),
      gating: (e, n) => {
        checkGatingTypes(n);
        const { ins, outs } = detach(e, n);
        const [a, b] = [ins[GatingIn.a], ins[GatingIn.b]];
        const [aLog, dtBias] = [ins[GatingIn.aLog]!, ins[GatingIn.dtBias]];
        const sp = e.one("Softplus", [e.one("Add", [a, dtBias])]);
        e.op("Mul", [decayScale(e, aLog), sp], [outs[GatingOut.g]!]);
        e.op("Sigmoid", [b], [outs[GatingOut.beta]!]);
      },
      norm: (e, n) => {
        const eps = n.attrFloat(RmsNormAttr.epsilon, RMS_NORM_EPS)!;
        const { ins, outs } = detach(e, n);
        const [x, gate, weight] = [ins[RmsNormIn.x], ins[RmsNormIn.gate], ins[RmsNormIn.weight]];
        const normed = e.one("RMSNormalization", [x, weight], [attr.int("axis", -1), attr.float("epsilon", eps)]);
        const silu = e.one("Mul", [gate, e.one("Sigmoid", [gate])]);
        e.op("Mul", [normed, silu], [outs[RmsNormOut.y]!]);
      },
    });
    if (ctx.graph.nodes.some((n) => n.domain === "" && ["LinearAttention", "CausalConvWithState", "RMSNormalization"].includes(n.opType))) {
      ctx.requireOpset("", ONNX_TARGET_OPSET);
      const ir = Number(ctx.model.irVersion ?? 0);
      if (ir < ONNX_TARGET_IR) ctx.model.irVersion = ONNX_TARGET_IR;
    }
  },
};
