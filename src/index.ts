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
  type FuseOptions,
  type FuseReport,
  type PassReport,
  type AppliedMatch,
  type SkippedCandidate,
} from "./pipeline/index.js";

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
