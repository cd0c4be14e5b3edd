// gdn-fuse: kernel-level timing (no ORT) of the delta-rule kernels at the bench shapes.
//   make -C native/test bench        ->  build/bench_kernels [threads] [all|chunk|rec] [sizes...]
// Prints median ms of chunk (B=1, H=32, K=V=128, T=512/2048, l2norm) and recurrent (T=1, B=1/8/64) and GFLOP/s
// (chunked-form FLOP count of docs/performance.md).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "common/gdn_contract.h"
#include "cpu/cpu_kernels.h"
#include "thread_runner.h"

using namespace gdn;


static double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static void bench(bool chunk, int64_t B, int64_t T, int threads, int reps) {
  // GDN_BENCH_HK: key heads (default 32 = Hv; 16 is Qwen3-Next's GQA: two value heads per key head).
  const int64_t H = 32, K = 128, V = 128;
  const int64_t Hk = std::getenv("GDN_BENCH_HK") ? std::atoi(std::getenv("GDN_BENCH_HK")) : H;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  auto vec = [&](size_t n, float lo, float hi) {
    std::vector<float> a(n);
    for (auto& x : a) x = lo + (hi - lo) * (u(rng) * 0.5f + 0.5f);
    return a;
  };
  auto q = vec(B * T * Hk * K, -1, 1), k = vec(B * T * Hk * K, -1, 1), v = vec(B * T * H * V, -1, 1);
  auto g = vec(B * T * H, -0.3f, -0.001f), beta = vec(B * T * H, 0.05f, 0.95f);
  auto s0 = vec(B * H * K * V, -0.1f, 0.1f);
  std::vector<float> out(B * T * H * V), s1(B * H * K * V);
  DeltaRuleParams p;
  p.B = B; p.T = T; p.Hk = Hk; p.Hv = H; p.K = K; p.V = V;
  p.scale = 1.f / std::sqrt((float)K); p.use_qk_l2norm = true; p.chunk_size = std::getenv("GDN_BENCH_CHUNK") ? std::atoi(std::getenv("GDN_BENCH_CHUNK")) : 64; p.has_initial_state = true;
  DeltaRuleTensors t;
  t.query = q.data(); t.key = k.data(); t.value = v.data(); t.g = g.data(); t.beta = beta.data();
  t.initial_state = s0.data(); t.output = out.data(); t.final_state = s1.data();
  ThreadRunner r{threads};
  Parallel par{&r, &ThreadRunner::run};
  std::vector<double> ts;
  for (int i = 0; i < reps + 2; ++i) {
    const double t0 = now_ms();
    if (chunk) cpu::chunk_gated_delta_rule(p, t, par);
    else cpu::recurrent_gated_delta_rule(p, t, par);
    if (i >= 2) ts.push_back(now_ms() - t0);
  }
  std::sort(ts.begin(), ts.end());
  const double med = ts[ts.size() / 2];
  const double flops = (double)B * H * ((T + 63) / 64) * (5.0 * 2 * 64 * 64 * K + 3.0 * 2 * 64 * K * V);
  if (chunk)
    std::printf("chunk     B=%lld T=%-5lld Hk=%lld threads=%d: %8.2f ms (min %.2f)  %6.1f GFLOP/s\n", (long long)B, (long long)T,
                (long long)Hk, threads, med, ts[0], flops / med / 1e6);
  else
    std::printf("recurrent B=%-2lld T=%-5lld threads=%d: %8.3f ms (min %.3f)  state %.1f MB -> %.1f GB/s (in+out)\n",
                (long long)B, (long long)T, threads, med, ts[0], B * H * K * V * 4 / 1e6, 2.0 * B * H * K * V * 4 / med / 1e6);
}

int main(int argc, char** argv) {
  // build/bench_kernels [threads] [all|chunk|rec] [T or B ...]: chunk takes sequence lengths (default 512 2048),
  // rec takes batch sizes (default 1 8 64).
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const char* what = argc > 2 ? argv[2] : "all";
  std::vector<int64_t> sizes;
  for (int i = 3; i < argc; ++i) sizes.push_back(std::atoll(argv[i]));
  std::printf("isa %s\n", cpu::isa_name());
  if (what[0] == 'a' || what[0] == 'c') {
    for (int64_t T : what[0] == 'c' && !sizes.empty() ? sizes : std::vector<int64_t>{512, 2048})
      bench(true, 1, T, threads, T >= 2048 ? 7 : 15);
  }
  if (what[0] == 'a' || what[0] == 'r') {
    for (int64_t B : what[0] == 'r' && !sizes.empty() ? sizes : std::vector<int64_t>{1, 8, 64})
      bench(false, B, 1, threads, B >= 64 ? 11 : 51);
  }
}
