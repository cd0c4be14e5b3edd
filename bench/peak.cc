// gdn-fuse bench helper: measured fp32 FMA peak and memory bandwidth of this machine.
// Built by bench/run.mjs into build/bench/peak with -O2 -march=native (so it uses the ISA the CPU exposes).
//   peak fma THREADS      -> {"gflops": n, "isa": "..."}   (best of several runs, independent FMA chains)
//   peak copy BYTES       -> {"gbps": n}                   (memcpy of BYTES; read + write counted: 2*BYTES/t)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

#if defined(__AVX512F__)
typedef __m512 vec;
#define VFMA _mm512_fmadd_ps
#define VSET _mm512_set1_ps
#define LANES 16
static float hs(vec v) { return _mm512_reduce_add_ps(v); }
static const char* kIsa = "avx512";
#elif defined(__FMA__)
typedef __m256 vec;
#define VFMA _mm256_fmadd_ps
#define VSET _mm256_set1_ps
#define LANES 8
static float hs(vec v) {
  float t[8];
  _mm256_storeu_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}
static const char* kIsa = "avx2-fma";
#else
#error "needs FMA"
#endif

// 12 independent accumulator chains: enough to cover FMA latency (4) x 2 pipes with headroom.
static float fma_loop(long iters) {
  vec a0 = VSET(1.f), a1 = VSET(1.1f), a2 = VSET(1.2f), a3 = VSET(1.3f), a4 = VSET(1.4f), a5 = VSET(1.5f);
  vec a6 = VSET(1.6f), a7 = VSET(1.7f), a8 = VSET(1.8f), a9 = VSET(1.9f), a10 = VSET(2.f), a11 = VSET(2.1f);
  const vec m = VSET(0.999999f), c = VSET(1e-7f);
  for (long i = 0; i < iters; ++i) {
    a0 = VFMA(a0, m, c); a1 = VFMA(a1, m, c); a2 = VFMA(a2, m, c); a3 = VFMA(a3, m, c);
    a4 = VFMA(a4, m, c); a5 = VFMA(a5, m, c); a6 = VFMA(a6, m, c); a7 = VFMA(a7, m, c);
    a8 = VFMA(a8, m, c); a9 = VFMA(a9, m, c); a10 = VFMA(a10, m, c); a11 = VFMA(a11, m, c);
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3));
  }
  return hs(a0) + hs(a1) + hs(a2) + hs(a3) + hs(a4) + hs(a5) + hs(a6) + hs(a7) + hs(a8) + hs(a9) + hs(a10) + hs(a11);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: peak fma THREADS | peak copy BYTES\n");
    return 2;
  }
  if (std::strcmp(argv[1], "fma") == 0) {
    const int threads = std::atoi(argv[2]);
    const long iters = 50'000'000;
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      std::vector<std::thread> th;
      std::vector<float> sink(threads);
      const double t0 = now();
      for (int t = 0; t < threads; ++t) th.emplace_back([&, t] { sink[t] = fma_loop(iters); });
      for (auto& x : th) x.join();
      const double dt = now() - t0;
      best = std::max(best, (double)threads * iters * 12 * LANES * 2 / dt / 1e9);
      if (sink[0] == 12345.f) std::puts("");
    }
    std::printf("{\"gflops\": %.1f, \"isa\": \"%s\", \"threads\": %d}\n", best, kIsa, threads);
    return 0;
  }
  if (std::strcmp(argv[1], "copy") == 0) {
    const size_t bytes = std::strtoull(argv[2], nullptr, 10);
    char* a = static_cast<char*>(std::aligned_alloc(64, bytes));
    char* b = static_cast<char*>(std::aligned_alloc(64, bytes));
    std::memset(a, 1, bytes);
    std::memset(b, 2, bytes);
    std::vector<double> ts;
    for (int rep = 0; rep < 31; ++rep) {
      const double t0 = now();
      std::memcpy(b, a, bytes);
      ts.push_back(now() - t0);
      std::swap(a, b);
    }
    std::sort(ts.begin(), ts.end());
    const double med = ts[ts.size() / 2];
    std::printf("{\"gbps\": %.2f, \"ms\": %.4f, \"bytes\": %zu}\n", 2.0 * bytes / med / 1e9, med * 1e3, bytes);
    std::free(a);
    std::free(b);
    return 0;
  }
  return 2;
}
