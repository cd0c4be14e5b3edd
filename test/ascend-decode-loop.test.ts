/**
 * A decode loop whose recurrent state stays on the device (AscendDeviceLoop): four steps of the fused
 * layer_qwen3next_decode_b2 copy the state to the device once and never back, and give the CPU backend's outputs
 * within the device's bf16 tolerance. (Its own file: an ascend session per test would load the simulator anyway.)
 */
import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { loadAddon } from "../src/runtime/addon.js";
import { ascendEpLibraryPath } from "../src/runtime/ascend.js";
import { AscendDeviceLoop, ascendSimCounters, ascendStats, type AscendStats } from "../src/runtime/index.js";
import { fuseCase, MODELS, runtimeLoadError, TOLERANCE } from "./helpers/cases.js";
import { readTensorProto, relativeL2 } from "./helpers/tensor-io.js";
import { REAL_ASCEND, useAscendDevice } from "./helpers/ascend.js";

const REAL = REAL_ASCEND;
useAscendDevice();

const CASE = "layer_qwen3next_decode_b2";
const STEPS = 4;
const STATE_BYTES = 2 * 4 * 16 * 24 * 4; // recurrent_state [2,4,16,24] float32
const ASCEND = { name: "ascend", deviceId: 0 } as unknown as string;
const STATS_ID = Symbol.for("gdn-fuse.runtime.ascend-stats-id"); // where the ascend backend keeps a session's id

function inputs(): Record<string, ort.Tensor> {
  const dir = join(MODELS, CASE, "test_data_set_0");
  const names = ["hidden_states", "conv_state", "recurrent_state"];
  const files = readdirSync(dir)
    .filter((f) => /^input_\d+\.pb$/.test(f))
    .sort();
  return Object.fromEntries(
    files.map((f, i) => {
      const t = readTensorProto(join(dir, f));
      return [names[i]!, new ort.Tensor("float32", t.data as Float32Array, t.dims)];
    }),
  );
}

/** Step k's hidden states: the case's, scaled, so that the steps differ. */
const hidden = (x: ort.Tensor, k: number) =>
  new ort.Tensor(
    "float32",
    (x.data as Float32Array).map((v) => v * (1 + k / 4)),
    x.dims,
  );

async function fusedFile(): Promise<string> {
  const { model } = await fuseCase(CASE, { probe: false });
  const file = join(mkdtempSync(join(tmpdir(), "gdn-ascend-loop-")), "model.onnx");
  writeFileSync(file, encodeMessage(onnx.ModelProto, model.proto as onnx.ModelProto));
  return file;
}

/** The loop with the state fed back through the host: outputs per step and the last state. */
async function hostLoop(session: ort.InferenceSession) {
  const x = inputs();
  let conv = x.conv_state!,
    state = x.recurrent_state!;
  const outputs: ort.Tensor[] = [];
  for (let k = 0; k < STEPS; k++) {
    const feeds = { hidden_states: hidden(x.hidden_states!, k), conv_state: conv, recurrent_state: state };
    const out = await session.run(feeds);
    outputs.push(out.output!);
    conv = out.new_conv_state!;
    state = out.new_recurrent_state!;
  }
  return { outputs, state };
}

const copies = (s: AscendStats) => [s.copiesH2D, s.bytesH2D, s.copiesD2H, s.bytesD2H];

describe.skipIf(runtimeLoadError() !== undefined)("ascend decode loop with the state on the device", () => {
  it("copies the state to the device once and never back, and matches the CPU backend", async () => {
    const file = await fusedFile();
    const cpu = await ort.InferenceSession.create(file, { executionProviders: ["gdn"] });
    const viaHost = await ort.InferenceSession.create(file, { executionProviders: [ASCEND] });
    const bound = await ort.InferenceSession.create(file, { executionProviders: [ASCEND] });
    try {
      const want = await hostLoop(cpu);
      const sim0 = REAL ? undefined : ascendSimCounters();
      await hostLoop(viaHost);
      const sim1 = REAL ? undefined : ascendSimCounters();
      const x = inputs();
      const loop = new AscendDeviceLoop(bound, { new_recurrent_state: "recurrent_state" });
      let conv = x.conv_state!;
      for (let k = 0; k < STEPS; k++) {
        const feeds = { hidden_states: hidden(x.hidden_states!, k), conv_state: conv };
        const out = await loop.step(k === 0 ? { ...feeds, recurrent_state: x.recurrent_state! } : feeds);
        expect(Object.keys(out).sort()).toEqual(["new_conv_state", "output"]);
        expect(relativeL2(out.output!, want.outputs[k]!), `step ${k}`).toBeLessThan(TOLERANCE.bfloat16);
        conv = out.new_conv_state!;
      }
      const sim2 = REAL ? undefined : ascendSimCounters();
      const [h, , d, db] = copies(ascendStats(viaHost));
      // Against the same loop through the host: no state copy out. No copy in is counted for the session: the
      // layer runs wholly on the device, so every input is bound on the host and ORT copies it to the device when
      // it is bound, outside a run and without a stream (not attributed to a session; the simulator sees them).
      const fewer = STEPS * STATE_BYTES;
      expect(h).toBeGreaterThan(STEPS);
      expect(copies(ascendStats(bound))).toEqual([0, 0, d - STEPS, db - fewer]);
      if (sim0 && sim1 && sim2) {
        // The device saw the state come in once: 3 state copies fewer than through the host.
        expect(sim1.bytesH2D - sim0.bytesH2D - (sim2.bytesH2D - sim1.bytesH2D)).toBe(3 * STATE_BYTES);
        expect(sim1.bytesD2H - sim0.bytesD2H - (sim2.bytesD2H - sim1.bytesD2H)).toBe(STEPS * STATE_BYTES);
      }
      expect(relativeL2(loop.read("new_recurrent_state"), want.state)).toBeLessThan(TOLERANCE.bfloat16);
      loop.release();
    } finally {
      await Promise.all([cpu.release(), viaHost.release(), bound.release()]);
    }
  });

  it("refuses a fed-back input after the first step, and one missing at the first", async () => {
    const session = await ort.InferenceSession.create(await fusedFile(), { executionProviders: [ASCEND] });
    try {
      const x = inputs();
      const loop = new AscendDeviceLoop(session, { new_recurrent_state: "recurrent_state" });
      await expect(loop.step({ hidden_states: x.hidden_states!, conv_state: x.conv_state! })).rejects.toThrow(
        new GdnFuseError("E_USAGE", "AscendDeviceLoop: the first step needs input 'recurrent_state'"),
      );
      await loop.step(x);
      await expect(loop.step(x)).rejects.toThrow(
        new GdnFuseError(
          "E_USAGE",
          "AscendDeviceLoop: input 'recurrent_state' is fed back on the device after the first step; do not pass it",
        ),
      );
      expect(() => new AscendDeviceLoop(session, { nope: "recurrent_state" })).toThrow(
        new GdnFuseError("E_USAGE", "AscendDeviceLoop: the model has no output 'nope'"),
      );
      loop.release();
    } finally {
      await session.release();
    }
  });
});

