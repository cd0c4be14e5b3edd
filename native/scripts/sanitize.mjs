#!/usr/bin/env node
// npm run test:sanitize — the native code under AddressSanitizer + UndefinedBehaviorSanitizer:
//   1. builds the op library and the addon with -fsanitize=address,undefined into build/sanitize/ (the normal
//      build in build/Release is left alone; objects are rebuilt only when a source or header changed);
//   2. runs the native kernel tests (native/test/test_kernels.cc, linked with the same sanitized kernel objects),
//      with the best instruction set and with the generic one;
//   3. runs the runtime tests with the sanitized libraries: node itself is not instrumented, so the ASan runtime
//      is preloaded (LD_PRELOAD), leak detection is off, and GDN_FUSE_OPS_LIBRARY / GDN_FUSE_ADDON point the
//      runtime at build/sanitize/.
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
];

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

/** Compiles the stale objects, two at a time (the build machine is small), then links each product. */
async function build() {
  mkdirSync(OUT, { recursive: true });
  const headers = newestHeader();
  const jobs = [];
  for (const prod of products)
    for (const src of prod.sources) {
      const obj = join(OUT, "obj", `${basename(dirname(src))}_${basename(src, ".cc")}.o`);
      const stale = !existsSync(obj) || statSync(obj).mtimeMs < Math.max(statSync(src).mtimeMs, headers);
      prod.objects = [...(prod.objects ?? []), obj];
      if (stale) jobs.push([...COMMON, ...prod.flags, "-c", src, "-o", obj]);
    }
  mkdirSync(join(OUT, "obj"), { recursive: true });
  const workers = Array.from({ length: 2 }, async () => {
    while (jobs.length > 0) {
      const args = jobs.shift();
      console.log(`sanitize: ${CXX} ${basename(args[args.length - 3])}`);
      await run(CXX, args);
    }
  });
  await Promise.all(workers);
  for (const prod of products) await run(CXX, [...SAN, ...prod.objects, ...prod.link, "-o", join(OUT, prod.name)]);
}

/** The kernel test program, linked with the op library's sanitized contract and CPU objects (compiled once). */
async function buildKernelTests() {
  const src = join(ROOT, "native/test/test_kernels.cc");
  const obj = join(OUT, "obj", "test_kernels.o");
  if (!existsSync(obj) || statSync(obj).mtimeMs < Math.max(statSync(src).mtimeMs, newestHeader()))
    await run(CXX, [...COMMON, `-I${join(ROOT, "native/test")}`, "-c", src, "-o", obj]);
  const kernels = products[0].objects.filter((o) => /\/(common|cpu)_[^/]+\.o$/.test(o));
  const exe = join(OUT, "test_kernels");
  await run(CXX, [...SAN, obj, ...kernels, "-pthread", "-o", exe]);
  return exe;
}

async function main() {
  if (process.platform !== "linux") throw new Error("npm run test:sanitize needs Linux and g++");
  await build();
  const kernelTests = await buildKernelTests();
  for (const isa of [undefined, "generic"]) {
    console.log(`sanitize: native kernel tests (${isa ?? "best instruction set"}, --quick)`);
    const r = spawnSync(kernelTests, ["--quick"], { env: { ...process.env, ...(isa ? { GDN_CPU_ISA: isa } : {}) }, encoding: "utf8", maxBuffer: 64 << 20 });
    const lines = r.stdout.split("\n");
    for (const l of lines) if (l.startsWith("FAIL")) console.log(l);
    console.log(lines.filter((l) => /^\d+ passed, \d+ failed$/.test(l)).pop() ?? "(no summary)");
    if (r.status !== 0) throw new Error(`native kernel tests: ${r.signal ?? `exit ${r.status}`}\n${r.stderr.slice(-4000)}`);
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
    GDN_FUSE_SANITIZE: "1", // kernels.test.ts: the native test program already ran under the sanitizers above
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
