/**
 * Fusing fixture cases in tests: one helper loads a case, optionally fuses it a first time, lets a
 * mutation edit the graph, and fuses it (again).
 *
 *   await fuseCase("chunk_t80_nostate")                                  // all passes
 *   await mutateAndFuse(name, (m) => m.commute(11), { passes: CORE_PASSES })
 *   await mutateAndFuse(name, (m) => edit(m.graph), LAYERS_AFTER_CORES)  // cores, edit, layer passes
 */
import { join } from "node:path";
import { Graph } from "../../src/ir/graph.js";
import { loadModel, type LoadedModel } from "../../src/ir/model-io.js";
import { DEFAULT_PASSES, fuseModel, type FuseOptions, type FuseReport } from "../../src/pipeline/index.js";
import { Mutator } from "./mutate.js";
import { MODELS } from "./paths.js";

/** The core passes, and the layer-level passes in their default order. */
export const CORE_PASSES = ["gated-delta-chunk", "gated-delta-recurrent"];
export const LAYER_PASSES = DEFAULT_PASSES.filter((p) => p.startsWith("layer-"));

/** Loads a fixture case's model.onnx. */
export async function loadCase(name: string): Promise<LoadedModel> {
  return loadModel(join(MODELS, name, "model.onnx"));
}

export interface StepOptions extends FuseOptions {
  /** A fusion run before the mutation (e.g. the core passes, so the mutation edits a core-fused graph). */
  first?: FuseOptions;
}

export interface SteppedFusion extends FuseReport {
  /** The case as loaded; its proto is the fused model. */
  model: LoadedModel;
  /** The report of the `first` run, when there was one. */
  first?: FuseReport;
  /** Fused op counts of both runs together. */
  allFused: Record<string, number>;
}

/** The layer tests' steps: the core passes, the mutation on the core-fused graph, then the layer passes. */
export const LAYERS_AFTER_CORES: StepOptions = { first: { passes: CORE_PASSES }, passes: LAYER_PASSES };

/** Loads a case, runs `options.first` when given, applies `mutate` to the graph, then fuses with `options`. */
export async function mutateAndFuse(
  name: string,
  mutate?: (m: Mutator) => void,
  options: StepOptions = {},
): Promise<SteppedFusion> {
  const { first: firstOptions, ...fuseOptions } = options;
  const model = await loadCase(name);
  const first = firstOptions ? await fuseModel(model.proto, firstOptions) : undefined;
  if (mutate) {
    const m = new Mutator(Graph.fromProto(model.proto.graph!));
    mutate(m);
    m.writeBack(model.proto);
  }
  const report = await fuseModel(model.proto, fuseOptions);
  return Object.assign(report, { model, first, allFused: sumCounts(first?.fused ?? {}, report.fused) });
}

/** The layer tests' steps (LAYERS_AFTER_CORES) on a case, `edit` applied to the core-fused graph. */
export function fuseLayers(name: string, edit?: (g: Graph) => void): Promise<SteppedFusion> {
  return mutateAndFuse(name, edit && ((m) => edit(m.graph)), LAYERS_AFTER_CORES);
}

/** Loads a case and fuses it (all passes unless `options` says otherwise). */
export async function fuseCase(
  name: string,
  options: FuseOptions = {},
): Promise<{ model: LoadedModel; report: FuseReport }> {
  const { model, first: _first, allFused: _all, ...report } = await mutateAndFuse(name, undefined, options);
  return { model, report };
}

function sumCounts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const sum = { ...a };
  for (const [k, v] of Object.entries(b)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}