// Lifetimes: what a loop holds on the device is freed as soon as the user releases it, whatever is in flight, and a
// released loop or session says so. A "keeper" session keeps the simulator loaded, so liveBytes compares.
describe.skipIf(runtimeLoadError() !== undefined || REAL)("ascend decode loop: releasing", () => {
  const usage = (message: string) => new GdnFuseError("E_USAGE", `AscendDeviceLoop: ${message}`);
  const later = (x: Record<string, ort.Tensor>) => ({ hidden_states: x.hidden_states!, conv_state: x.conv_state! });

  /** A fresh session and loop, liveBytes before them, and the keeper; `fn` must release the session. */
  async function withLoop(fn: (s: ort.InferenceSession, loop: AscendDeviceLoop, before: number) => Promise<void>) {
    const file = await fusedFile();
    const keeper = await ort.InferenceSession.create(file, { executionProviders: [ASCEND] });
    try {
      const before = ascendSimCounters().liveBytes;
      const session = await ort.InferenceSession.create(file, { executionProviders: [ASCEND] });
      await fn(session, new AscendDeviceLoop(session, { new_recurrent_state: "recurrent_state" }), before);
    } finally {
      await keeper.release();
    }
  }

  it("release() during a step: the step completes, its device values are freed when it ends, the loop is closed", () =>
    withLoop(async (session, loop, before) => {
      const x = inputs();
      await loop.step(x);
      const pending = loop.step(later(x));
      loop.release();
      expect(Object.keys(await pending).sort()).toEqual(["new_conv_state", "output"]);
      await session.release();
      expect(ascendSimCounters().liveBytes).toBe(before);
      await expect(loop.step(later(x))).rejects.toThrow(usage("the loop is released"));
      expect(() => loop.read("new_recurrent_state")).toThrow(usage("the loop is released"));
      loop.release(); // twice: nothing to do
    }));

  it("a step while another is in flight is refused (both would read the same state)", () =>
    withLoop(async (session, loop, before) => {
      const x = inputs();
      const first = loop.step(x);
      await expect(loop.step(x)).rejects.toThrow(usage("a step is in flight; await it before the next"));
      await first;
      await loop.step(later(x));
      loop.release();
      await session.release();
      expect(ascendSimCounters().liveBytes).toBe(before);
    }));

  it("the session released under a loop: the next step fails, read() still copies the state, release() frees it", () =>
    withLoop(async (session, loop, before) => {
      const x = inputs();
      await loop.step(x);
      await session.release();
      expect(ascendSimCounters().liveBytes).toBe(before + STATE_BYTES); // the loop's state, until loop.release()
      await expect(loop.step(later(x))).rejects.toThrow(
        new GdnFuseError("E_RUNTIME", "ascend device loop step 1: session is disposed"),
      );
      expect(loop.read("new_recurrent_state").dims).toEqual([2, 4, 16, 24]);
      loop.release();
      expect(ascendSimCounters().liveBytes).toBe(before);
    }));

  it("ascendStats refuses a released session, and the EP keeps nothing of it", () =>
    withLoop(async (session, loop) => {
      loop.release();
      expect(ascendStats(session).nodesOnDevice).not.toEqual({});
      const id = (session as unknown as { handler: Record<symbol, number> }).handler[STATS_ID]!;
      await session.release();
      expect(() => ascendStats(session)).toThrow(new GdnFuseError("E_USAGE", "ascendStats: the session is released"));
      // What the EP library still holds for the id (the addon's own call): one entry per session ever created would
      // grow without end in a server that swaps sessions.
      const addon = loadAddon().addon as unknown as { ascendStats(library: string, id: number): string };
      expect(JSON.parse(addon.ascendStats(ascendEpLibraryPath(), id))).toEqual({
        nodesOnDevice: {},
        nodesOnCpu: {},
        fallbackReasons: [],
        copiesH2D: 0,
        copiesD2H: 0,
        bytesH2D: 0,
        bytesD2H: 0,
      });
    }));
});
