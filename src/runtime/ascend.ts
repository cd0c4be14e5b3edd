/**
 * The `ascend` onnxruntime backend: sessions whose gdn delta-rule ops run on an Ascend NPU through CANN's aclnn
 * operators, in the gdn Ascend plugin execution provider library (build/Release/libgdn_ascend_ep.so) that the
 * addon registers with onnxruntime-node's own ONNX Runtime. Nodes the device path does not take run on the CPU
 * (the gdn op library and ORT's CPU kernels).
 *
 *   await ort.InferenceSession.create(model, { executionProviders: [{ name: "ascend", deviceId: 0 }] })
 *
 * GDN_FUSE_ASCEND=sim selects the gdn-fuse CANN simulator (libgdn_cann_sim.so) instead of real CANN; without it,
 * CANN is looked up through ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME and the loader path (docs/ascend.md).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Backend, InferenceSession, InferenceSessionHandler, Tensor } from "onnxruntime-node";
import { GdnFuseError } from "../errors.js";
import { loadAddon, type NativeSession, type NativeTensor } from "./addon.js";
import { GdnSessionHandler } from "./backend.js";
import { sessionConfig } from "./options.js";
import { opsLibraryPath, overridePath, packageRoot } from "./paths.js";
import { fromNative, pinModelBytes, toNative } from "./tensors.js";

/** What ran where and what moved, for a session on the `ascend` backend. */
export interface AscendStats {
  /** claimed by the Ascend EP, by op type ("gdn.ChunkGatedDeltaRule", "MatMul") */
  nodesOnDevice: Record<string, number>;
  /** left to the CPU, by op type */
  nodesOnCpu: Record<string, number>;
  /** one line per gdn node left on the CPU: the node and why */
  fallbackReasons: string[];
  /** host<->device copies of this session (graph inputs and outputs, and the copies ORT inserts between CPU
   * nodes and device nodes), since it was created */
  copiesH2D: number;
  copiesD2H: number;
  bytesH2D: number;
  bytesD2H: number;
}

/** Test-only faults of the EP (never for production use): `skip_sync` drops every host synchronisation with the
 * device (end of run, D2H copies, CPU nodes waiting for device nodes), `host_pointer` hands the aclnn op a host
 * buffer as its query, `decline_all` makes the EP claim no node (everything runs on the CPU). */
export type AscendTestFault = "skip_sync" | "host_pointer" | "decline_all";

function libraryCandidates(name: string): string[] {
  const root = packageRoot();
  const dirs = ["Release", "Release/lib.target", "Debug", "Debug/lib.target"];
  return dirs.flatMap((d) => [join(root, "build", d, `lib${name}.so`), join(root, "build", d, `${name}.so`)]);
}

/** $`variable` (another build of the library, e.g. the sanitized one of npm run test:sanitize; must exist), else
 * the first built candidate. */
function findLibrary(name: string, variable: string): string {
  const override = overridePath(variable);
  if (override) return override;
  const candidates = libraryCandidates(name);
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new GdnFuseError(
      "E_RUNTIME",
      `the ${name} library is not built (looked for ${candidates.join(", ")}); run npm rebuild`,
    );
  }
  return found;
}

/** The EP library's path (absolute: ORT resolves a relative one against its own folder). */
export function ascendEpLibraryPath(): string {
  return findLibrary("gdn_ascend_ep", "GDN_FUSE_ASCEND_EP_LIBRARY");
}

/** The CANN simulator's path (GDN_FUSE_ASCEND=sim). */
function simLibraryPath(): string {
  return findLibrary("gdn_cann_sim", "GDN_FUSE_CANN_SIM_LIBRARY");
}

interface AscendOptions {
  deviceId?: number;
  /** fail session creation when a gdn node would run on the CPU (the error names the node and why) */
  strict?: boolean;
  testFault?: AscendTestFault;
}

function ascendOptions(options: InferenceSession.SessionOptions): AscendOptions {
  for (const ep of options.executionProviders ?? []) {
    if (typeof ep === "object" && ep.name === "ascend") return ep as AscendOptions;
  }
  return {};
}

/** The EP's own message without ORT's wrapping ("<source>:<line> ... Error creating execution provider: ... EP_FAIL : "). */
function epMessage(message: string): string {
  const i = message.lastIndexOf("EP_FAIL : ");
  return (i >= 0 ? message.slice(i + "EP_FAIL : ".length) : message).trim();
}

// The EP keeps placement statistics by a per-session id, stored on the session handler. Both live on globalThis
// so that two instances of this module in one process (src and dist) agree.
const STATS_ID = Symbol.for("gdn-fuse.runtime.ascend-stats-id");
const NATIVE = Symbol.for("gdn-fuse.runtime.ascend-native-session"); // for AscendDeviceLoop
const counter = globalThis as { [STATS_ID]?: number };

