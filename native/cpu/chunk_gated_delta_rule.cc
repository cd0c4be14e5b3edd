// gdn-fuse CPU backend: ChunkGatedDeltaRule (prefill), chunked WY form as in FLA / transformers'
// torch_chunk_gated_delta_rule. One work item = a group of G value heads of one batch entry, processed chunk by
// chunk and, within a chunk, head by head; each head's state lives in fp32 kv layout (K x V, V contiguous) in
// per-thread scratch for the whole sequence.
//
// Per chunk of L <= 32 tokens (gc = local cumsum of g, all decays exp(gc_i - gc_j) with i >= j; q and k as the
// contract defines them, i.e. l2-normalised and q scaled):
//   A   = -(beta_i k_i.k_j exp(gc_i - gc_j))_{i>j}        strictly lower
//   [U | W] = (I - A)^-1 [beta v | beta k exp(gc)]        forward substitution (no explicit inverse)
//   v'  = U - W S
//   o   = (q exp(gc)) S + ((q k^T) * exp(gc_i - gc_j))_{i>=j} v'
//   S   = exp(gc_L) S + (k exp(gc_L - gc))^T v'
// The l2 norms are never applied to the rows: the raw rows are copied, their inverse norms rq_i (times the scale)
// and rk_i are folded into the per-row and per-column factors the steps above apply anyway.
#include <cstdlib>
#include <cstring>
#include <thread>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

struct ChunkLayout {
  int K, V, C, Cp;  // Cp: leading dimension of P and M, C rounded up to 16 (whole vectors in the masks)
  int ldx;          // V + K: row length of XQ
  // XQ: 2C rows of [V | K] floats. Rows [0,C): raw q in the K part (times rq exp(gc) in the state pass). Rows
  // [C,2C): raw k in the K part, then [beta v | beta exp(gc) rk k], then, solved in place, [U | W]. So [q; k] and
  // [q exp(gc); W] are each one 2C-row operand (lda = ldx) and [U | W] one right-hand side.
  // PM: 2C x Cp, rows [0,C) = q.k^T, then the masked intra-chunk attention P; rows [C,2C) = k.k^T, then A.
  // KP: C x K, k_i rk_i exp(gc_L - gc_i), the transposed left operand of the state update. KT: k^T (K x C).
  // OX: 2C x V, rows [0,C) = o, [C,2C) = W S.
  size_t S, XQ, KT, KP, PM, OX, gc, bt, rq, rk, eg, ed, total;
  ChunkLayout(int K_, int V_, int C_, int G) : K(K_), V(V_), C(C_), Cp((C_ + 15) & ~15), ldx(V_ + K_) {
    size_t o = 0;
    auto take = [&o](size_t n) {
      size_t at = o;
      o += (n + 15) & ~size_t(15);  // keep every buffer 64-byte granular
      return at;
    };
    S = take((size_t)G * K * V);  // the states of a group's G heads
    XQ = take((size_t)2 * C * ldx);
    KT = take((size_t)K * C);
    KP = take((size_t)C * K);
    PM = take((size_t)2 * C * Cp);
    OX = take((size_t)2 * C * V);
    gc = take(Cp + 16);  // vector loads of gc[j..j+lanes) with j < Cp
    bt = take(C);
    rq = take(Cp + 16);
    rk = take(Cp + 16);
    eg = take(Cp + 16);
    ed = take(Cp + 16);
    total = o;
  }
};

// ---- load / convert: raw q, k, v rows, beta, cumulative g; inverse norms ----
GDN_INLINE void load_chunk(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h, int64_t hk,
                           int64_t t0, int L, const ChunkLayout& ly, float* ws) {
  const int K = ly.K, V = ly.V, ldx = ly.ldx;
  float* Q = ws + ly.XQ + V;                    // row i at Q + i * ldx
  float* Kc = Q + (size_t)ly.C * ldx;           // raw k rows
  float* Vb = ws + ly.XQ + (size_t)ly.C * ldx;  // raw v rows
  float* gc = ws + ly.gc;
  float* bt = ws + ly.bt;
  float* rq = ws + ly.rq;
  float* rk = ws + ly.rk;
  // The raw rows only (no dependent arithmetic between the loads), so that the out-of-order core keeps many rows'
  // misses in flight; rows a few tokens ahead are prefetched into L1 (the prefetches issued during the previous
  // step bring them to L2).
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
    load_row(p.dtype, t.query, qk_off, K, Q + (size_t)i * ldx);
    load_row(p.dtype, t.key, qk_off, K, Kc + (size_t)i * ldx);
    load_row(p.dtype, t.value, vh * V, V, Vb + (size_t)i * ldx);
    bt[i] = load_one(p.dtype, t.beta, vh);
    gsum += t.g[vh];
    gc[i] = gsum;
  }
  for (int i = 0; i < L; ++i) {
    if (p.use_qk_l2norm) {
      const float* q = Q + (size_t)i * ldx;
      const float* k = Kc + (size_t)i * ldx;
      rq[i] = p.scale / std::sqrt(dot(q, q, K) + delta_rule::kL2normEps);
      rk[i] = 1.f / std::sqrt(dot(k, k, K) + delta_rule::kL2normEps);
    } else {
      rq[i] = p.scale;
      rk[i] = 1.f;
    }
  }
  for (int i = L; i < ly.Cp + 16; ++i) gc[i] = gsum, rk[i] = 0.f;  // padding read by whole-vector loops
}

