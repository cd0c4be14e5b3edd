// gdn-fuse as its users get it (issue 14): the packed tarball (with the prebuilt binaries of this host)
// installed into empty projects with and without its install script, and globally; in each,
// `npx fuse-model --verify` and a script that imports gdn-fuse/runtime and runs a fused model. Then the
// same package with no usable binary: fusion still works, --verify and the runtime fail with one line.
//
// One pack and three installs (from the npm cache, --prefer-offline), shared by all cases. A user's
// project has no .npmrc of ours: ONNXRUNTIME_NODE_INSTALL=skip stands in for what a user without access
// to NuGet must set (onnxruntime-node's postinstall fetches CUDA libraries from there on every linux-x64).
import { execFile, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { hostTag } from "../src/runtime/paths.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MODEL_DIR = path.join(ROOT, "models", "recurrent_t1_b3");
const MODEL = path.join(MODEL_DIR, "model.onnx");
const DATA = path.join(MODEL_DIR, "test_data_set_0");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-fuse-install-"));
// About 1 GB of installs: removed by a detached rm so that the suite does not wait the ~40 s it takes here.
afterAll(() => spawn("rm", ["-rf", tmp], { detached: true, stdio: "ignore" }).unref());

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking the vitest worker; never throws on a non-zero exit. */
async function run(cmd: string, args: string[], cwd: string, extraEnv: Record<string, string> = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", ...extraEnv };
  // What vitest and our own npm scripts put in the environment is not a user's.
  for (const k of Object.keys(env))
    if (k.startsWith("npm_") || k.startsWith("VITEST") || k === "GDN_FUSE_OPS_LIBRARY") delete env[k];
  try {
    const { stdout, stderr } = await promisify(execFile)(cmd, args, { cwd, env, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof err.code === "number" ? err.code : 1,
      stdout: err.stdout ?? "",
      stderr: err.stderr ?? String(e),
    };
  }
}

const NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];

/** The script a user writes: registers the gdn backend, runs the fused model and stock ORT on the original. */
const RUN_FUSED = `
import * as ort from "onnxruntime-node";
import { loadRuntime } from "gdn-fuse/runtime";
const [original, fused] = process.argv.slice(2);
const runtime = loadRuntime();
const ref = await ort.InferenceSession.create(original);
const feeds = {};
for (const input of ref.inputMetadata) {
  const size = input.shape.reduce((a, b) => a * b, 1);
  feeds[input.name] = new ort.Tensor("float32", Float32Array.from({ length: size }, (_, i) => Math.sin(i * 0.37) * 0.5), input.shape);
}
const want = await ref.run(feeds);
const session = await ort.InferenceSession.create(fused, { executionProviders: ["gdn"], intraOpNumThreads: 2 });
const got = await session.run(feeds);
let maxAbs = 0;
for (const name of Object.keys(want)) {
  for (let i = 0; i < want[name].data.length; i++) maxAbs = Math.max(maxAbs, Math.abs(want[name].data[i] - got[name].data[i]));
}
console.log(JSON.stringify({ addonPath: runtime.addonPath, opsLibraryPath: runtime.opsLibraryPath, maxAbs, outputs: Object.keys(got) }));
`;

/** Installs the tarball into a fresh project; returns the project folder. */
async function installProject(name: string, tarball: string, extra: string[]): Promise<string> {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(
    path.join(dir, "package.json"),
    JSON.stringify({ name, version: "1.0.0", private: true, type: "module" }),
  );
  fs.writeFileSync(path.join(dir, "run-fused.mjs"), RUN_FUSED);
  const r = await run("npm", ["install", tarball, ...NPM_FLAGS, ...extra], dir);
  expect(r.code, `npm install in ${name}: ${r.stderr}`).toBe(0);
  return dir;
}

let tarball = "";
let withScripts = "";
let ignoreScripts = "";
let globalPrefix = "";
let installLog = "";

beforeAll(async () => {
  const started = Date.now();
  // The prebuilds of this host from the current build (CI's `npm install` made it), then the tarball.
  // --ignore-scripts: `prepare` would recompile dist/ (30 s); npm install and build:ts keep it current.
  const prebuild = await run(process.execPath, ["native/scripts/prebuild.mjs", "--from-build"], ROOT);
  expect(prebuild.code, prebuild.stderr).toBe(0);
  expect(fs.existsSync(path.join(ROOT, "dist", "src", "cli", "fuse-model.js")), "dist/ is built").toBe(true);
  const pack = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", tmp, "--json"], ROOT);
  expect(pack.code, pack.stderr).toBe(0);
  tarball = path.join(tmp, (JSON.parse(pack.stdout) as { filename: string }[])[0]!.filename);
  globalPrefix = path.join(tmp, "global");
  const withScriptsRun = installProject("with-scripts", tarball, []);
  const ignoreRun = installProject("ignore-scripts", tarball, ["--ignore-scripts"]);
  const globalRun = run("npm", ["install", "-g", tarball, "--prefix", globalPrefix, ...NPM_FLAGS], tmp);
  [withScripts, ignoreScripts] = await Promise.all([withScriptsRun, ignoreRun]);
  const g = await globalRun;
  expect(g.code, `npm install -g: ${g.stderr}`).toBe(0);
  installLog = g.stdout + g.stderr;
  console.log(`install.test: pack and three installs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}, 300_000);

/** fuse-model with --verify on the bundled model, as `npx fuse-model` or a global bin runs it. */
async function fuseAndVerify(cmd: string, args: string[], cwd: string): Promise<string> {
  const fused = path.join(cwd, "fused.onnx");
  const r = await run(cmd, [...args, MODEL, "-o", fused, "--verify", DATA], cwd);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain("fused gdn.RecurrentGatedDeltaRule x1; nodes 41 -> 1");
  expect(r.stdout).toMatch(/ok {3}core_attn_out: max abs/);
  expect(r.stdout).toMatch(/ok {3}final_state: max abs/);
  expect(r.stdout).toContain("verified");
  return fused;
}

async function runFused(
  cwd: string,
  fused: string,
): Promise<{ addonPath: string; opsLibraryPath: string; maxAbs: number; outputs: string[] }> {
  const r = await run(process.execPath, ["run-fused.mjs", MODEL, fused], cwd);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

const prebuilt = (pkgDir: string, file: string) => path.join(pkgDir, "prebuilds", hostTag(), file);

describe("installed from the packed tarball", () => {
  test("the tarball ships the prebuilds of this host and no build folder or third-party headers", async () => {
    const r = await run("tar", ["-tzf", tarball], tmp);
    const files = r.stdout.split("\n");
    expect(files).toContain(`package/prebuilds/${hostTag()}/gdn_addon.node`);
    expect(files).toContain(`package/prebuilds/${hostTag()}/gdn_ops.so`);
    expect(files).toContain("package/native/binaries.json");
    // The source build's inputs: every file binding.gyp names (the custom-op library's folder among them).
    const gypFiles =
      fs.readFileSync(path.join(ROOT, "binding.gyp"), "utf8").match(/native\/[\w\-/]+\.(?:cc|map)/g) ?? [];
    expect(gypFiles).toContain("native/custom-ops/register.cc");
    expect(gypFiles.filter((f) => !files.includes(`package/${f}`))).toEqual([]);
    expect(
      files.filter((f) => f.startsWith("package/build/") || f.includes("/.deps/") || f.endsWith("onnxruntime_c_api.h")),
    ).toEqual([]);
  });

  test("every module in the tarball's dist/ is built from a source of this tree (no stale output of a removed file)", async () => {
    const r = await run("tar", ["-tzf", tarball], tmp);
    const modules = r.stdout.split("\n").filter((f) => f.startsWith("package/dist/") && f.endsWith(".js"));
    expect(modules).toContain("package/dist/src/index.js");
    const source = (f: string) => path.join(ROOT, f.slice("package/dist/".length).replace(/\.js$/, ".ts"));
    expect(modules.filter((f) => !fs.existsSync(source(f)))).toEqual([]);
  });

  for (const [label, project] of [
    ["with its install script", () => withScripts],
    ["with --ignore-scripts", () => ignoreScripts],
  ] as const) {
    test(`${label}: npx fuse-model --verify, then gdn-fuse/runtime runs the fused model on the prebuilt binaries`, async () => {
      const cwd = project();
      const pkgDir = path.join(cwd, "node_modules", "gdn-fuse");
      expect(fs.existsSync(path.join(pkgDir, "build")), "no source build happened").toBe(false);
      const fused = await fuseAndVerify("npx", ["--no-install", "fuse-model"], cwd);
      const result = await runFused(cwd, fused);
      expect(result.addonPath).toBe(prebuilt(pkgDir, "gdn_addon.node"));
      expect(result.opsLibraryPath).toBe(prebuilt(pkgDir, "gdn_ops.so"));
      expect(result.outputs.sort()).toEqual(["core_attn_out", "final_state"]);
      expect(result.maxAbs).toBeLessThan(1e-5);
    });
  }

  test("npm install -g: the global fuse-model verifies on the prebuilt binaries", async () => {
    expect(installLog).not.toContain("gdn-fuse: no native runtime");
    const cwd = path.join(tmp, "global-work");
    fs.mkdirSync(cwd);
    await fuseAndVerify(path.join(globalPrefix, "bin", "fuse-model"), [], cwd);
  });

  test("with no usable binary: the CLI and the library fuse, --verify and gdn-fuse/runtime fail with one line naming the host and the command", async () => {
    // The --ignore-scripts project with a copy of the package that lost its prebuilds, as on a host none fits
    // (its dependencies are linked, not copied).
    const cwd = path.join(tmp, "no-binary");
    const from = path.join(ignoreScripts, "node_modules");
    const nodeModules = path.join(cwd, "node_modules");
    fs.mkdirSync(path.join(nodeModules, ".bin"), { recursive: true });
    fs.copyFileSync(path.join(ignoreScripts, "run-fused.mjs"), path.join(cwd, "run-fused.mjs"));
    for (const entry of fs.readdirSync(from)) {
      if (entry === "gdn-fuse") {
        fs.cpSync(path.join(from, entry), path.join(nodeModules, entry), {
          recursive: true,
          filter: (src) => !src.includes("prebuilds"),
        });
      } else if (entry !== ".bin") {
        fs.symlinkSync(path.join(from, entry), path.join(nodeModules, entry));
      }
    }
    fs.symlinkSync("../gdn-fuse/dist/src/cli/fuse-model.js", path.join(nodeModules, ".bin", "fuse-model"));
    expect(fs.existsSync(path.join(nodeModules, "gdn-fuse", "prebuilds"))).toBe(false);

    const fuse = await run("npx", ["--no-install", "fuse-model", MODEL, "-o", "fused.onnx"], cwd);
    expect(fuse.code, fuse.stderr).toBe(0);
    expect(fuse.stdout).toContain("fused gdn.RecurrentGatedDeltaRule x1; nodes 41 -> 1");

    // The install script on such a host without a compiler: one line, and the install goes on (exit 0).
    const install = await run(
      process.execPath,
      [path.join(nodeModules, "gdn-fuse", "native", "scripts", "build.mjs")],
      cwd,
      { CXX: "false" },
    );
    expect(install.code, install.stderr).toBe(0);
    expect(install.stderr).toBe(
      `gdn-fuse: no native runtime for ${hostTag()} (no prebuilt binary fits and the source build failed: no C++ compiler found (tried "false")); ` +
        "fusion works without it, --verify and gdn-fuse/runtime need it: install a C++17 compiler, make and python3, then run: npm rebuild gdn-fuse\n",
    );

    const library = await run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { fuseModelFile } from "gdn-fuse"; const r = await fuseModelFile(process.argv[1], "lib.onnx"); console.log(JSON.stringify(r.fused));`,
        MODEL,
      ],
      cwd,
    );
    expect(library.code, library.stderr).toBe(0);
    expect(JSON.parse(library.stdout)).toEqual({ "gdn.RecurrentGatedDeltaRule": 1 });

    const expected = new RegExp(
      `no native runtime for ${hostTag()} \\(the package has no prebuilt binary for it and nothing is built\\); ` +
        "to build it for this host, install a C\\+\\+17 compiler, make and python3, then run: npm rebuild gdn-fuse$",
    );
    const verify = await run(
      "npx",
      ["--no-install", "fuse-model", MODEL, "-o", "verified.onnx", "--verify", DATA],
      cwd,
    );
    expect(verify.code).toBe(1);
    const lines = verify.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(expected);

    const runtime = await run(process.execPath, ["run-fused.mjs", MODEL, "fused.onnx"], cwd);
    expect(runtime.code).not.toBe(0);
    const thrown = runtime.stderr.split("\n").find((l) => l.startsWith("GdnFuseError: "));
    expect(thrown, runtime.stderr).toMatch(expected);
  });
});
