#include "ascend/ep/device_ops.h"

#include <cmath>

namespace gdn_ascend {

size_t ElementSize(aclDataType t) {
  switch (t) {
    case ACL_FLOAT: case ACL_INT32: return 4;
    case ACL_FLOAT16: case ACL_BF16: return 2;
    case ACL_INT64: return 8;
    default: return 1;
  }
}

View View::Contiguous(void* data, aclDataType dtype, Dims dims) {
  View v;
  v.data = data;
  v.dtype = dtype;
  v.strides.assign(dims.size(), 1);
  for (size_t i = dims.size(); i-- > 1;) v.strides[i - 1] = v.strides[i] * dims[i];
  v.dims = std::move(dims);
  return v;
}

int64_t View::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

size_t DeviceCall::Bytes(aclDataType dtype, const Dims& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return static_cast<size_t>(n) * ElementSize(dtype);
}

DeviceCall::~DeviceCall() {
  for (aclTensor* t : tensors_) cann_.aclDestroyTensor(t);
  for (aclIntArray* a : arrays_) cann_.aclDestroyIntArray(a);
  for (void* p : scratch_) free_after_sync_ ? free_after_sync_(p) : static_cast<void>(cann_.aclrtFree(p));
}

void DeviceCall::Check(const char* what, int code) {
  if (code == 0) return;
  const char* msg = cann_.aclGetRecentErrMsg ? cann_.aclGetRecentErrMsg() : nullptr;
  throw DeviceError(std::string(what) + " failed with CANN error " + std::to_string(code) + (msg ? ": " + std::string(msg) : ""));
}

void* DeviceCall::Scratch(size_t bytes) {
  void* p = nullptr;
  Check("aclrtMalloc", cann_.aclrtMalloc(&p, bytes == 0 ? 1 : bytes, ACL_MEM_MALLOC_HUGE_FIRST));
  scratch_.push_back(p);
  return p;
}

void DeviceCall::Upload(void* device, const void* host, size_t bytes) {
  Check("aclrtMemcpy", cann_.aclrtMemcpy(device, bytes, host, bytes, ACL_MEMCPY_HOST_TO_DEVICE));
}

void DeviceCall::Zero(const View& v) {
  const size_t bytes = Bytes(v.dtype, v.dims);
  Check("aclrtMemset", cann_.aclrtMemset(v.data, bytes, 0, bytes));
}

aclTensor* DeviceCall::Tensor(const View& v) {
  // The storage is the whole span the view reaches (offset included), as CANN's samples describe it.
  int64_t span = v.offset + 1;
  for (size_t i = 0; i < v.dims.size(); ++i) span += (v.dims[i] - 1) * v.strides[i];
  const Dims storage{span};
  aclTensor* t = cann_.aclCreateTensor(v.dims.data(), v.dims.size(), v.dtype, v.strides.data(), v.offset, ACL_FORMAT_ND,
                                       storage.data(), storage.size(), v.data);
  if (t == nullptr) Check("aclCreateTensor", -1);
  tensors_.push_back(t);
  return t;
}

template <typename GetWorkspace, typename Run>
void DeviceCall::TwoPhase(const char* name, GetWorkspace get_workspace, Run run) {
  uint64_t workspace_size = 0;
  aclOpExecutor* executor = nullptr;
  Check((std::string(name) + "GetWorkspaceSize").c_str(), get_workspace(&workspace_size, &executor));
  void* workspace = workspace_size > 0 ? Scratch(workspace_size) : nullptr;
  Check(name, run(workspace, workspace_size, executor, stream_));
}

void DeviceCall::Cast(const View& in, const View& out) {
  aclTensor* a = Tensor(in);
  aclTensor* b = Tensor(out);
  TwoPhase("aclnnCast", [&](uint64_t* ws, aclOpExecutor** ex) { return cann_.aclnnCastGetWorkspaceSize(a, out.dtype, b, ws, ex); },
           cann_.aclnnCast);
}

void DeviceCall::Permute(const View& in, const Dims& perm, const View& out) {
  aclTensor* a = Tensor(in);
  aclTensor* b = Tensor(out);
  aclIntArray* dims = cann_.aclCreateIntArray(perm.data(), perm.size());
  if (dims == nullptr) Check("aclCreateIntArray", -1);
  arrays_.push_back(dims);
  TwoPhase("aclnnPermute", [&](uint64_t* ws, aclOpExecutor** ex) { return cann_.aclnnPermuteGetWorkspaceSize(a, dims, b, ws, ex); },
           cann_.aclnnPermute);
}

void DeviceCall::L2Normalize(const View& x, const View& y, float eps) {
  const int64_t d = x.dims.back();
  // rms_norm(x) * g = x * rsqrt(sum/d + eps') * g; with g = 1/sqrt(d) and eps' = eps/d that is x * rsqrt(sum + eps).
  View gamma = NewTensor(ACL_FLOAT, {d});
  std::vector<float> host(static_cast<size_t>(d), 1.f / std::sqrt(static_cast<float>(d)));
  Upload(gamma.data, host.data(), host.size() * sizeof(float));
  Dims rstd_dims = x.dims;
  rstd_dims.back() = 1;
  View rstd = NewTensor(ACL_FLOAT, rstd_dims);
  aclTensor* tx = Tensor(x);
  aclTensor* tg = Tensor(gamma);
  aclTensor* ty = Tensor(y);
  aclTensor* tr = Tensor(rstd);
  const double epsilon = static_cast<double>(eps) / static_cast<double>(d);
  TwoPhase("aclnnRmsNorm",
           [&](uint64_t* ws, aclOpExecutor** ex) { return cann_.aclnnRmsNormGetWorkspaceSize(tx, tg, epsilon, ty, tr, ws, ex); },
           cann_.aclnnRmsNorm);
}

void DeviceCall::ChunkGatedDeltaRule(const View& q, const View& k, const View& v, const View& beta, const View& state,
                                     const View& seqlens, const View& g, float scale, const View& out,
                                     const View& final_state) {
  aclTensor *tq = Tensor(q), *tk = Tensor(k), *tv = Tensor(v), *tb = Tensor(beta), *ts = Tensor(state);
  aclTensor *tl = Tensor(seqlens), *tg = Tensor(g), *to = Tensor(out), *tf = Tensor(final_state);
  TwoPhase("aclnnChunkGatedDeltaRule",
           [&](uint64_t* ws, aclOpExecutor** ex) {
             return cann_.aclnnChunkGatedDeltaRuleGetWorkspaceSize(tq, tk, tv, tb, ts, tl, tg, scale, to, tf, ws, ex);
           },
           cann_.aclnnChunkGatedDeltaRule);
}

void DeviceCall::RecurrentGatedDeltaRule(const View& q, const View& k, const View& v, const View& beta, const View& state,
                                         const View& seqlens, const View& ssm_indices, const View& g,
                                         const View& accepted, float scale, const View& out) {
  aclTensor *tq = Tensor(q), *tk = Tensor(k), *tv = Tensor(v), *tb = Tensor(beta), *ts = Tensor(state);
  aclTensor *tl = Tensor(seqlens), *ti = Tensor(ssm_indices), *tg = Tensor(g), *ta = Tensor(accepted), *to = Tensor(out);
  TwoPhase("aclnnRecurrentGatedDeltaRule",
           [&](uint64_t* ws, aclOpExecutor** ex) {
             return cann_.aclnnRecurrentGatedDeltaRuleGetWorkspaceSize(tq, tk, tv, tb, ts, tl, ti, tg, nullptr, ta, scale, to,
                                                                      ws, ex);
           },
           cann_.aclnnRecurrentGatedDeltaRule);
}

void DeviceCall::Synchronize() { Check("aclrtSynchronizeStream", cann_.aclrtSynchronizeStream(stream_)); }

}  // namespace gdn_ascend
