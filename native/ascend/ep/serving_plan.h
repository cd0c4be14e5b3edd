// The serving inputs of a delta-rule node (gdn opset 2: cu_seqlens, ssm_state_indices, num_accepted_tokens)
// checked and resolved by the op contract (native/common/gdn_contract: validate_delta_rule, build_delta_rule_plan)
// and translated into what the aclnn operators take: the sequences of length > 0 in their order (actualSeqLengths),
// the slot each starts from and the slots it writes (ssmStateIndices, numAcceptedTokens).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/gdn_contract.h"

namespace gdn_ascend {

struct ServingSequence {
  int64_t number = 0;  // n, for messages
  int64_t token0 = 0;  // its first token on the flattened B*T token axis
  int64_t length = 0;
  int64_t read_slot = 0;             // the state row it starts from
  std::vector<int64_t> write_slots;  // one slot (its end state), or one per token (2-D indices)
};

struct ServingPlan {
  int64_t slots = 0;                       // rows of initial_state / final_state (N, or the pool's S)
  std::vector<ServingSequence> sequences;  // the sequences of length > 0, in order
  int64_t max_length = 0;
};

// The host data of a call's serving inputs (null: absent).
struct ServingInputs {
  const void* cu_seqlens = nullptr;
  const void* indices = nullptr;
  const void* accepted = nullptr;
};

// Checks the call with the contract (gdn opset 2) and resolves its serving inputs; a refusal throws
// std::invalid_argument with the contract's message without its "<op>: " prefix (the kernel names the op).
ServingPlan BuildServingPlan(const char* op, bool chunk, const gdn::DeltaRuleAttrs& attrs,
                             const std::vector<gdn::TensorInfo>& inputs, const ServingInputs& data);

}  // namespace gdn_ascend
