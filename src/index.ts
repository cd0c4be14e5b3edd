/**
 * gdn-fuse public API. Model I/O, the lossless ONNX protobuf namespace, the fusion pipeline, the pass kit
 * and errors. Importing it registers the built-in passes (passes/index.ts) as the default list; it is the
 * only module of src/ that imports passes/.
 */
import { BUILTIN_PASSES } from "../passes/index.js";
import { loadModel, saveModel, type LoadedModel, type SaveOptions } from "./ir/model-io.js";
import { fuseModel, registerDefaultPasses, type FuseOptions, type FuseReport } from "./pipeline/index.js";

registerDefaultPasses(BUILTIN_PASSES);

export { GdnFuseError, type ErrorCode } from "./errors.js";
export { onnx, getNodeMetadata, setNodeMetadata, unknownFields, int64ToNumber, int64ToBigInt } from "./ir/onnx.js";
export {
  loadModel,
  saveModel,
  forEachTensor,
  type LoadedModel,
  type LoadOptions,
  type SaveOptions,
} from "./ir/model-io.js";
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
  registerDefaultPasses,
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
export { BUILTIN_PASSES };
// The pass kit, for writing passes: the graph IR, shapes, editing helpers, matching motifs, match
// failures with reasons, probe confirmation (what the built-in passes import, and nothing else).
export * from "./ir/index.js";
export * from "./pattern/index.js";
export { verifyModels, formatVerify, type VerifyResult, type VerifyOutput } from "./verify/index.js";
export * from "./ops.js";
export { oneNodeModel, deltaRuleModel, type OneNodeSpec, type TensorSpec } from "./ops-model.js";
export { gatedDeltaReference } from "./reference/gated-delta.js";
export { toServingForm, SERVING_NAMES, type ServingFormOptions } from "./serving/index.js";

export interface FuseFileOptions extends FuseOptions, SaveOptions {
  /** Run the passes but write no model. */
  dryRun?: boolean;
}

/**
 * Loads `input` (a path, or a model loadModel returned: it is fused in place), fuses it, and writes the result
 * to `outPath` (external data carried along).
 */
export async function fuseModelFile(
  input: string | LoadedModel,
  outPath: string,
  options: FuseFileOptions = {},
): Promise<FuseReport> {
  const { dryRun, externalData, inlineBelow, overwriteInput, ...fuseOptions } = options;
  const model = typeof input === "string" ? await loadModel(input) : input;
  const report = await fuseModel(model.proto, { baseDir: model.baseDir, ...fuseOptions });
  if (!dryRun) {
    fuseOptions.onProgress?.(`writing ${outPath}`);
    await saveModel(model, outPath, {
      ...(externalData !== undefined ? { externalData } : {}),
      ...(inlineBelow !== undefined ? { inlineBelow } : {}),
      ...(overwriteInput !== undefined ? { overwriteInput } : {}),
    });
  }
  return report;
}