// dst[0:n) = src[0:n) * f (dst may be src). Templated on the tile, not on its vector type: a vector typedef
// passed as a template argument loses its aligned(4) attribute.
template <class Tile>
GDN_INLINE void scale_row(const float* src, int n, float f, float* dst) {
  typedef typename Tile::vec vec;
  constexpr int VL = Tile::kLanes;
  int i = 0;
  for (; i + VL <= n; i += VL) *reinterpret_cast<vec*>(dst + i) = f * *reinterpret_cast<const vec*>(src + i);
  for (; i < n; ++i) dst[i] = f * src[i];
}

// 32 x 128 -> 128 x 32 and the like: dst[k * ldd + i] = src[i * lds + k] for i < n, k < m.
GDN_INLINE void transpose(const float* src, int lds, int n, int m, float* dst, int ldd) {
  constexpr int B = 8;  // 8 x 8 blocks: the 8 source rows stay in L1 while their columns are written
  int i0 = 0;
  for (; i0 + B <= n; i0 += B)
    for (int k = 0; k < m; ++k) {
      float* d = dst + (size_t)k * ldd + i0;
#pragma GCC unroll 8
      for (int i = 0; i < B; ++i) d[i] = src[(size_t)(i0 + i) * lds + k];
    }
  for (; i0 < n; ++i0)
    for (int k = 0; k < m; ++k) dst[(size_t)k * ldd + i0] = src[(size_t)i0 * lds + k];
}

// X_i += sum_{r<i} A[i][r] X_r for i = 1..L-1 (forward substitution with the unit lower triangular I - A, A
// strictly lower), on the columns [j0, j0 + NB * lanes) of X: the row's NB vectors stay in registers while the
// earlier rows stream from L1.
template <class Tile, int NB>
GDN_INLINE void substitute_block(int L, const float* A, int lda, float* X, int ldx, int j0) {
  typedef typename Tile::vec vec;
  constexpr int VL = Tile::kLanes;
  for (int i = 1; i < L; ++i) {
    float* xi = X + (size_t)i * ldx + j0;
    vec acc[NB];
#pragma GCC unroll 16
    for (int v = 0; v < NB; ++v) acc[v] = *reinterpret_cast<const vec*>(xi + v * VL);
    const float* ai = A + (size_t)i * lda;
    for (int r = 0; r < i; ++r) {
      const float a = ai[r];
      const float* xr = X + (size_t)r * ldx + j0;
#pragma GCC unroll 16
      for (int v = 0; v < NB; ++v) acc[v] += a * *reinterpret_cast<const vec*>(xr + v * VL);
    }
#pragma GCC unroll 16
    for (int v = 0; v < NB; ++v) *reinterpret_cast<vec*>(xi + v * VL) = acc[v];
  }
}

// Solves (I - A) Y = X in place for the n columns of X (A: L x L strictly lower, row stride lda).
template <class Tile>
GDN_INLINE void forward_substitute(int L, const float* A, int lda, float* X, int ldx, int n) {
  constexpr int VL = Tile::kLanes;
  constexpr int NB = VL == 16 ? 16 : 8;  // accumulators in registers: 16 of 32 zmm, 8 of 16 ymm / xmm
  int j0 = 0;
  for (; j0 + NB * VL <= n; j0 += NB * VL) substitute_block<Tile, NB>(L, A, lda, X, ldx, j0);
  for (; j0 + 4 * VL <= n; j0 += 4 * VL) substitute_block<Tile, 4>(L, A, lda, X, ldx, j0);
  for (; j0 + VL <= n; j0 += VL) substitute_block<Tile, 1>(L, A, lda, X, ldx, j0);
  for (; j0 < n; ++j0)
    for (int i = 1; i < L; ++i) {
      float acc = X[(size_t)i * ldx + j0];
      for (int r = 0; r < i; ++r) acc += A[(size_t)i * lda + r] * X[(size_t)r * ldx + j0];
      X[(size_t)i * ldx + j0] = acc;
    }
}

