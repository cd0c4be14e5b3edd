// gdn-fuse: ONNX Runtime custom-op glue for the "gdn" domain (opset 1). Plain ORT C API only.
// Loads through SessionOptions RegisterCustomOpsLibrary_V2 on any ORT >= 1.17 (C API >= 17, headers <= 29).
// This file maps ORT tensors to the backend-neutral contract (common/gdn_contract.h) and calls the CPU kernels
// (cpu/cpu_kernels.h); a CUDA / Ascend backend adds its own kernels behind the same contract.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "common/gdn_contract.h"
#include "cpu/cpu_kernels.h"
#include "onnxruntime_c_api.h"

#define GDN_EXPORT __attribute__((visibility("default")))

namespace {

using namespace gdn;

const OrtApi* g_ort = nullptr;
constexpr uint32_t kMinOrtApiVersion = 17;  // ORT 1.17: CreateKernelV2/KernelComputeV2, ParallelFor, shape inference
constexpr uint32_t kCustomOpVersion = 17;   // OrtCustomOp struct fields we fill (must be <= the runtime's API)
constexpr int64_t kCpuMaxHeadDim = 8192;
constexpr int64_t kCpuMaxRowLength = int64_t{1} << 28;  // GatedRMSNorm: rows are indexed with int
constexpr unsigned kMinOrtMinorForShapeInference = 30;

// ---------------------------------------------------------------------------------------------------
// small helpers

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

OrtStatus* invalid(const std::string& msg) { return g_ort->CreateStatus(ORT_INVALID_ARGUMENT, msg.c_str()); }
OrtStatus* fail(const std::string& msg) { return g_ort->CreateStatus(ORT_FAIL, msg.c_str()); }

#define GDN_ORT_TRY(expr)             \
  do {                                \
    OrtStatus* st_ = (expr);          \
    if (st_ != nullptr) return st_;   \
  } while (0)

// ---------------------------------------------------------------------------------------------------
// Attributes. The C API reads an attribute as one given type and fails alike when it is absent and when it has
// another type; asking for every type tells the two apart, so that an attribute of the wrong type is an error
// instead of silently "absent, use the default". (No C API lists a node's attributes, so an unknown attribute
// name cannot be detected here.)

std::string node_name(const OrtKernelInfo* info) {
  size_t size = 0;
  if (OrtStatus* s = g_ort->KernelInfo_GetNodeName(info, nullptr, &size)) {
    g_ort->ReleaseStatus(s);
    return "";
  }
  std::string out(size, '\0');
  if (OrtStatus* s = g_ort->KernelInfo_GetNodeName(info, &out[0], &size)) {
    g_ort->ReleaseStatus(s);
    return "";
  }
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

// "Op: message" (the contract's form) -> "Op node 'name': message".
std::string at_node(const std::string& node, const char* op, const std::string& msg) {
  const std::string prefix = std::string(op) + ": ";
  const std::string rest = msg.compare(0, prefix.size(), prefix) == 0 ? msg.substr(prefix.size()) : msg;
  return std::string(op) + " node '" + node + "': " + rest;
}

bool ok(OrtStatus* s) {
  if (s == nullptr) return true;
  g_ort->ReleaseStatus(s);
  return false;
}

// The type the node's attribute `name` has, or nullptr when it is absent.
const char* attr_present_type(const OrtKernelInfo* info, const char* name) {
  int64_t i = 0;
  float f = 0.f;
  size_t n = 0;
  if (ok(g_ort->KernelInfoGetAttribute_int64(info, name, &i))) return attr_type_name(AttrType::kInt);
  if (ok(g_ort->KernelInfoGetAttribute_float(info, name, &f))) return attr_type_name(AttrType::kFloat);
  if (ok(g_ort->KernelInfoGetAttribute_string(info, name, nullptr, &n))) return attr_type_name(AttrType::kString);
  n = 0;
  if (ok(g_ort->KernelInfoGetAttributeArray_int64(info, name, nullptr, &n))) return "a list of ints";
  n = 0;
  if (ok(g_ort->KernelInfoGetAttributeArray_float(info, name, nullptr, &n))) return "a list of floats";
  return nullptr;
}

// Reads attributes of one node; the first problem is kept in `error` (later reads are then skipped).
struct AttrReader {
  const OrtKernelInfo* info;
  const char* op;
  std::string node;
  std::string error;

  // Absent: false (the caller keeps its default). Present with another type: false and `error` set.
  bool wrong_type(const char* name, AttrType want) {
    if (!error.empty()) return true;
    const char* got = attr_present_type(info, name);
    if (got != nullptr)
      error = at_node(node, op, std::string("attribute ") + name + " must be " + attr_type_name(want) + ", got " + got);
    return got != nullptr;
  }
  void read(const char* name, float* v) {
    if (error.empty() && !ok(g_ort->KernelInfoGetAttribute_float(info, name, v))) wrong_type(name, AttrType::kFloat);
  }
  void read(const char* name, int64_t* v) {
    if (error.empty() && !ok(g_ort->KernelInfoGetAttribute_int64(info, name, v))) wrong_type(name, AttrType::kInt);
  }
  void read(const char* name, std::string* v) {
    if (!error.empty()) return;
    size_t size = 0;
    if (!ok(g_ort->KernelInfoGetAttribute_string(info, name, nullptr, &size))) {
      wrong_type(name, AttrType::kString);
      return;
    }
    std::string out(size, '\0');
    if (!ok(g_ort->KernelInfoGetAttribute_string(info, name, &out[0], &size))) return;
    while (!out.empty() && out.back() == '\0') out.pop_back();
    *v = out;
  }
  // The contract's value check, reported at this node.
  void check(const std::string& contract_error) {
    if (error.empty() && !contract_error.empty()) error = at_node(node, op, contract_error);
  }
};

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

struct Inputs {
  std::vector<TensorInfo> info;
  std::vector<const void*> data;
};

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

// ORT's own message for a refused output, reduced to one line: "{2,5}" from "... has shape {2,5} but ...", or
// the text after ORT's "file:line function [ONNXRuntimeError] : code : NAME : " prefix.
std::string given_shape(const std::string& ort_msg) {
  const size_t at = ort_msg.find("has shape {");
  if (at != std::string::npos) {
    const size_t open = at + 10, close = ort_msg.find('}', open);
    if (close != std::string::npos) return "[" + ort_msg.substr(open + 1, close - open - 1) + "]";
  }
  return "";
}

// Allocates output `index` with `shape`; *data = nullptr when the node does not produce that output.
// Checks that the size fits (overflow-safe) and that the element type ORT assigned to the output is the one the
// kernel writes; a preallocated output of another shape is reported in one line.
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

// gdn::Parallel over ORT's intra-op thread pool (serial when the session has none).
void ort_parallel_run(void* impl, void (*fn)(void*, size_t), size_t total, void* arg) {
  auto* ctx = static_cast<OrtKernelContext*>(impl);
  if (OrtStatus* s = g_ort->KernelContext_ParallelFor(ctx, fn, total, 0, arg)) {
    g_ort->ReleaseStatus(s);
    for (size_t i = 0; i < total; ++i) fn(arg, i);  // kernels are idempotent per work item
  }
}
Parallel ort_parallel(OrtKernelContext* ctx) { return Parallel{ctx, &ort_parallel_run}; }

// ---------------------------------------------------------------------------------------------------
// kernels

struct DeltaRuleKernel {
  bool chunk;
  DeltaRuleAttrs attrs;
};

template <bool kChunk>
OrtStatus* delta_rule_create(const OrtKernelInfo* info, AttrReader& r, void** out) {
  DeltaRuleKernel k;
  k.chunk = kChunk;
  r.read(delta_rule::kAttrScale, &k.attrs.scale);
  r.read(delta_rule::kAttrUseQkL2norm, &k.attrs.use_qk_l2norm);
  r.read(delta_rule::kAttrStateLayout, &k.attrs.state_layout);
  if (kChunk) r.read(delta_rule::kAttrChunkSize, &k.attrs.chunk_size);
  r.check(validate_delta_rule_attrs(r.op, kChunk, k.attrs));
  if (!r.error.empty()) return invalid(r.error);
  (void)info;
  *out = new DeltaRuleKernel(k);
  return nullptr;
}

OrtStatus* delta_rule_compute(void* kernel, const std::string& node, OrtKernelContext* ctx) {
  const auto* k = static_cast<const DeltaRuleKernel*>(kernel);
  const char* name = k->chunk ? op::kChunkGatedDeltaRule : op::kRecurrentGatedDeltaRule;
  Inputs in;
  GDN_ORT_TRY(read_inputs(ctx, name, &in));
  DeltaRuleParams p;
  const std::string err = validate_delta_rule(name, k->chunk, k->attrs, in.info.data(), in.info.size(), &p);
  if (!err.empty()) return invalid(err);
  // CPU backend limits (the kernels index heads with int and keep per-thread K x V / chunk tiles).
  if (p.K > kCpuMaxHeadDim || p.V > kCpuMaxHeadDim)
    return invalid(std::string(name) + ": head dimensions K=" + std::to_string(p.K) + ", V=" + std::to_string(p.V) +
                   " exceed the CPU backend limit of " + std::to_string(kCpuMaxHeadDim));
  DeltaRuleTensors t;
  t.query = in.data[delta_rule::kQuery];
  t.key = in.data[delta_rule::kKey];
  t.value = in.data[delta_rule::kValue];
  t.g = static_cast<const float*>(in.data[delta_rule::kG]);
  t.beta = in.data[delta_rule::kBeta];
  t.initial_state = p.has_initial_state ? static_cast<const float*>(in.data[delta_rule::kInitialState]) : nullptr;
  GDN_ORT_TRY(get_output(ctx, name, node, "output", delta_rule::kOutput, p.output_shape(), p.dtype, &t.output));
  void* fs = nullptr;
  GDN_ORT_TRY(get_output(ctx, name, node, "final_state", delta_rule::kFinalState, p.state_shape(), DType::kFloat32, &fs));
  t.final_state = static_cast<float*>(fs);
  if (t.output == nullptr) return nullptr;  // nothing requested (cannot happen for a valid node)
  // No token and no state to write: nothing to do (B may be huge when T = 0; never loop over it).
  if (p.T == 0 && t.final_state == nullptr) return nullptr;
  if (k->chunk) cpu::chunk_gated_delta_rule(p, t, ort_parallel(ctx));
  else cpu::recurrent_gated_delta_rule(p, t, ort_parallel(ctx));
  return nullptr;
}

struct ConvKernel {
  CausalConv1dAttrs attrs;
};

OrtStatus* conv_create(const OrtKernelInfo*, AttrReader& r, void** out) {
  ConvKernel k;
  r.read(causal_conv1d::kAttrActivation, &k.attrs.activation);
  r.read(causal_conv1d::kAttrStateSize, &k.attrs.state_size);
  r.check(validate_causal_conv1d_attrs(k.attrs));
  if (!r.error.empty()) return invalid(r.error);
  *out = new ConvKernel(k);
  return nullptr;
}

size_t element_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

// Opset-2 serving inputs: the plan of sequences, and conv_state_out a copy of the pool unless it is the pool.
OrtStatus* conv_serving_plan(const CausalConv1dParams& p, const Inputs& in, const CausalConv1dTensors& t,
                             CausalConv1dPlan* plan) {
  using namespace causal_conv1d;
  const auto data = [&](int i) { return (size_t)i < in.data.size() ? in.data[i] : nullptr; };
  const auto* has_initial_state = static_cast<const bool*>(data(kHasInitialState));
  const std::string err = build_causal_conv1d_plan(p, data(kCuSeqlens), data(kConvStateIndices),
                                                   data(kNumAcceptedTokens), has_initial_state, plan);
  if (!err.empty()) return invalid(err);
  if (p.pool() && t.conv_state_out != nullptr && t.conv_state_out != t.conv_state) {
    int64_t bytes = 0;
    checked_numel(p.state_shape(), &bytes);  // the pool is an input: its size fits
    std::memcpy(t.conv_state_out, t.conv_state, (size_t)bytes * element_size(p.x_type));
  }
  return nullptr;
}

OrtStatus* conv_compute(void* kernel, const std::string& node, OrtKernelContext* ctx) {
  const auto* k = static_cast<const ConvKernel*>(kernel);
  const char* name = op::kCausalConv1d;
  Inputs in;
  GDN_ORT_TRY(read_inputs(ctx, name, &in));
  CausalConv1dParams p;
  // Inputs 4-7 with their opset-2 meaning: ORT gives a custom op no way to learn its node's opset; the runtime's
  // model check refuses them in opset-1 models.
  const std::string err =
      validate_causal_conv1d(k->attrs, in.info.data(), in.info.size(), &p, causal_conv1d::kFirstServingOpset);
  if (!err.empty()) return invalid(err);
  CausalConv1dTensors t;
  t.x = in.data[causal_conv1d::kX];
  t.weight = in.data[causal_conv1d::kWeight];
  t.bias = p.has_bias ? in.data[causal_conv1d::kBias] : nullptr;
  t.conv_state = p.has_state ? in.data[causal_conv1d::kConvState] : nullptr;
  GDN_ORT_TRY(get_output(ctx, name, node, "y", causal_conv1d::kY, p.y_shape(), p.x_type, &t.y));
  GDN_ORT_TRY(get_output(ctx, name, node, "conv_state_out", causal_conv1d::kConvStateOut, p.state_shape(), p.x_type,
                         &t.conv_state_out));
  if (t.y == nullptr) return nullptr;
  if (p.serving()) {
    CausalConv1dPlan plan;
    GDN_ORT_TRY(conv_serving_plan(p, in, t, &plan));
    t.plan = &plan;
    cpu::causal_conv1d(p, t, ort_parallel(ctx));
    return nullptr;
  }
  // Nothing to write (B or C may be huge when T = 0): never loop over empty rows.
  if ((p.T == 0 || p.B == 0 || p.C == 0) && (t.conv_state_out == nullptr || p.S == 0 || p.B == 0 || p.C == 0))
    return nullptr;
  cpu::causal_conv1d(p, t, ort_parallel(ctx));
  return nullptr;
}

OrtStatus* gating_create(const OrtKernelInfo*, AttrReader&, void** out) {
  *out = nullptr;
  return nullptr;
}

OrtStatus* gating_compute(void*, const std::string& node, OrtKernelContext* ctx) {
  const char* name = op::kGatedDeltaGating;
  Inputs in;
  GDN_ORT_TRY(read_inputs(ctx, name, &in));
  GatingParams p;
  const std::string err = validate_gating(in.info.data(), in.info.size(), &p);
  if (!err.empty()) return invalid(err);
  GatingTensors t;
  t.a = in.data[gating::kA];
  t.b = in.data[gating::kB];
  t.A_log = static_cast<const float*>(in.data[gating::kALog]);
  t.dt_bias = static_cast<const float*>(in.data[gating::kDtBias]);
  void* g = nullptr;
  GDN_ORT_TRY(get_output(ctx, name, node, "g", gating::kG, p.shape, DType::kFloat32, &g));
  t.g = static_cast<float*>(g);
  GDN_ORT_TRY(get_output(ctx, name, node, "beta", gating::kBeta, p.shape, p.b_type, &t.beta));
  if (p.N == 0 || p.H == 0) return nullptr;  // empty (a dim may still be huge): nothing to compute
  cpu::gated_delta_gating(p, t, ort_parallel(ctx));
  return nullptr;
}

struct RMSNormKernel {
  float epsilon = rms_norm::kDefaultEpsilon;
};

OrtStatus* rms_create(const OrtKernelInfo*, AttrReader& r, void** out) {
  RMSNormKernel k;
  r.read(rms_norm::kAttrEpsilon, &k.epsilon);
  r.check(validate_rms_norm_attrs(k.epsilon));
  if (!r.error.empty()) return invalid(r.error);
  *out = new RMSNormKernel(k);
  return nullptr;
}

OrtStatus* rms_compute(void* kernel, const std::string& node, OrtKernelContext* ctx) {
  const auto* k = static_cast<const RMSNormKernel*>(kernel);
  const char* name = op::kGatedRMSNorm;
  Inputs in;
  GDN_ORT_TRY(read_inputs(ctx, name, &in));
  RMSNormParams p;
  const std::string err = validate_rms_norm(k->epsilon, in.info.data(), in.info.size(), &p);
  if (!err.empty()) return invalid(err);
  if (p.D > kCpuMaxRowLength)
    return invalid(std::string(name) + ": the last dimension of x is " + std::to_string(p.D) +
                   ", above the CPU backend limit of " + std::to_string(kCpuMaxRowLength));
  RMSNormTensors t;
  t.x = in.data[rms_norm::kX];
  t.gate = in.data[rms_norm::kGate];
  t.weight = in.data[rms_norm::kWeight];
  GDN_ORT_TRY(get_output(ctx, name, node, "y", rms_norm::kY, p.shape, p.x_type, &t.y));
  if (t.y == nullptr) return nullptr;
  cpu::gated_rms_norm(p, t, ort_parallel(ctx));
  return nullptr;
}

template <class T>
void destroy_kernel(void* k) {
  delete static_cast<T*>(k);
}

// ---------------------------------------------------------------------------------------------------
// op descriptions and the OrtCustomOp adapter

// Every op is registered once per concrete type combination ("variant"); ORT merges the variants into one
// schema and picks the kernel from the input types. Dynamically typed (UNDEFINED) outputs are avoided:
// ORT < 1.2x refuses them when an op has more than one dynamically typed input.
constexpr ONNXTensorElementDataType kAny = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;  // checked at run time
constexpr ONNXTensorElementDataType kF32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
constexpr ONNXTensorElementDataType kF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
constexpr ONNXTensorElementDataType kBF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
constexpr ONNXTensorElementDataType kI64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType kBool = ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
// Placeholders resolved per variant: kT1 = the op's main float type, kT2 = its secondary float type. Plain ints:
// 1001 is no value of the ORT enum, and holding it in an enum variable is undefined behaviour (UBSan says so).
constexpr int kT1 = 1001;
constexpr int kT2 = 1002;

struct Variant {
  ONNXTensorElementDataType t1, t2;
};

struct IoSpec {
  int type;  // an ONNXTensorElementDataType, or kT1 / kT2
  bool optional;
};

struct ShapeInfer;

struct OpSpec {
  const char* name;
  std::vector<IoSpec> inputs;
  std::vector<IoSpec> outputs;
  OrtStatus* (*create)(const OrtKernelInfo*, AttrReader&, void**);
  OrtStatus* (*compute)(void*, const std::string& node, OrtKernelContext*);
  void (*destroy)(void*);
  std::vector<Variant> variants;
  void (*infer)(ShapeInfer&);  // output shapes from input shapes (see below)
};

// A created kernel: the op spec plus the op-specific state (attributes).
struct KernelBox {
  const OpSpec* spec;
  void* impl;
  std::string node;  // the node's name, for messages
  ~KernelBox() {
    if (spec->destroy && impl) spec->destroy(impl);
  }
};

struct GdnCustomOp : OrtCustomOp {
  const OpSpec* spec;
  Variant variant;
};

ONNXTensorElementDataType resolve(int t, const Variant& v) {
  return t == kT1 ? v.t1 : t == kT2 ? v.t2 : static_cast<ONNXTensorElementDataType>(t);
}

const OpSpec& spec_of(const OrtCustomOp* op) { return *static_cast<const GdnCustomOp*>(op)->spec; }

// Output type + shape inference (beyond ORT's default type guess). Input infos belong to ORT (never released or
// modified here); outputs get fresh infos. ORT reports an input of unknown rank as rank 0, and no input of these
// ops may be a scalar: an input whose rank is not the one the contract requires gives no information, and an
// output is only set when its rank is known (a rank-0 output would let ORT fold Shape(output) to []).
struct ShapeOf {
  bool ok = false;
  ONNXTensorElementDataType type = kAny;
  std::vector<int64_t> dims;
  std::vector<std::string> syms;
  void push(const ShapeOf& from, size_t d) {  // appends dim d of `from` (unknown when out of range)
    dims.push_back(d < from.dims.size() ? from.dims[d] : -1);
    syms.push_back(d < from.syms.size() ? from.syms[d] : "");
  }
};

ShapeOf input_shape(OrtShapeInferContext* ctx, size_t n_in, int idx) {
  ShapeOf r;
  if (idx < 0 || (size_t)idx >= n_in) return r;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (!ok(g_ort->ShapeInferContext_GetInputTypeShape(ctx, (size_t)idx, &info)) || info == nullptr) return r;
  size_t rank = 0;
  OrtStatus* st = g_ort->GetTensorElementType(info, &r.type);
  if (st == nullptr) st = g_ort->GetDimensionsCount(info, &rank);
  if (st == nullptr) {
    r.dims.assign(rank, -1);
    st = g_ort->GetDimensions(info, r.dims.data(), rank);
  }
  std::vector<const char*> sym(rank, nullptr);
  if (st == nullptr) st = g_ort->GetSymbolicDimensions(info, sym.data(), rank);
  if (!ok(st)) return r;
  for (const char* c : sym) r.syms.emplace_back(c ? c : "");
  r.ok = true;
  return r;
}

void set_output(OrtShapeInferContext* ctx, size_t index, const ShapeOf& s) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (!ok(g_ort->CreateTensorTypeAndShapeInfo(&info))) return;
  std::vector<const char*> sym;
  for (const auto& x : s.syms) sym.push_back(x.c_str());
  OrtStatus* st = g_ort->SetTensorElementType(info, s.type);
  if (st == nullptr) st = g_ort->SetDimensions(info, s.dims.data(), s.dims.size());
  if (st == nullptr && sym.size() == s.dims.size()) st = g_ort->SetSymbolicDimensions(info, sym.data(), sym.size());
  if (st == nullptr) st = g_ort->ShapeInferContext_SetOutputTypeShape(ctx, index, info);
  ok(st);  // best effort: ORT's own type guess stays
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
}

struct ShapeInfer {
  OrtShapeInferContext* ctx;
  size_t n_in;
  // Input `idx` when present with rank `rank` (0: any rank >= 1).
  ShapeOf in(int idx, size_t rank) {
    ShapeOf s = input_shape(ctx, n_in, idx);
    if (s.ok && (s.dims.empty() || (rank != 0 && s.dims.size() != rank))) s.ok = false;
    return s;
  }
  // Output `o`: shape s, element type `type` (kAny: the type of the input s came from).
  void out(size_t o, ShapeOf s, ONNXTensorElementDataType type) {
    if (type != kAny) s.type = type;
    if (s.type != kAny) set_output(ctx, o, s);
  }
  std::string attr_string(const char* name, const char* def) {
    const OrtOpAttr* attr = nullptr;
    if (!ok(g_ort->ShapeInferContext_GetAttribute(ctx, name, &attr)) || attr == nullptr) return def;
    char buf[64] = {};
    size_t len = 0;
    if (!ok(g_ort->ReadOpAttr(attr, ORT_OP_ATTR_STRING, buf, sizeof(buf) - 1, &len))) return def;
    return std::string(buf, std::min(len, sizeof(buf) - 1));
  }
  int64_t attr_int(const char* name, int64_t def) {
    const OrtOpAttr* attr = nullptr;
    int64_t v = def;
    size_t len = 0;
    if (!ok(g_ort->ShapeInferContext_GetAttribute(ctx, name, &attr)) || attr == nullptr) return def;
    return ok(g_ort->ReadOpAttr(attr, ORT_OP_ATTR_INT, &v, sizeof(v), &len)) ? v : def;
  }
};

// output [B,T,Hv,V] like value; final_state like initial_state, else [B,Hv,K,V] ("kv") / [B,Hv,V,K] ("vk").
void infer_delta_rule(ShapeInfer& si) {
  using namespace delta_rule;
  const ShapeOf v = si.in(kValue, 4);
  if (v.ok) si.out(kOutput, v, kAny);
  const ShapeOf s0 = si.in(kInitialState, 4);
  if (s0.ok) return si.out(kFinalState, s0, kF32);
  const ShapeOf q = si.in(kQuery, 4);
  if (!q.ok || !v.ok) return;
  const bool vk = si.attr_string(kAttrStateLayout, kDefaultStateLayout) == "vk";
  ShapeOf st;
  st.push(q, 0);
  st.push(v, 2);
  st.push(vk ? v : q, 3);
  st.push(vk ? q : v, 3);
  si.out(kFinalState, st, kF32);
}

// y like x; conv_state_out like conv_state, else [B,C,S] with S = state_size, or W-1 from weight's last dim.
void infer_causal_conv1d(ShapeInfer& si) {
  using namespace causal_conv1d;
  const ShapeOf x = si.in(kX, 3);
  if (x.ok) si.out(kY, x, kAny);
  const ShapeOf st = si.in(kConvState, 3);
  if (st.ok) return si.out(kConvStateOut, st, kAny);
  if (!x.ok) return;
  ShapeOf out;
  out.type = x.type;
  const ShapeOf cu = si.in(kCuSeqlens, 1);  // packed (opset 2): one state row per sequence, N = len - 1
  if (cu.ok) out.dims.push_back(cu.dims[0] > 0 ? cu.dims[0] - 1 : -1), out.syms.push_back("");
  else out.push(x, 0);
  out.push(x, 1);
  int64_t S = si.attr_int(kAttrStateSize, kDefaultStateSize);
  if (S == 0) {
    const ShapeOf w = si.in(kWeight, 0);
    S = w.ok && w.dims.back() > 0 ? w.dims.back() - 1 : -1;
  }
  out.dims.push_back(S >= 0 && S <= kMaxStateSize ? S : -1);
  out.syms.push_back("");
  si.out(kConvStateOut, out, kAny);
}

void infer_gating(ShapeInfer& si) {
  const ShapeOf a = si.in(gating::kA, 3), b = si.in(gating::kB, 3);
  if (a.ok) si.out(gating::kG, a, kF32);
  if (b.ok) si.out(gating::kBeta, b, kAny);
}

void infer_rms_norm(ShapeInfer& si) {
  const ShapeOf x = si.in(rms_norm::kX, 0);
  if (x.ok) si.out(rms_norm::kY, x, kAny);
}

OrtStatus* infer_shapes(const OrtCustomOp* op, OrtShapeInferContext* ctx) {
  size_t n_in = 0;
  if (!ok(g_ort->ShapeInferContext_GetInputCount(ctx, &n_in))) return nullptr;
  ShapeInfer si{ctx, n_in};
  // ORT builds one schema per op name from the first variant, so this must not rely on the variant: outputs of
  // a fixed type use it, the others the type of the input they follow.
  spec_of(op).infer(si);
  return nullptr;
}

GdnCustomOp make_op(const OpSpec* spec, Variant variant) {
  GdnCustomOp op;
  std::memset(static_cast<OrtCustomOp*>(&op), 0, sizeof(OrtCustomOp));
  op.spec = spec;
  op.variant = variant;
  op.version = kCustomOpVersion;
  op.CreateKernel = nullptr;   // V2 entry points are used (version >= 16)
  op.KernelCompute = nullptr;
  op.GetName = [](const OrtCustomOp* o) -> const char* { return spec_of(o).name; };
  op.GetExecutionProviderType = [](const OrtCustomOp*) -> const char* { return nullptr; };  // CPU
  op.GetInputType = [](const OrtCustomOp* o, size_t i) {
    return resolve(spec_of(o).inputs[i].type, static_cast<const GdnCustomOp*>(o)->variant);
  };
  op.GetInputTypeCount = [](const OrtCustomOp* o) { return spec_of(o).inputs.size(); };
  op.GetOutputType = [](const OrtCustomOp* o, size_t i) {
    return resolve(spec_of(o).outputs[i].type, static_cast<const GdnCustomOp*>(o)->variant);
  };
  op.GetOutputTypeCount = [](const OrtCustomOp* o) { return spec_of(o).outputs.size(); };
  op.KernelDestroy = [](void* k) {
    delete static_cast<KernelBox*>(k);
  };
  op.GetInputCharacteristic = [](const OrtCustomOp* o, size_t i) {
    return spec_of(o).inputs[i].optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  };
  op.GetOutputCharacteristic = [](const OrtCustomOp* o, size_t i) {
    return spec_of(o).outputs[i].optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  };
  op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
  op.GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.CreateKernelV2 = [](const OrtCustomOp* o, const OrtApi*, const OrtKernelInfo* info, void** kernel) -> OrtStatus* {
    const OpSpec& s = spec_of(o);
    void* impl = nullptr;
    AttrReader reader{info, s.name, node_name(info), ""};
    try {
      GDN_ORT_TRY(s.create(info, reader, &impl));
      *kernel = new KernelBox{&s, impl, reader.node};
    } catch (const std::exception& e) {
      return fail(at_node(reader.node, s.name, e.what()));
    }
    return nullptr;
  };
  op.KernelComputeV2 = [](void* k, OrtKernelContext* ctx) -> OrtStatus* {
    auto* box = static_cast<KernelBox*>(k);
    try {
      return box->spec->compute(box->impl, box->node, ctx);
    } catch (const std::exception& e) {
      return fail(std::string(box->spec->name) + ": " + e.what());
    } catch (...) {
      return fail(std::string(box->spec->name) + ": unknown error");
    }
  };
  op.InferOutputShapeFn = infer_shapes;
  op.GetStartVersion = [](const OrtCustomOp*) { return kOpsetVersion; };
  op.GetEndVersion = [](const OrtCustomOp*) { return INT_MAX; };
  return op;
}

const OpSpec* all_specs(size_t* n) {
  // Type variants. Delta rules: query/key/value/beta share one float type (t1).
  static const std::vector<Variant> same = {{kF32, kF32}, {kF16, kF16}, {kBF16, kBF16}};
  // Ops with a parameter tensor that may stay float32 while activations are float16 / bfloat16 (t2 = weight type).
  static const std::vector<Variant> with_f32_weight = {{kF32, kF32}, {kF16, kF16}, {kBF16, kBF16}, {kF16, kF32}, {kBF16, kF32}};
  // GatedDeltaGating: b (t1) and a (t2) independently float32 / float16 / bfloat16.
  static const std::vector<Variant> all_pairs = [] {
    std::vector<Variant> v;
    for (auto a : {kF32, kF16, kBF16})
      for (auto b : {kF32, kF16, kBF16}) v.push_back({b, a});
    return v;
  }();
  // Delta rule inputs: query, key, value, g, beta, initial_state, cu_seqlens, ssm_state_indices[, num_accepted_tokens]
  static const std::vector<IoSpec> dr_in_chunk = {{kT1, false}, {kT1, false}, {kT1, false}, {kF32, false},
                                                  {kT1, false}, {kF32, true},  {kI64, true},  {kAny, true}};
  static std::vector<IoSpec> dr_in_rec = [] {
    auto v = dr_in_chunk;
    v.push_back({kAny, true});
    return v;
  }();
  static const std::vector<IoSpec> dr_out = {{kT1, false}, {kF32, true}};
  // CausalConv1d: x, weight, bias, conv_state; from opset 2 cu_seqlens, conv_state_indices, num_accepted_tokens
  // (int32 or int64, checked at run time) and has_initial_state.
  static const std::vector<IoSpec> conv_in = {{kT1, false}, {kT2, false}, {kT2, true},  {kT1, true},
                                              {kAny, true}, {kAny, true}, {kAny, true}, {kBool, true}};
  static const std::vector<IoSpec> conv_out = {{kT1, false}, {kT1, true}};
  static const OpSpec specs[] = {
      {op::kChunkGatedDeltaRule, dr_in_chunk, dr_out, &delta_rule_create<true>, &delta_rule_compute,
       &destroy_kernel<DeltaRuleKernel>, same, &infer_delta_rule},
      {op::kRecurrentGatedDeltaRule, dr_in_rec, dr_out, &delta_rule_create<false>, &delta_rule_compute,
       &destroy_kernel<DeltaRuleKernel>, same, &infer_delta_rule},
      {op::kCausalConv1d, conv_in, conv_out, &conv_create, &conv_compute, &destroy_kernel<ConvKernel>,
       with_f32_weight, &infer_causal_conv1d},
      {op::kGatedDeltaGating, {{kT2, false}, {kT1, false}, {kF32, false}, {kF32, false}}, {{kF32, false}, {kT1, false}},
       &gating_create, &gating_compute, nullptr, all_pairs, &infer_gating},
      {op::kGatedRMSNorm, {{kT1, false}, {kT1, false}, {kT2, false}}, {{kT1, false}},
       &rms_create, &rms_compute, &destroy_kernel<RMSNormKernel>, with_f32_weight, &infer_rms_norm},
  };
  *n = sizeof(specs) / sizeof(specs[0]);
  return specs;
}

std::vector<GdnCustomOp>& all_ops() {
  static std::vector<GdnCustomOp> ops = [] {
    size_t n = 0;
    const OpSpec* s = all_specs(&n);
    std::vector<GdnCustomOp> v;
    for (size_t i = 0; i < n; ++i)
      for (const Variant& var : s[i].variants) v.push_back(make_op(&s[i], var));
    return v;
  }();
  return ops;
}

// Domains handed to ORT must outlive the sessions that use them: keep them until the library unloads.
struct DomainKeeper {
  std::mutex mu;
  std::vector<OrtCustomOpDomain*> domains;
  ~DomainKeeper() {
    if (g_ort != nullptr)
      for (auto* d : domains) g_ort->ReleaseCustomOpDomain(d);
  }
};
DomainKeeper& domain_keeper() {
  static DomainKeeper k;
  return k;
}

}  // namespace

