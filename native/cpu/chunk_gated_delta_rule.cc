// gdn-fuse CPU backend: ChunkGatedDeltaRule (prefill), chunked WY form as in FLA / transformers'
// torch_chunk_gated_delta_rule. One work item = one (batch, value head); the state lives in fp32 kv layout
// (K x V, V contiguous) in per-thread scratch for the whole sequence.
//
// Per chunk of L <= chunk_size tokens (gc = local cumsum of g, all decays exp(gc_i - gc_j) with i >= j):
//   A   = -(beta_i k_i.k_j exp(gc_i - gc_j))_{i>j}        strictly lower
//   Tm  = (I - A)^-1                                      unit lower triangular (forward substitution)
//   U   = Tm (beta v),  W = Tm (beta k exp(gc))
//   v'  = U - W S
//   o   = (q exp(gc)) S + ((q k^T) * exp(gc_i - gc_j))_{i>=j} v'
//   S   = exp(gc_L) S + (k exp(gc_L - gc))^T v'
#include <cstring>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

// exp for non-positive arguments; flushes values below e^-80 to 0 (avoids denormal arithmetic).
GDN_INLINE float decay_exp(float x) { return x < -80.f ? 0.f : std::exp(x); }

struct ChunkLayout {
  int K, V, C, Cp;  // Cp: leading dimension of M and P, C rounded up to 16 (whole vectors in the substitution)
  // QK: 2C x K, rows [0,C) = q (scaled; times exp(gc) in the state pass), rows [C,2C) = k, later W (so that
  // [q exp(gc); W] is one 2C-row operand of a single GEMM against S). OX: 2C x V, rows [0,C) = o, [C,2C) = W S.
  size_t S, QK, KT, Vb, Kb, M, P, U, OX, gc, bt, eg, ed, tmp, total;
  ChunkLayout(int K_, int V_, int C_) : K(K_), V(V_), C(C_), Cp((C_ + 15) & ~15) {
    size_t o = 0;
    auto take = [&o](size_t n) {
      size_t at = o;
      o += (n + 15) & ~size_t(15);  // keep every buffer 64-byte granular
      return at;
    };
    S = take((size_t)K * V);
    QK = take((size_t)2 * C * K);
    KT = take((size_t)K * C);
    Vb = take((size_t)C * V);
    Kb = take((size_t)C * K);
    M = take((size_t)C * Cp);
    P = take((size_t)C * Cp);
    U = take((size_t)C * V);
    OX = take((size_t)2 * C * V);
    gc = take(C + 16);
    bt = take(C);
    eg = take(C);
    ed = take(C);
    tmp = take(Cp);
    total = o;
  }
};

// ---- load / convert tile: q, k (l2norm + scale fused), v, beta, g -> local cumsum ----
GDN_INLINE void load_chunk(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h, int64_t hk,
                           int64_t t0, int L, const ChunkLayout& ly, float* ws) {
  const int K = ly.K, V = ly.V;
  float* Q = ws + ly.QK;
  float* Kc = Q + (size_t)ly.C * K;
  float* Vb = ws + ly.Vb;
  float* gc = ws + ly.gc;
  float* bt = ws + ly.bt;
  // Pass 1: the raw rows only (no dependent arithmetic between the loads), so that the out-of-order core keeps
  // many rows' misses in flight; rows a few tokens ahead are prefetched into L1 (the far prefetch of
  // prefetch_chunk brings them to L2, where they may not have stayed). Pass 2: l2norm and scale in L1.
  constexpr int kAhead = 4;
  const size_t esz = p.dtype == DType::kFloat32 ? 4 : 2;
  float gsum = 0.f;
  for (int i = 0; i < L; ++i) {
    const int64_t tok = b * p.T + t0 + i;
    if (i + kAhead < L) {
      const size_t qn = (size_t)((tok + kAhead) * p.Hk + hk) * K * esz, vn = (size_t)((tok + kAhead) * p.Hv + h) * V * esz;
      for (size_t o = 0; o < (size_t)K * esz; o += 64) {
        __builtin_prefetch(static_cast<const char*>(t.query) + qn + o, 0, 3);
        __builtin_prefetch(static_cast<const char*>(t.key) + qn + o, 0, 3);
      }
      for (size_t o = 0; o < (size_t)V * esz; o += 64) __builtin_prefetch(static_cast<const char*>(t.value) + vn + o, 0, 3);
    }
    const size_t qk_off = (size_t)(tok * p.Hk + hk) * K;
    const size_t vh = (size_t)(tok * p.Hv + h);
    load_row(p.dtype, t.query, qk_off, K, Q + (size_t)i * K);
    load_row(p.dtype, t.key, qk_off, K, Kc + (size_t)i * K);
    load_row(p.dtype, t.value, vh * V, V, Vb + (size_t)i * V);
    bt[i] = load_one(p.dtype, t.beta, vh);
    gsum += t.g[vh];
    gc[i] = gsum;
  }
  for (int i = 0; i < L; ++i) {
    l2norm_scale(Q + (size_t)i * K, K, p.use_qk_l2norm, p.scale, delta_rule::kL2normEps);
    l2norm_scale(Kc + (size_t)i * K, K, p.use_qk_l2norm, 1.f, delta_rule::kL2normEps);
  }
}

