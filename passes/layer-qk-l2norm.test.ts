/**
 * layer-qk-l2norm: an L2 norm of q and k written outside the core (the exporter's x / sqrt(sum(x^2) + eps))
 * folds into the core's use_qk_l2norm, made by editing a core-fused exported layer; another eps or a
 * non-standard Sqrt is refused with the stage and reason, and the core is left as it was.
 */
import { describe, expect, it } from "vitest";
import { attr, type Graph, type Node } from "../src/ir/graph.js";
import { arrayToTensor } from "../src/ir/tensor.js";
import {
  MAX_LAYER_NODES,
  appliedOps,
  expectMatchesCaseIfRuntime,
  fuseLayers,
  hasCase,
  refusals,
} from "../test/helpers/index.js";
import { coreOf, gdnCores, i64, only, setInput } from "../test/helpers/graph-edit.js";

const PREFILL = "layer_qwen3next_prefill_t96";

/** The exporter's l2norm (x * 1/sqrt(sum(x*x, -1) + eps)) in front of core input i. */
function insertL2norm(g: Graph, core: Node, i: number, eps = 1e-6): void {
  const x = core.inputs[i]!;
  const tag = `l2_${i}`;
  const sq = g.addNode({ opType: "Mul", inputs: [x, x], outputs: [`${tag}_sq`] });
  const axes = i64(g, `${tag}_axes`, [-1]);
  const sum = g.addNode({
    opType: "ReduceSum",
    inputs: [sq.output(), axes],
    outputs: [`${tag}_sum`],
    attributes: [attr.int("keepdims", 1)],
  });
  const epsValue = g.addInitializer(arrayToTensor(`${tag}_eps`, [], 1, [eps]));
  const add = g.addNode({ opType: "Add", inputs: [sum.output(), epsValue], outputs: [`${tag}_add`] });
  const sqrt = g.addNode({ opType: "Sqrt", inputs: [add.output()], outputs: [`${tag}_sqrt`] });
  const inv = g.addNode({ opType: "Reciprocal", inputs: [sqrt.output()], outputs: [`${tag}_inv`] });
  const mul = g.addNode({ opType: "Mul", inputs: [x, inv.output()], outputs: [`${tag}_out`] });
  mul.output().type = x.type;
  setInput(core, i, mul.output());
}

function l2normOutside(eps = 1e-6) {
  return (g: Graph) => {
    const core = coreOf(g);
    core.attr("use_qk_l2norm")!.i = 0;
    insertL2norm(g, core, 0, eps);
    insertL2norm(g, core, 1, eps);
  };
}

describe.skipIf(!hasCase(PREFILL))("layer-qk-l2norm", () => {
  it.each(["layer_qwen3next_prefill_t96", "layer_qwen3next_decode_b2"])(
    "fuses an L2 norm of q and k outside the core (%s) into use_qk_l2norm",
    async (name) => {
      const r = await fuseLayers(name, l2normOutside());
      const model = r.model.proto;
      expect(appliedOps(r, "layer-qk-l2norm")).toHaveLength(1);
      expect(appliedOps(r, "layer-gqa-repeat")).toHaveLength(1);
      expect(gdnCores(model)[0]!.attrInt("use_qk_l2norm")).toBe(1);
      expect(model.graph!.node!.some((n) => n.opType === "ReduceSum")).toBe(false);
      expect(model.graph!.node!.length).toBe(MAX_LAYER_NODES);
      await expectMatchesCaseIfRuntime(model, name);
    },
    60_000,
  );

  it("rejects an outer L2 norm with another eps, with reason", async () => {
    const r = await fuseLayers(PREFILL, l2normOutside(1e-5));
    expect(appliedOps(r, "layer-qk-l2norm")).toEqual([]);
    const reason = expect.stringContaining("the op's in-kernel norm uses 0.000001");
    expect(refusals(r, "layer-qk-l2norm")).toEqual([{ stage: "eps", reason }]);
    expect(gdnCores(r.model.proto)[0]!.attrInt("use_qk_l2norm")).toBe(0); // left as it was
  }, 60_000);

  it("rejects an outer L2 norm with a Sqrt of another domain, with reason", async () => {
    const r = await fuseLayers(PREFILL, (g) => {
      l2normOutside()(g);
      only(g, (n) => n.opType === "Sqrt" && n.output().name === "l2_1_sqrt").proto.domain = "com.example";
    });
    expect(appliedOps(r, "layer-qk-l2norm")).toEqual([]);
    const reason = "the key L2 norm uses com.example.Sqrt, not the standard op";
    expect(refusals(r, "layer-qk-l2norm")).toEqual([{ stage: "anchor", reason }]);
    expect(gdnCores(r.model.proto)[0]!.attrInt("use_qk_l2norm")).toBe(0);
  }, 60_000);
});
