/**
 * Runs fuzz cases in child processes, so that a case which kills its process (a signal, abort()) or
 * hangs is recorded against that case instead of taking the test runner down with it.
 *
 * A few long-lived children run many cases each (a process per case would cost about a second of
 * start-up per case); a child that dies or hangs is replaced and the run goes on with the next case.
 * A case module is TypeScript (the children run it through vite-node) and exports
 *
 *   export async function runCase(index: number): Promise<string | void>
 *
 * A case that returns is "ok", one that throws is "error" (the test decides which errors are allowed),
 * one whose child dies is "crash", one that outlives `timeoutMs` is "timeout".
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

export type CaseStatus = "ok" | "error" | "crash" | "timeout";

export interface CaseResult {
  index: number;
  status: CaseStatus;
  /** What runCase returned; the error ("Name [code]: message"); or how the child ended and its last stderr. */
  detail: string;
}

export interface ChildFuzzOptions {
  /** Absolute path of the case module. */
  module: string;
  /** Case indices run: first .. first + count - 1. */
  count: number;
  first?: number;
  /** Child processes at once (default 2: the machine has 2 cores). */
  workers?: number;
  /** Per-case limit (default 10 s); the child's start-up is not counted. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WORKER = path.join(HERE, "child-fuzz-worker.ts");
const VITE_NODE = createRequire(import.meta.url).resolve("vite-node/vite-node.mjs");
const START_TIMEOUT_MS = 120_000;

interface Message {
  index?: number;
  status?: "ok" | "error";
  detail?: string;
  ready?: boolean;
}

export async function runInChildren(opts: ChildFuzzOptions): Promise<CaseResult[]> {
  const first = opts.first ?? 0;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const pending = Array.from({ length: opts.count }, (_, i) => first + i);
  const results: CaseResult[] = [];

  const lane = async (): Promise<void> => {
    let child: Child | undefined;
    try {
      while (pending.length) {
        child ??= await Child.start(opts);
        const index = pending.shift();
        if (index === undefined) break; // the other lanes took the last cases while this child started
        const r = await child.run(index, timeoutMs);
        results.push(r);
        if (r.status === "crash" || r.status === "timeout") child = undefined; // replaced for the next case
      }
    } finally {
      child?.stop();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.workers ?? 2) }, lane));
  return results.sort((a, b) => a.index - b.index);
}

/** Counts per status, and the first few cases of each status other than "ok". */
export function summarize(
  results: CaseResult[],
  examples = 5,
): { counts: Record<CaseStatus, number>; examples: CaseResult[] } {
  const counts: Record<CaseStatus, number> = { ok: 0, error: 0, crash: 0, timeout: 0 };
  const shown: CaseResult[] = [];
  for (const r of results) {
    counts[r.status]++;
    if (r.status !== "ok" && shown.filter((s) => s.status === r.status).length < examples) shown.push(r);
  }
  return { counts, examples: shown };
}

/** One child process running cases one at a time. */
class Child {
  private stderrTail = "";
  private onMessage?: (m: Message) => void;
  private onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  private exited = false;

  private constructor(private readonly proc: ChildProcess) {
    proc.stderr!.on("data", (b: Buffer) => (this.stderrTail = (this.stderrTail + b.toString()).slice(-2000)));
    proc.stdout!.resume(); // a case's console output is not the harness's business
    proc.on("message", (m: Message) => this.onMessage?.(m));
    proc.on("exit", (code, signal) => {
      this.exited = true;
      this.onExit?.(code, signal);
    });
  }

  static start(opts: ChildFuzzOptions): Promise<Child> {
    const proc = spawn(process.execPath, [VITE_NODE, WORKER], {
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      env: { ...process.env, ...opts.env, GDN_FUZZ_CASE_MODULE: opts.module },
    });
    const child = new Child(proc);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.stop();
        reject(new Error(`child-fuzz: the worker for ${opts.module} did not start within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      child.onMessage = (m) => {
        if (!m.ready) return;
        clearTimeout(timer);
        resolve(child);
      };
      child.onExit = (code, signal) => {
        clearTimeout(timer);
        reject(
          new Error(
            `child-fuzz: the worker for ${opts.module} ended before its first case (${signal ?? `exit ${code}`}): ${child.stderrTail}`,
          ),
        );
      };
    });
  }

  run(index: number, timeoutMs: number): Promise<CaseResult> {
    return new Promise((resolve) => {
      const done = (r: CaseResult) => {
        clearTimeout(timer);
        this.onMessage = undefined;
        this.onExit = undefined;
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.stop();
        done({ index, status: "timeout", detail: `no result within ${timeoutMs} ms` });
      }, timeoutMs);
      this.onMessage = (m) => {
        if (m.index === index) done({ index, status: m.status ?? "error", detail: m.detail ?? "" });
      };
      this.onExit = (code, signal) =>
        done({
          index,
          status: "crash",
          detail: `child ended by ${signal ?? `exit code ${code}`}; stderr: ${this.stderrTail.trim()}`,
        });
      if (this.exited) return this.onExit(this.proc.exitCode, this.proc.signalCode);
      this.stderrTail = "";
      this.proc.send({ index });
    });
  }

  stop(): void {
    if (!this.exited) this.proc.kill("SIGKILL");
  }
}
