// The ONNX Runtime C API helpers of ort_api.h: statuses, type mapping, node names, input reading, output
// allocation and the parallel loop. Every message made here is one line.
#include "custom-ops/ort_api.h"

namespace gdn {
namespace custom_ops {

const OrtApi* g_ort = nullptr;

OrtStatus* invalid(const std::string& msg) { return g_ort->CreateStatus(ORT_INVALID_ARGUMENT, msg.c_str()); }
OrtStatus* fail(const std::string& msg) { return g_ort->CreateStatus(ORT_FAIL, msg.c_str()); }

bool ok(OrtStatus* s) {
  if (s == nullptr) return true;
  g_ort->ReleaseStatus(s);
  return false;
}

DType to_dtype(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return DType::kFloat32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return DType::kFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return DType::kBFloat16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return DType::kInt32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return DType::kInt64;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return DType::kBool;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED: return DType::kUndefined;
    default: return DType::kOther;
  }
}

std::string node_name(const OrtKernelInfo* info) {
  size_t size = 0;
  if (!ok(g_ort->KernelInfo_GetNodeName(info, nullptr, &size))) return "";
  std::string out(size, '\0');
  if (!ok(g_ort->KernelInfo_GetNodeName(info, &out[0], &size))) return "";
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

std::string at_node(const std::string& node, const char* op, const std::string& msg) {
  const std::string prefix = std::string(op) + ": ";
  const std::string rest = msg.compare(0, prefix.size(), prefix) == 0 ? msg.substr(prefix.size()) : msg;
  return std::string(op) + " node '" + node + "': " + rest;
}

OrtStatus* tensor_info(const OrtValue* v, TensorInfo* ti) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  GDN_ORT_TRY(g_ort->GetTensorTypeAndShape(v, &info));
  ONNXTensorElementDataType et = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t rank = 0;
  OrtStatus* s = g_ort->GetTensorElementType(info, &et);
  if (s == nullptr) s = g_ort->GetDimensionsCount(info, &rank);
  if (s == nullptr) {
    ti->shape.assign(rank, 0);
    s = g_ort->GetDimensions(info, ti->shape.data(), rank);
  }
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  ti->present = true;
  ti->dtype = to_dtype(et);
  return s;
}

OrtStatus* read_inputs(OrtKernelContext* ctx, const char* op_name, Inputs* in) {
  size_t n = 0;
  GDN_ORT_TRY(g_ort->KernelContext_GetInputCount(ctx, &n));
  in->info.assign(n, TensorInfo());
  in->data.assign(n, nullptr);
  for (size_t i = 0; i < n; ++i) {
    const OrtValue* v = nullptr;
    GDN_ORT_TRY(g_ort->KernelContext_GetInput(ctx, i, &v));
    if (v == nullptr) continue;  // absent optional input
    int is_tensor = 0;
    GDN_ORT_TRY(g_ort->IsTensor(v, &is_tensor));
    if (!is_tensor) return invalid(std::string(op_name) + ": input " + std::to_string(i) + " must be a tensor");
    GDN_ORT_TRY(tensor_info(v, &in->info[i]));
    void* p = nullptr;
    GDN_ORT_TRY(g_ort->GetTensorMutableData(const_cast<OrtValue*>(v), &p));
    in->data[i] = p;
  }
  return nullptr;
}

namespace {

// ORT's own message for a refused output, reduced to one line: "[2,5]" from "... has shape {2,5} but ...",
// else "" (the caller then says the output cannot be allocated).
std::string given_shape(const std::string& ort_msg) {
  const size_t at = ort_msg.find("has shape {");
  if (at != std::string::npos) {
    const size_t open = at + 10, close = ort_msg.find('}', open);
    if (close != std::string::npos) return "[" + ort_msg.substr(open + 1, close - open - 1) + "]";
  }
  return "";
}

void ort_parallel_run(void* impl, void (*fn)(void*, size_t), size_t total, void* arg) {
  auto* ctx = static_cast<OrtKernelContext*>(impl);
  if (OrtStatus* s = g_ort->KernelContext_ParallelFor(ctx, fn, total, 0, arg)) {
    g_ort->ReleaseStatus(s);
    for (size_t i = 0; i < total; ++i) fn(arg, i);  // kernels are idempotent per work item
  }
}

}  // namespace

OrtStatus* get_output(OrtKernelContext* ctx, const char* op_name, const std::string& node, const char* out_name,
                      size_t index, const std::vector<int64_t>& shape, DType dtype, void** data) {
  *data = nullptr;
  size_t n = 0;
  GDN_ORT_TRY(g_ort->KernelContext_GetOutputCount(ctx, &n));
  if (index >= n) return nullptr;
  const std::string too_large = check_tensor_size(op_name, out_name, shape, 4);
  if (!too_large.empty()) return invalid(at_node(node, op_name, too_large));
  OrtValue* v = nullptr;
  if (OrtStatus* s = g_ort->KernelContext_GetOutput(ctx, index, shape.data(), shape.size(), &v)) {
    const std::string ort_msg = g_ort->GetErrorMessage(s);
    g_ort->ReleaseStatus(s);
    const std::string given = given_shape(ort_msg);
    const std::string what = given.empty() ? "cannot be allocated with shape " + shape_str(shape)
                                           : "was given with shape " + given + ", expected " + shape_str(shape);
    return invalid(at_node(node, op_name, std::string("output ") + out_name + " " + what));
  }
  if (v == nullptr) return nullptr;
  TensorInfo ti;
  GDN_ORT_TRY(tensor_info(v, &ti));
  if (ti.dtype != dtype)
    return invalid(at_node(node, op_name, std::string("output ") + out_name + " must have element type " +
                                              dtype_name(dtype) + " but the graph declares " + dtype_name(ti.dtype)));
  GDN_ORT_TRY(g_ort->GetTensorMutableData(v, data));
  return nullptr;
}

Parallel ort_parallel(OrtKernelContext* ctx) { return Parallel{ctx, &ort_parallel_run}; }

}  // namespace custom_ops
}  // namespace gdn
