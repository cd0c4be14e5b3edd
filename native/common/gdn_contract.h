// gdn-fuse op contract, opset "gdn" versions 1 and 2, in code. Shared by every backend (cpu, later cuda / ascend)
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
// gdn opset 2: the delta-rule ops' inputs 6-8 take the serving engines' meaning (packed sequences, state pools,
// speculative decoding). Opset-1 nodes keep refusing them.
constexpr int kOpsetVersionServing = 2;

namespace op {
constexpr const char* kChunkGatedDeltaRule = "ChunkGatedDeltaRule";
constexpr const char* kRecurrentGatedDeltaRule = "RecurrentGatedDeltaRule";
constexpr const char* kCausalConv1d = "CausalConv1d";
constexpr const char* kGatedDeltaGating = "GatedDeltaGating";
constexpr const char* kGatedRMSNorm = "GatedRMSNorm";
}  // namespace op

// Element types the contract talks about. Values are NOT the ONNX enum; the glue maps them.
enum class DType { kUndefined = 0, kFloat32, kFloat16, kBFloat16, kInt32, kInt64, kOther, kBool };
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
  kCuSeqlens = 6,      // opset 2: int32/int64 [N+1], packed sequences (B = 1); reserved in opset 1
  kSsmStateIndices = 7,     // opset 2: int32/int64 [N], or [N,Tmax] (recurrent): state pool slots; reserved in 1
  kNumAcceptedTokens = 8,   // opset 2, recurrent with 2-D indices: int32/int64 [N]; reserved in opset 1
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
  // Serving inputs (opset 2). Without cu_seqlens there are N = B sequences of T tokens each.
  int64_t N = 0;                  // sequences
  int64_t slots = 0;              // rows of initial_state / final_state: B, N, or the pool's S with indices
  DType cu_seqlens_type = DType::kUndefined;          // kUndefined: absent
  DType indices_type = DType::kUndefined;             // kUndefined: absent
  int64_t index_columns = 0;                          // 0: 1-D indices [N]; Tmax for 2-D [N,Tmax]
  DType accepted_type = DType::kUndefined;            // kUndefined: absent
  bool pool() const { return indices_type != DType::kUndefined; }
  std::vector<int64_t> output_shape() const { return {B, T, Hv, V}; }
  std::vector<int64_t> state_shape() const {
    return layout == StateLayout::kKV ? std::vector<int64_t>{slots, Hv, K, V} : std::vector<int64_t>{slots, Hv, V, K};
  }
};

// One sequence of a call, resolved from the serving inputs (build_delta_rule_plan).
struct DeltaRuleSequence {
  int64_t number = 0;       // n: its place in the call's sequences (messages)
  int64_t token0 = 0;       // its first token on the flattened [B*T] token axis
  int64_t length = 0;       // its tokens: [token0, token0 + length)
  int64_t read_slot = -1;   // the state row it starts from; -1: zeros (no initial_state)
  int64_t write_slot = -1;  // the state row its end state goes to; -1: per token (2-D indices)
  int64_t token_slots = 0;  // 2-D indices: offset in DeltaRulePlan::token_slots of its first token's slot
};

// The sequences a kernel runs. Without indices every sequence writes its own state row (a sequence of length 0
// copies its initial state); with indices (a pool) the sequences of length 0 are left out, and the kernel's
// caller has made final_state a copy of the pool first, unless it is the pool itself (in place).
struct DeltaRulePlan {
  std::vector<DeltaRuleSequence> sequences;
  std::vector<int64_t> token_slots;  // 2-D indices: the slot each token writes, sequence after sequence
  int64_t max_length = 0;
};

struct DeltaRuleTensors {
  const void* query = nullptr;
  const void* key = nullptr;
  const void* value = nullptr;
  const float* g = nullptr;
  const void* beta = nullptr;
  const float* initial_state = nullptr;  // may be null (zeros)
  void* output = nullptr;
  float* final_state = nullptr;  // may be null (not requested); may be initial_state itself (a pool, in place)
  const DeltaRulePlan* plan = nullptr;  // null: the plain batch (B sequences of T tokens, state row b)
};

// Attribute checks (kernel creation time). Returns "" when valid.
std::string validate_delta_rule_attrs(const char* op_name, bool is_chunk, const DeltaRuleAttrs& attrs);
// Input checks (run time). inputs has n entries (missing trailing inputs = absent). Fills *out. In opset 1 inputs
// 6-8 are refused; in opset 2 their types and shapes are checked here, their values by build_delta_rule_plan.
std::string validate_delta_rule(const char* op_name, bool is_chunk, const DeltaRuleAttrs& attrs,
                                const TensorInfo* inputs, size_t n, DeltaRuleParams* out, int opset = kOpsetVersion);

