// The list of native binaries (native/binaries.json) and the host's prebuild tag, for the build scripts.
// src/runtime/paths.ts computes the same tag at run time; keep the two in step.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

const SO_EXT = { darwin: "dylib", win32: "dll" };

/** [{ name, file, optional }] with {so} replaced by this platform's shared-library extension. */
export function nativeBinaries() {
  const { binaries } = JSON.parse(readFileSync(join(root, "native", "binaries.json"), "utf8"));
  const so = SO_EXT[process.platform] ?? "so";
  return binaries.map((b) => ({ ...b, file: b.file.replace("{so}", so) }));
}

/** "glibc" or "musl" on Linux (prebuilds for one do not load on the other), "" elsewhere. */
export function libc() {
  if (process.platform !== "linux") return "";
  return process.report.getReport().header.glibcVersionRuntime ? "glibc" : "musl";
}

/** The folder name of this host's prebuilds, e.g. linux-x64-glibc. */
export function hostTag() {
  return [process.platform, process.arch, libc()].filter(Boolean).join("-");
}

export const prebuildDir = join(root, "prebuilds", hostTag());
export const buildDir = join(root, "build", "Release");

/** True when every required binary is in `dir`. */
export function hasAllBinaries(dir) {
  return nativeBinaries().every((b) => b.optional || existsSync(join(dir, b.file)));
}
