// gdn-fuse CPU backend: GatedDeltaGating. g = -exp(A_log[h]) * softplus(a + dt_bias[h]) (float32),
// beta = sigmoid(b) (type of b). softplus(x) = x for x > 20 else log1p(exp(x)), as torch.
#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {

void gated_delta_gating(const GatingParams& p, const GatingTensors& t, const Parallel& par) {
  if (p.N == 0 || p.H == 0) return;  // empty: never loop over rows of nothing
  const int64_t H = p.H;
  const int64_t per = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, H));  // rows per work item
  const int64_t items = (p.N + per - 1) / per;
  auto work = [&](size_t item) {
    Scratch scratch(checked_product({2, H}, "GatedDeltaGating rows (2H floats)"), "GatedDeltaGating rows (2H floats)");
    float* ws = scratch.get();
    float* x = ws;
    float* y = ws + H;
    const int64_t r0 = (int64_t)item * per, r1 = std::min(p.N, r0 + per);
    for (int64_t r = r0; r < r1; ++r) {
      const size_t off = (size_t)(r * H);
      if (t.g != nullptr) {
        load_row(p.a_type, t.a, off, (size_t)H, x);
        for (int64_t h = 0; h < H; ++h) {
          const float z = x[h] + t.dt_bias[h];
          const float sp = z > gating::kSoftplusThreshold ? z : std::log1p(std::exp(z));
          t.g[off + h] = -std::exp(t.A_log[h]) * sp;
        }
      }
      if (t.beta != nullptr) {
        load_row(p.b_type, t.b, off, (size_t)H, x);
        for (int64_t h = 0; h < H; ++h) y[h] = 1.f / (1.f + std::exp(-x[h]));
        store_row(p.b_type, t.beta, off, (size_t)H, y);
      }
    }
  };
  par.for_each((size_t)items, work);
}

}  // namespace cpu
}  // namespace gdn
