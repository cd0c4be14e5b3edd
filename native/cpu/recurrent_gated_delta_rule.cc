// gdn-fuse CPU backend: RecurrentGatedDeltaRule (decode; any T). Per token rank-1 update of the fp32 state,
// exactly transformers' torch_recurrent_gated_delta_rule. One work item = one (batch, value head).
// Both state layouts are handled natively (no transpose): the inner loops run over the contiguous axis.
#include <cstring>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

template <class Tile>
GDN_INLINE void recurrent_head_impl(const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h,
                                    float* ws) {
  const int K = (int)p.K, V = (int)p.V;
  const int64_t hk = h / (p.Hv / p.Hk);
  const size_t state_off = (size_t)(b * p.Hv + h) * K * V;
  const size_t nstate = (size_t)K * V;
  // Work directly in final_state when it is requested; otherwise in scratch.
  float* S = t.final_state != nullptr ? t.final_state + state_off : ws;
  float* q = ws + nstate;
  float* k = q + K;
  float* v = k + K;
  float* u = v + V;
  float* o = u + V;
  if (t.initial_state != nullptr) {
    if (S != t.initial_state + state_off) std::memmove(S, t.initial_state + state_off, sizeof(float) * nstate);
  } else {
    std::memset(S, 0, sizeof(float) * nstate);
  }
  for (int64_t ti = 0; ti < p.T; ++ti) {
    const int64_t tok = b * p.T + ti;
    const size_t qk_off = (size_t)(tok * p.Hk + hk) * K;
    const size_t vh = (size_t)(tok * p.Hv + h);
    load_row(p.dtype, t.query, qk_off, K, q);
    l2norm_scale(q, K, p.use_qk_l2norm, p.scale, delta_rule::kL2normEps);
    load_row(p.dtype, t.key, qk_off, K, k);
    l2norm_scale(k, K, p.use_qk_l2norm, 1.f, delta_rule::kL2normEps);
    load_row(p.dtype, t.value, vh * V, V, v);
    const float beta = load_one(p.dtype, t.beta, vh);
    const float e = std::exp(t.g[vh]);
    if (p.layout == StateLayout::kKV) {
      // u = beta (v - e S^T k)
      for (int j = 0; j < V; ++j) u[j] = 0.f;
      for (int i = 0; i < K; ++i) {
        const float ki = k[i];
        const float* s = S + (size_t)i * V;
        for (int j = 0; j < V; ++j) u[j] += ki * s[j];
      }
      for (int j = 0; j < V; ++j) u[j] = beta * (v[j] - e * u[j]);
      // S = e S + k u^T ; o = S^T q
      for (int j = 0; j < V; ++j) o[j] = 0.f;
      for (int i = 0; i < K; ++i) {
        const float ki = k[i], qi = q[i];
        float* s = S + (size_t)i * V;
        for (int j = 0; j < V; ++j) {
          const float x = e * s[j] + ki * u[j];
          s[j] = x;
          o[j] += qi * x;
        }
      }
    } else {
      for (int j = 0; j < V; ++j) {
        float* s = S + (size_t)j * K;
        const float uj = beta * (v[j] - e * dot(s, k, K));
        v16f acc16 = {};
        int i = 0;
        for (; i + 16 <= K; i += 16) {
          const v16f x = e * ld16(s + i) + uj * ld16(k + i);
          st16(s + i, x);
          acc16 += x * ld16(q + i);
        }
        float acc = hsum16(acc16);
        for (; i < K; ++i) {
          const float x = e * s[i] + uj * k[i];
          s[i] = x;
          acc += x * q[i];
        }
        o[j] = acc;
      }
    }
    store_row(p.dtype, t.output, vh * V, V, o);
  }
}

GDN_DISPATCH(recurrent_head, (const DeltaRuleParams& p, const DeltaRuleTensors& t, int64_t b, int64_t h, float* ws),
             (p, t, b, h, ws))

}  // namespace

void recurrent_gated_delta_rule(const DeltaRuleParams& p, const DeltaRuleTensors& t, const Parallel& par) {
  const size_t ws_size = (size_t)p.K * p.V + 2 * (size_t)p.K + 3 * (size_t)p.V;
  auto work = [&](size_t item) {
    const int64_t b = (int64_t)item / p.Hv;
    const int64_t h = (int64_t)item % p.Hv;
    recurrent_head(p, t, b, h, thread_scratch(ws_size));
  };
  par.for_each((size_t)(p.B * p.Hv), work);
}

}  // namespace cpu
}  // namespace gdn
