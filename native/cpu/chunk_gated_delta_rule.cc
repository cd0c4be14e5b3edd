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
// The l2 norms are never applied to the rows: the raw rows are kept, and their inverse norms rq_i (times the
// scale) and rk_i are folded into the per-row and per-column factors the steps above apply anyway. Everything
// that depends on q and k alone (the rows, their norms, k^T and the raw Gram matrices [q; k] k^T) is computed once
// per key head and chunk and shared by the value heads that read that key head (GQA: Hv / Hk of them).
#include <cstdlib>
#include <cstring>
#include <thread>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

struct ChunkLayout {
  int K, V, C, Cp;  // Cp: leading dimension of the C x C matrices, C rounded up to 16 (whole vectors in the masks)
  int ldx;          // V + K: row length of XQ
  // Key-head data. QK: 2C x K, raw q rows then raw k rows (one 2C-row operand). KT: raw k^T (K x C).
  // G0: 2C x Cp, [q; k] k^T (raw Gram matrices). rq, rk: inverse norms (rq includes the scale).
  // Value-head data. XQ: 2C rows of [V | K] floats. Rows [0,C): q rq exp(gc) in the K part. Rows [C,2C):
  // [beta v | beta exp(gc) rk k], then, solved in place, [U | W]. So [q exp(gc); W] is one 2C-row operand
  // (lda = ldx) and [U | W] one right-hand side. PM: 2C x Cp, the masked intra-chunk attention P, then A.
  // KP: C x K, k_i rk_i exp(gc_L - gc_i), the transposed left operand of the state update.
  // OX: 2C x V, rows [0,C) = o, [C,2C) = W S.
  size_t S, QK, KT, G0, rq, rk, XQ, PM, KP, OX, gc, bt, eg, ed, total;
  ChunkLayout(int K_, int V_, int C_, int G) : K(K_), V(V_), C(C_), Cp((C_ + 15) & ~15), ldx(V_ + K_) {
    size_t o = 0;
    auto take = [&o](size_t n) {
      size_t at = o;
      o += (n + 15) & ~size_t(15);  // keep every buffer 64-byte granular
      return at;
    };
    S = take((size_t)G * K * V);  // the states of a group's G heads
    QK = take((size_t)2 * C * K);
    KT = take((size_t)K * C);
    G0 = take((size_t)2 * C * Cp);
    rq = take(Cp + 16);  // vector loads of [j, j + lanes) with j < Cp
    rk = take(Cp + 16);
    XQ = take((size_t)2 * C * ldx);
    PM = take((size_t)2 * C * Cp);
    KP = take((size_t)C * K);
    OX = take((size_t)2 * C * V);
    gc = take(Cp + 16);
    bt = take(C);
    eg = take(Cp + 16);
    ed = take(Cp + 16);
    total = o;
  }
};

// Floor of g in the cumulative sums: exp(-104) rounds to 0 in float32 (below half the smallest denormal), so a decay at the floor is 0
// as for -inf, and 32 tokens at the floor sum to -3328, far from overflow.
constexpr float kMinLogDecay = -104.f;

// Prefetches into L1 the rows of token `tok + kAhead` while token `tok` is copied (the prefetches issued during
// the previous step bring them to L2).
constexpr int kAhead = 4;
GDN_INLINE void prefetch_row_l1(const void* base, size_t offset_bytes, size_t bytes) {
  const char* p = static_cast<const char*>(base) + offset_bytes;
  for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, 0, 3);
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

