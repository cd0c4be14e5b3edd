/**
 * Runs passes on a model: builds the graph IR, runs each pass, removes what became dead, writes the
 * graph back and adds the opset imports the new nodes need. Returns the report (what fused, what
 * did not and why, node counts, times).
 */
import { performance } from "node:perf_hooks";
import { int64ToNumber, type onnx } from "../ir/onnx.js";
import { Graph } from "../ir/graph.js";
import { GdnFuseError } from "../errors.js";
import { TARGETS } from "../ops.js";
import type { AppliedMatch, Pass, PassContext, SkippedCandidate, Target } from "../pattern/pass.js";
import { DEFAULT_PASSES, getPass } from "./registry.js";

export type { AppliedMatch, Pass, PassContext, SkippedCandidate, Target } from "../pattern/pass.js";
export { registerPass, registerDefaultPasses, getPass, listPasses, DEFAULT_PASSES } from "./registry.js";

export interface FuseOptions {
  /** Pass names to run, in order; "none" runs nothing (a round trip). Default: DEFAULT_PASSES. */
  passes?: (string | Pass)[] | "none";
  /** Which ops the fusions emit: our "gdn" domain (default), stock ORT contrib ops, or ONNX standard ops. */
  target?: Target;
  /** Confirm each match by running it on probe inputs before rewriting (default true). */
  probe?: boolean;
  /** Progress lines for long runs (the CLI prints them on stderr). */
  onProgress?: (message: string) => void;
  /** The model's folder, for passes that read initializers kept in external data files. */
  baseDir?: string;
}

export interface PassReport {
  name: string;
  applied: AppliedMatch[];
  skipped: SkippedCandidate[];
  nodesBefore: number;
  nodesAfter: number;
  ms: number;
}

export interface FuseReport {
  /** Count per fused op type ("domain.OpType") the run created. */
  fused: Record<string, number>;
  nodesBefore: number;
  nodesAfter: number;
  ms: number;
  target: Target;
  passes: PassReport[];
}

/** Runs the passes on the model in place and returns the report. */
export async function fuseModel(model: onnx.IModelProto, options: FuseOptions = {}): Promise<FuseReport> {
  const t0 = performance.now();
  const target = options.target ?? "gdn";
  if (!TARGETS.includes(target)) throw new GdnFuseError("E_USAGE", `unknown target "${target}" (${targetList()})`);
  if (!model.graph) throw new GdnFuseError("E_MODEL", "the model has no graph");
  const nodesBefore = model.graph.node?.length ?? 0;
  const report: FuseReport = { fused: {}, nodesBefore, nodesAfter: nodesBefore, ms: 0, target, passes: [] };
  const passes =
    options.passes === "none"
      ? []
      : (options.passes ?? defaultPasses()).map((p) => (typeof p === "string" ? getPass(p) : p));
  if (passes.length === 0) return finish(report, t0);

  const graph = Graph.fromProto(model.graph, undefined, { baseDir: options.baseDir });
  const opsets = new Map<string, number>();
  for (const pass of passes) {
    if (!pass.targets.includes(target)) continue;
    const pr: PassReport = {
      name: pass.name,
      applied: [],
      skipped: [],
      nodesBefore: graph.nodes.length,
      nodesAfter: 0,
      ms: 0,
    };
    const p0 = performance.now();
    const ctx: PassContext = {
      pass: pass.name,
      graph,
      model,
      target,
      probe: options.probe ?? true,
      applied: (m) => {
        pr.applied.push({ pass: pass.name, ...m });
        report.fused[m.op] = (report.fused[m.op] ?? 0) + 1;
      },
      skipped: (s) => pr.skipped.push({ pass: pass.name, ...s }),
      progress: (msg) => options.onProgress?.(msg),
      requireOpset: (domain, version) => opsets.set(domain, Math.max(opsets.get(domain) ?? 0, version)),
    };
    await pass.run(ctx);
    graph.removeDeadNodes();
    pr.nodesAfter = graph.nodes.length;
    pr.ms = round(performance.now() - p0);
    report.passes.push(pr);
    options.onProgress?.(
      `${pass.name}: ${pr.applied.length} fused, ${pr.skipped.length} skipped, ${pr.nodesBefore} -> ${pr.nodesAfter} nodes`,
    );
  }
  model.graph = graph.toProto();
  // A domain a pass asked for but whose nodes a later pass lowered away (targets ort/onnx) is not imported.
  const used = new Set((model.graph.node ?? []).map((n) => n.domain ?? ""));
  for (const d of [...opsets.keys()]) if (!used.has(d)) opsets.delete(d);
  setOpsets(model, opsets);
  report.fused = fusedInOutput(report.fused, used, model);
  report.nodesAfter = model.graph.node?.length ?? 0;
  return finish(report, t0);
}

/** "gdn, ort or onnx" */
export const targetList = (): string => `${TARGETS.slice(0, -1).join(", ")} or ${TARGETS[TARGETS.length - 1]}`;

/** The registered default list; none is registered when only src/pipeline was imported, not the package. */
function defaultPasses(): readonly string[] {
  if (DEFAULT_PASSES.length === 0)
    throw new GdnFuseError("E_USAGE", "no default passes are registered (import the package entry, gdn-fuse)");
  return DEFAULT_PASSES;
}

/**
 * The top-level count keeps the op types present in the output: gdn ops a lowering pass replaced
 * (targets ort/onnx) and fold annotations ("gdn.ChunkGatedDeltaRule[gqa]": a core changed, not an
 * op created) stay only in their pass's `applied` list.
 */
function fusedInOutput(
  fused: Record<string, number>,
  usedDomains: Set<string>,
  model: onnx.IModelProto,
): Record<string, number> {
  const present = new Set((model.graph?.node ?? []).map((n) => `${n.domain || "ai.onnx"}.${n.opType}`));
  const out: Record<string, number> = {};
  for (const [op, n] of Object.entries(fused)) {
    if (op.includes("[")) continue;
    if (op.startsWith("gdn.") && (!usedDomains.has("gdn") || !present.has(op))) continue;
    out[op] = n;
  }
  return out;
}

function setOpsets(model: onnx.IModelProto, needed: Map<string, number>): void {
  const imports = model.opsetImport ?? (model.opsetImport = []);
  for (const [domain, version] of needed) {
    const cur = imports.find((o) => (o.domain ?? "") === domain);
    if (!cur) imports.push({ domain, version });
    else if (int64ToNumber(cur.version) < version) cur.version = version;
  }
}

function finish(report: FuseReport, t0: number): FuseReport {
  report.ms = round(performance.now() - t0);
  return report;
}

const round = (ms: number) => Math.round(ms * 100) / 100;
