/**
 * The library as an export pipeline uses it: a pass of its own, registered and run after the built-in
 * ones, written against the public API only (graph IR, candidate loop, failures with reasons).
 */
import { describe, expect, it } from "vitest";
import {
  DEFAULT_PASSES,
  Graph,
  candidatePass,
  check,
  fuseModel,
  getPass,
  registerPass,
  type Pass,
} from "../src/index.js";
import { loadCase } from "./helpers/cases.js";

/** Drops Identity nodes that feed nothing but other nodes (a toy clean-up pass). */
const dropIdentity: Pass = candidatePass({
  name: "test-drop-identity",
  description: "removes Identity nodes whose output is not a graph output",
  anchors: ["Identity"],
  rewrite(n, ctx) {
    check(!n.output().isGraphOutput, "output", "the Identity produces a graph output", n);
    ctx.graph.replaceAllUses(n.output(), n.inputs[0]!);
    ctx.graph.removeNodes([n]);
    return { op: "removed.Identity", node: n.name, replacedNodes: 1 };
  },
});

describe("library API", () => {
  it("runs a registered pass after the built-in ones and reports it", async () => {
    registerPass(dropIdentity);
    expect(getPass("test-drop-identity")).toBe(dropIdentity);
    const m = await loadCase("recurrent_t1_b3");
    // Route the first output through two Identity nodes: core -> x -> Identity -> mid -> Identity -> output.
    const g = Graph.fromProto(m.proto.graph!);
    const out = g.outputs[0]!;
    const producer = out.producer!;
    const x = g.value(g.uniqueName("x"));
    producer.outputs = producer.outputs.map((o) => (o === out ? x : o));
    x.producer = producer;
    out.producer = undefined;
    const mid = g.addNode({ opType: "Identity", inputs: [x], outputs: ["mid"] }).output();
    g.addNode({ opType: "Identity", inputs: [mid], outputs: [out] });
    m.proto.graph = g.toProto();

    const r = await fuseModel(m.proto, { passes: [...DEFAULT_PASSES, "test-drop-identity"] });
    expect(r.fused["gdn.RecurrentGatedDeltaRule"]).toBe(1);
    const custom = r.passes.find((p) => p.name === "test-drop-identity")!;
    expect(custom.applied).toHaveLength(1);
    expect(custom.skipped).toEqual([
      expect.objectContaining({ stage: "output", reason: "the Identity produces a graph output" }),
    ]);
    expect(m.proto.graph!.node!.map((n) => n.opType).sort()).toEqual(["Identity", "RecurrentGatedDeltaRule"]);
  });

  it("refuses a second pass under a taken name, and an unknown pass name", async () => {
    expect(() => registerPass({ ...dropIdentity })).toThrow('a pass named "test-drop-identity" is already registered');
    const m = await loadCase("recurrent_t1_b3");
    await expect(fuseModel(m.proto, { passes: ["no-such-pass"] })).rejects.toThrow('unknown pass "no-such-pass"');
  });
});
