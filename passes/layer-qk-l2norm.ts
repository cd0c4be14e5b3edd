/**
 * layer-qk-l2norm: an L2 norm of q and k in front of a fused core (outside the kernel, as some
 * exporter/model versions place it) folds into the core's use_qk_l2norm attribute.
 *
 *   q ─ Mul(q,q)|Pow(q,2) ─ ReduceSum(-1, keepdims) ─ Add(eps) ─ Sqrt ─ Reciprocal ─ Mul(q, ·) ─> core query
 *                                                                      (or Div(q, Sqrt(...)))
 * Checks: the core has use_qk_l2norm = 0, both q and k are normalised, over the last axis, with the
 * contract's eps (1e-6, docs/ops.md).
 */
import { attr, fusedOp, type Node, setInput, type Value } from "../src/ir/index.js";
import { CORE_ANCHORS, candidatePass, check, close, matchL2norm } from "../src/pattern/index.js";
import { DeltaRuleAttr, DeltaRuleIn, L2NORM_EPS } from "../src/ops.js";

export const layerQkL2norm = candidatePass({
  name: "layer-qk-l2norm",
  description: "folds an L2 norm of q and k in front of a fused core into use_qk_l2norm",
  anchors: CORE_ANCHORS,
  accept: (core) => core.attrInt(DeltaRuleAttr.useQkL2norm, 0) === 0,
  rewrite(core) {
    const q = normalised(core.inputs[DeltaRuleIn.query]!, "query", core);
    const k = normalised(core.inputs[DeltaRuleIn.key]!, "key", core);
    setInput(core, DeltaRuleIn.query, q);
    setInput(core, DeltaRuleIn.key, k);
    const a = core.attr(DeltaRuleAttr.useQkL2norm);
    if (a) a.i = 1;
    else (core.proto.attribute ??= []).push(attr.int(DeltaRuleAttr.useQkL2norm, 1));
    return { op: `${fusedOp(core)}[qk_l2norm]`, node: core.name, replacedNodes: 10 };
  },
});

/** The value the L2 norm producing `out` reads. */
function normalised(out: Value, role: string, core: Node): Value {
  const p = out.producer;
  check(
    p && (p.opType === "Mul" || p.opType === "Div") && p.domain === "",
    "anchor",
    `the ${role} is not produced by an L2 norm (Mul or Div)`,
    p ?? core,
  );
  for (const x of p.opType === "Div" ? [p.inputs[0]] : p.inputs) {
    if (!x) continue;
    const m = matchL2norm(x);
    if (!m || m.out !== out) continue;
    const foreign = m.nodes.find((n) => n.domain !== "");
    check(
      !foreign,
      "anchor",
      `the ${role} L2 norm uses ${foreign?.domain}.${foreign?.opType}, not the standard op`,
      foreign,
    );
    check(
      close(m.eps, L2NORM_EPS, 1e-3),
      "eps",
      `the ${role} L2 norm adds eps ${m.eps}; the op's in-kernel norm uses ${L2NORM_EPS}`,
      m.node,
    );
    return x;
  }
  check(false, "anchor", `the ${role} is not produced by an L2 norm over the last axis`, p);
}
