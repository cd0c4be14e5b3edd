/**
 * The pass registry. Built-in passes register here; export pipelines may register their own.
 * `DEFAULT_PASSES` is the ordered list `fuse-model` runs; each entry says why it sits where it does.
 */
import { GdnFuseError } from "../errors.js";
import type { Pass } from "./pass.js";

const registry = new Map<string, Pass>();

export function registerPass(pass: Pass): void {
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(pass.name))
    throw new GdnFuseError("E_USAGE", `pass name "${pass.name}" is not kebab-case`);
  if (registry.has(pass.name) && registry.get(pass.name) !== pass)
    throw new GdnFuseError("E_USAGE", `a pass named "${pass.name}" is already registered`);
  registry.set(pass.name, pass);
}

export function getPass(name: string): Pass {
  const p = registry.get(name);
  if (!p) throw new GdnFuseError("E_USAGE", `unknown pass "${name}" (known: ${[...registry.keys()].join(", ")})`);
  return p;
}

export function listPasses(): Pass[] {
  return [...registry.values()];
}

/** The default order. */
export const DEFAULT_PASSES: readonly string[] = [
  // Cores first: the layer-level passes read the fused core's inputs (GQA repeat, l2norm, gating).
  "gated-delta-chunk",
  // After chunk: an unfused chunked core also contains Exp nodes, which the recurrent anchor filter skips anyway.
  "gated-delta-recurrent",
  // Layer level, after the cores: anchored on the fused core nodes (their q/k/g/beta inputs).
  // Before gqa-repeat: an L2 norm applied after the repeat sits between the repeat and the core.
  "layer-qk-l2norm",
  // After qk-l2norm: the repeat_interleave is then the core's direct q/k producer.
  "layer-gqa-repeat",
  // Anchored on the cores' g/beta inputs; independent of the q/k folds.
  "layer-gating",
  // Anchored on Conv; independent of the core (runs on any depthwise causal conv + SiLU).
  "layer-causal-conv1d",
  // Anchored on ReduceMean; after the cores so the core's internal reductions are gone.
  "layer-gated-rmsnorm",
  // After every layer op exists: reads the layer as projections -> conv -> core -> norm -> out_proj
  // and rewrites only the layout nodes between them (12 nodes per layer); needs all four gdn ops.
  "layer-layout",
  // Last: lower every gdn node for the chosen target; runs only for --target ort / onnx.
  "lower-to-ort",
  "lower-to-onnx",
];
