/**
 * The `gdn` onnxruntime backend: an onnxruntime-common Backend whose session handler is the N-API addon.
 * Mirrors onnxruntime-node's own handler contract (names, metadata, run(feeds, fetches, options), dispose,
 * start/endProfiling).
 */
import { readFile } from "node:fs/promises";
import type { Backend, InferenceSession, InferenceSessionHandler, OnnxValue, SessionHandler } from "onnxruntime-node";
import { GdnFuseError } from "../errors.js";
import { loadAddon, type NativeSession, type NativeTensor, type NativeValueInfo } from "./addon.js";
import { checkModel } from "./model-check.js";
import { runConfig, sessionConfig } from "./options.js";
import { opsLibraryCandidates, opsLibraryPath } from "./paths.js";
import { fromNative, pinModelBytes, toNative } from "./tensors.js";

// An ORT source location ("/onnxruntime_src/.../custom_ops.cc:1333 ") and the C++ signature that follows it
// ("void onnxruntime::InferOutputTypes(...) "): noise to a JS user.
const ORT_SOURCE_LOCATION = /\S*\.(?:cc|cpp|h):\d+\s+(?:[\w:<>,&*\s]*?\w+\((?:[^()]|\([^()]*\))*\)\s*(?:const\s*)?)?/g;

/** ORT's message as one line: without source locations, lines joined. */
export function oneLineMessage(message: string): string {
  return message
    .replace(ORT_SOURCE_LOCATION, "")
    .replace(/\s*\n\s*/g, " ")
    .trim();
}

/** Turns a native failure into a GdnFuseError whose stack points at the JS caller (`site`). */
function runtimeError(e: unknown, site: { stack?: string }, prefix = ""): GdnFuseError {
  if (e instanceof GdnFuseError) return e;
  const message = oneLineMessage(e instanceof Error ? e.message : String(e));
  const err = new GdnFuseError("E_RUNTIME", prefix + message, { cause: e });
  const ortErrorCode = (e as { ortErrorCode?: string } | null)?.ortErrorCode;
  if (ortErrorCode) Object.assign(err, { ortErrorCode });
  if (site.stack) err.stack = `${err.name}: ${err.message}\n${site.stack.split("\n").slice(1).join("\n")}`;
  return err;
}

function callSite(fn: Function): { stack?: string } {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, fn);
  return site;
}

function toMetadata(infos: NativeValueInfo[]): InferenceSession.ValueMetadata[] {
  return infos.map((m) =>
    m.isTensor
      ? ({ name: m.name, isTensor: true, type: (m.type ?? "undefined") as "float32", shape: m.shape ?? [] } as const)
      : ({ name: m.name, isTensor: false } as const),
  );
}

