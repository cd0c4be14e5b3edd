/**
 * Float64 reference of the gated delta rule (docs/ops.md): the ground truth the probe checks a
 * matched region against (passes/gated-delta/fuse-core.ts) and the kernel tests check the ops
 * against. Token by token, so it is also the definition the chunked (WY) form must reproduce.
 */
export interface GatedDeltaDims {
  B: number;
  T: number;
  Hk: number; // key/query heads
  Hv: number; // value heads (a multiple of Hk)
  K: number;
  V: number;
}

export interface GatedDeltaInputs {
  query: ArrayLike<number>; // [B,T,Hk,K]
  key: ArrayLike<number>; // [B,T,Hk,K]
  value: ArrayLike<number>; // [B,T,Hv,V]
  g: ArrayLike<number>; // [B,T,Hv]
  beta: ArrayLike<number>; // [B,T,Hv]
  initialState?: ArrayLike<number>; // [B,Hv,K,V] ("kv") or [B,Hv,V,K] ("vk")
}

export interface GatedDeltaAttributes {
  scale?: number; // default 1/sqrt(K)
  useQkL2norm?: boolean;
  stateLayout?: "kv" | "vk";
  /** Compute only these (batch, value head) pairs; the others' outputs are NaN. Default: all. */
  only?: (b: number, h: number) => boolean;
}

export const L2NORM_EPS = 1e-6;

export function gatedDeltaReference(
  x: GatedDeltaInputs,
  d: GatedDeltaDims,
  a: GatedDeltaAttributes = {},
): { output: Float64Array; finalState: Float64Array } {
  const { B, T, Hk, Hv, K, V } = d;
  if (Hv % Hk !== 0) throw new Error(`value heads ${Hv} are not a multiple of key heads ${Hk}`);
  const scale = a.scale && a.scale !== 0 ? a.scale : 1 / Math.sqrt(K);
  const vk = a.stateLayout === "vk";
  const output = new Float64Array(B * T * Hv * V);
  const finalState = new Float64Array(B * Hv * K * V);
  if (a.only) {
    output.fill(NaN);
    finalState.fill(NaN);
  }
  const S = new Float64Array(K * V); // kv layout while computing
  // One concrete array type for the hot loops (ArrayLike access is polymorphic and slow in V8).
  const f64 = (a: ArrayLike<number>) => (a instanceof Float64Array ? a : Float64Array.from(a));
  x = {
    query: f64(x.query),
    key: f64(x.key),
    value: f64(x.value),
    g: f64(x.g),
    beta: f64(x.beta),
    initialState: x.initialState && f64(x.initialState),
  };
  const q = new Float64Array(K),
    k = new Float64Array(K),
    u = new Float64Array(V),
    kv = new Float64Array(V),
    o = new Float64Array(V);
  const load = (src: ArrayLike<number>, off: number, dst: Float64Array, norm: boolean) => {
    let ss = 0;
    for (let i = 0; i < K; i++) {
      dst[i] = src[off + i]!;
      ss += dst[i]! * dst[i]!;
    }
    if (norm) {
      const inv = 1 / Math.sqrt(ss + L2NORM_EPS);
      for (let i = 0; i < K; i++) dst[i]! *= inv;
    }
  };
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hv; h++) {
      if (a.only && !a.only(b, h)) continue;
      const hk = Math.floor(h / (Hv / Hk));
      const sOff = (b * Hv + h) * K * V;
      for (let i = 0; i < K; i++)
        for (let j = 0; j < V; j++)
          S[i * V + j] = x.initialState ? x.initialState[sOff + (vk ? j * K + i : i * V + j)]! : 0;
      for (let t = 0; t < T; t++) {
        load(x.query, ((b * T + t) * Hk + hk) * K, q, !!a.useQkL2norm);
        load(x.key, ((b * T + t) * Hk + hk) * K, k, !!a.useQkL2norm);
        const gi = (b * T + t) * Hv + h;
        const decay = Math.exp(x.g[gi]!);
        const beta = x.beta[gi]!;
        const vOff = ((b * T + t) * Hv + h) * V;
        // Row by row (contiguous in V): decay S and accumulate kv = S'^T k ...
        kv.fill(0);
        for (let i = 0; i < K; i++) {
          const ki = k[i]!;
          for (let j = 0, r = i * V; j < V; j++, r++) {
            const sv = S[r]! * decay;
            S[r] = sv;
            kv[j]! += sv * ki;
          }
        }
        for (let j = 0; j < V; j++) u[j] = beta * (x.value[vOff + j]! - kv[j]!);
        // ... then S += k u^T and o = S^T q in one more pass.
        o.fill(0);
        for (let i = 0; i < K; i++) {
          const ki = k[i]!,
            qi = q[i]!;
          for (let j = 0, r = i * V; j < V; j++, r++) {
            const sv = S[r]! + ki * u[j]!;
            S[r] = sv;
            o[j]! += sv * qi;
          }
        }
        for (let j = 0; j < V; j++) output[vOff + j] = o[j]! * scale;
      }
      for (let i = 0; i < K; i++)
        for (let j = 0; j < V; j++) finalState[sOff + (vk ? j * K + i : i * V + j)] = S[i * V + j]!;
    }
  }
  return { output, finalState };
}
