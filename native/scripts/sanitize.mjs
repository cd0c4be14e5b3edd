#!/usr/bin/env node
// npm run test:sanitize — the native code under AddressSanitizer + UndefinedBehaviorSanitizer:
//   1. builds the op library, the addon, the Ascend EP library and the CANN simulator with
//      -fsanitize=address,undefined into build/sanitize/ (the normal build in build/Release is left alone; objects
//      are rebuilt only when a source or header changed);
//   2. runs the native kernel tests (native/test/test_kernels.cc, linked with the same sanitized kernel objects),
//      with the best instruction set and with the generic one, and the simulator's own tests
//      (native/ascend/test/sim_test.cc, sim_stream_test.cc, linked with the sanitized device layer) on the
//      sanitized simulator;
//   3. runs the runtime and Ascend tests with the sanitized libraries: node itself is not instrumented, so the ASan
//      runtime is preloaded (LD_PRELOAD), leak detection is off, and GDN_FUSE_OPS_LIBRARY / GDN_FUSE_ADDON /
//      GDN_FUSE_ASCEND_EP_LIBRARY / GDN_FUSE_CANN_SIM_LIBRARY point the runtime at build/sanitize/.
// Linux + g++ only. Exit status 0 when everything passed.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const OUT = join(ROOT, "build", "sanitize");
const CXX = process.env.CXX || "g++";
const SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"];
const COMMON = ["-std=c++17", "-O1", "-g", "-fPIC", "-Wno-psabi", ...SAN, `-I${join(ROOT, "native")}`, `-I${join(ROOT, "native/.deps/ort-headers")}`];
const RUNTIME_TESTS = [
  "test/runtime-gdn-op.test.ts",
  "test/kernels.test.ts",
  "test/ops-hostile.test.ts",
  "test/runtime-fuzz.test.ts",
  "test/serving-delta.test.ts",
  "test/serving-conv.test.ts",
  // the Ascend EP on the CANN simulator (test/helpers/ascend.ts sets GDN_FUSE_ASCEND=sim); the simulator's own test
  // programs (test/ascend-sim.test.ts) are not here: they ran above, built with the sanitizers
  "test/ascend.test.ts",
  "test/ascend-models.test.ts",
  "test/ascend-layer.test.ts",
  "test/ascend-serving.test.ts",
  "test/ascend-decode-loop.test.ts",
  "test/cli-ascend.test.ts",
  "test/ascend-no-cann.test.ts",
];

const require = createRequire(import.meta.url);
const nodeIncludes = [join(dirname(process.execPath), "..", "include", "node"), require("node-addon-api").include_dir];
const sources = (dir) => readdirSync(join(ROOT, dir)).filter((f) => f.endsWith(".cc")).map((f) => join(ROOT, dir, f));
const products = [
  {
    name: "libgdn_ops.so",
    sources: [...sources("native/custom-ops"), ...sources("native/common"), ...sources("native/cpu")],
    flags: ["-fvisibility=hidden"],
    link: ["-shared", "-pthread", `-Wl,--version-script=${join(ROOT, "native/custom-ops/gdn_ops.map")}`],
  },
  {
    name: "gdn_addon.node",
    sources: sources("native/addon"),
    flags: [...nodeIncludes.map((d) => `-I${d}`), "-DNAPI_VERSION=8", "-DNODE_ADDON_API_DISABLE_DEPRECATED", "-DNAPI_CPP_EXCEPTIONS", "-DNODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
    link: ["-shared", "-pthread", "-ldl"],
  },
  {
    name: "libgdn_cann_sim.so",
    sources: [join(ROOT, "native/ascend/sim/cann_sim.cc")],
    flags: ["-fvisibility=hidden"],
    link: ["-shared", "-pthread", "-Wl,-z,defs"],
  },
  {
    // the same sources as binding.gyp's gdn_ascend_ep; common/gdn_contract.cc's object is the op library's
    name: "libgdn_ascend_ep.so",
    sources: [...sources("native/ascend/device"), ...sources("native/ascend/ep"), join(ROOT, "native/common/gdn_contract.cc")],
    flags: ["-fvisibility=hidden"],
    link: ["-shared", "-pthread", "-ldl", "-Wl,-z,defs"],
  },
];
/** The simulator's own test programs (test/ascend-sim.test.ts builds the same ones unsanitized), each linked with
 * the device layer's object; each exits non-zero when a check fails. */
const SIM_TESTS = ["sim_test", "sim_stream_test"];

/** Newest modification time of every header under native/ (any header may change any object). */
function newestHeader() {
  let t = 0;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== ".deps" && e.name !== "build") walk(p);
      } else if (e.name.endsWith(".h")) t = Math.max(t, statSync(p).mtimeMs);
    }
  };
  walk(join(ROOT, "native"));
  return t;
}

function run(cmd, args, opts = {}) {
  return new Promise((resolvePromise, reject) => {
    const p = spawn(cmd, args, { stdio: "inherit", ...opts });
    p.on("close", (code, signal) => (code === 0 ? resolvePromise() : reject(new Error(`${basename(cmd)} ${signal ?? `exit ${code}`}`))));
  });
}

function objectPath(src) {
  return join(OUT, "obj", `${basename(dirname(src))}_${basename(src, ".cc")}.o`);
}

