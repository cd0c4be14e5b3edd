/**
 * layer-gating: the gate projections feeding a fused core -> gdn.GatedDeltaGating.
 *
 *   a ─ Add(dt_bias) ─ Softplus ─┬─────────────── Where(add > 20, add, softplus)   (torch threshold, optional)
 *                                └ Mul(-exp(A_log)) ───────────────────────────────> g     (core input 3)
 *   b ─ Sigmoid ────────────────────────────────────────────────────────────────────> beta  (core input 4)
 *
 * -exp(A_log) is either computed (Neg(Exp(A_log))) or already folded by the exporter into one
 * constant; A_log is then recovered as log(-c) (every element must be < 0). dt_bias and A_log are
 * read as constants of shape [H]; H must equal the core's value heads. A half-precision `a` widened by
 * a Cast (HF: `a.float() + dt_bias`) is taken before the Cast: the op widens a to float32 itself.
 */
import {
  arrayToTensor,
  constantOf,
  type ConstTensor,
  dimsOf,
  fusedOp,
  type Node,
  sameDims,
  showDims,
  staticDim,
  uniformScalar,
  type Value,
} from "../src/ir/index.js";
import {
  CORE_ANCHORS,
  candidatePass,
  valueHeads,
  addGdnNode,
  check,
  checkFloatType,
  fail,
  widenedFrom,
} from "../src/pattern/index.js";
import { DeltaRuleIn, FLOAT, GdnOp, SOFTPLUS_THRESHOLD, typeName } from "../src/ops.js";

export const layerGating = candidatePass({
  name: "layer-gating",
  description: "beta = sigmoid(b), g = -exp(A_log) * softplus(a + dt_bias) -> gdn.GatedDeltaGating",
  anchors: CORE_ANCHORS,
  rewrite(core, ctx) {
    const gOut = core.inputs[DeltaRuleIn.g]!;
    const betaOut = core.inputs[DeltaRuleIn.beta]!;
    const H = valueHeads(core);
    const sig = betaOut.producer;
    check(
      sig && sig.opType === "Sigmoid" && sig.domain === "",
      "beta",
      `beta comes from ${sig?.opType ?? "a graph input"}, not Sigmoid(b)`,
      sig ?? core,
    );
    const b = sig.inputs[0]!;
    const m = matchG(gOut, H);
    // HF: softplus(a.float() + dt_bias). GatedDeltaGating widens a to float32 itself, so the Cast goes.
    const aHalf = widenedFrom(m.a);
    if (aHalf) {
      m.a = aHalf;
      m.count++;
    }
    checkFloatType(m.a, "dtype", "a", sig);
    checkFloatType(b, "dtype", "b", sig);
    const gType = gOut.type?.elemType;
    check(
      gType === FLOAT,
      "dtype",
      `g is ${typeName(gType)}; GatedDeltaGating returns g in float32 (docs/ops.md) and the core reads float32 g, ` +
        `so a graph computing g in ${typeName(gType)} is not this op`,
      m.mul,
    );
    check(
      sameDims(dimsOf(m.a), dimsOf(b)),
      "shape",
      `a ${showDims(dimsOf(m.a))} and b ${showDims(dimsOf(b))} differ in shape`,
      sig,
    );
    const aLog = ctx.graph.addInitializer(arrayToTensor(`${core.name}_A_log`, [H], FLOAT, m.aLog));
    const dtBias = ctx.graph.addInitializer(arrayToTensor(`${core.name}_dt_bias`, [H], FLOAT, m.dtBias.data));
    ctx.graph.removeNodes([m.mul, sig]);
    const node = addGdnNode(ctx, {
      opType: GdnOp.GatedDeltaGating,
      name: "GatedDeltaGating",
      inputs: [m.a, b, aLog, dtBias],
      outputs: [gOut, betaOut],
    });
    return { op: fusedOp(node), node: node.name, replacedNodes: m.count + 1, details: { H, threshold: m.threshold } };
  },
});

interface GMatch {
  a: Value;
  dtBias: ConstTensor;
  aLog: Float64Array;
  mul: Node;
  count: number;
  threshold: boolean;
}

