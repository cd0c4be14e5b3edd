/**
 * layer-gated-rmsnorm: the gated RMSNorm after the core (Qwen3NextRMSNormGated) -> gdn.GatedRMSNorm.
 *
 *   x ─┬─ Pow(2) ─ ReduceMean(-1, keepdims) ─ Add(eps) ─ Sqrt ─ Reciprocal ─┐      (or Div(x, Sqrt(...)))
 *      └──────────────────────────────────────────────────────────────── Mul ─ Mul(w, ·) ─ Mul(·, silu(gate)) ─> y
 * Checks: the mean of squares over the last axis, eps added inside the square root (a scalar
 * constant), the weight an initializer of [D] used as `w * x` (not Gemma's `(1 + w) * x`), and the
 * gate through SiLU (gate * sigmoid(gate)).
 *
 * Half precision (HF `Qwen3NextRMSNormGated` on a float16/bfloat16 module):
 *   x16 ─ Cast(f32) ─ [the float32 norm above] ─ Cast(x16) ─ Mul(w16, ·) ─ Cast(f32) ─ Mul(·, silu(Cast(f32)(gate16))) ─ Cast(x16) ─> y16
 * The Casts are absorbed: GatedRMSNorm(x16, gate16, w16) accumulates in float32 and returns x's type.
 */
import {
  attr,
  constantOf,
  dimsOf,
  fusedOp,
  intsOf,
  type Node,
  sameDims,
  scalarOf,
  showDims,
  staticDim,
  uniformScalar,
  type Value,
} from "../src/ir/index.js";
import {
  candidatePass,
  addGdnNode,
  castConsumer,
  floatCastConsumer,
  check,
  checkFloatType,
  otherInput,
  siluInput,
  soleConsumer,
  widenedFrom,
} from "../src/pattern/index.js";
import { FLOAT, GdnOp, RmsNormAttr, typeName } from "../src/ops.js";

export const layerGatedRmsnorm = candidatePass({
  name: "layer-gated-rmsnorm",
  description: "weight * x * rsqrt(mean(x^2) + eps) * silu(gate) -> gdn.GatedRMSNorm",
  anchors: ["ReduceMean"],
  rewrite(mean, ctx) {
    const m = matchNorm(mean);
    ctx.graph.removeNodes([m.last]);
    const node = addGdnNode(ctx, {
      opType: GdnOp.GatedRMSNorm,
      name: "GatedRMSNorm",
      inputs: [m.x, m.gate, m.weight],
      outputs: [m.y],
      attributes: [attr.float(RmsNormAttr.epsilon, m.eps)],
    });
    return { op: fusedOp(node), node: node.name, replacedNodes: m.count, details: { D: m.D, epsilon: m.eps } };
  },
});

interface NormMatch {
  x: Value;
  gate: Value;
  weight: Value;
  y: Value;
  last: Node;
  eps: number;
  D: number;
  count: number;
}

/** A node of the standard (ai.onnx) domain with this op type. */
const isStd = (n: Node, opType: string) => n.opType === opType && n.domain === "";
const opName = (n: Node) => (n.domain ? `${n.domain}.${n.opType}` : n.opType);

