/**
 * Finds and checks the region of one unfused gated-delta core (transformers'
 * torch_chunk_gated_delta_rule / torch_recurrent_gated_delta_rule as torch.onnx exports it),
 * independent of node names, node order, operand order, chunk count, padding and Cast wrappers.
 *
 *   query key value   beta    g      initial_state (or zeros)
 *     |    |    |       |     |          |
 *   Transpose(0,2,1,3)  Transpose(0,2,1) |        <- entries: the region's boundary is their inputs
 *     |    |    |       |     |          |
 *   [Cast][l2norm q,k] [scale q] ... chunked or per-token delta rule ...
 *     |                                  |
 *   Transpose(0,2,1,3) [Cast]      final state update
 *     |                                  |
 *   core_attn_out                   final_state (optional)
 *
 * The region is everything between the entries and the outputs: the backward cone of the output
 * Transpose bounded by the entries, plus the nodes that finish the final state. Roles, the l2norm
 * flag, eps and scale are read from the graph and checked; a probe run confirms the semantics.
 */
import {
  constantOf,
  type Dim,
  fromTensor,
  isConstantValue,
  type Node,
  scalarOf,
  type Value,
} from "../../src/ir/index.js";
import { check, close, fail, isPerm, matchL2norm, permOf } from "../../src/pattern/index.js";
import { FLOAT, FLOAT_TYPES, L2NORM_EPS } from "../../src/ops.js";
import { explainRegion, type Source } from "./explain.js";

const MAX_REGION = 200_000;

export interface Entry {
  transpose: Node; // the Transpose that moves heads before time
  boundary: Value; // its input: the value the fused op reads
}

export interface CoreRegion {
  nodes: Set<Node>;
  query: Entry;
  key: Entry;
  value: Entry;
  g: Entry;
  beta: Entry;
  state?: Value; // boundary initial state; undefined when the core starts from zeros
  stateConst?: Value; // the zeros constant the core starts from, when there is no state input
  zeroState?: Value; // zeros of a run-time shape the region reads as its state (probed as an input; dropped by the rewrite)
  output: Value;
  finalState?: Value;
  useQkL2norm: boolean;
  scale: number;
  /** Sizes; B is PROBE_BATCH when the batch is symbolic (see `batch`). */
  dims: { B: number; T: number; Hk: number; Hv: number; K: number; V: number };
  /** The batch dimension as the graph declares it: a number, or a symbolic name. */
  batch: number | string;
  /** Region nodes whose outputs depend on the state (used by the delta-rule checks). */
  stateDependent: Set<Node>;
  /** The rule that explains each region node (see explain.ts): every node has one. */
  rules: Map<Node, string>;
}

/** What the calling pass knows of its form: the chunked form's CumSum of g and chunk size. */
export type CoreForm = { kind: "chunk"; cumsum: Node; chunkSize: number } | { kind: "recurrent" };

const shapeOf = (v: Value): Dim[] | undefined => v.type?.shape;
/** Batch size the probe uses when the graph's batch is symbolic. */
export const PROBE_BATCH = 2;

/** A float32 constant printed without float32 noise (1e-5, not 0.000009999999747). */
const fmt = (x: number) => String(Number(x.toPrecision(6)));

/**
 * The Transpose(0,2,1) of g upstream of v, through up to `depth` nodes with one computed input each.
 * Whatever lies between is region and must be explained there; anchors only need to find the entry.
 */
export function gEntryUpstream(v: Value, depth = 6): Node | undefined {
  let cur: Value | undefined = v;
  for (let d = 0; cur && d <= depth; d++) {
    const p: Node | undefined = cur.producer;
    if (!p || p.domain !== "") return undefined;
    if (isPerm(p, [0, 2, 1])) return p;
    const data: (Value | undefined)[] = p.inputs.filter((x) => x && !isConstantValue(x));
    if (data.length !== 1) return undefined;
    cur = data[0];
  }
  return undefined;
}

