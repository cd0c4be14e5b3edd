/**
 * Float64 reference of the gated delta rule (docs/ops.md): the ground truth for probes, the
 * verifier's fallback and the kernel tests. Token by token, so it is also the definition the
 * chunked (WY) form must reproduce.
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
  const S = new Float64Array(K * V); // kv layout while computing
  const q = new Float64Array(K), k = new Float64Array(K), u = new Float64Array(V);
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
      const hk = Math.floor(h / (Hv / Hk));
      const sOff = (b * Hv + h) * K * V;
      for (let i = 0; i < K; i++)
        for (let j = 0; j < V; j++) S[i * V + j] = x.initialState ? x.initialState[sOff + (vk ? j * K + i : i * V + j)]! : 0;
      for (let t = 0; t < T; t++) {
        load(x.query, ((b * T + t) * Hk + hk) * K, q, !!a.useQkL2norm);
        load(x.key, ((b * T + t) * Hk + hk) * K, k, !!a.useQkL2norm);
        const gi = (b * T + t) * Hv + h;
        const decay = Math.exp(x.g[gi]!);
        const beta = x.beta[gi]!;
        const vOff = ((b * T + t) * Hv + h) * V;
        for (let i = 0; i < K * V; i++) S[i]! *= decay;
        for (let j = 0; j < V; j++) {
          let kv = 0;
          for (let i = 0; i < K; i++) kv += S[i * V + j]! * k[i]!;
          u[j] = beta * (x.value[vOff + j]! - kv);
        }
        for (let i = 0; i < K; i++) for (let j = 0; j < V; j++) S[i * V + j]! += k[i]! * u[j]!;
        for (let j = 0; j < V; j++) {
          let o = 0;
          for (let i = 0; i < K; i++) o += S[i * V + j]! * q[i]!;
          output[vOff + j] = o * scale;
        }
      }
      for (let i = 0; i < K; i++) for (let j = 0; j < V; j++) finalState[sOff + (vk ? j * K + i : i * V + j)] = S[i * V + j]!;
    }
  }
  return { output, finalState };
}
