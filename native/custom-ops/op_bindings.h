// Each op of the contract bound for kernel_adapter.h: its attributes (read and checked as the contract says),
// its input validation (the contract's validate_*), the CPU backend's own limits, the plan of its outputs, and
// which CPU kernel runs it (cpu/cpu_kernels.h). A binding holds no state; its Attrs are the kernel's state.
#pragma once
#include <array>
#include <cstring>
#include <string>

#include "common/gdn_contract.h"
#include "cpu/cpu_kernels.h"
#include "custom-ops/kernel_adapter.h"

namespace gdn {
namespace custom_ops {

constexpr int64_t kCpuMaxHeadDim = 8192;                // per-thread K x V / chunk tiles
constexpr int64_t kCpuMaxRowLength = int64_t{1} << 28;  // GatedRMSNorm: rows are indexed with int

// What every binding declares alike: its contract types, its output count, and no CPU limit unless it says so.
template <class AttrsT, class ParamsT, class TensorsT, size_t kOutputs>
struct BindingBase {
  using Attrs = AttrsT;
  using Params = ParamsT;
  using Tensors = TensorsT;
  static constexpr size_t kNumOutputs = kOutputs;
  using Plan = std::array<OutputPlan, kOutputs>;
  static std::string cpu_limit(const Params&) { return ""; }
};

// A delta-rule call: its params and the sequences it runs (from the serving inputs of gdn opset 2).
struct DeltaRuleCall : DeltaRuleParams {
  DeltaRulePlan plan;
};

template <bool kChunk>
struct DeltaRuleBinding
    : BindingBase<DeltaRuleAttrs, DeltaRuleCall, DeltaRuleTensors, delta_rule::kNumOutputs> {
  static constexpr const char* kName = kChunk ? op::kChunkGatedDeltaRule : op::kRecurrentGatedDeltaRule;
  static constexpr const char* const* kOutputNames = delta_rule::kOutputNames;

  static void read_attrs(AttrReader& r, Attrs* a) {
    r.read(delta_rule::kAttrScale, &a->scale);
    r.read(delta_rule::kAttrUseQkL2norm, &a->use_qk_l2norm);
    r.read(delta_rule::kAttrStateLayout, &a->state_layout);
    if (kChunk) r.read(delta_rule::kAttrChunkSize, &a->chunk_size);
    r.check(validate_delta_rule_attrs(r.op, kChunk, *a));
  }
  // Inputs 6-8 with their opset-2 meaning: ORT gives a custom op no way to learn its node's opset (docs/ops.md).
  static std::string validate(const Attrs& a, const Inputs& in, Params* p) {
    const std::string err =
        validate_delta_rule(kName, kChunk, a, in.info.data(), in.info.size(), p, kOpsetVersionServing);
    if (!err.empty()) return err;
    auto data_of = [&in](int i) { return (size_t)i < in.data.size() ? in.data[i] : nullptr; };
    return build_delta_rule_plan(kName, *p, data_of(delta_rule::kCuSeqlens), data_of(delta_rule::kSsmStateIndices),
                                 data_of(delta_rule::kNumAcceptedTokens), &p->plan);
  }
  // The kernels index heads with int and keep per-thread K x V / chunk tiles.
  static std::string cpu_limit(const Params& p) {
    if (p.K <= kCpuMaxHeadDim && p.V <= kCpuMaxHeadDim) return "";
    return std::string(kName) + ": head dimensions K=" + std::to_string(p.K) + ", V=" + std::to_string(p.V) +
           " exceed the CPU backend limit of " + std::to_string(kCpuMaxHeadDim);
  }
  static Plan plan_outputs(const Params& p) {
    return {{{p.output_shape(), p.dtype}, {p.state_shape(), DType::kFloat32}}};
  }
  static Tensors bind(const Params& p, const Inputs& in, void* const* out) {
    Tensors t;
    t.query = in.data[delta_rule::kQuery];
    t.key = in.data[delta_rule::kKey];
    t.value = in.data[delta_rule::kValue];
    t.g = static_cast<const float*>(in.data[delta_rule::kG]);
    t.beta = in.data[delta_rule::kBeta];
    t.initial_state = p.has_initial_state ? static_cast<const float*>(in.data[delta_rule::kInitialState]) : nullptr;
    t.output = out[delta_rule::kOutput];
    t.final_state = static_cast<float*>(out[delta_rule::kFinalState]);
    t.plan = &p.plan;
    return t;
  }
  // No token and no state to write (B may be huge when T = 0: never loop over it). An empty output has no data
  // pointer: with T = 0 the kernels still write final_state, never the output.
  static bool has_work(const Params& p, const Tensors& t) { return !(p.T == 0 && t.final_state == nullptr); }
  static void run(const Params& p, const Tensors& t, const Parallel& par) {
    if (kChunk) cpu::chunk_gated_delta_rule(p, t, par);
    else cpu::recurrent_gated_delta_rule(p, t, par);
  }
};
using ChunkGatedDeltaRuleBinding = DeltaRuleBinding<true>;
using RecurrentGatedDeltaRuleBinding = DeltaRuleBinding<false>;

// CausalConv1d's params with the plan of its serving inputs (gdn opset 2), built from their values.
struct CausalConv1dServingParams : CausalConv1dParams {
  CausalConv1dPlan plan;
};

struct CausalConv1dBinding
    : BindingBase<CausalConv1dAttrs, CausalConv1dServingParams, CausalConv1dTensors, causal_conv1d::kNumOutputs> {
  static constexpr const char* kName = op::kCausalConv1d;
  static constexpr const char* const* kOutputNames = causal_conv1d::kOutputNames;

  static void read_attrs(AttrReader& r, Attrs* a) {
    r.read(causal_conv1d::kAttrActivation, &a->activation);
    r.read(causal_conv1d::kAttrStateSize, &a->state_size);
    r.check(validate_causal_conv1d_attrs(*a));
  }
  // Inputs 4-7 with their opset-2 meaning: ORT gives a custom op no way to learn its node's opset; the runtime's
  // model check refuses them in opset-1 models.
  static std::string validate(const Attrs& a, const Inputs& in, Params* p) {
    using namespace causal_conv1d;
    const std::string err = validate_causal_conv1d(a, in.info.data(), in.info.size(), p, kFirstServingOpset);
    if (!err.empty() || !p->serving()) return err;
    const auto data = [&](int i) { return (size_t)i < in.data.size() ? in.data[i] : nullptr; };
    const auto* has_initial_state = static_cast<const bool*>(data(kHasInitialState));
    return build_causal_conv1d_plan(*p, data(kCuSeqlens), data(kConvStateIndices), data(kNumAcceptedTokens),
                                    has_initial_state, &p->plan);
  }
  static Plan plan_outputs(const Params& p) {
    return {{{p.y_shape(), p.x_type}, {p.state_shape(), p.x_type}}};
  }
  static Tensors bind(const Params& p, const Inputs& in, void* const* out) {
    Tensors t;
    t.x = in.data[causal_conv1d::kX];
    t.weight = in.data[causal_conv1d::kWeight];
    t.bias = p.has_bias ? in.data[causal_conv1d::kBias] : nullptr;
    t.conv_state = p.has_state ? in.data[causal_conv1d::kConvState] : nullptr;
    t.y = out[causal_conv1d::kY];
    t.conv_state_out = out[causal_conv1d::kConvStateOut];
    t.plan = p.serving() ? &p.plan : nullptr;
    return t;
  }
  // Nothing to write (B or C may be huge when T = 0): never loop over empty rows. A serving call's rows are its
  // plan's, bounded by its index inputs.
  static bool has_work(const Params& p, const Tensors& t) {
    if (t.y == nullptr) return false;
    if (p.serving()) return true;
    const bool no_rows = p.B == 0 || p.C == 0;
    return !((p.T == 0 || no_rows) && (t.conv_state_out == nullptr || p.S == 0 || no_rows));
  }
  // With a pool, conv_state_out starts as a copy of it (slots no sequence writes keep their values), unless it is
  // the pool itself (in place).
  static void run(const Params& p, const Tensors& t, const Parallel& par) {
    if (p.pool() && t.conv_state_out != nullptr && t.conv_state_out != t.conv_state) {
      int64_t count = 0;
      checked_numel(p.state_shape(), &count);  // the pool is an input: its size fits
      const size_t elem = p.x_type == DType::kFloat32 ? 4 : 2;
      std::memcpy(t.conv_state_out, t.conv_state, (size_t)count * elem);
    }
    cpu::causal_conv1d(p, t, par);
  }
};

struct NoAttrs {};
struct GatedDeltaGatingBinding : BindingBase<NoAttrs, GatingParams, GatingTensors, gating::kNumOutputs> {
  static constexpr const char* kName = op::kGatedDeltaGating;
  static constexpr const char* const* kOutputNames = gating::kOutputNames;

