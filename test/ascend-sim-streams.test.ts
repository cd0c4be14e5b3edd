/**
 * The CANN simulator's streams and events (native/ascend/test/sim_stream_test.cc, through the device layer): events
 * are stream-ordered markers, so waiting on an unrecorded event or synchronising too early shows as stale data.
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

describe.skipIf(SIM === undefined)("CANN simulator streams and events", () => {
  it("orders work by events as a device does", async () => {
    const exe = join(mkdtempSync(join(tmpdir(), "gdn-sim-stream-test-")), "sim_stream_test");
    const sources = ["native/ascend/test/sim_stream_test.cc", "native/ascend/device/cann_device.cc"];
    const args = ["-std=c++17", "-O1", "-Wall", "-I", join(ROOT, "native"), ...sources.map((s) => join(ROOT, s))];
    await run(process.env.CXX ?? "g++", [...args, "-ldl", "-o", exe]);
    const { stdout } = await run(exe, [SIM!]);
    expect(stdout.trim().split("\n").at(-1)).toBe("13 of 13 checks passed");
  });
});
