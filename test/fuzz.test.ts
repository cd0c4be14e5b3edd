// Bad bytes never crash the loader: truncated corpus models, random bytes, bit flips and byte mutations,
// and protobufs that are not models each give either a valid model or a GdnFuseError with a one-line
// message — never another exception type, never a hang. Fixed seed, so failures reproduce.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import { loadModel } from "../src/ir/model-io.js";
import { encodeMessage, onnx } from "../src/ir/onnx.js";
import { seededRandom } from "../src/numeric.js";

const CORPUS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../models"); // the project's own fixtures
const small = fs.readFileSync(path.join(CORPUS, "recurrent_t1_b3", "model.onnx"));
const medium = fs.readFileSync(path.join(CORPUS, "layer_qwen3next_decode_b2", "model.onnx"));

const rng = seededRandom;

interface Case {
  name: string;
  bytes: Uint8Array;
}

function makeCases(): Case[] {
  const r = rng(0x6d6f64);
  const int = (n: number): number => Math.floor(r() * n);
  const cases: Case[] = [];
  for (let i = 0; i < 50; i++) {
    const src = i % 2 ? medium : small;
    const at = 1 + int(src.length - 1);
    cases.push({ name: `truncate ${i % 2 ? "medium" : "small"} at ${at}`, bytes: src.subarray(0, at) });
  }
  for (let i = 0; i < 40; i++) {
    const len = 1 + int(i < 20 ? 64 : 8192);
    cases.push({ name: `random ${len} bytes #${i}`, bytes: Uint8Array.from({ length: len }, () => int(256)) });
  }
  for (let i = 0; i < 60; i++) {
    const b = Uint8Array.from(small);
    const flips = 1 + int(8);
    for (let k = 0; k < flips; k++) b[int(b.length)]! ^= 1 << int(8);
    cases.push({ name: `${flips} bit flips #${i}`, bytes: b });
  }
  for (let i = 0; i < 50; i++) {
    const b = Uint8Array.from(small);
    const edits = 1 + int(6);
    for (let k = 0; k < edits; k++) b[int(b.length)] = int(256);
    // the early bytes hold the model's own fields and the graph's length: hit them more often
    if (i % 3 === 0) b[int(64)] = int(256);
    cases.push({ name: `${edits} byte mutations #${i}`, bytes: b });
  }
  for (let i = 0; i < 10; i++) {
    const b = Buffer.from(small);
    const at = int(b.length);
    const cut = 1 + int(200);
    cases.push({
      name: `splice out ${cut} bytes at ${at}`,
      bytes: Buffer.concat([b.subarray(0, at), b.subarray(at + cut)]),
    });
  }
  // Valid protobufs that are not models.
  cases.push({ name: "empty", bytes: new Uint8Array(0) });
  cases.push({
    name: "producer only",
    bytes: encodeMessage(onnx.ModelProto, onnx.ModelProto.create({ producerName: "x" })),
  });
  cases.push({
    name: "ir_version 0",
    bytes: encodeMessage(
      onnx.ModelProto,
      onnx.ModelProto.create({ graph: { name: "g" }, opsetImport: [{ version: 18 }] }),
    ),
  });
  cases.push({
    name: "no opset_import",
    bytes: encodeMessage(onnx.ModelProto, onnx.ModelProto.create({ irVersion: 8, graph: { name: "g" } })),
  });
  cases.push({ name: "unknown fields only", bytes: Uint8Array.from([0xa2, 0x06, 0x03, 0x61, 0x62, 0x63]) });
  cases.push({ name: "deep nesting", bytes: deepGraphNesting(5000) });
  return cases;
}

/** graph -> node -> attribute -> graph -> ... nested `depth` times (a valid message, absurdly deep).
 * Built as prefixes around one leaf, so it costs linear time. */
