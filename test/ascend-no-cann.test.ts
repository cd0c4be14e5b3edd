/**
 * Without CANN and without GDN_FUSE_ASCEND=sim, creating an `ascend` session fails with one line that says CANN
 * was not found, names the libraries and the paths tried, and how to point at CANN. (Its own file: vitest runs
 * each file in its own process, and a process that loaded the simulator cannot switch to real CANN.)
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import "../src/runtime/index.js";
import { CORE_PASSES, fuseCase, runtimeLoadError } from "./helpers/cases.js";

const saved = { ...process.env };
afterAll(() => {
  for (const k of ["GDN_FUSE_ASCEND", "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"]) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

// With real CANN installed this test cannot show the failure (npm run test:ascend skips it).
const cannPresent = process.env.GDN_FUSE_ASCEND_REAL === "1";

describe.skipIf(runtimeLoadError() !== undefined || cannPresent)("ascend backend without CANN", () => {
  it("fails with one line naming the libraries, the paths tried and the fixes", async () => {
    delete process.env.GDN_FUSE_ASCEND;
    delete process.env.ASCEND_TOOLKIT_HOME;
    const home = mkdtempSync(join(tmpdir(), "no-cann-"));
    process.env.ASCEND_HOME_PATH = home; // a CANN folder without the libraries
    const { model } = await fuseCase("recurrent_t1_b3", { passes: CORE_PASSES });
    const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-")), "model.onnx");
    writeFileSync(file, encodeMessage(onnx.ModelProto, model.proto as onnx.ModelProto));
    const create = ort.InferenceSession.create(file, {
      executionProviders: [{ name: "ascend", deviceId: 0 } as unknown as string],
    });
    const err = await create.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GdnFuseError);
    const message = (err as GdnFuseError).message;
    expect((err as GdnFuseError).code).toBe("E_RUNTIME");
    expect(message).toBe(
      `cannot create an ascend session: CANN was not found: cannot load libascendcl.so, libnnopbase.so and libopapi.so (tried ${home}/lib64/libascendcl.so, ` +
        `${home}/aarch64-linux/lib64/libascendcl.so, ${home}/x86_64-linux/lib64/libascendcl.so, libascendcl.so (loader path)); ` +
        "source CANN's set_env.sh (sets ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME) or add its lib64 to LD_LIBRARY_PATH, " +
        "or set GDN_FUSE_ASCEND=sim to use the gdn-fuse CANN simulator",
    );
  });
});
