/**
 * Where the runtime finds its three native pieces:
 *   - the addon (gdn_addon.node) and the gdn op library (gdn_ops.so; override: GDN_FUSE_OPS_LIBRARY): a local
 *     source build in <package>/build/Release when there is one (contributors, `npm rebuild`), else the
 *     prebuilt binaries shipped in <package>/prebuilds/<platform>-<arch>[-<libc>]/. The list of binaries is
 *     data: native/binaries.json, shared with the build and prebuild scripts;
 *   - ONNX Runtime itself: the libonnxruntime that onnxruntime-node ships (override: GDN_FUSE_ORT_LIBRARY).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { GdnFuseError } from "../errors.js";

const require = createRequire(import.meta.url);

/** The gdn-fuse package root (works from src/runtime under vitest and from dist/src/runtime). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if (JSON.parse(readFileSync(pkg, "utf8")).name === "gdn-fuse") return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new GdnFuseError("E_RUNTIME", "cannot locate the gdn-fuse package root");
    dir = parent;
  }
}

/** One entry of native/binaries.json, with {so} replaced by this platform's shared-library extension. */
export interface NativeBinary {
  name: string;
  file: string;
  optional?: boolean;
}

export function nativeBinaries(): NativeBinary[] {
  const so = process.platform === "darwin" ? "dylib" : process.platform === "win32" ? "dll" : "so";
  const { binaries } = JSON.parse(readFileSync(join(packageRoot(), "native", "binaries.json"), "utf8")) as {
    binaries: NativeBinary[];
  };
  return binaries.map((b) => ({ ...b, file: b.file.replace("{so}", so) }));
}

function binaryFile(name: string): string {
  const binary = nativeBinaries().find((b) => b.name === name);
  if (!binary) throw new GdnFuseError("E_RUNTIME", `native/binaries.json lists no binary named ${name}`);
  return binary.file;
}

let libcCache: string | undefined;
/** "glibc" or "musl" on Linux (a prebuild for one does not load on the other), "" elsewhere. */
export function libc(): string {
  if (process.platform !== "linux") return "";
  if (libcCache === undefined) {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    libcCache = report?.header?.glibcVersionRuntime ? "glibc" : "musl";
  }
  return libcCache;
}

/** This host's prebuild folder name, e.g. linux-x64-glibc (native/scripts/binaries.mjs computes the same). */
export function hostTag(): string {
  return [process.platform, process.arch, libc()].filter(Boolean).join("-");
}

/** The folder of the prebuilt binaries for this host (it may not exist). */
export function prebuildDir(): string {
  return join(packageRoot(), "prebuilds", hostTag());
}

/**
 * The one command that builds the native runtime for this copy of gdn-fuse: a contributor's checkout,
 * a global install, or a project's dependency.
 */
export function rebuildCommand(): string {
  const root = packageRoot();
  if (existsSync(join(root, ".git"))) return "npm run build:native";
  const global = basename(dirname(root)) === "node_modules" && basename(dirname(dirname(root))) === "lib";
  return global ? "npm rebuild -g gdn-fuse" : "npm rebuild gdn-fuse";
}

/** Paths probed for the addon, in order: the local build, then the prebuild. */
export function addonCandidates(): string[] {
  const override = process.env.GDN_FUSE_ADDON; // another build of the addon (npm run test:sanitize)
  if (override) return [resolve(override)];
  const root = packageRoot();
  const file = binaryFile("addon");
  return [join(root, "build", "Release", file), join(root, "build", "Debug", file), join(prebuildDir(), file)];
}

/**
 * Paths probed for the op library: node-gyp's output locations (they depend on its generator and
 * product settings), then the prebuild.
 */
export function opsLibraryCandidates(): string[] {
  const root = packageRoot();
  const file = binaryFile("ops");
  const names = [file, `lib${file}`];
  const dirs = ["Release", "Release/lib.target", "Release/obj.target", "Debug", "Debug/lib.target"];
  return [...dirs.flatMap((d) => names.map((n) => join(root, "build", d, n))), join(prebuildDir(), file)];
}

/** The onnxruntime-node package directory, as Node resolves it from here. */
export function onnxruntimeNodeDir(): string {
  // resolves .../onnxruntime-node/dist/index.js
  return resolve(dirname(require.resolve("onnxruntime-node")), "..");
}

/**
 * A library named by an override variable (GDN_FUSE_ORT_LIBRARY, ...): its absolute path (a library loader may
 * resolve a relative one against another folder), undefined when the variable is unset, E_RUNTIME when the file
 * does not exist.
 */
export function overridePath(variable: string): string | undefined {
  const override = process.env[variable];
  if (!override) return undefined;
  if (!existsSync(override)) {
    throw new GdnFuseError("E_RUNTIME", `${variable} points at ${override}, which does not exist`);
  }
  return resolve(override);
}

/** The ONNX Runtime shared library to load: $GDN_FUSE_ORT_LIBRARY, else the one onnxruntime-node ships. */
export function ortLibraryPath(): string {
  const override = overridePath("GDN_FUSE_ORT_LIBRARY");
  if (override) return override;
  const binDir = join(onnxruntimeNodeDir(), "bin", "napi-v6", process.platform, process.arch);
  const preferred =
    process.platform === "win32"
      ? "onnxruntime.dll"
      : process.platform === "darwin"
        ? "libonnxruntime.dylib"
        : "libonnxruntime.so.1";
  if (existsSync(join(binDir, preferred))) return join(binDir, preferred);
  const pattern =
    process.platform === "win32" ? /^onnxruntime\.dll$/ : /^libonnxruntime(\.[0-9.]+)?\.(so(\.[0-9]+)*|dylib)$/;
  const found = existsSync(binDir)
    ? readdirSync(binDir)
        .filter((f) => pattern.test(f))
        .sort()
    : [];
  if (found.length === 0) {
    throw new GdnFuseError(
      "E_RUNTIME",
      `onnxruntime-node ships no ONNX Runtime library for ${process.platform}-${process.arch} (looked in ${binDir}); ` +
        `set GDN_FUSE_ORT_LIBRARY to the path of a libonnxruntime (>= 1.24) for this host`,
    );
  }
  return join(binDir, found[0]!);
}

/**
 * The gdn op library: $GDN_FUSE_OPS_LIBRARY (must exist), else the first built candidate, else null
 * (models without gdn ops still run; models with them fail with a clear message).
 */
export function opsLibraryPath(): string | null {
  return overridePath("GDN_FUSE_OPS_LIBRARY") ?? opsLibraryCandidates().find((p) => existsSync(p)) ?? null;
}
