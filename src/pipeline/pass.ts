/** The Pass interface lives in the pass kit (src/pattern/pass.ts); re-exported for the pipeline's users. */
export * from "../pattern/pass.js";
