// fuse-model --verify --ep ascend: the fused model verified on the ascend backend (the CANN simulator here), the
// EP and ascendStats in the report; without CANN one line and exit 1. Run in-process through main(argv, io).
// The no-CANN test comes first: a process that loaded the simulator cannot switch to real CANN.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import type { VerifyResult } from "../src/verify/index.js";
import { MODELS, runtimeLoadError } from "./helpers/cases.js";
import { runCli } from "./helpers/cli.js";

const CASE = path.join(MODELS, "recurrent_t1_b3");
const MODEL = path.join(CASE, "model.onnx");
const DATA = path.join(CASE, "test_data_set_0");
const ERR = "fuse-model: error: ";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-fuse-cli-ascend-"));
const saved = { ...process.env };
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  for (const k of ["GDN_FUSE_ASCEND", "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"]) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

const cli = runCli;

const out = (...parts: string[]): string => path.join(tmp, ...parts);
const REAL = process.env.GDN_FUSE_ASCEND_REAL === "1";

describe("fuse-model --ep", () => {
  test("--ep other than gdn or ascend, or without --verify, is a usage error (2)", async () => {
    const bad = await cli(MODEL, "-o", out("x.onnx"), "--verify", "--ep", "cuda");
    expect(bad.code).toBe(2);
    expect(bad.stderr.split("\n")[0]).toBe(`${ERR}--ep must be one of gdn, ascend, not "cuda"`);
    const alone = await cli(MODEL, "-o", out("x.onnx"), "--ep", "ascend");
    expect(alone.code).toBe(2);
    expect(alone.stderr.split("\n")[0]).toBe(`${ERR}--ep chooses where --verify runs the fused model; add --verify`);
  });
});

describe.skipIf(runtimeLoadError() !== undefined)("fuse-model --verify --ep ascend", () => {
  test.skipIf(REAL)("without CANN (and no simulator) exits 1 with the one-line 'CANN was not found'", async () => {
    delete process.env.GDN_FUSE_ASCEND;
    delete process.env.ASCEND_TOOLKIT_HOME;
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "no-cann-"));
    process.env.ASCEND_HOME_PATH = home;
    const r = await cli(MODEL, "-o", out("no-cann", "model.onnx"), "--verify", DATA, "--ep", "ascend");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `${ERR}cannot create an ascend session: CANN was not found: cannot load libascendcl.so, libnnopbase.so and ` +
        `libopapi.so (tried ${home}/lib64/libascendcl.so, ${home}/aarch64-linux/lib64/libascendcl.so, ` +
        `${home}/x86_64-linux/lib64/libascendcl.so, libascendcl.so (loader path)); source CANN's set_env.sh (sets ` +
        "ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME) or add its lib64 to LD_LIBRARY_PATH, or set GDN_FUSE_ASCEND=sim " +
        "to use the gdn-fuse CANN simulator\n",
    );
  });

  test("verifies on the ascend backend and records the EP and ascendStats in the report", async () => {
    if (REAL) delete process.env.GDN_FUSE_ASCEND;
    else process.env.GDN_FUSE_ASCEND = "sim";
    const report = out("sim", "report.json");
    const r = await cli(MODEL, "-o", out("sim", "model.onnx"), "--verify", DATA, "--ep", "ascend", "--report", report);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^verify on ${DATA.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\(ascend\\):\n`));
    const { verify } = JSON.parse(fs.readFileSync(report, "utf8")) as { verify: VerifyResult };
    expect(verify.ok).toBe(true);
    expect(verify.runtime).toBe("ascend");
    expect(verify.outputs.map((o) => o.tolerance)).toEqual(verify.outputs.map(() => 1e-2)); // the device is bf16
    expect(verify.ascendStats!.nodesOnDevice).toEqual({ "gdn.RecurrentGatedDeltaRule": 1 });
    // One run: the graph's inputs (q, k, v, g, beta, state) in, output and final state out.
    expect([verify.ascendStats!.copiesH2D, verify.ascendStats!.copiesD2H]).toEqual([6, 2]);
  });

  test("--ep gdn (the default) verifies on the gdn backend", async () => {
    const report = out("gdn", "report.json");
    const r = await cli(MODEL, "-o", out("gdn", "model.onnx"), "--verify", DATA, "--ep", "gdn", "--report", report);
    expect(r.code).toBe(0);
    const { verify } = JSON.parse(fs.readFileSync(report, "utf8")) as { verify: VerifyResult };
    expect(verify.runtime).toBe("gdn");
    expect(verify.ascendStats).toBeUndefined();
    expect(verify.outputs.every((o) => o.tolerance === 1e-5)).toBe(true);
  });
});
