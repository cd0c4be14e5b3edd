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
struct Tile512 { typedef v16f vec; static constexpr int kLanes = 16, kMR = 4, kNV = 4; };  // 16 zmm accumulators
struct Tile256 { typedef v8f vec; static constexpr int kLanes = 8, kMR = 4, kNV = 2; };    // 8 ymm accumulators
struct Tile128 { typedef v4f vec; static constexpr int kLanes = 4, kMR = 4, kNV = 2; };    // 8 xmm accumulators

// C[M x N] += alpha * A[M x Kd] @ B[Kd x N]; row-major with leading dims lda/ldb/ldc.
// lower: A[i][k] == 0 for k > i is assumed, and those terms are skipped.
template <class Tile>
GDN_INLINE void gemm_acc(int M, int N, int Kd, float alpha, const float* A, int lda, const float* B, int ldb, float* C,
                         int ldc, bool lower) {
  typedef typename Tile::vec vec;
  constexpr int MR = Tile::kMR, NV = Tile::kNV, L = Tile::kLanes, NR = NV * L;
  for (int i0 = 0; i0 < M; i0 += MR) {
    const int mb = std::min(MR, M - i0);
    const int kend = lower ? std::min(Kd, i0 + mb) : Kd;
    const float* a0p = A + (size_t)i0 * lda;
    int n0 = 0;
    if (mb == MR) {
      for (; n0 + NR <= N; n0 += NR) {
        vec c[MR][NV];
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r)
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) c[r][v] = vec{} ;
        for (int k = 0; k < kend; ++k) {
          const float* b = B + (size_t)k * ldb + n0;
          vec bv[NV];
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) bv[v] = *reinterpret_cast<const vec*>(b + v * L);
#pragma GCC unroll 16
          for (int r = 0; r < MR; ++r) {
            const float a = a0p[(size_t)r * lda + k];
#pragma GCC unroll 16
            for (int v = 0; v < NV; ++v) c[r][v] += a * bv[v];
          }
        }
#pragma GCC unroll 16
        for (int r = 0; r < MR; ++r) {
          float* cr = C + (size_t)(i0 + r) * ldc + n0;
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) {
            vec* cp = reinterpret_cast<vec*>(cr + v * L);
            *cp = *cp + alpha * c[r][v];
          }
        }
      }
    }
    // Remainder (partial row block or columns beyond the last full panel): axpy form.
    if (n0 < N) {
      const int nt = N - n0;
      for (int r = 0; r < mb; ++r) {
        const float* ar = a0p + (size_t)r * lda;
        float* c = C + (size_t)(i0 + r) * ldc + n0;
        const int ke = lower ? std::min(Kd, i0 + r + 1) : Kd;
        for (int k = 0; k < ke; ++k) {
          const float a = alpha * ar[k];
          const float* b = B + (size_t)k * ldb + n0;
          for (int n = 0; n < nt; ++n) c[n] += a * b[n];
        }
      }
    }
  }
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
