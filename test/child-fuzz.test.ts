// The fuzz harness itself: a crash, a hang and an abort() are each recorded against their case, and the
// cases after them still run in a fresh child.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";
import { runInChildren, summarize } from "./helpers/child-fuzz.js";

const CASES = path.join(path.dirname(fileURLToPath(import.meta.url)), "helpers", "child-fuzz-selftest-cases.ts");

test("child-fuzz records crashes, hangs and errors per case and runs every case", async () => {
  const results = await runInChildren({ module: CASES, count: 40, timeoutMs: 2000 });
  expect(results.map((r) => r.index)).toEqual(Array.from({ length: 40 }, (_, i) => i));
  expect(summarize(results).counts).toEqual({ ok: 36, error: 1, crash: 2, timeout: 1 });
  expect(results[3]).toMatchObject({ status: "crash", detail: expect.stringMatching(/^child ended by SIGSEGV/) });
  expect(results[5]).toEqual({ index: 5, status: "timeout", detail: "no result within 2000 ms" });
  expect(results[7]).toEqual({ index: 7, status: "error", detail: "Error [E_TEST]: bad input" });
  expect(results[9]).toMatchObject({ status: "crash", detail: expect.stringMatching(/^child ended by SIGABRT/) });
  expect(results[39]).toEqual({ index: 39, status: "ok", detail: "case 39" });
});

test("a lane whose replacement child starts after the other lanes took the last cases runs nothing more", async () => {
  // Case 9 aborts; while its lane starts a new child, the other lane runs cases 10 and 11.
  const results = await runInChildren({ module: CASES, first: 9, count: 3, timeoutMs: 2000 });
  expect(results.map((r) => [r.index, r.status])).toEqual([
    [9, "crash"],
    [10, "ok"],
    [11, "ok"],
  ]);
});
