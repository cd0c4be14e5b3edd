// gdn-fuse op contract: shape / type validation shared by every backend. Pure C++17.
#include "common/gdn_contract.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <tuple>

namespace gdn {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kBool: return "bool";
    case DType::kUndefined: return "undefined";
    default: return "an unsupported type";
  }
}

int64_t TensorInfo::numel() const {
  int64_t n = 0;
  return checked_numel(shape, &n) ? n : -1;
}

bool checked_mul(int64_t a, int64_t b, int64_t* out) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

bool checked_add(int64_t a, int64_t b, int64_t* out) {
  int64_t r = 0;
  if (a < 0 || b < 0 || __builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

bool checked_numel(const std::vector<int64_t>& shape, int64_t* out) {
  for (int64_t d : shape)
    if (d == 0) return *out = 0, true;  // empty whatever the other dims are
  int64_t n = 1;
  for (int64_t d : shape)
    if (!checked_mul(n, d, &n)) return false;
  *out = n;
  return true;
}

std::string check_tensor_size(const char* op, const char* name, const std::vector<int64_t>& shape, int64_t elem_size) {
  int64_t n = 0, bytes = 0;
  if (!checked_numel(shape, &n) || !checked_mul(n, elem_size, &bytes))
    return std::string(op) + ": " + name + " of shape " + shape_str(shape) + " is too large (its byte size overflows int64)";
  return "";
}

const char* attr_type_name(AttrType t) {
  switch (t) {
    case AttrType::kInt: return "an int";
    case AttrType::kFloat: return "a float";
    default: return "a string";
  }
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? "," : "") << shape[i];
  s << "]";
  return s.str();
}

namespace {

struct Err {
  std::ostringstream s;
  template <class T>
  Err& operator<<(const T& v) {
    s << v;
    return *this;
  }
  operator std::string() const { return s.str(); }
};

const TensorInfo* get(const TensorInfo* inputs, size_t n, size_t i) {
  static const TensorInfo absent;
  return i < n ? &inputs[i] : &absent;
}

// Inputs 0 .. required-1 must be present.
std::string check_required(const char* op, const TensorInfo* inputs, size_t n, int required, const char* const* names) {
  for (int i = 0; i < required; ++i)
    if (!get(inputs, n, i)->present) return Err() << op << ": required input " << i << " (" << names[i] << ") is missing";
  return "";
}

std::string check_rank(const char* op, const char* name, const TensorInfo& t, size_t rank, const char* dims) {
  if (t.shape.size() != rank)
    return Err() << op << ": " << name << " must have rank " << rank << " " << dims << ", got shape " << shape_str(t.shape);
  for (int64_t d : t.shape)
    if (d < 0) return Err() << op << ": " << name << " has a negative dimension in shape " << shape_str(t.shape);
  return "";
}

std::string check_shape(const char* op, const char* name, const TensorInfo& t, const std::vector<int64_t>& expected,
                        const char* what) {
  if (t.shape != expected)
    return Err() << op << ": " << name << " has shape " << shape_str(t.shape) << ", expected " << shape_str(expected)
                 << " " << what;
  return "";
}

std::string check_float(const char* op, const char* name, const TensorInfo& t) {
  if (!is_float_type(t.dtype))
    return Err() << op << ": " << name << " must be float32, float16 or bfloat16, got " << dtype_name(t.dtype);
  return "";
}

std::string check_f32(const char* op, const char* name, const TensorInfo& t) {
  if (t.dtype != DType::kFloat32) return Err() << op << ": " << name << " must be float32, got " << dtype_name(t.dtype);
  return "";
}

#define GDN_TRY(expr)                   \
  do {                                  \
    std::string e_ = (expr);            \
    if (!e_.empty()) return e_;         \
  } while (0)

}  // namespace

// Types and shapes of the delta rule's serving inputs (opset 2); defined below validate_delta_rule.
static std::string check_serving_inputs(const char* op, bool is_chunk, const TensorInfo* inputs, size_t n,
                                        DeltaRuleParams* p);

// ---------------------------------------------------------------------------------------------------
std::string validate_delta_rule_attrs(const char* op, bool is_chunk, const DeltaRuleAttrs& a) {
  if (!std::isfinite(a.scale))
    return Err() << op << ": attribute scale must be finite (0 means 1/sqrt(K)), got " << a.scale;
  if (a.use_qk_l2norm != 0 && a.use_qk_l2norm != 1)
    return Err() << op << ": attribute use_qk_l2norm must be 0 or 1, got " << a.use_qk_l2norm;
  if (a.state_layout != "kv" && a.state_layout != "vk")
    return Err() << op << ": attribute state_layout must be \"kv\" or \"vk\", got \"" << a.state_layout << "\"";
  if (is_chunk && (a.chunk_size < 1 || a.chunk_size > delta_rule::kMaxChunkSize))
    return Err() << op << ": attribute chunk_size must be in 1.." << delta_rule::kMaxChunkSize << ", got " << a.chunk_size;
  return "";
}

std::string validate_delta_rule(const char* op, bool is_chunk, const DeltaRuleAttrs& attrs, const TensorInfo* inputs,
                                size_t n, DeltaRuleParams* out, int opset) {
  using namespace delta_rule;
  GDN_TRY(validate_delta_rule_attrs(op, is_chunk, attrs));
  for (int i = kCuSeqlens; i <= kNumAcceptedTokens; ++i) {
    if (!get(inputs, n, i)->present) continue;
    if (i == kNumAcceptedTokens && is_chunk)
      return Err() << op << ": input " << i << " (" << kInputNames[i] << ") is only defined for RecurrentGatedDeltaRule"
                   << (opset < kOpsetVersionServing ? ", and is reserved in gdn opset 1" : "");
    if (opset < kOpsetVersionServing)
      return Err() << op << ": input " << i << " (" << kInputNames[i]
                   << ") is reserved in gdn opset 1 and not implemented by the CPU backend";
  }
  if (n > kNumInputs) return Err() << op << ": expected at most " << kNumInputs << " inputs, got " << n;
  GDN_TRY(check_required(op, inputs, n, kNumRequiredInputs, kInputNames));

  const TensorInfo& q = *get(inputs, n, kQuery);
  const TensorInfo& k = *get(inputs, n, kKey);
  const TensorInfo& v = *get(inputs, n, kValue);
  const TensorInfo& g = *get(inputs, n, kG);
  const TensorInfo& beta = *get(inputs, n, kBeta);
  const TensorInfo& s0 = *get(inputs, n, kInitialState);

  GDN_TRY(check_float(op, "query", q));
  if (k.dtype != q.dtype)
    return Err() << op << ": key has element type " << dtype_name(k.dtype) << ", expected " << dtype_name(q.dtype) << " (same as query)";
  if (v.dtype != q.dtype)
    return Err() << op << ": value has element type " << dtype_name(v.dtype) << ", expected " << dtype_name(q.dtype) << " (same as query)";
  if (beta.dtype != q.dtype)
    return Err() << op << ": beta has element type " << dtype_name(beta.dtype) << ", expected " << dtype_name(q.dtype) << " (same as query)";
  GDN_TRY(check_f32(op, "g", g));

  GDN_TRY(check_rank(op, "query", q, 4, "[B,T,Hk,K]"));
  GDN_TRY(check_rank(op, "key", k, 4, "[B,T,Hk,K]"));
  GDN_TRY(check_rank(op, "value", v, 4, "[B,T,Hv,V]"));
  GDN_TRY(check_rank(op, "g", g, 3, "[B,T,Hv]"));
  GDN_TRY(check_rank(op, "beta", beta, 3, "[B,T,Hv]"));
  GDN_TRY(check_shape(op, "key", k, q.shape, "(same as query [B,T,Hk,K])"));

  DeltaRuleParams p;
  p.B = q.shape[0];
  p.T = q.shape[1];
  p.Hk = q.shape[2];
  p.K = q.shape[3];
  p.Hv = v.shape[2];
  p.V = v.shape[3];
  if (v.shape[0] != p.B || v.shape[1] != p.T)
    return Err() << op << ": value has shape " << shape_str(v.shape) << ", expected [" << p.B << "," << p.T
                 << ",Hv,V] (batch and time of query)";
  if (p.Hk < 1 || p.K < 1) return Err() << op << ": query must have at least one head and K >= 1, got shape " << shape_str(q.shape);
  if (p.Hv < 1 || p.V < 1) return Err() << op << ": value must have at least one head and V >= 1, got shape " << shape_str(v.shape);
  if (p.Hv % p.Hk != 0)
    return Err() << op << ": value has " << p.Hv << " heads, which is not a multiple of the " << p.Hk << " key heads";
  GDN_TRY(check_shape(op, "g", g, {p.B, p.T, p.Hv}, "[B,T,Hv]"));
  GDN_TRY(check_shape(op, "beta", beta, {p.B, p.T, p.Hv}, "[B,T,Hv]"));

  p.scale = attrs.scale == 0.f ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(p.K))) : attrs.scale;
  p.use_qk_l2norm = attrs.use_qk_l2norm != 0;
  p.layout = attrs.state_layout == "vk" ? StateLayout::kVK : StateLayout::kKV;
  p.chunk_size = attrs.chunk_size;
  p.dtype = q.dtype;
  p.has_initial_state = s0.present;
  p.N = p.B;
  p.slots = p.B;
  GDN_TRY(check_serving_inputs(op, is_chunk, inputs, n, &p));
  if (s0.present) {
    GDN_TRY(check_f32(op, "initial_state", s0));
    const bool kv = p.layout == StateLayout::kKV;
    const char* what = p.pool() ? (kv ? "(a state pool [S,Hv,K,V] for state_layout \"kv\")"
                                      : "(a state pool [S,Hv,V,K] for state_layout \"vk\")")
                       : p.cu_seqlens_type != DType::kUndefined
                           ? (kv ? "([N,Hv,K,V] for state_layout \"kv\")" : "([N,Hv,V,K] for state_layout \"vk\")")
                           : (kv ? "([B,Hv,K,V] for state_layout \"kv\")" : "([B,Hv,V,K] for state_layout \"vk\")");
    if (s0.shape.size() != 4)
      return Err() << op << ": initial_state must have rank 4 " << what << ", got shape " << shape_str(s0.shape);
    if (p.pool() && s0.shape[0] >= 0) p.slots = s0.shape[0];
    GDN_TRY(check_shape(op, "initial_state", s0, p.state_shape(), what));
  }
  *out = p;
  return "";
}

