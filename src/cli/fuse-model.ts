#!/usr/bin/env node
/**
 * fuse-model: load an ONNX model, run the fusion passes, write the fused model (and a JSON report),
 * optionally verify it against the original. Exit codes: 0 done, 1 bad input or a failed check, 2 usage
 * (bad arguments, or an output path that would replace an input, another output or a non-regular file).
 */
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { GdnFuseError } from "../errors.js";
import { fileKind, ioReason, PathGuard } from "../ir/file-safety.js";
import {
  addModelInputs,
  atomicWrite,
  loadModel,
  planSave,
  type LoadedModel,
  type SaveOptions,
} from "../ir/model-io.js";
// The package entry, which registers the built-in passes.
import { fuseModelFile, TARGETS, type FuseOptions, type FuseReport } from "../index.js";
import { formatVerify, verifyModels, type VerifyResult } from "../verify/index.js";

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Whether stderr is a terminal (progress lines are printed then, or with --verbose). */
  isTTY?: boolean;
}

export const HELP = `Usage: fuse-model IN.onnx -o OUT.onnx [options]

Fuses the unrolled Gated DeltaNet subgraphs of a torch.onnx export into single ops.

Options:
  -o, --output FILE        where to write the fused model (its external data goes beside it)
  --passes LIST|none       comma-separated pass names to run, in order; "none" writes the model back unchanged
  --target ${TARGETS.join("|")}    ops the fusions emit: gdn domain ops (default), ORT contrib ops, or ONNX standard ops
  --report FILE.json       write a JSON report (fused counts, node counts, per-pass details, verification)
  --dry-run                run the passes and write only the report (no model)
  --no-probe               skip the probe run that confirms each match before rewriting (faster)
  --verify [DIR]           run original and fused model in onnxruntime and compare outputs,
                           on DIR's input_N.pb (an ONNX test_data_set folder) or on random inputs
  --ep gdn|ascend          where --verify runs the fused model: the gdn CPU backend (default) or an Ascend
                           NPU (the CANN simulator when GDN_FUSE_ASCEND=sim; docs/ascend.md)
  --inline-below N         store external tensors smaller than N bytes inside the model
  --external-data MODE     copy (default; reflink where supported) | link (hard link) | inline
  --force                  allow overwriting the input model
  --verbose                print progress and, on errors, the stack trace
  -h, --help               show this help

Exit codes: 0 done, 1 bad input or a failed check (including --verify), 2 usage error (including an
output path that is an input, another output, or not a regular file).
`;

const EPS = ["gdn", "ascend"] as const;
const EXTERNAL = ["copy", "link", "inline"] as const;

export interface ReportFile extends FuseReport {
  version: string;
  input: string;
  output: string | null;
  verify?: VerifyResult;
}

function usage(message: string): GdnFuseError {
  return new GdnFuseError("E_USAGE", message);
}

/** `--verify DIR` takes DIR only when it is an existing folder (so `--verify model.onnx` stays unambiguous). */
function normaliseArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith("--verify=")) {
      out.push("--verify", "--verify-dir", a.slice("--verify=".length));
    } else if (a === "--verify" && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("-") && isDir(argv[i + 1]!)) {
      out.push("--verify", "--verify-dir", argv[++i]!);
    } else {
      out.push(a);
    }
  }
  return out;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

let cachedVersion: string | undefined;
/** The package version, read from the nearest gdn-fuse package.json above this module. */
export function packageVersion(): string {
  if (cachedVersion) return cachedVersion;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "gdn-fuse") return (cachedVersion = pkg.version ?? "0.0.0");
    } catch {
      // keep looking upwards
    }
    dir = path.dirname(dir);
  }
  return (cachedVersion = "0.0.0");
}

interface Parsed {
  input: string;
  output: string | undefined;
  fuse: FuseOptions;
  report: string | undefined;
  dryRun: boolean;
  verify: boolean;
  verifyDir: string | undefined;
  ep: (typeof EPS)[number];
  inlineBelow: number | undefined;
  externalData: (typeof EXTERNAL)[number];
  force: boolean;
  verbose: boolean;
  help: boolean;
}

