/**
 * The core passes do not depend on what an exporter is free to change: node and value names, node
 * order, the operand order of commutative ops. Each mutated graph still fuses and still computes
 * PyTorch's outputs.
 */
import { describe, expect, it } from "vitest";
import { mutateAndFuse, opCounts, runAgainstCase } from "./helpers/index.js";

const CASES: [string, string, number][] = [
  ["chunk_t100_h4_k32_v48", "gdn.ChunkGatedDeltaRule", 1],
  ["recurrent_t4_b2", "gdn.RecurrentGatedDeltaRule", 1],
  ["layer_qwen3next_prefill_t96", "gdn.ChunkGatedDeltaRule", 1],
];

describe("core fusion robustness", () => {
  for (const [name, op, count] of CASES) {
    it(`fuses ${name} with every node and value renamed and the node list shuffled`, async () => {
      const r = await mutateAndFuse(name, (m) => m.renameAndShuffle(7), {
        passes: ["gated-delta-chunk", "gated-delta-recurrent"],
      });
      expect(r.fused).toEqual({ [op]: count });
      expect(opCounts(r.model.proto)[op]).toBe(count);
      for (const o of await runAgainstCase(r.model.proto, name)) expect(o.err, o.name).toBeLessThanOrEqual(o.tol);
    });
    it(`fuses ${name} with the operands of Add and Mul commuted`, async () => {
      let swapped = 0;
      const r = await mutateAndFuse(name, (m) => (swapped = m.commute(11)), {
        passes: ["gated-delta-chunk", "gated-delta-recurrent"],
      });
      expect(swapped).toBeGreaterThan(5);
      expect(r.fused).toEqual({ [op]: count });
      for (const o of await runAgainstCase(r.model.proto, name)) expect(o.err, o.name).toBeLessThanOrEqual(o.tol);
    });
  }
});
