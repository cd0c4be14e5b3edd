// The ONNX Runtime C API as the custom-op library uses it: the API table (set once by RegisterCustomOps, or by
// another library that reuses these helpers), one-line statuses, element-type mapping to the contract's DType,
// reading a kernel's inputs as contract TensorInfos, allocating checked outputs, and gdn::Parallel over ORT's
// intra-op thread pool. Nothing here knows an op: the op-specific parts live in op_bindings.h.
#pragma once
#include <string>
#include <vector>

#include "common/gdn_contract.h"
#include "onnxruntime_c_api.h"

namespace gdn {
namespace custom_ops {

// The API table every helper calls through; null until set_ort_api.
extern const OrtApi* g_ort;
inline void set_ort_api(const OrtApi* api) { g_ort = api; }

OrtStatus* invalid(const std::string& msg);  // ORT_INVALID_ARGUMENT
OrtStatus* fail(const std::string& msg);     // ORT_FAIL

#define GDN_ORT_TRY(expr)             \
  do {                                \
    OrtStatus* st_ = (expr);          \
    if (st_ != nullptr) return st_;   \
  } while (0)

// True when s is null (success); a failure status is released.
bool ok(OrtStatus* s);

// ONNX element types by short names (kAny: not fixed by the schema, checked at run time).
constexpr ONNXTensorElementDataType kAny = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
constexpr ONNXTensorElementDataType kF32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType kF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
constexpr ONNXTensorElementDataType kBF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
constexpr ONNXTensorElementDataType kI64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType kBool = ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;

DType to_dtype(ONNXTensorElementDataType t);

// The node's name ("" when ORT cannot tell it).
std::string node_name(const OrtKernelInfo* info);
// "Op: message" (the contract's form) -> "Op node 'name': message".
std::string at_node(const std::string& node, const char* op, const std::string& msg);

// Element type and shape of a tensor value.
OrtStatus* tensor_info(const OrtValue* v, TensorInfo* ti);

// A kernel's inputs as the contract sees them (absent optional inputs: present = false, data = nullptr).
struct Inputs {
  std::vector<TensorInfo> info;
  std::vector<const void*> data;
};
OrtStatus* read_inputs(OrtKernelContext* ctx, const char* op_name, Inputs* in);

// Allocates output `index` with `shape`; *data = nullptr when the node does not produce that output.
// Checks that the size fits (overflow-safe) and that the element type ORT assigned to the output is the one the
// kernel writes; a preallocated output of another shape is reported in one line.
OrtStatus* get_output(OrtKernelContext* ctx, const char* op_name, const std::string& node, const char* out_name,
                      size_t index, const std::vector<int64_t>& shape, DType dtype, void** data);

// gdn::Parallel over ORT's intra-op thread pool (serial when the session has none).
Parallel ort_parallel(OrtKernelContext* ctx);

}  // namespace custom_ops
}  // namespace gdn
