// gdn-fuse bench helper (own process, so its peak RSS is the pass's): fuse the synthetic 48-layer stack.
// Usage: node bench/pass48.mjs DIST_DIR  -> prints {"ms": n, "maxRssMB": n, "baseRssMB": n, "fused": n}
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dist = process.argv[2];
const imp = (p) => import(pathToFileURL(join(dist, p)).href);
const { loadModel } = await imp("src/ir/model-io.js");
const { fuseModel } = await imp("src/index.js"); // the package entry registers the built-in passes
const { buildLayerStack } = await imp("test/helpers/layer-stack.js"); // compiled by bench/tsconfig.json
const root = join(dist, "..", "..", "..");
const layer = await loadModel(join(root, "models", "layer_qwen3next_prefill_t96", "model.onnx"));
const stack = buildLayerStack(layer.proto, { layers: 48, otherEvery: 4 });
global.gc?.();
const baseRssMB = process.memoryUsage().rss / 2 ** 20;
const t0 = performance.now();
const report = await fuseModel(stack);
const ms = performance.now() - t0;
const maxRssMB = process.resourceUsage().maxRSS / 1024;
process.stdout.write(
  JSON.stringify({
    ms,
    maxRssMB,
    baseRssMB,
    nodes: stack.graph.node.length,
    fused: report.fused["gdn.ChunkGatedDeltaRule"] ?? 0,
  }) + "\n",
);
