/**
 * Real models keep their weights in external data files. The layer passes read projection weights
 * and gating constants, so fusing must read them from the model's folder (never from elsewhere), and
 * the fused model, saved to another folder, still runs and computes PyTorch's outputs.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { fuseModelFile } from "../src/index.js";
import { loadModel } from "../src/ir/model-io.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { MODELS, runAgainstCase } from "./helpers/cases.js";

const CASE = "layer_qwen3next_prefill_t96";

/** Writes the case with every initializer over 256 bytes moved to weights.bin; returns the model path. */
async function withExternalWeights(dir: string): Promise<string> {
  const m = await loadModel(path.join(MODELS, CASE, "model.onnx"));
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const t of m.proto.graph!.initializer!) {
    const raw = t.rawData;
    if (!raw || raw.length <= 256) continue;
    chunks.push(Buffer.from(raw));
    t.externalData = [
      { key: "location", value: "weights.bin" },
      { key: "offset", value: String(offset) },
      { key: "length", value: String(raw.length) },
    ];
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.rawData = new Uint8Array(0);
    offset += raw.length;
  }
  expect(chunks.length).toBeGreaterThan(3);
  fs.writeFileSync(path.join(dir, "weights.bin"), Buffer.concat(chunks));
  const file = path.join(dir, "model.onnx");
  fs.writeFileSync(file, encodeMessage(onnx.ModelProto, m.proto as onnx.ModelProto));
  return file;
}

describe("fusing a model whose weights are external data", () => {
  it("reads the weights from the model's folder and fuses the whole layer", async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-ext-"));
    const src = await withExternalWeights(fs.mkdtempSync(path.join(tmp, "in-")));
    const outDir = path.join(tmp, "out");
    const report = await fuseModelFile(src, path.join(outDir, "model.onnx"));
    expect(report.fused).toMatchObject({
      "gdn.ChunkGatedDeltaRule": 1,
      "gdn.CausalConv1d": 1,
      "gdn.GatedRMSNorm": 1,
      "gdn.GatedDeltaGating": 1,
    });
    expect(report.passes.flatMap((p) => p.skipped).filter((s) => /external|baseDir/i.test(s.reason))).toEqual([]);
    expect(report.nodesAfter).toBe(12);
    const fused = await loadModel(path.join(outDir, "model.onnx"));
    for (const o of await runAgainstCase(fused.proto, CASE, ["gdn"], outDir))
      expect(o.err, o.name).toBeLessThanOrEqual(o.tol);
  });
});
