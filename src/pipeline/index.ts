// STUB (lead is writing the real pipeline): the contract the CLI and library API use.
import type { onnx } from "onnx-proto";

export interface FuseOptions {
  /** Pass names to run, in order; "none" runs nothing (a round trip). Default: the registry's default list. */
  passes?: string[] | "none";
  /** Which ops the fusions emit: our "gdn" domain (default), stock ORT contrib ops, or ONNX standard ops. */
  target?: "gdn" | "ort" | "onnx";
  /** Progress lines for long runs (the CLI prints them on stderr). */
  onProgress?: (message: string) => void;
}

export interface AppliedMatch { pass: string; op: string; node: string; replacedNodes: number; details?: Record<string, unknown> }
export interface SkippedCandidate { pass: string; anchor: string; reason: string; deepest: string }
export interface PassReport { name: string; applied: AppliedMatch[]; skipped: SkippedCandidate[]; nodesBefore: number; nodesAfter: number; ms: number }
export interface FuseReport {
  fused: Record<string, number>;
  nodesBefore: number;
  nodesAfter: number;
  ms: number;
  passes: PassReport[];
}

/** Runs the passes on the model in place and returns the report. */
export async function fuseModel(model: onnx.IModelProto, options: FuseOptions = {}): Promise<FuseReport> {
  const n = model.graph?.node?.length ?? 0;
  void options;
  return { fused: {}, nodesBefore: n, nodesAfter: n, ms: 0, passes: [] };
}
