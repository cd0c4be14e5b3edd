/**
 * A structural key for a subgraph: op types, attributes, wiring and constant contents, independent of
 * node and value names. Two regions with the same key compute the same function of their inputs, so
 * work done on one (a probe run, a layout trace) holds for the other — a model's repeated layers are
 * checked once.
 */
import { createHash } from "node:crypto";
import type { Node, Value } from "../ir/graph.js";
import { isConstantValue } from "../ir/constant.js";
import { isExternal, readExternalBytes } from "../ir/tensor.js";

export interface StructuralKey {
  key: string;
  /** The key's id for each input and each value produced by the nodes. */
  ids: Map<Value, string>;
}

/** `nodes` in topological order; `inputs` are the values the subgraph reads from outside, in a fixed role order. */
export function structuralKey(
  nodes: readonly Node[],
  inputs: readonly { value: Value; tag?: string }[],
): StructuralKey {
  const ids = new Map<Value, string>();
  inputs.forEach((inp, i) => ids.set(inp.value, `in${i}${inp.tag ?? ""}`));
  const parts = nodes.map((n, i) => {
    n.outputs.forEach((o, j) => o && !ids.has(o) && ids.set(o, `n${i}.${j}`));
    const ins = n.inputs.map((v) => (!v ? "-" : (ids.get(v) ?? (isConstantValue(v) ? constantKey(v) : `?${v.name}`))));
    return `${n.domain}.${n.opType}(${ins.join(",")})${JSON.stringify(n.proto.attribute ?? [])}`;
  });
  return { key: parts.join(";"), ids };
}

const keyCache = new WeakMap<Value, string>();

/** A key for a constant's contents from its stored bytes or the ops folding it; nothing is decoded. */
function constantKey(v: Value): string {
  const hit = keyCache.get(v);
  if (hit) return hit;
  let key: string;
  const t =
    v.initializer ??
    (v.producer?.opType === "Constant" ? (v.producer.proto.attribute?.[0]?.t ?? undefined) : undefined);
  if (t) {
    const bytes = isExternal(t)
      ? readExternalBytes(t, v.graph?.baseDir ?? ".")
      : t.rawData?.length
        ? t.rawData
        : new TextEncoder().encode(JSON.stringify([t.floatData, t.int32Data, t.int64Data, t.doubleData]));
    key = `c${t.dataType}[${t.dims}]${createHash("sha1").update(bytes).digest("base64")}`;
  } else if (v.producer) {
    const p = v.producer;
    key = `${p.opType}${JSON.stringify(p.proto.attribute ?? [])}(${p.inputs.map((i) => (i ? constantKey(i) : "-")).join(",")})`;
  } else {
    key = `?${v.name}`;
  }
  keyCache.set(v, key);
  return key;
}
