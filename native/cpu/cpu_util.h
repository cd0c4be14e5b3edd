// gdn-fuse CPU backend internals: ISA dispatch, small GEMM micro-kernel, row helpers. Not part of the contract.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <new>
#include <vector>

#include "common/float_convert.h"
#include "common/gdn_contract.h"

#define GDN_INLINE inline __attribute__((always_inline))

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // v16f is only used inside always-inline helpers
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define GDN_HAVE_X86_DISPATCH 1
#define GDN_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c,prefer-vector-width=512")))
#define GDN_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#elif defined(__x86_64__) && defined(__clang__)
#define GDN_HAVE_X86_DISPATCH 1
#define GDN_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c"), min_vector_width(512)))
#define GDN_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define GDN_HAVE_X86_DISPATCH 0
#endif

namespace gdn {
namespace cpu {

enum class Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };
Isa detect_isa();  // cached
size_t l2_cache_bytes();  // per core, from the OS (cached); 512 KiB when it does not say

// Declares `static void NAME(ARGS)` that runs NAME##_impl (an always-inline function) compiled for the best ISA.
// Usage: GDN_DISPATCH(fn, (const X& a, int b), (a, b))
// NAME##_impl must be a template on the GEMM tile (Tile512 / Tile256 / Tile128, see below); kernels that do not
// use gemm_acc simply ignore it.
#if GDN_HAVE_X86_DISPATCH
#define GDN_DISPATCH(NAME, PARAMS, ARGS)                                                                   \
  GDN_TARGET_AVX512 __attribute__((noinline)) static void NAME##_avx512 PARAMS {                          \
    NAME##_impl<::gdn::cpu::Tile512> ARGS;                                                                 \
  }                                                                                                        \
  GDN_TARGET_AVX2 __attribute__((noinline)) static void NAME##_avx2 PARAMS { NAME##_impl<::gdn::cpu::Tile256> ARGS; } \
  __attribute__((noinline)) static void NAME##_generic PARAMS { NAME##_impl<::gdn::cpu::Tile128> ARGS; }  \
  static void NAME PARAMS {                                                                                \
    switch (::gdn::cpu::detect_isa()) {                                                                    \
      case ::gdn::cpu::Isa::kAvx512: NAME##_avx512 ARGS; break;                                             \
      case ::gdn::cpu::Isa::kAvx2: NAME##_avx2 ARGS; break;                                                 \
      default: NAME##_generic ARGS; break;                                                                  \
    }                                                                                                      \
  }
#else
#define GDN_DISPATCH(NAME, PARAMS, ARGS) \
  static void NAME PARAMS { NAME##_impl<::gdn::cpu::Tile128> ARGS; }
#endif

// 16-float vector (GCC/Clang vector extension): one zmm on AVX-512, split into ymm/xmm elsewhere.
typedef float v16f __attribute__((vector_size(64), aligned(4), may_alias));

GDN_INLINE v16f ld16(const float* p) { return *reinterpret_cast<const v16f*>(p); }
GDN_INLINE void st16(float* p, v16f v) { *reinterpret_cast<v16f*>(p) = v; }

typedef float v8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef float v4f __attribute__((vector_size(16), aligned(4), may_alias));

// Software prefetch of strided rows, a few cache lines after each GEMM register tile, so that the fetches of the
// next step's input rows (and the write-allocation of this step's output rows) overlap the arithmetic. The rows of
// one head are strided by H*K elements, a pattern the hardware prefetchers do not follow across rows. Spans are
// served in the order they were added.
class RowPrefetcher {
 public:
  void clear() { nspans_ = span_ = row_ = 0, line_ = nullptr; }
  void add(const void* base, size_t stride_bytes, int rows, size_t row_bytes, bool write) {
    if (nspans_ == kMaxSpans || rows <= 0 || row_bytes == 0) return;
    spans_[nspans_++] = Span{static_cast<const char*>(base), stride_bytes, row_bytes, rows, write};
  }
  // Issues the next line, if any. A row's lines run from the one holding its first byte to the one holding its
  // last (rows of JS-allocated buffers are rarely 64-byte aligned: a 512-byte row then spans 9 lines).
  GDN_INLINE void step() {
    if (span_ == nspans_) return;
    const Span& s = spans_[span_];
    if (line_ == nullptr) {
      const char* row = s.base + (size_t)row_ * s.stride;
      line_ = reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(row) & ~uintptr_t(63));
      end_ = row + s.row_bytes;
    }
    if (s.write) __builtin_prefetch(line_, 1, 3);
    else __builtin_prefetch(line_, 0, 2);  // to L2: the GEMMs stream the 64 KB state through L1
    line_ += 64;
    if (line_ >= end_) {
      line_ = nullptr;
      if (++row_ == s.rows) row_ = 0, ++span_;
    }
  }

 private:
  struct Span {
    const char* base;
    size_t stride, row_bytes;
    int rows;
    bool write;
  };
  static constexpr int kMaxSpans = 6;
  Span spans_[kMaxSpans];
  int nspans_ = 0, span_ = 0, row_ = 0;
  const char* line_ = nullptr;
  const char* end_ = nullptr;
};

