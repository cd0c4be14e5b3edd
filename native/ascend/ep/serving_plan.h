// The serving inputs of a delta-rule node (gdn opset 2: cu_seqlens, ssm_state_indices, num_accepted_tokens)
// resolved on the host before any device work: each sequence's tokens, the pool slot it starts from and the
// slots it writes. The checks and messages follow the CPU contract (docs/ops.md, "Serving inputs").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gdn_ascend {

// An index input as the kernel reads it on the CPU: its shape and its values widened to int64.
struct IndexInput {
  bool present = false;
  std::vector<int64_t> shape;
  std::vector<int64_t> values;
};

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
  bool per_token_writes() const { return !sequences.empty() && sequences[0].write_slots.size() > 1; }
};

// The sizes the plan is checked against: B, T of the node and the rows of initial_state (-1: absent).
struct ServingSizes {
  int64_t B = 0, T = 0, state_rows = -1;
};

// Checks the serving inputs and resolves them; throws std::invalid_argument with a one-line message.
ServingPlan BuildServingPlan(bool chunk, const ServingSizes& sizes, const IndexInput& cu_seqlens,
                             const IndexInput& indices, const IndexInput& accepted);

}  // namespace gdn_ascend
