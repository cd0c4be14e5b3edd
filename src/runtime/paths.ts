/**
 * Where the runtime finds its three native pieces:
 *   - the addon (gdn_addon.node), built by `npm install` into <package>/build/Release;
 *   - ONNX Runtime itself: the libonnxruntime that onnxruntime-node ships (override: GDN_FUSE_ORT_LIBRARY);
 *   - the gdn op library (libgdn_ops), built next to the addon (override: GDN_FUSE_OPS_LIBRARY).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
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

/** Paths probed for the addon, most specific first. */
export function addonCandidates(): string[] {
  const override = process.env.GDN_FUSE_ADDON; // another build of the addon (npm run test:sanitize)
  if (override) return [resolve(override)];
  const root = packageRoot();
  return [join(root, "build", "Release", "gdn_addon.node"), join(root, "build", "Debug", "gdn_addon.node")];
}

/** Paths probed for the op library (node-gyp's output location depends on its generator and product settings). */
export function opsLibraryCandidates(): string[] {
  const root = packageRoot();
  const ext = process.platform === "darwin" ? "dylib" : process.platform === "win32" ? "dll" : "so";
  const names = [`libgdn_ops.${ext}`, `gdn_ops.${ext}`];
  const dirs = ["Release", "Release/lib.target", "Release/obj.target", "Debug", "Debug/lib.target"];
  return dirs.flatMap((d) => names.map((n) => join(root, "build", d, n)));
}

/** The onnxruntime-node package directory, as Node resolves it from here. */
export function onnxruntimeNodeDir(): string {
  // resolves .../onnxruntime-node/dist/index.js
  return resolve(dirname(require.resolve("onnxruntime-node")), "..");
}

/** The ONNX Runtime shared library to load: $GDN_FUSE_ORT_LIBRARY, else the one onnxruntime-node ships. */
export function ortLibraryPath(): string {
  const override = process.env.GDN_FUSE_ORT_LIBRARY;
  if (override) {
    if (!existsSync(override)) {
      throw new GdnFuseError("E_RUNTIME", `GDN_FUSE_ORT_LIBRARY points at ${override}, which does not exist`);
    }
    return resolve(override);
  }
  const binDir = join(onnxruntimeNodeDir(), "bin", "napi-v6", process.platform, process.arch);
  const preferred =
    process.platform === "win32" ? "onnxruntime.dll" : process.platform === "darwin" ? "libonnxruntime.dylib" : "libonnxruntime.so.1";
  if (existsSync(join(binDir, preferred))) return join(binDir, preferred);
  const pattern = process.platform === "win32" ? /^onnxruntime\.dll$/ : /^libonnxruntime(\.[0-9.]+)?\.(so(\.[0-9]+)*|dylib)$/;
  const found = existsSync(binDir) ? readdirSync(binDir).filter((f) => pattern.test(f)).sort() : [];
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
  const override = process.env.GDN_FUSE_OPS_LIBRARY;
  if (override) {
    if (!existsSync(override)) {
      throw new GdnFuseError("E_RUNTIME", `GDN_FUSE_OPS_LIBRARY points at ${override}, which does not exist`);
    }
    return resolve(override);
  }
  return opsLibraryCandidates().find((p) => existsSync(p)) ?? null;
}
