/**
 * Loads gdn_addon.node (a local build, else the prebuild for this host) and, through it, ONNX Runtime.
 * One one-line error if either fails, naming the host and the command that builds the addon.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { env } from "onnxruntime-node";
import { GdnFuseError } from "../errors.js";
import { addonCandidates, hostTag, ortLibraryPath, rebuildCommand } from "./paths.js";

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

/** What to do when no native binary is usable here: one clause, one command. */
function buildHint(): string {
  return `to build it for this host, install a C++17 compiler, make and python3, then run: ${rebuildCommand()}`;
}

const firstLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0]!.trim();

/** Requires the first candidate addon that loads; a stale or foreign build falls through to the next. */
function requireAddon(): { addon: NativeAddon; addonPath: string } {
  const existing = addonCandidates().filter((p) => existsSync(p));
  if (existing.length === 0) {
    throw new GdnFuseError(
      "E_RUNTIME",
      `gdn-fuse: no native runtime for ${hostTag()} (the package has no prebuilt binary for it and nothing is built); ${buildHint()}`,
    );
  }
  const failures: string[] = [];
  for (const addonPath of existing) {
    try {
      return { addon: require(addonPath) as NativeAddon, addonPath };
    } catch (e) {
      failures.push(`${addonPath}: ${firstLine(e)}`);
    }
  }
  throw new GdnFuseError(
    "E_RUNTIME",
    `gdn-fuse: cannot load the native runtime addon on ${hostTag()} (${failures.join("; ")}); ${buildHint()}`,
  );
}

const LOG_LEVELS: Record<string, number> = { verbose: 0, info: 1, warning: 2, error: 3, fatal: 4 };

/** Loads the addon and ONNX Runtime once per JS realm (thread). Throws GdnFuseError E_RUNTIME. */
export function loadAddon(): { addon: NativeAddon; info: RuntimeInfo } {
  if (loaded) return loaded;
  const { addon, addonPath } = requireAddon();
  const ortPath = ortLibraryPath();
  let ort: ReturnType<NativeAddon["init"]>;
  try {
    ort = addon.init(ortPath, LOG_LEVELS[env.logLevel ?? "warning"] ?? 2);
  } catch (e) {
    throw new GdnFuseError(
      "E_RUNTIME",
      `gdn-fuse: ${firstLine(e)} (GDN_FUSE_ORT_LIBRARY=/path/to/libonnxruntime selects another ONNX Runtime >= 1.24)`,
      { cause: e },
    );
  }
  loaded = {
    addon,
    info: { addonPath, ortLibraryPath: ort.libraryPath, ortVersion: ort.version, ortApiVersion: ort.apiVersion },
  };
  return loaded;
}
