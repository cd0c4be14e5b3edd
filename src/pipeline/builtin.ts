/** Registers the passes that ship with gdn-fuse (idempotent). */
import { gatedDeltaChunk } from "../../passes/gated-delta-chunk.js";
import { gatedDeltaRecurrent } from "../../passes/gated-delta-recurrent.js";
import { layerCausalConv1d } from "../../passes/layer-causal-conv1d.js";
import { layerGatedRmsnorm } from "../../passes/layer-gated-rmsnorm.js";
import { layerGating } from "../../passes/layer-gating.js";
import { layerGqaRepeat } from "../../passes/layer-gqa-repeat.js";
import { layerLayout } from "../../passes/layer-layout.js";
import { layerQkL2norm } from "../../passes/layer-qk-l2norm.js";
import { lowerToOnnx } from "../../passes/targets/lower-to-onnx.js";
import { lowerToOrt } from "../../passes/targets/lower-to-ort.js";
import { registerPass } from "./registry.js";

let done = false;
export function registerBuiltinPasses(): void {
  if (done) return;
  done = true;
  for (const p of [gatedDeltaChunk, gatedDeltaRecurrent, layerQkL2norm, layerGqaRepeat, layerGating, layerCausalConv1d, layerGatedRmsnorm, layerLayout, lowerToOrt, lowerToOnnx]) registerPass(p);
}