/** Does the ORT error say that a node of domain "gdn" could not be resolved? */
function mentionsGdnDomain(message: string): boolean {
  return /(^|[^\w.])gdn[:.]\w|domain[^\n]{0,20}gdn\b|["']gdn["']/.test(message);
}

export class GdnSessionHandler implements InferenceSessionHandler {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly InferenceSession.ValueMetadata[];
  #native: NativeSession | null;
  readonly #inputTypes: Map<string, string | undefined>;

  constructor(native: NativeSession) {
    this.#native = native;
    this.inputNames = native.inputMetadata.map((m) => m.name);
    this.outputNames = native.outputMetadata.map((m) => m.name);
    this.inputMetadata = toMetadata(native.inputMetadata);
    this.outputMetadata = toMetadata(native.outputMetadata);
    this.#inputTypes = new Map(native.inputMetadata.map((m) => [m.name, m.type]));
  }

  /** True once dispose() (InferenceSession.release()) was called. */
  get released(): boolean {
    return this.#native === null;
  }

  #live(): NativeSession {
    if (this.#native === null) throw new GdnFuseError("E_RUNTIME", "session is disposed");
    return this.#native;
  }

  async dispose(): Promise<void> {
    this.#native?.dispose();
    this.#native = null;
  }

  startProfiling(): void {
    // Profiling starts at load time when SessionOptions.enableProfiling is set (same as onnxruntime-node).
  }

  endProfiling(): void {
    this.#live().endProfiling();
  }

  async run(
    feeds: SessionHandler.FeedsType,
    fetches: SessionHandler.FetchesType,
    options: InferenceSession.RunOptions,
  ): Promise<SessionHandler.ReturnType> {
    const site = callSite(this.run);
    try {
      const native = this.#live();
      const inputs: NativeTensor[] = Object.entries(feeds).map(([name, value]) =>
        toNative(name, `input '${name}'`, value, this.#inputTypes.get(name)),
      );
      const names = Object.keys(fetches);
      const preallocated = names.map((name) => {
        const t = fetches[name];
        return t === null || t === undefined ? null : toNative(name, `output '${name}'`, t);
      });
      const outs = await native.run(inputs, names, preallocated, runConfig(options ?? {}));
      const result: Record<string, OnnxValue> = {};
      names.forEach((name, i) => {
        const out = outs[i];
        result[name] = out === null || out === undefined ? (fetches[name] as OnnxValue) : fromNative(out);
      });
      return result;
    } catch (e) {
      throw runtimeError(e, site);
    }
  }
}

/** The model file's bytes for checkModel; empty when unreadable (ORT then reports the file itself). */
async function readModel(path: string): Promise<Uint8Array> {
  return readFile(path).catch(() => new Uint8Array());
}

export class GdnBackend implements Backend {
  /** Never fails: a load failure is reported by createInferenceSessionHandler with its full message and code. */
  async init(): Promise<void> {}

  async createInferenceSessionHandler(
    uriOrBuffer: string | Uint8Array,
    options?: InferenceSession.SessionOptions,
  ): Promise<InferenceSessionHandler> {
    const site = callSite(this.createInferenceSessionHandler);
    // Why the gdn op library is not in this session, for the error a gdn-op model gets.
    let opsProblem: string | null = null;
    try {
      const { addon } = loadAddon();
      if (typeof uriOrBuffer !== "string") pinModelBytes(uriOrBuffer);
      checkModel(
        typeof uriOrBuffer === "string" ? await readModel(uriOrBuffer) : uriOrBuffer,
        typeof uriOrBuffer !== "string",
      );
      const opsLibrary = opsLibraryPath();
      if (opsLibrary === null) opsProblem = `was not found at ${opsLibraryCandidates().join(" or ")}`;
      let pending: Promise<NativeSession>;
      try {
        pending = addon.createSession(uriOrBuffer, sessionConfig(options ?? {}, opsLibrary));
      } catch (e) {
        // An auto-discovered library that cannot be registered (stale or partial build) only matters to models
        // that use gdn ops; GDN_FUSE_OPS_LIBRARY, set on purpose, must work.
        if (!(e as { opsLibraryError?: boolean }).opsLibraryError || process.env.GDN_FUSE_OPS_LIBRARY) throw e;
        opsProblem = `at ${opsLibrary} could not be loaded (${(e as Error).message})`;
        pending = addon.createSession(uriOrBuffer, sessionConfig(options ?? {}, null));
      }
      return new GdnSessionHandler(await pending);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      if (!(e instanceof GdnFuseError) && opsProblem !== null && mentionsGdnDomain(message)) {
        throw runtimeError(
          e,
          site,
          `model uses gdn ops but the gdn op library ${opsProblem}; run npm rebuild (or set GDN_FUSE_OPS_LIBRARY). ` +
            `ONNX Runtime said: `,
        );
      }
      const where = typeof uriOrBuffer === "string" ? ` (${uriOrBuffer})` : "";
      if (e instanceof GdnFuseError && (e.code === "E_MODEL" || e.code === "E_EXTERNAL_DATA")) {
        throw new GdnFuseError(e.code, `cannot create session${where}: ${e.message}`);
      }
      throw runtimeError(e, site, `cannot create session${where}: `);
    }
  }
}
