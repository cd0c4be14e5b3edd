/**
 * gated-delta-chunk: transformers' torch_chunk_gated_delta_rule (prefill) -> gdn.ChunkGatedDeltaRule.
 *
 * Anchor: the CumSum of g over the chunk axis. Then the core region (see gated-delta/core-region.ts)
 * plus the chunked form's own checks: chunk size and padding from the reshape of g, the decay mask
 * (masked_fill with -inf above the diagonal), the strictly lower K K^T mask, the C-1 steps of the
 * unrolled triangular solve (ScatterND chain), and finally a probe run.
 */
import { attr, constantOf, isConstantValue, type Node, scalarOf } from "../src/ir/index.js";
import { candidatePass, check, fail, walkBack } from "../src/pattern/index.js";
import { DeltaRuleAttr, GdnOp } from "../src/ops.js";
import { delimitCore, gEntryUpstream, type CoreRegion } from "./gated-delta/core-region.js";
import { fuseCore } from "./gated-delta/fuse-core.js";

export const gatedDeltaChunk = candidatePass({
  name: "gated-delta-chunk",
  description: "chunked gated delta rule (prefill) -> gdn.ChunkGatedDeltaRule",
  anchors: ["CumSum"],
  async rewrite(cumsum, ctx) {
    const region = matchChunk(cumsum);
    const chunkSize = attr.int(DeltaRuleAttr.chunkSize, region.chunkSize);
    return fuseCore(ctx, region, GdnOp.ChunkGatedDeltaRule, details(region), [chunkSize]);
  },
});

interface ChunkRegion extends CoreRegion {
  chunkSize: number;
}

export function matchChunk(cumsum: Node): ChunkRegion {
  const x = cumsum.inputs[0]!;
  const axis = scalarOf(cumsum.inputs[1]);
  const rank = x.rank;
  check(rank === 4, "anchor", `CumSum input has rank ${rank ?? "?"}; the chunked g is [B,H,N,C]`, cumsum);
  check(axis === -1 || axis === rank - 1, "anchor", `CumSum runs over axis ${axis}, not the chunk's last axis`, cumsum);
  check(
    !cumsum.attrInt("exclusive", 0) && !cumsum.attrInt("reverse", 0),
    "anchor",
    "CumSum is exclusive or reversed",
    cumsum,
  );
  const gEntry = gEntryUpstream(x);
  check(gEntry, "anchor", "the cumulated value is not g moved to [B,H,T] by a Transpose(0,2,1)", cumsum);

  const [, , N, C] = x.type?.shape ?? [];
  check(
    typeof C === "number" && C > 0 && typeof N === "number",
    "chunk",
    "the chunk count and size (last dims of the reshaped g) are not static",
    cumsum,
  );
  const r = delimitCore(cumsum, gEntry, { kind: "chunk", cumsum, chunkSize: C });
  const { T } = r.dims;
  check(
    N === Math.ceil(T / C) || (T === 0 && N === 0),
    "chunk",
    `g is reshaped into ${N} chunks of ${C}, but T=${T} needs ${Math.ceil(T / C)}`,
    cumsum,
  );

  // The unrolled triangular solve: rows 1..C-1 of (I - A)^-1, one ScatterND each.
  const scatters = [...r.nodes].filter((n) => n.opType === "ScatterND").length;
  check(
    scatters === C - 1,
    "solve",
    `the triangular solve has ${scatters} ScatterND steps; a chunk of ${C} needs ${C - 1}`,
    cumsum,
  );

  checkMasks(r.nodes, C);
  checkSolveRows(r.nodes, C);
  return { ...r, chunkSize: C };
}

/**
 * Row i of the unrolled solve computes attn[..., i, :i] = row + (row.unsqueeze(-1) * sub).sum(-2)
 * with row = attn[..., i, :i] and sub = attn[..., :i, :i], and writes it back with a ScatterND.
 * Proves that rows 1..C-1 are each written once, into columns 0..i-1, and that every constant
 * index and Slice bound the row reads is i (a bound off by one reads another row or column).
 */
