/**
 * `import "gdn-fuse/runtime"` registers the `gdn` backend with onnxruntime-node, so that
 *   ort.InferenceSession.create(model, { executionProviders: ["gdn"] })
 * runs models that contain gdn-fused ops (and any other model) in onnxruntime-node's own ONNX Runtime
 * library, with the gdn op library registered.
 *
 * External data: a model given by path finds its external data files next to it (ORT resolves them relative
 * to the model path). A model given as bytes has no directory: with external data it is refused (E_EXTERNAL_DATA).
 *
 * The ArrayBuffers of inputs, preallocated outputs and model bytes are marked untransferable (permanently) so
 * that no transfer can free them under a run in flight; see README "Running fused models in Node".
 *
 * bfloat16 inputs/outputs travel as 'uint16' Tensors holding the raw bf16 bits (onnxruntime-common has no
 * bfloat16 Tensor type).
 */
import { registerBackend } from "onnxruntime-node";
import { GdnBackend, GdnSessionHandler } from "./backend.js";
import { loadAddon, type RuntimeInfo } from "./addon.js";
import { opsLibraryPath } from "./paths.js";
import { AscendBackend } from "./ascend.js";

export { GdnBackend, GdnSessionHandler };
export type { RuntimeInfo };
export { SUPPORTED_TYPES } from "./tensors.js";

/** The execution-provider name to put in `executionProviders`. */
export const BACKEND_NAME = "gdn";

// One backend object per realm even if this module is instantiated twice (e.g. src and dist in one process):
// registerBackend refuses two different objects under one name and priority.
const KEY = Symbol.for("gdn-fuse.runtime.backend");
const holder = globalThis as { [KEY]?: GdnBackend };
/** The backend instance registered under the name "gdn". */
export const gdnBackend: GdnBackend = (holder[KEY] ??= new GdnBackend());

// Priority -1: used only when asked for by name, never as a silent fallback for plain sessions.
registerBackend(BACKEND_NAME, gdnBackend, -1);

// The Ascend NPU backend (src/runtime/ascend.ts), also only when asked for by name.
const ASCEND_KEY = Symbol.for("gdn-fuse.runtime.ascend-backend");
const ascendHolder = globalThis as { [ASCEND_KEY]?: AscendBackend };
registerBackend("ascend", (ascendHolder[ASCEND_KEY] ??= new AscendBackend()), -1);
export {
  ascendStats,
  ascendSimCounters,
  ascendEpLibraryPath,
  AscendDeviceLoop,
  type AscendStats,
  type AscendSimCounters,
  type AscendTestFault,
} from "./ascend.js";

/**
 * Loads the addon and ONNX Runtime now (otherwise the first session does) and reports what was found.
 * Throws GdnFuseError (code E_RUNTIME) with the fixes for this host when something is missing.
 */
export function loadRuntime(): RuntimeInfo & { opsLibraryPath: string | null } {
  const { info } = loadAddon();
  return { ...info, opsLibraryPath: opsLibraryPath() };
}
