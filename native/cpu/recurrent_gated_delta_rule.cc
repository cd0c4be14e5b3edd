// gdn-fuse CPU backend: RecurrentGatedDeltaRule (decode; any T). Per token rank-1 update of the fp32 state,
// exactly transformers' torch_recurrent_gated_delta_rule. One work item = one (sequence, value head).
// Both state layouts are handled natively (no transpose): the inner loops run over the contiguous axis.
#include <cstring>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {
namespace {

// One streaming pass over the state per token: S is read once from its source (initial_state, or the previous
// token's result) and written once to its destination (final_state, or scratch when final_state is not
// requested); no copy of the state ahead of the update. kv layout, per token and column panel (kv_panel):
//   pass 1 (reads src):   sk = S^T k, sq = S^T q                     (the panel's rows streamed)
//   u = beta (v - e sk),  o = e sq + (k.q) u                          (o = S_new^T q without a third pass)
//   pass 2 (src -> dst):  S_new = e S + k u^T                         (the panel, 32 KB at K=128, still in L1)
// vk layout: every row j of S (length K) is independent: u_j = beta (v_j - e s_j.k), s_j' = e s_j + u_j k,
// o_j = s_j'.q, so each row is read once and written once.
// kv layout, one token, columns [j0, j0 + NB * lanes): pass 1 over the panel's K rows (S^T k, S^T q), then u and o
// for these columns, then pass 2 over the same rows while they are still in L1, so the state is read once from
// L2 / memory. src == nullptr: a zero state. dst may be src.
template <class Tile, int NB>
GDN_INLINE void kv_panel(int K, int V, int j0, const float* src, float* dst, const float* q, const float* k,
                         const float* v, float* o, float beta, float e, float kq) {
  typedef typename Tile::vec vec;
  constexpr int VL = Tile::kLanes;
  vec ak[NB] = {}, aq[NB] = {};
  if (src != nullptr) {
    for (int i = 0; i < K; ++i) {
      const float* s = src + (size_t)i * V + j0;
      const float ki = k[i], qi = q[i];
#pragma GCC unroll 8
      for (int n = 0; n < NB; ++n) {
        const vec x = *reinterpret_cast<const vec*>(s + n * VL);
        ak[n] += ki * x;
        aq[n] += qi * x;
      }
    }
  }
  vec uv[NB];
#pragma GCC unroll 8
  for (int n = 0; n < NB; ++n) {
    const vec vv = *reinterpret_cast<const vec*>(v + j0 + n * VL);
    uv[n] = beta * (vv - e * ak[n]);
    *reinterpret_cast<vec*>(o + j0 + n * VL) = e * aq[n] + kq * uv[n];
  }
  for (int i = 0; i < K; ++i) {
    const float ki = k[i];
    float* d = dst + (size_t)i * V + j0;
    const float* s = src != nullptr ? src + (size_t)i * V + j0 : nullptr;
#pragma GCC unroll 8
    for (int n = 0; n < NB; ++n) {
      const vec x = s != nullptr ? e * *reinterpret_cast<const vec*>(s + n * VL) : vec{};
      *reinterpret_cast<vec*>(d + n * VL) = x + ki * uv[n];
    }
  }
}

// Where token ti of the sequence writes head h's state: its slot of final_state (2-D indices: the token's own slot),
// or the scratch state when final_state is not requested.
GDN_INLINE float* state_dst(const DeltaRuleParams& p, const DeltaRuleTensors& t, const DeltaRulePlan& plan,
                            const DeltaRuleSequence& seq, int64_t h, int64_t ti, float* ws) {
  if (t.final_state == nullptr) return ws;
  const int64_t slot = seq.write_slot >= 0 ? seq.write_slot : plan.token_slots[seq.token_slots + ti];
  return t.final_state + (size_t)(slot * p.Hv + h) * p.K * p.V;
}

template <class Tile>
GDN_INLINE void recurrent_head_impl(const DeltaRuleParams& p, const DeltaRuleTensors& t, const DeltaRulePlan& plan,
                                    const DeltaRuleSequence& seq, int64_t h, float* ws) {
  constexpr int VL = Tile::kLanes;
  const int K = (int)p.K, V = (int)p.V;
  const int64_t hk = h / (p.Hv / p.Hk);
  const size_t nstate = (size_t)K * V;
  const float* src = seq.read_slot >= 0 ? t.initial_state + (size_t)(seq.read_slot * p.Hv + h) * nstate : nullptr;
  float* dst = ws;
  float* q = ws + nstate;
  float* k = q + K;
  float* v = k + K;
  float* o = v + V;
  for (int64_t ti = 0; ti < seq.length; ++ti) {
    // In place (dst == src) for a pool slot the sequence reads and writes; a 2-D index row moves to a new slot
    // every token, which the next token continues from.
    dst = state_dst(p, t, plan, seq, h, ti, ws);
    const int64_t tok = seq.token0 + ti;
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
      const float kq = dot(k, q, K);
      // Column panels of 4 vectors, then 2 and 1 for the rest, then single columns.
      int j0 = 0;
      for (; j0 + 4 * VL <= V; j0 += 4 * VL) kv_panel<Tile, 4>(K, V, j0, src, dst, q, k, v, o, beta, e, kq);
      for (; j0 + 2 * VL <= V; j0 += 2 * VL) kv_panel<Tile, 2>(K, V, j0, src, dst, q, k, v, o, beta, e, kq);
      for (; j0 + VL <= V; j0 += VL) kv_panel<Tile, 1>(K, V, j0, src, dst, q, k, v, o, beta, e, kq);
      for (; j0 < V; ++j0) {
        float a1 = 0.f, a2 = 0.f;
        if (src != nullptr)
          for (int i = 0; i < K; ++i) {
            a1 += k[i] * src[(size_t)i * V + j0];
            a2 += q[i] * src[(size_t)i * V + j0];
          }
        const float uj = beta * (v[j0] - e * a1);
        o[j0] = e * a2 + kq * uj;
        for (int i = 0; i < K; ++i)
          dst[(size_t)i * V + j0] = (src != nullptr ? e * src[(size_t)i * V + j0] : 0.f) + k[i] * uj;
      }
    } else {
      for (int j = 0; j < V; ++j) {
        float* d = dst + (size_t)j * K;
        const float* s = src != nullptr ? src + (size_t)j * K : nullptr;
        const float uj = beta * (v[j] - (s != nullptr ? e * dot(s, k, K) : 0.f));
        v16f acc16 = {};
        int i = 0;
        for (; i + 16 <= K; i += 16) {
          const v16f x = (s != nullptr ? e * ld16(s + i) : v16f{}) + uj * ld16(k + i);
          st16(d + i, x);
          acc16 += x * ld16(q + i);
        }
        float acc = hsum16(acc16);
        for (; i < K; ++i) {
          const float x = (s != nullptr ? e * s[i] : 0.f) + uj * k[i];
          d[i] = x;
          acc += x * q[i];
        }
        o[j] = acc;
      }
    }
    store_row(p.dtype, t.output, vh * V, V, o);
    src = dst;  // the next token continues from this token's state
  }
  if (seq.length == 0 && t.final_state != nullptr) {  // no token: final_state = initial_state (or zeros)
    dst = state_dst(p, t, plan, seq, h, 0, ws);
    if (src == nullptr) std::memset(dst, 0, sizeof(float) * nstate);
    else if (src != dst) std::memmove(dst, src, sizeof(float) * nstate);
  }
}