// ---- key-head step: raw q, k rows, inverse norms, k^T, [q; k] k^T ----
template <class Tile>
GDN_INLINE void key_head_chunk(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t tok0, int64_t hk,
                               int64_t t0, int L, const ChunkLayout& ly, float* ws, RowPrefetcher* pf) {
  const int K = ly.K, C = ly.C, Cp = ly.Cp;
  float* Q = ws + ly.QK;
  float* Kr = Q + (size_t)C * K;
  float* rq = ws + ly.rq;
  float* rk = ws + ly.rk;
  const size_t esz = p.dtype == DType::kFloat32 ? 4 : 2;
  // The raw rows first (no dependent arithmetic between the loads, so that many rows' misses are in flight).
  for (int i = 0; i < L; ++i) {
    const int64_t tok = tok0 + t0 + i;
    if (i + kAhead < L) {
      const size_t next = (size_t)((tok + kAhead) * p.Hk + hk) * K * esz;
      prefetch_row_l1(t.query, next, (size_t)K * esz);
      prefetch_row_l1(t.key, next, (size_t)K * esz);
    }
    const size_t off = (size_t)(tok * p.Hk + hk) * K;
    load_row(p.dtype, t.query, off, K, Q + (size_t)i * K);
    load_row(p.dtype, t.key, off, K, Kr + (size_t)i * K);
  }
  for (int i = 0; i < L; ++i) {
    if (p.use_qk_l2norm) {
      const float* q = Q + (size_t)i * K;
      const float* k = Kr + (size_t)i * K;
      rq[i] = p.scale / std::sqrt(dot(q, q, K) + delta_rule::kL2normEps);
      rk[i] = 1.f / std::sqrt(dot(k, k, K) + delta_rule::kL2normEps);
    } else {
      rq[i] = p.scale;
      rk[i] = 1.f;
    }
  }
  for (int i = L; i < Cp + 16; ++i) rk[i] = 0.f;  // padding read by whole-vector loops
  transpose(Kr, K, L, K, ws + ly.KT, C);
  // Raw Gram matrices [q; k] k^T; only the lower triangles (j <= i) are used.
  float* G0 = ws + ly.G0;
  if (L == C) {
    gemm<Tile>(2 * C, L, K, 1.f, Q, K, ws + ly.KT, C, 0.f, G0, Cp, 0, pf);
  } else {
    gemm<Tile>(L, L, K, 1.f, Q, K, ws + ly.KT, C, 0.f, G0, Cp, kLowerOut, pf);
    gemm<Tile>(L, L, K, 1.f, Kr, K, ws + ly.KT, C, 0.f, G0 + (size_t)C * Cp, Cp, kLowerOut, pf);
  }
}

