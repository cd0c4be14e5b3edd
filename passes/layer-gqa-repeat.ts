/**
 * layer-gqa-repeat: the repeat_interleave of query and key up to the value-head count, in front of a
 * fused core, disappears; the core reads the Hk key heads (docs/ops.md: value head h uses key head
 * h / (Hv/Hk)).
 *
 *   q [B,T,Hk,K] ─ Unsqueeze(axis 3) ─ Expand([1,1,1,n,1]) ─ Reshape([B,T,Hk*n,K]) ─┐
 *                  (or Unsqueeze ─ Tile([1,1,1,n,1]) ─ Reshape; or Gather(axis 2, [0,0,1,1,...]))
 *                                                                                  gdn core (query / key)
 * Checks: both q and k are repeated, by the same factor n, with n * Hk = Hv (the value heads), and the
 * head order is interleaved (h -> h / n), not tiled (h -> h % Hk).
 */
import {
  constantOf,
  dimsOf,
  fusedOp,
  intsOf,
  type Node,
  reshapeDims,
  sameDims,
  setInput,
  showDims,
  staticDim,
  type Value,
} from "../src/ir/index.js";
import { CORE_ANCHORS, candidatePass, valueHeads, check, fail } from "../src/pattern/index.js";
import { DeltaRuleIn } from "../src/ops.js";

export const layerGqaRepeat = candidatePass({
  name: "layer-gqa-repeat",
  description: "drops the repeat_interleave of q/k in front of a fused core (GQA read by the core)",
  anchors: CORE_ANCHORS,
  rewrite(core) {
    const Hv = valueHeads(core);
    const q = matchRepeat(core.inputs[DeltaRuleIn.query]!, "query");
    const k = matchRepeat(core.inputs[DeltaRuleIn.key]!, "key");
    check(q.n === k.n, "repeat", `query is repeated ${q.n}x but key ${k.n}x`, k.node);
    check(
      q.heads * q.n === Hv,
      "repeat",
      `query has ${q.heads} heads repeated ${q.n}x = ${q.heads * q.n}, but the value has ${Hv} heads`,
      q.node,
    );
    check(
      k.heads * k.n === Hv,
      "repeat",
      `key has ${k.heads} heads repeated ${k.n}x = ${k.heads * k.n}, but the value has ${Hv} heads`,
      k.node,
    );
    setInput(core, DeltaRuleIn.query, q.source);
    setInput(core, DeltaRuleIn.key, k.source);
    return {
      op: `${fusedOp(core)}[gqa]`,
      node: core.name,
      replacedNodes: q.nodes + k.nodes,
      details: { Hk: q.heads, Hv, factor: q.n },
    };
  },
});

interface Repeat {
  source: Value; // [B,T,Hk,K]
  heads: number;
  n: number;
  nodes: number;
  node: Node;
}

/** The un-repeated tensor behind a repeat_interleave over axis 2 of a [B,T,H,D] tensor. */
export function matchRepeat(x: Value, role: string): Repeat {
  const p = x.producer;
  check(
    p && p.domain === "",
    "anchor",
    `the ${role} is not produced by a repeat_interleave (no standard-domain producer)`,
    p,
  );
  if (p.opType === "Gather") return matchGather(p, role);
  check(
    p.opType === "Reshape",
    "anchor",
    `the ${role} comes from ${p.opType}, not a repeat_interleave (Reshape of Expand/Tile, or Gather)`,
    p,
  );
  const mid = p.inputs[0]?.producer;
  check(
    mid && (mid.opType === "Expand" || mid.opType === "Tile") && mid.domain === "",
    "anchor",
    `the ${role} Reshape does not read an Expand or Tile`,
    p,
  );
  const unsq = mid.inputs[0]?.producer;
  check(
    unsq && unsq.opType === "Unsqueeze" && unsq.domain === "",
    "repeat",
    `the ${role} ${mid.opType} does not read an Unsqueeze: a ${mid.opType} on the head axis tiles heads (h % Hk), it does not interleave them`,
    mid,
  );
  const src = unsq.inputs[0]!;
  const shape = dimsOf(src);
  check(
    shape?.length === 4 && shape[0] !== undefined && [1, 2, 3].every((i) => typeof shape[i] === "number"),
    "shape",
    `the ${role} before the repeat ${showDims(shape)} is not a [B,T,H,D] tensor with static T, H, D`,
    unsq,
  );
  const axes = unsq.inputs[1] ? intsOf(unsq.inputs[1]) : unsq.attrInts("axes");
  check(
    axes?.length === 1 && (axes[0] === 3 || axes[0] === -2),
    "repeat",
    `the ${role} is unsqueezed at axis ${axes}, not after the head axis (3): that is not repeat_interleave over heads`,
    unsq,
  );
  const reps = intsOf(mid.inputs[1]);
  check(reps?.length === 5, "repeat", `the ${role} ${mid.opType} shape/repeats is not a constant of 5 dims`, mid);
  const [B, T, H, D] = shape as [string | number, number, number, number];
  const n = reps[3]!;
  // Expand broadcasts: 1 or the dim itself on the other axes (a symbolic batch: 1 only).
  const expect = mid.opType === "Tile" ? [1, 1, 1, n, 1] : [[1, B], [1, T], [1, H], [n], [1, D]];
  const okReps =
    mid.opType === "Tile"
      ? reps.every((r, i) => r === (expect as number[])[i])
      : reps.every((r, i) => (expect as (number | string)[][])[i]!.includes(r));
  check(
    okReps && n >= 1,
    "repeat",
    `the ${role} ${mid.opType} repeats [${reps}] along other axes than the new head-copy axis`,
    mid,
  );
  const target = intsOf(p.inputs[1]);
  check(target?.length === 4, "repeat", `the ${role} Reshape target is not a constant 4-d shape`, p);
  const final = reshapeDims([B, T, H, n, D], target, p.attrInt("allowzero", 0) === 1);
  const want = [B, T, H * n, D];
  check(
    sameDims(final, want),
    "repeat",
    `the ${role} Reshape to [${target}] gives ${showDims(final)}, not [B,T,H*n,D] = ${showDims(want)}`,
    p,
  );
  return { source: src, heads: H, n, nodes: 3, node: p };
}

function matchGather(p: Node, role: string): Repeat {
  const src = p.inputs[0]!;
  const H = src.rank === 4 ? staticDim(src, 2) : undefined;
  check(
    H !== undefined,
    "shape",
    `the ${role} before the Gather ${showDims(dimsOf(src))} is not a [B,T,H,D] tensor with a static head count`,
    p,
  );
  const axis = p.attrInt("axis", 0)!;
  check(axis === 2 || axis === -2, "repeat", `the ${role} Gather runs over axis ${axis}, not the head axis`, p);
  const idx = constantOf(p.inputs[1]);
  check(idx && idx.dims.length === 1, "repeat", `the ${role} Gather indices are not a constant vector`, p);
  const n = idx.data.length / H;
  check(Number.isInteger(n) && n >= 1, "repeat", `the ${role} Gather picks ${idx.data.length} heads from ${H}`, p);
  for (let i = 0; i < idx.data.length; i++)
    if (idx.data[i] !== Math.floor(i / n))
      fail(
        "repeat",
        `the ${role} Gather index ${i} is ${idx.data[i]}; repeat_interleave needs ${Math.floor(i / n)} (h / ${n})`,
        p,
      );
  return { source: src, heads: H, n, nodes: 1, node: p };
}
