// gdn-fuse CPU backend: CausalConv1d (depthwise causal conv over time + optional SiLU; prefill and decode).
// Plain step: xs = concat(conv_state or zeros [S], x [T]); y[t] = act(bias + sum_j w[j] xs[S + t - (W-1) + j]);
// conv_state_out = last S entries of xs. Speculative step (vLLM causal_conv1d_update with num_accepted_tokens a):
// z = concat(state[a-1 .. a+W-3], x); y[t] = act(bias + sum_j w[j] z[t+j]); state[0 .. W-3+T] = z[1 ..], the
// other positions kept. One work item = a block of rows; a row is one channel of one sequence.
#include <algorithm>
#include <cstring>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

// One channel of one sequence, as the plan (or the plain batch) describes it.
struct ConvRow {
  int64_t c = 0;
  size_t x_off = 0, L = 0;   // x and y: elements [x_off, x_off + L)
  int64_t read_row = -1;     // conv_state row (slot * C + c); -1: zeros
  int64_t write_row = -1;    // conv_state_out row; -1: none
  int64_t accepted = 0;      // 0: plain step
};

// y[i] = act(bias + sum_j w[j] win[i + j]) for i < L; win holds W-1 history entries, then the L inputs.
template <class Tile>
GDN_INLINE void conv_window(const float* win, const float* w, float bias, size_t W, size_t L, bool silu, float* y) {
  for (size_t i = 0; i < L; ++i) y[i] = bias;
  for (size_t j = 0; j < W; ++j) {
    const float wj = w[j];
    const float* xj = win + j;
    for (size_t i = 0; i < L; ++i) y[i] += wj * xj[i];
  }
  if (silu)
    for (size_t i = 0; i < L; ++i) y[i] = y[i] / (1.f + std::exp(-y[i]));
}

template <class Tile>
GDN_INLINE void conv_row_impl(const CausalConv1dParams& p, const CausalConv1dTensors& t, const ConvRow& r, float* ws) {
  const size_t S = (size_t)p.S, W = (size_t)p.W, L = r.L;
  float* xs = ws;         // S + L: the state row, then x (plain); the state row (speculative)
  float* z = xs + S + L;  // W-1 + L: history window, then x (speculative)
  float* w = z + W - 1 + L;
  float* y = w + W;       // L
  if (r.read_row >= 0) load_row(p.x_type, t.conv_state, (size_t)r.read_row * S, S, xs);
  else std::memset(xs, 0, sizeof(float) * S);
  load_row(p.weight_type, t.weight, (size_t)r.c * W, W, w);
  const float bias = t.bias != nullptr ? load_one(p.bias_type, t.bias, (size_t)r.c) : 0.f;
  if (r.accepted == 0) {
    load_row(p.x_type, t.x, r.x_off, L, xs + S);
    conv_window<Tile>(xs + S - (W - 1), w, bias, W, L, p.silu, y);
    store_row(p.x_type, t.y, r.x_off, L, y);
    if (r.write_row >= 0) store_row(p.x_type, t.conv_state_out, (size_t)r.write_row * S, S, xs + L);
    return;
  }
  const size_t a = (size_t)r.accepted;  // 1 <= a <= S-W+2 and W-2+L <= S (build_causal_conv1d_plan)
  std::memcpy(z, xs + a - 1, sizeof(float) * (W - 1));
  load_row(p.x_type, t.x, r.x_off, L, z + W - 1);
  conv_window<Tile>(z, w, bias, W, L, p.silu, y);
  store_row(p.x_type, t.y, r.x_off, L, y);
  if (r.write_row < 0) return;
  // New state: z[1 ..] (W-2 history entries, then the L inputs) at the front, the rest of the old row after it.
  const size_t kept = W - 2 + L;
  std::memcpy(xs, z + 1, sizeof(float) * kept);
  store_row(p.x_type, t.conv_state_out, (size_t)r.write_row * S, S, xs);
}

GDN_DISPATCH(conv_row, (const CausalConv1dParams& p, const CausalConv1dTensors& t, const ConvRow& r, float* ws),
             (p, t, r, ws))

// Row `row` (= b * C + c) of the plain batch.
ConvRow plain_row(const CausalConv1dParams& p, const CausalConv1dTensors& t, int64_t row) {
  ConvRow r;
  r.c = row % p.C;
  r.x_off = (size_t)row * (size_t)p.T;
  r.L = (size_t)p.T;
  r.read_row = t.conv_state != nullptr ? row : -1;
  r.write_row = t.conv_state_out != nullptr ? row : -1;
  return r;
}

// Channel c of the plan's sequence s.
ConvRow plan_row(const CausalConv1dParams& p, const CausalConv1dTensors& t, const CausalConv1dSequence& s, int64_t c) {
  ConvRow r;
  r.c = c;
  r.x_off = (size_t)((s.batch * p.C + c) * p.T + s.token0);
  r.L = (size_t)s.length;
  r.read_row = s.read_slot >= 0 && t.conv_state != nullptr ? s.read_slot * p.C + c : -1;
  r.write_row = t.conv_state_out != nullptr ? s.write_slot * p.C + c : -1;
  r.accepted = s.accepted;
  return r;
}

}  // namespace

void causal_conv1d(const CausalConv1dParams& p, const CausalConv1dTensors& t, const Parallel& par) {
  static const char* const kWhat = "a CausalConv1d row (S + 3T + 2W floats)";
  const CausalConv1dPlan* plan = t.plan;
  const int64_t L = plan != nullptr ? plan->max_length : p.T;
  const int64_t rows_per_seq = plan != nullptr ? p.C : 1;
  const int64_t rows = plan != nullptr ? (int64_t)plan->sequences.size() * p.C : p.B * p.C;
  const int64_t ws_size = scratch_size({p.S, checked_product({3, L}, kWhat), p.W, p.W}, kWhat);
  // Blocks of rows so that a work item is not too small (decode: T = 1).
  const int64_t per = std::max<int64_t>(1, std::min<int64_t>(256, 16384 / std::max<int64_t>(1, p.S + L)));
  const int64_t items = (rows + per - 1) / per;
  auto work = [&](size_t item) {
    Scratch scratch(ws_size, kWhat);
    float* ws = scratch.get();
    const int64_t r0 = (int64_t)item * per, r1 = std::min(rows, r0 + per);
    for (int64_t r = r0; r < r1; ++r) {
      if (plan == nullptr) conv_row(p, t, plain_row(p, t, r), ws);
      else conv_row(p, t, plan_row(p, t, plan->sequences[(size_t)(r / rows_per_seq)], r % rows_per_seq), ws);
    }
  };
  par.for_each((size_t)items, work);
}

}  // namespace cpu
}  // namespace gdn