/** True for a Transpose that swaps the time and head axes of a [B,T,H,(D)] tensor. */
export function isEntryTranspose(n: Node): boolean {
  return isPerm(n, [0, 2, 1, 3]) || isPerm(n, [0, 2, 1]);
}

/**
 * Delimits the region around an anchor node that lies inside a core, and reads its parameters.
 * `gEntry` is the g input's Transpose, found by the caller from its anchor.
 */
export function delimitCore(anchor: Node, gEntry: Node, form: CoreForm): CoreRegion {
  const exit = findExitTranspose(anchor);
  // 1. Backward cone of the output, bounded by the entry Transposes.
  const cone = new Set<Node>();
  const entries = new Set<Node>();
  const stack: Node[] = [exit];
  while (stack.length) {
    const n = stack.pop()!;
    if (cone.has(n)) continue;
    cone.add(n);
    check(cone.size < MAX_REGION, "region", `the region around ${anchor.name} exceeds ${MAX_REGION} nodes`, anchor);
    if (n !== exit && isEntryTranspose(n)) {
      entries.add(n);
      continue;
    }
    for (const v of n.inputs) if (v?.producer && !cone.has(v.producer)) stack.push(v.producer);
  }
  check(
    entries.has(gEntry),
    "region",
    "the g Transpose feeding the anchor is not upstream of the output Transpose",
    exit,
  );

  // 2. Keep the nodes that depend on an entry, plus constant-only helpers; the rest is outside.
  const dependsOnEntry = forwardWithin(cone, [...entries]);
  const nodes = new Set<Node>();
  for (const n of cone) if (dependsOnEntry.has(n) || isConstantOnly(n)) nodes.add(n);

  // 3. Outputs: the exit (plus a trailing Cast back to the input type) and the final state.
  let output = exit.output();
  const rank4 = [...entries].filter((e) => permOf(e)!.length === 4);
  const rank3 = [...entries].filter((e) => permOf(e)!.length === 3);
  check(
    rank4.length === 3 && rank3.length === 2,
    "inputs",
    `expected 3 rank-4 entries (query, key, value) and 2 rank-3 entries (g, beta), found ${rank4.length} and ${rank3.length}`,
    exit,
  );
  const roles = assignRoles(rank4, nodes);
  const betaT = rank3.find((e) => e !== gEntry)!;
  const entry = (t: Node): Entry => ({ transpose: t, boundary: t.inputs[0]! });
  const [query, key, value, g, beta] = [
    entry(roles.query),
    entry(roles.key),
    entry(roles.value),
    entry(gEntry),
    entry(betaT),
  ];

  const vType = value.boundary.type?.elemType ?? 0;
  check(
    FLOAT_TYPES.has(vType),
    "types",
    `value has element type ${vType}; float32, float16 or bfloat16 expected`,
    value.transpose,
  );
  for (const e of [query, key, beta])
    check(
      e.boundary.type?.elemType === vType,
      "types",
      `${e.boundary.name} has element type ${e.boundary.type?.elemType}, value has ${vType}`,
      e.transpose,
    );
  check(
    g.boundary.type?.elemType === FLOAT,
    "types",
    `g must be float32, it is element type ${g.boundary.type?.elemType}`,
    g.transpose,
  );
  if ((output.type?.elemType ?? 1) !== vType) {
    const cast = [...output.consumers][0];
    check(
      output.consumers.size === 1 && cast?.opType === "Cast" && cast.attrInt("to") === vType,
      "outputs",
      `the output is element type ${output.type?.elemType ?? "?"} and is not cast back to value's type ${vType}`,
      exit,
    );
    nodes.add(cast);
    output = cast.output();
  }

  // 4. Nodes that finish the final state: they read only region values (not the output) and constants.
  const finalState = absorbFinalState(nodes, output, exit);

  // 5. Boundary: entries' inputs plus at most one state input.
  const boundary = new Set<Value>();
  for (const n of nodes)
    for (const v of n.inputs) if (v && !(v.producer && nodes.has(v.producer)) && !isConstantValue(v)) boundary.add(v);
  for (const e of [query, key, value, g, beta]) boundary.delete(e.boundary);
  check(
    boundary.size <= 1,
    "inputs",
    `the region reads ${boundary.size} values besides q, k, v, g, beta: ${[...boundary].map((v) => v.name).join(", ")}`,
    exit,
  );
  // A state built as zeros of a run-time shape (dynamic batch: Expand(0, Shape(...))) is no state at all.
  const zeroState = [...boundary].find(isZeroFill);
  const state = zeroState ? undefined : [...boundary][0];

  // 6. Shapes: T, heads and head dims static (the region is unrolled over them); the batch may be symbolic.
  const qs = shapeOf(query.boundary),
    vs = shapeOf(value.boundary),
    gs = shapeOf(g.boundary);
  check(
    qs?.length === 4 && vs?.length === 4 && gs?.length === 3,
    "shapes",
    "q/v/g shapes are not known as [B,T,H,D] / [B,T,H]",
    exit,
  );
  const [batch, T, Hk, K] = qs;
  const [, , Hv, V] = vs;
  check(
    [T, Hk, K, Hv, V].every((d) => typeof d === "number") && batch !== undefined,
    "shapes",
    `T, head counts and head sizes must be static (only the batch may be symbolic): q [${qs}], v [${vs}]`,
    exit,
  );
  const nums = { T: T as number, Hk: Hk as number, Hv: Hv as number, K: K as number, V: V as number };
  // A symbolic batch is probed with PROBE_BATCH sequences.
  const dims = { B: typeof batch === "number" ? batch : PROBE_BATCH, ...nums };
  const sameShape = (a: Dim[] | undefined, b: Dim[]) => !!a && a.length === b.length && a.every((d, i) => d === b[i]);
  check(
    sameShape(shapeOf(key.boundary), qs),
    "shapes",
    `key shape [${shapeOf(key.boundary)}] differs from query shape [${qs}]`,
    key.transpose,
  );
  check(
    sameShape(gs, [batch, T, Hv]) && sameShape(shapeOf(beta.boundary), gs),
    "shapes",
    `g/beta shapes are not [B,T,Hv] = [${batch},${T},${Hv}]`,
    g.transpose,
  );
  check(nums.Hv % nums.Hk === 0, "shapes", `value heads ${Hv} are not a multiple of key heads ${Hk}`, value.transpose);
  const stateShape: Dim[] = [batch, Hv, K, V];
  let stateConst: Value | undefined;
  if (state) {
    check(
      sameShape(shapeOf(state), stateShape),
      "state",
      `initial state ${state.name} has shape [${shapeOf(state)}], expected [B,Hv,K,V] = [${stateShape}]`,
      exit,
    );
    check(
      state.type?.elemType === 1,
      "state",
      `initial state must be float32, it is element type ${state.type?.elemType}`,
      exit,
    );
  } else if (zeroState) {
    stateConst = zeroState;
  } else if (typeof batch === "number") {
    stateConst = findZeroState(nodes, [batch, nums.Hv, nums.K, nums.V]);
  }
  if (finalState)
    check(
      shapeOf(finalState) === undefined || sameShape(shapeOf(finalState), stateShape),
      "state",
      `final state has shape [${shapeOf(finalState)}], expected [${stateShape}]`,
      finalState.producer,
    );

  // 7. Every node is explained by a rule (the l2norm and scale motifs are found first, checked after).
  const ql2 = matchL2norm(valueAfterEntry(query.transpose));
  const kl2 = matchL2norm(valueAfterEntry(key.transpose));
  const scaleMatch = findScale(ql2 ? ql2.out : valueAfterEntry(query.transpose), nodes);
  const motifs = new Map<Node, string>();
  for (const n of [...(ql2?.nodes ?? []), ...(kl2?.nodes ?? [])]) motifs.set(n, "l2norm");
  if (scaleMatch) motifs.set(scaleMatch.node, "scale");
  if (output !== exit.output()) motifs.set(output.producer!, "cast_out");
  const sources = new Map<Value, Source>([
    [query.transpose.output(), "query"],
    [key.transpose.output(), "key"],
    [value.transpose.output(), "value"],
    [g.transpose.output(), "g"],
    [beta.transpose.output(), "beta"],
  ]);
  if (state ?? zeroState) sources.set((state ?? zeroState)!, "state");
  const rules = explainRegion({
    ...form,
    nodes,
    sources,
    motifs,
    exit,
    stateConst,
    T: nums.T,
    hasFinalState: !!finalState,
  });

  // 8. q/k normalisation and scale, read from the graph.
  check(
    !!ql2 === !!kl2,
    "l2norm",
    `the ${ql2 ? "query" : "key"} is L2-normalised but the ${ql2 ? "key" : "query"} is not`,
    (ql2 ?? kl2)?.node,
  );
  for (const m of [ql2, kl2])
    if (m)
      check(
        close(m.eps, L2NORM_EPS, 1e-4),
        "l2norm",
        `L2 norm eps is ${fmt(m.eps)}; the contract fixes it at 1e-6`,
        m.node,
      );
  check(
    scaleMatch,
    "scale",
    "no constant query scale (Mul or Div by a scalar) found after the query input",
    query.transpose,
  );
  check(
    close(scaleMatch.scale, 1 / Math.sqrt(nums.K), 1e-5),
    "scale",
    `query scale is ${fmt(scaleMatch.scale)}, not 1/sqrt(K) = ${fmt(1 / Math.sqrt(nums.K))}`,
    scaleMatch.node,
  );

  const stateRoot = state ?? stateConst;
  const stateDependent = stateRoot
    ? forwardWithin(
        nodes,
        [...stateRoot.consumers].filter((n) => nodes.has(n)),
      )
    : new Set<Node>();
  checkDeltaSubs(nodes, stateDependent, value.transpose);

  return {
    nodes,
    query,
    key,
    value,
    g,
    beta,
    state,
    stateConst,
    zeroState,
    output,
    finalState,
    useQkL2norm: !!ql2,
    scale: scaleMatch.scale,
    dims,
    batch,
    stateDependent,
    rules,
  };
}

