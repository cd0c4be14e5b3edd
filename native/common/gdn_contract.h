// gdn-fuse op contract, opset "gdn" version 1, in code. Shared by every backend (cpu, later cuda / ascend)
// and by the ONNX Runtime glue. Pure C++17: no ONNX Runtime types. docs/ops.md is the prose version.
#pragma once
#include <atomic>
#include <cstddef>
#include <exception>
#include <cstdint>
#include <string>
#include <vector>

namespace gdn {

constexpr const char* kDomain = "gdn";
constexpr int kOpsetVersion = 1;

namespace op {
constexpr const char* kChunkGatedDeltaRule = "ChunkGatedDeltaRule";
constexpr const char* kRecurrentGatedDeltaRule = "RecurrentGatedDeltaRule";
constexpr const char* kCausalConv1d = "CausalConv1d";
constexpr const char* kGatedDeltaGating = "GatedDeltaGating";
constexpr const char* kGatedRMSNorm = "GatedRMSNorm";
}  // namespace op

// Element types the contract talks about. Values are NOT the ONNX enum; the glue maps them.
enum class DType { kUndefined = 0, kFloat32, kFloat16, kBFloat16, kInt32, kInt64, kOther };
const char* dtype_name(DType t);
inline bool is_float_type(DType t) { return t == DType::kFloat32 || t == DType::kFloat16 || t == DType::kBFloat16; }

// What a backend knows about one input before running: presence, element type, shape.
struct TensorInfo {
  bool present = false;
  DType dtype = DType::kUndefined;
  std::vector<int64_t> shape;
  int64_t numel() const;
};
std::string shape_str(const std::vector<int64_t>& shape);  // "[1,2,3]"

// Overflow-checked size arithmetic for every element count and byte size derived from dims or attributes:
// false (and *out untouched) when an operand is negative or the result does not fit in int64.
bool checked_mul(int64_t a, int64_t b, int64_t* out);
bool checked_add(int64_t a, int64_t b, int64_t* out);
// Element count of a shape: 0 when any dim is 0 (whatever the others), false when the product overflows.
bool checked_numel(const std::vector<int64_t>& shape, int64_t* out);
// Checks that tensors of these shapes and element sizes fit in memory at all (numel * elem_size in int64);
// "" when they do, else "<op>: <name> of shape [..] is too large (..)".
std::string check_tensor_size(const char* op, const char* name, const std::vector<int64_t>& shape, int64_t elem_size);

// Attribute types as the contract declares them (the ONNX AttributeProto types the ops use).
enum class AttrType { kInt, kFloat, kString };
const char* attr_type_name(AttrType t);  // "an int", "a float", "a string"
struct AttrSpec {
  const char* name;
  AttrType type;
};

// ---------------------------------------------------------------------------------------------------
// ChunkGatedDeltaRule / RecurrentGatedDeltaRule (same signature)
namespace delta_rule {
enum Input : int {
  kQuery = 0,          // [B,T,Hk,K]
  kKey = 1,            // [B,T,Hk,K]
  kValue = 2,          // [B,T,Hv,V], Hk divides Hv
  kG = 3,              // [B,T,Hv] float32, log-space decay
  kBeta = 4,           // [B,T,Hv]
  kInitialState = 5,   // optional float32 [B,Hv,K,V] ("kv") or [B,Hv,V,K] ("vk")
  kCuSeqlens = 6,      // reserved (opset 1): int64 [N+1]
  kSsmStateIndices = 7,     // reserved (opset 1): int32/int64 [N]
  kNumAcceptedTokens = 8,   // reserved (opset 1, recurrent only): int32/int64 [N]
  kNumInputs = 9
};
constexpr const char* kInputNames[kNumInputs] = {"query", "key", "value", "g", "beta", "initial_state",
                                                 "cu_seqlens", "ssm_state_indices", "num_accepted_tokens"};
enum Output : int { kOutput = 0, kFinalState = 1, kNumOutputs = 2 };
constexpr const char* kOutputNames[kNumOutputs] = {"output", "final_state"};
constexpr int kNumRequiredInputs = kBeta + 1;          // query .. beta
constexpr int kNumChunkInputs = kNumAcceptedTokens;    // ChunkGatedDeltaRule has no num_accepted_tokens

constexpr const char* kAttrScale = "scale";                  // float, 0 => 1/sqrt(K)
constexpr const char* kAttrUseQkL2norm = "use_qk_l2norm";    // int 0/1
constexpr const char* kAttrStateLayout = "state_layout";     // "kv" | "vk"
constexpr const char* kAttrChunkSize = "chunk_size";         // int, chunk op only (hint)
constexpr float kDefaultScale = 0.0f;
constexpr int64_t kDefaultUseQkL2norm = 0;
constexpr const char* kDefaultStateLayout = "kv";
constexpr int64_t kDefaultChunkSize = 64;
constexpr int64_t kMaxChunkSize = 1024;
constexpr AttrSpec kChunkAttrs[] = {{kAttrScale, AttrType::kFloat}, {kAttrUseQkL2norm, AttrType::kInt},
                                    {kAttrStateLayout, AttrType::kString}, {kAttrChunkSize, AttrType::kInt}};
constexpr AttrSpec kRecurrentAttrs[] = {{kAttrScale, AttrType::kFloat}, {kAttrUseQkL2norm, AttrType::kInt},
                                        {kAttrStateLayout, AttrType::kString}};
constexpr float kL2normEps = 1e-6f;  // x * rsqrt(sum(x^2) + eps), as transformers' l2norm
constexpr int64_t kAscendMaxRecurrentTokens = 8;  // documented limit of aclnnRecurrentGatedDeltaRule
}  // namespace delta_rule

enum class StateLayout { kKV, kVK };

struct DeltaRuleAttrs {
  float scale = delta_rule::kDefaultScale;
  int64_t use_qk_l2norm = delta_rule::kDefaultUseQkL2norm;
  std::string state_layout = delta_rule::kDefaultStateLayout;
  int64_t chunk_size = delta_rule::kDefaultChunkSize;
};

// Fully resolved problem description handed to kernels.
struct DeltaRuleParams {
  int64_t B = 0, T = 0, Hk = 0, Hv = 0, K = 0, V = 0;
  float scale = 1.f;  // resolved (never 0)
  bool use_qk_l2norm = false;
  StateLayout layout = StateLayout::kKV;
  int64_t chunk_size = 64;
  DType dtype = DType::kFloat32;  // query/key/value/beta/output
  bool has_initial_state = false;
  std::vector<int64_t> output_shape() const { return {B, T, Hv, V}; }
  std::vector<int64_t> state_shape() const {
    return layout == StateLayout::kKV ? std::vector<int64_t>{B, Hv, K, V} : std::vector<int64_t>{B, Hv, V, K};
  }
};

struct DeltaRuleTensors {
  const void* query = nullptr;
  const void* key = nullptr;
  const void* value = nullptr;
  const float* g = nullptr;
  const void* beta = nullptr;
  const float* initial_state = nullptr;  // may be null (zeros)
  void* output = nullptr;
  float* final_state = nullptr;  // may be null (not requested)
};

// Attribute checks (kernel creation time). Returns "" when valid.
std::string validate_delta_rule_attrs(const char* op_name, bool is_chunk, const DeltaRuleAttrs& attrs);
// Input checks (run time). inputs has n entries (missing trailing inputs = absent). Fills *out.
std::string validate_delta_rule(const char* op_name, bool is_chunk, const DeltaRuleAttrs& attrs,
                                const TensorInfo* inputs, size_t n, DeltaRuleParams* out);

// ---------------------------------------------------------------------------------------------------
// CausalConv1d
namespace causal_conv1d {
enum Input : int { kX = 0, kWeight = 1, kBias = 2, kConvState = 3, kNumInputs = 4 };
constexpr const char* kInputNames[kNumInputs] = {"x", "weight", "bias", "conv_state"};
enum Output : int { kY = 0, kConvStateOut = 1, kNumOutputs = 2 };
constexpr const char* kOutputNames[kNumOutputs] = {"y", "conv_state_out"};
constexpr int kNumRequiredInputs = kWeight + 1;  // x, weight
constexpr const char* kAttrActivation = "activation";  // "silu" | "none"
constexpr const char* kAttrStateSize = "state_size";   // int, 0 => W-1 (or conv_state's last dim)
constexpr const char* kDefaultActivation = "silu";
constexpr int64_t kDefaultStateSize = 0;
// Upper bound of state_size (checked when the session is created): far above any conv kernel's W - 1, and
// small enough that every size derived from it stays far from overflow.
constexpr int64_t kMaxStateSize = int64_t{1} << 24;
constexpr AttrSpec kAttrs[] = {{kAttrActivation, AttrType::kString}, {kAttrStateSize, AttrType::kInt}};
}  // namespace causal_conv1d

struct CausalConv1dAttrs {
  std::string activation = causal_conv1d::kDefaultActivation;
  int64_t state_size = causal_conv1d::kDefaultStateSize;
};

struct CausalConv1dParams {
  int64_t B = 0, C = 0, T = 0, W = 0, S = 0;
  bool silu = true;
  DType x_type = DType::kFloat32, weight_type = DType::kFloat32, bias_type = DType::kFloat32;
  bool has_bias = false, has_state = false;
  std::vector<int64_t> y_shape() const { return {B, C, T}; }
  std::vector<int64_t> state_shape() const { return {B, C, S}; }
};

struct CausalConv1dTensors {
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;        // may be null
  const void* conv_state = nullptr;  // may be null (zeros); element type = x's
  void* y = nullptr;
  void* conv_state_out = nullptr;    // may be null; element type = x's
};

std::string validate_causal_conv1d_attrs(const CausalConv1dAttrs& attrs);
std::string validate_causal_conv1d(const CausalConv1dAttrs& attrs, const TensorInfo* inputs, size_t n,
                                   CausalConv1dParams* out);

// ---------------------------------------------------------------------------------------------------
// GatedDeltaGating
namespace gating {
enum Input : int { kA = 0, kB = 1, kALog = 2, kDtBias = 3, kNumInputs = 4 };
constexpr const char* kInputNames[kNumInputs] = {"a", "b", "A_log", "dt_bias"};
enum Output : int { kG = 0, kBeta = 1, kNumOutputs = 2 };
constexpr const char* kOutputNames[kNumOutputs] = {"g", "beta"};
constexpr int kNumRequiredInputs = kNumInputs;
constexpr float kSoftplusThreshold = 20.f;  // torch softplus: x for x > 20
}  // namespace gating

struct GatingParams {
  int64_t N = 0;  // number of (b,t) rows
  int64_t H = 0;
  DType a_type = DType::kFloat32, b_type = DType::kFloat32;
  std::vector<int64_t> shape;  // [B,T,H]
};
struct GatingTensors {
  const void* a = nullptr;
  const void* b = nullptr;
  const float* A_log = nullptr;
  const float* dt_bias = nullptr;
  float* g = nullptr;      // may be null
  void* beta = nullptr;    // may be null; element type = b's
};
std::string validate_gating(const TensorInfo* inputs, size_t n, GatingParams* out);

// ---------------------------------------------------------------------------------------------------
// GatedRMSNorm
namespace rms_norm {
enum Input : int { kX = 0, kGate = 1, kWeight = 2, kNumInputs = 3 };
constexpr const char* kInputNames[kNumInputs] = {"x", "gate", "weight"};
enum Output : int { kY = 0, kNumOutputs = 1 };
constexpr const char* kOutputNames[kNumOutputs] = {"y"};
constexpr int kNumRequiredInputs = kNumInputs;
constexpr const char* kAttrEpsilon = "epsilon";
constexpr float kDefaultEpsilon = 1e-6f;
constexpr AttrSpec kAttrs[] = {{kAttrEpsilon, AttrType::kFloat}};
}  // namespace rms_norm

struct RMSNormParams {
  int64_t N = 0;  // rows
  int64_t D = 0;
  float epsilon = 1e-6f;
  DType x_type = DType::kFloat32, gate_type = DType::kFloat32, weight_type = DType::kFloat32;
  std::vector<int64_t> shape;
};
struct RMSNormTensors {
  const void* x = nullptr;
  const void* gate = nullptr;
  const void* weight = nullptr;
  void* y = nullptr;
};
std::string validate_rms_norm_attrs(float epsilon);
std::string validate_rms_norm(float epsilon, const TensorInfo* inputs, size_t n, RMSNormParams* out);

// ---------------------------------------------------------------------------------------------------
// Parallel loop supplied by the host runtime (ORT's intra-op pool, a test harness, ...).
// run(impl, fn, total, arg) must call fn(arg, i) exactly once for every i < total, possibly concurrently.
// An exception thrown by a work item (e.g. std::bad_alloc for scratch) never unwinds through the host's pool: the
// first one is kept, the remaining items are skipped, and it is rethrown on the calling thread.
struct Parallel {
  void* impl = nullptr;
  void (*run)(void* impl, void (*fn)(void*, size_t), size_t total, void* arg) = nullptr;

  template <class F>
  void for_each(size_t total, F& f) const {
    struct Guarded {
      F* f = nullptr;
      std::atomic<bool> failed{false};
      std::exception_ptr error;
    } g;
    g.f = &f;
    auto tramp = [](void* a, size_t i) {
      auto* gd = static_cast<Guarded*>(a);
      if (gd->failed.load(std::memory_order_relaxed)) return;
      try {
        (*gd->f)(i);
      } catch (...) {
        if (!gd->failed.exchange(true)) gd->error = std::current_exception();
      }
    };
    if (run == nullptr || total <= 1) {
      for (size_t i = 0; i < total; ++i) tramp(&g, i);
    } else {
      run(impl, tramp, total, &g);
    }
    if (g.error) std::rethrow_exception(g.error);
  }
};

}  // namespace gdn
