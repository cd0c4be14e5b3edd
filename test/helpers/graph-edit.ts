/**
 * Small graph edits and lookups the layer tests share (on top of the Mutator in mutate.ts): find the one
 * node a test edits, the fused cores, and add int64 constants.
 */
import { Graph, type Node, type Value } from "../../src/ir/graph.js";
import type { onnx } from "../../src/ir/onnx.js";
import { arrayToTensor } from "../../src/ir/tensor.js";

export { declareType, setInput } from "../../src/ir/index.js";

/** The one node of `g` that `pred` accepts; throws when there are none or several. */
export function only(g: Graph, pred: (n: Node) => boolean): Node {
  const found = g.nodes.filter(pred);
  if (found.length !== 1) throw new Error(`expected one matching node, found ${found.length}`);
  return found[0]!;
}

/** The one fused gated-delta core (gdn.*GatedDeltaRule) of `g`. */
export const coreOf = (g: Graph): Node => only(g, isCore);

/** The fused gated-delta cores of a model, in graph order. */
export function gdnCores(model: onnx.IModelProto): Node[] {
  return Graph.fromProto(model.graph!).nodes.filter(isCore);
}

/** A new int64 initializer holding `values` (1-D). */
export function i64(g: Graph, name: string, values: number[]): Value {
  return g.addInitializer(
    arrayToTensor(
      name,
      [values.length],
      7,
      values.map((x) => BigInt(x)),
    ),
  );
}

function isCore(n: Node): boolean {
  return n.domain === "gdn" && n.opType.endsWith("GatedDeltaRule");
}