// ---- intra-chunk: Gram matrices, decay masks, [U | W] = (I - A)^-1 [beta v | beta exp(gc) k] ----
template <class Tile>
GDN_INLINE void intra_chunk(int L, const ChunkLayout& ly, float* ws, RowPrefetcher* pf) {
  typedef typename Tile::vec vec;
  constexpr int VL = Tile::kLanes;
  const int K = ly.K, V = ly.V, C = ly.C, Cp = ly.Cp, ldx = ly.ldx;
  float* Q = ws + ly.XQ + V;
  float* Kc = Q + (size_t)C * ldx;
  float* Vb = ws + ly.XQ + (size_t)C * ldx;
  float* KT = ws + ly.KT;
  float* KP = ws + ly.KP;
  float* P = ws + ly.PM;
  float* M = P + (size_t)C * Cp;
  const float* gc = ws + ly.gc;
  const float* bt = ws + ly.bt;
  const float* rq = ws + ly.rq;
  const float* rk = ws + ly.rk;
  float* eg = ws + ly.eg;
  float* ed = ws + ly.ed;

  for (int i = 0; i < L; i += VL) {
    const vec g = *reinterpret_cast<const vec*>(gc + i);
    *reinterpret_cast<vec*>(eg + i) = vexp<vec>(g);
    *reinterpret_cast<vec*>(ed + i) = vexp<vec>(gc[L - 1] - g);
  }
  transpose(Kc, ldx, L, K, KT, C);

  // Raw Gram matrices [q; k] k^T -> [P; M]; only the lower triangles (j <= i) are used.
  if (L == C) {
    gemm<Tile>(2 * C, L, K, 1.f, Q, ldx, KT, C, 0.f, P, Cp, 0, pf);
  } else {
    gemm<Tile>(L, L, K, 1.f, Q, ldx, KT, C, 0.f, P, Cp, kLowerOut, pf);
    gemm<Tile>(L, L, K, 1.f, Kc, ldx, KT, C, 0.f, M, Cp, kLowerOut, pf);
  }

  // Masks in whole vectors up to Lz: entries above the diagonal (and M's diagonal) are set to zero.
  const int Lz = (L + 15) & ~15;  // <= Cp
  vec lane;
  for (int l = 0; l < VL; ++l) lane[l] = (float)l;
  for (int i = 0; i < L; ++i) {
    float* m = M + (size_t)i * Cp;
    float* pr = P + (size_t)i * Cp;
    const float nb = -bt[i] * rk[i];
    const float qi = rq[i];
    const float gi = gc[i];
    for (int j = 0; j < Lz; j += VL) {
      const vec col = lane + (float)j;
      // Lanes above the diagonal are selected away (the GEMMs may have left stale values there).
      const vec d = vexp<vec>(gi - *reinterpret_cast<const vec*>(gc + j)) * *reinterpret_cast<const vec*>(rk + j);
      vec* mv = reinterpret_cast<vec*>(m + j);
      vec* pv = reinterpret_cast<vec*>(pr + j);
      *mv = col < (float)i ? nb * *mv * d : vec{};
      *pv = col <= (float)i ? qi * *pv * d : vec{};
    }
  }

  // Right-hand sides [beta v | beta exp(gc) rk k] in place of the raw rows (after KP takes k exp(gc_L - gc) rk),
  // then the solve: [U | W].
  for (int i = 0; i < L; ++i) {
    float* x = Vb + (size_t)i * ldx;
    const float* kr = Kc + (size_t)i * ldx;
    scale_row<Tile>(kr, K, ed[i] * rk[i], KP + (size_t)i * K);
    scale_row<Tile>(x, V, bt[i], x);
    scale_row<Tile>(kr, K, bt[i] * eg[i] * rk[i], x + V);
  }
  forward_substitute<Tile>(L, M, Cp, Vb, ldx, V + K);
}

