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
import { attr } from "../../src/ir/index.js";
import { decayScale, loweringPass } from "./lowering.js";

export const ONNX_TARGET_OPSET = 27;
/** The IR version that goes with opset 27. */
const ONNX_TARGET_IR = 13;
const OPSET_27_OPS = ["LinearAttention", "CausalConvWithState", "RMSNormalization"];

export const lowerToOnnx = loweringPass({
  name: "lower-to-onnx",
  description: "lowers gdn ops to ONNX opset-27 standard ops (target onnx)",
  target: "onnx",
  domain: "",
  repeatKeys: true,
  gating: {
    op: "Softplus+Sigmoid",
    emit(e, { a, b, aLog, dtBias, g, beta }) {
      const sp = e.one("Softplus", [e.one("Add", [a, dtBias])]);
      e.op("Mul", [decayScale(e, aLog), sp], [g]);
      e.op("Sigmoid", [b], [beta]);
    },
  },
  norm: {
    op: "RMSNormalization",
    emit(e, { x, gate, weight, y, eps }) {
      const normed = e.one("RMSNormalization", [x, weight], [attr.int("axis", -1), attr.float("epsilon", eps)]);
      const silu = e.one("Mul", [gate, e.one("Sigmoid", [gate])]);
      e.op("Mul", [normed, silu], [y]);
    },
  },
  finish(ctx) {
    if (ctx.graph.nodes.some((n) => n.domain === "" && OPSET_27_OPS.includes(n.opType))) {
      ctx.requireOpset("", ONNX_TARGET_OPSET);
      const ir = Number(ctx.model.irVersion ?? 0);
      if (ir < ONNX_TARGET_IR) ctx.model.irVersion = ONNX_TARGET_IR;
    }
  },
});