// ---------------------------------------------------------------------------------------------------
// Delta-rule serving inputs (gdn opset 2)
namespace {

std::string check_index_type(const char* op, const char* name, const TensorInfo& t) {
  if (t.dtype != DType::kInt32 && t.dtype != DType::kInt64)
    return Err() << op << ": " << name << " must be int32 or int64, got " << dtype_name(t.dtype);
  return "";
}

std::string check_cu_seqlens(const char* op, const TensorInfo& cu, DeltaRuleParams* p) {
  GDN_TRY(check_index_type(op, "cu_seqlens", cu));
  GDN_TRY(check_rank(op, "cu_seqlens", cu, 1, "[N+1]"));
  if (cu.shape[0] < 1) return Err() << op << ": cu_seqlens must have at least one entry [N+1], got shape [0]";
  if (p->B != 1)
    return Err() << op << ": cu_seqlens needs a packed batch of batch size 1 ([1,T,...]), got B = " << p->B;
  p->cu_seqlens_type = cu.dtype;
  p->N = cu.shape[0] - 1;
  p->slots = p->N;
  return "";
}

std::string check_indices(const char* op, bool is_chunk, const TensorInfo& idx, const TensorInfo& s0,
                          DeltaRuleParams* p) {
  GDN_TRY(check_index_type(op, "ssm_state_indices", idx));
  if (is_chunk && idx.shape.size() != 1)
    return Err() << op << ": ssm_state_indices must have shape [N] (2-D indices [N,Tmax] are for "
                 << "RecurrentGatedDeltaRule only), got " << shape_str(idx.shape);
  if (idx.shape.size() != 1 && idx.shape.size() != 2)
    return Err() << op << ": ssm_state_indices must have shape [N] or [N,Tmax], got " << shape_str(idx.shape);
  for (int64_t d : idx.shape)
    if (d < 0) return Err() << op << ": ssm_state_indices has a negative dimension in shape " << shape_str(idx.shape);
  if (idx.shape[0] != p->N)
    return Err() << op << ": ssm_state_indices has " << idx.shape[0] << " rows, expected N = " << p->N
                 << " (one per sequence)";
  if (idx.shape.size() == 2 && idx.shape[1] < 1)
    return Err() << op << ": ssm_state_indices [N,Tmax] must have at least one column, got " << shape_str(idx.shape);
  if (!s0.present)
    return Err() << op << ": ssm_state_indices needs initial_state (the state pool [S,Hv,K,V] or [S,Hv,V,K])";
  p->indices_type = idx.dtype;
  p->index_columns = idx.shape.size() == 2 ? idx.shape[1] : 0;
  return "";
}

std::string check_accepted(const char* op, const TensorInfo& acc, DeltaRuleParams* p) {
  GDN_TRY(check_index_type(op, "num_accepted_tokens", acc));
  if (p->index_columns == 0) return Err() << op << ": num_accepted_tokens needs 2-D ssm_state_indices [N,Tmax]";
  GDN_TRY(check_shape(op, "num_accepted_tokens", acc, {p->N}, "([N], one per sequence)"));
  p->accepted_type = acc.dtype;
  return "";
}

}  // namespace