// ---- state pass: v' = U - W S, o = (q exp(gc)) S + P v', S = exp(gc_L) S + (k exp(gc_L - gc))^T v' ----
template <class Tile>
GDN_INLINE void state_pass(int L, const ChunkLayout& ly, float* ws, float* S, RowPrefetcher* pf) {
  const int K = ly.K, V = ly.V, C = ly.C, ldx = ly.ldx;
  float* Q = ws + ly.XQ + V;
  float* W = Q + (size_t)C * ldx;
  float* U = ws + ly.XQ + (size_t)C * ldx;
  const float* KP = ws + ly.KP;
  const float* P = ws + ly.PM;
  float* O = ws + ly.OX;
  float* X = O + (size_t)C * V;
  const float* eg = ws + ly.eg;
  const float* rq = ws + ly.rq;

  for (int i = 0; i < L; ++i) scale_row<Tile>(Q + (size_t)i * ldx, K, eg[i] * rq[i], Q + (size_t)i * ldx);
  if (L == C) {
    gemm<Tile>(2 * C, V, K, 1.f, Q, ldx, S, V, 0.f, O, V, 0, pf);  // [q e^gc; W] S -> [o; W S]
  } else {
    gemm<Tile>(L, V, K, 1.f, Q, ldx, S, V, 0.f, O, V, 0, pf);
    gemm<Tile>(L, V, K, 1.f, W, ldx, S, V, 0.f, X, V, 0, pf);
  }
  for (int i = 0; i < L; ++i) {  // v' = U - W S
    float* u = U + (size_t)i * ldx;
    const float* x = X + (size_t)i * V;
    for (int j = 0; j < V; ++j) u[j] -= x[j];
  }
  gemm<Tile>(L, V, L, 1.f, P, ly.Cp, U, ldx, 1.f, O, V, kLowerA, pf);
  gemm<Tile>(K, V, L, 1.f, KP, K, U, ldx, eg[L - 1], S, V, kTransA, pf);  // S = e^gc_L S + KP^T v'
}

// What one (head, chunk) step prefetches while it computes (RowPrefetcher, between GEMM tiles): the q, k and v
// rows of the step that follows it (head hn, chunk at tn of Ln tokens; Ln = 0: none), then the write-allocation of
// its own output rows.
GDN_INLINE void plan_prefetch(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h, int64_t t0,
                              int L, int64_t hn, int64_t tn, int Ln, RowPrefetcher& pf) {
  const size_t esz = p.dtype == DType::kFloat32 ? 4 : 2;
  const size_t qk_row = (size_t)p.K * esz, v_row = (size_t)p.V * esz;
  pf.clear();
  if (Ln > 0) {
    const int64_t tok = b * p.T + tn, hkn = hn / (p.Hv / p.Hk);
    const size_t qk_off = (size_t)(tok * p.Hk + hkn) * qk_row, v_off = (size_t)(tok * p.Hv + hn) * v_row;
    pf.add(static_cast<const char*>(t.query) + qk_off, (size_t)p.Hk * qk_row, Ln, qk_row, false);
    pf.add(static_cast<const char*>(t.key) + qk_off, (size_t)p.Hk * qk_row, Ln, qk_row, false);
    pf.add(static_cast<const char*>(t.value) + v_off, (size_t)p.Hv * v_row, Ln, v_row, false);
  }
  pf.add(static_cast<const char*>(t.output) + (size_t)((b * p.T + t0) * p.Hv + h) * v_row, (size_t)p.Hv * v_row, L,
         v_row, true);
}

GDN_INLINE void load_state(const DeltaRuleParams& p, const float* s0, float* S) {
  const int K = (int)p.K, V = (int)p.V;
  if (s0 == nullptr) {
    std::memset(S, 0, sizeof(float) * (size_t)K * V);
  } else if (p.layout == StateLayout::kKV) {
    std::memcpy(S, s0, sizeof(float) * (size_t)K * V);
  } else {  // [V][K]
    transpose(s0, K, V, K, S, V);
  }
}

GDN_INLINE void store_state(const DeltaRuleParams& p, const float* S, float* s1) {
  const int K = (int)p.K, V = (int)p.V;
  if (p.layout == StateLayout::kKV) std::memcpy(s1, S, sizeof(float) * (size_t)K * V);
  else transpose(S, V, K, V, s1, K);
}