// ---- intra-chunk: decay masks, (I - A)^-1, U and W ----
template <class Tile>
GDN_INLINE void intra_chunk(int L, const ChunkLayout& ly, float* ws) {
  typedef typename Tile::vec vec;
  constexpr int VL = Tile::kLanes;
  const int K = ly.K, V = ly.V, C = ly.C;
  float* Q = ws + ly.QK;
  float* Kc = Q + (size_t)C * K;
  float* KT = ws + ly.KT;
  float* Vb = ws + ly.Vb;
  float* Kb = ws + ly.Kb;
  float* M = ws + ly.M;
  float* P = ws + ly.P;
  float* U = ws + ly.U;
  float* W = Kc;  // k is dead once KT, M and Kb are formed
  const float* gc = ws + ly.gc;
  const float* bt = ws + ly.bt;
  float* eg = ws + ly.eg;
  float* ed = ws + ly.ed;
  float* tmp = ws + ly.tmp;

  for (int i = 0; i < L; ++i) {
    eg[i] = decay_exp(gc[i]);
    ed[i] = decay_exp(gc[L - 1] - gc[i]);
  }
  for (int i = 0; i < L; ++i)
    for (int k = 0; k < K; ++k) KT[(size_t)k * C + i] = Kc[(size_t)i * K + k];

  // Only the lower triangles (j <= i) are used; column panels above the diagonal are not computed.
  const int Cp = ly.Cp;
  gemm<Tile>(L, L, K, 1.f, Kc, K, KT, C, 0.f, M, Cp, kLowerOut);  // k_i . k_j
  gemm<Tile>(L, L, K, 1.f, Q, K, KT, C, 0.f, P, Cp, kLowerOut);   // q_i . k_j

  const int Lz = (L + 15) & ~15;  // rows are kept zero up to a whole number of vectors (<= Cp)
  for (int i = 0; i < L; ++i) {
    float* m = M + (size_t)i * Cp;
    float* pr = P + (size_t)i * Cp;
    const float nb = -bt[i];
    const float gi = gc[i];
    int j = 0;
    for (; j + VL <= i + 1; j += VL) {  // vector blocks entirely at or below the diagonal
      const vec d = vexp<vec>(gi - *reinterpret_cast<const vec*>(gc + j));
      vec* mv = reinterpret_cast<vec*>(m + j);
      vec* pv = reinterpret_cast<vec*>(pr + j);
      *mv = nb * *mv * d;
      *pv = *pv * d;
    }
    for (; j <= i; ++j) {
      const float d = decay_exp(gi - gc[j]);
      m[j] = nb * m[j] * d;
      pr[j] *= d;
    }
    m[i] = 0.f;
    for (j = i + 1; j < Lz; ++j) m[j] = pr[j] = 0.f;
  }
  // Forward substitution, row by row: Tm[i,:i] = A[i,:i] + sum_{r<i} A[i,r] Tm[r,:r], in whole vectors (the
  // entries at and above the diagonal are zero up to Lz, so they add nothing).
  for (int i = 1; i < L; ++i) {
    float* m = M + (size_t)i * Cp;
    const int nv = (i + VL - 1) / VL;
    vec* acc = reinterpret_cast<vec*>(tmp);
    for (int v = 0; v < nv; ++v) acc[v] = reinterpret_cast<const vec*>(m)[v];
    for (int r = 1; r < i; ++r) {
      const float a = m[r];
      const vec* tr = reinterpret_cast<const vec*>(M + (size_t)r * Cp);
      const int nr = (r + VL - 1) / VL;
      for (int v = 0; v < nr; ++v) acc[v] += a * tr[v];
    }
    for (int v = 0; v < nv; ++v) reinterpret_cast<vec*>(m)[v] = acc[v];
  }
  for (int i = 0; i < L; ++i) M[(size_t)i * Cp + i] = 1.f;

  for (int i = 0; i < L; ++i) {
    const float bv = bt[i];
    const float bk = bt[i] * eg[i];
    float* vr = Vb + (size_t)i * V;
    for (int v = 0; v < V; ++v) vr[v] *= bv;
    const float* kr = Kc + (size_t)i * K;
    float* kb = Kb + (size_t)i * K;
    for (int k = 0; k < K; ++k) kb[k] = kr[k] * bk;
  }
  gemm<Tile>(L, V, L, 1.f, M, Cp, Vb, V, 0.f, U, V, kLowerA);
  gemm<Tile>(L, K, L, 1.f, M, Cp, Kb, K, 0.f, W, K, kLowerA);
}

