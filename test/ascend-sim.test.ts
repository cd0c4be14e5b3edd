/**
 * The CANN simulator's own behaviour (native/ascend/test/sim_test.cc, through the device layer): tracked device
 * memory, copy kinds, queued streams, and the aclnn argument checks with CANN's documented error codes.
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

describe.skipIf(SIM === undefined)("CANN simulator", () => {
  it("passes its native checks", async () => {
    const exe = join(mkdtempSync(join(tmpdir(), "gdn-sim-test-")), "sim_test");
    const sources = ["native/ascend/test/sim_test.cc", "native/ascend/device/cann_device.cc"].map((s) => join(ROOT, s));
    await run(process.env.CXX ?? "g++", [
      "-std=c++17",
      "-O1",
      "-Wall",
      "-I",
      join(ROOT, "native"),
      ...sources,
      "-ldl",
      "-o",
      exe,
    ]);
    const { stdout } = await run(exe, [SIM!]);
    expect(stdout.trim().split("\n").at(-1)).toBe("71 of 71 checks passed");
  });
});
