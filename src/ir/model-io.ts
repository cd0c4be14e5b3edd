/**
 * Loading and saving ONNX models. Loading reads only regular files (file-safety.ts), decodes the protobuf
 * (unknown fields kept, see onnx.ts), validates it to the level of ONNX's checker (validate.ts), and checks
 * external data references without reading weight bytes. Saving refuses paths that would replace an input,
 * another output or a non-regular file, is atomic (temp file + rename), and carries external data files to
 * the output folder byte-identical (reflink/copy or hard link), optionally inlining small tensors.
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { GdnFuseError } from "../errors.js";
import { ioReason, PathGuard, readRegularFile } from "./file-safety.js";
import { decodeMessage, encodeMessage, onnx, ProtoDecodeError } from "./onnx.js";
import { checkExternalData, externalDataRef, isExternal, readFileRange } from "./tensor.js";
import { quote, validateModel } from "./validate.js";

export { quote, validateModel };

export interface LoadedModel {
  proto: onnx.ModelProto;
  /** The folder external data locations are relative to. */
  baseDir?: string;
  /** The file the model was read from, if any. */
  path?: string;
}

export interface LoadOptions {
  /** Folder for external data (default: the model file's folder). */
  baseDir?: string;
  /** Name used in error messages when loading from bytes (default "<buffer>"). */
  name?: string;
}

export interface SaveOptions {
  /** How external data files reach the output folder: "copy" (default, reflink where the FS can),
   * "link" (hard link, falling back to copy), "inline" (every external tensor becomes raw_data). */
  externalData?: "copy" | "link" | "inline";
  /** External tensors smaller than this many bytes are inlined as raw_data. */
  inlineBelow?: number;
  /** Allow writing over the input model file. */
  overwriteInput?: boolean;
}

const MAX_PROTOBUF_BYTES = 2 ** 31 - 1;

function ioError(file: string, e: unknown, verb: string): GdnFuseError {
  return new GdnFuseError("E_IO", `${file}: cannot ${verb} (${ioReason(e)})`, { cause: e });
}

// ---- walking the model --------------------------------------------------------------------------
/** Calls `fn` for every TensorProto in the model: initializers, sparse initializers, attribute tensors,
 * subgraphs and function bodies included. */
export function forEachTensor(model: onnx.IModelProto, fn: (t: onnx.ITensorProto) => void): void {
  const visitNodes = (nodes: onnx.INodeProto[] | null | undefined): void => {
    for (const n of nodes ?? []) {
      for (const a of n.attribute ?? []) {
        if (a.t) fn(a.t);
        for (const t of a.tensors ?? []) fn(t);
        for (const s of [a.sparseTensor, ...(a.sparseTensors ?? [])]) {
          if (s?.values) fn(s.values);
          if (s?.indices) fn(s.indices);
        }
        if (a.g) visitGraph(a.g);
        for (const g of a.graphs ?? []) visitGraph(g);
      }
    }
  };
  const visitGraph = (g: onnx.IGraphProto): void => {
    for (const t of g.initializer ?? []) fn(t);
    for (const s of g.sparseInitializer ?? []) {
      if (s.values) fn(s.values);
      if (s.indices) fn(s.indices);
    }
    visitNodes(g.node);
  };
  if (model.graph) visitGraph(model.graph);
  for (const f of model.functions ?? []) visitNodes(f.node);
}

// ---- load ---------------------------------------------------------------------------------------
/** Decodes and validates model bytes; `label` names the source in error messages. */
export function parseModel(bytes: Uint8Array, label: string): onnx.ModelProto {
  if (bytes.length === 0) throw new GdnFuseError("E_PARSE", `${label}: empty file, not an ONNX model`);
  let proto: onnx.ModelProto;
  try {
    proto = decodeMessage(onnx.ModelProto, bytes);
  } catch (e) {
    if (e instanceof ProtoDecodeError) {
      const msg = e.truncated
        ? `${label}: truncated protobuf (input ends at byte ${bytes.length}; ${e.message})`
        : `${label}: not an ONNX model (protobuf decode failed at byte ${e.offset}: ${e.message})`;
      throw new GdnFuseError("E_PARSE", msg, { cause: e });
    }
    throw new GdnFuseError("E_PARSE", `${label}: not an ONNX model (${e instanceof Error ? e.message : String(e)})`, {
      cause: e,
    });
  }
  try {
    validateModel(proto, label);
  } catch (e) {
    if (e instanceof GdnFuseError) throw e;
    throw new GdnFuseError("E_MODEL", `${label}: cannot be checked (${e instanceof Error ? e.message : String(e)})`, {
      cause: e,
    });
  }
  return proto;
}