// ---- state pass: v' = U - W S, o = (q exp(gc)) S + P v', S = exp(gc_L) S + (k exp(gc_L - gc))^T v' ----
template <class Tile>
GDN_INLINE void state_pass(int L, const ChunkLayout& ly, float* ws) {
  const int K = ly.K, V = ly.V, C = ly.C;
  float* S = ws + ly.S;
  float* Q = ws + ly.QK;
  float* W = Q + (size_t)C * K;
  float* KT = ws + ly.KT;
  float* P = ws + ly.P;
  float* U = ws + ly.U;
  float* O = ws + ly.OX;
  float* X = O + (size_t)C * V;
  const float* eg = ws + ly.eg;
  const float* ed = ws + ly.ed;

  for (int i = 0; i < L; ++i) {
    float* q = Q + (size_t)i * K;
    const float e = eg[i];
    for (int k = 0; k < K; ++k) q[k] *= e;
  }
  if (L == C) {
    gemm<Tile>(2 * C, V, K, 1.f, Q, K, S, V, 0.f, O, V);  // [q e^gc; W] S -> [o; W S]
  } else {
    gemm<Tile>(L, V, K, 1.f, Q, K, S, V, 0.f, O, V);
    gemm<Tile>(L, V, K, 1.f, W, K, S, V, 0.f, X, V);
  }
  for (size_t i = 0, n = (size_t)L * V; i < n; ++i) U[i] -= X[i];  // v'
  gemm<Tile>(L, V, L, 1.f, P, ly.Cp, U, V, 1.f, O, V, kLowerA);

  for (int k = 0; k < K; ++k) {
    float* kt = KT + (size_t)k * C;
    for (int i = 0; i < L; ++i) kt[i] *= ed[i];
  }
  gemm<Tile>(K, V, L, 1.f, KT, C, U, V, eg[L - 1], S, V);  // S = e^gc_L S + K'^T v'
}

// Software prefetch (into L2) of one chunk's q, k, v rows: the rows of one head are strided by H*K elements, a
// pattern the hardware prefetchers do not follow across rows, so without this every chunk starts with ~200 KB of
// L3/DRAM misses. Issued for the next chunk while the current one computes.
GDN_INLINE void prefetch_chunk(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h, int64_t hk,
                               int64_t t0, int L) {
  const size_t esz = p.dtype == DType::kFloat32 ? 4 : 2;
  const size_t qk_bytes = (size_t)p.K * esz, v_bytes = (size_t)p.V * esz;
  const char* qb = static_cast<const char*>(t.query);
  const char* kb = static_cast<const char*>(t.key);
  const char* vb = static_cast<const char*>(t.value);
  for (int i = 0; i < L; ++i) {
    const int64_t tok = b * p.T + t0 + i;
    const size_t qk_off = (size_t)(tok * p.Hk + hk) * qk_bytes;
    const size_t v_off = (size_t)(tok * p.Hv + h) * v_bytes;
    for (size_t o = 0; o < qk_bytes; o += 64) {
      __builtin_prefetch(qb + qk_off + o, 0, 2);
      __builtin_prefetch(kb + qk_off + o, 0, 2);
    }
    for (size_t o = 0; o < v_bytes; o += 64) __builtin_prefetch(vb + v_off + o, 0, 2);
  }
}