GDN_DISPATCH(recurrent_head,
             (const DeltaRuleParams& p, const DeltaRuleTensors& t, const DeltaRulePlan& plan,
              const DeltaRuleSequence& seq, int64_t h, float* ws),
             (p, t, plan, seq, h, ws))

}  // namespace

void recurrent_gated_delta_rule(const DeltaRuleParams& p, const DeltaRuleTensors& t, const Parallel& par) {
  static const char* const kWhat = "a RecurrentGatedDeltaRule head (a K x V state and 2K + 2V floats)";
  const int64_t ws_size = scratch_size({checked_product({p.K, p.V}, kWhat), 2 * p.K, 2 * p.V}, kWhat);
  DeltaRulePlan plain;
  const DeltaRulePlan& plan = t.plan != nullptr ? *t.plan : plain_delta_rule_plan(p, t, &plain);
  if (p.pool()) copy_pool_once(p, t);
  auto work = [&](size_t item) {
    const DeltaRuleSequence& seq = plan.sequences[(int64_t)item / p.Hv];
    const int64_t h = (int64_t)item % p.Hv;
    Scratch scratch(ws_size, kWhat);
    recurrent_head(p, t, plan, seq, h, scratch.get());
  };
  par.for_each(plan.sequences.size() * (size_t)p.Hv, work);
}

}  // namespace cpu
}  // namespace gdn
