/**
 * The numeric comparison every check of the project shares (probe, --verify, tests): special values
 * (NaN, +Inf, -Inf) must sit at the same positions, the finite entries must agree in relative L2.
 * Also the tolerance table per element type and the seeded random generator.
 */

/**
 * The one relative L2 tolerance table, by the element type a result was computed in. Every comparison of the
 * project uses it: --verify (fused vs original), the probe (float64), the tests (fused vs PyTorch's test data,
 * kernels vs the float64 reference) and the bench. Each value is a few units of the type's rounding error
 * u = 2^-p, since two correct computations differ by their roundings:
 * - float64 (u = 1.1e-16): 1e-9, the probe's float64 runs differ only in summation order.
 * - float32 (u = 6.0e-8): 1e-5, sums of up to thousands of rounded products.
 * - float16 (u = 4.9e-4): 2e-3, about 4 u.
 * - bfloat16 (u = 3.9e-3): 1e-2. An unfused bfloat16 graph (an original model, PyTorch's outputs) rounds every
 *   intermediate op to 8 bits; one rounding of the outputs alone is already about u / sqrt(3) = 2.3e-3.
 * A float32 output computed from half-precision values (a state updated from float16 projections) takes the
 * half type's tolerance: look it up by the compute type, not the output's.
 */
export const TOLERANCE: Readonly<Record<FloatTypeName, number>> = {
  float64: 1e-9,
  float32: 1e-5,
  float16: 2e-3,
  bfloat16: 1e-2,
};

/**
 * One purpose the element type does not cover: two different float32 algorithms run over one long
 * sequence (the bench: the chunked WY form against LinearAttention's token recurrence, T up to 8192).
 * Their roundings are different ones and the state carries them through every chunk: 10x float32's.
 */
export const LONG_SEQUENCE_FLOAT32_TOLERANCE = 1e-4;

/** The element types TOLERANCE has an entry for (onnxruntime's names). */
export type FloatTypeName = "float64" | "float32" | "float16" | "bfloat16";

/** TOLERANCE's entry for a type name, or undefined for a type without one (integers, bool, string). */
export function toleranceOf(type: string): number | undefined {
  return Object.hasOwn(TOLERANCE, type) ? TOLERANCE[type as FloatTypeName] : undefined;
}

/** Seeded uniform [0,1) generator (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Kind = "finite" | "NaN" | "+Inf" | "-Inf";
const kindOf = (x: number): Kind =>
  Number.isNaN(x) ? "NaN" : x === Infinity ? "+Inf" : x === -Infinity ? "-Inf" : "finite";
const kindText = (k: Kind) => (k === "finite" ? "finite values" : k);

export interface Comparison {
  /** ||got - want|| / ||want|| over the entries finite in both (0 when both are all zeros). */
  relL2: number;
  /** Largest |got - want| over those entries. */
  maxAbs: number;
  /** Why the special values differ (one line), or undefined when NaN/±Inf sit at the same positions. */
  mismatch?: string;
}

/**
 * Compares `got` with the reference `want` entry by entry: NaN and ±Inf must match in position (and
 * sign), and only the entries finite in both enter the relative L2 error, so Inf - Inf never poisons it.
 */
export function compareValues(got: ArrayLike<number>, want: ArrayLike<number>, wantName = "the original"): Comparison {
  if (got.length !== want.length)
    return { relL2: Infinity, maxAbs: Infinity, mismatch: `${got.length} values where ${wantName} has ${want.length}` };
  let num = 0,
    den = 0,
    maxAbs = 0;
  // (got kind, want kind) -> count and first index, in order of first occurrence
  const diffs = new Map<string, { count: number; first: number; got: Kind; want: Kind }>();
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!,
      w = want[i]!;
    const kg = kindOf(g),
      kw = kindOf(w);
    if (kg === "finite" && kw === "finite") {
      const d = g - w;
      num += d * d;
      den += w * w;
      maxAbs = Math.max(maxAbs, Math.abs(d));
    } else if (kg !== kw) {
      const key = `${kg}/${kw}`;
      const e = diffs.get(key);
      if (e) e.count++;
      else diffs.set(key, { count: 1, first: i, got: kg, want: kw });
    }
  }
  const relL2 = den === 0 ? (num === 0 ? 0 : Infinity) : Math.sqrt(num / den);
  const mismatch = [...diffs.values()]
    .map(
      (d) =>
        `${kindText(d.got)} at ${d.count} position${d.count === 1 ? "" : "s"} where ${wantName} has ${kindText(d.want)} (first at index ${d.first})`,
    )
    .join("; ");
  return { relL2, maxAbs, mismatch: mismatch || undefined };
}

/** Relative L2 error of `got` against `want`; Infinity when their NaN/±Inf positions differ. */
export function relativeL2(got: ArrayLike<number>, want: ArrayLike<number>): number {
  const c = compareValues(got, want);
  return c.mismatch ? Infinity : c.relL2;
}
