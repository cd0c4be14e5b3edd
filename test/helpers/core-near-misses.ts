/**
 * Near misses of the gated-delta cores (passes/gated-delta-chunk.test.ts, -recurrent.test.ts): a mutation of
 * a core case that the pass must refuse, with the stage and reason of the refusal. The ones both cores refuse
 * alike are here once (CORE_NEAR_MISS).
 */
import { expect, it } from "vitest";
import { firstSkip } from "./cases.js";
import { mutateAndFuse, type StepOptions } from "./fuse.js";
import type { Mutator } from "./mutate.js";

export interface CoreNearMiss {
  /** The test's name. */
  name: string;
  mutate(m: Mutator): void;
  options?: StepOptions;
  /** What the first skipped candidate must have: its stage, and its reason (or a matcher of it). */
  stage: string;
  reason: unknown;
}

/** Near misses both core passes refuse with the same stage and reason. */
export const CORE_NEAR_MISS = {
  l2normEps: {
    name: "rejects another L2 norm eps, with reason",
    mutate: (m) => m.setScalar((v) => Math.abs(v - 1e-6) < 1e-9, 1e-5),
    stage: "l2norm",
    reason: expect.stringContaining("eps is 0.00001"),
  },
  swappedDeltaSub: {
    name: "rejects swapped operands of the delta-rule Sub, with reason",
    mutate: (m) => m.swapInputsOfDeltaSub(),
    stage: "delta-rule",
    reason: expect.stringContaining("value - (state prediction)"),
  },
} satisfies Record<string, CoreNearMiss>;

/** A removed state update, refused by structure with the probe off; `reason` names the count the case needs. */
export const droppedStateUpdate = (reason: string): CoreNearMiss => ({
  name: "rejects a removed state update by structure (probe off), with reason",
  mutate: (m) => m.dropStateUpdate(),
  options: { probe: false },
  stage: "steps",
  reason,
});

/** One test per near miss of case `name`: nothing fuses, and the first skipped candidate has its stage and reason. */
export function testCoreNearMisses(name: string, misses: readonly CoreNearMiss[]): void {
  for (const miss of misses)
    it(miss.name, async () => {
      const r = await mutateAndFuse(name, miss.mutate, miss.options);
      expect(r.fused).toEqual({});
      expect(firstSkip(r)).toMatchObject({ stage: miss.stage, reason: miss.reason });
    });
}
