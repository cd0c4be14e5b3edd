// What the kernels of the Ascend EP share: ORT tensors as device views, node attributes, the contract's checks of
// the inputs, the kernel bases (the OrtKernelImpl plumbing; one call on the EP's stream), and kernel registration.
#pragma once

#include <string>
#include <vector>

#include "ascend/ep/device_ops.h"
#include "ascend/ep/ep.h"
#include "ascend/ep/stream.h"
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

// The op contract's checks of the call's inputs, `validate(infos, count, &params)`; a refusal is thrown as a
// ContractError (the CPU op library's message).
template <typename Params, typename Validate>
Params CheckedInputs(Ort::KernelContext& ctx, Validate validate) {
  const std::vector<gdn::TensorInfo> infos = InputInfos(ctx);
  Params p;
  const std::string err = validate(infos.data(), infos.size(), &p);
  if (!err.empty()) throw ContractError(err);
  return p;
}

// The node's attribute `name`, or `fallback` when the node does not have it.
int64_t IntAttr(const OrtKernelInfo* info, const char* name, int64_t fallback);
float FloatAttr(const OrtKernelInfo* info, const char* name, float fallback);
std::string StringAttr(const OrtKernelInfo* info, const char* name, const std::string& fallback);
// An ints attribute; *present says whether the node has it (absent: empty).
std::vector<int64_t> IntsAttr(const OrtKernelInfo* info, const char* name, bool* present);

// Output `i` with `shape`, or an empty view when the node does not produce it.
View OutputView(Ort::KernelContext& ctx, size_t i, const Dims& shape);

// A view of `v` with other dims, same elements (v must be contiguous).
View Reshaped(const View& v, Dims dims);
// Elements [start, start+len) of axis `axis` of `v` (a strided view).
View Sliced(const View& v, size_t axis, int64_t start, int64_t len);
// `v` in float32: itself when it already is, else a fresh aclnnCast of it.
View AsFloat32(DeviceCall& dev, const View& v);

// One kernel run's device work: a DeviceCall on the run's stream, the session's (the scratch it allocates is freed
// after that stream's next synchronisation) or, when ORT gives the kernel none, the EP's own. Finish() waits for
// the work only on the EP's own stream (the test-only fault skip_sync drops that wait); on a session's stream ORT
// synchronises where the host reads.
class KernelRun {
 public:
  KernelRun(const Ep& ep, const Ort::KernelContext& ctx);
  void Finish();
  DeviceCall dev;

 private:
  KernelRun(const Ep& ep, const KernelStream& stream);
  const Ep& ep_;
  const KernelStream stream_;
};

// What every kernel of this EP is to ORT: an OrtKernelImpl whose Compute calls ComputeOnEp and whose Release
// deletes it, on the EP that created it.
class EpKernel : public OrtKernelImpl {
 public:
  explicit EpKernel(const OrtKernelInfo* info);
  virtual ~EpKernel() = default;

 protected:
  // One run; errors come back as an ORT status (ORT calls it through its C API: no exception may leave it).
  virtual OrtStatus* ComputeOnEp(OrtKernelContext* context) noexcept = 0;
  const Ep* ep_ = nullptr;
};

// A kernel made of DeviceCall work. Run() enqueues its work on the session's stream (a kernel run without one
// synchronises after it) and errors become ORT statuses naming the op and node.
class DeviceKernel : public EpKernel {
 public:
  DeviceKernel(const OrtKernelInfo* info, std::string op);

 protected:
  virtual void Run(Ort::KernelContext& ctx, DeviceCall& dev) = 0;
  const std::string& Op() const { return op_; }
  const std::string& Node() const { return node_; }
  // A refusal of the node's attributes by the contract (creation time), thrown as "Op node 'name': ...".
  void CheckAttrs(const std::string& contract_error) const;

 private:
  OrtStatus* ComputeOnEp(OrtKernelContext* context) noexcept override;
  std::string op_, node_;
};

// "Op: message" (the contract's form) -> "Op node 'name': message", as the CPU op library reports attributes.
std::string AtNode(const std::string& node, const std::string& op, const std::string& message);

// A kernel definition: op, domain, opset range, type constraints, inputs ORT keeps on the host, aliases, outputs
// it wants on the host.
struct KernelSpec {
  const char* op;
  const char* domain;
  int since_start, since_end;
  std::vector<std::pair<const char*, std::vector<ONNXTensorElementDataType>>> types;
  // Inputs read on the host: shape-only inputs (Reshape's shape, Split's sizes), the delta rules' index inputs,
  // MemcpyFromHost's source.
  std::vector<size_t> cpu_inputs;
  std::vector<std::pair<int, int>> aliases;  // (input, output) pairs ORT may hand over as one buffer
  OrtKernelCreateFunc create;
  std::vector<size_t> cpu_outputs = {};  // MemcpyToHost's destination
};
OrtStatus* AddKernel(OrtKernelRegistry* registry, const KernelSpec& spec);

// The OrtKernelCreateFunc of Kernel(info, args...).
template <typename Kernel, auto... args>
OrtStatus* ORT_API_CALL Create(void*, const OrtKernelInfo* info, OrtKernelImpl** out) noexcept {
  try {
    *out = new Kernel(info, args...);
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