function matchG(g: Value, H: number): GMatch {
  const mul = g.producer;
  check(
    mul && mul.opType === "Mul" && mul.domain === "",
    "g",
    `g comes from ${mul?.opType ?? "a graph input"}, not Mul(-exp(A_log), softplus(...))`,
    mul,
  );
  let sp: Value | undefined;
  let coef: Value | undefined;
  for (const v of mul.inputs) {
    const p = v?.producer;
    if (p && ((p.opType === "Softplus" && p.domain === "") || isSoftplusWhere(p))) sp = v;
    else coef = v;
  }
  check(sp && coef, "g", "neither operand of the g Mul is softplus(a + dt_bias)", mul);
  let count = 1;
  let spNode = sp.producer!;
  let threshold = false;
  let add: Node | undefined;
  if (spNode.opType === "Where") {
    const w = matchThresholdWhere(spNode);
    add = w.add;
    spNode = w.softplus;
    threshold = true;
    count += 2;
  } else add = spNode.inputs[0]?.producer;
  check(
    spNode.opType === "Softplus" && spNode.domain === "",
    "softplus",
    "softplus is not a standard Softplus node",
    spNode,
  );
  count++;
  check(
    add && add.opType === "Add" && add.domain === "" && spNode.inputs[0] === add.output(),
    "softplus",
    "softplus does not read a + dt_bias (an Add)",
    spNode,
  );
  count++;
  let dtV: Value | undefined, a: Value | undefined;
  for (const v of add.inputs) {
    if (constantOf(v)) dtV = v;
    else a = v;
  }
  check(dtV && a, "dt_bias", "a + dt_bias has no constant operand (dt_bias must be an initializer)", add);
  const dtBias = constantOf(dtV)!;
  check(
    dtBias.data.length === H && (dtBias.dims.length === 1 || dtBias.dims.slice(0, -1).every((d) => d === 1)),
    "dt_bias",
    `dt_bias has shape [${dtBias.dims}], not [${H}]`,
    add,
  );
  check(staticDim(a, -1) === H, "shape", `a has shape ${showDims(dimsOf(a))}, its last dim is not H = ${H}`, add);
  return { a, dtBias, aLog: aLogOf(coef, H, mul), mul, count, threshold };
}

/** A Where with a Softplus among its branches: the candidate for torch's thresholded softplus. */
function isSoftplusWhere(w: Node): boolean {
  return w.opType === "Where" && w.domain === "" && w.inputs.slice(1).some((v) => v?.producer?.opType === "Softplus");
}

/** torch softplus(x, threshold=20): Where(Greater(x, 20), x, Softplus(x)); every part checked. */
function matchThresholdWhere(w: Node): { add: Node; softplus: Node } {
  const gt = w.inputs[0]?.producer;
  const x = w.inputs[1];
  const sp = w.inputs[2]?.producer;
  check(
    sp && sp.opType === "Softplus" && sp.domain === "",
    "softplus",
    `the softplus Where takes ${sp?.opType ?? "a graph input"} below the threshold, not Softplus(x) (operands swapped?)`,
    w,
  );
  check(
    gt && gt.opType === "Greater" && gt.domain === "",
    "softplus",
    `the softplus Where's condition comes from ${gt?.opType ?? "a graph input"}, not Greater(x, ${SOFTPLUS_THRESHOLD})`,
    w,
  );
  check(
    x && sp.inputs[0] === x && gt.inputs[0] === x && x.producer,
    "softplus",
    "the softplus Where, its Greater and its Softplus do not all read the same x",
    w,
  );
  const t = uniformScalar(gt.inputs[1]);
  check(
    t === SOFTPLUS_THRESHOLD,
    "softplus",
    `the softplus threshold is ${t ?? "not a constant"}; torch's softplus returns x above ${SOFTPLUS_THRESHOLD}`,
    gt,
  );
  return { add: x.producer, softplus: sp };
}

/** A_log from -exp(A_log): Neg(Exp(A_log)) with A_log constant, or a folded constant c < 0 (A_log = log(-c)). */
function aLogOf(coef: Value, H: number, at: Node): Float64Array {
  const neg = coef.producer;
  const exp = neg?.inputs[0]?.producer;
  if (neg && neg.opType === "Neg" && neg.domain === "" && exp?.opType === "Exp" && exp.domain === "") {
    const c = constantOf(exp.inputs[0]);
    check(c && c.data.length === H, "A_log", `A_log is not a constant of ${H} elements`, neg);
    check(
      c.dims.slice(0, -1).every((d) => d === 1),
      "A_log",
      `A_log has shape [${c.dims}], not [${H}]`,
      neg,
    );
    return Float64Array.from(c.data);
  }
  const c = constantOf(coef);
  check(c, "A_log", "the softplus multiplier is not a constant -exp(A_log)", at);
  check(c.data.length === H, "A_log", `the softplus multiplier has ${c.data.length} elements, not H = ${H}`, at);
  check(
    c.dims.slice(0, -1).every((d) => d === 1),
    "A_log",
    `the softplus multiplier has shape [${c.dims}], not [${H}]`,
    at,
  );
  for (const x of c.data)
    if (!(x < 0) || !Number.isFinite(x))
      fail("A_log", `the softplus multiplier has element ${x}; -exp(A_log) is < 0`, at);
  return c.data.map((x) => Math.log(-x));
}