static std::string check_serving_inputs(const char* op, bool is_chunk, const TensorInfo* inputs, size_t n,
                                        DeltaRuleParams* p) {
  using namespace delta_rule;
  const TensorInfo& cu = *get(inputs, n, kCuSeqlens);
  const TensorInfo& idx = *get(inputs, n, kSsmStateIndices);
  const TensorInfo& acc = *get(inputs, n, kNumAcceptedTokens);
  if (cu.present) GDN_TRY(check_cu_seqlens(op, cu, p));
  if (idx.present) GDN_TRY(check_indices(op, is_chunk, idx, *get(inputs, n, kInitialState), p));
  if (acc.present) {
    if (!idx.present) return Err() << op << ": num_accepted_tokens needs 2-D ssm_state_indices [N,Tmax]";
    GDN_TRY(check_accepted(op, acc, p));
  }
  return "";
}

namespace {

int64_t index_at(const void* data, DType t, int64_t i) {
  return t == DType::kInt32 ? static_cast<const int32_t*>(data)[i] : static_cast<const int64_t*>(data)[i];
}

// Token ranges of the sequences: from cu_seqlens, or B sequences of T tokens.
std::string plan_token_ranges(const char* op, const DeltaRuleParams& p, const void* cu, DeltaRulePlan* plan) {
  plan->sequences.assign((size_t)p.N, DeltaRuleSequence());
  if (cu == nullptr) {
    for (int64_t n = 0; n < p.N; ++n) plan->sequences[n] = {n, n * p.T, p.T};
    return "";
  }
  const DType t = p.cu_seqlens_type;
  if (index_at(cu, t, 0) != 0) return Err() << op << ": cu_seqlens[0] must be 0, got " << index_at(cu, t, 0);
  for (int64_t n = 0; n < p.N; ++n) {
    const int64_t a = index_at(cu, t, n), b = index_at(cu, t, n + 1);
    if (b < a)
      return Err() << op << ": cu_seqlens must be non-decreasing, got cu_seqlens[" << n + 1 << "] = " << b
                   << " after cu_seqlens[" << n << "] = " << a;
    if (b > p.T)  // checked here already: no token range may pass T
      return Err() << op << ": cu_seqlens must end at T = " << p.T << ", got cu_seqlens[" << n + 1 << "] = " << b;
    plan->sequences[n] = {n, a, b - a};
  }
  if (index_at(cu, t, p.N) != p.T)
    return Err() << op << ": cu_seqlens must end at T = " << p.T << ", got cu_seqlens[" << p.N
                 << "] = " << index_at(cu, t, p.N);
  return "";
}

std::string check_slots_in_range(const char* op, const DeltaRuleParams& p, const void* idx) {
  const int64_t cols = std::max<int64_t>(1, p.index_columns);
  for (int64_t i = 0; i < p.N * cols; ++i) {
    const int64_t s = index_at(idx, p.indices_type, i);
    if (s >= 0 && s < p.slots) continue;
    Err e;
    e << op << ": ssm_state_indices[" << i / cols;
    if (p.index_columns > 0) e << "," << i % cols;
    return e << "] = " << s << " is out of range for a pool of " << p.slots << " slots";
  }
  return "";
}

// Read and write slots of the sequences; the plan keeps the sequences that run (pool: length > 0).
std::string plan_slots(const char* op, const DeltaRuleParams& p, const void* idx, const void* acc,
                       DeltaRulePlan* plan) {
  const int64_t cols = p.index_columns;
  std::vector<DeltaRuleSequence> kept;
  for (int64_t n = 0; n < p.N; ++n) {
    DeltaRuleSequence s = plan->sequences[n];
    if (idx == nullptr) {
      s.read_slot = p.has_initial_state ? n : -1;
      s.write_slot = n;
    } else if (cols == 0) {
      s.read_slot = s.write_slot = index_at(idx, p.indices_type, n);
    } else {
      if (s.length > cols)
        return Err() << op << ": ssm_state_indices has " << cols << " columns, fewer than the " << s.length
                     << " tokens of sequence " << n;
      int64_t first = 0;
      if (acc != nullptr) {
        const int64_t a = index_at(acc, p.accepted_type, n);
        if (a < 1 || a > cols)
          return Err() << op << ": num_accepted_tokens[" << n << "] = " << a << " is out of range 1.." << cols
                       << " (the columns of ssm_state_indices)";
        first = a - 1;
      }
      s.read_slot = index_at(idx, p.indices_type, n * cols + first);
      s.write_slot = -1;
      s.token_slots = (int64_t)plan->token_slots.size();
      for (int64_t t = 0; t < s.length; ++t) plan->token_slots.push_back(index_at(idx, p.indices_type, n * cols + t));
    }
    if (idx == nullptr || s.length > 0) kept.push_back(s);
  }
  plan->sequences.swap(kept);
  return "";
}

// No slot written twice; with 2-D indices, no sequence starting from a slot that another sequence writes (the
// sequences run concurrently).
std::string check_writes(const char* op, const DeltaRuleParams& p, const DeltaRulePlan& plan) {
  std::vector<std::tuple<int64_t, int64_t, int64_t>> writes;  // slot, sequence, token
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    const DeltaRuleSequence& s = plan.sequences[i];
    if (s.write_slot >= 0) writes.emplace_back(s.write_slot, s.number, -1);
    else
      for (int64_t t = 0; t < s.length; ++t) writes.emplace_back(plan.token_slots[s.token_slots + t], s.number, t);
  }
  std::sort(writes.begin(), writes.end());
  for (size_t i = 1; i < writes.size(); ++i) {
    const auto& [slot, n0, t0] = writes[i - 1];
    const auto& [slot1, n1, t1] = writes[i];
    if (slot != slot1) continue;
    Err e;
    e << op << ": ssm_state_indices writes slot " << slot << " twice in one call (";
    if (t0 < 0) return e << "sequences " << n0 << " and " << n1 << ")";
    return e << "sequence " << n0 << " token " << t0 << " and sequence " << n1 << " token " << t1 << ")";
  }
  if (p.index_columns == 0) return "";
  for (const DeltaRuleSequence& s : plan.sequences) {
    const int64_t r = s.read_slot;
    auto w = std::lower_bound(writes.begin(), writes.end(), std::make_tuple(r, INT64_MIN, INT64_MIN));
    for (; w != writes.end() && std::get<0>(*w) == r; ++w)
      if (std::get<1>(*w) != s.number)
        return Err() << op << ": sequence " << s.number << " starts from slot " << r << ", which sequence "
                     << std::get<1>(*w) << " writes in the same call";
  }
  return "";
}

}  // namespace

