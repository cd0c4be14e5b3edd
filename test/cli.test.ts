// fuse-model, run in-process through main(argv, io) (stdout/stderr captured, exit code returned), plus
// one spawn of the compiled bin when dist/ exists (CI's `npm install` compiles it through `prepare`).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test } from "vitest";
import { decodeMessage, encodeMessage, onnx } from "../src/ir/onnx.js";
import { arrayToTensor } from "../src/ir/tensor.js";
import { registerPass } from "../src/pipeline/index.js";
import { runCli } from "./helpers/cli.js";
import { externalFloat32, float32Info, modelOf } from "./helpers/models.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CORPUS = path.join(ROOT, "models"); // the project's own fixtures
const MODEL = path.join(CORPUS, "recurrent_t1_b3", "model.onnx");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "gdn-fuse-cli-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const cli = runCli;

const out = (...parts: string[]): string => path.join(tmp, ...parts);
/** What a lossless load + save of the model must produce, byte for byte. */
const canonical = (file: string): Uint8Array =>
  encodeMessage(onnx.ModelProto, decodeMessage(onnx.ModelProto, fs.readFileSync(file)));

describe("fuse-model", () => {
  test("--help prints usage and exits 0", async () => {
    const r = await cli("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: fuse-model IN.onnx -o OUT.onnx");
    expect(r.stderr).toBe("");
  });

  test("no arguments is a usage error (2)", async () => {
    const r = await cli();
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^fuse-model: error: missing the input model/);
  });

  test("an unknown flag is a usage error (2), with no stack trace", async () => {
    const r = await cli(MODEL, "-o", out("x.onnx"), "--frobnicate");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^fuse-model: error: Unknown option '--frobnicate'\n/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  test("bad option values are usage errors (2)", async () => {
    expect((await cli(MODEL, "-o", out("x.onnx"), "--target", "cuda")).code).toBe(2);
    expect((await cli(MODEL, "-o", out("x.onnx"), "--inline-below", "lots")).code).toBe(2);
    expect((await cli(MODEL, "-o", out("x.onnx"), "--external-data", "move")).code).toBe(2);
    expect((await cli(MODEL)).code).toBe(2); // no -o
  });

  test("a missing input file exits 1 and names the file", async () => {
    const r = await cli(out("does-not-exist.onnx"), "-o", out("x.onnx"));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `fuse-model: error: ${out("does-not-exist.onnx")}: cannot read the model (no such file or directory)\n`,
    );
    expect(fs.existsSync(out("x.onnx"))).toBe(false);
  });

  test("a truncated model exits 1 with one line and writes nothing", async () => {
    const cut = out("cut.onnx");
    fs.writeFileSync(cut, fs.readFileSync(MODEL).subarray(0, 5000));
    const r = await cli(cut, "-o", out("cut.fused.onnx"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fuse-model: error: .*cut\.onnx: truncated protobuf \(.*\)\n$/);
    expect(fs.existsSync(out("cut.fused.onnx"))).toBe(false);
  });

  test("an unwritable output folder exits 1 and leaves no partial file", async () => {
    const blocker = out("blocker");
    fs.writeFileSync(blocker, "not a folder");
    const r = await cli(MODEL, "-o", path.join(blocker, "fused.onnx"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fuse-model: error: .*blocker: cannot create the output folder/);
    expect(fs.readFileSync(blocker, "utf8")).toBe("not a folder");
    const dir = out("ro");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "fused.onnx"), "old");
    fs.chmodSync(dir, 0o500);
    try {
      const r2 = await cli(MODEL, "-o", path.join(dir, "fused.onnx"));
      if (process.getuid?.() !== 0) {
        expect(r2.code).toBe(1); // root ignores the mode bits; the check above covers root
        expect(fs.readFileSync(path.join(dir, "fused.onnx"), "utf8")).toBe("old");
      }
      expect(fs.readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    } finally {
      fs.chmodSync(dir, 0o700);
    }
  });

  test("--passes none writes the model back unchanged, and the report has the counts", async () => {
    const dest = out("none", "model.onnx");
    const report = out("none", "report.json");
    const r = await cli(MODEL, "-o", dest, "--passes", "none", "--report", report);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`wrote ${dest}`);
    expect(Buffer.compare(fs.readFileSync(dest), canonical(MODEL))).toBe(0);
    const json = JSON.parse(fs.readFileSync(report, "utf8")) as Record<string, unknown>;
    expect(json).toMatchObject({ input: MODEL, output: dest, fused: {}, nodesBefore: 41, nodesAfter: 41 });
    expect(Array.isArray(json.passes)).toBe(true);
    expect(typeof json.version).toBe("string");
    expect(fs.readdirSync(out("none")).sort()).toEqual(["model.onnx", "report.json"]);
  });

  test("--dry-run writes the report but no model", async () => {
    const dest = out("dry", "model.onnx");
    const report = out("dry", "report.json");
    const r = await cli(MODEL, "-o", dest, "--dry-run", "--report", report);
    expect(r.code).toBe(0);
    expect(fs.existsSync(dest)).toBe(false);
    const json = JSON.parse(fs.readFileSync(report, "utf8")) as Record<string, unknown>;
    expect(json).toHaveProperty("fused");
    expect(json).toHaveProperty("nodesBefore");
    expect(json).toHaveProperty("nodesAfter");
    expect(json).toHaveProperty("passes");
    expect(json.output).toBeNull();
  });

  const addonBuilt = ["Release", "Debug"].some((d) => fs.existsSync(path.join(ROOT, "build", d, "gdn_addon.node")));
  test.skipIf(!addonBuilt)("--verify DIR runs the verifier and puts its result in the report", async () => {
    const dest = out("verify", "model.onnx");
    const report = out("verify", "report.json");
    const dataDir = path.join(CORPUS, "recurrent_t1_b3", "test_data_set_0");
    const r = await cli(MODEL, "-o", dest, "--verify", dataDir, "--report", report);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(fs.readFileSync(report, "utf8")) as { verify?: { ok: boolean } };
    expect(json.verify?.ok).toBe(true);
  });

  test("a failed verification exits 1, keeps the model and reports the failing output", async () => {
    // A deliberately wrong pass, registered the way an export pipeline adds its own: scales the first output.
    registerPass({
      name: "test-scale-first-output",
      description: "multiplies the first graph output by 1.5 (wrong on purpose)",
      anchors: [],
      targets: ["gdn", "ort", "onnx"],
      async run(ctx) {
        const g = ctx.graph;
        const outV = g.outputs[0]!;
        const producer = outV.producer!;
        const inner = g.value(g.uniqueName(`${outV.name}_unscaled`));
        producer.outputs = producer.outputs.map((o) => (o === outV ? inner : o));
        inner.producer = producer;
        outV.producer = undefined;
        const k = g.addInitializer(arrayToTensor("k1_5", [], 1, [1.5]));
        g.addNode({ opType: "Mul", inputs: [inner, k], outputs: [outV] });
        ctx.applied({ op: "ai.onnx.Mul", node: "scale", replacedNodes: 0 });
      },
    });
    const dest = out("verify-fail", "model.onnx");
    const report = out("verify-fail", "report.json");
    const dataDir = path.join(CORPUS, "recurrent_t1_b3", "test_data_set_0");
    const r = await cli(
      MODEL,
      "-o",
      dest,
      "--passes",
      "test-scale-first-output",
      "--verify",
      dataDir,
      "--report",
      report,
    );
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout, r.stderr).toMatch(/FAIL core_attn_out: max abs [0-9.e+-]+, relative L2 5\.000e-1/);
    expect(r.stderr).toMatch(/^fuse-model: error: verification failed: core_attn_out \(relL2 5\.00e-1 > 0\.00001\)/);
    expect(fs.existsSync(dest)).toBe(true);
    const json = JSON.parse(fs.readFileSync(report, "utf8")) as { verify?: { ok: boolean } };
    expect(json.verify?.ok).toBe(false);
  });

  test("--dry-run without --report prints only the report JSON on stdout", async () => {
    const r = await cli(MODEL, "--dry-run");
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as { fused: Record<string, number> };
    expect(json.fused).toEqual({ "gdn.RecurrentGatedDeltaRule": 1 });
    expect(r.stderr).toContain("(dry run, no model written)");
  });

  test("--no-probe fuses without the probe run", async () => {
    const report = out("noprobe", "report.json");
    const r = await cli(MODEL, "--dry-run", "--no-probe", "--report", report);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(fs.readFileSync(report, "utf8")) as { fused: Record<string, number> };
    expect(json.fused).toEqual({ "gdn.RecurrentGatedDeltaRule": 1 });
  });

  test("refuses to overwrite the input (2) unless --force", async () => {
    const input = out("self", "model.onnx");
    fs.mkdirSync(path.dirname(input), { recursive: true });
    fs.copyFileSync(MODEL, input);
    const before = fs.readFileSync(input);
    const r = await cli(input, "-o", input);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(
      `fuse-model: error: -o ${input}: is the input model; refusing to write over it (use --force)`,
    );
    expect(Buffer.compare(fs.readFileSync(input), before)).toBe(0);
    const forced = await cli(input, "-o", input, "--force", "--passes", "none");
    expect(forced.code).toBe(0);
    expect(Buffer.compare(fs.readFileSync(input), canonical(MODEL))).toBe(0);
    expect(fs.readdirSync(path.dirname(input))).toEqual(["model.onnx"]);
  });

  test("carries external data to the output folder, inlining small tensors with --inline-below", async () => {
    const src = out("ext-src");
    fs.mkdirSync(src);
    const big = Float32Array.from({ length: 64 }, (_, i) => i);
    const small = Float32Array.from([1, 2]);
    fs.writeFileSync(path.join(src, "w.bin"), Buffer.concat([Buffer.from(big.buffer), Buffer.from(small.buffer)]));
    const ext = (name: string, n: number, offset: number) =>
      externalFloat32(
        name,
        [n],
        { key: "location", value: "w.bin" },
        { key: "offset", value: String(offset) },
        { key: "length", value: String(n * 4) },
      );
    const model = modelOf({
      name: "g",
      initializer: [ext("big", 64, 0), ext("small", 2, 256)],
      output: [float32Info("big", [64]), float32Info("small", [2])],
    });
    fs.writeFileSync(path.join(src, "model.onnx"), encodeMessage(onnx.ModelProto, model));
    const dest = out("ext-out", "model.onnx");
    const r = await cli(path.join(src, "model.onnx"), "-o", dest, "--inline-below", "100", "--external-data", "link");
    expect(r.code, r.stderr).toBe(0);
    expect(fs.statSync(out("ext-out", "w.bin")).ino).toBe(fs.statSync(path.join(src, "w.bin")).ino);
    const saved = decodeMessage(onnx.ModelProto, fs.readFileSync(dest));
    expect(saved.graph!.initializer!.map((t) => t.dataLocation)).toEqual([1, 0]);
    expect(Buffer.from(saved.graph!.initializer![1]!.rawData!)).toEqual(Buffer.from(small.buffer));
  });

  test("--verbose prints progress on stderr", async () => {
    const r = await cli(MODEL, "-o", out("verbose.onnx"), "--verbose");
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("fuse-model: loading");
    expect(r.stderr).toContain("fuse-model: writing");
  });

  const BIN = path.join(ROOT, "dist", "src", "cli", "fuse-model.js");
  test.skipIf(!fs.existsSync(BIN))("the compiled bin runs as a program", () => {
    expect(fs.readFileSync(BIN, "utf8").startsWith("#!/usr/bin/env node")).toBe(true);
    const ok = spawnSync(process.execPath, [BIN, MODEL, "-o", out("bin", "model.onnx"), "--passes", "none"], {
      encoding: "utf8",
    });
    expect(ok.status, ok.stderr).toBe(0);
    expect(fs.existsSync(out("bin", "model.onnx"))).toBe(true);
    const bad = spawnSync(process.execPath, [BIN, out("nope.onnx"), "-o", out("bin", "x.onnx")], { encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    const usage = spawnSync(process.execPath, [BIN], { encoding: "utf8" });
    expect(usage.status).toBe(2);
  });
});

// Hostile paths: inputs that are not regular files, outputs that would replace a device, a FIFO, the input
// model, its external data or another output. Refused before anything is written.
describe("fuse-model file safety", () => {
  const fifo = (file: string): string => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const r = spawnSync("mkfifo", [file]);
    if (r.status !== 0) throw new Error(`mkfifo ${file} failed`);
    return file;
  };
  /** A private copy of MODEL, so a test that fails on a write cannot damage the fixture. */
  const copyOfModel = (dir: string): string => {
    const file = out(dir, "model.onnx");
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.copyFileSync(MODEL, file);
    return file;
  };
  const ERR = "fuse-model: error: ";

  test("a character device as input exits 1 at once (no unbounded read)", async () => {
    const r = await cli("/dev/zero", "-o", out("zero.onnx"));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`${ERR}/dev/zero: cannot read the model (not a regular file: a character device)\n`);
    expect(fs.existsSync(out("zero.onnx"))).toBe(false);
  });

  test("a FIFO as input exits 1 at once (does not wait for a writer)", async () => {
    const p = fifo(out("fifo-in", "model.onnx"));
    const r = await cli(p, "-o", out("fifo-in", "x.onnx"));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`${ERR}${p}: cannot read the model (not a regular file: a FIFO)\n`);
  }, 5000);

  test("--report onto the input model is refused (2) and the model is untouched", async () => {
    const input = copyOfModel("report-in");
    const before = fs.readFileSync(input);
    const r = await cli(input, "--dry-run", "--report", input);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(`${ERR}--report ${input}: is the input model; refusing to write over it`);
    expect(Buffer.compare(fs.readFileSync(input), before)).toBe(0);
  });

  test("--report onto the output model is refused (2)", async () => {
    const o = out("report-out", "x.onnx");
    const r = await cli(MODEL, "-o", o, "--report", o);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(
      `${ERR}--report ${o}: is also the output model (-o); two outputs cannot share a path`,
    );
    expect(fs.existsSync(o)).toBe(false);
  });

  test("-o onto a FIFO is refused (2) and the FIFO stays", async () => {
    const p = fifo(out("fifo-out", "x.onnx"));
    const r = await cli(MODEL, "-o", p);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(`${ERR}-o ${p}: is a FIFO, not a regular file; refusing to replace it`);
    expect(fs.statSync(p).isFIFO()).toBe(true);
  });

  test("--report onto a character device is refused (2)", async () => {
    // checked without writing: the refusal comes before the passes run
    const r = await cli(MODEL, "--dry-run", "--report", "/dev/null");
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(
      `${ERR}--report /dev/null: is a character device, not a regular file; refusing to replace it`,
    );
    expect(fs.statSync("/dev/null").isCharacterDevice()).toBe(true);
  });

  test("-o with a trailing slash is refused (2), as is -o onto a folder", async () => {
    const r = await cli(MODEL, "-o", out("slash") + "/");
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(`${ERR}-o ${out("slash")}/: names a folder; give a file name`);
    expect(fs.existsSync(out("slash"))).toBe(false);
    fs.mkdirSync(out("adir"));
    const d = await cli(MODEL, "-o", out("adir"));
    expect(d.code).toBe(2);
    expect(d.stderr.split("\n")[0]).toBe(
      `${ERR}-o ${out("adir")}: is a folder, not a regular file; refusing to replace it`,
    );
  });

  test("a symlink or a hard link to the input is caught as the input (2)", async () => {
    const input = copyOfModel("links");
    const before = fs.readFileSync(input);
    fs.symlinkSync(input, out("links", "sym.onnx"));
    fs.linkSync(input, out("links", "hard.onnx"));
    const h = await cli(input, "-o", out("links", "x.onnx"), "--report", out("links", "hard.onnx"));
    expect(h.code).toBe(2);
    expect(h.stderr.split("\n")[0]).toBe(
      `${ERR}--report ${out("links", "hard.onnx")}: is the input model; refusing to write over it`,
    );
    const s2 = await cli(input, "-o", out("links", "sym.onnx"));
    expect(s2.code).toBe(2);
    expect(s2.stderr.split("\n")[0]).toBe(
      `${ERR}-o ${out("links", "sym.onnx")}: is the input model; refusing to write over it (use --force)`,
    );
    expect(Buffer.compare(fs.readFileSync(input), before)).toBe(0);
  });

  test("an output onto the --verify data folder's files is refused (2)", async () => {
    const dir = path.join(CORPUS, "recurrent_t1_b3", "test_data_set_0");
    const data = out("verify-data");
    fs.cpSync(dir, data, { recursive: true });
    const r = await cli(MODEL, "-o", out("verify-x.onnx"), "--verify", data, "--report", path.join(data, "input_0.pb"));
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(
      `${ERR}--report ${path.join(data, "input_0.pb")}: is an input (a --verify data file); refusing to write over it`,
    );
    expect(
      Buffer.compare(fs.readFileSync(path.join(data, "input_0.pb")), fs.readFileSync(path.join(dir, "input_0.pb"))),
    ).toBe(0);
  });

  test("a --verify data file that is a FIFO exits 1 at once", async () => {
    const data = out("verify-fifo");
    fs.cpSync(path.join(CORPUS, "recurrent_t1_b3", "test_data_set_0"), data, { recursive: true });
    fs.rmSync(path.join(data, "input_0.pb"));
    fifo(path.join(data, "input_0.pb"));
    const r = await cli(MODEL, "-o", out("verify-fifo.onnx"), "--verify", data);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `${ERR}${path.join(data, "input_0.pb")}: cannot read the --verify data (not a regular file: a FIFO)\n`,
    );
  }, 10000);

  test("a dangling symlink among the --verify data exits 1 naming it", async () => {
    const data = out("verify-dangling");
    fs.cpSync(path.join(CORPUS, "recurrent_t1_b3", "test_data_set_0"), data, { recursive: true });
    fs.symlinkSync(out("nowhere.pb"), path.join(data, "input_9.pb"));
    const r = await cli(MODEL, "-o", out("verify-dangling.onnx"), "--verify", data);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `${ERR}${path.join(data, "input_9.pb")}: cannot read the --verify data (no such file or directory)\n`,
    );
  });

  test("external data would replace a FIFO, or the input's own external data file: refused (2)", async () => {
    const src = out("ext-hostile");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "w.bin"), Buffer.from(Float32Array.from([1, 2]).buffer));
    const model = modelOf({
      name: "g",
      initializer: [externalFloat32("w", [2], { key: "location", value: "w.bin" }, { key: "length", value: "8" })],
      output: [float32Info("w", [2])],
    });
    const input = path.join(src, "model.onnx");
    fs.writeFileSync(input, encodeMessage(onnx.ModelProto, model));
    fifo(out("ext-fifo", "w.bin"));
    const r = await cli(input, "-o", out("ext-fifo", "model.onnx"));
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(
      `${ERR}external data ${out("ext-fifo", "w.bin")}: is a FIFO, not a regular file; refusing to replace it`,
    );
    expect(fs.statSync(out("ext-fifo", "w.bin")).isFIFO()).toBe(true);
    const report = await cli(input, "--dry-run", "--report", path.join(src, "w.bin"));
    expect(report.code).toBe(2);
    expect(report.stderr.split("\n")[0]).toBe(
      `${ERR}--report ${path.join(src, "w.bin")}: is an input (external data of the model); refusing to write over it`,
    );
    const onData = await cli(input, "-o", path.join(src, "w.bin"));
    expect(onData.code).toBe(2);
    expect(onData.stderr.split("\n")[0]).toBe(
      `${ERR}-o ${path.join(src, "w.bin")}: is an input (external data of the model); refusing to write over it`,
    );
    expect(fs.readFileSync(path.join(src, "w.bin")).length).toBe(8);
  });
});

