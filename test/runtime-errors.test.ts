/**
 * Errors of the gdn backend: one line, no ONNX Runtime source locations, always a GdnFuseError with a code.
 */
import * as ort from "onnxruntime-node";
import onnxProto from "onnx-proto";
import { describe, expect, it } from "vitest";
import { GdnFuseError } from "../src/errors.js";
import "../src/runtime/index.js";
import { oneLineMessage } from "../src/runtime/backend.js";
import { loadRuntime } from "../src/runtime/index.js";

const { onnx } = onnxProto;
const ready = loadRuntime().opsLibraryPath !== null;

describe("gdn backend: one-line errors", () => {
  it("drops ORT's source location and C++ signature, and joins lines", () => {
    expect(
      oneLineMessage(
        "Node () Op (GatedRMSNorm) /onnxruntime_src/onnxruntime/core/session/custom_ops.cc:1333 void onnxruntime::InferOutputTypes(const onnx::OpSchema&, gsl::span<const KernelDef* const>, onnx::InferenceContext&) [CustomOP type inferencing error]: no kernel def matches node inputs for Op: GatedRMSNorm\n",
      ),
    ).toBe("Node () Op (GatedRMSNorm) [CustomOP type inferencing error]: no kernel def matches node inputs for Op: GatedRMSNorm");
    expect(oneLineMessage("first\n  second\n")).toBe("first second");
    expect(oneLineMessage("/onnxruntime_src/onnxruntime/core/framework/x.h:12 onnxruntime::Foo::Bar() x failed")).toBe("x failed");
  });

  it.skipIf(!ready)("a gdn node whose input types match no kernel: one line, E_RUNTIME", async () => {
    const vi = (name: string, t: number) => ({ name, type: { tensorType: { elemType: t } } });
    const bytes = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ domain: "", version: 17 }, { domain: "gdn", version: 1 }],
      graph: {
        name: "m",
        node: [{ opType: "GatedRMSNorm", domain: "gdn", input: ["x", "gate", "weight"], output: ["y"] }],
        input: [vi("x", 1), vi("gate", 10), vi("weight", 1)],
        output: [vi("y", 1)],
      },
    }).finish();
    const err = await ort.InferenceSession.create(bytes, { executionProviders: ["gdn"] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GdnFuseError);
    expect(err).toMatchObject({
      code: "E_RUNTIME",
      message:
        "cannot create session: Node () Op (GatedRMSNorm) [CustomOP type inferencing error]: no kernel def matches node inputs for Op: GatedRMSNorm",
    });
  });
});