std::string build_delta_rule_plan(const char* op, const DeltaRuleParams& p, const void* cu_seqlens,
                                  const void* ssm_state_indices, const void* num_accepted_tokens, DeltaRulePlan* out) {
  DeltaRulePlan plan;
  GDN_TRY(plan_token_ranges(op, p, cu_seqlens, &plan));
  if (ssm_state_indices != nullptr) GDN_TRY(check_slots_in_range(op, p, ssm_state_indices));
  GDN_TRY(plan_slots(op, p, ssm_state_indices, num_accepted_tokens, &plan));
  if (ssm_state_indices != nullptr) GDN_TRY(check_writes(op, p, plan));
  for (const DeltaRuleSequence& s : plan.sequences) plan.max_length = std::max(plan.max_length, s.length);
  // Longest first: the work items of long sequences start early, short ones fill the threads at the end.
  std::stable_sort(plan.sequences.begin(), plan.sequences.end(),
                   [](const DeltaRuleSequence& a, const DeltaRuleSequence& b) { return a.length > b.length; });
  *out = std::move(plan);
  return "";
}

// ---------------------------------------------------------------------------------------------------
std::string validate_causal_conv1d_attrs(const CausalConv1dAttrs& a) {
  const char* op = op::kCausalConv1d;
  if (a.activation != "silu" && a.activation != "none")
    return Err() << op << ": attribute activation must be \"silu\" or \"none\", got \"" << a.activation << "\"";
  if (a.state_size < 0 || a.state_size > causal_conv1d::kMaxStateSize)
    return Err() << op << ": attribute state_size must be in 0.." << causal_conv1d::kMaxStateSize << " (0 means W-1), got "
                 << a.state_size;
  return "";
}