function parse(argv: readonly string[]): Parsed {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: normaliseArgv(argv),
      allowPositionals: true,
      strict: true,
      options: {
        output: { type: "string", short: "o" },
        passes: { type: "string" },
        target: { type: "string" },
        report: { type: "string" },
        "dry-run": { type: "boolean" },
        "no-probe": { type: "boolean" },
        verify: { type: "boolean" },
        "verify-dir": { type: "string" },
        ep: { type: "string" },
        "inline-below": { type: "string" },
        "external-data": { type: "string" },
        force: { type: "boolean" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    // node:util's messages go on about '--' for positionals; the first sentence is the useful part
    throw usage((e instanceof Error ? e.message : String(e)).split(". To specify")[0]!);
  }
  const verbose = values.verbose ?? false;
  if (values.help) return { help: true, verbose } as Parsed;
  if (positionals.length === 0) throw usage("missing the input model (fuse-model IN.onnx -o OUT.onnx)");
  if (positionals.length > 1)
    throw usage(`expected one input model, got ${positionals.length}: ${positionals.join(" ")}`);
  const dryRun = values["dry-run"] ?? false;
  if (!values.output && !dryRun) throw usage("missing -o OUT.onnx (or use --dry-run)");
  const target = values.target ?? "gdn";
  if (!(TARGETS as readonly string[]).includes(target))
    throw usage(`--target must be one of ${TARGETS.join(", ")}, not "${target}"`);
  const externalData = values["external-data"] ?? "copy";
  if (!(EXTERNAL as readonly string[]).includes(externalData)) {
    throw usage(`--external-data must be one of ${EXTERNAL.join(", ")}, not "${externalData}"`);
  }
  let passes: FuseOptions["passes"];
  if (values.passes !== undefined) {
    const list = values.passes
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    if (list.length === 0) throw usage('--passes needs a comma-separated list of pass names, or "none"');
    passes = list.length === 1 && list[0] === "none" ? "none" : list;
  }
  let inlineBelow: number | undefined;
  if (values["inline-below"] !== undefined) {
    inlineBelow = Number(values["inline-below"]);
    if (!/^\d+$/.test(values["inline-below"]) || !Number.isSafeInteger(inlineBelow)) {
      throw usage(`--inline-below needs a byte count, not "${values["inline-below"]}"`);
    }
  }
  const verify = values.verify ?? false;
  if (verify && dryRun) throw usage("--verify needs a written model; drop --dry-run");
  const ep = values.ep ?? "gdn";
  if (!(EPS as readonly string[]).includes(ep)) throw usage(`--ep must be one of ${EPS.join(", ")}, not "${ep}"`);
  if (values.ep !== undefined && !verify) throw usage("--ep chooses where --verify runs the fused model; add --verify");
  return {
    input: positionals[0]!,
    output: values.output,
    fuse: {
      ...(passes !== undefined ? { passes } : {}),
      target: target as FuseOptions["target"],
      probe: !(values["no-probe"] ?? false),
    },
    report: values.report,
    dryRun,
    verify,
    verifyDir: values["verify-dir"],
    ep: ep as Parsed["ep"],
    inlineBelow,
    externalData: externalData as Parsed["externalData"],
    force: values.force ?? false,
    verbose,
    help: false,
  };
}

async function writeReport(file: string, report: ReportFile): Promise<void> {
  const dest = path.resolve(file);
  try {
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    await atomicWrite(dest, (tmp) => fsp.writeFile(tmp, JSON.stringify(report, null, 2) + "\n", { flag: "wx" }));
  } catch (e) {
    const why = e instanceof GdnFuseError ? e.message : ((e as NodeJS.ErrnoException).code ?? String(e));
    throw new GdnFuseError("E_IO", `${file}: cannot write the report (${why})`, { cause: e });
  }
}

function saveOptions(a: Parsed): SaveOptions {
  return {
    externalData: a.externalData,
    ...(a.inlineBelow !== undefined ? { inlineBelow: a.inlineBelow } : {}),
    overwriteInput: a.force,
  };
}

/** The test-data files `--verify DIR` reads; each must be a regular file (a FIFO would block the read). */
function verifyDataFiles(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((f) => /^(input|output)_\d+\.pb$/.test(f));
  } catch (e) {
    throw new GdnFuseError("E_IO", `${dir}: cannot read the --verify data (${ioReason(e)})`, { cause: e });
  }
  const files = names.sort().map((f) => path.join(dir, f));
  for (const f of files) {
    let st: fs.Stats;
    try {
      st = fs.statSync(f);
    } catch (e) {
      throw new GdnFuseError("E_IO", `${f}: cannot read the --verify data (${ioReason(e)})`, { cause: e });
    }
    if (!st.isFile())
      throw new GdnFuseError("E_IO", `${f}: cannot read the --verify data (not a regular file: ${fileKind(st)})`);
  }
  return files;
}

