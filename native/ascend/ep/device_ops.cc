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
  for (aclScalar* a : scalars_) cann_.aclDestroyScalar(a);
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

aclTensor* DeviceCall::Tensor(const View& v, aclFormat format) {
  // The storage is the whole span the view reaches (offset included), as CANN's samples describe it.
  int64_t span = v.offset + 1;
  for (size_t i = 0; i < v.dims.size(); ++i) span += (v.dims[i] - 1) * v.strides[i];
  const Dims storage{span};
  aclTensor* t = cann_.aclCreateTensor(v.dims.data(), v.dims.size(), v.dtype, v.strides.data(), v.offset, format,
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
  aclIntArray* dims = IntArray(perm);
  TwoPhase("aclnnPermute", [&](uint64_t* ws, aclOpExecutor** ex) { return cann_.aclnnPermuteGetWorkspaceSize(a, dims, b, ws, ex); },
           cann_.aclnnPermute);
}

void DeviceCall::L2Normalize(const View& x, const View& y, float eps) {
  const int64_t d = x.dims.back();
  // rms_norm(x) * g = x * rsqrt(sum/d + eps') * g; with g = 1/sqrt(d) and eps' = eps/d that is x * rsqrt(sum + eps).
  View gamma = NewTensor(ACL_FLOAT, {d});
  std::vector<float> host(static_cast<size_t>(d), 1.f / std::sqrt(static_cast<float>(d)));
  Upload(gamma.data, host.data(), host.size() * sizeof(float));
  RmsNorm(x, gamma, static_cast<double>(eps) / static_cast<double>(d), y);
}

void DeviceCall::RmsNorm(const View& x, const View& gamma, double eps, const View& y) {
  Dims rstd_dims = x.dims;
  rstd_dims.back() = 1;
  View rstd = NewTensor(ACL_FLOAT, rstd_dims);
  aclTensor* tx = Tensor(x);
  aclTensor* tg = Tensor(gamma);
  aclTensor* ty = Tensor(y);
  aclTensor* tr = Tensor(rstd);
  TwoPhase("aclnnRmsNorm",
           [&](uint64_t* ws, aclOpExecutor** ex) {
             return cann_.aclnnRmsNormGetWorkspaceSize(tx, tg, eps, ty, tr, ws, ex);
           },
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

aclIntArray* DeviceCall::IntArray(const Dims& values) {
  aclIntArray* a = cann_.aclCreateIntArray(values.data(), values.size());
  if (a == nullptr) Check("aclCreateIntArray", -1);
  arrays_.push_back(a);
  return a;
}

aclScalar* DeviceCall::FloatScalar(float value) {
  scalar_values_.reserve(16);  // pointers into it must stay valid: at most 16 scalars per call
  if (scalar_values_.size() == scalar_values_.capacity()) throw DeviceError("too many aclScalars in one kernel call");
  scalar_values_.push_back(value);
  aclScalar* s = cann_.aclCreateScalar(&scalar_values_.back(), ACL_FLOAT);
  if (s == nullptr) Check("aclCreateScalar", -1);
  scalars_.push_back(s);
  return s;
}

void DeviceCall::CopyContiguous(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  Check("aclrtMemcpyAsync", cann_.aclrtMemcpyAsync(dst, bytes, src, bytes, ACL_MEMCPY_DEVICE_TO_DEVICE, stream_));
}

void DeviceCall::Apply(Unary op, const View& in, const View& out) {
  aclTensor* a = Tensor(in);
  aclTensor* b = Tensor(out);
  auto ws = [&](auto get) {
    return [&, get](uint64_t* size, aclOpExecutor** ex) { return get(a, b, size, ex); };
  };
  switch (op) {
    case Unary::kSilu: return TwoPhase("aclnnSilu", ws(cann_.aclnnSiluGetWorkspaceSize), cann_.aclnnSilu);
    case Unary::kSigmoid: return TwoPhase("aclnnSigmoid", ws(cann_.aclnnSigmoidGetWorkspaceSize), cann_.aclnnSigmoid);
    case Unary::kExp: return TwoPhase("aclnnExp", ws(cann_.aclnnExpGetWorkspaceSize), cann_.aclnnExp);
    case Unary::kNeg: return TwoPhase("aclnnNeg", ws(cann_.aclnnNegGetWorkspaceSize), cann_.aclnnNeg);
  }
}

void DeviceCall::Softplus(const View& in, const View& out, float beta, float threshold) {
  aclTensor* a = Tensor(in);
  aclTensor* b = Tensor(out);
  aclScalar* sb = FloatScalar(beta);
  aclScalar* st = FloatScalar(threshold);
  TwoPhase("aclnnSoftplus",
           [&](uint64_t* ws, aclOpExecutor** ex) { return cann_.aclnnSoftplusGetWorkspaceSize(a, sb, st, b, ws, ex); },
           cann_.aclnnSoftplus);
}

void DeviceCall::Mul(const View& a, const View& b, const View& out) {
  aclTensor *ta = Tensor(a), *tb = Tensor(b), *to = Tensor(out);
  TwoPhase("aclnnMul",
           [&](uint64_t* ws, aclOpExecutor** ex) { return cann_.aclnnMulGetWorkspaceSize(ta, tb, to, ws, ex); },
           cann_.aclnnMul);
}

void DeviceCall::Add(const View& a, const View& b, const View& out) {
  aclTensor *ta = Tensor(a), *tb = Tensor(b), *to = Tensor(out);
  aclScalar* one = FloatScalar(1.f);
  TwoPhase("aclnnAdd",
           [&](uint64_t* ws, aclOpExecutor** ex) { return cann_.aclnnAddGetWorkspaceSize(ta, tb, one, to, ws, ex); },
           cann_.aclnnAdd);
}

void DeviceCall::Matmul(const View& a, const View& b, const View& out) {
  aclTensor *ta = Tensor(a), *tb = Tensor(b), *to = Tensor(out);
  const int8_t keep_dtype = 0;  // cubeMathType KEEP_DTYPE: float32 stays float32, fp16/bf16 accumulate in float32
  TwoPhase("aclnnMatmul",
           [&](uint64_t* ws, aclOpExecutor** ex) {
             return cann_.aclnnMatmulGetWorkspaceSize(ta, tb, to, keep_dtype, ws, ex);
           },
           cann_.aclnnMatmul);
}

void DeviceCall::IndexSelect(const View& in, int64_t dim, const View& index, const View& out) {
  aclTensor *ta = Tensor(in), *ti = Tensor(index), *to = Tensor(out);
  TwoPhase("aclnnIndexSelect",
           [&](uint64_t* ws, aclOpExecutor** ex) {
             return cann_.aclnnIndexSelectGetWorkspaceSize(ta, dim, ti, to, ws, ex);
           },
           cann_.aclnnIndexSelect);
}

void DeviceCall::Conv1d(const View& x, const View& weight, const View* bias, int64_t groups, const View& out) {
  aclTensor *tx = Tensor(x, ACL_FORMAT_NCL), *tw = Tensor(weight, ACL_FORMAT_NCL), *to = Tensor(out, ACL_FORMAT_NCL);
  aclTensor* tb = bias ? Tensor(*bias) : nullptr;
  aclIntArray *stride = IntArray({1}), *padding = IntArray({0}), *dilation = IntArray({1});
  aclIntArray* output_padding = IntArray({0});
  // ALLOW_FP32_DOWN_PRECISION: KEEP_DTYPE is not supported for float32 on A2/A3 (float32 runs as HFLOAT32).
  const int8_t cube_math = 1;
  TwoPhase("aclnnConvolution",
           [&](uint64_t* ws, aclOpExecutor** ex) {
             return cann_.aclnnConvolutionGetWorkspaceSize(tx, tw, tb, stride, padding, dilation, false, output_padding,
                                                           groups, to, cube_math, ws, ex);
           },
           cann_.aclnnConvolution);
}

void DeviceCall::Synchronize() { Check("aclrtSynchronizeStream", cann_.aclrtSynchronizeStream(stream_)); }

}  // namespace gdn_ascend