// ---- value-head step, load: raw v rows (into the right-hand side), beta, cumulative g ----
GDN_INLINE void load_values(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t tok0, int64_t h, int64_t t0,
                            int L, const ChunkLayout& ly, float* ws) {
  const int V = ly.V, ldx = ly.ldx;
  float* X = ws + ly.XQ + (size_t)ly.C * ldx;
  float* gc = ws + ly.gc;
  float* bt = ws + ly.bt;
  const size_t esz = p.dtype == DType::kFloat32 ? 4 : 2;
  float gsum = 0.f;
  for (int i = 0; i < L; ++i) {
    const int64_t tok = tok0 + t0 + i;
    if (i + kAhead < L) prefetch_row_l1(t.value, (size_t)((tok + kAhead) * p.Hv + h) * V * esz, (size_t)V * esz);
    const size_t vh = (size_t)(tok * p.Hv + h);
    load_row(p.dtype, t.value, vh * V, V, X + (size_t)i * ldx);
    bt[i] = load_one(p.dtype, t.beta, vh);
    // exp() of decays below kMinLogDecay is 0 in float32 anyway; the floor keeps the cumulative sums finite
    // (-inf - -inf and -3e38 + -3e38 would make NaN / -inf of the differences gc_i - gc_j).
    gsum += std::max(t.g[vh], kMinLogDecay);
    gc[i] = gsum;
  }
  for (int i = L; i < ly.Cp + 16; ++i) gc[i] = gsum;  // padding read by whole-vector loops
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

// ---- value-head step, intra-chunk: decay masks, [U | W] = (I - A)^-1 [beta v | beta exp(gc) k] ----
template <class Tile>
GDN_INLINE void intra_chunk(int L, const ChunkLayout& ly, float* ws) {
  typedef typename Tile::vec vec;
  constexpr int VL = Tile::kLanes;
  const int K = ly.K, V = ly.V, C = ly.C, Cp = ly.Cp, ldx = ly.ldx;
  const float* Kr = ws + ly.QK + (size_t)C * K;
  const float* Pr = ws + ly.G0;
  const float* Mr = Pr + (size_t)C * Cp;
  float* X = ws + ly.XQ + (size_t)C * ldx;
  float* KP = ws + ly.KP;
  float* P = ws + ly.PM;
  float* A = P + (size_t)C * Cp;
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
  // Masks in whole vectors up to Lz: entries above the diagonal (and A's diagonal) are zero.
  const int Lz = (L + 15) & ~15;  // <= Cp
  vec lane;
  for (int l = 0; l < VL; ++l) lane[l] = (float)l;
  for (int i = 0; i < L; ++i) {
    const float nb = -bt[i] * rk[i];
    const float qi = rq[i];
    const float gi = gc[i];
    for (int j = 0; j < Lz; j += VL) {
      const vec col = lane + (float)j;
      // Lanes above the diagonal are selected away (the Gram GEMM may have left stale values there).
      const vec d = vexp<vec>(gi - *reinterpret_cast<const vec*>(gc + j)) * *reinterpret_cast<const vec*>(rk + j);
      const size_t at = (size_t)i * Cp + j;
      *reinterpret_cast<vec*>(A + at) = col < (float)i ? nb * *reinterpret_cast<const vec*>(Mr + at) * d : vec{};
      *reinterpret_cast<vec*>(P + at) = col <= (float)i ? qi * *reinterpret_cast<const vec*>(Pr + at) * d : vec{};
    }
  }
  // Right-hand sides [beta v | beta exp(gc) rk k] (v was loaded into place), then the solve: [U | W].
  for (int i = 0; i < L; ++i) {
    float* x = X + (size_t)i * ldx;
    const float* kr = Kr + (size_t)i * K;
    scale_row<Tile>(kr, K, ed[i] * rk[i], KP + (size_t)i * K);
    scale_row<Tile>(x, V, bt[i], x);
    scale_row<Tile>(kr, K, bt[i] * eg[i] * rk[i], x + V);
  }
  forward_substitute<Tile>(L, A, Cp, X, ldx, V + K);
}

// ---- value-head step, state pass: v' = U - W S, o = (q exp(gc)) S + P v', S = exp(gc_L) S + (k exp(gc_L - gc))^T v'
template <class Tile>
GDN_INLINE void state_pass(int L, const ChunkLayout& ly, float* ws, float* S, RowPrefetcher* pf) {
  const int K = ly.K, V = ly.V, C = ly.C, ldx = ly.ldx;
  const float* Qr = ws + ly.QK;
  float* Q = ws + ly.XQ + V;
  float* W = Q + (size_t)C * ldx;
  float* U = ws + ly.XQ + (size_t)C * ldx;
  const float* KP = ws + ly.KP;
  const float* P = ws + ly.PM;
  float* O = ws + ly.OX;
  float* X = O + (size_t)C * V;
  const float* eg = ws + ly.eg;
  const float* rq = ws + ly.rq;

  for (int i = 0; i < L; ++i) scale_row<Tile>(Qr + (size_t)i * K, K, eg[i] * rq[i], Q + (size_t)i * ldx);
  // One column panel of S at a time (the GEMM tile's width): the state product, v', P v' and the state update all
  // touch the same K x 64 panel of S, which stays in L1 from the first to the last.
  constexpr int NR = Tile::kNV * Tile::kLanes;
  const float eL = eg[L - 1];
  for (int j0 = 0; j0 < V; j0 += NR) {
    const int w = std::min(NR, V - j0);
    if (L == C) {
      gemm<Tile>(2 * C, w, K, 1.f, Q, ldx, S + j0, V, 0.f, O + j0, V, 0, pf);  // [q e^gc; W] S -> [o; W S]
    } else {
      gemm<Tile>(L, w, K, 1.f, Q, ldx, S + j0, V, 0.f, O + j0, V, 0, pf);
      gemm<Tile>(L, w, K, 1.f, W, ldx, S + j0, V, 0.f, X + j0, V, 0, pf);
    }
    for (int i = 0; i < L; ++i) {  // v' = U - W S
      float* u = U + (size_t)i * ldx + j0;
      const float* x = X + (size_t)i * V + j0;
      for (int j = 0; j < w; ++j) u[j] -= x[j];
    }
    gemm<Tile>(L, w, L, 1.f, P, ly.Cp, U + j0, ldx, 1.f, O + j0, V, kLowerA, pf);
    gemm<Tile>(K, w, L, 1.f, KP, K, U + j0, ldx, eL, S + j0, V, kTransA, pf);  // S = e^gc_L S + KP^T v'
  }
}

// What one (head, chunk) step prefetches while it computes (RowPrefetcher, between GEMM tiles): the rows of the
// step that follows it (head hn, chunk at tn of Ln tokens; Ln = 0: none; its q and k only when it reads another
// key head), then the write-allocation of its own output rows.
GDN_INLINE void plan_prefetch(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t tok0, int64_t h,
                              int64_t t0, int L, int64_t hn, int64_t tn, int Ln, bool next_reads_qk,
                              RowPrefetcher& pf) {
  const size_t esz = p.dtype == DType::kFloat32 ? 4 : 2;
  const size_t qk_row = (size_t)p.K * esz, v_row = (size_t)p.V * esz;
  pf.clear();
  if (Ln > 0) {
    const int64_t tok = tok0 + tn, hkn = hn / (p.Hv / p.Hk);
    if (next_reads_qk) {
      const size_t qk_off = (size_t)(tok * p.Hk + hkn) * qk_row;
      pf.add(static_cast<const char*>(t.query) + qk_off, (size_t)p.Hk * qk_row, Ln, qk_row, false);
      pf.add(static_cast<const char*>(t.key) + qk_off, (size_t)p.Hk * qk_row, Ln, qk_row, false);
    }
    pf.add(static_cast<const char*>(t.value) + (size_t)(tok * p.Hv + hn) * v_row, (size_t)p.Hv * v_row, Ln, v_row,
           false);
  }
  pf.add(static_cast<const char*>(t.output) + (size_t)((tok0 + t0) * p.Hv + h) * v_row, (size_t)p.Hv * v_row, L,
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

// One work item: heads [h0, h0 + G) of one sequence, chunk by chunk and, within a chunk, head by head. The heads'
// rows of one token are adjacent in memory, so the pages a chunk touches serve all G heads (with one head per work
// item every chunk's strided rows are ~100 pages seen for the first time: a TLB miss each, and a two-level page
// walk under a hypervisor), and consecutive value heads of one key head share its q/k work. The G states stay in
// scratch (G x 64 KB at K=V=128). Chunks never cross the sequence's end: its last chunk may be shorter.
template <class Tile>
GDN_INLINE void chunk_group_impl(const DeltaRuleParams& p, const DeltaRuleTensors& t, const DeltaRuleSequence& seq,
                                 int64_t h0, int G, const ChunkLayout& ly, float* ws) {
  const int K = ly.K, V = ly.V, C = ly.C;
  const size_t kv = (size_t)K * V;
  const int64_t ratio = p.Hv / p.Hk, tok0 = seq.token0, T = seq.length;
  for (int g = 0; g < G; ++g)
    load_state(p, seq.read_slot >= 0 ? t.initial_state + (size_t)(seq.read_slot * p.Hv + h0 + g) * kv : nullptr,
               ws + ly.S + g * kv);
  for (int64_t t0 = 0; t0 < T; t0 += C) {
    const int L = (int)std::min<int64_t>(C, T - t0);
    const int Lnext = (int)std::max<int64_t>(0, std::min<int64_t>(C, T - t0 - C));
    for (int g = 0; g < G; ++g) {
      const int64_t h = h0 + g;
      RowPrefetcher pf;
      if (g + 1 < G) plan_prefetch(p, t, tok0, h, t0, L, h + 1, t0, L, (h + 1) % ratio == 0, pf);
      else plan_prefetch(p, t, tok0, h, t0, L, h0, t0 + C, Lnext, true, pf);
      if (g == 0 || h % ratio == 0) key_head_chunk<Tile>(p, t, tok0, h / ratio, t0, L, ly, ws, &pf);
      load_values(p, t, tok0, h, t0, L, ly, ws);
      intra_chunk<Tile>(L, ly, ws);
      state_pass<Tile>(L, ly, ws, ws + ly.S + g * kv, &pf);
      const float* O = ws + ly.OX;
      for (int i = 0; i < L; ++i) {
        const int64_t tok = tok0 + t0 + i;
        store_row(p.dtype, t.output, (size_t)(tok * p.Hv + h) * V, V, O + (size_t)i * V);
      }
    }
  }
  if (t.final_state != nullptr)
    for (int g = 0; g < G; ++g)
      store_state(p, ws + ly.S + g * kv, t.final_state + (size_t)(seq.write_slot * p.Hv + h0 + g) * kv);
}

GDN_DISPATCH(chunk_group,
             (const DeltaRuleParams& p, const DeltaRuleTensors& t, const DeltaRuleSequence& seq, int64_t h0, int G,
              const ChunkLayout& ly, float* ws),
             (p, t, seq, h0, G, ly, ws))

// Heads per work item: as many as keep >= 2 work items per hardware thread (load balance) and the group's states
// within a quarter of the L2 cache (they are reused every chunk), at most 8; a multiple of Hv / Hk where that
// allows (the value heads of one key head share its work only inside a group). GDN_CPU_HEADS_PER_ITEM=n forces n
// (tests: groups that do not divide the head count).
int heads_per_item(const DeltaRuleParams& p, int64_t sequences) {
  static const int forced = std::getenv("GDN_CPU_HEADS_PER_ITEM") ? std::atoi(std::getenv("GDN_CPU_HEADS_PER_ITEM")) : 0;
  if (forced > 0) return (int)std::min<int64_t>(forced, p.Hv);
  const size_t state_bytes = sizeof(float) * (size_t)p.K * p.V;
  const int64_t by_cache = std::max<int64_t>(1, (int64_t)(l2_cache_bytes() / 4 / state_bytes));
  const int64_t threads = std::max<unsigned>(1, std::thread::hardware_concurrency());
  const int64_t by_balance = std::max<int64_t>(1, sequences * p.Hv / (2 * threads));
  int64_t G = std::min<int64_t>({8, by_cache, by_balance, p.Hv});
  const int64_t ratio = p.Hv / p.Hk;
  if (G > ratio) G -= G % ratio;
  return (int)G;
}

}  // namespace

void chunk_gated_delta_rule(const DeltaRuleParams& p, const DeltaRuleTensors& t, const Parallel& par) {
  DeltaRulePlan plain;
  const DeltaRulePlan& plan = t.plan != nullptr ? *t.plan : plain_delta_rule_plan(p, t, &plain);
  if (p.pool()) copy_pool_once(p, t);
  if (plan.sequences.empty()) return;
  // chunk_size is a performance hint (docs/ops.md): the kernel works in chunks of at most 32 tokens. Measured
  // (AVX2, K=V=128, T=512, 2 threads): 64-token chunks 35 ms, 32: 25-28 ms, 16: 28-29 ms. The state GEMMs cost
  // the same per token for any chunk; the intra-chunk part (k k^T, q k^T, the triangular solve, U, W, P v')
  // grows with the chunk, and 32 rows still keep the register tiles busy.
  constexpr int64_t kMaxChunk = 32;
  const int64_t longest = std::max<int64_t>(1, plan.max_length);
  const int C = (int)std::min<int64_t>({p.chunk_size, kMaxChunk, longest});
  const int64_t sequences = (int64_t)plan.sequences.size();
  const int G = heads_per_item(p, sequences);
  const int64_t groups = (p.Hv + G - 1) / G;
  const ChunkLayout ly((int)p.K, (int)p.V, C, G);
  auto work = [&](size_t item) {
    const DeltaRuleSequence& seq = plan.sequences[(int64_t)item / groups];
    const int64_t h0 = (int64_t)item % groups * G;
    Scratch scratch((int64_t)ly.total, "a ChunkGatedDeltaRule head group (its states and chunk tiles)");
    chunk_group(p, t, seq, h0, (int)std::min<int64_t>(G, p.Hv - h0), ly, scratch.get());
  };
  par.for_each((size_t)(sequences * groups), work);
}

}  // namespace cpu
}  // namespace gdn