// Register-blocking of the GEMM micro-kernel per ISA: MR rows x NV vectors (NR = NV * lanes columns); narrower
// panels (NV/2, NV/4 vectors) serve N that is not a multiple of NR.
// AVX-512 (32 zmm): 6 x 64 = 24 accumulators + 4 B vectors + 1 broadcast; each broadcast feeds 4 FMAs, so the
// loads stay well under the FMA rate (a 6 x 32 tile needs 8 loads per 12 FMAs and ran at ~70 % of a core on the
// 64 x 128 x 128 state product, 6 x 64 at ~90 %). AVX2 (16 ymm): 6 x 16 = 12 accumulators + 2 B + 1 broadcast.
struct Tile512 { typedef v16f vec; static constexpr int kLanes = 16, kMR = 6, kNV = 4; };
struct Tile256 { typedef v8f vec; static constexpr int kLanes = 8, kMR = 6, kNV = 2; };
struct Tile128 { typedef v4f vec; static constexpr int kLanes = 4, kMR = 4, kNV = 2; };

// Prefetcher lines issued after each register tile (not from inside its k-loop: there the bookkeeping cost more
// than the prefetches saved).
constexpr int kPrefetchPerTile = 12;

// One MR x (NV * lanes) register tile: acc = A[0:MR, 0:k1] @ B[0:k1, 0:NR]; C = beta * C + alpha * acc
// (beta == 0: C is overwritten, never read). TransA: A is stored transposed, element (r, k) at A[k * lda + r].
template <class Tile, int MR, int NV, bool TransA>
GDN_INLINE void gemm_tile(int k1, float alpha, float beta, const float* A, int lda, const float* B, int ldb, float* C,
                          int ldc, RowPrefetcher* pf) {
  typedef typename Tile::vec vec;
  constexpr int L = Tile::kLanes;
  vec c[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) c[r][v] = vec{};
  for (int k = 0; k < k1; ++k) {
    const float* b = B + (size_t)k * ldb;
    vec bv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) bv[v] = *reinterpret_cast<const vec*>(b + v * L);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      const float a = TransA ? A[(size_t)k * lda + r] : A[(size_t)r * lda + k];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) c[r][v] += a * bv[v];
    }
  }
  if (pf != nullptr)
    for (int i = 0; i < kPrefetchPerTile; ++i) pf->step();
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    float* cr = C + (size_t)r * ldc;
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      vec* cp = reinterpret_cast<vec*>(cr + v * L);
      if (beta == 0.f) *cp = alpha * c[r][v];
      else if (beta == 1.f) *cp = *cp + alpha * c[r][v];
      else *cp = beta * *cp + alpha * c[r][v];
    }
  }
}

enum GemmFlags : int {
  kLowerA = 1,    // A[i][k] == 0 for k > i: those terms are skipped
  kLowerOut = 2,  // only C[i][j] with j <= i is needed: panels entirely above the diagonal are skipped
  kTransA = 4,    // A is given transposed: element (i, k) at A[k * lda + i]
};

