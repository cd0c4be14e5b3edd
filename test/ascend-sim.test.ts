/**
 * The CANN simulator's own behaviour, through the device layer, by its two native test programs:
 * - native/ascend/test/sim_test.cc: tracked device memory, copy kinds, queued streams, and the aclnn argument checks
 *   with CANN's documented error codes;
 * - native/ascend/test/sim_stream_test.cc: streams and events. Events are stream-ordered markers, so waiting on an
 *   unrecorded event or synchronising too early shows as stale data.
 * (`npm run test:sanitize` builds and runs the same programs under ASan/UBSan.)
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/cases.js";

const run = promisify(execFile);
const SIM = ["build/Release/gdn_cann_sim.so", "build/Release/lib.target/libgdn_cann_sim.so"]
  .map((p) => join(ROOT, p))
  .find(existsSync);

const PROGRAMS = [
  { name: "sim_test", checks: 71, what: "memory, copies, queued streams and the aclnn argument checks" },
  { name: "sim_stream_test", checks: 13, what: "streams and events order work as a device does" },
];

describe.skipIf(SIM === undefined)("CANN simulator", () => {
  for (const { name, checks, what } of PROGRAMS)
    it(`${name}: ${what}`, async () => {
      const exe = join(mkdtempSync(join(tmpdir(), `gdn-${name}-`)), name);
      const sources = [`native/ascend/test/${name}.cc`, "native/ascend/device/cann_device.cc"].map((s) =>
        join(ROOT, s),
      );
      const flags = ["-std=c++17", "-O1", "-Wall", "-I", join(ROOT, "native")];
      await run(process.env.CXX ?? "g++", [...flags, ...sources, "-ldl", "-o", exe]);
      const { stdout } = await run(exe, [SIM!]);
      expect(stdout.trim().split("\n").at(-1)).toBe(`${checks} of ${checks} checks passed`);
    });
});
