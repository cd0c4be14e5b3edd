/**
 * Validation of a decoded model to the level of ONNX's checker (onnx/checker.cc): opset imports, SSA form
 * and topological order of every graph (subgraphs and functions too), tensors whose data matches their dims
 * and data type (sizes in BigInt, so no dim can overflow the arithmetic), attributes whose type matches the
 * one field they set, and value_info types. Each problem is one GdnFuseError naming where it is.
 * External tensors are checked against their files elsewhere (checkExternalData); here only their fields.
 */
import { GdnFuseError } from "../errors.js";
import { int64ToBigInt, int64ToNumber, onnx } from "./onnx.js";
import { onnxTypeName, tensorByteSize } from "./tensor.js";

export { onnxTypeName, tensorByteSize };

/** A name for a one-line message: quoted and escaped (a corrupt file can put anything in a name). */
export function quote(name: string | null | undefined): string {
  const s = name ?? "";
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}...` : s);
}

/** Where a problem is, e.g. `model.onnx: initializer "w": `; built only when a check fails (big models
 * have tens of thousands of names, and quoting each one up front costs more than the checks). */
type Where = () => string;

const fail = (where: Where, what: string): never => {
  throw new GdnFuseError("E_MODEL", `${where()}${what}`);
};

// ---- tensors ------------------------------------------------------------------------------------
/** Data types ONNX defines (1 float ... 24 float8e8m0); 0 is UNDEFINED. */
const KNOWN_TYPES = 24;
const STRING = 8;
const FOUR_BIT = new Set([21, 22, 23]);
/** The largest element or byte count a tensor may have (what a JS number holds exactly). */
const MAX_COUNT = BigInt(Number.MAX_SAFE_INTEGER);

/** The repeated field that holds a data type's values when raw_data is not used. */
function typedField(dataType: number): string {
  switch (dataType) {
    case 1:
    case 14:
      return "float_data";
    case 11:
    case 15:
      return "double_data";
    case 7:
      return "int64_data";
    case 12:
    case 13:
      return "uint64_data";
    case STRING:
      return "string_data";
    default:
      return "int32_data";
  }
}

/** How many values the typed field holds for `count` elements (complex: 2 each; 4-bit: 2 per int32). */
function typedCount(dataType: number, count: bigint): bigint {
  if (dataType === 14 || dataType === 15) return count * 2n;
  if (FOUR_BIT.has(dataType)) return (count + 1n) / 2n;
  return count;
}

const VALUE_FIELDS = [
  ["raw_data", "rawData"],
  ["float_data", "floatData"],
  ["int32_data", "int32Data"],
  ["string_data", "stringData"],
  ["int64_data", "int64Data"],
  ["double_data", "doubleData"],
  ["uint64_data", "uint64Data"],
] as const;

function filledFields(t: onnx.ITensorProto): { name: string; length: number }[] {
  const out: { name: string; length: number }[] = [];
  for (const [name, key] of VALUE_FIELDS) {
    const v = t[key] as ArrayLike<unknown> | null | undefined;
    if (v && v.length > 0) out.push({ name, length: v.length });
  }
  return out;
}

const showDims = (t: onnx.ITensorProto): string => `dims [${(t.dims ?? []).map((d) => int64ToBigInt(d)).join(", ")}]`;

/** Element count of the dims (exact), after checking that none is negative and the count is addressable. */
export function checkedElementCount(t: onnx.ITensorProto, where: Where): bigint {
  const dims = (t.dims ?? []).map((d) => int64ToBigInt(d));
  if (dims.some((d) => d < 0n)) fail(where, `${showDims(t)} has a negative dim`);
  const count = dims.reduce((n, d) => n * d, 1n);
  if (count > MAX_COUNT) fail(where, `${showDims(t)} hold more elements than can be addressed`);
  const bytes = tensorByteSize(t.dataType ?? 0, count);
  if (bytes !== undefined && bytes > MAX_COUNT) fail(where, `${showDims(t)} hold more bytes than can be addressed`);
  return count;
}

/** Checks one TensorProto; `where` ends in ": " and names it (e.g. `model.onnx: initializer "w": `). */
export function checkTensor(t: onnx.ITensorProto, where: Where): void {
  const dt = t.dataType ?? 0;
  if (dt === 0) fail(where, "data_type is not set");
  if (!Number.isInteger(dt) || dt < 0 || dt > KNOWN_TYPES) fail(where, `unknown data_type ${dt}`);
  const count = checkedElementCount(t, where);
  const fields = filledFields(t);
  const location = t.dataLocation ?? 0;
  if (location !== 0 && location !== 1) fail(where, `unknown data_location ${location}`);
  if (location === 1) {
    if (fields.length > 0) fail(where, `has external data and also ${fields[0]!.name}`);
    if (dt === STRING) fail(where, "a string tensor cannot use external data");
    return; // sizes are checked against the file by checkExternalData
  }
  if (fields.length > 1) fail(where, `has both ${fields[0]!.name} and ${fields[1]!.name}`);
  const field = fields[0];
  if (!field) {
    if (count !== 0n) fail(where, `has no data, ${showDims(t)} of ${onnxTypeName(dt)} need ${count} elements`);
    return;
  }
  if (field.name === "raw_data") {
    if (dt === STRING) fail(where, "a string tensor cannot use raw_data");
    const need = tensorByteSize(dt, count)!;
    if (BigInt(field.length) !== need)
      fail(where, `raw_data has ${field.length} bytes, ${showDims(t)} of ${onnxTypeName(dt)} need ${need}`);
    return;
  }
  const expected = typedField(dt);
  if (field.name !== expected)
    fail(where, `holds ${field.name}, but data_type ${onnxTypeName(dt)} keeps its values in ${expected}`);
  const need = typedCount(dt, count);
  if (BigInt(field.length) !== need)
    fail(where, `${field.name} has ${field.length} values, ${showDims(t)} need ${need}`);
}

// ---- value_info ---------------------------------------------------------------------------------
/** What is wrong with a type (unknown elem_type, negative dim), or undefined. */
function typeProblem(t: onnx.ITypeProto | null | undefined): string | undefined {
  if (!t) return undefined;
  const tensor = t.tensorType ?? t.sparseTensorType;
  if (tensor) {
    const et = tensor.elemType ?? 0;
    if (!Number.isInteger(et) || et < 0 || et > KNOWN_TYPES) return `unknown elem_type ${et}`;
    for (const d of tensor.shape?.dim ?? []) {
      const v = d.dimValue;
      if (v != null && (typeof v === "number" ? v < 0 : v.high < 0 && !v.unsigned))
        return `shape has a negative dim ${int64ToBigInt(v)}`;
    }
  }
  return (
    typeProblem(t.sequenceType?.elemType) ?? typeProblem(t.optionalType?.elemType) ?? typeProblem(t.mapType?.valueType)
  );
}

function checkValueInfo(v: onnx.IValueInfoProto, kind: string, where: Where): void {
  if (!v.name) fail(where, `a ${kind} has no name`);
  const problem = typeProblem(v.type);
  if (problem) fail(where, `${kind} ${quote(v.name)}: ${problem}`);
}

// ---- attributes ---------------------------------------------------------------------------------
const ATTRIBUTE_TYPES = onnx.AttributeProto.AttributeType as unknown as Record<string, number>;
const TYPE_NAMES: Record<number, string> = Object.fromEntries(Object.entries(ATTRIBUTE_TYPES).map(([k, v]) => [v, k]));
/** Proto field name and JS key of the one value each attribute type sets, in field order. */
const ATTRIBUTE_FIELDS: [type: number, field: string, key: string, repeated: boolean][] = [
  [1, "f", "f", false],
  [2, "i", "i", false],
  [3, "s", "s", false],
  [4, "t", "t", false],
  [5, "g", "g", false],
  [11, "sparse_tensor", "sparseTensor", false],
  [13, "tp", "tp", false],
  [6, "floats", "floats", true],
  [7, "ints", "ints", true],
  [8, "strings", "strings", true],
  [9, "tensors", "tensors", true],
  [10, "graphs", "graphs", true],
  [12, "sparse_tensors", "sparseTensors", true],
  [14, "type_protos", "typeProtos", true],
];

/** The value fields an attribute sets (ONNX wants exactly one; repeated fields count when non-empty). */
function setFields(a: onnx.IAttributeProto): (typeof ATTRIBUTE_FIELDS)[number][] {
  const rec = a as Record<string, unknown>;
  const set: (typeof ATTRIBUTE_FIELDS)[number][] = [];
  for (const entry of ATTRIBUTE_FIELDS) {
    const v = rec[entry[2]];
    const present = entry[3]
      ? (v as unknown[] | undefined)?.length
      : v != null && Object.prototype.hasOwnProperty.call(rec, entry[2]);
    if (present) set.push(entry);
  }
  return set;
}

/** Checks an attribute's name, type and value field, and the tensors it holds (not its subgraphs). */
function checkAttribute(a: onnx.IAttributeProto, node: Where): void {
  if (!a.name) fail(node, ": an attribute has no name");
  const at: Where = () => `${node()}: attribute ${quote(a.name)}`;
  if (a.refAttrName) return; // a function body's reference to the caller's attribute: no value here
  const type = a.type ?? 0;
  if (type === 0) fail(at, " has no type");
  const typeName = TYPE_NAMES[type];
  if (typeName === undefined) fail(at, ` has unknown type ${type}`);
  const set = setFields(a);
  if (set.length > 1) fail(at, ` sets more than one value (${set.map((s) => s[1]).join(", ")})`);
  const expected = ATTRIBUTE_FIELDS.find(([t]) => t === type)!;
  if (set.length === 1 && set[0]![0] !== type) fail(at, ` has type ${typeName} but sets ${set[0]![1]}`);
  if (set.length === 0 && !expected[3]) fail(at, ` has type ${typeName} but no ${expected[1]} value`);
  if (type === 1 || type === 2 || type === 3 || type === 6 || type === 7 || type === 8) return; // no tensors inside
  for (const t of [a.t, ...(a.tensors ?? [])]) if (t) checkTensor(t, () => `${at()}: tensor ${quote(t.name)}: `);
  for (const s of [a.sparseTensor, ...(a.sparseTensors ?? [])]) {
    if (s?.values) checkTensor(s.values, () => `${at()}: sparse tensor values: `);
    if (s?.indices) checkTensor(s.indices, () => `${at()}: sparse tensor indices: `);
  }
}

// ---- graphs -------------------------------------------------------------------------------------
interface Scope {
  names: Set<string>;
  outer: Scope | undefined;
}

function inScope(s: Scope | undefined, name: string): boolean {
  for (let c = s; c; c = c.outer) if (c.names.has(name)) return true;
  return false;
}

function nodeLabel(n: onnx.INodeProto, i: number): string {
  return `node ${n.name ? quote(n.name) : `#${i}`} (${n.opType ? quote(n.opType).slice(1, -1) : "no op_type"})`;
}

/** domain -> opset version; "ai.onnx" is the default domain "". */
type Opsets = Map<string, number>;
const domainOf = (d: string | null | undefined): string => (d === "ai.onnx" ? "" : (d ?? ""));

function readOpsets(list: onnx.IOperatorSetIdProto[] | null | undefined, where: Where, inherited?: Opsets): Opsets {
  const own: Opsets = new Map();
  for (const o of list ?? []) {
    const domain = domainOf(o.domain);
    const version = int64ToNumber(o.version);
    if (own.has(domain)) fail(where, `opset_import lists domain ${quote(domain)} twice`);
    if (!(version >= 1)) fail(where, `opset_import of domain ${quote(domain)} has version ${version}; it must be >= 1`);
    own.set(domain, version);
  }
  return inherited ? new Map([...inherited, ...own]) : own;
}

/** Standard ops whose first input may be absent (Loop's trip count M, Optional's value). */
const OPTIONAL_FIRST_INPUT = new Set(["Loop", "Optional"]);
/** Common standard ops whose every input is required (ONNX's schema check refuses "" for any of them). */
const ALL_INPUTS_REQUIRED = new Set([
  "Add",
  "Sub",
  "Mul",
  "Div",
  "Pow",
  "MatMul",
  "Concat",
  "Sum",
  "Max",
  "Min",
  "Mean",
  "Where",
  "Equal",
  "Less",
  "Greater",
  "LessOrEqual",
  "GreaterOrEqual",
  "And",
  "Or",
  "Not",
  "Transpose",
  "Reshape",
  "Gather",
  "GatherElements",
  "Expand",
  "Tile",
  "Unsqueeze",
  "Cast",
  "CastLike",
  "Shape",
  "Sigmoid",
  "Exp",
  "Log",
  "Neg",
  "Sqrt",
  "Reciprocal",
  "Softplus",
  "Softmax",
  "Tanh",
  "Relu",
  "Abs",
  "Identity",
  "CumSum",
  "Einsum",
  "ScatterND",
  "ScatterElements",
]);

/** The index of a required standard-op input given as "" (absent), or -1. */
function requiredButAbsent(n: onnx.INodeProto): number {
  const inputs = n.input ?? [];
  if (ALL_INPUTS_REQUIRED.has(n.opType!)) return inputs.indexOf("");
  return inputs[0] === "" && !OPTIONAL_FIRST_INPUT.has(n.opType!) ? 0 : -1;
}

interface Context {
  label: string;
  opsets: Opsets;
  functions: Set<string>;
}

/**
 * Checks nodes in order: each input is defined before use (in `scope` or by an earlier node), each output
 * is assigned once (SSA), domains are imported, attributes are well-formed, subgraphs recursively.
 */
function checkNodes(nodes: onnx.INodeProto[], scope: Scope, where: Where, ctx: Context): void {
  const producer = new Map<string, number>(); // value -> index of the first node that writes it
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) if (o && !producer.has(o)) producer.set(o, i);
  });
  nodes.forEach((n, i) => {
    const label = (): string => nodeLabel(n, i);
    const at: Where = () => `${where()}${label()}`;
    if (!n.opType) fail(at, " has no op_type");
    const domain = domainOf(n.domain);
    if (!ctx.opsets.has(domain) && !ctx.functions.has(`${domain}\u0000${n.opType}`)) {
      fail(at, `: domain ${quote(domain)} has no opset_import`);
    }
    const absent = domain === "" ? requiredButAbsent(n) : -1;
    if (absent >= 0) fail(at, `: input ${absent} is required; an empty name means it is absent`);
    for (const input of n.input ?? []) {
      if (input === "" || inScope(scope, input)) continue;
      const later = producer.get(input);
      if (later !== undefined)
        fail(
          at,
          ` reads ${quote(input)} before ${nodeLabel(nodes[later]!, later)} produces it (nodes must be in topological order)`,
        );
      fail(at, ` reads ${quote(input)}, which no node, initializer or graph input produces`);
    }
    const attributes = n.attribute ?? [];
    for (const a of attributes) checkAttribute(a, at);
    if (attributes.length > 1) {
      const seen = new Set<string>();
      for (const a of attributes) {
        if (seen.has(a.name!)) fail(at, `: attribute ${quote(a.name)} is given twice`);
        seen.add(a.name!);
      }
    }
    for (const a of attributes) {
      const sub: Where = () => `${where()}subgraph ${quote(a.name)} of ${label()}: `;
      if (a.g) checkGraph(a.g, scope, sub, ctx);
      for (const g of a.graphs ?? []) checkGraph(g, scope, sub, ctx);
    }
    for (const o of n.output ?? []) {
      if (o === "") continue;
      if (scope.names.has(o)) {
        const byNode = producer.get(o)! < i || (n.output ?? []).indexOf(o) !== (n.output ?? []).lastIndexOf(o);
        fail(
          at,
          ` writes ${quote(o)}, which ${byNode ? "another node already produces" : "is already a graph input or initializer"}`,
        );
      }
      if (inScope(scope.outer, o)) fail(at, ` writes ${quote(o)}, which an enclosing graph already defines`);
      scope.names.add(o);
    }
  });
}

/** Checks one graph; `outer` holds the names visible from enclosing graphs at this point. */
function checkGraph(g: onnx.IGraphProto, outer: Scope | undefined, where: Where, ctx: Context): void {
  const names = new Set<string>();
  const declared = (name: string): void => void names.add(name);
  for (const v of g.input ?? []) {
    checkValueInfo(v, "graph input", where);
    if (names.has(v.name!)) fail(where, `graph input ${quote(v.name)} is declared twice`);
    declared(v.name!);
  }
  const initializers = new Set<string>();
  for (const t of g.initializer ?? []) {
    if (!t.name) fail(where, "an initializer has no name");
    if (initializers.has(t.name!)) fail(where, `initializer ${quote(t.name)} is declared twice`);
    initializers.add(t.name!);
    checkTensor(t, () => `${where()}initializer ${quote(t.name)}: `);
    declared(t.name!);
  }
  for (const s of g.sparseInitializer ?? []) {
    if (s.values) checkTensor(s.values, () => `${where()}sparse initializer ${quote(s.values?.name)}: `);
    if (s.indices) checkTensor(s.indices, () => `${where()}sparse initializer ${quote(s.values?.name)} indices: `);
    declared(s.values?.name ?? "");
  }
  for (const v of g.valueInfo ?? []) checkValueInfo(v, "value_info", where);
  for (const v of g.output ?? []) checkValueInfo(v, "graph output", where);
  const scope: Scope = { names, outer };
  checkNodes(g.node ?? [], scope, where, ctx);
  for (const o of g.output ?? []) {
    if (!inScope(scope, o.name ?? ""))
      fail(where, `graph output ${quote(o.name)} is not produced by any node, initializer or input`);
  }
}

function checkFunction(f: onnx.IFunctionProto, ctx: Context): void {
  const where: Where = () => `${ctx.label}: function ${quote(`${f.domain ?? ""}.${f.name ?? ""}`)}: `;
  const opsets = readOpsets(f.opsetImport, where, ctx.opsets);
  const names = new Set<string>();
  for (const i of f.input ?? []) {
    if (names.has(i)) fail(where, `input ${quote(i)} is declared twice`);
    names.add(i);
  }
  const scope: Scope = { names, outer: undefined };
  checkNodes(f.node ?? [], scope, where, { ...ctx, opsets });
  for (const o of f.output ?? []) {
    if (!names.has(o)) fail(where, `output ${quote(o)} is not produced by any node or input`);
  }
}

/**
 * Throws E_PARSE if the message is not an ONNX model at all, E_MODEL for the first problem ONNX's checker
 * would report (and a few it leaves to runtime: tensor data sizes, element counts).
 */
export function validateModel(m: onnx.IModelProto, label: string): void {
  const missing: string[] = [];
  if (!m.graph) missing.push("no graph");
  if (!m.opsetImport || m.opsetImport.length === 0) missing.push("no opset_import");
  if (int64ToNumber(m.irVersion) <= 0) missing.push("ir_version 0");
  if (missing.length > 0) {
    throw new GdnFuseError("E_PARSE", `${label}: is a protobuf message but not an ONNX model (${missing.join(", ")})`);
  }
  const top: Where = () => `${label}: `;
  const opsets = readOpsets(m.opsetImport, top);
  const functions = new Set((m.functions ?? []).map((f) => `${domainOf(f.domain)}\u0000${f.name ?? ""}`));
  const ctx: Context = { label, opsets, functions };
  checkGraph(m.graph!, undefined, top, ctx);
  for (const f of m.functions ?? []) checkFunction(f, ctx);
}
