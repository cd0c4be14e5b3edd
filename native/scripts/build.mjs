#!/usr/bin/env node
// Builds the native side of gdn-fuse: the op library (libgdn_ops.so) and the N-API addon (gdn_addon.node).
// Runs during `npm install`. Steps:
//   1. check that a C++17 compiler exists (clear message if not);
//   2. make sure the ONNX Runtime C/C++ headers are present (fetched from the npm registry, cached);
//   3. run node-gyp (the build tool npm itself uses for addons; no extra download, works offline with nodedir).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
// The ORT 1.30 runtime shipped in onnxruntime-node speaks C API version <= 29; these headers declare API 29.
const HEADERS_PKG = "com.github.asus4.onnxruntime@0.4.9";
const HEADERS_IN_TARBALL = "package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers";
export const headersDir = join(root, "native", ".deps", "ort-headers");

function fail(message) {
  console.error(`gdn-fuse native build: ${message}`);
  process.exit(1);
}

function checkCompiler() {
  const cxx = process.env.CXX || "c++";
  const r = spawnSync(cxx, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) {
    fail(
      `no C++ compiler found (tried "${cxx}"). Install one, e.g. "apt-get install g++ make python3" on Debian/Ubuntu ` +
        `or the Xcode command line tools on macOS, or point CXX at a C++17 compiler, then run "npm rebuild gdn-fuse".`,
    );
  }
}

function ensureHeaders() {
  if (existsSync(join(headersDir, "onnxruntime_c_api.h"))) return;
  const cache = process.env.GDN_FUSE_CACHE || join(homedir(), ".cache", "gdn-fuse");
  mkdirSync(cache, { recursive: true });
  const tarball = join(cache, "com.github.asus4.onnxruntime-0.4.9.tgz");
  if (!existsSync(tarball)) {
    console.error(`gdn-fuse: fetching ONNX Runtime headers (${HEADERS_PKG}, ~150 MB, cached in ${cache})`);
    const r = spawnSync("npm", ["pack", HEADERS_PKG, "--pack-destination", cache, "--silent"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (r.status !== 0 || !existsSync(tarball)) fail(`could not fetch ${HEADERS_PKG} from the npm registry`);
  }
  const staging = `${headersDir}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const strip = HEADERS_IN_TARBALL.split("/").length;
  try {
    execFileSync("tar", ["-xzf", tarball, "-C", staging, `--strip-components=${strip}`, "--wildcards", `${HEADERS_IN_TARBALL}/*.h`]);
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    fail(`could not extract the ONNX Runtime headers from ${tarball}: ${e.message}`);
  }
  if (!readdirSync(staging).includes("onnxruntime_c_api.h")) fail(`${tarball} holds no onnxruntime_c_api.h`);
  rmSync(headersDir, { recursive: true, force: true });
  mkdirSync(dirname(headersDir), { recursive: true });
  renameSync(staging, headersDir);
}

function runNodeGyp() {
  const gyp = join(root, "node_modules", "node-gyp", "bin", "node-gyp.js");
  if (!existsSync(gyp)) fail("node-gyp is missing; run `npm install` in the project first");
  const jobs = process.env.JOBS || "max";
  const args = [gyp, "rebuild", `--jobs=${jobs}`];
  // Build against the running Node's own headers when they are installed beside it, so node-gyp
  // never tries to download them (there may be no network); npm passes npm_config_nodedir otherwise.
  const prefix = dirname(dirname(process.execPath));
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, "include", "node", "node.h"))) args.push(`--nodedir=${prefix}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) fail("node-gyp failed (see the compiler output above)");
}

if (process.env.GDN_FUSE_SKIP_NATIVE === "1") {
  console.error("gdn-fuse: GDN_FUSE_SKIP_NATIVE=1, native build skipped");
} else {
  checkCompiler();
  ensureHeaders();
  runNodeGyp();
}