  static void read_attrs(AttrReader&, NoAttrs*) {}
  static std::string validate(const Attrs&, const Inputs& in, Params* p) {
    return validate_gating(in.info.data(), in.info.size(), p);
  }
  static Plan plan_outputs(const Params& p) {
    return {{{p.shape, DType::kFloat32}, {p.shape, p.b_type}}};
  }
  static Tensors bind(const Params&, const Inputs& in, void* const* out) {
    Tensors t;
    t.a = in.data[gating::kA];
    t.b = in.data[gating::kB];
    t.A_log = static_cast<const float*>(in.data[gating::kALog]);
    t.dt_bias = static_cast<const float*>(in.data[gating::kDtBias]);
    t.g = static_cast<float*>(out[gating::kG]);
    t.beta = out[gating::kBeta];
    return t;
  }
  // Empty (a dim may still be huge): nothing to compute.
  static bool has_work(const Params& p, const Tensors&) { return p.N != 0 && p.H != 0; }
  static void run(const Params& p, const Tensors& t, const Parallel& par) { cpu::gated_delta_gating(p, t, par); }
};

struct RMSNormAttrs {
  float epsilon = rms_norm::kDefaultEpsilon;
};
struct GatedRMSNormBinding : BindingBase<RMSNormAttrs, RMSNormParams, RMSNormTensors, rms_norm::kNumOutputs> {
  static constexpr const char* kName = op::kGatedRMSNorm;
  static constexpr const char* const* kOutputNames = rms_norm::kOutputNames;

