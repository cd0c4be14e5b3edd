/**
 * The candidate loop every pass shares: try each anchor still in the graph, record what the
 * attempt returns as applied, and a MatchFailure as skipped with its stage, reason and node.
 */
import type { Node } from "../ir/graph.js";
import { MatchFailure } from "./match.js";
import type { AppliedMatch, PassContext } from "./pass.js";

export async function forEachCandidate(
  ctx: PassContext,
  pass: string,
  anchors: Node[],
  attempt: (anchor: Node) => Omit<AppliedMatch, "pass"> | Promise<Omit<AppliedMatch, "pass">>,
): Promise<void> {
  for (const [i, anchor] of anchors.entries()) {
    if (anchor.removed) continue; // fused with an earlier anchor's region
    ctx.progress(`${pass}: candidate ${i + 1}/${anchors.length} (${anchor.name})`);
    try {
      ctx.applied(await attempt(anchor));
    } catch (e) {
      if (!(e instanceof MatchFailure)) throw e;
      ctx.skipped({ anchor: anchor.name, stage: e.stage, reason: e.reason, node: e.node?.name });
    }
  }
}
