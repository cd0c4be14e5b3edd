/**
 * The TypeScript op contract (src/ops.ts) agrees with the C++ one (native/common/gdn_contract.h) field by
 * field: native/test/contract_dump.cc prints the C++ contract as JSON (built with make, as the kernel test
 * program is), and every name, position, count, type, default, constant and attribute check is compared.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  ConvAttr,
  ConvIn,
  ConvOut,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_STATE_LAYOUT,
  DeltaRuleAttr,
  DeltaRuleIn,
  DeltaRuleOut,
  FLOAT_TYPES,
  GDN_CONTRACT,
  GDN_DOMAIN,
  GDN_OPSET,
  GatingIn,
  GatingOut,
  GdnOp,
  L2NORM_EPS,
  MAX_CHUNK_SIZE,
  MAX_STATE_SIZE,
  RMS_NORM_EPS,
  RmsNormAttr,
  RmsNormIn,
  RmsNormOut,
  SOFTPLUS_THRESHOLD,
  typeName,
} from "../src/ops.js";

const ROOT = path.resolve(import.meta.dirname, "..");

type Json = number | string; // non-finite numbers arrive as "NaN", "Infinity", "-Infinity"
interface CppAttr {
  type: "int" | "float" | "string";
  default: Json;
  accepts: [Json, boolean][];
}
interface CppOp {
  inputs: string[];
  required: number;
  outputs: string[];
  attributes: Record<string, CppAttr>;
}
interface CppContract {
  domain: string;
  opset: number;
  floatTypes: string[];
  constants: Record<string, Json>;
  ops: Record<string, CppOp>;
}

function dumpCppContract(): Promise<CppContract> {
  const dir = path.join(ROOT, "native", "test");
  return new Promise((resolve, reject) =>
    execFile("make", ["-s", "-C", dir, "contract"], { encoding: "utf8", timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`make contract failed: ${stderr || err.message}`));
      else resolve(JSON.parse(stdout) as CppContract);
    }),
  );
}

/** A float attribute or constant as C++ stores it (float32). */
const asFloat32 = (v: number) => Math.fround(v);
const jsNumber = (v: Json) => (typeof v === "number" ? v : Number(v));

/** "initialState" -> "initial_state", "aLog" -> "a_log" (compared without case: the C++ name is "A_log"). */
const snake = (camel: string) => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

describe("op contract: src/ops.ts against native/common/gdn_contract.h", () => {
  let cpp: CppContract;
  beforeAll(async () => {
    cpp = await dumpCppContract();
  }, 300_000);

  it("domain, opset, op names and float element types agree", () => {
    expect([cpp.domain, cpp.opset]).toEqual([GDN_DOMAIN, GDN_OPSET]);
    expect(Object.keys(cpp.ops)).toEqual(Object.values(GdnOp));
    expect(Object.keys(GDN_CONTRACT)).toEqual(Object.values(GdnOp));
    expect(cpp.floatTypes).toEqual([...FLOAT_TYPES].map(typeName));
  });

  it("input and output names, counts and required inputs agree", () => {
    for (const [op, c] of Object.entries(GDN_CONTRACT)) {
      const native = cpp.ops[op]!;
      expect({ op, inputs: [...c.inputs], required: c.required, outputs: [...c.outputs] }).toEqual({
        op,
        inputs: native.inputs,
        required: native.required,
        outputs: native.outputs,
      });
    }
  });

  it("named input/output positions point at the inputs and outputs of those names", () => {
    const tables: [string, Record<string, number>, "inputs" | "outputs"][] = [
      [GdnOp.RecurrentGatedDeltaRule, DeltaRuleIn, "inputs"],
      [GdnOp.RecurrentGatedDeltaRule, DeltaRuleOut, "outputs"],
      [GdnOp.CausalConv1d, ConvIn, "inputs"],
      [GdnOp.CausalConv1d, ConvOut, "outputs"],
      [GdnOp.GatedDeltaGating, GatingIn, "inputs"],
      [GdnOp.GatedDeltaGating, GatingOut, "outputs"],
      [GdnOp.GatedRMSNorm, RmsNormIn, "inputs"],
      [GdnOp.GatedRMSNorm, RmsNormOut, "outputs"],
    ];
    for (const [op, table, side] of tables) {
      const names = cpp.ops[op]![side];
      const byPosition = Object.entries(table).map(([key, i]) => [i, snake(key)]);
      expect(byPosition, `${op} ${side}`).toEqual(names.map((n, i) => [i, n.toLowerCase()]));
    }
  });

  it("attribute names, types and defaults agree", () => {
    for (const [op, c] of Object.entries(GDN_CONTRACT)) {
      const native = cpp.ops[op]!.attributes;
      expect(Object.keys(c.attributes).sort(), op).toEqual(Object.keys(native).sort());
      for (const [name, a] of Object.entries(c.attributes)) {
        const n = native[name]!;
        const tsDefault = a.kind === "float" ? asFloat32(a.default as number) : a.default;
        expect({ op, name, kind: a.kind, default: tsDefault }).toEqual({ op, name, kind: n.type, default: n.default });
      }
    }
    const named = [...Object.values(DeltaRuleAttr), ...Object.values(ConvAttr), ...Object.values(RmsNormAttr)];
    const all = new Set(Object.values(cpp.ops).flatMap((o) => Object.keys(o.attributes)));
    expect(named.sort()).toEqual([...all].sort());
  });

  it("each attribute check accepts and refuses the same probe values", () => {
    let probes = 0;
    for (const [op, c] of Object.entries(GDN_CONTRACT)) {
      for (const [name, a] of Object.entries(c.attributes)) {
        for (const [probe, nativeOk] of cpp.ops[op]!.attributes[name]!.accepts) {
          const value = a.kind === "string" ? probe : jsNumber(probe);
          expect({ op, name, probe, ok: a.check(value) === null }).toEqual({ op, name, probe, ok: nativeOk });
          probes++;
        }
      }
    }
    expect(probes).toBe(2 * (7 + 9 + 7) + 9 + 7 + 9 + 7);
  });

  it("the constants the ops fix agree", () => {
    const k = cpp.constants;
    expect({
      l2normEps: asFloat32(L2NORM_EPS),
      softplusThreshold: SOFTPLUS_THRESHOLD,
      defaultChunkSize: DEFAULT_CHUNK_SIZE,
      maxChunkSize: MAX_CHUNK_SIZE,
      maxStateSize: MAX_STATE_SIZE,
      defaultStateLayout: DEFAULT_STATE_LAYOUT,
    }).toEqual(k);
    expect(asFloat32(RMS_NORM_EPS)).toBe(cpp.ops[GdnOp.GatedRMSNorm]!.attributes[RmsNormAttr.epsilon]!.default);
  });
});
