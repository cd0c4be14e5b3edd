/**
 * Checks a model before ONNX Runtime sees it: every gdn-domain node against the op contract (src/ops.ts:
 * op names, attribute names, types and values, input and output counts; the gdn opset), and, for a model given
 * as bytes, that it uses no external data (bytes have no folder, and ORT would resolve the files against the
 * process's working directory). ORT's custom-op API cannot list a node's attribute names, so an unknown or
 * misspelt attribute would otherwise be ignored silently.
 */
import { GdnFuseError } from "../errors.js";
import { int64ToBigInt, onnx } from "../ir/onnx.js";
import {
  ATTR_TYPE_CODE,
  DeltaRuleIn,
  GDN_CONTRACT,
  GDN_DOMAIN,
  GDN_OPSET,
  GDN_OPSETS,
  type AttrContract,
} from "../ops.js";

const ATTR_TYPE_NAME: Record<number, string> = {
  1: "a float",
  2: "an int",
  3: "a string",
  4: "a tensor",
  5: "a graph",
  6: "floats",
  7: "ints",
  8: "strings",
  9: "tensors",
  10: "graphs",
  11: "a sparse tensor",
  12: "sparse tensors",
  13: "a type proto",
  14: "type protos",
};
const KIND_NAME = { float: "a float", int: "an int", string: "a string" } as const;

/** Throws GdnFuseError (E_MODEL, E_EXTERNAL_DATA) for a model ORT must not be given. Undecodable bytes pass (ORT says why). */
export function checkModel(bytes: Uint8Array, givenAsBytes: boolean): void {
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch {
    return;
  }
  const graphs = allGraphs(model);
  const usesGdn = graphs.some((g) => g.node?.some((n) => (n.domain ?? "") === GDN_DOMAIN));
  const opset = usesGdn ? checkGdnOpset(model) : GDN_OPSET;
  for (const g of graphs) {
    for (const node of g.node ?? []) if ((node.domain ?? "") === GDN_DOMAIN) checkGdnNode(node, opset);
  }
  if (givenAsBytes) checkNoExternalData(graphs);
}

function allGraphs(model: onnx.IModelProto): onnx.IGraphProto[] {
  const out: onnx.IGraphProto[] = [];
  const visit = (g: onnx.IGraphProto | null | undefined) => {
    if (!g) return;
    out.push(g);
    for (const n of g.node ?? []) for (const a of n.attribute ?? []) [a.g, ...(a.graphs ?? [])].forEach(visit);
  };
  visit(model.graph);
  for (const f of model.functions ?? []) out.push({ node: f.node ?? [] });
  return out;
}

/** The model's gdn opset, when this runtime implements it. */
function checkGdnOpset(model: onnx.IModelProto): number {
  const version = Number(model.opsetImport?.find((o) => (o.domain ?? "") === GDN_DOMAIN)?.version ?? GDN_OPSET);
  if (!GDN_OPSETS.includes(version)) {
    throw new GdnFuseError(
      "E_MODEL",
      `the model imports gdn opset ${version}; this runtime implements gdn opsets ${GDN_OPSETS.join(" and ")}`,
    );
  }
  return version;
}

/**
 * The delta-rule inputs 6-8 are reserved in gdn opset 1. The op library cannot tell a node's opset (ORT's custom-op
 * API does not say it) and implements their opset-2 meaning, so opset-1 models are refused here.
 */
function checkOpset1Inputs(where: string, op: string, node: onnx.INodeProto): void {
  if (op !== "ChunkGatedDeltaRule" && op !== "RecurrentGatedDeltaRule") return;
  const names = GDN_CONTRACT[op].inputs;
  (node.input ?? []).forEach((name, i) => {
    if (i < DeltaRuleIn.cuSeqlens || name === "") return;
    throw new GdnFuseError(
      "E_MODEL",
      `${where}: input ${i} (${names[i]}) is reserved in gdn opset 1 and not implemented by the CPU backend`,
    );
  });
}