/** Checks every external tensor's file and range (no weight bytes are read). */
function validateExternalData(proto: onnx.IModelProto, baseDir: string | undefined, label: string): void {
  forEachTensor(proto, (t) => {
    if (!isExternal(t)) return;
    if (baseDir === undefined) {
      const loc = externalDataRef(t)?.location ?? "";
      throw new GdnFuseError(
        "E_EXTERNAL_DATA",
        `${label}: tensor ${quote(t.name)} has external data ${quote(loc)} but no model folder (baseDir) was given`,
      );
    }
    try {
      checkExternalData(t, baseDir);
    } catch (e) {
      if (e instanceof GdnFuseError) throw new GdnFuseError(e.code, `${label}: ${e.message}`, { cause: e });
      throw e;
    }
  });
}

/** Reads an ONNX model from a file path or bytes. Never reads external weight bytes. */
export async function loadModel(source: string | Uint8Array, opts: LoadOptions = {}): Promise<LoadedModel> {
  if (typeof source === "string") {
    const bytes = await readRegularFile(
      source,
      "read the model",
      MAX_PROTOBUF_BYTES,
      "larger than 2 GiB, the protobuf limit; keep weights in external data",
    );
    const baseDir = path.resolve(opts.baseDir ?? path.dirname(source));
    const proto = parseModel(bytes, opts.name ?? source);
    validateExternalData(proto, baseDir, opts.name ?? source);
    return { proto, baseDir, path: path.resolve(source) };
  }
  const label = opts.name ?? "<buffer>";
  const proto = parseModel(source, label);
  const baseDir = opts.baseDir === undefined ? undefined : path.resolve(opts.baseDir);
  validateExternalData(proto, baseDir, label);
  return baseDir === undefined ? { proto } : { proto, baseDir };
}

// ---- save ---------------------------------------------------------------------------------------
/** Whether two paths name the same file (same inode); false when either does not exist. */
export function sameFile(a: string, b: string): boolean {
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.ino === sb.ino && sa.dev === sb.dev;
  } catch {
    return false;
  }
}

const tempName = (dest: string): string =>
  path.join(
    path.dirname(dest),
    `.${path.basename(dest)}.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`,
  );

async function removeQuietly(file: string): Promise<void> {
  await fsp.rm(file, { force: true }).catch(() => undefined);
}

/** Writes `dest` via a temp file in the same folder and a rename; nothing is left behind on failure. */
export async function atomicWrite(dest: string, produce: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = tempName(dest);
  try {
    await produce(tmp);
    await fsp.rename(tmp, dest);
  } catch (e) {
    await removeQuietly(tmp);
    throw e instanceof GdnFuseError ? e : ioError(dest, e, "write");
  }
}

async function carryFile(src: string, dest: string, mode: "copy" | "link"): Promise<void> {
  if (sameFile(src, dest)) return; // the output folder already holds this very file
  try {
    await fsp.mkdir(path.dirname(dest), { recursive: true });
  } catch (e) {
    throw ioError(path.dirname(dest), e, "create the folder");
  }
  await atomicWrite(dest, async (tmp) => {
    if (mode === "link") {
      try {
        await fsp.link(src, tmp);
        return;
      } catch {
        // different file systems or no hard links here: copy instead
      }
    }
    await fsp.copyFile(src, tmp, fs.constants.COPYFILE_FICLONE);
  });
}

type Saved = { t: onnx.ITensorProto; own: Record<string, boolean>; values: Record<string, unknown> };
const INLINE_FIELDS = ["rawData", "dataLocation", "externalData"] as const;

interface SavePlan {
  out: string;
  inline: { t: onnx.ITensorProto; file: string; offset: number; length: number }[];
  /** destination -> source of the external data files to carry */
  carry: Map<string, string>;
}

/**
 * Plans a save and checks every path it would write: the model and the carried external data files must
 * not replace a non-regular file, an input (the model, its external data, whatever `guard` already holds)
 * or each other. `label` names the output in messages (the CLI passes "-o OUT").
 */
