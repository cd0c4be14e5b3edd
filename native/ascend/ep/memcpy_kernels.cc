// MemcpyFromHost / MemcpyToHost: the copy nodes ORT inserts between CPU nodes and this EP's nodes inside a
// graph (graph inputs and outputs go through the data transfer instead). A kernel-registry EP must provide
// them; without them ORT would hand the device kernels host memory. Copies are ordered on the EP's stream.
#include "ascend/ep/ep.h"
#include "ascend/ep/stream.h"

namespace gdn_ascend {
namespace {

class MemcpyKernel : public OrtKernelImpl {
 public:
  MemcpyKernel(const OrtKernelInfo* info, bool to_host) : OrtKernelImpl{}, to_host_(to_host) {
    ort_version_supported = ORT_API_VERSION;
    Compute = ComputeImpl;
    Release = [](OrtKernelImpl* self) noexcept { delete static_cast<MemcpyKernel*>(self); };
    const OrtEp* ep = nullptr;
    Ort::ThrowOnError(Ort::GetEpApi().KernelInfo_GetEp(info, &ep));
    ep_ = static_cast<const Ep*>(ep);
  }

 private:
  static OrtStatus* ORT_API_CALL ComputeImpl(OrtKernelImpl* self, OrtKernelContext* context) noexcept {
    try {
      static_cast<MemcpyKernel*>(self)->Run(Ort::KernelContext(context));
      return nullptr;
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_EP_FAIL, e.what());
    }
  }

  void Run(Ort::KernelContext ctx) const {
    Ort::ConstValue in = ctx.GetInput(0);
    auto info = in.GetTensorTypeAndShapeInfo();
    Ort::UnownedValue out = ctx.GetOutput(0, info.GetShape());
    const size_t bytes = info.GetElementCount() * ElementBytes(info.GetElementType());
    if (bytes == 0) return;
    const cann::Table& t = *ep_->cann;
    const aclrtMemcpyKind kind = to_host_ ? ACL_MEMCPY_DEVICE_TO_HOST : ACL_MEMCPY_HOST_TO_DEVICE;
    const KernelStream stream = StreamFor(*ep_, ctx);
    const void* src = in.GetTensorRawData();
    // The CPU producer's buffer may be reused once this kernel returns: the async copy reads a staged copy.
    if (!to_host_ && stream.session) src = stream.session->StageHost(src, bytes);
    void* dst = out.GetTensorMutableRawData();
    if (int rc = t.aclrtMemcpyAsync(dst, bytes, src, bytes, kind, stream.handle)) {
      throw std::runtime_error("aclrtMemcpyAsync failed with CANN error " + std::to_string(rc));
    }
    // On a session stream the CPU consumer of a D2H copy waits for it through ORT's notification (WaitOnHost).
    if (stream.session == nullptr) {
      if (int rc = t.aclrtSynchronizeStream(stream.handle)) {
        throw std::runtime_error("aclrtSynchronizeStream failed with CANN error " + std::to_string(rc));
      }
    }
    SessionCopies(ep_->stats_id).Count(kind, bytes);
  }

  static size_t ElementBytes(ONNXTensorElementDataType t) {
    switch (t) {
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64: return 8;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32: return 4;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16:
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16: case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return 2;
      case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return 1;
      default: throw std::runtime_error("Memcpy: unsupported element type " + std::to_string(t));
    }
  }

  bool to_host_;
  const Ep* ep_ = nullptr;
};

template <bool kToHost>
OrtStatus* ORT_API_CALL CreateMemcpy(void*, const OrtKernelInfo* info, OrtKernelImpl** out) noexcept {
  try {
    *out = new MemcpyKernel(info, kToHost);
    return nullptr;
  } catch (const std::exception& e) {
    *out = nullptr;
    return Ort::GetApi().CreateStatus(ORT_EP_FAIL, e.what());
  }
}

OrtStatus* AddMemcpy(OrtKernelRegistry* registry, bool to_host) {
  const OrtEpApi& api = Ort::GetEpApi();
  std::vector<const OrtDataType*> types;
  for (ONNXTensorElementDataType t :
       {ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16,
        ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
        ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64,
        ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
        ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL}) {
    const OrtDataType* dt = nullptr;
    if (OrtStatus* st = api.GetTensorDataType(t, &dt)) return st;
    types.push_back(dt);
  }
  OrtKernelDefBuilder* b = nullptr;
  if (OrtStatus* st = api.CreateKernelDefBuilder(&b)) return st;
  OrtKernelDef* def = nullptr;
  OrtStatus* st = api.KernelDefBuilder_SetOperatorType(b, to_host ? "MemcpyToHost" : "MemcpyFromHost");
  if (!st) st = api.KernelDefBuilder_SetDomain(b, "");
  if (!st) st = api.KernelDefBuilder_SetSinceVersion(b, 1, 1);
  if (!st) st = api.KernelDefBuilder_SetExecutionProvider(b, kEpName);
  if (!st) st = to_host ? api.KernelDefBuilder_SetOutputMemType(b, 0, OrtMemTypeCPUOutput)
                        : api.KernelDefBuilder_SetInputMemType(b, 0, OrtMemTypeCPUInput);
  if (!st) st = api.KernelDefBuilder_AddTypeConstraint(b, "T", types.data(), types.size());
  if (!st) st = api.KernelDefBuilder_Build(b, &def);
  api.ReleaseKernelDefBuilder(b);
  if (!st) st = api.KernelRegistry_AddKernel(registry, def, to_host ? CreateMemcpy<true> : CreateMemcpy<false>, nullptr);
  if (def) api.ReleaseKernelDef(def);
  return st;
}

}  // namespace

OrtStatus* AddMemcpyKernels(OrtKernelRegistry* registry) {
  if (OrtStatus* st = AddMemcpy(registry, false)) return st;
  return AddMemcpy(registry, true);
}

}  // namespace gdn_ascend
