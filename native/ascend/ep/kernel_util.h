// What the layer and standard kernels of the Ascend EP share: ORT tensors as device views, the contract's
// TensorInfo of the inputs, a kernel base that runs one call on the EP's stream, and kernel registration.
#pragma once

#include <string>
#include <vector>

#include "ascend/ep/device_ops.h"
#include "ascend/ep/ep.h"
#include "common/gdn_contract.h"

namespace gdn_ascend {

// An input the op contract refuses (the CPU op library's message, word for word): ORT_INVALID_ARGUMENT.
struct ContractError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

aclDataType ToAcl(ONNXTensorElementDataType t);
gdn::DType ToContract(ONNXTensorElementDataType t);

// An ORT tensor as a contiguous device view.
View AsView(const Ort::ConstValue& v);
View AsView(const Ort::UnownedValue& v);

// The contract's description of every input of the call (absent optional inputs: present = false).
std::vector<gdn::TensorInfo> InputInfos(Ort::KernelContext& ctx);

// Output `i` with `shape`, or an empty view when the node does not produce it.
View OutputView(Ort::KernelContext& ctx, size_t i, const Dims& shape);

// A view of `v` with other dims, same elements (v must be contiguous).
View Reshaped(const View& v, Dims dims);
// Elements [start, start+len) of axis `axis` of `v` (a strided view).
View Sliced(const View& v, size_t axis, int64_t start, int64_t len);
// `v` in float32: itself when it already is, else a fresh aclnnCast of it.
View AsFloat32(DeviceCall& dev, const View& v);

// One kernel of the EP. Run() launches its work on the EP's stream; Compute synchronises the stream after it
// (the EP is not stream-aware yet) and turns errors into ORT statuses naming the op.
class DeviceKernel : public OrtKernelImpl {
 public:
  DeviceKernel(const OrtKernelInfo* info, std::string op);
  virtual ~DeviceKernel() = default;

 protected:
  virtual void Run(Ort::KernelContext& ctx, DeviceCall& dev) = 0;
  const std::string& Op() const { return op_; }
  const std::string& Node() const { return node_; }

 private:
  static OrtStatus* ORT_API_CALL ComputeImpl(OrtKernelImpl* self, OrtKernelContext* context) noexcept;
  const Ep* ep_ = nullptr;
  std::string op_, node_;
};

// "Op: message" (the contract's form) -> "Op node 'name': message", as the CPU op library reports attributes.
std::string AtNode(const std::string& node, const std::string& op, const std::string& message);

// A kernel definition: op, domain, opset range, type constraints, inputs ORT keeps on the host, aliases.
struct KernelSpec {
  const char* op;
  const char* domain;
  int since_start, since_end;
  std::vector<std::pair<const char*, std::vector<ONNXTensorElementDataType>>> types;
  std::vector<size_t> cpu_inputs;  // shape-only inputs (Reshape's shape, Split's sizes): read on the host
  std::vector<std::pair<int, int>> aliases;  // (input, output) pairs ORT may hand over as one buffer
  OrtKernelCreateFunc create;
};
OrtStatus* AddKernel(OrtKernelRegistry* registry, const KernelSpec& spec);

template <typename Kernel>
OrtStatus* ORT_API_CALL Create(void*, const OrtKernelInfo* info, OrtKernelImpl** out) noexcept {
  try {
    *out = new Kernel(info);
    return nullptr;
  } catch (const ContractError& e) {
    *out = nullptr;
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
  } catch (const std::exception& e) {
    *out = nullptr;
    return Ort::GetApi().CreateStatus(ORT_EP_FAIL, e.what());
  }
}

// The float types every layer kernel takes.
extern const std::vector<ONNXTensorElementDataType> kFloatTypes;

// Einsum equations this EP runs: "<a><s>,<s><b>-><a><b>" (one contraction over a's trailing, b's leading axes).
struct Contraction {
  size_t a_free = 0, shared = 0, b_free = 0;
};
bool ParseContraction(const std::string& equation, Contraction* out);

OrtStatus* AddLayerKernels(OrtKernelRegistry* registry);     // layer_kernels.cc
OrtStatus* AddStandardKernels(OrtKernelRegistry* registry);  // standard_kernels.cc

}  // namespace gdn_ascend
