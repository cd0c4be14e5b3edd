/**
 * Runtime fuzzer (issue 10, section 4): structure-aware run-time inputs and attributes for the five gdn ops
 * (test/helpers/runtime-fuzz-cases.ts), each case in a long-lived child process (test/helpers/child-fuzz.ts).
 * Every case must end in a result or a one-line GdnFuseError with a code: no signal, no abort, no hang.
 * `npm run fuzz` runs the long version (GDN_FUZZ_CASES=50000); GDN_FUZZ_SEED picks another fixed seed.
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runInChildren, summarize } from "./helpers/child-fuzz.js";
import { describeCase } from "./helpers/runtime-fuzz-cases.js";
import { loadRuntime } from "../src/runtime/index.js";

const CASES = Number(process.env.GDN_FUZZ_CASES ?? 2000);
const MODULE = fileURLToPath(new URL("./helpers/runtime-fuzz-cases.ts", import.meta.url));
const ready = loadRuntime().opsLibraryPath !== null;
// Under the sanitizers (npm run test:sanitize) operator new cannot throw std::bad_alloc: ASan aborts the process
// instead. A case whose output onnxruntime's own allocator cannot get (e.g. a conv_state of 2^31 x 4 x 3 floats
// behind an empty x) then ends in that abort, where the normal build gives the one-line GdnFuseError "output ...
// cannot be allocated" (npm test runs the same cases). Only such aborts, in onnxruntime's allocator, are set aside.
const SANITIZED = process.env.GDN_FUSE_SANITIZE === "1";
const ortOutOfMemory = (detail: string) =>
  /AddressSanitizer: allocator is out of memory[\s\S]*#0 [^\n]*operator new[^\n]*\n\s*#1 [^\n]*libonnxruntime\.so/.test(
    detail,
  );

describe.skipIf(!ready)("runtime fuzzer", () => {
  it(
    `${CASES} cases over the five gdn ops: each ends in a result or a GdnFuseError`,
    { timeout: Math.max(240_000, CASES * 60) },
    async () => {
      const results = await runInChildren({ module: MODULE, count: CASES, workers: 2, timeoutMs: 4_000 });
      const { counts } = summarize(results);
      const setAside = results.filter((r) => SANITIZED && r.status === "crash" && ortOutOfMemory(r.detail));
      const bad = results.filter((r) => (r.status === "crash" || r.status === "timeout") && !setAside.includes(r));
      const notGdn = results.filter((r) => r.status === "error" && !/^GdnFuseError \[E_[A-Z_]+\]: /.test(r.detail));
      const show = (rs: typeof results) =>
        rs
          .slice(0, 8)
          .map((r) => `#${r.index} ${describeCase(r.index)}: ${r.status} ${r.detail.slice(0, 300)}`)
          .join("\n");
      console.log(`runtime fuzzer: ${JSON.stringify(counts)}`);
      if (setAside.length) console.log(`under ASan, out of memory in onnxruntime's allocator:\n${show(setAside)}`);
      expect(bad.length, `crashed or hung:\n${show(bad)}`).toBe(0);
      expect(notGdn.length, `errors that are not a one-line GdnFuseError:\n${show(notGdn)}`).toBe(0);
      const seen = new Map<number, string[]>();
      for (const r of results)
        seen.set(r.index, [...(seen.get(r.index) ?? []), `${r.status} ${r.detail.slice(0, 120)}`]);
      const twice = [...seen].filter(([, v]) => v.length > 1);
      expect(twice, "cases reported twice").toEqual([]);
      expect(seen.size).toBe(CASES);
      // the generator must keep reaching the kernels: a fifth of the cases run to a result
      expect(counts.ok).toBeGreaterThan(CASES / 5);
    },
  );
});
