// gdn-fuse CPU backend: one entry point per op of the gdn opset 1 contract (common/gdn_contract.h).
// Inputs are already validated (validate_* in the contract); kernels never read outside the described tensors.
// All entry points are thread-safe and parallelise through the supplied gdn::Parallel.
#pragma once
#include "common/gdn_contract.h"

namespace gdn {
namespace cpu {

void chunk_gated_delta_rule(const DeltaRuleParams& p, const DeltaRuleTensors& t, const Parallel& par);
void recurrent_gated_delta_rule(const DeltaRuleParams& p, const DeltaRuleTensors& t, const Parallel& par);
void causal_conv1d(const CausalConv1dParams& p, const CausalConv1dTensors& t, const Parallel& par);
void gated_delta_gating(const GatingParams& p, const GatingTensors& t, const Parallel& par);
void gated_rms_norm(const RMSNormParams& p, const RMSNormTensors& t, const Parallel& par);

// Instruction set the kernels dispatch to ("avx512", "avx2" or "generic"). Chosen once from the CPU;
// the environment variable GDN_CPU_ISA=generic|avx2|avx512 forces a (supported) choice, for tests.
const char* isa_name();

}  // namespace cpu
}  // namespace gdn
