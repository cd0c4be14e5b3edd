/**
 * The candidate loop every pass shares: try each anchor still in the graph, record what the
 * attempt returns as applied, and a MatchFailure as skipped with its stage, reason and node;
 * and `candidatePass`, which builds a whole Pass around that loop from its anchors and rewrite.
 */
import type { Graph, Node } from "../ir/graph.js";
import { TARGETS, type Target } from "../ops.js";
import { MatchFailure } from "./match.js";
import type { AppliedMatch, Pass, PassContext } from "./pass.js";

export async function forEachCandidate(
  ctx: PassContext,
  pass: string,
  anchors: Node[],
  attempt: (anchor: Node) => Attempt | Promise<Attempt>,
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

type Attempt = Omit<AppliedMatch, "pass">;

/** What a pass that tries one rewrite per anchor node states; `candidatePass` supplies the rest. */
export interface CandidatePassSpec {
  /** Kebab-case id (the file stem); used by --passes and as the provenance tag. */
  name: string;
  description: string;
  /** Ops the pass starts from: "OpType" (standard domain), "domain.OpType", or "domain.*". */
  anchors: string[];
  /** Targets the pass emits for (default: all). */
  targets?: readonly Target[];
  /** Narrows the anchor nodes found in the graph (e.g. to those with a constant weight). */
  accept?(anchor: Node): boolean;
  /** Matches the region around one anchor and rewrites it, or throws a MatchFailure (reported as skipped). */
  rewrite(anchor: Node, ctx: PassContext): Attempt | Promise<Attempt>;
  /** Runs once after every anchor was tried (e.g. to declare an opset the rewrites need). */
  finish?(ctx: PassContext): void;
}

/** The nodes of the graph whose op is one of `anchors`, in graph order. */
export function anchorNodes(graph: Graph, anchors: readonly string[]): Node[] {
  const opName = (n: Node) => (n.domain ? `${n.domain}.${n.opType}` : n.opType);
  return graph.nodes.filter((n) =>
    anchors.some((a) => a === opName(n) || (a.endsWith(".*") && n.domain === a.slice(0, -2))),
  );
}

/** A Pass that runs `rewrite` on every anchor node still in the graph (the candidate loop above). */
export function candidatePass(spec: CandidatePassSpec): Pass {
  const { name, description, anchors, targets = TARGETS, accept = () => true, rewrite } = spec;
  return {
    name,
    description,
    anchors,
    targets,
    async run(ctx) {
      const nodes = anchorNodes(ctx.graph, anchors).filter(accept);
      await forEachCandidate(ctx, name, nodes, (anchor) => rewrite(anchor, ctx));
      spec.finish?.(ctx);
    },
  };
}