// Failures a model or a file can cause under --verify are GdnFuseErrors with one line, never "internal error".
describe("fuse-model --verify errors", () => {
  /** Writes DIR/model.onnx: y = node(x) over float32 [2] (node's outputs: y), with `initializer`. */
  function writeModel(dir: string, node: onnx.INodeProto, initializer: onnx.ITensorProto[] = []): string {
    const model = modelOf({
      name: "g",
      input: [float32Info("x", [2])],
      output: [float32Info("y", [2])],
      initializer,
      node: [node],
    });
    const input = out(dir, "model.onnx");
    fs.mkdirSync(path.dirname(input), { recursive: true });
    fs.writeFileSync(input, encodeMessage(onnx.ModelProto, model));
    return input;
  }

  test("a model onnxruntime rejects exits 1 with the ORT reason, not an internal error", async () => {
    const input = writeModel("ort-reject", { name: "f0", opType: "Frobnicate", input: ["x"], output: ["y"] });
    const r = await cli(input, "-o", out("ort-reject", "x.onnx"), "--verify");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^fuse-model: error: running the original model in onnxruntime failed: .*Frobnicate.*\n$/);
    expect(r.stderr).not.toContain("internal error");
  });

  test("an invalid model exits 1 with the validator's line and writes nothing (--verify never reaches ORT)", async () => {
    const w = { name: "w", dims: [2], dataType: 1, rawData: new Uint8Array(4) };
    const input = writeModel("invalid", { name: "add0", opType: "Add", input: ["x", "w"], output: ["y"] }, [w]);
    const r = await cli(input, "-o", out("invalid", "x.onnx"), "--verify");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `fuse-model: error: ${input}: initializer "w": raw_data has 4 bytes, dims [2] of float need 8\n`,
    );
    expect(fs.existsSync(out("invalid", "x.onnx"))).toBe(false);
  });

  test("a --verify input file that is not a TensorProto exits 1 naming it", async () => {
    const data = out("verify-garbage");
    fs.cpSync(path.join(CORPUS, "recurrent_t1_b3", "test_data_set_0"), data, { recursive: true });
    fs.writeFileSync(path.join(data, "input_0.pb"), Buffer.from([0x0a, 0xff, 0xff, 0xff]));
    const r = await cli(MODEL, "-o", out("verify-garbage.onnx"), "--verify", data);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^fuse-model: error: ${path.join(data, "input_0.pb")}: not a TensorProto \\(.*\\)\n$`),
    );
  });
});
