// The one adapter between an ORT kernel and an op of the contract, as a template over an op binding
// (op_bindings.h): read the inputs -> validate them through the contract (common/gdn_contract.h) -> check the
// backend's limits -> allocate the outputs -> call the kernel. Kernel creation reads and checks the attributes
// the same way. The first two steps (validated_inputs) use nothing of the CPU backend, so that another backend
// on ORT's C API (the Ascend execution provider) can validate its inputs exactly as the CPU ops do.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "custom-ops/attributes.h"
#include "custom-ops/ort_api.h"

namespace gdn {
namespace custom_ops {

// Shape and element type of one output, as the op binding plans it from the validated params.
struct OutputPlan {
  std::vector<int64_t> shape;
  DType dtype;
};

// Reads the kernel's inputs and validates them through the contract; fills *in and *params.
template <class Op>
OrtStatus* validated_inputs(OrtKernelContext* ctx, const typename Op::Attrs& attrs, Inputs* in,
                            typename Op::Params* params) {
  GDN_ORT_TRY(read_inputs(ctx, Op::kName, in));
  const std::string err = Op::validate(attrs, *in, params);
  return err.empty() ? nullptr : invalid(err);
}

// Kernel creation: the node's attributes, read and checked; *state owns them (destroy_kernel frees them).
template <class Op>
OrtStatus* create_kernel(AttrReader& reader, void** state) {
  typename Op::Attrs attrs;
  Op::read_attrs(reader, &attrs);
  if (!reader.error.empty()) return invalid(reader.error);
  *state = new typename Op::Attrs(attrs);
  return nullptr;
}

template <class Op>
void destroy_kernel(void* state) {
  delete static_cast<typename Op::Attrs*>(state);
}

// One run of the CPU kernel on the node `node`.
template <class Op>
OrtStatus* compute_kernel(const void* state, const std::string& node, OrtKernelContext* ctx) {
  const auto& attrs = *static_cast<const typename Op::Attrs*>(state);
  Inputs in;
  typename Op::Params params;
  GDN_ORT_TRY(validated_inputs<Op>(ctx, attrs, &in, &params));
  const std::string over_limit = Op::cpu_limit(params);
  if (!over_limit.empty()) return invalid(over_limit);
  const std::array<OutputPlan, Op::kNumOutputs> plans = Op::plan_outputs(params);
  void* outputs[Op::kNumOutputs] = {};
  for (size_t i = 0; i < Op::kNumOutputs; ++i)
    GDN_ORT_TRY(get_output(ctx, Op::kName, node, Op::kOutputNames[i], i, plans[i].shape, plans[i].dtype,
                           &outputs[i]));
  const typename Op::Tensors tensors = Op::bind(params, in, outputs);
  if (Op::has_work(params, tensors)) Op::run(params, tensors, ort_parallel(ctx));
  return nullptr;
}

// The three entry points an op table entry needs.
struct KernelFns {
  OrtStatus* (*create)(AttrReader&, void** state);
  OrtStatus* (*compute)(const void* state, const std::string& node, OrtKernelContext* ctx);
  void (*destroy)(void* state);
};

template <class Op>
constexpr KernelFns kernel_fns() {
  return {&create_kernel<Op>, &compute_kernel<Op>, &destroy_kernel<Op>};
}

}  // namespace custom_ops
}  // namespace gdn
