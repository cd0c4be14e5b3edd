/**
 * The Pass interface. A pass runs on the graph IR, records what it fused and, for every candidate
 * it looked at and left alone, why (the deepest stage its match reached and the failed check).
 */
import type { onnx } from "onnx-proto";
import type { Graph, Node } from "../ir/graph.js";
import type { Target } from "../ops.js";

export type { Target } from "../ops.js";

export interface AppliedMatch {
  pass: string;
  op: string; // fused op type, "domain.OpType"
  node: string; // the new node's name
  replacedNodes: number;
  details?: Record<string, unknown>;
}

export interface SkippedCandidate {
  pass: string;
  anchor: string; // the anchor node's name
  stage: string; // the deepest stage the match reached
  reason: string; // the check that failed
  node?: string; // the node at fault
}

export interface PassContext {
  /** The running pass's name: the provenance tag of the nodes it adds. */
  pass: string;
  graph: Graph;
  model: onnx.IModelProto;
  target: Target;
  /** Confirm each match by running the region and the reference on probe inputs (default true). */
  probe: boolean;
  applied(m: Omit<AppliedMatch, "pass">): void;
  skipped(s: Omit<SkippedCandidate, "pass">): void;
  progress(message: string): void;
  /** Declares an opset import the rewritten model needs (domain, version). */
  requireOpset(domain: string, version: number): void;
}

export interface Pass {
  /** Kebab-case id (the file stem); used by --passes. */
  name: string;
  description: string;
  /** Op types of the nodes the pass starts matching from (documentation and quick filtering). */
  anchors: string[];
  /** Targets the pass can emit for; others skip it. */
  targets: readonly Target[];
  run(ctx: PassContext): Promise<void>;
}

export { CREATED_BY_KEY } from "../ir/edit.js";
export type NodeTagger = (node: Node, pass: string) => void;
