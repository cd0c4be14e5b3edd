/**
 * The matching half of the pass kit: the Pass interface, the candidate loop, match failures with stage
 * and reason, matching motifs, gdn node helpers, and probe confirmation.
 */
export type { AppliedMatch, Pass, PassContext, SkippedCandidate, Target } from "./pass.js";
export { forEachCandidate, candidatePass, anchorNodes, type CandidatePassSpec } from "./candidates.js";
export { MatchFailure, fail, check, close, permOf, isPerm, producedBy, walkBack } from "./match.js";
export {
  otherInput,
  soleConsumer,
  siluInput,
  sliceOf,
  resolveIndex,
  castTarget,
  widenedFrom,
  castConsumer,
  floatCastConsumer,
  checkFloatType,
  matchL2norm,
  type L2normMatch,
} from "./motifs.js";
export { isGdnOp, coreNodes, addGdnNode, CORE_ANCHORS, valueHeads } from "./gdn-nodes.js";
export { probeRegion, type ProbeInput } from "./probe.js";
export { structuralKey } from "./structural-key.js";