namespace {

std::string check_index_vector(const char* op, int i, const TensorInfo& t, int64_t n, const char* what) {
  const char* name = causal_conv1d::kInputNames[i];
  if (t.dtype != DType::kInt32 && t.dtype != DType::kInt64)
    return Err() << op << ": " << name << " must be int32 or int64, got " << dtype_name(t.dtype);
  if (t.shape.size() != 1 || t.shape[0] != n)
    return Err() << op << ": " << name << " has shape " << shape_str(t.shape) << ", expected [" << n << "] " << what;
  return "";
}

// Inputs 4-7 (opset 2): types and shapes; sets N, slots and the serving fields of *p.
std::string validate_conv_serving(const TensorInfo* inputs, size_t n, CausalConv1dParams* p) {
  using namespace causal_conv1d;
  const char* op = op::kCausalConv1d;
  const TensorInfo& cu = *get(inputs, n, kCuSeqlens);
  const TensorInfo& idx = *get(inputs, n, kConvStateIndices);
  const TensorInfo& acc = *get(inputs, n, kNumAcceptedTokens);
  const TensorInfo& init = *get(inputs, n, kHasInitialState);
  p->N = p->B;
  if (cu.present) {
    if (cu.dtype != DType::kInt32 && cu.dtype != DType::kInt64)
      return Err() << op << ": cu_seqlens must be int32 or int64, got " << dtype_name(cu.dtype);
    if (cu.shape.size() != 1 || cu.shape[0] < 1)
      return Err() << op << ": cu_seqlens must have shape [N+1] with N >= 0, got " << shape_str(cu.shape);
    if (p->B != 1)
      return Err() << op << ": x has batch " << p->B << ", but with cu_seqlens (input 4) x must be [1,C,T_total]";
    p->N = cu.shape[0] - 1;
    p->cu_seqlens_type = cu.dtype;
  }
  const char* per_seq = "(one per sequence)";
  if (idx.present) {
    GDN_TRY(check_index_vector(op, kConvStateIndices, idx, p->N, per_seq));
    if (!get(inputs, n, kConvState)->present)
      return Err() << op << ": conv_state_indices (input 5) needs conv_state (input 3), the pool it indexes";
    p->indices_type = idx.dtype;
  }
  if (acc.present) {
    GDN_TRY(check_index_vector(op, kNumAcceptedTokens, acc, p->N, per_seq));
    if (!get(inputs, n, kConvState)->present)
      return Err() << op << ": num_accepted_tokens (input 6) needs conv_state (input 3)";
    p->accepted_type = acc.dtype;
  }
  if (init.present) {
    if (init.dtype != DType::kBool)
      return Err() << op << ": has_initial_state must be bool, got " << dtype_name(init.dtype);
    if (init.shape.size() != 1 || init.shape[0] != p->N)
      return Err() << op << ": has_initial_state has shape " << shape_str(init.shape) << ", expected [" << p->N << "] "
                   << per_seq;
    p->has_initial_state_flags = true;
  }
  return "";
}

// conv_state's dims: [slots,C,S] with a pool, else [N,C,S]; sets p->S and p->slots.
std::string validate_conv_state(const CausalConv1dAttrs& attrs, const TensorInfo& st, CausalConv1dParams* p) {
  const char* op = op::kCausalConv1d;
  const char* dims = p->pool() ? "[slots,C,S]" : p->packed() ? "[N,C,S]" : "[B,C,S]";
  if (st.dtype != p->x_type)
    return Err() << op << ": conv_state has element type " << dtype_name(st.dtype) << ", expected "
                 << dtype_name(p->x_type) << " (same as x)";
  GDN_TRY(check_rank(op, "conv_state", st, 3, dims));
  if (p->pool()) {
    if (st.shape[1] != p->C)
      return Err() << op << ": conv_state has shape " << shape_str(st.shape) << ", expected [slots," << p->C << ",S]";
  } else if (st.shape[0] != p->N || st.shape[1] != p->C) {
    return Err() << op << ": conv_state has shape " << shape_str(st.shape) << ", expected [" << p->N << "," << p->C
                 << ",S]";
  }
  p->slots = st.shape[0];
  p->S = st.shape[2];
  if (p->S < p->W - 1)
    return Err() << op << ": conv_state has " << p->S << " positions, fewer than W-1 = " << (p->W - 1);
  if (attrs.state_size != 0 && attrs.state_size != p->S)
    return Err() << op << ": attribute state_size is " << attrs.state_size << " but conv_state has " << p->S
                 << " positions";
  return "";
}

}  // namespace

