/**
 * The graph IR the passes work on: nodes and values with producer/consumer links over a decoded
 * onnx.GraphProto. Unchanged nodes keep their original NodeProto object, so everything the IR does
 * not model (doc strings, metadata, unknown fields) is written back as it was read.
 */
import type { onnx } from "./onnx.js";
import { GdnFuseError } from "../errors.js";
import { int64ToNumber as toNumber } from "./onnx.js";

type AttrProto = onnx.IAttributeProto;
type Dim = number | string | undefined;

/** Element type and shape of a value, as far as the model declares them. */
export interface ValueType {
  elemType: number; // onnx.TensorProto.DataType; 0 = unknown
  shape?: Dim[]; // undefined = unknown rank
}

export class Value {
  producer: Node | undefined;
  readonly consumers = new Set<Node>();
  type: ValueType | undefined;
  initializer: onnx.ITensorProto | undefined;
  isGraphInput = false;
  isGraphOutput = false;
  /** Value info proto as read (kept so doc strings etc. survive). */
  valueInfo: onnx.IValueInfoProto | undefined;
  constructor(
    public name: string,
    /** The graph the value belongs to (its folder resolves external initializer data). */
    readonly graph?: Graph,
  ) {}

  get rank(): number | undefined {
    return this.type?.shape?.length;
  }
  /** Static dims, or undefined when any dim is symbolic or unknown. */
  get staticShape(): number[] | undefined {
    const s = this.type?.shape;
    if (!s || s.some((d) => typeof d !== "number")) return undefined;
    return s as number[];
  }
}

let nextNodeId = 0;

export class Node {
  readonly id = nextNodeId++;
  inputs: (Value | undefined)[] = []; // undefined = omitted optional input ("")
  outputs: (Value | undefined)[] = [];
  /** Values read inside If/Loop/Scan bodies that come from this graph (outer-scope captures). */
  implicitInputs: Value[] = [];
  /** Set once the node is removed from its graph (anchors collected earlier may be stale). */
  removed = false;
  constructor(
    public proto: onnx.INodeProto,
    readonly graph: Graph,
  ) {}

  get opType(): string {
    return this.proto.opType ?? "";
  }
  get domain(): string {
    return this.proto.domain ?? "";
  }
  get name(): string {
    return this.proto.name || `${this.opType}#${this.id}`;
  }
  attr(name: string): AttrProto | undefined {
    return this.proto.attribute?.find((a) => a.name === name);
  }
  attrInt(name: string, fallback?: number): number | undefined {
    const a = this.attr(name);
    return a ? toNumber(a.i) : fallback;
  }
  attrFloat(name: string, fallback?: number): number | undefined {
    const a = this.attr(name);
    return a ? Number(a.f ?? 0) : fallback;
  }
  attrInts(name: string): number[] | undefined {
    const a = this.attr(name);
    return a ? (a.ints ?? []).map(toNumber) : undefined;
  }
  attrString(name: string): string | undefined {
    const a = this.attr(name);
    return a?.s ? new TextDecoder().decode(a.s) : undefined;
  }
  /** The node's input i, or undefined when absent. */
  input(i: number): Value | undefined {
    return this.inputs[i];
  }
  output(i = 0): Value {
    const v = this.outputs[i];
    if (!v) throw new GdnFuseError("E_MODEL", `node ${this.name} has no output ${i}`);
    return v;
  }
  /** Nodes consuming any of this node's outputs. */
  get users(): Node[] {
    const s = new Set<Node>();
    for (const o of this.outputs) o?.consumers.forEach((c) => s.add(c));
    return [...s];
  }
}

/** Attribute builders for nodes created by passes. */
export const attr = {
  int: (name: string, i: number): AttrProto => ({ name, type: 2, i }),
  float: (name: string, f: number): AttrProto => ({ name, type: 1, f }),
  string: (name: string, s: string): AttrProto => ({ name, type: 3, s: new TextEncoder().encode(s) }),
  ints: (name: string, ints: number[]): AttrProto => ({ name, type: 7, ints }),
};

