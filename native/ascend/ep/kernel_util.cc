#include "ascend/ep/kernel_util.h"

namespace gdn_ascend {

const std::vector<ONNXTensorElementDataType> kFloatTypes = {
    ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16};

aclDataType ToAcl(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return ACL_FLOAT;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return ACL_FLOAT16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return ACL_BF16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return ACL_INT32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return ACL_INT64;
    default: throw DeviceError("unsupported element type " + std::to_string(t));
  }
}

gdn::DType ToContract(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return gdn::DType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return gdn::DType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return gdn::DType::kBFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return gdn::DType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return gdn::DType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED: return gdn::DType::kUndefined;
    default: return gdn::DType::kOther;
  }
}

View AsView(const Ort::ConstValue& v) {
  auto info = v.GetTensorTypeAndShapeInfo();
  return View::Contiguous(const_cast<void*>(v.GetTensorRawData()), ToAcl(info.GetElementType()), info.GetShape());
}
View AsView(const Ort::UnownedValue& v) { return AsView(Ort::ConstValue(static_cast<const OrtValue*>(v))); }

std::vector<gdn::TensorInfo> InputInfos(Ort::KernelContext& ctx) {
  std::vector<gdn::TensorInfo> infos(ctx.GetInputCount());
  for (size_t i = 0; i < infos.size(); ++i) {
    Ort::ConstValue v = ctx.GetInput(i);
    if (v == nullptr) continue;
    auto info = v.GetTensorTypeAndShapeInfo();
    infos[i].present = true;
    infos[i].dtype = ToContract(info.GetElementType());
    infos[i].shape = info.GetShape();
  }
  return infos;
}

namespace {

// A scalar attribute read with `get` (one of OrtApi's KernelInfoGetAttribute_*), or `fallback` when absent.
template <typename T, typename Get>
T ScalarAttr(Get get, const OrtKernelInfo* info, const char* name, T fallback) {
  T v = fallback;
  if (OrtStatus* st = get(info, name, &v)) {
    Ort::GetApi().ReleaseStatus(st);
    return fallback;
  }
  return v;
}

}  // namespace

int64_t IntAttr(const OrtKernelInfo* info, const char* name, int64_t fallback) {
  return ScalarAttr(Ort::GetApi().KernelInfoGetAttribute_int64, info, name, fallback);
}

float FloatAttr(const OrtKernelInfo* info, const char* name, float fallback) {
  return ScalarAttr(Ort::GetApi().KernelInfoGetAttribute_float, info, name, fallback);
}

std::string StringAttr(const OrtKernelInfo* info, const char* name, const std::string& fallback) {
  size_t size = 0;
  if (OrtStatus* st = Ort::GetApi().KernelInfoGetAttribute_string(info, name, nullptr, &size)) {
    Ort::GetApi().ReleaseStatus(st);
    return fallback;
  }
  std::string v(size, '\0');
  Ort::ThrowOnError(Ort::GetApi().KernelInfoGetAttribute_string(info, name, &v[0], &size));
  while (!v.empty() && v.back() == '\0') v.pop_back();
  return v;
}

std::vector<int64_t> IntsAttr(const OrtKernelInfo* info, const char* name, bool* present) {
  size_t n = 0;
  *present = false;
  if (OrtStatus* st = Ort::GetApi().KernelInfoGetAttributeArray_int64(info, name, nullptr, &n)) {
    Ort::GetApi().ReleaseStatus(st);
    return {};
  }
  std::vector<int64_t> v(n);
  if (n > 0) Ort::ThrowOnError(Ort::GetApi().KernelInfoGetAttributeArray_int64(info, name, v.data(), &n));
  *present = true;
  return v;
}

View OutputView(Ort::KernelContext& ctx, size_t i, const Dims& shape) {
  if (i >= ctx.GetOutputCount()) return View{};
  Ort::UnownedValue v = ctx.GetOutput(i, shape);
  return v == nullptr ? View{} : AsView(v);
}

View Reshaped(const View& v, Dims dims) { return View::Contiguous(v.data, v.dtype, std::move(dims)); }

View Sliced(const View& v, size_t axis, int64_t start, int64_t len) {
  View s = v;
  s.dims[axis] = len;
  s.offset += start * v.strides[axis];
  return s;
}

View AsFloat32(DeviceCall& dev, const View& v) {
  if (v.dtype == ACL_FLOAT) return v;
  View f = dev.NewTensor(ACL_FLOAT, v.dims);
  dev.Cast(v, f);
  return f;
}

std::string AtNode(const std::string& node, const std::string& op, const std::string& message) {
  const std::string prefix = op + ": ";
  const std::string rest = message.compare(0, prefix.size(), prefix) == 0 ? message.substr(prefix.size()) : message;
  return op + " node '" + node + "': " + rest;
}

KernelRun::KernelRun(const Ep& ep, const Ort::KernelContext& ctx) : KernelRun(ep, StreamFor(ep, ctx)) {}

