/**
 * What the chunked and recurrent core passes share once a region is delimited and checked:
 * the probe run and the rewrite into one fused node.
 */
import type { Node } from "../../src/ir/graph.js";
import { attr } from "../../src/ir/graph.js";
import { setNodeMetadata } from "../../src/ir/onnx.js";
import { probeRegion, type ProbeInput } from "../../src/pattern/probe.js";
import { gatedDeltaReference } from "../../src/reference/gated-delta.js";
import { CREATED_BY_KEY, type PassContext } from "../../src/pipeline/pass.js";
import { GDN_DOMAIN, GDN_OPSET } from "../../src/ops.js";
import { fail } from "../../src/pattern/match.js";
import type { CoreRegion } from "./core-region.js";

/** Random probe data in the ranges the model sees: g <= 0 decays, beta in (0,1), bounded q/k/v. */
export function coreProbeInputs(r: CoreRegion): ProbeInput[] {
  const fill = (f: (u: number) => number) => (rand: () => number, n: number) => {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = f(rand());
    return a;
  };
  const sym = (scale: number) => fill((u) => (2 * u - 1) * scale);
  // Without the in-kernel L2 norm, keep |k| ~ 1 so the delta rule stays stable.
  const kScale = r.useQkL2norm ? 1 : 1 / Math.sqrt(r.dims.K);
  const { B, T, Hk, Hv, K, V } = r.dims;
  const inputs: ProbeInput[] = [
    { value: r.query.boundary, shape: [B, T, Hk, K], generate: sym(1) },
    { value: r.key.boundary, shape: [B, T, Hk, K], generate: sym(kScale) },
    { value: r.value.boundary, shape: [B, T, Hv, V], generate: sym(1) },
    { value: r.g.boundary, shape: [B, T, Hv], generate: fill((u) => -2 * u) },
    { value: r.beta.boundary, shape: [B, T, Hv], generate: fill((u) => 0.05 + 0.9 * u) },
  ];
  if (r.state) inputs.push({ value: r.state, shape: [B, Hv, K, V], generate: sym(0.1) });
  else if (r.zeroState) inputs.push({ value: r.zeroState, shape: [B, Hv, K, V], generate: fill(() => 0) });
  return inputs;
}

/**
 * The float64 reference is the slow half of a probe, and (batch, head) pairs are independent:
 * check the first and last batch on a spread of heads (every head when there are few).
 */
const PROBED_HEADS = 8;
function probedHeads(B: number, Hv: number): (b: number, h: number) => boolean {
  const step = Math.max(1, Math.ceil(Hv / PROBED_HEADS));
  return (b, h) => (b === 0 || b === B - 1) && (h % step === 0 || h === Hv - 1);
}

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
      const ref = gatedDeltaReference({ query: query!, key: key!, value: value!, g: g!, beta: beta!, initialState }, r.dims, {
        scale: r.scale,
        useQkL2norm: r.useQkL2norm,
        only: probedHeads(r.dims.B, r.dims.Hv),
      });
      return r.finalState ? [ref.output, ref.finalState] : [ref.output];
    },
  });
  if (!res.ok) fail("probe", res.message ?? "probe failed", r.output.producer);
}

/** Replaces the region by one gdn node (target "gdn"). Returns the new node. */
export function rewriteCore(ctx: PassContext, r: CoreRegion, opType: string, passName: string, extraAttrs: ReturnType<typeof attr.int>[] = []): Node {
  const g = ctx.graph;
  const outputs = r.finalState ? [r.output, r.finalState] : [r.output];
  // Constant helpers that other nodes also read stay; dead-node removal drops them later if unused.
  const sharedConstant = (n: Node) => n.outputs.some((o) => o && [...o.consumers].some((c) => !r.nodes.has(c)) && o !== r.output && o !== r.finalState);
  g.removeNodes([...r.nodes].filter((n) => !sharedConstant(n)));
  const node = g.addNode({
    opType,
    domain: GDN_DOMAIN,
    name: opType,
    inputs: [r.query.boundary, r.key.boundary, r.value.boundary, r.g.boundary, r.beta.boundary, r.state],
    outputs,
    attributes: [
      attr.float("scale", r.scale),
      attr.int("use_qk_l2norm", r.useQkL2norm ? 1 : 0),
      attr.string("state_layout", "kv"),
      ...extraAttrs,
    ],
  });
  // drop a trailing omitted optional input
  if (!r.state) node.inputs.pop();
  setNodeMetadata(node.proto, CREATED_BY_KEY, passName);
  ctx.requireOpset(GDN_DOMAIN, GDN_OPSET);
  return node;
}
