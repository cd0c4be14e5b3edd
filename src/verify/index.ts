// STUB (lead is writing the real verifier): compares an original and a fused model on test data or random inputs.
export interface VerifyOutput { name: string; maxAbs: number; relL2: number; tolerance: number; ok: boolean }
export interface VerifyResult { ok: boolean; outputs: VerifyOutput[]; source: string }
export async function verifyModels(originalPath: string, fusedPath: string, options: { dataDir?: string } = {}): Promise<VerifyResult> {
  void originalPath; void fusedPath; void options;
  return { ok: true, outputs: [], source: "stub" };
}
