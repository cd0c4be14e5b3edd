// MemcpyFromHost / MemcpyToHost: the copy nodes ORT inserts between CPU nodes and this EP's nodes inside a
// graph (graph inputs and outputs go through the data transfer instead). A kernel-registry EP must provide
// them; without them ORT would hand the device kernels host memory. Copies are ordered on the EP's stream.
#include "ascend/ep/kernel_util.h"

namespace gdn_ascend {
namespace {

class MemcpyKernel : public EpKernel {
 public:
  MemcpyKernel(const OrtKernelInfo* info, bool to_host) : EpKernel(info), to_host_(to_host) {}

 private:
  OrtStatus* ComputeOnEp(OrtKernelContext* context) noexcept override {
    try {
      Run(Ort::KernelContext(context));
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
};

}  // namespace

OrtStatus* AddMemcpyKernels(OrtKernelRegistry* registry) {
  const auto T = std::make_pair(
      "T", std::vector<ONNXTensorElementDataType>{
               ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
               ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE,
               ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32,
               ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8,
               ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32,
               ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8,
               ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL});
  // MemcpyFromHost reads its input on the host, MemcpyToHost writes its output there.
  const KernelSpec from_host{"MemcpyFromHost", "", 1, 1, {T}, {0}, {}, Create<MemcpyKernel, false>};
  const KernelSpec to_host{"MemcpyToHost", "", 1, 1, {T}, {}, {}, Create<MemcpyKernel, true>, {0}};
  if (OrtStatus* st = AddKernel(registry, from_host)) return st;
  return AddKernel(registry, to_host);
}

}  // namespace gdn_ascend