  static void read_attrs(AttrReader& r, Attrs* a) {
    r.read(rms_norm::kAttrEpsilon, &a->epsilon);
    r.check(validate_rms_norm_attrs(a->epsilon));
  }
  static std::string validate(const Attrs& a, const Inputs& in, Params* p) {
    return validate_rms_norm(a.epsilon, in.info.data(), in.info.size(), p);
  }
  static std::string cpu_limit(const Params& p) {
    if (p.D <= kCpuMaxRowLength) return "";
    return std::string(kName) + ": the last dimension of x is " + std::to_string(p.D) +
           ", above the CPU backend limit of " + std::to_string(kCpuMaxRowLength);
  }
  static Plan plan_outputs(const Params& p) { return {{{p.shape, p.x_type}}}; }
  static Tensors bind(const Params&, const Inputs& in, void* const* out) {
    Tensors t;
    t.x = in.data[rms_norm::kX];
    t.gate = in.data[rms_norm::kGate];
    t.weight = in.data[rms_norm::kWeight];
    t.y = out[rms_norm::kY];
    return t;
  }
  static bool has_work(const Params&, const Tensors& t) { return t.y != nullptr; }
  static void run(const Params& p, const Tensors& t, const Parallel& par) { cpu::gated_rms_norm(p, t, par); }
};

}  // namespace custom_ops
}  // namespace gdn