/** The first Transpose(0,2,1,3) downstream of the anchor: where the core moves time back before heads. */
function findExitTranspose(anchor: Node): Node {
  const seen = new Set<Node>([anchor]);
  let frontier = [anchor];
  for (let depth = 0; frontier.length && depth < 2000; depth++) {
    const next: Node[] = [];
    for (const n of frontier)
      for (const u of n.users) {
        if (seen.has(u)) continue;
        seen.add(u);
        if (isPerm(u, [0, 2, 1, 3])) return u;
        next.push(u);
      }
    frontier = next;
  }
  fail("exit", "no Transpose(0,2,1,3) moving the output back to [B,T,H,V] downstream of the anchor", anchor);
}

/** Nodes of `within` reachable from `starts` (inclusive) through data edges. */
export function forwardWithin(within: ReadonlySet<Node>, starts: Node[]): Set<Node> {
  const out = new Set<Node>();
  const stack = starts.filter((n) => within.has(n));
  while (stack.length) {
    const n = stack.pop()!;
    if (out.has(n)) continue;
    out.add(n);
    for (const u of n.users) if (within.has(u) && !out.has(u)) stack.push(u);
  }
  return out;
}

function isConstantOnly(n: Node): boolean {
  return n.outputs.every((o) => !o || isConstantValue(o));
}

