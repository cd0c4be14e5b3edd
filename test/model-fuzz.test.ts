// Structure-aware model fuzzing (issue 10, section 4): fixture models with fields set to hostile values
// (test/helpers/model-fuzz-cases.ts), each run through load + fuse + save + reload in long-lived child
// processes. Every case must end in a fused model that loads back or in a one-line GdnFuseError with a
// code: no other exception, no crash, no hang. Fixed seeds; `npm run fuzz:models` runs 50,000 cases.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect, test } from "vitest";
import { runInChildren, summarize } from "./helpers/child-fuzz.js";
import { mutatedModel } from "./helpers/model-fuzz-cases.js";

const CASES = path.join(path.dirname(fileURLToPath(import.meta.url)), "helpers", "model-fuzz-cases.ts");
const COUNT = Number(process.env.GDN_MODEL_FUZZ_CASES ?? 2000);
const FIRST = Number(process.env.GDN_MODEL_FUZZ_FIRST ?? 0);

test("the mutations change the models (a mutation may miss: no attribute to pick, same value drawn)", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const { bytes, what } = mutatedModel(i);
    seen.add(Buffer.from(bytes).toString("base64"));
    expect(what).toMatch(/^[\w-]+; \w+: /);
  }
  expect(seen.size).toBeGreaterThanOrEqual(38);
});

test(
  `${COUNT} mutated models: only GdnFuseErrors, no crash or hang, every written model loads back`,
  async () => {
    const results = await runInChildren({ module: CASES, count: COUNT, first: FIRST, timeoutMs: 20_000 });
    const { counts, examples } = summarize(results);
    expect(examples).toEqual([]); // the first cases that threw something else, crashed or hung
    expect(counts.ok).toBe(COUNT);
    const outcomes: Record<string, number> = {};
    for (const r of results) {
      const key = r.detail.startsWith("fused") ? "fused" : r.detail;
      outcomes[key] = (outcomes[key] ?? 0) + 1;
    }
    // each kind of outcome occurs, so the mutations reach every stage (parse, validation, external data, fusion)
    for (const kind of ["rejected E_PARSE", "rejected E_MODEL", "rejected E_EXTERNAL_DATA", "fused"]) {
      expect(outcomes[kind] ?? 0, kind).toBeGreaterThan(COUNT / 100);
    }
  },
  Math.max(600_000, COUNT * 100),
);