function matchNorm(mean: Node): NormMatch {
  const sq = mean.inputs[0]?.producer;
  check(
    sq && ((isStd(sq, "Pow") && scalarOf(sq.inputs[1]) === 2) || (isStd(sq, "Mul") && sq.inputs[0] === sq.inputs[1])),
    "anchor",
    "ReduceMean does not read x^2",
    mean,
  );
  const xInner = sq.inputs[0]!;
  const rank = xInner.rank;
  const D = staticDim(xInner, -1);
  check(
    rank !== undefined && D !== undefined,
    "shape",
    `the normalised input ${showDims(dimsOf(xInner))} has no static last dim`,
    mean,
  );
  const axes = mean.inputs[1] ? intsOf(mean.inputs[1]) : mean.attrInts("axes");
  check(
    axes?.length === 1 && (axes[0] === -1 || axes[0] === rank - 1) && mean.attrInt("keepdims", 1) === 1,
    "anchor",
    `ReduceMean runs over axes [${axes}], not the last axis with keepdims`,
    mean,
  );
  const xType = checkFloatType(xInner, "dtype", "the normalised input", mean);
  // eps inside the square root
  const add = soleConsumer(mean.output());
  check(add && isStd(add, "Add"), "eps", `mean(x^2) goes to ${add?.opType ?? "several nodes"}, not + eps`, add ?? mean);
  const eps = scalarOf(otherInput(add, mean.output()));
  check(
    eps !== undefined && Number.isFinite(eps) && eps >= 0,
    "eps",
    "the eps added to mean(x^2) is not a finite scalar constant >= 0",
    add,
  );
  const sqrt = soleConsumer(add.output());
  check(
    sqrt && isStd(sqrt, "Sqrt"),
    "eps",
    `mean(x^2) + eps goes to ${sqrt ? opName(sqrt) : "several nodes"}, not Sqrt`,
    sqrt ?? add,
  );
  let normed: Node | undefined;
  const next = soleConsumer(sqrt.output());
  if (next && isStd(next, "Reciprocal")) {
    const m = soleConsumer(next.output());
    if (m && isStd(m, "Mul") && otherInput(m, next.output()) === xInner) normed = m;
  } else if (next && isStd(next, "Div") && next.inputs[0] === xInner && next.inputs[1] === sqrt.output()) normed = next;
  check(
    normed,
    "normalise",
    `the root goes to ${next?.opType ?? "several nodes"}, not x * (1 / root) or x / root (eps must sit inside the square root)`,
    next ?? sqrt,
  );
  // weight * normed; half-precision exports cast around it (HF: `w * x.to(input_dtype)`, then `.float()`)
  let casts = 0;
  let normedOut = normed.output();
  const nCast = floatCastConsumer(normedOut, "weight", "the normalised value");
  if (nCast) {
    normedOut = nCast.output();
    casts++;
  }
  const wMul = soleConsumer(normedOut);
  check(wMul && isStd(wMul, "Mul"), "weight", "the normalised value is not multiplied by the weight", wMul ?? normed);
  const weight = otherInput(wMul, normedOut)!;
  const wp = weight.producer;
  if (wp && wp.opType === "Add" && wp.inputs.some((v) => uniformScalar(v) === 1))
    check(false, "weight", "the norm weight is (1 + w) (offset weight), not w", wp);
  const wc = constantOf(weight);
  check(
    wc && (weight.initializer || wp?.opType === "Constant"),
    "weight",
    "the norm weight is not an initializer",
    wMul,
  );
  check(
    wc.data.length === D && wc.dims[wc.dims.length - 1] === D,
    "weight",
    `the norm weight has shape [${wc.dims}], not [${D}]`,
    wMul,
  );
  let weighted = wMul.output();
  const wCast = castConsumer(weighted, FLOAT);
  if (wCast) {
    weighted = wCast.output();
    casts++;
  }
  // * silu(gate)
  const gMul = soleConsumer(weighted);
  check(gMul && isStd(gMul, "Mul"), "gate", "the weighted norm is not multiplied by the gate", gMul ?? wMul);
  const siluV = otherInput(gMul, weighted)!;
  check(
    !constantOf(siluV),
    "gate",
    `the weighted norm is multiplied by a second constant (${siluV.name}), not by silu(gate)`,
    gMul,
  );
  const gate0 = siluInput(siluV.producer);
  check(
    gate0,
    "gate",
    `the gate goes through ${siluV.producer?.opType ?? "nothing"}, not SiLU (gate * sigmoid(gate))`,
    siluV.producer ?? gMul,
  );
  let y = gMul.output();
  let last = gMul;
  const yCast = floatCastConsumer(y, "dtype", "the gated norm");
  if (yCast) {
    y = yCast.output();
    last = yCast;
    casts++;
  }
  // GatedRMSNorm returns x's type and accumulates in float32: take x (and the gate) on the side of
  // their `.float()` Casts that has the output's type. Dropped: the intermediate roundings of the
  // normalised and weighted values to x's type (HF's `.to(input_dtype)`), below one ulp of the output.
  const yType = y.type?.elemType;
  let x = xInner;
  if (yType !== xType && widenedFrom(xInner)?.type?.elemType === yType) {
    x = widenedFrom(xInner)!;
    casts++;
  }
  const outerType = x.type?.elemType;
  check(
    yType === outerType,
    "dtype",
    `the norm reads ${typeName(outerType)} and returns ${typeName(yType)}; GatedRMSNorm returns x's type`,
    last,
  );
  let gate = gate0;
  if (gate.type?.elemType !== outerType && widenedFrom(gate)?.type?.elemType === outerType) {
    gate = widenedFrom(gate)!;
    casts++;
  }
  const gType = gate.type?.elemType,
    wType = weight.type?.elemType;
  check(
    gType === outerType,
    "dtype",
    `the gate is ${typeName(gType)} and x ${typeName(outerType)}; GatedRMSNorm takes the gate in x's type`,
    gMul,
  );
  check(
    wType === outerType || wType === FLOAT,
    "dtype",
    `the norm weight is ${typeName(wType)}; GatedRMSNorm takes it in x's type (${typeName(outerType)}) or float32`,
    wMul,
  );
  check(
    sameDims(dimsOf(gate), dimsOf(x)),
    "gate",
    `the gate ${showDims(dimsOf(gate))} and x ${showDims(dimsOf(x))} differ in shape`,
    gMul,
  );
  return { x, gate, weight, y, last, eps: Math.fround(eps), D, count: 10 + casts };
}
