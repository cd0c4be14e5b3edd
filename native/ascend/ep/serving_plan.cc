#include "ascend/ep/serving_plan.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>

namespace gdn_ascend {
namespace {

// The contract's "<op>: message" as the kernel reports it ("<op> on Ascend: message").
[[noreturn]] void Refuse(const char* op, const std::string& message) {
  const size_t prefix = std::strlen(op) + 2;
  throw std::invalid_argument(message.compare(0, prefix, std::string(op) + ": ") == 0 ? message.substr(prefix)
                                                                                       : message);
}

}  // namespace

ServingPlan BuildServingPlan(const char* op, bool chunk, const gdn::DeltaRuleAttrs& attrs,
                             const std::vector<gdn::TensorInfo>& inputs, const ServingInputs& data) {
  gdn::DeltaRuleParams p;
  gdn::DeltaRulePlan resolved;
  std::string err =
      gdn::validate_delta_rule(op, chunk, attrs, inputs.data(), inputs.size(), &p, gdn::kOpsetVersionServing);
  if (err.empty()) err = gdn::build_delta_rule_plan(op, p, data.cu_seqlens, data.indices, data.accepted, &resolved);
  if (!err.empty()) Refuse(op, err);
  // The aclnn ops take int32 sequence lengths and slot indices.
  if (p.slots > INT32_MAX || p.T > INT32_MAX) throw std::invalid_argument("more than 2^31-1 tokens or state slots");

  ServingPlan plan;
  plan.slots = p.slots;
  // The contract runs the longest sequences first; the ops take them in their order, without those of length 0
  // (their slots keep their state: the kernel copies the states first).
  std::vector<gdn::DeltaRuleSequence> in_order = resolved.sequences;
  std::sort(in_order.begin(), in_order.end(),
            [](const gdn::DeltaRuleSequence& a, const gdn::DeltaRuleSequence& b) { return a.number < b.number; });
  for (const gdn::DeltaRuleSequence& s : in_order) {
    if (s.length == 0) continue;
    ServingSequence seq{s.number, s.token0, s.length, s.read_slot, {s.write_slot}};
    if (s.read_slot < 0) seq.read_slot = s.number;  // no initial_state: its own row of the zero pool
    if (s.write_slot < 0) {                         // 2-D indices: the slot of each token
      const auto first = resolved.token_slots.begin() + s.token_slots;
      seq.write_slots.assign(first, first + s.length);
    }
    plan.max_length = std::max(plan.max_length, s.length);
    plan.sequences.push_back(std::move(seq));
  }
  return plan;
}

}  // namespace gdn_ascend