/** Registers the model file and every external data file it reads as inputs of `guard`. */
export function addModelInputs(model: LoadedModel, guard: PathGuard): void {
  if (model.path) guard.addInput(model.path, "the input model");
  if (model.baseDir === undefined) return;
  const baseDir = model.baseDir;
  forEachTensor(model.proto, (t) => {
    if (isExternal(t)) guard.addInput(checkExternalData(t, baseDir).file, "an input (external data of the model)");
  });
}

export function planSave(
  model: LoadedModel,
  outPath: string,
  opts: SaveOptions = {},
  guard = new PathGuard(),
  label = outPath,
): SavePlan {
  const mode = opts.externalData ?? "copy";
  const inlineBelow = mode === "inline" ? Infinity : (opts.inlineBelow ?? 0);
  const out = path.resolve(outPath);
  const outDir = path.dirname(out);
  const plan: SavePlan = { out, inline: [], carry: new Map() };
  if (model.path) guard.addInput(model.path, "the input model");
  forEachTensor(model.proto, (t) => {
    if (!isExternal(t)) return;
    if (model.baseDir === undefined) {
      throw new GdnFuseError(
        "E_EXTERNAL_DATA",
        `tensor ${quote(t.name)} has external data but the model has no folder (baseDir) to read it from`,
      );
    }
    const r = checkExternalData(t, model.baseDir);
    guard.addInput(r.file, "an input (external data of the model)");
    if (r.length < inlineBelow) plan.inline.push({ t, ...r });
    else plan.carry.set(path.resolve(outDir, externalDataRef(t)!.location), r.file);
  });
  const hint = label === outPath ? " (pass overwriteInput)" : " (use --force)";
  guard.claimOutput(outPath, label, label === outPath ? "the output model" : "the output model (-o)", {
    allowInput: opts.overwriteInput === true,
    hint,
  });
  for (const [dest, src] of plan.carry) {
    if (sameFile(src, dest)) continue; // the output folder already holds this very file: nothing is written
    guard.claimOutput(dest, `external data ${dest}`, `external data of the output (${dest})`);
  }
  return plan;
}

/**
 * Writes the model to `outPath` atomically. External data files are carried to the output folder under
 * the same relative locations (byte-identical); tensors below `inlineBelow` bytes become raw_data.
 */
export async function saveModel(model: LoadedModel, outPath: string, opts: SaveOptions = {}): Promise<void> {
  const mode = opts.externalData ?? "copy";
  const { out, inline, carry } = planSave(model, outPath, opts);
  const outDir = path.dirname(out);
  try {
    await fsp.mkdir(outDir, { recursive: true });
  } catch (e) {
    throw ioError(outDir, e, "create the output folder");
  }

  // Serialise with the inlined tensors swapped in, restoring the caller's objects afterwards.
  const saved: Saved[] = [];
  let bytes: Uint8Array;
  try {
    for (const item of inline) {
      const rec = item.t as Record<string, unknown>;
      const s: Saved = { t: item.t, own: {}, values: {} };
      for (const f of INLINE_FIELDS) {
        s.own[f] = Object.prototype.hasOwnProperty.call(rec, f);
        s.values[f] = rec[f];
      }
      saved.push(s);
      const data = readFileRange(item.file, item.offset, item.length);
      item.t.rawData = data;
      item.t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
      item.t.externalData = [];
    }
    try {
      bytes = encodeMessage(onnx.ModelProto, model.proto);
    } catch (e) {
      throw new GdnFuseError(
        "E_MODEL",
        `${outPath}: cannot serialise the model (${e instanceof Error ? e.message : String(e)}); keep large weights in external data`,
        { cause: e },
      );
    }
  } finally {
    for (const s of saved) {
      const rec = s.t as Record<string, unknown>;
      for (const f of INLINE_FIELDS) {
        if (s.own[f]) rec[f] = s.values[f];
        else delete rec[f];
      }
    }
  }
  if (bytes.length > MAX_PROTOBUF_BYTES) {
    throw new GdnFuseError(
      "E_MODEL",
      `${outPath}: the serialised model is ${bytes.length} bytes, over the 2 GiB protobuf limit; keep large weights in external data`,
    );
  }

  for (const [dest, src] of carry) await carryFile(src, dest, mode === "link" ? "link" : "copy");
  await atomicWrite(out, (tmp) => fsp.writeFile(tmp, bytes, { flag: "wx" }));
}