function checkSolveRows(nodes: ReadonlySet<Node>, C: number): void {
  const rows = new Set<number>();
  for (const n of nodes) {
    if (n.opType !== "ScatterND") continue;
    // the row: the data the ScatterND writes into is attn[..., i, :] (a Gather of index i, transposed)
    const i = scalarOf(walkBack(n.inputs[0]!, new Set(["Transpose", "Identity"])).producer?.inputs[1]) ?? -1;
    const idx = isConstantValue(n.inputs[1]) ? constantOf(n.inputs[1]) : undefined; // run-time indices under a dynamic batch
    const columns =
      !idx || (idx.dims.length === 2 && idx.dims[0] === i && idx.dims[1] === 1 && idx.data.every((c, j) => c === j));
    check(
      columns && i >= 1 && i < C && !rows.has(i),
      "solve",
      `ScatterND ${n.name} does not write columns 0..i-1 of a new row i in 1..${C - 1}`,
      n,
    );
    rows.add(i);
    for (const m of rowReads(n, nodes)) checkRowIndex(m, i);
  }
}

/** The Slice and Gather nodes a solve row's ScatterND reads, back to the attn buffer (ScatterElements). */
function rowReads(scatter: Node, nodes: ReadonlySet<Node>): Node[] {
  const out: Node[] = [];
  const seen = new Set<Node>();
  const stack = [scatter.inputs[0]?.producer, scatter.inputs[2]?.producer];
  while (stack.length) {
    const n = stack.pop();
    if (
      !n ||
      seen.has(n) ||
      !nodes.has(n) ||
      n.opType === "ScatterElements" ||
      n.opType === "ScatterND" ||
      isConstantValue(n.outputs[0])
    )
      continue;
    seen.add(n);
    if (n.opType === "Slice" || n.opType === "Gather") out.push(n);
    stack.push(...n.inputs.map((v) => v?.producer));
  }
  return out;
}

function checkRowIndex(n: Node, i: number): void {
  const all = (v: Node["inputs"][number], x: number) => {
    const c = isConstantValue(v) ? constantOf(v) : undefined;
    return !c || c.data.every((d) => d === x); // a run-time bound (dynamic batch) is left to the layout
  };
  if (n.opType === "Gather") {
    check(
      all(n.inputs[1], i),
      "solve",
      `solve row ${i} gathers index ${constantOf(n.inputs[1])?.data[0]} (${n.name}); it reads row ${i}`,
      n,
    );
    return;
  }
  const ok = all(n.inputs[1], 0) && all(n.inputs[2], i) && (!n.inputs[4] || all(n.inputs[4], 1));
  check(
    ok,
    "solve",
    `solve row ${i} slices [${constantOf(n.inputs[1])?.data ?? "?"}:${constantOf(n.inputs[2])?.data ?? "?"}] (${n.name}); it reads [0:${i}]`,
    n,
  );
}

/** The decay mask is masked_fill(triu(ones, 1), -inf) and the K K^T product keeps its strict lower triangle. */
function checkMasks(nodes: ReadonlySet<Node>, C: number): void {
  for (const n of nodes) {
    if (n.opType === "Where") {
      const cond = constantOf(n.inputs[0]);
      if (!cond || cond.dims.length < 2 || cond.dims.slice(-2).join() !== `${C},${C}`) continue;
      const fill = scalarOf(n.inputs[1]);
      check(fill === -Infinity, "mask", `the decay mask fills ${fill} above the diagonal; -inf expected`, n);
      for (let i = 0; i < C; i++)
        for (let j = 0; j < C; j++)
          if ((cond.data[(i * C + j) % cond.data.length] !== 0) !== j > i)
            fail("mask", `the decay mask constant is not the strict upper triangle (row ${i}, column ${j})`, n);
    } else if (n.opType === "Trilu") {
      const k = n.inputs[1] ? scalarOf(n.inputs[1]) : 0;
      const upper = n.attrInt("upper", 1) === 1;
      const operand = n.inputs[0];
      if (isConstantValue(operand)) continue; // a mask being built, checked where it is used
      check(
        !upper && k === -1,
        "mask",
        `the K K^T product is masked with Trilu(upper=${upper ? 1 : 0}, k=${k}); its strict lower triangle (upper=0, k=-1) is expected`,
        n,
      );
    }
  }
}

function details(r: ChunkRegion): Record<string, unknown> {
  return {
    ...r.dims,
    B: r.batch,
    chunkSize: r.chunkSize,
    scale: r.scale,
    useQkL2norm: r.useQkL2norm,
    initialState: !!r.state,
    finalState: !!r.finalState,
    dtype: r.value.boundary.type?.elemType,
  };
}