export interface NewNode {
  opType: string;
  domain?: string;
  inputs: (Value | undefined)[];
  /** Existing values to re-produce (their old producer must be removed first) or names of new values. */
  outputs: (Value | string)[];
  attributes?: AttrProto[];
  name?: string;
}

export class Graph {
  nodes: Node[] = [];
  readonly values = new Map<string, Value>();
  inputs: Value[] = [];
  outputs: Value[] = [];
  private readonly usedNames = new Set<string>();

  private constructor(
    readonly proto: onnx.IGraphProto,
    readonly parent?: Graph,
    /** The model's folder: where external initializer data is read from. */
    readonly baseDir?: string,
  ) {}

  static fromProto(proto: onnx.IGraphProto, parent?: Graph, options: { baseDir?: string } = {}): Graph {
    const g = new Graph(proto, parent, options.baseDir ?? parent?.baseDir);
    for (const vi of [...(proto.input ?? []), ...(proto.output ?? []), ...(proto.valueInfo ?? [])]) {
      const v = g.value(vi.name ?? "");
      v.valueInfo ??= vi;
      v.type ??= typeFromValueInfo(vi);
    }
    for (const t of proto.initializer ?? []) {
      const v = g.value(t.name ?? "");
      v.initializer = t;
      v.type ??= { elemType: t.dataType ?? 0, shape: (t.dims ?? []).map(toNumber) };
    }
    g.inputs = (proto.input ?? []).map((i) => g.value(i.name ?? ""));
    g.inputs.forEach((v) => (v.isGraphInput = true));
    for (const np of proto.node ?? []) {
      const n = new Node(np, g);
      n.inputs = (np.input ?? []).map((name) => (name ? g.resolve(name) : undefined));
      n.outputs = (np.output ?? []).map((name) => (name ? g.value(name) : undefined));
      n.inputs.forEach((v) => v?.consumers.add(n));
      for (const o of n.outputs) {
        if (!o) continue;
        if (o.producer)
          throw new GdnFuseError(
            "E_MODEL",
            `value "${o.name}" is produced by two nodes (${o.producer.name} and ${n.name})`,
          );
        o.producer = n;
      }
      for (const np2 of np.output ?? []) g.usedNames.add(np2);
      if (np.name) g.usedNames.add(np.name);
      n.implicitInputs = subgraphCaptures(np).map((name) => g.resolve(name));
      n.implicitInputs.forEach((v) => v.consumers.add(n));
      g.nodes.push(n);
    }
    g.outputs = (proto.output ?? []).map((o) => g.value(o.name ?? ""));
    g.outputs.forEach((v) => (v.isGraphOutput = true));
    return g;
  }

  /** The value of that name in this graph, created if new. */
  value(name: string): Value {
    let v = this.values.get(name);
    if (!v) {
      v = new Value(name, this);
      this.values.set(name, v);
      this.usedNames.add(name);
    }
    return v;
  }

  /** A value read by name: this graph's own, else an outer scope's (subgraphs). */
  private resolve(name: string): Value {
    if (!this.values.has(name) && this.parent?.hasValue(name)) return this.parent.value(name);
    return this.value(name);
  }

  hasValue(name: string): boolean {
    return this.values.has(name) || (this.parent?.hasValue(name) ?? false);
  }

  /** Renames a value (and its value_info); the new name must be unused. */
  renameValue(v: Value, name: string): void {
    if (this.hasValue(name)) throw new GdnFuseError("E_PASS", `renameValue: "${name}" is already used`);
    this.values.delete(v.name);
    v.name = name;
    if (v.valueInfo) v.valueInfo.name = name;
    if (v.initializer) v.initializer.name = name;
    this.values.set(name, v);
    this.usedNames.add(name);
  }

  /** A name not yet used in this graph, derived from base. */
  uniqueName(base: string): string {
    let name = base;
    for (let i = 1; this.usedNames.has(name) || this.parent?.hasValue(name); i++) name = `${base}_${i}`;
    this.usedNames.add(name);
    return name;
  }

