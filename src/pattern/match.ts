/**
 * Match results with reasons. A matcher throws `MatchFailure` through `fail`/`check`; the pass
 * catches it and records the candidate as skipped with the stage it reached (the "deepest point")
 * and the check that failed, naming the node at fault.
 */
import type { Node, Value } from "../ir/graph.js";

export class MatchFailure extends Error {
  constructor(
    readonly stage: string,
    readonly reason: string,
    readonly node?: Node,
  ) {
    super(`${stage}: ${reason}${node ? ` (at ${node.opType} node "${node.name}")` : ""}`);
  }
}

export function fail(stage: string, reason: string, node?: Node): never {
  throw new MatchFailure(stage, reason, node);
}

export function check(cond: unknown, stage: string, reason: string, node?: Node): asserts cond {
  if (!cond) fail(stage, reason, node);
}

/** Whether two floats agree to a relative tolerance. */
export function close(a: number, b: number, rtol: number): boolean {
  return Math.abs(a - b) <= rtol * Math.max(Math.abs(a), Math.abs(b));
}

/** The permutation of a Transpose node, with the default (reversed axes) filled in. */
export function permOf(n: Node): number[] | undefined {
  const p = n.attrInts("perm");
  if (p) return p;
  const r = n.inputs[0]?.rank;
  return r === undefined ? undefined : [...Array(r).keys()].reverse();
}

export function isPerm(n: Node | undefined, perm: number[]): boolean {
  if (!n || n.opType !== "Transpose") return false;
  const p = permOf(n);
  return !!p && p.length === perm.length && p.every((x, i) => x === perm[i]);
}

/** The producer of v if it has the given op type. */
export function producedBy(v: Value | undefined, opType: string): Node | undefined {
  const p = v?.producer;
  return p && p.opType === opType && p.domain === "" ? p : undefined;
}

/** Walks back from v through single-data-input ops in `through`; returns the first value not produced by one. */
export function walkBack(v: Value, through: ReadonlySet<string>, visited?: Node[]): Value {
  let cur = v;
  for (;;) {
    const p = cur.producer;
    if (!p || p.domain !== "" || !through.has(p.opType) || !p.inputs[0]) return cur;
    visited?.push(p);
    cur = p.inputs[0];
  }
}
