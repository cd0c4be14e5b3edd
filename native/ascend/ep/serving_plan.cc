#include "ascend/ep/serving_plan.h"

#include <algorithm>
#include <climits>
#include <sstream>
#include <stdexcept>
#include <tuple>

namespace gdn_ascend {
namespace {

// Builds a one-line message and throws it.
struct Fail {
  std::ostringstream s;
  template <typename T>
  Fail& operator<<(const T& v) {
    s << v;
    return *this;
  }
  [[noreturn]] void Throw() const { throw std::invalid_argument(s.str()); }
};

std::string ShapeStr(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Token ranges: from cu_seqlens (B = 1), or B sequences of T tokens.
std::vector<ServingSequence> TokenRanges(const ServingSizes& z, const IndexInput& cu) {
  std::vector<ServingSequence> seqs;
  if (!cu.present) {
    for (int64_t n = 0; n < z.B; ++n) seqs.push_back({n, n * z.T, z.T, 0, {}});
    return seqs;
  }
  if (cu.shape.size() != 1) (Fail() << "cu_seqlens must have shape [N+1], got " << ShapeStr(cu.shape)).Throw();
  if (cu.shape[0] < 1) (Fail() << "cu_seqlens must have at least one entry [N+1], got shape [0]").Throw();
  if (z.B != 1) (Fail() << "cu_seqlens needs a packed batch of batch size 1 ([1,T,...]), got B = " << z.B).Throw();
  const std::vector<int64_t>& c = cu.values;
  if (c[0] != 0) (Fail() << "cu_seqlens[0] must be 0, got " << c[0]).Throw();
  for (size_t n = 0; n + 1 < c.size(); ++n) {
    if (c[n + 1] < c[n]) {
      (Fail() << "cu_seqlens must be non-decreasing, got cu_seqlens[" << n + 1 << "] = " << c[n + 1]
              << " after cu_seqlens[" << n << "] = " << c[n]).Throw();
    }
    if (c[n + 1] > z.T) {
      (Fail() << "cu_seqlens must end at T = " << z.T << ", got cu_seqlens[" << n + 1 << "] = " << c[n + 1]).Throw();
    }
    seqs.push_back({static_cast<int64_t>(n), c[n], c[n + 1] - c[n], 0, {}});
  }
  if (c.back() != z.T) {
    (Fail() << "cu_seqlens must end at T = " << z.T << ", got cu_seqlens[" << c.size() - 1 << "] = " << c.back())
        .Throw();
  }
  return seqs;
}

void CheckIndexShapes(bool chunk, int64_t N, const ServingSizes& z, const IndexInput& idx, const IndexInput& acc) {
  if (idx.present) {
    if (chunk && idx.shape.size() != 1) {
      (Fail() << "ssm_state_indices must have shape [N] (2-D indices [N,Tmax] are for RecurrentGatedDeltaRule "
              << "only), got " << ShapeStr(idx.shape)).Throw();
    }
    if (idx.shape.size() != 1 && idx.shape.size() != 2) {
      (Fail() << "ssm_state_indices must have shape [N] or [N,Tmax], got " << ShapeStr(idx.shape)).Throw();
    }
    if (idx.shape[0] != N) {
      (Fail() << "ssm_state_indices has " << idx.shape[0] << " rows, expected N = " << N << " (one per sequence)")
          .Throw();
    }
    if (idx.shape.size() == 2 && idx.shape[1] < 1) {
      (Fail() << "ssm_state_indices [N,Tmax] must have at least one column, got " << ShapeStr(idx.shape)).Throw();
    }
    if (z.state_rows < 0) {
      (Fail() << "ssm_state_indices needs initial_state (the state pool [S,Hv,K,V] or [S,Hv,V,K])").Throw();
    }
  }
  if (acc.present) {
    if (!idx.present || idx.shape.size() != 2) {
      (Fail() << "num_accepted_tokens needs 2-D ssm_state_indices [N,Tmax]").Throw();
    }
    if (acc.shape != std::vector<int64_t>{N}) {
      (Fail() << "num_accepted_tokens must have shape [" << N << "] ([N], one per sequence), got "
              << ShapeStr(acc.shape)).Throw();
    }
  }
}

void CheckSlotsInRange(const IndexInput& idx, int64_t slots) {
  const int64_t cols = idx.shape.size() == 2 ? idx.shape[1] : 1;
  for (size_t i = 0; i < idx.values.size(); ++i) {
    const int64_t s = idx.values[i];
    if (s >= 0 && s < slots) continue;
    Fail f;
    f << "ssm_state_indices[" << static_cast<int64_t>(i) / cols;
    if (idx.shape.size() == 2) f << "," << static_cast<int64_t>(i) % cols;
    (f << "] = " << s << " is out of range for a pool of " << slots << " slots").Throw();
  }
}

// Read and write slots of each sequence.
void PlanSlots(const IndexInput& idx, const IndexInput& acc, std::vector<ServingSequence>* seqs) {
  const int64_t cols = idx.shape.size() == 2 ? idx.shape[1] : 0;
  for (ServingSequence& s : *seqs) {
    const int64_t n = s.number;
    if (!idx.present) {
      s.read_slot = n;
      s.write_slots = {n};
      continue;
    }
    if (cols == 0) {
      s.read_slot = idx.values[n];
      s.write_slots = {idx.values[n]};
      continue;
    }
    if (s.length > cols) {
      (Fail() << "ssm_state_indices has " << cols << " columns, fewer than the " << s.length
              << " tokens of sequence " << n).Throw();
    }
    int64_t first = 0;
    if (acc.present) {
      const int64_t a = acc.values[n];
      if (a < 1 || a > cols) {
        (Fail() << "num_accepted_tokens[" << n << "] = " << a << " is out of range 1.." << cols
                << " (the columns of ssm_state_indices)").Throw();
      }
      first = a - 1;
    }
    s.read_slot = idx.values[n * cols + first];
    s.write_slots.assign(idx.values.begin() + n * cols, idx.values.begin() + n * cols + s.length);
  }
}

// One call may not write a slot twice, nor start a sequence from a slot another sequence writes: the device
// runs the sequences concurrently.
void CheckWrites(const std::vector<ServingSequence>& seqs, bool per_token) {
  std::vector<std::tuple<int64_t, int64_t, int64_t>> writes;  // slot, sequence, token (-1: its end state)
  for (const ServingSequence& s : seqs) {
    for (size_t t = 0; t < s.write_slots.size(); ++t) {
      writes.emplace_back(s.write_slots[t], s.number, per_token ? static_cast<int64_t>(t) : -1);
    }
  }
  std::sort(writes.begin(), writes.end());
  for (size_t i = 1; i < writes.size(); ++i) {
    const auto& [slot, n0, t0] = writes[i - 1];
    const auto& [slot1, n1, t1] = writes[i];
    if (slot != slot1) continue;
    Fail f;
    f << "ssm_state_indices writes slot " << slot << " twice in one call (";
    if (t0 < 0 && t1 < 0) (f << "sequences " << n0 << " and " << n1 << ")").Throw();
    (f << "sequence " << n0 << " token " << std::max<int64_t>(t0, 0) << " and sequence " << n1 << " token "
       << std::max<int64_t>(t1, 0) << ")").Throw();
  }
  for (const ServingSequence& s : seqs) {
    auto w = std::lower_bound(writes.begin(), writes.end(), std::make_tuple(s.read_slot, INT64_MIN, INT64_MIN));
    for (; w != writes.end() && std::get<0>(*w) == s.read_slot; ++w) {
      if (std::get<1>(*w) != s.number) {
        (Fail() << "sequence " << s.number << " starts from slot " << s.read_slot << ", which sequence "
                << std::get<1>(*w) << " writes in the same call").Throw();
      }
    }
  }
}

}  // namespace

ServingPlan BuildServingPlan(bool chunk, const ServingSizes& z, const IndexInput& cu, const IndexInput& idx,
                             const IndexInput& acc) {
  std::vector<ServingSequence> seqs = TokenRanges(z, cu);
  const int64_t N = static_cast<int64_t>(seqs.size());
  CheckIndexShapes(chunk, N, z, idx, acc);
  ServingPlan plan;
  plan.slots = idx.present ? z.state_rows : N;
  if (!idx.present && z.state_rows >= 0 && z.state_rows != N) {
    (Fail() << "initial_state has " << z.state_rows << " rows, expected N = " << N << " (one per sequence)").Throw();
  }
  // The aclnn ops take int32 sequence lengths and slot indices.
  if (plan.slots > INT32_MAX || z.T > INT32_MAX) (Fail() << "more than 2^31-1 tokens or state slots").Throw();
  if (idx.present) CheckSlotsInRange(idx, plan.slots);
  PlanSlots(idx, acc, &seqs);
  // Sequences of length 0 are skipped: their slots keep their state (the kernel copies the states first).
  seqs.erase(std::remove_if(seqs.begin(), seqs.end(), [](const ServingSequence& s) { return s.length == 0; }),
             seqs.end());
  if (idx.present) CheckWrites(seqs, idx.shape.size() == 2);
  for (const ServingSequence& s : seqs) plan.max_length = std::max(plan.max_length, s.length);
  plan.sequences = std::move(seqs);
  return plan;
}

}  // namespace gdn_ascend
