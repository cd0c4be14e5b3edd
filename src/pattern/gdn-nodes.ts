/** Finding and adding gdn-domain nodes (the ops of src/ops.ts). */
import type { Graph, NewNode, Node } from "../ir/graph.js";
import { addTagged } from "../ir/edit.js";
import { GDN_DOMAIN, GDN_OPSET, GdnOp } from "../ops.js";
import type { PassContext } from "./pass.js";

/** Whether n is a gdn-domain node of op type `op`. */
export const isGdnOp = (n: Node, op: string): boolean => n.domain === GDN_DOMAIN && n.opType === op;

/** The fused gated-delta cores (chunked and recurrent). */
export function coreNodes(g: Graph): Node[] {
  return g.nodes.filter((n) => isGdnOp(n, GdnOp.ChunkGatedDeltaRule) || isGdnOp(n, GdnOp.RecurrentGatedDeltaRule));
}

/** Adds a gdn-domain node (tagged with the pass; declares the gdn opset). */
export function addGdnNode(ctx: PassContext, pass: string, spec: Omit<NewNode, "domain">): Node {
  ctx.requireOpset(GDN_DOMAIN, GDN_OPSET);
  return addTagged(ctx.graph, pass, { ...spec, domain: GDN_DOMAIN });
}
