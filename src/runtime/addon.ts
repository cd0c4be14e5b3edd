/**
 * Loads gdn_addon.node and, through it, ONNX Runtime. One clear error if either fails, listing the fixes
 * that apply to this host.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { env } from "onnxruntime-node";
import { GdnFuseError } from "../errors.js";
import { addonCandidates, ortLibraryPath } from "./paths.js";

const require = createRequire(import.meta.url);

/** Tensor as the addon sees it (the onnxruntime-common Tensor is unwrapped in tensors.ts). */
export interface NativeTensor {
  name?: string;
  type: string;
  dims: readonly number[];
  data: ArrayBufferView | ArrayBuffer | readonly string[];
}

export interface NativeValueInfo {
  name: string;
  isTensor: boolean;
  type?: string; // undefined: an element type with no JS tensor type
  elementType?: number;
  shape?: (number | string)[];
}

export interface NativeSession {
  readonly inputMetadata: NativeValueInfo[];
  readonly outputMetadata: NativeValueInfo[];
  run(
    inputs: NativeTensor[],
    outputNames: string[],
    preallocated: (NativeTensor | null)[],
    runOptions: object,
  ): Promise<(NativeTensor | null)[]>;
  endProfiling(): string;
  dispose(): void;
}

export interface NativeAddon {
  init(ortLibraryPath: string, logSeverity: number): { libraryPath: string; version: string; apiVersion: number };
  createSession(model: string | Uint8Array, options: object): Promise<NativeSession>;
}

export interface RuntimeInfo {
  /** the gdn_addon.node that was loaded */
  addonPath: string;
  /** the ONNX Runtime library in use (the first one loaded in this process wins) */
  ortLibraryPath: string;
  /** ONNX Runtime's version string */
  ortVersion: string;
  /** the ORT C API version the addon was compiled against */
  ortApiVersion: number;
}

let loaded: { addon: NativeAddon; info: RuntimeInfo } | undefined;

function hostFixes(): string {
  const host = `${process.platform}-${process.arch}, Node ${process.version}`;
  const compiler =
    process.platform === "darwin"
      ? "xcode-select --install"
      : process.platform === "win32"
        ? "install Visual Studio Build Tools (C++ workload) and Python 3"
        : "apt-get install g++ make python3 (Debian/Ubuntu), dnf install gcc-c++ make python3 (Fedora), apk add g++ make python3 (Alpine)";
  return (
    `Fixes for this host (${host}):\n` +
    `  1. build the native part: npm rebuild gdn-fuse (or, inside the gdn-fuse checkout, node native/scripts/build.mjs)\n` +
    `  2. it needs a C++17 compiler, make and python3: ${compiler}\n` +
    `  3. if you installed with --ignore-scripts or GDN_FUSE_SKIP_NATIVE=1, the build never ran: run step 1\n` +
    `  4. after switching Node versions or architectures, rebuild (step 1)\n` +
    `  5. to use another ONNX Runtime library (>= 1.24) set GDN_FUSE_ORT_LIBRARY=/path/to/libonnxruntime`
  );
}

const LOG_LEVELS: Record<string, number> = { verbose: 0, info: 1, warning: 2, error: 3, fatal: 4 };

/** Loads the addon and ONNX Runtime once per JS realm (thread). Throws GdnFuseError E_RUNTIME. */
export function loadAddon(): { addon: NativeAddon; info: RuntimeInfo } {
  if (loaded) return loaded;
  const candidates = addonCandidates();
  const addonPath = candidates.find((p) => existsSync(p));
  if (addonPath === undefined) {
    throw new GdnFuseError(
      "E_RUNTIME",
      `gdn-fuse: the native runtime addon is not built (looked for ${candidates.join(", ")}).\n${hostFixes()}`,
    );
  }
  let addon: NativeAddon;
  try {
    addon = require(addonPath) as NativeAddon;
  } catch (e) {
    throw new GdnFuseError(
      "E_RUNTIME",
      `gdn-fuse: cannot load the native runtime addon ${addonPath}: ${(e as Error).message}\n${hostFixes()}`,
      { cause: e },
    );
  }
  const ortPath = ortLibraryPath();
  let ort: ReturnType<NativeAddon["init"]>;
  try {
    ort = addon.init(ortPath, LOG_LEVELS[env.logLevel ?? "warning"] ?? 2);
  } catch (e) {
    throw new GdnFuseError("E_RUNTIME", `gdn-fuse: ${(e as Error).message}\n${hostFixes()}`, { cause: e });
  }
  loaded = {
    addon,
    info: { addonPath, ortLibraryPath: ort.libraryPath, ortVersion: ort.version, ortApiVersion: ort.apiVersion },
  };
  return loaded;
}
