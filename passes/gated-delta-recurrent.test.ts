import { describe, expect, it } from "vitest";
import {
  CORE_NEAR_MISS,
  droppedStateUpdate,
  expectFusedToOne,
  expectMatchesCase,
  fuseCase,
  testCoreNearMisses,
} from "../test/helpers/index.js";

const RECURRENT_CASES = [
  "recurrent_t1_b3", // one decode step, batch 3, K != V
  "recurrent_t4_b2", // 4 tokens (speculative verify)
  "recurrent_qwen35_t2_b2", // the Qwen3.5 modeling code's copy
  "recurrent_t1_b1_opset23_nol2", // B = T = 1, opset 23, no L2 norm in the kernel
  "recurrent_t3_b2_noopt", // exporter output without the onnxscript optimizer
];

describe("gated-delta-recurrent", () => {
  for (const name of RECURRENT_CASES) {
    it(`fuses ${name} into one RecurrentGatedDeltaRule and reproduces PyTorch's outputs`, async () => {
      await expectFusedToOne(name, "gdn.RecurrentGatedDeltaRule");
    });
  }

  it("fuses the core of the decode-step layers", async () => {
    for (const name of ["layer_qwen3next_decode_b2", "layer_qwen35_decode_b2"]) {
      const { report } = await fuseCase(name, { passes: ["gated-delta-recurrent"] });
      expect(report.fused, name).toEqual({ "gdn.RecurrentGatedDeltaRule": 1 });
    }
  });

  it("fuses exports with a dynamic batch, and the fused op runs at both exported batch sizes", async () => {
    for (const name of ["recurrent_t1_dynb", "layer_qwen3next_decode_dynb"]) {
      const { model, report } = await fuseCase(name, { passes: ["gated-delta-recurrent"] });
      expect(report.fused, name).toEqual({ "gdn.RecurrentGatedDeltaRule": 1 });
      expect(report.passes[0]!.applied[0]!.details).toMatchObject({ B: "batch" });
      for (const set of ["test_data_set_0", "test_data_set_1"])
        await expectMatchesCase(model.proto, name, { set, label: `${name} ${set} ` });
    }
  });

  it("reads use_qk_l2norm = 0 when the kernel does not normalise", async () => {
    const { report } = await fuseCase("recurrent_t1_b1_opset23_nol2");
    expect(report.passes.find((p) => p.name === "gated-delta-recurrent")!.applied[0]!.details).toMatchObject({
      useQkL2norm: false,
      T: 1,
      B: 1,
    });
  });
});

describe("gated-delta-recurrent near misses", () => {
  testCoreNearMisses("recurrent_t4_b2", [
    CORE_NEAR_MISS.l2normEps,
    {
      name: "rejects another query scale, with reason",
      mutate: (m) => m.setScalar((v) => v === 4, 3), // the export divides by sqrt(K) = 4
      stage: "scale",
      reason: expect.stringContaining("query scale is 0.333"),
    },
    CORE_NEAR_MISS.swappedDeltaSub,
    droppedStateUpdate("the region has 3 delta Sub v - prediction steps; 4 tokens need 4"),
  ]);
});
