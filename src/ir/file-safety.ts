/**
 * Safe file handling for hostile paths: read only regular files (a FIFO or /dev/zero would block or never
 * end), and before writing, refuse any target that is not a regular file, that is one of the inputs, or that
 * another output already claims. Paths are compared by resolved real path and by device + inode, so a
 * symlink or a hard link to an input is caught too.
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { GdnFuseError } from "../errors.js";

/** "a FIFO", "a character device", ... for a file that is not a regular file. */
export function fileKind(st: fs.Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a folder";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "a special file";
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p);
  } catch {
    return undefined;
  }
}

/** Why a read failed, in a few words. */
export function ioReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code === "ENOENT"
    ? "no such file or directory"
    : err.code === "EISDIR"
      ? "is a directory"
      : err.code === "EACCES" || err.code === "EPERM"
        ? "permission denied"
        : err.code === "ENOTDIR"
          ? "a parent path is not a directory"
          : err.code === "ELOOP"
            ? "too many levels of symlinks"
            : (err.message ?? String(e));
}

/**
 * Reads a whole regular file of at most `maxBytes`. The file is opened non-blocking and checked with fstat
 * before any read, so a FIFO or a device fails at once. Errors: E_IO `FILE: cannot WHAT (why)`.
 */
export async function readRegularFile(
  file: string,
  what: string,
  maxBytes: number,
  tooLarge = `larger than ${maxBytes} bytes`,
): Promise<Buffer> {
  const fail = (why: string, cause?: unknown): GdnFuseError =>
    new GdnFuseError("E_IO", `${file}: cannot ${what} (${why})`, { cause });
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw fail(ioReason(e), e);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw fail(st.isDirectory() ? "is a directory" : `not a regular file: ${fileKind(st)}`);
    if (st.size > maxBytes) throw fail(tooLarge);
    return await handle.readFile();
  } catch (e) {
    throw e instanceof GdnFuseError ? e : fail(ioReason(e), e);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

interface Identity {
  real: string;
  dev?: number;
  ino?: number;
}

/** The real path of `p` (of its folder when `p` does not exist yet) and, if it exists, its device + inode. */
function identity(p: string): Identity {
  const abs = path.resolve(p);
  const st = statOrUndefined(abs);
  let real: string;
  try {
    real = fs.realpathSync(abs);
  } catch {
    let dir: string;
    try {
      dir = fs.realpathSync(path.dirname(abs));
    } catch {
      dir = path.dirname(abs);
    }
    real = path.join(dir, path.basename(abs));
  }
  return st ? { real, dev: st.dev, ino: st.ino } : { real };
}

function sameIdentity(a: Identity, b: Identity): boolean {
  if (a.real === b.real) return true;
  return a.ino !== undefined && a.dev === b.dev && a.ino === b.ino;
}

/**
 * Collects the files a run reads (inputs) and claims the files it writes (outputs), refusing a write over
 * an input, two writes to one path, and a write that would replace something that is not a regular file.
 * Refusals are E_USAGE: the arguments name the wrong paths.
 */
export class PathGuard {
  private readonly inputs: { id: Identity; what: string }[] = [];
  private readonly outputs: { id: Identity; what: string }[] = [];

  /** `what` says what the file is, e.g. "the input model", "an input (external data of the model)". */
  addInput(file: string, what: string): void {
    this.inputs.push({ id: identity(file), what });
  }

  /**
   * Claims `file` as an output. `label` prefixes messages ("-o x.onnx"); `what` names the output for a
   * later clash ("the output model (-o)"); `allowInput` lets it replace the input model (--force).
   */
  claimOutput(file: string, label: string, what: string, opts: { allowInput?: boolean; hint?: string } = {}): void {
    const refuse = (why: string): never => {
      throw new GdnFuseError("E_USAGE", `${label}: ${why}`);
    };
    if (file.endsWith("/") || file.endsWith(path.sep)) refuse("names a folder; give a file name");
    const st = statOrUndefined(file);
    if (st && !st.isFile()) refuse(`is ${fileKind(st)}, not a regular file; refusing to replace it`);
    const id = identity(file);
    for (const i of this.inputs) {
      if (opts.allowInput && i.what === "the input model") continue;
      if (sameIdentity(id, i.id))
        refuse(`is ${i.what}; refusing to write over it${i.what === "the input model" ? (opts.hint ?? "") : ""}`);
    }
    for (const o of this.outputs) {
      if (sameIdentity(id, o.id)) refuse(`is also ${o.what}; two outputs cannot share a path`);
    }
    this.outputs.push({ id, what });
  }
}
