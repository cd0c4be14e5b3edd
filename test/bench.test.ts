/**
 * The bench still runs: its serving cases (the ones a refactor broke once, unnoticed until the next `npm run bench`)
 * end with exit 0, every row it promises, and every output comparison within its tolerance. Timings are the
 * bench's business, not this test's: nothing here looks at a millisecond.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT, runtimeLoadError } from "./helpers/cases.js";

const SERVING_ROWS = [
  "serve_prefill_b8_t512",
  "serve_prefill_packed_8x512",
  "serve_prefill_uneven",
  "serve_decode_b8",
  "serve_decode_pool64_b8",
  "serve_spec_decode_b8_t4",
];

describe.skipIf(runtimeLoadError() !== undefined)("npm run bench", () => {
  it(
    "runs the serving cases to the end, with every row and every output check passing",
    { timeout: 240_000 },
    async () => {
      const json = join(mkdtempSync(join(tmpdir(), "gdn-bench-")), "bench.json");
      const args = ["bench/run.mjs", "--cases", "serve_prefill,serve_decode", "--json", json];
      await promisify(execFile)(process.execPath, args, { cwd: ROOT, maxBuffer: 16 << 20 });
      const result = JSON.parse(readFileSync(json, "utf8")) as {
        rows: { case: string }[];
        checks: { case: string; output: string; ok: boolean }[];
      };
      expect(result.rows.map((r) => r.case)).toEqual(SERVING_ROWS);
      expect(result.checks.map((c) => `${c.case}/${c.output}`)).toEqual([
        "serve_prefill_packed_8x512/out",
        "serve_prefill_packed_8x512/final_state",
      ]);
      expect(result.checks.filter((c) => !c.ok)).toEqual([]);
    },
  );
});