/**
 * Checks, before the passes run, every path this run writes: no output replaces a non-regular file, an
 * input (the model, its external data, the --verify data) or another output. Refusals exit 2.
 */
function claimPaths(a: Parsed, model: LoadedModel): void {
  const guard = new PathGuard();
  guard.addInput(a.input, "the input model");
  addModelInputs(model, guard);
  if (a.verifyDir) for (const f of verifyDataFiles(a.verifyDir)) guard.addInput(f, "an input (a --verify data file)");
  if (!a.dryRun) planSave(model, a.output!, saveOptions(a), guard, `-o ${a.output!}`);
  if (a.report) guard.claimOutput(a.report, `--report ${a.report}`, "the report (--report)");
}

function summary(r: FuseReport): string {
  const fused =
    Object.entries(r.fused)
      .map(([op, n]) => `${op} x${n}`)
      .join(", ") || "nothing";
  return `fused ${fused}; nodes ${r.nodesBefore} -> ${r.nodesAfter} (${Math.round(r.ms)} ms)`;
}

async function run(a: Parsed, io: CliIo): Promise<number> {
  const progress = (m: string): void => {
    if (io.isTTY || a.verbose) io.stderr(`fuse-model: ${m}\n`);
  };
  progress(`loading ${a.input}`);
  const model = await loadModel(a.input);
  claimPaths(a, model); // before the passes, so a long run is not wasted (saveModel checks again)
  // a dry run writes nothing, so it may have no -o
  const fileOptions = { ...a.fuse, ...saveOptions(a), dryRun: a.dryRun, onProgress: progress };
  const report = await fuseModelFile(model, a.output ?? "", fileOptions);
  const out: ReportFile = { version: packageVersion(), input: a.input, output: a.dryRun ? null : a.output!, ...report };
  let verifyFailure: string | undefined;
  if (a.verify) {
    progress(`verifying ${a.output!} against ${a.input}${a.verifyDir ? ` on ${a.verifyDir}` : ""} (${a.ep})`);
    // the loaded model: its graph inputs are the original's (fusion keeps them), its path the original's file
    const v = await verifyModels(model, a.output!, { ...(a.verifyDir ? { dataDir: a.verifyDir } : {}), ep: a.ep });
    out.verify = v;
    io.stdout(`verify on ${v.source}${v.runtime === "ascend" ? " (ascend)" : ""}:\n${formatVerify(v)}\n`);
    if (!v.ok) {
      const bad = v.outputs
        .filter((o) => !o.ok)
        .map((o) => o.specialValues ?? `${o.name} (relL2 ${o.relL2.toExponential(2)} > ${o.tolerance})`);
      verifyFailure = `verification failed: ${bad.join(", ") || "outputs differ"}; the fused model is at ${a.output!}`;
    }
  }
  if (a.report) await writeReport(a.report, out);
  else if (a.dryRun) io.stdout(JSON.stringify(out, null, 2) + "\n");
  if (verifyFailure) throw new GdnFuseError("E_VERIFY", verifyFailure);
  const line = `${summary(report)}${a.dryRun ? " (dry run, no model written)" : `; wrote ${a.output!}`}${out.verify ? "; verified" : ""}\n`;
  // With the report JSON on stdout, the summary goes to stderr so stdout stays parseable.
  if (a.dryRun && !a.report) io.stderr(line);
  else io.stdout(line);
  return 0;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code; never throws. */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  let verbose = argv.includes("--verbose");
  try {
    const parsed = parse(argv);
    verbose = parsed.verbose;
    if (parsed.help) {
      io.stdout(HELP);
      return 0;
    }
    return await run(parsed, io);
  } catch (e) {
    if (e instanceof GdnFuseError) {
      io.stderr(`fuse-model: error: ${e.message}\n`);
      if (e.code === "E_USAGE") io.stderr("Try 'fuse-model --help'.\n");
      if (verbose && e.stack) io.stderr(`${e.stack}\n`);
      return e.code === "E_USAGE" ? 2 : 1;
    }
    const message = e instanceof Error ? e.message : String(e);
    io.stderr(`fuse-model: error: internal error: ${message}${verbose ? "" : " (run with --verbose for details)"}\n`);
    if (verbose && e instanceof Error && e.stack) io.stderr(`${e.stack}\n`);
    return 1;
  }
}

function processIo(): CliIo {
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    isTTY: process.stderr.isTTY === true,
  };
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return fs.realpathSync(script) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  // `fuse-model ... --dry-run | head`: a closed pipe is not an error worth a stack trace
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE") throw e;
  });
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
