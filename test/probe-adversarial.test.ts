// The probe is a second line: a region change the structural checks cannot see (written here by hand,
// inside a matched core region) must still be caught by the probe run. Each mutant below slipped past
// the old probe (benign inputs v in [-1,1], only the first and last batch entries, tolerance 1e-4).
import { describe, expect, test } from "vitest";
import { Graph, type Node } from "../src/ir/graph.js";
import { MatchFailure, type PassContext } from "../src/pattern/index.js";
import { matchRecurrent } from "../passes/gated-delta-recurrent.js";
import { confirmByProbe } from "../passes/gated-delta/fuse-core.js";
import type { CoreRegion } from "../passes/gated-delta/core-region.js";
import { loadCase } from "./helpers/cases.js";
import { Mutator } from "./helpers/mutate.js";

/** recurrent_t1_b3 (batch 3, one decode step): its core region, and a mutator on its graph. */
async function region(): Promise<{ r: CoreRegion; m: Mutator; ctx: PassContext }> {
  const model = await loadCase("recurrent_t1_b3");
  const graph = Graph.fromProto(model.proto.graph!);
  const exp = graph.nodes.find((n) => n.opType === "Exp")!;
  const r = matchRecurrent(exp);
  const ctx = { probe: true, model: model.proto } as unknown as PassContext;
  return { r, m: new Mutator(graph), ctx };
}

/** Inserts `opType` on the value as the region reads it (after its entry Transpose) and adds the node to the region. */
function insertInRegion(
  r: CoreRegion,
  m: Mutator,
  opts: NonNullable<Parameters<Mutator["insertOn"]>[2]>,
  opType: string,
): Node {
  const node = m.insertOn(r.value.transpose.output(), opType, { ...opts, only: (n) => r.nodes.has(n) });
  r.nodes.add(node);
  return node;
}

async function probeFailure(r: CoreRegion, ctx: PassContext): Promise<MatchFailure | undefined> {
  try {
    await confirmByProbe(ctx, r);
    return undefined;
  } catch (e) {
    if (e instanceof MatchFailure) return e;
    throw e;
  }
}

describe("the core probe", () => {
  test("accepts the unchanged region (float64 run against the float64 reference)", async () => {
    const { r, ctx } = await region();
    expect(await probeFailure(r, ctx)).toBeUndefined();
  });

  test("sees a change of the middle batch entry (every batch entry is compared)", async () => {
    const { r, m, ctx } = await region();
    // v as the region reads it is [B,H,T,V]: scale batch entry 1 of 3 only.
    insertInRegion(r, m, { operands: [[1, 1.5, 1]], constDims: [3, 1, 1, 1] }, "Mul");
    const f = await probeFailure(r, ctx);
    expect(f?.stage).toBe("probe");
    expect(f?.reason).toMatch(
      /^probe outputs differ from the reference: relative L2 error [0-9.e+-]+, [0-9.e+-]+ > 1e-9$/,
    );
  });

  test("sees a clip of large values (inputs reach |v| = 30)", async () => {
    const { r, m, ctx } = await region();
    insertInRegion(r, m, { operands: [[-2], [2]] }, "Clip");
    const f = await probeFailure(r, ctx);
    expect(f?.stage).toBe("probe");
    expect(f?.reason).toMatch(/^probe outputs differ from the reference/);
  });

  test("sees a relative change of 3e-5 (tolerance no looser than verify's)", async () => {
    const { r, m, ctx } = await region();
    insertInRegion(r, m, { operands: [[1 + 3e-5]] }, "Mul");
    const f = await probeFailure(r, ctx);
    expect(f?.stage).toBe("probe");
    expect(f?.reason).toMatch(/^probe outputs differ from the reference/);
  });

  test("sees a NaN the reference does not have", async () => {
    const { r, m, ctx } = await region();
    // sqrt(v) * sqrt(v) = v where v >= 0, NaN where v < 0.
    const sqrt = insertInRegion(r, m, {}, "Sqrt");
    const sq = m.insertOn(sqrt.output(), "Mul", { operands: [sqrt.output()], only: (n) => r.nodes.has(n) });
    r.nodes.add(sq);
    const f = await probeFailure(r, ctx);
    expect(f?.stage).toBe("probe");
    expect(f?.reason).toMatch(
      /^probe output \S+ differs from the reference: NaN at \d+ positions where the reference has finite values \(first at index \d+\)/,
    );
  });
});
