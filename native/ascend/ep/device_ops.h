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
  void Copy(const View& in, const View& out) { Cast(in, out); }  // a strided copy: aclnnCast to the same dtype
  void CopyContiguous(void* dst, const void* src, size_t bytes);  // aclrtMemcpyAsync device to device
  void Permute(const View& in, const Dims& perm, const View& out);  // aclnnPermute
  // x * rsqrt(sum(x^2 over the last axis) + eps), through aclnnRmsNorm with gamma = 1/sqrt(D) and eps/D.
  void L2Normalize(const View& x, const View& y, float eps);
  // y = x * rsqrt(mean(x^2 over the last axis) + eps) * gamma (aclnnRmsNorm; its rstd output goes to scratch).
  void RmsNorm(const View& x, const View& gamma, double eps, const View& y);
  void ChunkGatedDeltaRule(const View& q, const View& k, const View& v, const View& beta, const View& state,
                           const View& seqlens, const View& g, float scale, const View& out, const View& final_state);
  void RecurrentGatedDeltaRule(const View& q, const View& k, const View& v, const View& beta, const View& state,
                               const View& seqlens, const View& ssm_indices, const View& g, const View& accepted,
                               float scale, const View& out);
  void Synchronize();

  // The layer's primitives (element-wise ops take any strides and broadcast like numpy).
  enum class Unary { kSilu, kSigmoid, kExp, kNeg };
  void Apply(Unary op, const View& in, const View& out);
  void Softplus(const View& in, const View& out, float beta, float threshold);
  void Mul(const View& a, const View& b, const View& out);
  void Add(const View& a, const View& b, const View& out);
  void Matmul(const View& a, const View& b, const View& out);  // [...,M,K] x [K,N] -> [...,M,N]
  void IndexSelect(const View& in, int64_t dim, const View& index, const View& out);
  // Depthwise/grouped 1-D convolution, no padding, stride and dilation 1 (NCL tensors).
  void Conv1d(const View& x, const View& weight, const View* bias, int64_t groups, const View& out);

  static size_t Bytes(aclDataType dtype, const Dims& dims);

 private:
  aclTensor* Tensor(const View& v, aclFormat format = ACL_FORMAT_ND);
  aclIntArray* IntArray(const Dims& values);
  aclScalar* FloatScalar(float value);
  void Check(const char* what, int code);
  template <typename GetWorkspace, typename Run>
  void TwoPhase(const char* name, GetWorkspace get_workspace, Run run);

  const cann::Table& cann_;
  aclrtStream stream_;
  FreeAfterSync free_after_sync_;
  std::vector<void*> scratch_;
  std::vector<aclTensor*> tensors_;
  std::vector<aclIntArray*> arrays_;
  std::vector<aclScalar*> scalars_;
  std::vector<float> scalar_values_;  // aclCreateScalar keeps a pointer to the value on some CANN versions
};

}  // namespace gdn_ascend
