/**
 * The passes that ship with gdn-fuse, in the order `fuse-model` runs them; each entry says why it sits
 * where it does. Adding a pass is one file (importing only the kit: src/ir, src/pattern, src/ops) and one
 * line here. The package entry (src/index.ts) registers this list as the default.
 */
import type { Pass } from "../src/pattern/index.js";
import { gatedDeltaChunk } from "./gated-delta-chunk.js";
import { gatedDeltaRecurrent } from "./gated-delta-recurrent.js";
import { layerCausalConv1d } from "./layer-causal-conv1d.js";
import { layerGatedRmsnorm } from "./layer-gated-rmsnorm.js";
import { layerGating } from "./layer-gating.js";
import { layerGqaRepeat } from "./layer-gqa-repeat.js";
import { layerLayout } from "./layer-layout.js";
import { layerQkL2norm } from "./layer-qk-l2norm.js";
import { lowerToOnnx } from "./targets/lower-to-onnx.js";
import { lowerToOrt } from "./targets/lower-to-ort.js";

export const BUILTIN_PASSES: readonly Pass[] = [
  // Cores first: the layer-level passes read the fused core's inputs (GQA repeat, l2norm, gating).
  gatedDeltaChunk,
  // After chunk: an unfused chunked core also contains Exp nodes, which the recurrent anchor filter skips anyway.
  gatedDeltaRecurrent,
  // Layer level, after the cores: anchored on the fused core nodes (their q/k/g/beta inputs).
  // Before gqa-repeat: an L2 norm applied after the repeat sits between the repeat and the core.
  layerQkL2norm,
  // After qk-l2norm: the repeat_interleave is then the core's direct q/k producer.
  layerGqaRepeat,
  // Anchored on the cores' g/beta inputs; independent of the q/k folds.
  layerGating,
  // Anchored on Conv; independent of the core (runs on any depthwise causal conv + SiLU).
  layerCausalConv1d,
  // Anchored on ReduceMean; after the cores so the core's internal reductions are gone.
  layerGatedRmsnorm,
  // After every layer op exists: reads the layer as projections -> conv -> core -> norm -> out_proj
  // and rewrites only the layout nodes between them (12 nodes per layer); needs all four gdn ops.
  layerLayout,
  // Last: lower every gdn node for the chosen target; runs only for --target ort / onnx.
  lowerToOrt,
  lowerToOnnx,
];