  addNode(spec: NewNode): Node {
    const np: onnx.INodeProto = {
      opType: spec.opType,
      domain: spec.domain ?? "",
      name: this.uniqueName(spec.name ?? spec.opType),
      input: [],
      output: [],
      attribute: spec.attributes ?? [],
    };
    const n = new Node(np, this);
    n.inputs = [...spec.inputs];
    n.inputs.forEach((v) => v?.consumers.add(n));
    n.outputs = spec.outputs.map((o) => {
      const v = typeof o === "string" ? this.value(this.uniqueName(o)) : o;
      if (v.producer && v.producer !== n)
        throw new GdnFuseError("E_PASS", `addNode: value "${v.name}" is still produced by ${v.producer.name}`);
      v.producer = n;
      return v;
    });
    this.nodes.push(n);
    return n;
  }

  /** A new initializer value holding the tensor. */
  addInitializer(tensor: onnx.ITensorProto): Value {
    const v = this.value(this.uniqueName(tensor.name ?? "const"));
    tensor.name = v.name;
    v.initializer = tensor;
    v.type = { elemType: tensor.dataType ?? 0, shape: (tensor.dims ?? []).map(toNumber) };
    return v;
  }

  /** Detaches nodes; their outputs lose their producer (callers re-produce the ones still used). */
  removeNodes(nodes: Iterable<Node>): void {
    const dead = new Set(nodes);
    for (const n of dead) {
      n.removed = true;
      for (const v of [...n.inputs, ...n.implicitInputs]) v?.consumers.delete(n);
      for (const o of n.outputs) if (o && o.producer === n) o.producer = undefined;
    }
    this.nodes = this.nodes.filter((n) => !n.removed);
  }

  /** Replaces every use of `from` (node inputs and graph outputs) by `to`. */
  replaceAllUses(from: Value, to: Value): void {
    for (const n of [...from.consumers]) {
      n.inputs = n.inputs.map((v) => (v === from ? to : v));
      if (n.inputs.includes(to)) to.consumers.add(n);
      from.consumers.delete(n);
    }
    this.outputs = this.outputs.map((v) => (v === from ? to : v));
    if (from.isGraphOutput) {
      to.isGraphOutput = true;
      from.isGraphOutput = false;
    }
  }

  /** Removes nodes none of whose outputs reach a graph output; returns how many. */
  removeDeadNodes(): number {
    const live = new Set<Node>();
    const stack = this.outputs.map((v) => v.producer).filter((n): n is Node => !!n);
    while (stack.length) {
      const n = stack.pop()!;
      if (live.has(n)) continue;
      live.add(n);
      for (const v of [...n.inputs, ...n.implicitInputs])
        if (v?.producer && !live.has(v.producer)) stack.push(v.producer);
    }
    const dead = this.nodes.filter((n) => !live.has(n));
    this.removeNodes(dead);
    return dead.length;
  }

  /** Orders nodes so each comes after its producers (stable for already sorted graphs). */
  topologicalSort(): void {
    const order: Node[] = [];
    const state = new Map<Node, number>(); // 1 = visiting, 2 = done
    const inGraph = new Set(this.nodes);
    for (const root of this.nodes) {
      if (state.get(root) === 2) continue;
      // Iterative DFS: a Qwen model has long chains and would overflow the JS stack.
      const stack: [Node, number][] = [[root, 0]];
      state.set(root, 1);
      while (stack.length) {
        const top = stack[stack.length - 1]!;
        const [n, i] = top;
        const deps = [...n.inputs, ...n.implicitInputs];
        if (i < deps.length) {
          top[1]++;
          const p = deps[i]?.producer;
          if (!p || !inGraph.has(p)) continue;
          const s = state.get(p);
          if (s === 1) throw new GdnFuseError("E_MODEL", `the graph has a cycle through node ${p.name}`);
          if (s !== 2) {
            state.set(p, 1);
            stack.push([p, 0]);
          }
        } else {
          stack.pop();
          state.set(n, 2);
          order.push(n);
        }
      }
    }
    this.nodes = order;
  }