std::string validate_causal_conv1d(const CausalConv1dAttrs& attrs, const TensorInfo* inputs, size_t n,
                                   CausalConv1dParams* out, int opset) {
  using namespace causal_conv1d;
  const char* op = op::kCausalConv1d;
  GDN_TRY(validate_causal_conv1d_attrs(attrs));
  if (n > kNumInputs) return Err() << op << ": expected at most " << kNumInputs << " inputs, got " << n;
  if (opset < kFirstServingOpset)
    for (size_t i = kNumInputsOpset1; i < n; ++i)
      if (inputs[i].present)
        return Err() << op << ": input " << i << " (" << kInputNames[i] << ") is defined from gdn opset "
                     << kFirstServingOpset << " on; this node is gdn opset " << opset;
  GDN_TRY(check_required(op, inputs, n, kNumRequiredInputs, kInputNames));
  const TensorInfo& x = *get(inputs, n, kX);
  const TensorInfo& w = *get(inputs, n, kWeight);
  const TensorInfo& bias = *get(inputs, n, kBias);
  const TensorInfo& st = *get(inputs, n, kConvState);
  GDN_TRY(check_float(op, "x", x));
  GDN_TRY(check_float(op, "weight", w));
  GDN_TRY(check_rank(op, "x", x, 3, "[B,C,T]"));
  CausalConv1dParams p;
  p.B = x.shape[0];
  p.C = x.shape[1];
  p.T = x.shape[2];
  if (w.shape.size() == 3) {
    if (w.shape[0] != p.C || w.shape[1] != 1 || w.shape[2] < 1)
      return Err() << op << ": weight has shape " << shape_str(w.shape) << ", expected [" << p.C << ",1,W] with W >= 1";
    p.W = w.shape[2];
  } else if (w.shape.size() == 2) {
    if (w.shape[0] != p.C || w.shape[1] < 1)
      return Err() << op << ": weight has shape " << shape_str(w.shape) << ", expected [" << p.C << ",W] with W >= 1";
    p.W = w.shape[1];
  } else {
    return Err() << op << ": weight must have shape [C,1,W] or [C,W], got " << shape_str(w.shape);
  }
  p.x_type = x.dtype;
  p.weight_type = w.dtype;
  if (w.dtype != x.dtype && w.dtype != DType::kFloat32)
    return Err() << op << ": weight has element type " << dtype_name(w.dtype) << ", expected " << dtype_name(x.dtype)
                 << " (same as x) or float32";
  p.has_bias = bias.present;
  if (bias.present) {
    GDN_TRY(check_float(op, "bias", bias));
    if (bias.dtype != w.dtype)
      return Err() << op << ": bias has element type " << dtype_name(bias.dtype) << ", expected " << dtype_name(w.dtype)
                   << " (same as weight)";
    GDN_TRY(check_shape(op, "bias", bias, {p.C}, "[C]"));
    p.bias_type = bias.dtype;
  }
  GDN_TRY(validate_conv_serving(inputs, n, &p));
  p.has_state = st.present;
  if (st.present) {
    GDN_TRY(validate_conv_state(attrs, st, &p));
  } else {
    p.slots = p.N;
    p.S = attrs.state_size == 0 ? p.W - 1 : attrs.state_size;
    if (p.S < p.W - 1)
      return Err() << op << ": attribute state_size is " << p.S << ", fewer than W-1 = " << (p.W - 1);
  }
  p.silu = attrs.activation == "silu";
  *out = p;
  return "";
}

