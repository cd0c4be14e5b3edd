/**
 * In-memory mutations of fixture graphs for near-miss and robustness tests: each edits the decoded
 * model the way a different (or wrong) exporter would, then the pipeline runs on the result (fuse.ts).
 */
import { Graph, type NewNode, type Node, type Value } from "../../src/ir/graph.js";
import type { onnx } from "../../src/ir/onnx.js";
import { arrayToTensor, tensorToFloat64 } from "../../src/ir/tensor.js";
import { seededRandom } from "../../src/numeric.js";
import type { CoreRegion } from "../../passes/gated-delta/core-region.js";
import { matchChunk } from "../../passes/gated-delta-chunk.js";
import { matchRecurrent } from "../../passes/gated-delta-recurrent.js";

export class Mutator {
  constructor(readonly graph: Graph) {}

  /** Writes the edited graph back into `model` (initializers replaced on values go back under their names). */
  writeBack(model: onnx.IModelProto): void {
    const list = this.graph.proto.initializer ?? [];
    for (let i = 0; i < list.length; i++) {
      const v = this.graph.values.get(list[i]!.name ?? "");
      if (v?.initializer) list[i] = v.initializer;
    }
    model.graph = this.graph.toProto();
  }

  private initializers(): Value[] {
    return [...this.graph.values.values()].filter((v) => v.initializer);
  }

  /** Sets every one-element float initializer whose value satisfies `pred` to `value`; returns how many. */
  setScalar(pred: (v: number) => boolean, value: number): number {
    let n = 0;
    for (const v of this.initializers()) {
      const t = v.initializer!;
      if (t.dataType !== 1) continue;
      const data = tensorToFloat64(t);
      if (data.length !== 1 || !pred(data[0]!)) continue;
      v.initializer = arrayToTensor(t.name!, (t.dims ?? []).map(Number), 1, [value]);
      n++;
    }
    if (n === 0) throw new Error("setScalar: no matching scalar initializer");
    return n;
  }

  /** Flips one element of the bool initializer with these dims. */
  flipBoolInitializer(dims: number[], index: number): void {
    const v = this.initializers().find(
      (x) => x.initializer!.dataType === 9 && (x.initializer!.dims ?? []).map(Number).join() === dims.join(),
    );
    if (!v) throw new Error(`flipBoolInitializer: no bool initializer [${dims}]`);
    const data = tensorToFloat64(v.initializer!);
    data[index] = data[index] ? 0 : 1;
    v.initializer = arrayToTensor(v.initializer!.name!, dims, 9, Array.from(data));
  }

  /**
   * Inserts one node on value `v`: `opType(v, ...operands)` (or `opType(...operands, v)` with
   * `first: false`), and the consumers of `v` that `only` accepts (default: all) read its output instead.
   * An operand given as numbers becomes a constant of v's element type with dims `constDims` (default: scalar).
   * Returns the new node, so a test can name it in an expected refusal.
   */
  insertOn(
    v: Value,
    opType: string,
    opts: {
      operands?: (number[] | Value)[];
      first?: boolean;
      constDims?: number[];
      attributes?: NewNode["attributes"];
      only?: (n: Node) => boolean;
    } = {},
  ): Node {
    const elemType = v.type?.elemType ?? 1;
    const consts = (opts.operands ?? []).map((o) =>
      Array.isArray(o)
        ? this.graph.addInitializer(arrayToTensor(`${opType.toLowerCase()}_operand`, opts.constDims ?? [], elemType, o))
        : o,
    );
    const users = [...v.consumers].filter((n) => !opts.only || opts.only(n));
    const inputs = opts.first === false ? [...consts, v] : [v, ...consts];
    const node = this.graph.addNode({
      opType,
      inputs,
      outputs: [`${v.name}_${opType.toLowerCase()}`],
      attributes: opts.attributes,
      name: `mutant_${opType.toLowerCase()}`,
    });
    const out = node.output();
    out.type = v.type ? { elemType, shape: v.type.shape ? [...v.type.shape] : undefined } : undefined;
    for (const n of users) {
      n.inputs = n.inputs.map((x) => (x === v ? out : x));
      v.consumers.delete(n);
      out.consumers.add(n);
    }
    this.graph.topologicalSort();
    return node;
  }

  /** Swaps the operands of the first Sub whose second operand is the state's prediction (MatMul or ReduceSum). */
  swapInputsOfDeltaSub(): void {
    const sub = this.graph.nodes.find(
      (n) => n.opType === "Sub" && ["MatMul", "ReduceSum"].includes(n.inputs[1]?.producer?.opType ?? ""),
    );
    if (!sub) throw new Error("swapInputsOfDeltaSub: no delta-rule Sub");
    sub.inputs = [sub.inputs[1], sub.inputs[0]];
  }