// The tile for mb (<= MR) rows.
template <class Tile, int NV, bool TransA>
GDN_INLINE void gemm_rows(int mb, int k1, float alpha, float beta, const float* A, int lda, const float* B, int ldb,
                          float* C, int ldc, RowPrefetcher* pf) {
  constexpr int MR = Tile::kMR;
  if (mb == MR) gemm_tile<Tile, MR, NV, TransA>(k1, alpha, beta, A, lda, B, ldb, C, ldc, pf);
  else if (mb == 5) gemm_tile<Tile, (MR > 5 ? 5 : 1), NV, TransA>(k1, alpha, beta, A, lda, B, ldb, C, ldc, pf);
  else if (mb == 4) gemm_tile<Tile, (MR > 4 ? 4 : 1), NV, TransA>(k1, alpha, beta, A, lda, B, ldb, C, ldc, pf);
  else if (mb == 3) gemm_tile<Tile, 3, NV, TransA>(k1, alpha, beta, A, lda, B, ldb, C, ldc, pf);
  else if (mb == 2) gemm_tile<Tile, 2, NV, TransA>(k1, alpha, beta, A, lda, B, ldb, C, ldc, pf);
  else gemm_tile<Tile, 1, NV, TransA>(k1, alpha, beta, A, lda, B, ldb, C, ldc, pf);
}

// One column panel [n0, n0 + NV * lanes) for every row block, top to bottom (the B panel stays in L1).
template <class Tile, int NV, bool TransA>
GDN_INLINE void gemm_panel(int n0, int M, int Kd, float alpha, const float* A, int lda, const float* B, int ldb,
                           float beta, float* C, int ldc, int flags, RowPrefetcher* pf) {
  constexpr int MR = Tile::kMR;
  const bool lower = flags & kLowerA;
  for (int i0 = 0; i0 < M; i0 += MR) {
    const int mb = std::min(MR, M - i0);
    if ((flags & kLowerOut) && n0 > i0 + mb - 1) continue;
    const int kend = lower ? std::min(Kd, i0 + mb) : Kd;
    const float* a = TransA ? A + i0 : A + (size_t)i0 * lda;
    gemm_rows<Tile, NV, TransA>(mb, kend, alpha, beta, a, lda, B + n0, ldb, C + (size_t)i0 * ldc + n0, ldc, pf);
  }
}

// C[M x N] = beta * C + alpha * A[M x Kd] @ B[Kd x N]; row-major with leading dims lda/ldb/ldc (see GemmFlags).
// beta == 0 overwrites C without reading it (except for kLowerOut panels that are skipped: left untouched).
template <class Tile, bool TransA>
GDN_INLINE void gemm_impl(int M, int N, int Kd, float alpha, const float* A, int lda, const float* B, int ldb,
                          float beta, float* C, int ldc, int flags, RowPrefetcher* pf) {
  constexpr int NV = Tile::kNV, L = Tile::kLanes;
  int n0 = 0;
  for (; n0 + NV * L <= N; n0 += NV * L) gemm_panel<Tile, NV, TransA>(n0, M, Kd, alpha, A, lda, B, ldb, beta, C, ldc, flags, pf);
  if constexpr (NV >= 4) {
    if (n0 + (NV / 2) * L <= N) {
      gemm_panel<Tile, NV / 2, TransA>(n0, M, Kd, alpha, A, lda, B, ldb, beta, C, ldc, flags, pf);
      n0 += (NV / 2) * L;
    }
  }
  if constexpr (NV >= 2) {
    if (n0 + L <= N) {
      gemm_panel<Tile, 1, TransA>(n0, M, Kd, alpha, A, lda, B, ldb, beta, C, ldc, flags, pf);
      n0 += L;
    }
  }
  if (n0 < N) {  // the last columns, fewer than a vector: axpy form per row
    const bool lower = flags & kLowerA;
    const int nt = N - n0;
    for (int r = 0; r < M; ++r) {
      if ((flags & kLowerOut) && n0 > r) continue;
      const int ke = lower ? std::min(Kd, r + 1) : Kd;
      float* c = C + (size_t)r * ldc + n0;
      float acc[16];
      for (int n = 0; n < nt; ++n) acc[n] = 0.f;
      for (int k = 0; k < ke; ++k) {
        const float a = TransA ? A[(size_t)k * lda + r] : A[(size_t)r * lda + k];
        const float* b = B + (size_t)k * ldb + n0;
        for (int n = 0; n < nt; ++n) acc[n] += a * b[n];
      }
      for (int n = 0; n < nt; ++n) c[n] = (beta == 0.f ? 0.f : beta * c[n]) + alpha * acc[n];
    }
  }
}

template <class Tile>
GDN_INLINE void gemm(int M, int N, int Kd, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                     float* C, int ldc, int flags = 0, RowPrefetcher* pf = nullptr) {
  if (flags & kTransA) gemm_impl<Tile, true>(M, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc, flags, pf);
  else gemm_impl<Tile, false>(M, N, Kd, alpha, A, lda, B, ldb, beta, C, ldc, flags, pf);
}