template <class Tile>
GDN_INLINE void chunk_head_impl(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h,
                                const ChunkLayout& ly, float* ws) {
  const int K = ly.K, V = ly.V, C = ly.C;
  const int64_t hk = h / (p.Hv / p.Hk);
  float* S = ws + ly.S;
  const size_t state_off = (size_t)(b * p.Hv + h) * K * V;
  if (t.initial_state == nullptr) {
    std::memset(S, 0, sizeof(float) * (size_t)K * V);
  } else if (p.layout == StateLayout::kKV) {
    std::memcpy(S, t.initial_state + state_off, sizeof(float) * (size_t)K * V);
  } else {
    const float* s0 = t.initial_state + state_off;  // [V][K]
    for (int v = 0; v < V; ++v)
      for (int k = 0; k < K; ++k) S[(size_t)k * V + v] = s0[(size_t)v * K + k];
  }
  for (int64_t t0 = 0; t0 < p.T; t0 += C) {
    const int L = (int)std::min<int64_t>(C, p.T - t0);
    load_chunk(p, t, b, h, hk, t0, L, ly, ws);
    if (t0 + C < p.T) prefetch_chunk(p, t, b, h, hk, t0 + C, (int)std::min<int64_t>(C, p.T - t0 - C));
    intra_chunk<Tile>(L, ly, ws);
    state_pass<Tile>(L, ly, ws);
    const float* O = ws + ly.OX;
    for (int i = 0; i < L; ++i) {
      const int64_t tok = b * p.T + t0 + i;
      store_row(p.dtype, t.output, (size_t)(tok * p.Hv + h) * V, V, O + (size_t)i * V);
    }
  }
  if (t.final_state != nullptr) {
    float* s1 = t.final_state + state_off;
    if (p.layout == StateLayout::kKV) {
      std::memcpy(s1, S, sizeof(float) * (size_t)K * V);
    } else {
      for (int v = 0; v < V; ++v)
        for (int k = 0; k < K; ++k) s1[(size_t)v * K + k] = S[(size_t)k * V + v];
    }
  }
}

GDN_DISPATCH(chunk_head,
             (const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h, const ChunkLayout& ly, float* ws),
             (p, t, b, h, ly, ws))

}  // namespace

void chunk_gated_delta_rule(const DeltaRuleParams& p, const DeltaRuleTensors& t, const Parallel& par) {
  // chunk_size is a performance hint (docs/ops.md): the kernel works in chunks of at most 32 tokens. Measured
  // (AVX2, K=V=128, T=512, 2 threads): 64-token chunks 35 ms, 32: 25-28 ms, 16: 28-29 ms. The state GEMMs cost
  // the same per token for any chunk; the intra-chunk part (k k^T, q k^T, the triangular solve, U, W, P v')
  // grows with the chunk, and 32 rows still keep the 6x16 register tiles busy.
  constexpr int64_t kMaxChunk = 32;
  const int C = (int)std::max<int64_t>(1, std::min<int64_t>(std::min<int64_t>(p.chunk_size, kMaxChunk), p.T));
  const ChunkLayout ly((int)p.K, (int)p.V, C);
  auto work = [&](size_t item) {
    const int64_t b = (int64_t)item / p.Hv;
    const int64_t h = (int64_t)item % p.Hv;
    chunk_head(p, t, b, h, ly, thread_scratch(ly.total));
  };
  par.for_each((size_t)(p.B * p.Hv), work);
}

}  // namespace cpu
}  // namespace gdn