namespace {

int64_t index_at(DType t, const void* data, int64_t i) {
  return t == DType::kInt32 ? static_cast<const int32_t*>(data)[i] : static_cast<const int64_t*>(data)[i];
}

// Token ranges of the sequences: cu_seqlens checked, or B rows of T tokens.
std::string conv_token_ranges(const CausalConv1dParams& p, const void* cu, CausalConv1dPlan* plan) {
  const char* op = op::kCausalConv1d;
  auto& seqs = plan->sequences;
  seqs.assign(static_cast<size_t>(p.N), CausalConv1dSequence{});
  if (!p.packed()) {
    for (int64_t n = 0; n < p.N; ++n) seqs[n].batch = n, seqs[n].length = p.T;
    plan->max_length = p.N > 0 ? p.T : 0;
    return "";
  }
  const int64_t first = index_at(p.cu_seqlens_type, cu, 0);
  if (first != 0) return Err() << op << ": cu_seqlens must start at 0, got " << first;
  int64_t prev = 0;
  for (int64_t n = 0; n < p.N; ++n) {
    const int64_t next = index_at(p.cu_seqlens_type, cu, n + 1);
    if (next < prev)
      return Err() << op << ": cu_seqlens must be non-decreasing, got cu_seqlens[" << (n + 1) << "] = " << next
                   << " after " << prev;
    if (next > p.T)
      return Err() << op << ": cu_seqlens[" << (n + 1) << "] = " << next << " is past the end of x's " << p.T
                   << " tokens";
    seqs[n].token0 = prev;
    seqs[n].length = next - prev;
    plan->max_length = std::max(plan->max_length, next - prev);
    prev = next;
  }
  if (prev != p.T) return Err() << op << ": cu_seqlens must end at T = " << p.T << ", got " << prev;
  return "";
}

// Pool slots: in range, and each written by one sequence (sequences of length 0 write nothing).
std::string conv_slots(const CausalConv1dParams& p, const void* indices, const bool* has_init, CausalConv1dPlan* plan) {
  const char* op = op::kCausalConv1d;
  std::vector<int64_t> writer(p.pool() ? static_cast<size_t>(p.slots) : 0, -1);
  for (int64_t n = 0; n < p.N; ++n) {
    CausalConv1dSequence& s = plan->sequences[n];
    int64_t slot = n;
    if (p.pool()) {
      slot = index_at(p.indices_type, indices, n);
      if (slot < 0 || slot >= p.slots)
        return Err() << op << ": conv_state_indices[" << n << "] = " << slot << " is out of range for a pool of "
                     << p.slots << " slots";
      if (s.length > 0 && writer[slot] >= 0)
        return Err() << op << ": conv_state_indices[" << n << "] = " << slot << " is also the slot of sequence "
                     << writer[slot] << " (each slot is written by one sequence)";
      if (s.length > 0) writer[slot] = n;
    }
    s.write_slot = slot;
    const bool from_state = p.has_state && (has_init == nullptr || has_init[n]);
    s.read_slot = from_state ? slot : -1;
  }
  return "";
}

// Speculative steps: the accepted count picks the history window, and the state must hold it and the drafts.
std::string conv_accepted(const CausalConv1dParams& p, const void* accepted, CausalConv1dPlan* plan) {
  const char* op = op::kCausalConv1d;
  const int64_t max_accepted = p.S - p.W + 2;
  for (int64_t n = 0; n < p.N; ++n) {
    CausalConv1dSequence& s = plan->sequences[n];
    const int64_t a = index_at(p.accepted_type, accepted, n);
    if (s.length == 0) continue;
    if (a < 1 || a > max_accepted)
      return Err() << op << ": num_accepted_tokens[" << n << "] = " << a << " is out of range 1.." << max_accepted
                   << " (S-W+2 for conv_state of " << p.S << " positions and W = " << p.W << ")";
    if (p.W - 2 + s.length > p.S)
      return Err() << op << ": sequence " << n << " has " << s.length << " tokens, but a speculative step needs W-2+"
                   << s.length << " = " << (p.W - 2 + s.length) << " conv_state positions, got " << p.S;
    s.accepted = a;
  }
  return "";
}

}  // namespace

