import { describe, expect, it } from "vitest";
import {
  CORE_NEAR_MISS,
  droppedStateUpdate,
  expectFusedToOne,
  expectMatchesCase,
  fuseCase,
  mutateAndFuse,
  testCoreNearMisses,
} from "../test/helpers/index.js";

const CHUNK_CASES = [
  "chunk_t100_h4_k32_v48", // 2 chunks with padding, initial state, K != V
  "chunk_t64_noopt", // exporter output without the onnxscript optimizer (3,951 nodes)
  "chunk_t130_fp16", // fp16 with Casts, 3 chunks
  "chunk_t80_nostate", // no initial state, no final state
  "chunk_t64_opset23",
  "chunk_t70_opset20_nol2", // no L2 norm in the kernel
  "chunk_t1_b1", // B = 1, T = 1
  "chunk_t96_bf16",
  "chunk_qwen35_t100", // the Qwen3.5 modeling code's copy of the kernel
];

describe("gated-delta-chunk", () => {
  for (const name of CHUNK_CASES) {
    it(`fuses ${name} into one ChunkGatedDeltaRule and reproduces PyTorch's outputs`, async () => {
      const { report } = await expectFusedToOne(name, "gdn.ChunkGatedDeltaRule");
      const applied = report.passes.find((p) => p.name === "gated-delta-chunk")!.applied[0]!;
      expect(applied.replacedNodes).toBe(report.nodesBefore);
    });
  }

  it("reads the parameters from the graph", async () => {
    const { model, report } = await fuseCase("chunk_t70_opset20_nol2");
    const d = report.passes[0]!.applied[0]!.details!;
    expect(d).toMatchObject({
      B: 1,
      T: 70,
      Hk: 2,
      Hv: 2,
      K: 16,
      V: 24,
      chunkSize: 64,
      useQkL2norm: false,
      initialState: true,
      finalState: true,
    });
    expect(d.scale as number).toBeCloseTo(0.25, 7);
    const node = model.proto.graph!.node![0]!;
    const attr = Object.fromEntries(
      node.attribute!.map((a) => [
        a.name,
        a.type === 3 ? new TextDecoder().decode(a.s!) : a.type === 1 ? a.f : Number(a.i),
      ]),
    );
    expect(attr).toMatchObject({ use_qk_l2norm: 0, state_layout: "kv", chunk_size: 64 });
  });

  it("fuses a core with an initial state but no final-state output", async () => {
    const r = await mutateAndFuse("chunk_t100_h4_k32_v48", (m) => m.dropGraphOutput("final_state"));
    expect(r.fused).toEqual({ "gdn.ChunkGatedDeltaRule": 1 });
    const node = r.model.proto.graph!.node![0]!;
    expect(node.input).toHaveLength(6);
    expect(node.output).toEqual(["core_attn_out"]);
    await expectMatchesCase(r.model.proto, "chunk_t100_h4_k32_v48");
  });

  it("fuses an export with a dynamic batch, and the fused op runs at both exported batch sizes", async () => {
    const { model, report } = await fuseCase("chunk_t100_dynb");
    expect(report.fused).toEqual({ "gdn.ChunkGatedDeltaRule": 1 });
    expect(report.passes[0]!.applied[0]!.details).toMatchObject({ B: "batch", T: 100 });
    for (const set of ["test_data_set_0", "test_data_set_1"])
      await expectMatchesCase(model.proto, "chunk_t100_dynb", { set, label: `${set} ` });
  });

  it("fuses a core whose batch dimension is symbolic", async () => {
    const r = await mutateAndFuse("chunk_t100_h4_k32_v48", (m) => m.symbolicBatch());
    expect(r.fused).toEqual({ "gdn.ChunkGatedDeltaRule": 1 });
    expect(r.passes[0]!.applied[0]!.details).toMatchObject({ B: "batch", T: 100 });
    await expectMatchesCase(r.model.proto, "chunk_t100_h4_k32_v48");
  });

  it("fuses the core of whole layers and models, leaving the rest", async () => {
    for (const [name, n] of [
      ["layer_qwen3next_prefill_t96", 1],
      ["layer_qwen35_prefill_t64", 1],
      ["model_qwen35_tiny_t50", 3],
    ] as const) {
      const { report } = await fuseCase(name, { passes: ["gated-delta-chunk"] });
      expect(report.fused, name).toEqual({ "gdn.ChunkGatedDeltaRule": n });
    }
  });
});

describe("gated-delta-chunk near misses", () => {
  testCoreNearMisses("chunk_t100_h4_k32_v48", [
    CORE_NEAR_MISS.l2normEps,
    {
      name: "rejects another query scale, with reason",
      mutate: (m) => m.setScalar((v) => Math.abs(v - 1 / Math.sqrt(32)) < 1e-7, 0.2),
      stage: "scale",
      reason: expect.stringContaining("query scale is 0.2"),
    },
    {
      name: "rejects a changed mask constant, with reason",
      mutate: (m) => m.flipBoolInitializer([64, 64], 3 * 64 + 10),
      stage: "mask",
      reason: expect.stringContaining("strict upper triangle (row 3, column 10)"),
    },
    CORE_NEAR_MISS.swappedDeltaSub,
    droppedStateUpdate("the region has 1 state update S + k^T v_new step; chunks of 64 over 100 tokens need 2"),
  ]);
});