/**
 * q, k and v among the three rank-4 entries: q is the one scaled by a constant; k is transposed to
 * K^T (chunked form) or unsqueezed to multiply the state (per-token form); v is neither. Operand
 * shapes break a tie when K != V.
 */
function assignRoles(rank4: Node[], region: ReadonlySet<Node>): { query: Node; key: Node; value: Node } {
  // Look a few ops downstream, not past ops that mix this input with others.
  const STOP = new Set(["Transpose", "MatMul", "Sub", "ReduceSum", "ScatterElements", "ScatterND"]);
  /** The first node `pred` accepts a few ops downstream of entry e, or undefined. */
  const near = (e: Node, pred: (n: Node) => boolean): Node | undefined => {
    let frontier = [e];
    const seen = new Set<Node>();
    for (let d = 0; d < 10 && frontier.length; d++) {
      const next: Node[] = [];
      for (const n of frontier)
        for (const u of n.users) {
          if (seen.has(u) || !region.has(u)) continue;
          seen.add(u);
          if (pred(u)) return u;
          if (!STOP.has(u.opType)) next.push(u);
        }
      frontier = next;
    }
    return undefined;
  };
  const isScale = (n: Node) =>
    (n.opType === "Mul" || n.opType === "Div") && n.inputs.some((v) => scalarOf(v) !== undefined);
  const swapsLastTwo = (n: Node) => {
    const p = n.opType === "Transpose" ? permOf(n) : undefined;
    return !!p && p.length >= 2 && p[p.length - 1] === p.length - 2 && p[p.length - 2] === p.length - 1;
  };
  const keyLike = (n: Node) => swapsLastTwo(n) || n.opType === "Unsqueeze";
  const queries = rank4.filter((e) => near(e, isScale));
  const scales = queries.map((e) => near(e, isScale)!.name).join(", ");
  check(
    queries.length === 1,
    "roles",
    `expected exactly one rank-4 input scaled by a constant (the query), found ${queries.length}${scales ? `: ${scales}` : ""}`,
    rank4[0],
  );
  const query = queries[0]!;
  const rest = rank4.filter((e) => e !== query);
  let keys = rest.filter((e) => near(e, keyLike));
  if (keys.length !== 1) {
    const lastDim = (e: Node) => e.inputs[0]?.staticShape?.[3];
    keys = rest.filter((e) => lastDim(e) === lastDim(query));
  }
  check(keys.length === 1, "roles", "cannot tell the key from the value (neither or both are used as keys)", rest[0]);
  const key = keys[0]!;
  return { query, key, value: rest.find((e) => e !== key)! };
}