extern "C" GDN_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  if (api_base == nullptr) return nullptr;
  // ORT 1.x serves C API versions 1..x. Ask for min(x, the headers' version) directly: GetApi prints a
  // message to stderr for every version it does not have, so probing downwards would be noisy.
  uint32_t want = ORT_API_VERSION;
  unsigned major = 0, minor = 0;
  if (const char* ver = api_base->GetVersionString()) {
    if (std::sscanf(ver, "%u.%u", &major, &minor) == 2 && major == 1 && minor < want) want = minor;
  }
  const OrtApi* api = want >= kMinOrtApiVersion ? api_base->GetApi(want) : nullptr;
  for (uint32_t v = want; api == nullptr && v > kMinOrtApiVersion;) api = api_base->GetApi(--v);
  if (api == nullptr) {
    // Cannot create an OrtStatus without an API table; fall back to the oldest table to report the problem.
    const OrtApi* old = api_base->GetApi(1);
    if (old == nullptr) return nullptr;
    return old->CreateStatus(ORT_FAIL, "gdn-fuse op library needs ONNX Runtime >= 1.17 (C API version >= 17)");
  }
  g_ort = api;
  OrtCustomOpDomain* domain = nullptr;
  GDN_ORT_TRY(api->CreateCustomOpDomain(kDomain, &domain));
  // Output shape inference: ORT 1.17's OrtShapeInferContext dereferences absent optional inputs (crash), so it
  // is only offered to runtimes it was tested with (1.30+; 1.22 crashes too). Output element types never depend on it: every
  // variant has concrete types, and ORT infers them from the kernel that matches the inputs.
  const bool shape_inference = major > 1 || (major == 1 && minor >= kMinOrtMinorForShapeInference);
  for (auto& op : all_ops()) {
    op.InferOutputShapeFn = shape_inference ? infer_shapes : nullptr;
    if (OrtStatus* s = api->CustomOpDomain_Add(domain, &op)) {
      api->ReleaseCustomOpDomain(domain);
      return s;
    }
  }
  if (OrtStatus* s = api->AddCustomOpDomain(options, domain)) {
    api->ReleaseCustomOpDomain(domain);
    return s;
  }
  DomainKeeper& keeper = domain_keeper();
  std::lock_guard<std::mutex> lock(keeper.mu);
  keeper.domains.push_back(domain);
  return nullptr;
}
