// gdn-fuse CPU backend internals: ISA dispatch, small GEMM micro-kernel, row helpers. Not part of the contract.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
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

// Register-blocking of the GEMM micro-kernel per ISA: MR rows x NV vectors (NR = NV * lanes columns).
// AVX2 (16 ymm): 6 x 16 = 12 accumulators + 2 B vectors + 1 broadcast; enough independent FMA chains to cover
// latency 4 x 2 pipes with headroom. AVX-512: 6 x 32 = 12 zmm accumulators.
struct Tile512 { typedef v16f vec; static constexpr int kLanes = 16, kMR = 6, kNV = 2; };
struct Tile256 { typedef v8f vec; static constexpr int kLanes = 8, kMR = 6, kNV = 2; };
struct Tile128 { typedef v4f vec; static constexpr int kLanes = 4, kMR = 4, kNV = 2; };

// One MR x (NV * lanes) register tile: acc = A[0:MR, k0:k1] @ B[k0:k1, 0:NR]; C = beta * C + alpha * acc
// (beta == 0: C is overwritten, never read).
template <class Tile, int MR>
GDN_INLINE void gemm_tile(int k1, float alpha, float beta, const float* A, int lda, const float* B, int ldb, float* C,
                          int ldc) {
  typedef typename Tile::vec vec;
  constexpr int NV = Tile::kNV, L = Tile::kLanes;
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
      const float a = A[(size_t)r * lda + k];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) c[r][v] += a * bv[v];
    }
  }
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
  kLowerOut = 2,  // only C[i][j] with j <= i is needed: column panels entirely above the diagonal are skipped
};

// C[M x N] = beta * C + alpha * A[M x Kd] @ B[Kd x N]; row-major with leading dims lda/ldb/ldc.
// beta == 0 overwrites C without reading it (except for kLowerOut panels that are skipped: left untouched).
template <class Tile>
GDN_INLINE void gemm(int M, int N, int Kd, float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                     float* C, int ldc, int flags = 0) {
  constexpr int MR = Tile::kMR, NR = Tile::kNV * Tile::kLanes;
  const bool lower = flags & kLowerA;
  for (int i0 = 0; i0 < M; i0 += MR) {
    const int mb = std::min(MR, M - i0);
    const int kend = lower ? std::min(Kd, i0 + mb) : Kd;
    const int nend = (flags & kLowerOut) ? std::min(N, (i0 + mb + NR - 1) / NR * NR) : N;
    const float* a0p = A + (size_t)i0 * lda;
    float* c0p = C + (size_t)i0 * ldc;
    int n0 = 0;
    for (; n0 + NR <= nend; n0 += NR) {
      const float* bp = B + n0;
      float* cp = c0p + n0;
      if (mb == MR) gemm_tile<Tile, MR>(kend, alpha, beta, a0p, lda, bp, ldb, cp, ldc);
      else if (mb == 5) gemm_tile<Tile, (MR > 5 ? 5 : 1)>(kend, alpha, beta, a0p, lda, bp, ldb, cp, ldc);
      else if (mb == 4) gemm_tile<Tile, (MR > 4 ? 4 : 1)>(kend, alpha, beta, a0p, lda, bp, ldb, cp, ldc);
      else if (mb == 3) gemm_tile<Tile, 3>(kend, alpha, beta, a0p, lda, bp, ldb, cp, ldc);
      else if (mb == 2) gemm_tile<Tile, 2>(kend, alpha, beta, a0p, lda, bp, ldb, cp, ldc);
      else gemm_tile<Tile, 1>(kend, alpha, beta, a0p, lda, bp, ldb, cp, ldc);
    }
    // Columns beyond the last full panel: axpy form per row.
    if (n0 < nend) {
      const int nt = nend - n0;
      for (int r = 0; r < mb; ++r) {
        const float* ar = a0p + (size_t)r * lda;
        float* c = c0p + (size_t)r * ldc + n0;
        const int ke = lower ? std::min(Kd, i0 + r + 1) : Kd;
        float acc[NR];
        for (int n = 0; n < nt; ++n) acc[n] = 0.f;
        for (int k = 0; k < ke; ++k) {
          const float a = ar[k];
          const float* b = B + (size_t)k * ldb + n0;
          for (int n = 0; n < nt; ++n) acc[n] += a * b[n];
        }
        for (int n = 0; n < nt; ++n) c[n] = (beta == 0.f ? 0.f : beta * c[n]) + alpha * acc[n];
      }
    }
  }
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

GDN_INLINE float hsum16(v16f v) {
  float s = 0.f;
  for (int l = 0; l < 16; ++l) s += v[l];
  return s;
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

// Reusable per-thread scratch (grown on demand, never shrunk).
inline float* thread_scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

}  // namespace cpu
}  // namespace gdn