export class AscendBackend implements Backend {
  async init(): Promise<void> {}

  async createInferenceSessionHandler(
    uriOrBuffer: string | Uint8Array,
    options?: InferenceSession.SessionOptions,
  ): Promise<InferenceSessionHandler> {
    const { addon } = loadAddon();
    const opts = ascendOptions(options ?? {});
    const deviceId = opts.deviceId ?? 0;
    if (!Number.isInteger(deviceId) || deviceId < 0) {
      throw new GdnFuseError("E_USAGE", `ascend deviceId must be a non-negative integer, got ${String(opts.deviceId)}`);
    }
    const statsId = (counter[STATS_ID] = (counter[STATS_ID] ?? 0) + 1);
    const simulated = process.env.GDN_FUSE_ASCEND === "sim";
    const ascend = {
      library: ascendEpLibraryPath(),
      cann: simulated ? "sim" : "real",
      simLibrary: simulated ? simLibraryPath() : undefined,
      deviceId,
      statsId,
      strict: opts.strict === true,
      testFault: opts.testFault,
    };
    if (typeof uriOrBuffer !== "string") pinModelBytes(uriOrBuffer);
    let native: NativeSession;
    try {
      native = await addon.createSession(uriOrBuffer, { ...sessionConfig(options ?? {}, opsLibraryPath()), ascend });
    } catch (e) {
      throw new GdnFuseError("E_RUNTIME", `cannot create an ascend session: ${epMessage((e as Error).message)}`, {
        cause: e,
      });
    }
    return Object.assign(new GdnSessionHandler(native), { [STATS_ID]: statsId, [NATIVE]: native });
  }
}

/** Process-wide counters of the gdn-fuse CANN simulator (gdnSimGetCounters): device work, not time. */
export interface AscendSimCounters {
  mallocs: number;
  frees: number;
  liveBytes: number;
  copiesH2D: number;
  copiesD2H: number;
  copiesD2D: number;
  bytesH2D: number;
  bytesD2H: number;
  /** aclnn ops run */
  launches: number;
  /** aclrtSynchronizeStream calls (the host waits for a whole stream) */
  streamSyncs: number;
  /** aclrtSynchronizeEvent calls (the host waits for part of a stream) */
  eventSyncs: number;
  /** aclrtStreamWaitEvent calls (one stream waits for another on the device) */
  streamWaits: number;
}

/** The simulator's counters, for tests and `npm run bench:ascend`; E_USAGE unless GDN_FUSE_ASCEND=sim and an
 * ascend session was created (which loads the simulator). */
export function ascendSimCounters(): AscendSimCounters {
  const { addon } = loadAddon();
  const native = addon as unknown as { ascendSimCounters(library: string): AscendSimCounters };
  try {
    return native.ascendSimCounters(simLibraryPath());
  } catch (e) {
    throw new GdnFuseError("E_USAGE", `ascendSimCounters: ${(e as Error).message}`, { cause: e });
  }
}

/** What ran where and what moved for a session created on the `ascend` backend. */
export function ascendStats(session: InferenceSession): AscendStats {
  // onnxruntime-common's InferenceSession keeps its handler in the (TypeScript-private) field `handler`.
  const handler = (session as unknown as { handler?: { [STATS_ID]?: number; released?: boolean } }).handler;
  const id = handler?.[STATS_ID];
  if (id === undefined)
    throw new GdnFuseError("E_USAGE", "ascendStats: the session was not created on the ascend backend");
  // The EP frees a session's statistics with it.
  if (handler!.released) throw new GdnFuseError("E_USAGE", "ascendStats: the session is released");
  const { addon } = loadAddon();
  const json = (addon as unknown as { ascendStats(library: string, id: number): string }).ascendStats(
    ascendEpLibraryPath(),
    id,
  );
  return JSON.parse(json) as AscendStats;
}

// ------------------------------------------------------------------------------------------------------------
// Decode loops whose state stays on the device.

interface DeviceHandle {
  handle: unknown;
  type: string;
  dims: number[];
}
interface BoundAddon {
  ascendRunBound(
    session: NativeSession,
    inputs: NativeTensor[],
    deviceInputs: Record<string, unknown>,
    hostOutputs: string[],
    deviceOutputs: string[],
  ): Promise<{ host: Record<string, NativeTensor>; device: Record<string, DeviceHandle> }>;
  ascendDeviceRead(handle: unknown, name: string): NativeTensor;
  ascendDeviceRelease(handle: unknown): void;
}

