import type { Pass } from "../../src/pipeline/pass.js";
export const lowerToOnnx: Pass = { name: "lower-to-onnx", description: "", anchors: [], targets: ["onnx"], async run() {} };
