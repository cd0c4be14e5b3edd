// Device work of one kernel call: scratch memory, aclTensor views and the aclnn ops the gated-delta
// kernels are composed of, all launched on the EP's stream. Every CANN failure throws DeviceError with
// the function, its code and CANN's own message.
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ascend/device/cann_device.h"

namespace gdn_ascend {

struct DeviceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

using Dims = std::vector<int64_t>;

// A strided view of device memory: dims, element strides and offset (as aclCreateTensor takes them).
struct View {
  void* data = nullptr;
  aclDataType dtype = ACL_FLOAT;
  Dims dims, strides;
  int64_t offset = 0;
  static View Contiguous(void* data, aclDataType dtype, Dims dims);
  int64_t numel() const;
};

size_t ElementSize(aclDataType t);

class DeviceCall {
 public:
  // free_after_sync: where scratch goes when the call ends, to be freed once the stream is synchronised (the
  // work queued on it may still use it); null: freed at once (the caller synchronised the stream).
  using FreeAfterSync = std::function<void(void*)>;
  DeviceCall(const cann::Table& cann, aclrtStream stream, FreeAfterSync free_after_sync = nullptr)
      : cann_(cann), stream_(stream), free_after_sync_(std::move(free_after_sync)) {}
  ~DeviceCall();  // releases scratch and destroys the aclTensors (after Finish, or on an error path)
  DeviceCall(const DeviceCall&) = delete;
  DeviceCall& operator=(const DeviceCall&) = delete;

  void* Scratch(size_t bytes);
  View NewTensor(aclDataType dtype, Dims dims) { return View::Contiguous(Scratch(Bytes(dtype, dims)), dtype, dims); }
  void Upload(void* device, const void* host, size_t bytes);  // small constants (synchronous aclrtMemcpy)
  void Zero(const View& v);

  void Cast(const View& in, const View& out);                   // aclnnCast (any strides on both sides)
  void Permute(const View& in, const Dims& perm, const View& out);  // aclnnPermute
  // x * rsqrt(sum(x^2 over the last axis) + eps), through aclnnRmsNorm with gamma = 1/sqrt(D) and eps/D.
  void L2Normalize(const View& x, const View& y, float eps);
  void ChunkGatedDeltaRule(const View& q, const View& k, const View& v, const View& beta, const View& state,
                           const View& seqlens, const View& g, float scale, const View& out, const View& final_state);
  void RecurrentGatedDeltaRule(const View& q, const View& k, const View& v, const View& beta, const View& state,
                               const View& seqlens, const View& ssm_indices, const View& g, const View& accepted,
                               float scale, const View& out);
  void Synchronize();

  static size_t Bytes(aclDataType dtype, const Dims& dims);

 private:
  aclTensor* Tensor(const View& v);
  void Check(const char* what, int code);
  template <typename GetWorkspace, typename Run>
  void TwoPhase(const char* name, GetWorkspace get_workspace, Run run);

  const cann::Table& cann_;
  aclrtStream stream_;
  FreeAfterSync free_after_sync_;
  std::vector<void*> scratch_;
  std::vector<aclTensor*> tensors_;
  std::vector<aclIntArray*> arrays_;
};

}  // namespace gdn_ascend
