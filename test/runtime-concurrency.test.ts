/**
 * The gdn backend under concurrency: runs do not block the event loop, concurrent runs on one session,
 * and four sessions used concurrently from four worker_threads.
 * Workers cannot load TypeScript: they import the transpiled copy from helpers/runtime-js.ts.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import "../src/runtime/index.js";
import { SHARED_CORPUS, TOLERANCE, readDataSet, relativeL2, toOrtTensor } from "./helpers/index.js";
import { transpileRuntime } from "./helpers/runtime-js.js";

const CORPUS = SHARED_CORPUS;
const GDN = { executionProviders: ["gdn"] };

const dataSet = (name: string, prefix: "input" | "output") =>
  readDataSet(join(CORPUS, name, "test_data_set_0"), prefix);

function feedsFor(session: ort.InferenceSession, name: string): Record<string, ort.Tensor> {
  const inputs = dataSet(name, "input");
  return Object.fromEntries(session.inputNames.map((n, i) => [n, toOrtTensor(inputs[i]!)]));
}

const WORKER = `
import { parentPort, workerData } from "node:worker_threads";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
await import(workerData.runtime);
const { readDataSet, relativeL2, toOrtTensor } = await import(workerData.helpers);
const { name, corpus, runs } = workerData;
const dir = join(corpus, name, "test_data_set_0");
const inputs = readDataSet(dir, "input"), expected = readDataSet(dir, "output");
const session = await ort.InferenceSession.create(join(corpus, name, "model.onnx"), { executionProviders: ["gdn"], intraOpNumThreads: 1 });
const feeds = Object.fromEntries(session.inputNames.map((n, i) => [n, toOrtTensor(inputs[i])]));
const all = await Promise.all(Array.from({ length: runs }, () => session.run(feeds)));
const errors = all.flatMap((r) => session.outputNames.map((n, i) => relativeL2(r[n], expected[i])));
await session.release();
parentPort.postMessage({ name, errors, outputs: session.outputNames.length });
`;

let runtime: ReturnType<typeof transpileRuntime>;
beforeAll(() => {
  runtime = transpileRuntime();
  writeFileSync(join(runtime.dir, "worker.mjs"), WORKER);
});

describe("gdn backend: concurrency", () => {
  it("run() does not block the event loop", async () => {
    const name = "chunk_t64_noopt";
    const session = await ort.InferenceSession.create(join(CORPUS, name, "model.onnx"), {
      ...GDN,
      intraOpNumThreads: 1,
    });
    const feeds = feedsFor(session, name);
    // Timer ticks while the runs are in flight. A run that blocked the calling thread would have finished inside
    // run(), its promise settling in the microtasks right after: no timer could fire before Promise.all settles.
    // (Counting ticks against the elapsed time instead was flaky on a loaded 2-core machine.)
    let inFlight = true;
    let ticks = 0;
    const timer = setInterval(() => (ticks += inFlight ? 1 : 0), 1);
    await Promise.all(Array.from({ length: 8 }, () => session.run(feeds)));
    inFlight = false;
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    await session.release();
  });

  it("concurrent runs on one session give the same, correct results", async () => {
    const name = "recurrent_t4_b2";
    const session = await ort.InferenceSession.create(join(CORPUS, name, "model.onnx"), GDN);
    const feeds = feedsFor(session, name);
    const expected = dataSet(name, "output");
    const results = await Promise.all(Array.from({ length: 16 }, () => session.run(feeds)));
    for (const r of results) {
      session.outputNames.forEach((n, i) =>
        expect(relativeL2(r[n]!, expected[i]!)).toBeLessThanOrEqual(TOLERANCE.float32),
      );
    }
    await session.release();
  });

  it("release() with runs in flight: they finish with correct results; the released session then refuses use", async () => {
    const name = "recurrent_t4_b2";
    const session = await ort.InferenceSession.create(join(CORPUS, name, "model.onnx"), GDN);
    const feeds = feedsFor(session, name);
    const expected = dataSet(name, "output");
    const pending = Array.from({ length: 8 }, () => session.run(feeds));
    await session.release(); // the runs keep the native session until they end
    for (const r of await Promise.all(pending)) {
      session.outputNames.forEach((n, i) =>
        expect(relativeL2(r[n]!, expected[i]!)).toBeLessThanOrEqual(TOLERANCE.float32),
      );
    }
    await session.release(); // twice: nothing to do
    const disposed = new GdnFuseError("E_RUNTIME", "session is disposed");
    await expect(session.run(feeds)).rejects.toThrow(disposed);
    expect(() => session.endProfiling()).toThrow(disposed);
    expect(session.inputNames).toEqual(Object.keys(feeds)); // metadata stays readable
  });

  it("four sessions concurrently from four worker threads", async () => {
    const names = ["recurrent_t1_b3", "recurrent_t4_b2", "chunk_t64_noopt", "layer_qwen3next_decode_b2"];
    const results = await Promise.all(
      names.map(
        (name) =>
          new Promise<{ name: string; errors: number[]; outputs: number }>((res, rej) => {
            const w = new Worker(join(runtime.dir, "worker.mjs"), {
              workerData: {
                name,
                corpus: CORPUS,
                runs: 3,
                runtime: runtime.runtimeUrl,
                helpers: runtime.helpersUrl,
              },
            });
            w.once("message", res);
            w.once("error", rej);
            w.once("exit", (code) =>
              code === 0 ? undefined : rej(new Error(`worker for ${name} exited with ${code}`)),
            );
          }),
      ),
    );
    expect(results.map((r) => r.name)).toEqual(names);
    for (const r of results) {
      expect(r.errors.length).toBe(3 * r.outputs);
      for (const e of r.errors) expect(e, r.name).toBeLessThanOrEqual(TOLERANCE.float32);
    }
  });
});
