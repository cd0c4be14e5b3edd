/**
 * What the chunked and recurrent core passes share once a region is delimited and checked:
 * the probe run and the rewrite into one fused node.
 */
import { attr, fusedOp, type Node } from "../../src/ir/index.js";
import {
  addGdnNode,
  type AppliedMatch,
  fail,
  type PassContext,
  type ProbeInput,
  probeRegion,
} from "../../src/pattern/index.js";
import { DeltaRuleAttr } from "../../src/ops.js";
import { gatedDeltaReference } from "../../src/reference/gated-delta.js";
import type { CoreRegion } from "./core-region.js";

/**
 * Random probe data beyond the ranges real models reach, so that a wrong constant or a changed
 * element shows at a tight tolerance: q, k, v with magnitudes up to 30, beta near 0 and near 1,
 * decays g from near 0 down to -30 with a few at -1e4 (exp underflows to 0). Without the in-kernel
 * L2 norm, |k| stays ~1: the delta rule is a contraction only while beta * |k|^2 <= 2.
 */
export function coreProbeInputs(r: CoreRegion): ProbeInput[] {
  const fill = (f: (u: number, rand: () => number) => number) => (rand: () => number, n: number) => {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = f(rand(), rand);
    return a;
  };
  // Uniform in [-m, m], the magnitude m picked per element from 0.01 .. 30.
  const wide = (scale: number) => fill((u, rand) => (2 * u - 1) * scale * pick(rand(), [0.01, 1, 8, 30]));
  const kGen = r.useQkL2norm ? wide(1) : fill((u) => (2 * u - 1) / Math.sqrt(r.dims.K));
  const beta = fill((u, rand) => pick(rand(), [1e-3 * u, 1 - 1e-3 * u, u]));
  const g = fill((u, rand) => (rand() < 0.02 ? -1e4 : pick(rand(), [-1e-3 * u, -30 * u, -2 * u])));
  const { B, T, Hk, Hv, K, V } = r.dims;
  const inputs: ProbeInput[] = [
    { value: r.query.boundary, shape: [B, T, Hk, K], generate: wide(1) },
    { value: r.key.boundary, shape: [B, T, Hk, K], generate: kGen },
    { value: r.value.boundary, shape: [B, T, Hv, V], generate: wide(1) },
    { value: r.g.boundary, shape: [B, T, Hv], generate: g },
    { value: r.beta.boundary, shape: [B, T, Hv], generate: beta },
  ];
  if (r.state) inputs.push({ value: r.state, shape: [B, Hv, K, V], generate: wide(0.1) });
  else if (r.zeroState) inputs.push({ value: r.zeroState, shape: [B, Hv, K, V], generate: fill(() => 0) });
  return inputs;
}

/** One of `choices`, by a uniform u in [0,1). */
const pick = <T>(u: number, choices: T[]): T => choices[Math.min(choices.length - 1, Math.floor(u * choices.length))]!;

/** Runs the region and the reference on probe inputs; throws a MatchFailure at stage "probe" on mismatch. */
export async function confirmByProbe(ctx: PassContext, r: CoreRegion): Promise<void> {
  if (!ctx.probe) return;
  const outputs = r.finalState ? [r.output, r.finalState] : [r.output];
  const res = await probeRegion({
    nodes: r.nodes,
    inputs: coreProbeInputs(r),
    outputs,
    model: ctx.model,
    reference: ([query, key, value, g, beta, initialState]) => {
      const ref = gatedDeltaReference(
        { query: query!, key: key!, value: value!, g: g!, beta: beta!, initialState },
        r.dims,
        {
          scale: r.scale,
          useQkL2norm: r.useQkL2norm,
        },
      );
      return r.finalState ? [ref.output, ref.finalState] : [ref.output];
    },
  });
  if (!res.ok) fail("probe", res.message ?? "probe failed", r.output.producer);
}

/** Confirms the region by probe, replaces it by one gdn node, and says what was fused. */
export async function fuseCore(
  ctx: PassContext,
  r: CoreRegion,
  opType: string,
  details: Record<string, unknown>,
  extraAttrs: ReturnType<typeof attr.int>[] = [],
): Promise<Omit<AppliedMatch, "pass">> {
  await confirmByProbe(ctx, r);
  const replacedNodes = r.nodes.size;
  const node = rewriteCore(ctx, r, opType, extraAttrs);
  return { op: fusedOp(node), node: node.name, replacedNodes, details };
}

/** Replaces the region by one gdn node (target "gdn"). Returns the new node. */
function rewriteCore(
  ctx: PassContext,
  r: CoreRegion,
  opType: string,
  extraAttrs: ReturnType<typeof attr.int>[] = [],
): Node {
  const g = ctx.graph;
  const outputs = r.finalState ? [r.output, r.finalState] : [r.output];
  // Constant helpers that other nodes also read stay; dead-node removal drops them later if unused.
  const sharedConstant = (n: Node) =>
    n.outputs.some((o) => o && [...o.consumers].some((c) => !r.nodes.has(c)) && o !== r.output && o !== r.finalState);
  g.removeNodes([...r.nodes].filter((n) => !sharedConstant(n)));
  // In DeltaRuleIn order; an absent initial state (the trailing optional input) is left out.
  const inputs = [r.query.boundary, r.key.boundary, r.value.boundary, r.g.boundary, r.beta.boundary];
  if (r.state) inputs.push(r.state);
  return addGdnNode(ctx, {
    opType,
    name: opType,
    inputs,
    outputs,
    attributes: [
      attr.float(DeltaRuleAttr.scale, r.scale),
      attr.int(DeltaRuleAttr.useQkL2norm, r.useQkL2norm ? 1 : 0),
      attr.string(DeltaRuleAttr.stateLayout, "kv"),
      ...extraAttrs,
    ],
  });
}
