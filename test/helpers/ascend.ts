/**
 * The ascend tests' shared set-up: the `ascend` backend over the CANN simulator (GDN_FUSE_ASCEND=sim), or real
 * CANN under `npm run test:ascend` (GDN_FUSE_ASCEND_REAL=1). Call `useAscendDevice()` at the top of a test file.
 */
import { afterAll, beforeAll } from "vitest";

export const REAL_ASCEND = process.env.GDN_FUSE_ASCEND_REAL === "1";

/** Selects the simulator (or real CANN) for the file's tests and restores GDN_FUSE_ASCEND afterwards. */
export function useAscendDevice(): void {
  const saved = process.env.GDN_FUSE_ASCEND;
  beforeAll(() => {
    if (REAL_ASCEND) delete process.env.GDN_FUSE_ASCEND;
    else process.env.GDN_FUSE_ASCEND = "sim";
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.GDN_FUSE_ASCEND;
    else process.env.GDN_FUSE_ASCEND = saved;
  });
}
