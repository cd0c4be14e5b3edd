/** Registers the passes that ship with gdn-fuse (idempotent). */
import { gatedDeltaChunk } from "../../passes/gated-delta-chunk.js";
import { gatedDeltaRecurrent } from "../../passes/gated-delta-recurrent.js";
import { registerPass } from "./registry.js";

let done = false;
export function registerBuiltinPasses(): void {
  if (done) return;
  done = true;
  for (const p of [gatedDeltaChunk, gatedDeltaRecurrent]) registerPass(p);
}
