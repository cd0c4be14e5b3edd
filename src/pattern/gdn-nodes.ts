/** Finding and adding gdn-domain nodes (the ops of src/ops.ts). */
import type { Graph, NewNode, Node } from "../ir/graph.js";
import { addTagged } from "../ir/edit.js";
import { dimsOf, showDims, staticDim } from "../ir/shape.js";
import { DeltaRuleIn, GDN_DOMAIN, GDN_OPSET, GdnOp } from "../ops.js";
import { anchorNodes } from "./candidates.js";
import { check } from "./match.js";
import type { PassContext } from "./pass.js";

/** Whether n is a gdn-domain node of op type `op`. */
export const isGdnOp = (n: Node, op: string): boolean => n.domain === GDN_DOMAIN && n.opType === op;

/** The anchors of a pass that starts from the fused cores. */
export const CORE_ANCHORS = [
  `${GDN_DOMAIN}.${GdnOp.ChunkGatedDeltaRule}`,
  `${GDN_DOMAIN}.${GdnOp.RecurrentGatedDeltaRule}`,
];

/** A fused core's value head count (dim 2 of value [B,T,H,V]); fails at stage "shape" when not static. */
export function valueHeads(core: Node): number {
  const v = core.inputs[DeltaRuleIn.value];
  const H = v?.rank === 4 ? staticDim(v, 2) : undefined;
  check(
    H !== undefined,
    "shape",
    `the value ${showDims(dimsOf(v))} has no static head count (dim 2 of [B,T,H,V])`,
    core,
  );
  return H;
}

/** The fused gated-delta cores (chunked and recurrent). */
export function coreNodes(g: Graph): Node[] {
  return anchorNodes(g, CORE_ANCHORS);
}

/** Adds a gdn-domain node (tagged with the pass; declares the gdn opset). */
export function addGdnNode(ctx: PassContext, spec: Omit<NewNode, "domain">): Node {
  ctx.requireOpset(GDN_DOMAIN, GDN_OPSET);
  return addTagged(ctx.graph, ctx.pass, { ...spec, domain: GDN_DOMAIN });
}