/** The entry's output, after a Cast to float32 if there is one. */
function valueAfterEntry(t: Node): Value {
  const out = t.output();
  const cast = [...out.consumers].find((n) => n.opType === "Cast");
  return out.consumers.size === 1 && cast ? cast.output() : out;
}

/** The scalar the query is multiplied by (Mul by c, or Div by c = scale 1/c), a few view ops downstream. */
function findScale(q: Value, region: ReadonlySet<Node>): { scale: number; node: Node } | undefined {
  let frontier = [q];
  for (let d = 0; d < 4; d++) {
    const next: Value[] = [];
    for (const v of frontier)
      for (const u of v.consumers) {
        if (!region.has(u)) continue;
        if (u.opType === "Mul") {
          const other = u.inputs[0] === v ? u.inputs[1] : u.inputs[0];
          const c = scalarOf(other);
          if (c !== undefined) return { scale: c, node: u };
        } else if (u.opType === "Div" && u.inputs[0] === v) {
          const c = scalarOf(u.inputs[1]);
          if (c !== undefined) return { scale: 1 / c, node: u };
        } else if (["Pad", "Reshape", "Cast", "Identity"].includes(u.opType)) {
          next.push(u.output());
        }
      }
    frontier = next;
  }
  return undefined;
}

/** Adds the nodes computing the final state (they read region values, not the output); returns that value. */
function absorbFinalState(nodes: Set<Node>, output: Value, exit: Node): Value | undefined {
  const produced = (v: Value) => !!v.producer && nodes.has(v.producer) && v !== output;
  // A region input (e.g. the initial state, read by the last update when there is one chunk) may be read too.
  const regionInput = (v: Value) => [...v.consumers].some((c) => nodes.has(c));
  let grew = true;
  const added: Node[] = [];
  while (grew) {
    grew = false;
    for (const n of nodes)
      for (const u of n.users) {
        if (nodes.has(u) || (u.opType === "Transpose" && isEntryTranspose(u))) continue;
        const ok =
          u.inputs.every((v) => !v || produced(v) || regionInput(v) || isConstantValue(v)) &&
          u.inputs.some((v) => v && produced(v));
        if (ok && u.domain === "") {
          nodes.add(u);
          for (const v of u.inputs) if (v) addConstantCone(nodes, v);
          added.push(u);
          grew = true;
        }
      }
  }
  const escaping = new Set<Value>();
  for (const n of nodes)
    for (const o of n.outputs) {
      if (!o || o === output) continue;
      if (o.isGraphOutput || [...o.consumers].some((c) => !nodes.has(c))) escaping.add(o);
    }
  const list = [...escaping].filter((v) => !isConstantValue(v));
  check(
    list.length <= 1,
    "outputs",
    `values computed inside the core are used outside it: ${list.map((v) => v.name).join(", ")}`,
    list[0]?.producer ?? exit,
  );
  // nodes that only produce dead values are harmless; keep them in the region so they are removed
  return list[0];
}

