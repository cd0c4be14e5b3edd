// gdn-fuse CPU backend: CausalConv1d (depthwise causal conv over time + optional SiLU; prefill and decode).
// xs = concat(conv_state or zeros [S], x [T]); y[t] = act(bias + sum_j w[j] xs[S + t - (W-1) + j]);
// conv_state_out = last S entries of xs. One work item = a block of (batch, channel) rows.
#include <cstring>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

template <class Tile>
GDN_INLINE void conv_row_impl(const CausalConv1dParams& p, const CausalConv1dTensors& t, int64_t row, float* ws) {
  const int64_t c = row % p.C;
  const size_t S = (size_t)p.S, T = (size_t)p.T, W = (size_t)p.W;
  float* xs = ws;          // S + T
  float* w = xs + S + T;   // W
  float* y = w + W;        // T
  if (t.conv_state != nullptr) load_row(p.x_type, t.conv_state, (size_t)row * S, S, xs);
  else std::memset(xs, 0, sizeof(float) * S);
  load_row(p.x_type, t.x, (size_t)row * T, T, xs + S);
  load_row(p.weight_type, t.weight, (size_t)c * W, W, w);
  const float bias = t.bias != nullptr ? load_one(p.bias_type, t.bias, (size_t)c) : 0.f;
  const float* base = xs + S - (W - 1);  // base[t + j] = xs[S + t - (W-1) + j]
  for (size_t i = 0; i < T; ++i) y[i] = bias;
  for (size_t j = 0; j < W; ++j) {
    const float wj = w[j];
    const float* xj = base + j;
    for (size_t i = 0; i < T; ++i) y[i] += wj * xj[i];
  }
  if (p.silu)
    for (size_t i = 0; i < T; ++i) y[i] = y[i] / (1.f + std::exp(-y[i]));
  store_row(p.x_type, t.y, (size_t)row * T, T, y);
  if (t.conv_state_out != nullptr) store_row(p.x_type, t.conv_state_out, (size_t)row * S, S, xs + T);
}

GDN_DISPATCH(conv_row, (const CausalConv1dParams& p, const CausalConv1dTensors& t, int64_t row, float* ws),
             (p, t, row, ws))

}  // namespace

void causal_conv1d(const CausalConv1dParams& p, const CausalConv1dTensors& t, const Parallel& par) {
  static const char* const kWhat = "a CausalConv1d row (S + 2T + W floats)";
  const int64_t rows = p.B * p.C;
  const int64_t ws_size = scratch_size({p.S, checked_product({2, p.T}, kWhat), p.W}, kWhat);
  // Blocks of rows so that a work item is not too small (decode: T = 1).
  const int64_t per = std::max<int64_t>(1, std::min<int64_t>(256, 16384 / std::max<int64_t>(1, p.S + p.T)));
  const int64_t items = (rows + per - 1) / per;
  auto work = [&](size_t item) {
    Scratch scratch(ws_size, kWhat);
    float* ws = scratch.get();
    const int64_t r0 = (int64_t)item * per, r1 = std::min(rows, r0 + per);
    for (int64_t r = r0; r < r1; ++r) conv_row(p, t, r, ws);
  };
  par.for_each((size_t)items, work);
}

}  // namespace cpu
}  // namespace gdn