/** Compiles the stale objects, two at a time (the build machine is small), then links each product. */
async function build() {
  mkdirSync(OUT, { recursive: true });
  const headers = newestHeader();
  const jobs = new Map(); // object -> compiler arguments (an object shared by two products is compiled once)
  for (const prod of products)
    for (const src of prod.sources) {
      const obj = objectPath(src);
      const stale = !existsSync(obj) || statSync(obj).mtimeMs < Math.max(statSync(src).mtimeMs, headers);
      prod.objects = [...(prod.objects ?? []), obj];
      if (stale) jobs.set(obj, [...COMMON, ...prod.flags, "-c", src, "-o", obj]);
    }
  mkdirSync(join(OUT, "obj"), { recursive: true });
  const queue = [...jobs.values()];
  const workers = Array.from({ length: 2 }, async () => {
    while (queue.length > 0) {
      const args = queue.shift();
      console.log(`sanitize: ${CXX} ${basename(args[args.length - 3])}`);
      await run(CXX, args);
    }
  });
  await Promise.all(workers);
  for (const prod of products) await run(CXX, [...SAN, ...prod.objects, ...prod.link, "-o", join(OUT, prod.name)]);
}

/** A native test program compiled from `src` (once, until it or a header changes) and linked with sanitized
 * library objects. */
async function buildTestProgram(src, objects, flags, libs) {
  const obj = join(OUT, "obj", `${basename(src, ".cc")}.o`);
  if (!existsSync(obj) || statSync(obj).mtimeMs < Math.max(statSync(src).mtimeMs, newestHeader()))
    await run(CXX, [...COMMON, ...flags, "-c", src, "-o", obj]);
  const exe = join(OUT, basename(src, ".cc"));
  await run(CXX, [...SAN, obj, ...objects, ...libs, "-o", exe]);
  return exe;
}

/** Runs a native test program; prints its FAIL lines and its summary (the last line), throws unless it passed. */
function runTestProgram(label, exe, args, env = process.env) {
  console.log(`sanitize: ${label}`);
  const r = spawnSync(exe, args, { env, encoding: "utf8", maxBuffer: 64 << 20 });
  const lines = r.stdout.split("\n");
  for (const l of lines) if (l.startsWith("FAIL")) console.log(l);
  console.log(lines.filter((l) => /^\d+ passed, \d+ failed$|^\d+ of \d+ checks passed$/.test(l)).pop() ?? "(no summary)");
  if (r.status !== 0) throw new Error(`${label}: ${r.signal ?? `exit ${r.status}`}\n${r.stderr.slice(-4000)}`);
}

async function main() {
  if (process.platform !== "linux") throw new Error("npm run test:sanitize needs Linux and g++");
  await build();
  const product = (name) => products.find((p) => p.name === name);
  // the kernel tests link the op library's contract and CPU objects
  const kernelObjects = product("libgdn_ops.so").objects.filter((o) => /\/(common|cpu)_[^/]+\.o$/.test(o));
  const kernelTests = await buildTestProgram(join(ROOT, "native/test/test_kernels.cc"), kernelObjects, [`-I${join(ROOT, "native/test")}`], ["-pthread"]);
  for (const isa of [undefined, "generic"])
    runTestProgram(`native kernel tests (${isa ?? "best instruction set"}, --quick)`, kernelTests, ["--quick"], { ...process.env, ...(isa ? { GDN_CPU_ISA: isa } : {}) });
  // the simulator's tests reach it through the device layer, as the EP does
  const simLibrary = join(OUT, "libgdn_cann_sim.so");
  const deviceObject = objectPath(join(ROOT, "native/ascend/device/cann_device.cc"));
  for (const name of SIM_TESTS) {
    const exe = await buildTestProgram(join(ROOT, "native/ascend/test", `${name}.cc`), [deviceObject], [], ["-ldl"]);
    runTestProgram(`CANN simulator tests (${name})`, exe, [simLibrary]);
  }
  const asan = execFileSync(CXX, ["-print-file-name=libasan.so"], { encoding: "utf8" }).trim();
  if (!existsSync(asan)) throw new Error(`the ASan runtime of ${CXX} was not found (${asan})`);
  const tests = RUNTIME_TESTS.filter((t) => existsSync(join(ROOT, t)));
  console.log(`sanitize: runtime tests with the sanitized libraries: ${tests.join(" ")}`);
  const env = {
    ...process.env,
    LD_PRELOAD: asan,
    ASAN_OPTIONS: "detect_leaks=0:abort_on_error=1",
    UBSAN_OPTIONS: "print_stacktrace=1",
    GDN_FUSE_OPS_LIBRARY: join(OUT, "libgdn_ops.so"),
    GDN_FUSE_ADDON: join(OUT, "gdn_addon.node"),
    GDN_FUSE_ASCEND_EP_LIBRARY: join(OUT, "libgdn_ascend_ep.so"),
    GDN_FUSE_CANN_SIM_LIBRARY: simLibrary,
    // tests that differ under the sanitizers: kernels.test.ts skips its native program (it ran above), runtime-fuzz
    // sets aside ASan's aborts in onnxruntime's allocator, runtime-safety drops its RSS bound (ASan's quarantine)
    GDN_FUSE_SANITIZE: "1",
  };
  const vitest = join(ROOT, "node_modules", "vitest", "vitest.mjs");
  const r = spawnSync(process.execPath, [vitest, "run", ...tests], { cwd: ROOT, env, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`runtime tests under the sanitizers: ${r.signal ?? `exit ${r.status}`}`);
  console.log("sanitize: all passed");
}

main().catch((e) => {
  console.error(`sanitize: FAILED: ${e.message}`);
  process.exit(1);
});