  /** Throws if a consumed value has no producer, initializer or graph input (after a rewrite). */
  validate(): void {
    for (const n of this.nodes) {
      for (const v of [...n.inputs, ...n.implicitInputs]) {
        if (v && !v.producer && !v.initializer && !v.isGraphInput && !this.definedOutside(v))
          throw new GdnFuseError("E_MODEL", `node ${n.name} reads "${v.name}", which nothing produces`);
      }
    }
    for (const v of this.outputs)
      if (!v.producer && !v.initializer && !v.isGraphInput)
        throw new GdnFuseError("E_MODEL", `graph output "${v.name}" is not produced`);
  }

  private definedOutside(v: Value): boolean {
    return !!this.parent && this.parent.values.get(v.name) === v;
  }

  /** Writes the IR back into a GraphProto: original fields kept, nodes/initializers/value_info rebuilt. */
  toProto(): onnx.IGraphProto {
    this.topologicalSort();
    this.validate();
    const used = new Set<Value>();
    for (const n of this.nodes) for (const v of [...n.inputs, ...n.outputs, ...n.implicitInputs]) if (v) used.add(v);
    this.inputs.forEach((v) => used.add(v));
    this.outputs.forEach((v) => used.add(v));
    const nodes = this.nodes.map((n) => {
      n.proto.input = n.inputs.map((v) => v?.name ?? "");
      n.proto.output = n.outputs.map((v) => v?.name ?? "");
      return n.proto;
    });
    const keptInits = (this.proto.initializer ?? []).filter((t) => used.has(this.values.get(t.name ?? "")!));
    const knownInits = new Set(keptInits);
    for (const v of used)
      if (v.initializer && !knownInits.has(v.initializer) && this.values.get(v.name) === v)
        keptInits.push(v.initializer);
    const keptVi = (this.proto.valueInfo ?? []).filter((vi) => {
      const v = this.values.get(vi.name ?? "");
      return !!v && used.has(v) && !v.isGraphInput && !v.isGraphOutput;
    });
    const outputs = this.outputs.map((v) => v.valueInfo ?? valueInfoFromType(v));
    return Object.assign(Object.create(Object.getPrototypeOf(this.proto)), this.proto, {
      node: nodes,
      initializer: keptInits,
      valueInfo: keptVi,
      output: outputs,
    });
  }
}

function typeFromValueInfo(vi: onnx.IValueInfoProto): ValueType | undefined {
  const tt = vi.type?.tensorType;
  if (!tt) return undefined;
  const shape = tt.shape
    ? (tt.shape.dim ?? []).map((d): Dim =>
        d.dimParam ? d.dimParam : d.dimValue != null ? toNumber(d.dimValue) : undefined,
      )
    : undefined;
  return { elemType: tt.elemType ?? 0, shape };
}

function valueInfoFromType(v: Value): onnx.IValueInfoProto {
  const t = v.type;
  return {
    name: v.name,
    type: t
      ? {
          tensorType: {
            elemType: t.elemType,
            shape: t.shape
              ? { dim: t.shape.map((d) => (typeof d === "number" ? { dimValue: d } : d ? { dimParam: d } : {})) }
              : undefined,
          },
        }
      : undefined,
  };
}

/** Names a node's subgraphs (If/Loop/Scan bodies) read from enclosing scopes. */
function subgraphCaptures(np: onnx.INodeProto): string[] {
  const out = new Set<string>();
  for (const a of np.attribute ?? [])
    for (const sg of [a.g, ...(a.graphs ?? [])]) if (sg) collectCaptures(sg, new Set(), out);
  return [...out];
}

function collectCaptures(g: onnx.IGraphProto, outerDefined: Set<string>, out: Set<string>): void {
  const defined = new Set(outerDefined);
  for (const i of g.input ?? []) defined.add(i.name ?? "");
  for (const t of g.initializer ?? []) defined.add(t.name ?? "");
  for (const n of g.node ?? []) {
    for (const i of n.input ?? []) if (i && !defined.has(i)) out.add(i);
    for (const a of n.attribute ?? [])
      for (const sg of [a.g, ...(a.graphs ?? [])]) if (sg) collectCaptures(sg, defined, out);
    for (const o of n.output ?? []) defined.add(o);
  }
  for (const o of g.output ?? []) if (o.name && !defined.has(o.name)) out.add(o.name);
}
