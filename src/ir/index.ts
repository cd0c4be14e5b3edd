/**
 * The graph half of the pass kit: the graph IR, constants, shapes with symbolic dims, and the editing
 * helpers every pass uses. A pass imports this (and src/pattern) and nothing from another pass.
 */
export { Graph, Node, Value, attr, type NewNode, type ValueType } from "./graph.js";
export { constantOf, scalarOf, isConstantValue, fromTensor, type ConstTensor } from "./constant.js";
export { dimsOf, staticDim, sameDim, sameDims, showDims, reshapeDims, type Dim } from "./shape.js";
export {
  CREATED_BY_KEY,
  setInput,
  addTagged,
  declareType,
  nodesOf,
  fusedOp,
  intsOf,
  uniformScalar,
  defaultOpset,
} from "./edit.js";
export { arrayToTensor, tensorToArray } from "./tensor.js";
export { onnx, int64ToNumber, getNodeMetadata, setNodeMetadata } from "./onnx.js";
