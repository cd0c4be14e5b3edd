/**
 * A synthetic deep model for measuring the pass: the whole exported Qwen3-Next layer graph
 * (models/layer_qwen3next_prefill_t96: hidden_states [B,T,D] -> output [B,T,D]) replicated in series
 * with a residual connection, interleaved with plain MLP layers where Qwen3-Next has full attention
 * (3 gated-delta layers, then 1 other, repeated). 48 layers give 36 gated-delta cores.
 * A fixture of the tests (synthetic-stack.test.ts) and the bench (bench/pass48.mjs, compiled with
 * bench/tsconfig.json); not part of the package.
 */
import { onnx } from "../../src/ir/onnx.js";
import { arrayToTensor } from "../../src/ir/tensor.js";

export interface StackOptions {
  layers: number; // total layers
  otherEvery: number; // every n-th layer is an MLP instead of a gated-delta layer (4 as in Qwen3-Next)
}

export function buildLayerStack(
  layer: onnx.IModelProto,
  opts: StackOptions = { layers: 48, otherEvery: 4 },
): onnx.ModelProto {
  const g = layer.graph!;
  const input = g.input![0]!;
  const output = g.output![0]!;
  const dims = input.type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue));
  const D = dims[dims.length - 1]!;
  const nodes: onnx.INodeProto[] = [];
  const inits: onnx.ITensorProto[] = [];
  const valueInfo: onnx.IValueInfoProto[] = [];
  let cur = "hidden_in";
  for (let l = 0; l < opts.layers; l++) {
    const p = `l${l}/`;
    const out = `${p}residual`;
    if ((l + 1) % opts.otherEvery === 0) {
      // MLP stand-in for a full-attention layer: x + W2 relu(W1 x)
      const w = (name: string, seed: number) => {
        const data = Float32Array.from({ length: D * D }, (_, i) => Math.sin(i * 0.37 + seed) * 0.05);
        inits.push(arrayToTensor(`${p}${name}`, [D, D], 1, data));
        return `${p}${name}`;
      };
      nodes.push({ opType: "MatMul", name: `${p}mm1`, input: [cur, w("w1", l)], output: [`${p}h1`] });
      nodes.push({ opType: "Relu", name: `${p}relu`, input: [`${p}h1`], output: [`${p}h2`] });
      nodes.push({ opType: "MatMul", name: `${p}mm2`, input: [`${p}h2`, w("w2", l + 0.5)], output: [`${p}h3`] });
      nodes.push({ opType: "Add", name: `${p}res`, input: [cur, `${p}h3`], output: [out] });
    } else {
      const rename = (n: string) => (n === "" ? "" : n === input.name ? cur : `${p}${n}`);
      for (const n of g.node!) {
        const copy = onnx.NodeProto.fromObject(onnx.NodeProto.toObject(n as onnx.NodeProto));
        copy.name = `${p}${n.name ?? ""}`;
        copy.input = (n.input ?? []).map(rename);
        copy.output = (n.output ?? []).map(rename);
        nodes.push(copy);
      }
      for (const t of g.initializer!) {
        const copy = onnx.TensorProto.fromObject(onnx.TensorProto.toObject(t as onnx.TensorProto));
        copy.name = `${p}${t.name}`;
        inits.push(copy);
      }
      for (const vi of g.valueInfo ?? []) valueInfo.push({ ...vi, name: rename(vi.name ?? "") });
      valueInfo.push({ ...output, name: rename(output.name ?? "") });
      nodes.push({ opType: "Add", name: `${p}res`, input: [cur, rename(output.name!)], output: [out] });
    }
    cur = out;
  }
  nodes.push({ opType: "Identity", name: "out", input: [cur], output: ["hidden_out"] });
  return onnx.ModelProto.fromObject({
    irVersion: layer.irVersion,
    opsetImport: layer.opsetImport,
    producerName: "gdn-fuse synthetic stack",
    graph: {
      name: "stack",
      node: nodes,
      initializer: inits,
      valueInfo,
      input: [{ ...input, name: "hidden_in" }],
      output: [{ ...output, name: "hidden_out" }],
    },
  });
}
