#!/usr/bin/env node
// gdn-fuse's install script, and the contributors' native build (`npm run build:native`).
//
// As a user's install script: when the package ships prebuilt binaries for this host
// (prebuilds/<platform>-<arch>[-<libc>]/) and they load, there is nothing to do. Otherwise it builds from
// source with node-gyp (npm's own when the package has none of its own). A user's install never fails
// because of the native part: fusion needs none of it; the script prints one line saying what did not
// work and how to build later, and `--verify` / `gdn-fuse/runtime` say the same when used.
//
// In a git checkout (a contributor), with --source, or with GDN_FUSE_BUILD_FROM_SOURCE=1 it always builds
// from source and a failure fails the command. GDN_FUSE_SKIP_NATIVE=1 skips everything.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { buildDir, hasAllBinaries, hostTag, nativeBinaries, prebuildDir, root } from "./binaries.mjs";
import { ensureOrtHeaders } from "./ort-headers.mjs";

const headersDir = join(root, "native", ".deps", "ort-headers");
const REBUILD_HINT = "install a C++17 compiler, make and python3, then run: npm rebuild gdn-fuse";

class BuildError extends Error {}

function checkCompiler() {
  const cxx = process.env.CXX || "c++";
  const r = spawnSync(cxx, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) throw new BuildError(`no C++ compiler found (tried "${cxx}")`);
}

/** node-gyp: the package's own (contributors), the one npm names to lifecycle scripts, else the one inside npm. */
function findNodeGyp() {
  const candidates = [];
  try {
    candidates.push(createRequire(join(root, "package.json")).resolve("node-gyp/bin/node-gyp.js"));
  } catch {
    // not installed beside us: users never have it (it is a devDependency)
  }
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  const prefix = dirname(dirname(process.execPath));
  candidates.push(join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  candidates.push(join(dirname(process.execPath), "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
  return candidates.find((p) => existsSync(p)) ?? null;
}

function runNodeGyp() {
  const gyp = findNodeGyp();
  if (gyp === null) throw new BuildError("node-gyp not found (neither in this package nor inside npm)");
  const args = [gyp, "rebuild", `--jobs=${process.env.JOBS || "max"}`];
  // Build against the running Node's own headers when they are installed beside it, so node-gyp
  // never tries to download them (there may be no network); npm passes npm_config_nodedir otherwise.
  const prefix = dirname(dirname(process.execPath));
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, "include", "node", "node.h"))) args.push(`--nodedir=${prefix}`);
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) throw new BuildError("node-gyp failed (see the compiler output above)");
}

async function buildFromSource() {
  checkCompiler();
  let line;
  try {
    line = await ensureOrtHeaders(headersDir);
  } catch (e) {
    throw new BuildError(`could not get the ONNX Runtime headers: ${e.message}`);
  }
  if (line) console.error(line);
  runNodeGyp();
}

/** True when this host's prebuilt addon is there and loads (a too-old glibc, say, makes it unusable). */
function prebuildLoads() {
  if (!hasAllBinaries(prebuildDir)) return false;
  const addon = nativeBinaries().find((b) => b.name === "addon");
  try {
    createRequire(import.meta.url)(join(prebuildDir, addon.file));
    return true;
  } catch (e) {
    console.error(`gdn-fuse: the prebuilt binaries for ${hostTag()} do not load here (${e.message.split("\n")[0]}); building from source`);
    return false;
  }
}

async function main() {
  if (process.env.GDN_FUSE_SKIP_NATIVE === "1") {
    console.error("gdn-fuse: GDN_FUSE_SKIP_NATIVE=1, native build skipped");
    return;
  }
  const strict =
    process.argv.includes("--source") || process.env.GDN_FUSE_BUILD_FROM_SOURCE === "1" || existsSync(join(root, ".git"));
  if (!strict && !hasAllBinaries(buildDir) && prebuildLoads()) return; // the prebuild serves this host
  try {
    await buildFromSource();
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    if (strict) {
      console.error(`gdn-fuse native build: ${e.message}`);
      process.exit(1);
    }
    console.error(
      `gdn-fuse: no native runtime for ${hostTag()} (no prebuilt binary fits and the source build failed: ${e.message}); ` +
        `fusion works without it, --verify and gdn-fuse/runtime need it: ${REBUILD_HINT}`,
    );
  }
}

await main();