std::string build_causal_conv1d_plan(const CausalConv1dParams& p, const void* cu_seqlens, const void* indices,
                                     const void* num_accepted_tokens, const bool* has_initial_state,
                                     CausalConv1dPlan* out) {
  CausalConv1dPlan plan;
  GDN_TRY(conv_token_ranges(p, cu_seqlens, &plan));
  GDN_TRY(conv_slots(p, indices, has_initial_state, &plan));
  if (p.speculative()) GDN_TRY(conv_accepted(p, num_accepted_tokens, &plan));
  if (p.pool()) {
    auto& seqs = plan.sequences;
    seqs.erase(std::remove_if(seqs.begin(), seqs.end(), [](const CausalConv1dSequence& s) { return s.length == 0; }),
               seqs.end());
  }
  *out = std::move(plan);
  return "";
}

// ---------------------------------------------------------------------------------------------------
std::string validate_gating(const TensorInfo* inputs, size_t n, GatingParams* out) {
  using namespace gating;
  const char* op = op::kGatedDeltaGating;
  if (n > kNumInputs) return Err() << op << ": expected " << kNumInputs << " inputs, got " << n;
  GDN_TRY(check_required(op, inputs, n, kNumRequiredInputs, kInputNames));
  const TensorInfo& a = inputs[kA];
  const TensorInfo& b = inputs[kB];
  GDN_TRY(check_float(op, "a", a));
  GDN_TRY(check_float(op, "b", b));
  GDN_TRY(check_f32(op, "A_log", inputs[kALog]));
  GDN_TRY(check_f32(op, "dt_bias", inputs[kDtBias]));
  GDN_TRY(check_rank(op, "a", a, 3, "[B,T,H]"));
  GDN_TRY(check_shape(op, "b", b, a.shape, "(same as a [B,T,H])"));
  GatingParams p;
  p.H = a.shape[2];
  int64_t numel = 0;
  if (!checked_numel(a.shape, &numel)) return Err() << op << ": a of shape " << shape_str(a.shape) << " is too large";
  p.N = numel == 0 ? 0 : numel / p.H;  // no rows at all when any dim is 0 (never a loop over empty rows)
  GDN_TRY(check_shape(op, "A_log", inputs[kALog], {p.H}, "[H]"));
  GDN_TRY(check_shape(op, "dt_bias", inputs[kDtBias], {p.H}, "[H]"));
  p.a_type = a.dtype;
  p.b_type = b.dtype;
  p.shape = a.shape;
  *out = p;
  return "";
}

// ---------------------------------------------------------------------------------------------------
std::string validate_rms_norm_attrs(float epsilon) {
  if (!std::isfinite(epsilon) || epsilon < 0.f)
    return Err() << op::kGatedRMSNorm << ": attribute epsilon must be a finite value >= 0, got " << epsilon;
  return "";
}

std::string validate_rms_norm(float epsilon, const TensorInfo* inputs, size_t n, RMSNormParams* out) {
  using namespace rms_norm;
  const char* op = op::kGatedRMSNorm;
  GDN_TRY(validate_rms_norm_attrs(epsilon));
  if (n > kNumInputs) return Err() << op << ": expected " << kNumInputs << " inputs, got " << n;
  GDN_TRY(check_required(op, inputs, n, kNumRequiredInputs, kInputNames));
  const TensorInfo& x = inputs[kX];
  GDN_TRY(check_float(op, "x", x));
  if (inputs[kGate].dtype != x.dtype)
    return Err() << op << ": gate has element type " << dtype_name(inputs[kGate].dtype) << ", expected " << dtype_name(x.dtype)
                 << " (same as x)";
  if (inputs[kWeight].dtype != x.dtype && inputs[kWeight].dtype != DType::kFloat32)
    return Err() << op << ": weight has element type " << dtype_name(inputs[kWeight].dtype) << ", expected "
                 << dtype_name(x.dtype) << " (same as x) or float32";
  if (x.shape.empty()) return Err() << op << ": x must have rank >= 1 [...,D], got a scalar";
  for (int64_t d : x.shape)
    if (d < 0) return Err() << op << ": x has a negative dimension in shape " << shape_str(x.shape);
  GDN_TRY(check_shape(op, "gate", inputs[kGate], x.shape, "(same as x)"));
  RMSNormParams p;
  p.D = x.shape.back();
  GDN_TRY(check_shape(op, "weight", inputs[kWeight], {p.D}, "[D] (last dim of x)"));
  int64_t numel = 0;
  if (!checked_numel(x.shape, &numel)) return Err() << op << ": x of shape " << shape_str(x.shape) << " is too large";
  p.N = p.D == 0 ? 0 : numel / p.D;
  p.epsilon = epsilon;
  p.x_type = x.dtype;
  p.gate_type = inputs[kGate].dtype;
  p.weight_type = inputs[kWeight].dtype;
  p.shape = x.shape;
  *out = p;
  return "";
}

}  // namespace gdn
