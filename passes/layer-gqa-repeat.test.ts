/**
 * layer-gqa-repeat: the repeat_interleave of q/k heads (Hk < Hv) in its exported form
 * (Unsqueeze/Expand/Reshape) and the Tile and Gather forms folds into the core; a wrong repeat factor
 * or a tiled head order (h % Hk) is refused with the stage and reason. Each case edits a core-fused
 * exported layer.
 */
import { describe, expect, it } from "vitest";
import { attr, type Graph, type Node } from "../src/ir/graph.js";
import { constantOf } from "../src/ir/constant.js";
import {
  MAX_LAYER_NODES,
  appliedOps,
  expectMatchesCaseIfRuntime,
  fuseLayers,
  hasCase,
  refusals,
} from "../test/helpers/index.js";
import { coreOf, i64, setInput } from "../test/helpers/graph-edit.js";

const PREFILL = "layer_qwen3next_prefill_t96";

/** The repeat of core input i: Reshape(Expand(Unsqueeze(x))), or the Tile form, and its factor n. */
function repeatOf(core: Node, i: number) {
  const reshape = core.inputs[i]!.producer!;
  const expand = reshape.inputs[0]!.producer!;
  const unsq = expand.inputs[0]!.producer!;
  return { reshape, expand, unsq, x: unsq.inputs[0]!, n: Number(constantOf(expand.inputs[1])!.data[3]) };
}

/** repeatOf, checking the exported form (Unsqueeze/Expand/Reshape). */
function exportedRepeatOf(core: Node, i: number) {
  const r = repeatOf(core, i);
  expect([r.reshape.opType, r.expand.opType, r.unsq.opType]).toEqual(["Reshape", "Expand", "Unsqueeze"]);
  return r;
}

/** Expand -> Tile([1,1,1,n,1]) (the same repeat_interleave). */
const repeatAsTile = (g: Graph) => {
  const core = coreOf(g);
  for (const i of [0, 1]) {
    const { expand, n } = exportedRepeatOf(core, i);
    expand.proto.opType = "Tile";
    setInput(expand, 1, i64(g, `tile_reps_${i}`, [1, 1, 1, n, 1]));
  }
};

/** Unsqueeze/Expand/Reshape -> Gather(axis 2) with the given head indices. */
const repeatAsGather = (indices: (H: number, n: number) => number[]) => (g: Graph) => {
  const core = coreOf(g);
  for (const i of [0, 1]) {
    const { reshape, x, n } = exportedRepeatOf(core, i);
    const out = reshape.output();
    g.removeNodes([reshape]);
    const gatherIndices = i64(g, `gather_idx_${i}`, indices(x.staticShape![2]!, n));
    g.addNode({ opType: "Gather", inputs: [x, gatherIndices], outputs: [out], attributes: [attr.int("axis", 2)] });
  }
};
const interleaved = (H: number, n: number) => Array.from({ length: H * n }, (_, j) => Math.floor(j / n));
const tiled = (H: number, n: number) => Array.from({ length: H * n }, (_, j) => j % H);

describe.skipIf(!hasCase(PREFILL))("layer-gqa-repeat", () => {
  it("rejects a wrong repeat factor, with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      // Expand by 4 instead of 2: 2 key heads become 8, but the value has 4 heads.
      for (const ex of g.nodes.filter((n) => n.opType === "Expand")) setInput(ex, 1, i64(g, "rep4", [1, 1, 1, 4, 1]));
    });
    expect(r.allFused["gdn.ChunkGatedDeltaRule[gqa]"]).toBeUndefined();
    expect(r.allFused["gdn.ChunkGatedDeltaRule"]).toBe(1);
    const reason = expect.stringContaining("repeat");
    expect(refusals(r, "layer-gqa-repeat")).toEqual([{ stage: "repeat", reason }]);
  }, 60_000);

  it.each([
    ["Tile", repeatAsTile],
    ["Gather", repeatAsGather(interleaved)],
  ] as const)(
    "fuses the %s form of the GQA repeat",
    async (_form, mutate) => {
      const r = await fuseLayers(PREFILL, mutate);
      expect(appliedOps(r, "layer-gqa-repeat")).toEqual(["gdn.ChunkGatedDeltaRule[gqa]"]);
      expect(r.model.proto.graph!.node!.length).toBe(MAX_LAYER_NODES);
      await expectMatchesCaseIfRuntime(r.model.proto, PREFILL);
    },
    60_000,
  );

  it("rejects a Gather repeat in tiled order (h % Hk), with reason", async () => {
    const r = await fuseLayers(PREFILL, repeatAsGather(tiled));
    expect(appliedOps(r, "layer-gqa-repeat")).toEqual([]);
    expect(refusals(r, "layer-gqa-repeat")).toEqual([
      { stage: "repeat", reason: "the query Gather index 1 is 1; repeat_interleave needs 0 (h / 2)" },
    ]);
  }, 60_000);

  it("rejects a Tile repeat in tiled order (copies before the heads), with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      repeatAsTile(g);
      const core = coreOf(g);
      for (const i of [0, 1]) {
        const { unsq, expand, n } = repeatOf(core, i);
        setInput(unsq, 1, i64(g, `unsq_axes_${i}`, [2]));
        setInput(expand, 1, i64(g, `tile_reps2_${i}`, [1, 1, n, 1, 1]));
      }
    });
    expect(appliedOps(r, "layer-gqa-repeat")).toEqual([]);
    const reason = expect.stringContaining("not after the head axis");
    expect(refusals(r, "layer-gqa-repeat")).toEqual([{ stage: "repeat", reason }]);
  }, 60_000);
});
