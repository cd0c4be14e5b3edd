// gdn-fuse CPU backend: GatedRMSNorm. y = weight * (x * rsqrt(mean(x^2) + eps)) * silu(gate), in float32,
// output in x's type (transformers Qwen3NextRMSNormGated; weight used as is, not 1 + weight).
#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

template <class Tile>
GDN_INLINE void rms_rows_impl(const RMSNormParams& p, const RMSNormTensors& t, int64_t r0, int64_t r1, float* ws) {
  const int D = (int)p.D;
  float* x = ws;
  float* gt = x + D;
  float* w = gt + D;
  load_row(p.weight_type, t.weight, 0, (size_t)D, w);
  for (int64_t r = r0; r < r1; ++r) {
    const size_t off = (size_t)r * D;
    load_row(p.x_type, t.x, off, (size_t)D, x);
    load_row(p.gate_type, t.gate, off, (size_t)D, gt);
    const float inv = 1.f / std::sqrt(dot(x, x, D) / (float)D + p.epsilon);
    for (int i = 0; i < D; ++i) {
      const float gi = gt[i];
      x[i] = w[i] * (x[i] * inv) * (gi / (1.f + std::exp(-gi)));
    }
    store_row(p.x_type, t.y, off, (size_t)D, x);
  }
}

GDN_DISPATCH(rms_rows, (const RMSNormParams& p, const RMSNormTensors& t, int64_t r0, int64_t r1, float* ws),
             (p, t, r0, r1, ws))

}  // namespace

void gated_rms_norm(const RMSNormParams& p, const RMSNormTensors& t, const Parallel& par) {
  if (p.D == 0 || p.N == 0) return;
  const int64_t per = std::max<int64_t>(1, 16384 / p.D);
  const int64_t items = (p.N + per - 1) / per;
  auto work = [&](size_t item) {
    const int64_t r0 = (int64_t)item * per, r1 = std::min(p.N, r0 + per);
    Scratch scratch(checked_product({3, p.D}, "GatedRMSNorm rows (3D floats)"), "GatedRMSNorm rows (3D floats)");
    rms_rows(p, t, r0, r1, scratch.get());
  };
  par.for_each((size_t)items, work);
}

}  // namespace cpu
}  // namespace gdn