KernelRun::KernelRun(const Ep& ep, const KernelStream& stream)
    : dev(*ep.cann, stream.handle,
          stream.session ? DeviceCall::FreeAfterSync([s = stream.session](void* p) { s->FreeAfterSync(p); }) : nullptr),
      ep_(ep),
      stream_(stream) {}

void KernelRun::Finish() {
  if (stream_.session == nullptr && ep_.fault != Fault::kSkipSync) dev.Synchronize();
}

EpKernel::EpKernel(const OrtKernelInfo* info) : OrtKernelImpl{} {
  ort_version_supported = ORT_API_VERSION;
  Compute = [](OrtKernelImpl* self, OrtKernelContext* context) noexcept {
    return static_cast<EpKernel*>(self)->ComputeOnEp(context);
  };
  Release = [](OrtKernelImpl* self) noexcept { delete static_cast<EpKernel*>(self); };
  const OrtEp* ep = nullptr;
  Ort::ThrowOnError(Ort::GetEpApi().KernelInfo_GetEp(info, &ep));
  ep_ = static_cast<const Ep*>(ep);
}

DeviceKernel::DeviceKernel(const OrtKernelInfo* info, std::string op) : EpKernel(info), op_(std::move(op)) {
  node_ = Ort::ConstKernelInfo(info).GetNodeName();
}

void DeviceKernel::CheckAttrs(const std::string& contract_error) const {
  if (!contract_error.empty()) throw ContractError(AtNode(node_, op_, contract_error));
}

OrtStatus* DeviceKernel::ComputeOnEp(OrtKernelContext* context) noexcept {
  try {
    if (ep_->cann == nullptr) throw DeviceError("CANN is not loaded");
    Ort::KernelContext ctx(context);
    KernelRun run(*ep_, ctx);
    Run(ctx, run.dev);
    run.Finish();
    return nullptr;
  } catch (const ContractError& e) {
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
  } catch (const std::exception& e) {
    const std::string message = op_ + " node '" + node_ + "' on Ascend: " + e.what();
    return Ort::GetApi().CreateStatus(ORT_EP_FAIL, message.c_str());
  }
}

namespace {

OrtStatus* TypeConstraint(OrtKernelDefBuilder* b, const char* name, const std::vector<ONNXTensorElementDataType>& ts) {
  const OrtEpApi& api = Ort::GetEpApi();
  std::vector<const OrtDataType*> types;
  for (ONNXTensorElementDataType t : ts) {
    const OrtDataType* dt = nullptr;
    if (OrtStatus* st = api.GetTensorDataType(t, &dt)) return st;
    types.push_back(dt);
  }
  return api.KernelDefBuilder_AddTypeConstraint(b, name, types.data(), types.size());
}

OrtStatus* Describe(OrtKernelDefBuilder* b, const KernelSpec& spec) {
  const OrtEpApi& api = Ort::GetEpApi();
  if (OrtStatus* st = api.KernelDefBuilder_SetOperatorType(b, spec.op)) return st;
  if (OrtStatus* st = api.KernelDefBuilder_SetDomain(b, spec.domain)) return st;
  if (OrtStatus* st = api.KernelDefBuilder_SetSinceVersion(b, spec.since_start, spec.since_end)) return st;
  if (OrtStatus* st = api.KernelDefBuilder_SetExecutionProvider(b, kEpName)) return st;
  for (const auto& [name, types] : spec.types) {
    if (OrtStatus* st = TypeConstraint(b, name, types)) return st;
  }
  for (size_t i : spec.cpu_inputs) {
    if (OrtStatus* st = api.KernelDefBuilder_SetInputMemType(b, i, OrtMemTypeCPUInput)) return st;
  }
  for (size_t i : spec.cpu_outputs) {
    if (OrtStatus* st = api.KernelDefBuilder_SetOutputMemType(b, i, OrtMemTypeCPUOutput)) return st;
  }
  for (const auto& [in, out] : spec.aliases) {
    if (OrtStatus* st = api.KernelDefBuilder_AddInputOutputAliases(b, &in, &out, 1)) return st;
  }
  return nullptr;
}

}  // namespace

OrtStatus* AddKernel(OrtKernelRegistry* registry, const KernelSpec& spec) {
  const OrtEpApi& api = Ort::GetEpApi();
  OrtKernelDefBuilder* b = nullptr;
  if (OrtStatus* st = api.CreateKernelDefBuilder(&b)) return st;
  OrtKernelDef* def = nullptr;
  OrtStatus* st = Describe(b, spec);
  if (!st) st = api.KernelDefBuilder_Build(b, &def);
  api.ReleaseKernelDefBuilder(b);
  if (!st) st = api.KernelRegistry_AddKernel(registry, def, spec.create, nullptr);
  if (def) api.ReleaseKernelDef(def);
  return st;
}

}  // namespace gdn_ascend
