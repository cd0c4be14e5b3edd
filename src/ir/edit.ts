/**
 * Editing the graph IR the way every pass does: rewiring one input of an existing node, adding nodes
 * tagged with the pass that made them, declaring a value's type so it survives a save/load, and small
 * constant readers.
 */
import type { Graph, NewNode, Node, Value } from "./graph.js";
import { constantOf, scalarOf } from "./constant.js";
import { int64ToNumber, setNodeMetadata, type onnx } from "./onnx.js";
import type { Dim } from "./shape.js";

/** Metadata key recording which pass created a node, so a fused graph explains itself (e.g. in Netron). */
export const CREATED_BY_KEY = "gdn_fuse.pass";

/** Replaces input i of an existing node. */
export function setInput(n: Node, i: number, v: Value | undefined): void {
  const old = n.inputs[i];
  n.inputs[i] = v;
  if (old && !n.inputs.includes(old)) old.consumers.delete(n);
  v?.consumers.add(n);
}

/** Adds a node tagged with the pass that made it. */
export function addTagged(g: Graph, pass: string, spec: NewNode): Node {
  const n = g.addNode(spec);
  setNodeMetadata(n.proto, CREATED_BY_KEY, pass);
  return n;
}

/**
 * Sets a value's element type and shape, and writes it to the graph's value_info (created or
 * updated), so the type survives a save/load between passes (the lowering reads head counts from it).
 * A string dim is written as a dim_param (a symbolic batch), an undefined one as an unknown dim.
 */
export function declareType(g: Graph, v: Value, elemType: number, shape: readonly Dim[]): void {
  v.type = { elemType, shape: [...shape] };
  const protoDim = (d: Dim) => (typeof d === "number" ? { dimValue: d } : typeof d === "string" ? { dimParam: d } : {});
  const dim = shape.map(protoDim);
  const type = { tensorType: { elemType, shape: { dim } } };
  if (v.valueInfo) {
    v.valueInfo.type = type;
    return;
  }
  if (v.isGraphInput || v.isGraphOutput) return;
  v.valueInfo = { name: v.name, type };
  (g.proto.valueInfo ??= []).push(v.valueInfo);
}

/** Nodes of a standard-domain op type. */
export function nodesOf(g: Graph, opType: string): Node[] {
  return g.nodes.filter((n) => n.opType === opType && n.domain === "");
}

/** A node's op as reports name it: "domain.OpType" ("ai.onnx" for the standard domain). */
export const fusedOp = (n: Node) => `${n.domain || "ai.onnx"}.${n.opType}`;

/** Integer constant (list), or undefined. */
export function intsOf(v: Value | undefined): number[] | undefined {
  const c = constantOf(v);
  return c ? Array.from(c.data) : undefined;
}

/** A scalar constant or a constant every element of which equals one value. */
export function uniformScalar(v: Value | undefined): number | undefined {
  const s = scalarOf(v);
  if (s !== undefined) return s;
  const c = constantOf(v);
  if (!c || c.data.length === 0) return undefined;
  const x = c.data[0]!;
  return c.data.every((y) => y === x) ? x : undefined;
}

/** The model's default-domain (ai.onnx) opset version; 0 when it imports none. */
export function defaultOpset(model: onnx.IModelProto): number {
  const o = model.opsetImport?.find((x) => (x.domain ?? "") === "");
  return o ? int64ToNumber(o.version) : 0;
}