// One work item: heads [h0, h0 + G) of batch b, chunk by chunk and, within a chunk, head by head. The heads' rows
// of one token are adjacent in memory, so the pages a chunk touches serve all G heads (with one head per work item
// every chunk's strided rows are ~100 pages seen for the first time: a TLB miss each, and a two-level page walk
// under a hypervisor). The G states stay in scratch (G x 64 KB at K=V=128).
template <class Tile>
GDN_INLINE void chunk_group_impl(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h0, int G,
                                 const ChunkLayout& ly, float* ws) {
  const int K = ly.K, V = ly.V, C = ly.C;
  const size_t kv = (size_t)K * V;
  for (int g = 0; g < G; ++g)
    load_state(p, t.initial_state != nullptr ? t.initial_state + (size_t)(b * p.Hv + h0 + g) * kv : nullptr,
               ws + ly.S + g * kv);
  for (int64_t t0 = 0; t0 < p.T; t0 += C) {
    const int L = (int)std::min<int64_t>(C, p.T - t0);
    const int Lnext = (int)std::max<int64_t>(0, std::min<int64_t>(C, p.T - t0 - C));
    for (int g = 0; g < G; ++g) {
      const int64_t h = h0 + g;
      load_chunk(p, t, b, h, h / (p.Hv / p.Hk), t0, L, ly, ws);
      RowPrefetcher pf;
      if (g + 1 < G) plan_prefetch(p, t, b, h, t0, L, h + 1, t0, L, pf);
      else plan_prefetch(p, t, b, h, t0, L, h0, t0 + C, Lnext, pf);
      intra_chunk<Tile>(L, ly, ws, &pf);
      state_pass<Tile>(L, ly, ws, ws + ly.S + g * kv, &pf);
      const float* O = ws + ly.OX;
      for (int i = 0; i < L; ++i) {
        const int64_t tok = b * p.T + t0 + i;
        store_row(p.dtype, t.output, (size_t)(tok * p.Hv + h) * V, V, O + (size_t)i * V);
      }
    }
  }
  if (t.final_state != nullptr)
    for (int g = 0; g < G; ++g) store_state(p, ws + ly.S + g * kv, t.final_state + (size_t)(b * p.Hv + h0 + g) * kv);
}

GDN_DISPATCH(chunk_group,
             (const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h0, int G, const ChunkLayout& ly,
              float* ws),
             (p, t, b, h0, G, ly, ws))

// Heads per work item: as many as keep >= 2 work items per hardware thread (load balance) and the group's states
// within a quarter of the L2 cache (they are reused every chunk), at most 8. GDN_CPU_HEADS_PER_ITEM=n forces n
// (tests: groups that do not divide the head count).
int heads_per_item(const DeltaRuleParams& p) {
  static const int forced = std::getenv("GDN_CPU_HEADS_PER_ITEM") ? std::atoi(std::getenv("GDN_CPU_HEADS_PER_ITEM")) : 0;
  if (forced > 0) return (int)std::min<int64_t>(forced, p.Hv);
  const size_t state_bytes = sizeof(float) * (size_t)p.K * p.V;
  const size_t l2 = l2_cache_bytes();
  const int64_t by_cache = std::max<int64_t>(1, (int64_t)(l2 / 4 / state_bytes));
  const int64_t threads = std::max<unsigned>(1, std::thread::hardware_concurrency());
  const int64_t by_balance = std::max<int64_t>(1, p.B * p.Hv / (2 * threads));
  return (int)std::min<int64_t>({8, by_cache, by_balance, p.Hv});
}

}  // namespace

void chunk_gated_delta_rule(const DeltaRuleParams& p, const DeltaRuleTensors& t, const Parallel& par) {
  // chunk_size is a performance hint (docs/ops.md): the kernel works in chunks of at most 32 tokens. Measured
  // (AVX2, K=V=128, T=512, 2 threads): 64-token chunks 35 ms, 32: 25-28 ms, 16: 28-29 ms. The state GEMMs cost
  // the same per token for any chunk; the intra-chunk part (k k^T, q k^T, the triangular solve, U, W, P v')
  // grows with the chunk, and 32 rows still keep the register tiles busy.
  constexpr int64_t kMaxChunk = 32;
  const int C = (int)std::max<int64_t>(1, std::min<int64_t>(std::min<int64_t>(p.chunk_size, kMaxChunk), p.T));
  const int G = heads_per_item(p);
  const int64_t groups = (p.Hv + G - 1) / G;
  const ChunkLayout ly((int)p.K, (int)p.V, C, G);
  auto work = [&](size_t item) {
    const int64_t b = (int64_t)item / groups;
    const int64_t h0 = (int64_t)item % groups * G;
    chunk_group(p, t, b, h0, (int)std::min<int64_t>(G, p.Hv - h0), ly, thread_scratch(ly.total));
  };
  par.for_each((size_t)(p.B * groups), work);
}

}  // namespace cpu
}  // namespace gdn
