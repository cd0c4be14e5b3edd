/**
 * Kept only for tests written before the pass kit: the helpers now live in src/ir and src/pattern
 * (import them from there; no pass imports this file, test/architecture.test.ts checks it).
 */
export { declareType, reshapeDims, sameDims, setInput, type Dim } from "../src/ir/index.js";