// The values of the serving inputs (each null when absent; element types as in p), checked and resolved into
// the sequences to run: cu_seqlens starting at 0, non-decreasing, ending at T; slots in range; no slot written
// twice; no sequence starting from a slot another sequence writes; accepted counts in 1..Tmax. "" when valid.
std::string build_delta_rule_plan(const char* op_name, const DeltaRuleParams& p, const void* cu_seqlens,
                                  const void* ssm_state_indices, const void* num_accepted_tokens, DeltaRulePlan* out);

// ---------------------------------------------------------------------------------------------------
// CausalConv1d
namespace causal_conv1d {
enum Input : int {
  kX = 0,                  // [B,C,T]; [1,C,T_total] with cu_seqlens
  kWeight = 1,             // [C,1,W] or [C,W]
  kBias = 2,               // optional [C]
  kConvState = 3,          // optional [B,C,S] (or [N,C,S]); the pool [slots,C,S] with conv_state_indices
  kCuSeqlens = 4,          // opset 2: int32/int64 [N+1], packed sequences (B = 1)
  kConvStateIndices = 5,   // opset 2: int32/int64 [N], pool slot of each sequence
  kNumAcceptedTokens = 6,  // opset 2: int32/int64 [N], speculative decoding (vLLM causal_conv1d_update)
  kHasInitialState = 7,    // opset 2: bool [N], false: the sequence starts from zeros
  kNumInputs = 8
};
constexpr const char* kInputNames[kNumInputs] = {"x", "weight", "bias", "conv_state",
                                                 "cu_seqlens", "conv_state_indices", "num_accepted_tokens",
                                                 "has_initial_state"};
constexpr int kNumInputsOpset1 = 4;
constexpr int kFirstServingOpset = 2;  // inputs 4-7 exist from gdn opset 2 on
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
  // Serving inputs (opset 2). Without cu_seqlens there are N = B sequences of T tokens each.
  int64_t N = 0;      // sequences
  int64_t slots = 0;  // rows of conv_state / conv_state_out: B (N when packed), or the pool's slots with indices
  DType cu_seqlens_type = DType::kUndefined;  // kUndefined: absent
  DType indices_type = DType::kUndefined;     // kUndefined: absent
  DType accepted_type = DType::kUndefined;    // kUndefined: absent
  bool has_initial_state_flags = false;
  bool packed() const { return cu_seqlens_type != DType::kUndefined; }
  bool pool() const { return indices_type != DType::kUndefined; }
  bool speculative() const { return accepted_type != DType::kUndefined; }
  bool serving() const { return packed() || pool() || speculative() || has_initial_state_flags; }
  std::vector<int64_t> y_shape() const { return {B, C, T}; }
  std::vector<int64_t> state_shape() const { return {slots, C, S}; }
};

// One sequence of a serving call, resolved from the serving inputs (build_causal_conv1d_plan).
struct CausalConv1dSequence {
  int64_t batch = 0;        // its row of x (0 when packed)
  int64_t token0 = 0;       // its first token on x's time axis
  int64_t length = 0;       // its tokens: [token0, token0 + length)
  int64_t read_slot = -1;   // the conv_state row it starts from; -1: zeros
  int64_t write_slot = 0;   // the conv_state_out row it writes
  int64_t accepted = 0;     // speculative: num_accepted_tokens (>= 1); 0: a plain step
};

// The sequences a kernel runs. With a pool the sequences of length 0 are left out (their slot keeps its value),
// and the kernel's caller has made conv_state_out a copy of the pool first, unless it is the pool itself (in
// place). Without a pool every sequence writes its own row (length 0: a copy of its state).
struct CausalConv1dPlan {
  std::vector<CausalConv1dSequence> sequences;
  int64_t max_length = 0;
};

struct CausalConv1dTensors {
  const void* x = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;        // may be null
  const void* conv_state = nullptr;  // may be null (zeros); element type = x's
  void* y = nullptr;
  void* conv_state_out = nullptr;    // may be null; element type = x's; may be conv_state itself (a pool, in place)
  const CausalConv1dPlan* plan = nullptr;  // null: the plain batch (B sequences of T tokens, state row b)
};

std::string validate_causal_conv1d_attrs(const CausalConv1dAttrs& attrs);
// Input checks (run time). In opset 1 inputs 4-7 are refused; in opset 2 their types and shapes are checked here,
// their values by build_causal_conv1d_plan.
std::string validate_causal_conv1d(const CausalConv1dAttrs& attrs, const TensorInfo* inputs, size_t n,
                                   CausalConv1dParams* out, int opset = kOpsetVersion);
// The values of the serving inputs (each null when absent; element types as in p), checked and resolved into the
// sequences to run: cu_seqlens starting at 0, non-decreasing, ending at T; slots in range and written once;
// accepted counts in 1..S-W+2 and W-2+length <= S for speculative steps. "" when valid.
std::string build_causal_conv1d_plan(const CausalConv1dParams& p, const void* cu_seqlens, const void* indices,
                                     const void* num_accepted_tokens, const bool* has_initial_state,
                                     CausalConv1dPlan* out);

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