/** Zeros of any shape: Expand or ConstantOfShape of an all-zero constant (through Cast/Identity). */
function isZeroFill(v: Value): boolean {
  const p = v.producer;
  if (!p || p.domain !== "") return false;
  if (p.opType === "Cast" || p.opType === "Identity") return !!p.inputs[0] && isZeroFill(p.inputs[0]);
  if (p.opType === "Expand") {
    const c = isConstantValue(p.inputs[0]) ? constantOf(p.inputs[0]) : undefined;
    return !!c && c.data.every((x) => x === 0);
  }
  if (p.opType === "ConstantOfShape") {
    const t = p.attr("value")?.t;
    return !t || fromTensor(t).data.every((x) => x === 0);
  }
  return false;
}

/** Adds the nodes computing a constant input (an unfolded constant subgraph) to the region. */
function addConstantCone(nodes: Set<Node>, v: Value): void {
  const p = v.producer;
  if (!p || nodes.has(p) || !isConstantValue(v)) return;
  nodes.add(p);
  for (const i of p.inputs) if (i) addConstantCone(nodes, i);
}

/** The all-zero constant of the state's shape that a core without initial state starts from. */
function findZeroState(nodes: ReadonlySet<Node>, shape: number[]): Value | undefined {
  for (const n of nodes) {
    if (n.opType === "ScatterElements" || n.opType === "ScatterND") continue;
    for (const v of n.inputs) {
      if (!v || (v.producer && nodes.has(v.producer) && !isConstantOnly(v.producer))) continue;
      if (!isConstantValue(v) || (v.staticShape && v.staticShape.join() !== shape.join())) continue;
      const c = constantOf(v);
      if (c && c.dims.join() === shape.join() && c.data.every((x) => x === 0)) return v;
    }
  }
  return undefined;
}

/**
 * The delta rule subtracts the state's prediction from the value: v - S^T k (chunked: u - W S).
 * Every Sub that mixes a state-dependent and a state-free operand must have the state term second.
 */
function checkDeltaSubs(nodes: ReadonlySet<Node>, stateDependent: ReadonlySet<Node>, at: Node): void {
  if (stateDependent.size === 0) return;
  const dep = (v: Value | undefined) => !!v?.producer && stateDependent.has(v.producer);
  let count = 0;
  for (const n of nodes) {
    if (n.opType !== "Sub") continue;
    const [a, b] = [dep(n.inputs[0]), dep(n.inputs[1])];
    if (a === b) continue;
    check(b, "delta-rule", "Sub computes (state prediction) - value; the delta rule is value - (state prediction)", n);
    count++;
  }
  check(count > 0, "delta-rule", "no Sub of the form value - (state prediction) found", at);
}