  /** Removes the first state update S = S' + k u^T: its users read the decayed state S' instead. */
  dropStateUpdate(): void {
    const state = this.graph.inputs.find((v) => v.name === "initial_state");
    const isDecay = (n: Node | undefined) => n?.opType === "Mul" && n.inputs.includes(state);
    const add = this.graph.nodes.find((n) => n.opType === "Add" && n.inputs.some((v) => isDecay(v?.producer)));
    if (!add) throw new Error("dropStateUpdate: no state update Add");
    const decayed = add.inputs.find((v) => isDecay(v?.producer))!;
    this.graph.replaceAllUses(add.output(), decayed);
    this.graph.removeNodes([add]);
    this.graph.removeDeadNodes();
  }

  /** Drops a graph output (as an export with output_final_state=False would) and the nodes only it used. */
  dropGraphOutput(name: string): void {
    const v = this.graph.outputs.find((o) => o.name === name);
    if (!v) throw new Error(`dropGraphOutput: no output ${name}`);
    this.graph.outputs = this.graph.outputs.filter((o) => o !== v);
    v.isGraphOutput = false;
    this.graph.removeDeadNodes();
  }

  /** Declares dim 0 of every graph input and output, and of every value declared with that size there, symbolic. */
  symbolicBatch(name = "batch"): void {
    for (const v of [...this.graph.inputs, ...this.graph.outputs]) {
      const dim = v.valueInfo?.type?.tensorType?.shape?.dim?.[0];
      if (dim) {
        dim.dimValue = null;
        dim.dimParam = name;
      }
      if (v.type?.shape) v.type.shape[0] = name;
    }
  }

  /** Renames every node and intermediate value and shuffles the node list (seeded). */
  renameAndShuffle(seed: number): void {
    const rand = seededRandom(seed);
    for (const n of this.graph.nodes) n.proto.name = `n${Math.floor(rand() * 1e9)}`;
    const renamed = new Map<Value, string>();
    for (const n of this.graph.nodes)
      for (const o of n.outputs)
        if (o && !o.isGraphOutput) renamed.set(o, `v${renamed.size}_${Math.floor(rand() * 1e6)}`);
    for (const [v, name] of renamed) this.graph.renameValue(v, name);
    const a = this.graph.nodes;
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
  }

  /** Swaps the operands of commutative binary ops (Add, Mul) with probability 1/2 (seeded). */
  commute(seed: number): number {
    const rand = seededRandom(seed);
    let n = 0;
    for (const node of this.graph.nodes)
      if ((node.opType === "Add" || node.opType === "Mul") && node.inputs.length === 2 && rand() < 0.5) {
        node.inputs = [node.inputs[1], node.inputs[0]];
        n++;
      }
    return n;
  }

  /**
   * A value of the (first) unfused gated-delta core, found by the core matcher on the graph as it is
   * now: an entry Transpose's output (query ... beta), the value the exit Transpose reads ("output"),
   * or the initial state input ("state").
   */
  coreValue(role: "query" | "key" | "value" | "g" | "beta" | "output" | "state"): Value {
    const cumsum = this.graph.nodes.find((n) => n.opType === "CumSum");
    let r: CoreRegion | undefined;
    if (cumsum) r = matchChunk(cumsum);
    else
      for (const n of this.graph.nodes.filter((x) => x.opType === "Exp")) {
        try {
          r = matchRecurrent(n);
          break;
        } catch {
          // not a state decay: try the next Exp
        }
      }
    if (!r) throw new Error("coreValue: no core found");
    if (role === "state") return r.state!;
    if (role === "output") {
      const o = r.output.producer!.opType === "Cast" ? r.output.producer!.inputs[0]! : r.output;
      return o.producer!.inputs[0]!;
    }
    return r[role].transpose.output();
  }

  /** The first node of the graph that `pred` accepts (throws when none). */
  findNode(pred: (n: Node) => boolean, what: string): Node {
    const n = this.graph.nodes.find(pred);
    if (!n) throw new Error(`findNode: no ${what}`);
    return n;
  }

  /** Replaces input `i` of node `n` by a new constant (float32 unless `elemType` says otherwise). */
  setInput(n: Node, i: number, dims: number[], data: number[], elemType = 1): void {
    const v = this.graph.addInitializer(arrayToTensor(`${n.name}_input${i}`, dims, elemType, data));
    n.inputs[i]?.consumers.delete(n);
    while (n.inputs.length <= i) n.inputs.push(undefined);
    n.inputs[i] = v;
    v.consumers.add(n);
  }

  /** Swaps the first two inputs of `n`. */
  swapInputs(n: Node): void {
    n.inputs = [n.inputs[1], n.inputs[0], ...n.inputs.slice(2)];
  }

  /** Removes node `n`: the readers of its output read its input `i` instead. */
  bypass(n: Node, i = 0): void {
    this.graph.replaceAllUses(n.output(), n.inputs[i]!);
    this.graph.removeNodes([n]);
    this.graph.removeDeadNodes();
  }
}