function deepGraphNesting(depth: number): Uint8Array {
  const varint = (n: number): number[] => {
    const out: number[] = [];
    for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n & 0x7f) | 0x80);
    out.push(n);
    return out;
  };
  const attrHead = encodeMessage(onnx.AttributeProto, onnx.AttributeProto.create({ name: "body", type: 5 }));
  const nodeHead = encodeMessage(onnx.NodeProto, onnx.NodeProto.create({ opType: "If" }));
  const graphHead = encodeMessage(onnx.GraphProto, onnx.GraphProto.create({ name: "g" }));
  const leaf = encodeMessage(onnx.GraphProto, onnx.GraphProto.create({ name: "leaf" }));
  const prefixes: Uint8Array[] = [];
  let len = leaf.length;
  for (let i = 0; i < depth; i++) {
    const attr = [...attrHead, 50, ...varint(len)]; // AttributeProto.g = 6
    len += attr.length;
    const node = [...nodeHead, 42, ...varint(len)]; // NodeProto.attribute = 5
    len += node.length;
    const graph = [...graphHead, 10, ...varint(len)]; // GraphProto.node = 1
    len += graph.length;
    prefixes.push(Uint8Array.from([...graph, ...node, ...attr]));
  }
  const head = encodeMessage(onnx.ModelProto, onnx.ModelProto.create({ irVersion: 8, opsetImport: [{ version: 18 }] }));
  return Buffer.concat([head, Uint8Array.from([58, ...varint(len)]), ...prefixes.reverse(), leaf]); // ModelProto.graph = 7
}

describe("fuzzed model bytes", () => {
  const cases = makeCases();

  test("has at least 200 cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(200);
  });

  test("every case loads or fails with a GdnFuseError naming the problem", async () => {
    const outcomes: Record<string, number> = {};
    const started = Date.now();
    for (const c of cases) {
      const t0 = Date.now();
      let outcome: string;
      try {
        const m = await loadModel(c.bytes, { name: "fuzz.onnx" });
        expect(m.proto.graph, c.name).toBeDefined();
        encodeMessage(onnx.ModelProto, m.proto); // a model that loads can be written back
        outcome = "valid";
      } catch (e) {
        if (!(e instanceof GdnFuseError))
          throw new Error(`${c.name}: ${String(e)} is not a GdnFuseError`, { cause: e });
        expect(["E_PARSE", "E_MODEL", "E_EXTERNAL_DATA"], `${c.name}: ${e.message}`).toContain(e.code);
        expect(e.message, c.name).toMatch(/^fuzz\.onnx: \S/);
        expect(e.message, c.name).not.toContain("\n");
        outcome = e.code;
      }
      expect(Date.now() - t0, `${c.name} took too long`).toBeLessThan(5000);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    // the seed gives a mix: mostly decode failures, some dangling values, some still-valid models
    expect(outcomes.E_PARSE).toBeGreaterThan(50);
    expect(outcomes.E_MODEL).toBeGreaterThan(0);
    expect(outcomes.valid).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  test("names the byte where decoding failed, and says 'truncated' for cut files", async () => {
    const e1 = (await loadModel(small.subarray(0, 1000), { name: "cut.onnx" }).catch(
      (e: unknown) => e,
    )) as GdnFuseError;
    expect(e1.code).toBe("E_PARSE");
    expect(e1.message).toMatch(/^cut\.onnx: truncated protobuf \(input ends at byte 1000;/);
    const e2 = (await loadModel(Uint8Array.from([0x08, 0x07, 0xff, 0x01]), { name: "bad.onnx" }).catch(
      (e: unknown) => e,
    )) as GdnFuseError;
    expect(e2.message).toMatch(
      /^bad\.onnx: not an ONNX model \(protobuf decode failed at byte \d+: invalid wire type 7/,
    );
  });

  test("rejects nesting too deep for the decoder, with reason", async () => {
    const e = (await loadModel(deepGraphNesting(20000), { name: "deep.onnx" }).catch(
      (err: unknown) => err,
    )) as GdnFuseError;
    expect(e).toBeInstanceOf(GdnFuseError);
    expect(e.code).toBe("E_PARSE");
    expect(e.message).toContain("nested too deeply");
  });
});
