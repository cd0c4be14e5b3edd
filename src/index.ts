/**
 * gdn-fuse public API. Model I/O, the lossless ONNX protobuf namespace, the fusion pipeline and errors.
 */
import { loadModel, saveModel, type SaveOptions } from "./ir/model-io.js";
import { fuseModel, type FuseOptions, type FuseReport } from "./pipeline/index.js";

export { GdnFuseError, type ErrorCode } from "./errors.js";
export { onnx, getNodeMetadata, setNodeMetadata, unknownFields, int64ToNumber, int64ToBigInt } from "./ir/onnx.js";
export { loadModel, saveModel, forEachTensor, type LoadedModel, type LoadOptions, type SaveOptions } from "./ir/model-io.js";
export {
  tensorToArray,
  tensorToFloat64,
  arrayToTensor,
  elemTypeName,
  elemTypeFromName,
  float16ToFloat32,
  float32ToFloat16,
  type TensorArray,
} from "./ir/tensor.js";
export {
  fuseModel,
  registerPass,
  getPass,
  listPasses,
  DEFAULT_PASSES,
  type FuseOptions,
  type FuseReport,
  type PassReport,
  type AppliedMatch,
  type SkippedCandidate,
  type Pass,
  type PassContext,
  type Target,
} from "./pipeline/index.js";
export { forEachCandidate } from "./pipeline/candidates.js";
export { CREATED_BY_KEY } from "./pipeline/pass.js";
// For writing passes: the graph IR, constants, and match failures with reasons.
export { Graph, Node, Value, attr, type NewNode, type ValueType } from "./ir/graph.js";
export { constantOf, scalarOf, isConstantValue, type ConstTensor } from "./ir/constant.js";
export { MatchFailure, fail, check } from "./pattern/match.js";
export { verifyModels, formatVerify, type VerifyResult, type VerifyOutput } from "./verify/index.js";
export { GDN_DOMAIN, GDN_OPSET, GdnOp } from "./ops.js";
export { oneNodeModel, deltaRuleModel, type OneNodeSpec, type TensorSpec } from "./ops-model.js";
export { gatedDeltaReference } from "./reference/gated-delta.js";
export { toServingForm, SERVING_NAMES, type ServingFormOptions } from "./serving/index.js";

export interface FuseFileOptions extends FuseOptions, SaveOptions {
  /** Run the passes but write no model. */
  dryRun?: boolean;
}

/** Loads `inPath`, fuses it, and writes the result to `outPath` (external data carried along). */
export async function fuseModelFile(inPath: string, outPath: string, options: FuseFileOptions = {}): Promise<FuseReport> {
  const { dryRun, externalData, inlineBelow, overwriteInput, ...fuseOptions } = options;
  const model = await loadModel(inPath);
  const report = await fuseModel(model.proto, { baseDir: model.baseDir, ...fuseOptions });
  if (!dryRun) {
    await saveModel(model, outPath, {
      ...(externalData !== undefined ? { externalData } : {}),
      ...(inlineBelow !== undefined ? { inlineBelow } : {}),
      ...(overwriteInput !== undefined ? { overwriteInput } : {}),
    });
  }
  return report;
}