// exp(x) for a vector, Cephes-style (range reduction by ln 2, degree-6 polynomial; ~1 ulp on [-87, 88]);
// x < -80 gives exactly 0 (no denormal arithmetic downstream), x is clamped at 88.
template <class vec>
GDN_INLINE vec vexp(vec x) {
  typedef int ivec __attribute__((vector_size(sizeof(vec))));
  const vec zero_mask_src = x;
  x = x > 88.f ? vec{} + 88.f : x;
  x = x < -87.f ? vec{} - 87.f : x;
  vec fx = x * 1.44269504088896341f + 0.5f;
  ivec ti = __builtin_convertvector(fx, ivec);
  vec tf = __builtin_convertvector(ti, vec);
  tf = tf > fx ? tf - 1.f : tf;  // floor
  ti = __builtin_convertvector(tf, ivec);
  x = x - tf * 0.693359375f;
  x = x - tf * -2.12194440e-4f;
  vec y = 1.9875691500e-4f * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * (x * x) + x + 1.f;
  const ivec bits = (ti + 127) << 23;
  vec pow2;
  __builtin_memcpy(&pow2, &bits, sizeof(vec));
  y = y * pow2;
  return zero_mask_src < -80.f ? vec{} : y;
}

GDN_INLINE float hsum16(v16f v) {  // pairwise tree: 4 dependent adds instead of 16
  v8f lo, hi;
  __builtin_memcpy(&lo, &v, sizeof lo);
  __builtin_memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
  const v8f a = lo + hi;
  v4f c, d;
  __builtin_memcpy(&c, &a, sizeof c);
  __builtin_memcpy(&d, reinterpret_cast<const char*>(&a) + sizeof c, sizeof d);
  const v4f b = c + d;
  return (b[0] + b[2]) + (b[1] + b[3]);
}

// Vectorised dot product (explicit 16-lane partial sums; the compiler may not reassociate a float reduction).
GDN_INLINE float dot(const float* a, const float* b, int n) {
  v16f acc = {};
  int i = 0;
  for (; i + 16 <= n; i += 16) acc += ld16(a + i) * ld16(b + i);
  float s = hsum16(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// x *= rsqrt(sum(x^2) + eps) (transformers' l2norm), then *= mul.
GDN_INLINE void l2norm_scale(float* x, int n, bool normalise, float mul, float eps) {
  float f = mul;
  if (normalise) {
    f = mul / std::sqrt(dot(x, x, n) + eps);
  }
  if (f != 1.f)
    for (int i = 0; i < n; ++i) x[i] *= f;
}

// Per-thread scratch of n floats, 64-byte aligned, for one work item. Up to kScratchKeepBytes the buffer is the
// thread's own and kept for its next work item (the hot paths' tiles and states: well under 1 MB at K = V = 128);
// a larger one (K = V = 8192: a 256 MB state) is mapped for this work item alone and unmapped when the Scratch goes
// away, so that one large call does not leave every pool thread holding its peak forever. `what` names the buffer
// in the error thrown when it cannot be allocated.
constexpr size_t kScratchKeepBytes = size_t{8} << 20;
class Scratch {
 public:
  Scratch(int64_t n, const char* what);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* get() const { return p_; }

 private:
  float* p_ = nullptr;
  size_t mapped_bytes_ = 0;  // 0: the thread's kept buffer
};

// The plan of a plain batch (no serving inputs): B sequences of T tokens, sequence b reading state row b (when there
// is an initial state) and writing row b. For kernels called without a plan (DeltaRuleTensors::plan == nullptr).
const DeltaRulePlan& plain_delta_rule_plan(const DeltaRuleParams& p, const DeltaRuleTensors& t, DeltaRulePlan* storage);
// With a state pool given as an output other than the input pool: copies the whole pool once, so that the slots the
// call does not write keep their values (the kernel then writes the touched slots). Nothing when it is in place.
void copy_pool_once(const DeltaRuleParams& p, const DeltaRuleTensors& t);

// n0 + a * b + ... style element counts for scratch, overflow-checked: throws (with `what`) when it does not fit.
int64_t scratch_size(std::initializer_list<int64_t> terms_of_products, const char* what);
int64_t checked_product(std::initializer_list<int64_t> factors, const char* what);

}  // namespace cpu
}  // namespace gdn
