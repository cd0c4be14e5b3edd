import type { Pass } from "../../src/pipeline/pass.js";
export const lowerToOrt: Pass = { name: "lower-to-ort", description: "", anchors: [], targets: ["ort"], async run() {} };
