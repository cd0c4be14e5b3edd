// Prints the C++ op contract (native/common/gdn_contract.h) as JSON, so test/contract.test.ts can compare it
// field by field with src/ops.ts: op names, input/output names by index, required inputs, attribute names,
// types and defaults, which probe values each attribute check accepts, element types, constants, the opset.
//   make -s -C native/test contract
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/gdn_contract.h"

namespace {

using namespace gdn;

// A double exactly as stored (17 digits); non-finite values as the strings JavaScript's Number() reads back.
std::string num(double v) {
  if (std::isnan(v)) return "\"NaN\"";
  if (std::isinf(v)) return v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string str(const std::string& s) { return "\"" + s + "\""; }

std::string names(const char* const* list, int n) {
  std::string out = "[";
  for (int i = 0; i < n; ++i) out += (i ? ", " : "") + str(list[i]);
  return out + "]";
}

const char* type_word(AttrType t) {
  switch (t) {
    case AttrType::kInt: return "int";
    case AttrType::kFloat: return "float";
    default: return "string";
  }
}

// Probe values for each attribute type; the test runs the same values through src/ops.ts's checks.
const std::vector<double> kIntProbes = {-1, 0, 1, 2, 64, 1024, 1025, 16777216, 16777217};
const std::vector<double> kFloatProbes = {-INFINITY, NAN, -1, 0, 1e-6, 1, INFINITY};
const std::vector<std::string> kStringProbes = {"kv", "vk", "silu", "none", "", "KV", "relu"};

// Whether the contract accepts `value` for attribute `name` of `op` (every other attribute at its default).
struct Probe {
  double number = 0;
  std::string text;
};
bool accepts(const std::string& op, const std::string& name, const Probe& v) {
  if (op == op::kChunkGatedDeltaRule || op == op::kRecurrentGatedDeltaRule) {
    DeltaRuleAttrs a;
    if (name == delta_rule::kAttrScale) a.scale = static_cast<float>(v.number);
    if (name == delta_rule::kAttrUseQkL2norm) a.use_qk_l2norm = static_cast<int64_t>(v.number);
    if (name == delta_rule::kAttrStateLayout) a.state_layout = v.text;
    if (name == delta_rule::kAttrChunkSize) a.chunk_size = static_cast<int64_t>(v.number);
    return validate_delta_rule_attrs(op.c_str(), op == op::kChunkGatedDeltaRule, a).empty();
  }
  if (op == op::kCausalConv1d) {
    CausalConv1dAttrs a;
    if (name == causal_conv1d::kAttrActivation) a.activation = v.text;
    if (name == causal_conv1d::kAttrStateSize) a.state_size = static_cast<int64_t>(v.number);
    return validate_causal_conv1d_attrs(a).empty();
  }
  return validate_rms_norm_attrs(static_cast<float>(v.number)).empty();  // GatedRMSNorm's epsilon
}

std::string probes(const std::string& op, const AttrSpec& spec) {
  std::string out = "[";
  auto add = [&](const std::string& shown, const Probe& p) {
    const char* ok = accepts(op, spec.name, p) ? "true" : "false";
    out += (out.size() > 1 ? ", " : "") + std::string("[") + shown + ", " + ok + "]";
  };
  if (spec.type == AttrType::kString)
    for (const auto& s : kStringProbes) add(str(s), Probe{0, s});
  else
    for (double d : spec.type == AttrType::kInt ? kIntProbes : kFloatProbes) add(num(d), Probe{d, ""});
  return out + "]";
}

struct Default {
  const char* name;
  std::string value;  // JSON
};

std::string attributes(const std::string& op, const AttrSpec* specs, int n, const std::vector<Default>& defaults) {
  std::string out = "{";
  for (int i = 0; i < n; ++i) {
    std::string def = "null";
    for (const auto& d : defaults)
      if (std::string(d.name) == specs[i].name) def = d.value;
    out += std::string(i ? ", " : "") + str(specs[i].name) + ": {\"type\": " + str(type_word(specs[i].type)) +
           ", \"default\": " + def + ", \"accepts\": " + probes(op, specs[i]) + "}";
  }
  return out + "}";
}

template <size_t N>
int count(const AttrSpec (&)[N]) {
  return static_cast<int>(N);
}

std::string op_json(const char* name, const std::string& inputs, int required, const std::string& outputs,
                    const std::string& attrs) {
  return std::string("    ") + str(name) + ": {\"inputs\": " + inputs + ", \"required\": " + std::to_string(required) +
         ", \"outputs\": " + outputs + ", \"attributes\": " + attrs + "}";
}

}  // namespace

int main() {
  namespace dr = delta_rule;
  namespace cc = causal_conv1d;
  namespace rn = rms_norm;
  const std::vector<Default> dr_defaults = {{dr::kAttrScale, num(dr::kDefaultScale)},
                                            {dr::kAttrUseQkL2norm, num(static_cast<double>(dr::kDefaultUseQkL2norm))},
                                            {dr::kAttrStateLayout, str(dr::kDefaultStateLayout)},
                                            {dr::kAttrChunkSize, num(static_cast<double>(dr::kDefaultChunkSize))}};
  const std::vector<Default> cc_defaults = {{cc::kAttrActivation, str(cc::kDefaultActivation)},
                                            {cc::kAttrStateSize, num(static_cast<double>(cc::kDefaultStateSize))}};
  const std::vector<Default> rn_defaults = {{rn::kAttrEpsilon, num(rn::kDefaultEpsilon)}};

  std::string float_types;
  for (int t = 0; t <= static_cast<int>(DType::kOther); ++t)
    if (is_float_type(static_cast<DType>(t)))
      float_types += (float_types.empty() ? "" : ", ") + str(dtype_name(static_cast<DType>(t)));

  std::printf("{\n  \"domain\": %s,\n  \"opset\": %d,\n  \"floatTypes\": [%s],\n", str(kDomain).c_str(), kOpsetVersion,
              float_types.c_str());
  std::printf("  \"constants\": {\"l2normEps\": %s, \"softplusThreshold\": %s, \"defaultChunkSize\": %s, "
              "\"maxChunkSize\": %s, \"maxStateSize\": %s, \"defaultStateLayout\": %s},\n",
              num(dr::kL2normEps).c_str(), num(gating::kSoftplusThreshold).c_str(),
              num(static_cast<double>(dr::kDefaultChunkSize)).c_str(),
              num(static_cast<double>(dr::kMaxChunkSize)).c_str(),
              num(static_cast<double>(cc::kMaxStateSize)).c_str(), str(dr::kDefaultStateLayout).c_str());
  const std::string dr_outputs = names(dr::kOutputNames, dr::kNumOutputs);
  const std::vector<std::string> ops = {
      op_json(op::kChunkGatedDeltaRule, names(dr::kInputNames, dr::kNumChunkInputs), dr::kNumRequiredInputs,
              dr_outputs,
              attributes(op::kChunkGatedDeltaRule, dr::kChunkAttrs, count(dr::kChunkAttrs), dr_defaults)),
      op_json(op::kRecurrentGatedDeltaRule, names(dr::kInputNames, dr::kNumInputs), dr::kNumRequiredInputs,
              dr_outputs,
              attributes(op::kRecurrentGatedDeltaRule, dr::kRecurrentAttrs, count(dr::kRecurrentAttrs), dr_defaults)),
      op_json(op::kCausalConv1d, names(cc::kInputNames, cc::kNumInputs), cc::kNumRequiredInputs,
              names(cc::kOutputNames, cc::kNumOutputs),
              attributes(op::kCausalConv1d, cc::kAttrs, count(cc::kAttrs), cc_defaults)),
      op_json(op::kGatedDeltaGating, names(gating::kInputNames, gating::kNumInputs), gating::kNumRequiredInputs,
              names(gating::kOutputNames, gating::kNumOutputs), "{}"),
      op_json(op::kGatedRMSNorm, names(rn::kInputNames, rn::kNumInputs), rn::kNumRequiredInputs,
              names(rn::kOutputNames, rn::kNumOutputs),
              attributes(op::kGatedRMSNorm, rn::kAttrs, count(rn::kAttrs), rn_defaults)),
  };
  std::printf("  \"ops\": {\n");
  for (size_t i = 0; i < ops.size(); ++i) std::printf("%s%s\n", ops[i].c_str(), i + 1 < ops.size() ? "," : "");
  std::printf("  }\n}\n");
  return 0;
}
