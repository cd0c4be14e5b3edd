/**
 * Shapes with symbolic dims. Real exports have a dynamic batch: a dim_param such as "batch" on dim 0.
 * Value.staticShape is then undefined, so passes read the dims they need one by one (heads, channels,
 * head sizes, T, S must be numbers) and compare whole shapes dim by dim: a symbolic dim equals only the
 * same symbol.
 */
import type { Value } from "./graph.js";

/** A declared dim: a number, a symbol (dim_param, e.g. "batch"), or unknown. */
export type Dim = number | string | undefined;

/** The declared shape of v (symbolic dims kept), or undefined when its rank is unknown. */
export function dimsOf(v: Value | undefined): Dim[] | undefined {
  return v?.type?.shape;
}

/** Dim i of v (negative: from the end) when it is a number; undefined when symbolic or unknown. */
export function staticDim(v: Value | undefined, i: number): number | undefined {
  const s = v?.type?.shape;
  if (!s) return undefined;
  const d = s[i < 0 ? i + s.length : i];
  return typeof d === "number" ? d : undefined;
}

/** Two dims are the same when both are the same number or the same symbol (unknown is never the same). */
export const sameDim = (a: Dim, b: Dim): boolean => a !== undefined && a === b;

/** Whole shapes equal dim by dim (same rank; symbolic dims equal only to the same symbol). */
export function sameDims(a: readonly Dim[] | undefined, b: readonly Dim[] | undefined): boolean {
  return !!a && !!b && a.length === b.length && a.every((d, i) => sameDim(d, b[i]));
}

/** A shape for a reason text: [batch,1,4,16]; "?" for an unknown dim; "unknown rank" without a shape. */
export function showDims(s: readonly Dim[] | undefined): string {
  return s ? `[${s.map((d) => d ?? "?").join(",")}]` : "[unknown rank]";
}

/**
 * The output dims of Reshape(x, target) for x of dims `input` (symbols allowed). 0 copies the input
 * dim (allowzero=0); -1 takes what is left, which is a symbol only when exactly one input symbol is
 * left over and the numeric rest divides out to 1. Undefined when that cannot be told statically (an
 * unknown input dim, a product of symbols, a symbol not carried over) or the sizes do not fit.
 */
export function reshapeDims(input: readonly Dim[], target: readonly number[], allowzero = false): Dim[] | undefined {
  if (input.some((d) => d === undefined)) return undefined;
  const out: Dim[] = target.map((d, i) => (d === 0 && !allowzero ? input[i] : d));
  if (out.some((d) => d === undefined)) return undefined;
  const symbols = input.filter((d): d is string => typeof d === "string");
  let inNum = input.reduce<number>((a, d) => a * (typeof d === "number" ? d : 1), 1);
  for (const d of out) {
    if (typeof d !== "string") continue;
    const i = symbols.indexOf(d);
    if (i < 0) return undefined;
    symbols.splice(i, 1);
  }
  const outNum = out.reduce<number>((a, d) => a * (typeof d === "number" && d !== -1 ? d : 1), 1);
  const free = out.filter((d) => d === -1).length;
  if (free > 1) return undefined;
  if (free === 0) return symbols.length === 0 && inNum === outNum ? out : undefined;
  if (outNum === 0 || inNum % outNum !== 0) return undefined;
  inNum /= outNum;
  const rest: Dim = symbols.length === 0 ? inNum : symbols.length === 1 && inNum === 1 ? symbols[0] : undefined;
  return rest === undefined ? undefined : out.map((d) => (d === -1 ? rest : d));
}