function checkGdnNode(node: onnx.INodeProto, opset: number): void {
  const op = node.opType ?? "";
  const where = `${op} node '${node.name ?? ""}'`;
  const contract = (GDN_CONTRACT as Record<string, (typeof GDN_CONTRACT)[keyof typeof GDN_CONTRACT]>)[op];
  if (!Object.hasOwn(GDN_CONTRACT, op) || contract === undefined) {
    throw new GdnFuseError(
      "E_MODEL",
      `${where}: unknown op; gdn opset ${GDN_OPSET} has ${Object.keys(GDN_CONTRACT).join(", ")}`,
    );
  }
  const inputs = node.input?.length ?? 0;
  if (inputs > contract.inputs.length) {
    throw new GdnFuseError("E_MODEL", `${where}: has ${inputs} inputs, the op takes at most ${contract.inputs.length}`);
  }
  if (opset === GDN_OPSET) checkOpset1Inputs(where, op, node);
  const outputs = node.output?.length ?? 0;
  if (outputs > contract.outputs.length) {
    throw new GdnFuseError(
      "E_MODEL",
      `${where}: has ${outputs} outputs, the op has at most ${contract.outputs.length}`,
    );
  }
  const known = Object.keys(contract.attributes);
  for (const attr of node.attribute ?? []) {
    const name = attr.name ?? "";
    const spec = Object.hasOwn(contract.attributes, name) ? contract.attributes[name] : undefined;
    if (spec === undefined) {
      const list = known.length ? `known: ${known.join(", ")}` : "the op has no attributes";
      throw new GdnFuseError("E_MODEL", `${where}: unknown attribute '${name}' (${list})`);
    }
    checkAttribute(where, name, attr, spec);
  }
  if (opset === GDN_OPSET) checkAddedInputs(where, contract, node);
}

function checkAttribute(where: string, name: string, attr: onnx.IAttributeProto, spec: AttrContract): void {
  const type = Number(attr.type ?? 0);
  if (type !== ATTR_TYPE_CODE[spec.kind]) {
    const got = ATTR_TYPE_NAME[type] ?? `attribute type ${type}`;
    throw new GdnFuseError("E_MODEL", `${where}: attribute ${name} must be ${KIND_NAME[spec.kind]}, got ${got}`);
  }
  const value =
    spec.kind === "float"
      ? Number(attr.f ?? 0)
      : spec.kind === "int"
        ? Number(int64ToBigInt(attr.i))
        : new TextDecoder().decode(attr.s ?? new Uint8Array());
  const problem = spec.check(value);
  // the exact int64 (a Number rounds 2^63-1), a string quoted
  const shown =
    spec.kind === "int"
      ? String(int64ToBigInt(attr.i))
      : typeof value === "string"
        ? JSON.stringify(value)
        : String(value);
  if (problem !== null) throw new GdnFuseError("E_MODEL", `${where}: attribute ${name} ${problem}, got ${shown}`);
}

function checkNoExternalData(graphs: onnx.IGraphProto[]): void {
  for (const g of graphs) {
    const tensors: [string, onnx.ITensorProto][] = (g.initializer ?? []).map((t) => [
      `initializer '${t.name ?? ""}'`,
      t,
    ]);
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) if (a.t) tensors.push([`tensor of node '${n.name ?? ""}'`, a.t]);
    }
    for (const [what, t] of tensors) {
      if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
      const location = t.externalData?.find((e) => e.key === "location")?.value ?? "?";
      throw new GdnFuseError(
        "E_EXTERNAL_DATA",
        `the model has external data (${what} in ${location}), which a model given as bytes cannot locate; ` +
          `give the model by path (its external data files are found next to it)`,
      );
    }
  }
}

/** Inputs that a later gdn opset added (CausalConv1d's 4-7) are refused in opset-1 models. */
type Contract = (typeof GDN_CONTRACT)[keyof typeof GDN_CONTRACT];
function checkAddedInputs(where: string, contract: Contract, node: onnx.INodeProto): void {
  const count = contract.opset1Inputs;
  if (count === undefined) return;
  (node.input ?? []).forEach((name, i) => {
    if (i < count || name === "") return;
    const why = `input ${i} (${contract.inputs[i]}) is defined from gdn opset 2 on; this model imports gdn opset 1`;
    throw new GdnFuseError("E_MODEL", `${where}: ${why}`);
  });
}