/**
 * A decode loop on an `ascend` session whose loop-carried values stay on the device: `feedBack` maps an output
 * to the input it feeds at the next step (e.g. `{ final_state: "initial_state" }`). The first `step` takes that
 * input from `feeds` (one host-to-device copy); later steps must not pass it: it is the previous step's output,
 * still on the device. Outputs in `feedBack` are not returned (no device-to-host copy); `read(output)` copies the
 * latest one to the host when the caller needs it. The other inputs and outputs are ordinary host tensors.
 */
export class AscendDeviceLoop {
  readonly #native: NativeSession;
  readonly #feedBack: ReadonlyMap<string, string>; // output -> input
  readonly #outputs: readonly string[];
  readonly #inputTypes: ReadonlyMap<string, string | undefined>; // the model's, for bfloat16 fed as uint16 bits
  #device = new Map<string, DeviceHandle>(); // input name -> the value the next step reads
  #steps = 0;
  #stepping = false; // a step is in flight
  #released = false;

  constructor(session: InferenceSession, feedBack: Record<string, string>) {
    const native = (session as unknown as { handler?: { [NATIVE]?: NativeSession } }).handler?.[NATIVE];
    const usage = (message: string) => new GdnFuseError("E_USAGE", `AscendDeviceLoop: ${message}`);
    if (native === undefined) throw usage("the session was not created on the ascend backend");
    for (const [output, input] of Object.entries(feedBack)) {
      if (!session.outputNames.includes(output)) throw usage(`the model has no output '${output}'`);
      if (!session.inputNames.includes(input)) throw usage(`the model has no input '${input}'`);
    }
    this.#native = native;
    this.#feedBack = new Map(Object.entries(feedBack));
    this.#outputs = session.outputNames;
    const metadata = session.inputMetadata as readonly { name: string; isTensor: boolean; type?: string }[];
    this.#inputTypes = new Map(metadata.map((m) => [m.name, m.isTensor ? m.type : undefined]));
  }

  /** Runs one step; returns the outputs not fed back. */
  async step(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    this.#checkOpen();
    // Two steps at once would both read the same fed-back values: the second would not continue the first.
    if (this.#stepping)
      throw new GdnFuseError("E_USAGE", "AscendDeviceLoop: a step is in flight; await it before the next");
    for (const input of this.#feedBack.values()) {
      if (this.#steps === 0 && feeds[input] === undefined) {
        throw new GdnFuseError("E_USAGE", `AscendDeviceLoop: the first step needs input '${input}'`);
      }
      if (this.#steps > 0 && feeds[input] !== undefined) {
        const message = `input '${input}' is fed back on the device after the first step; do not pass it`;
        throw new GdnFuseError("E_USAGE", `AscendDeviceLoop: ${message}`);
      }
    }
    const inputs = Object.entries(feeds).map(([name, t]) =>
      toNative(name, `input '${name}'`, t, this.#inputTypes.get(name)),
    );
    const deviceInputs = Object.fromEntries([...this.#device].map(([input, v]) => [input, v.handle]));
    const hostOutputs = this.#outputs.filter((o) => !this.#feedBack.has(o));
    const addon = loadAddon().addon as unknown as BoundAddon;
    let result;
    this.#stepping = true;
    try {
      result = await addon.ascendRunBound(this.#native, inputs, deviceInputs, hostOutputs, [...this.#feedBack.keys()]);
    } catch (e) {
      const message = `ascend device loop step ${this.#steps}: ${(e as Error).message}`;
      throw new GdnFuseError("E_RUNTIME", message, { cause: e });
    } finally {
      this.#stepping = false;
    }
    for (const v of this.#device.values()) addon.ascendDeviceRelease(v.handle);
    this.#device = new Map([...this.#feedBack].map(([output, input]) => [input, result.device[output]!]));
    this.#steps++;
    if (this.#released) this.release(); // released during the step: its device values go now, not at GC
    return Object.fromEntries(Object.entries(result.host).map(([name, t]) => [name, fromNative(t)]));
  }

  /** The latest value of a fed-back output, copied to the host. */
  read(output: string): Tensor {
    this.#checkOpen();
    const input = this.#feedBack.get(output);
    const value = input === undefined ? undefined : this.#device.get(input);
    if (value === undefined) {
      throw new GdnFuseError("E_USAGE", `AscendDeviceLoop: no device value of output '${output}' yet`);
    }
    return fromNative((loadAddon().addon as unknown as BoundAddon).ascendDeviceRead(value.handle, output));
  }

  /** Frees the device values now (otherwise when garbage-collected); a step in flight frees its own when it ends.
   * The loop cannot be used afterwards. */
  release(): void {
    this.#released = true;
    const addon = loadAddon().addon as unknown as BoundAddon;
    for (const v of this.#device.values()) addon.ascendDeviceRelease(v.handle);
    this.#device.clear();
  }

  #checkOpen(): void {
    if (this.#released) throw new GdnFuseError("E_USAGE", "AscendDeviceLoop: the loop is released");
  }
}
