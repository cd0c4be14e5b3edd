// gdn-fuse: ONNX Runtime custom-op glue for the "gdn" domain (opset 1). Plain ORT C API only.
// Loads through SessionOptions RegisterCustomOpsLibrary_V2 on any ORT >= 1.17 (C API >= 17, headers <= 29).
// This file maps ORT tensors to the backend-neutral contract (common/gdn_contract.h) and calls the CPU kernels
// (cpu/cpu_kernels.h); a CUDA / Ascend backend adds its own kernels behind the same contract.
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

// Attribute readers: a missing attribute yields the contract default.
float attr_float(const OrtKernelInfo* info, const char* name, float def) {
  float v = def;
  if (OrtStatus* s = g_ort->KernelInfoGetAttribute_float(info, name, &v)) {
    g_ort->ReleaseStatus(s);
    return def;
  }
  return v;
}
int64_t attr_int(const OrtKernelInfo* info, const char* name, int64_t def) {
  int64_t v = def;
  if (OrtStatus* s = g_ort->KernelInfoGetAttribute_int64(info, name, &v)) {
    g_ort->ReleaseStatus(s);
    return def;
  }
  return v;
}
std::string attr_string(const OrtKernelInfo* info, const char* name, const char* def) {
  size_t size = 0;
  if (OrtStatus* s = g_ort->KernelInfoGetAttribute_string(info, name, nullptr, &size)) {
    g_ort->ReleaseStatus(s);
    return def;
  }
  std::string out(size, '\0');
  if (OrtStatus* s = g_ort->KernelInfoGetAttribute_string(info, name, &out[0], &size)) {
    g_ort->ReleaseStatus(s);
    return def;
  }
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
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

// Allocates output `index` with `shape`; *data = nullptr when the node does not produce that output.
// Checks that the element type ORT assigned to the output is the one the kernel writes.
OrtStatus* get_output(OrtKernelContext* ctx, const char* op_name, const char* out_name, size_t index,
                      const std::vector<int64_t>& shape, DType dtype, void** data) {
  *data = nullptr;
  size_t n = 0;
  GDN_ORT_TRY(g_ort->KernelContext_GetOutputCount(ctx, &n));
  if (index >= n) return nullptr;
  OrtValue* v = nullptr;
  GDN_ORT_TRY(g_ort->KernelContext_GetOutput(ctx, index, shape.data(), shape.size(), &v));
  if (v == nullptr) return nullptr;
  TensorInfo ti;
  GDN_ORT_TRY(tensor_info(v, &ti));
  if (ti.dtype != dtype)
    return invalid(std::string(op_name) + ": output " + out_name + " must have element type " + dtype_name(dtype) +
                   " but the graph declares " + dtype_name(ti.dtype));
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
OrtStatus* delta_rule_create(const OrtKernelInfo* info, void** out) {
  auto* k = new DeltaRuleKernel();
  k->chunk = kChunk;
  k->attrs.scale = attr_float(info, delta_rule::kAttrScale, delta_rule::kDefaultScale);
  k->attrs.use_qk_l2norm = attr_int(info, delta_rule::kAttrUseQkL2norm, delta_rule::kDefaultUseQkL2norm);
  k->attrs.state_layout = attr_string(info, delta_rule::kAttrStateLayout, delta_rule::kDefaultStateLayout);
  k->attrs.chunk_size = attr_int(info, delta_rule::kAttrChunkSize, delta_rule::kDefaultChunkSize);
  const char* name = kChunk ? op::kChunkGatedDeltaRule : op::kRecurrentGatedDeltaRule;
  const std::string err = validate_delta_rule_attrs(name, kChunk, k->attrs);
  if (!err.empty()) {
    delete k;
    return invalid(err);
  }
  *out = k;
  return nullptr;
}

OrtStatus* delta_rule_compute(void* kernel, OrtKernelContext* ctx) {
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
  GDN_ORT_TRY(get_output(ctx, name, "output", delta_rule::kOutput, p.output_shape(), p.dtype, &t.output));
  void* fs = nullptr;
  GDN_ORT_TRY(get_output(ctx, name, "final_state", delta_rule::kFinalState, p.state_shape(), DType::kFloat32, &fs));
  t.final_state = static_cast<float*>(fs);
  if (t.output == nullptr) return nullptr;  // nothing requested (cannot happen for a valid node)
  if (k->chunk) cpu::chunk_gated_delta_rule(p, t, ort_parallel(ctx));
  else cpu::recurrent_gated_delta_rule(p, t, ort_parallel(ctx));
  return nullptr;
}

struct ConvKernel {
  CausalConv1dAttrs attrs;
};

OrtStatus* conv_create(const OrtKernelInfo* info, void** out) {
  auto* k = new ConvKernel();
  k->attrs.activation = attr_string(info, causal_conv1d::kAttrActivation, causal_conv1d::kDefaultActivation);
  k->attrs.state_size = attr_int(info, causal_conv1d::kAttrStateSize, causal_conv1d::kDefaultStateSize);
  const std::string err = validate_causal_conv1d_attrs(k->attrs);
  if (!err.empty()) {
    delete k;
    return invalid(err);
  }
  *out = k;
  return nullptr;
}

OrtStatus* conv_compute(void* kernel, OrtKernelContext* ctx) {
  const auto* k = static_cast<const ConvKernel*>(kernel);
  const char* name = op::kCausalConv1d;
  Inputs in;
  GDN_ORT_TRY(read_inputs(ctx, name, &in));
  CausalConv1dParams p;
  const std::string err = validate_causal_conv1d(k->attrs, in.info.data(), in.info.size(), &p);
  if (!err.empty()) return invalid(err);
  CausalConv1dTensors t;
  t.x = in.data[causal_conv1d::kX];
  t.weight = in.data[causal_conv1d::kWeight];
  t.bias = p.has_bias ? in.data[causal_conv1d::kBias] : nullptr;
  t.conv_state = p.has_state ? in.data[causal_conv1d::kConvState] : nullptr;
  GDN_ORT_TRY(get_output(ctx, name, "y", causal_conv1d::kY, p.y_shape(), p.x_type, &t.y));
  GDN_ORT_TRY(get_output(ctx, name, "conv_state_out", causal_conv1d::kConvStateOut, p.state_shape(), p.x_type,
                         &t.conv_state_out));
  if (t.y == nullptr) return nullptr;
  cpu::causal_conv1d(p, t, ort_parallel(ctx));
  return nullptr;
}

OrtStatus* gating_create(const OrtKernelInfo*, void** out) {
  *out = nullptr;
  return nullptr;
}

OrtStatus* gating_compute(void*, OrtKernelContext* ctx) {
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
  GDN_ORT_TRY(get_output(ctx, name, "g", gating::kG, p.shape, DType::kFloat32, &g));
  t.g = static_cast<float*>(g);
  GDN_ORT_TRY(get_output(ctx, name, "beta", gating::kBeta, p.shape, p.b_type, &t.beta));
  cpu::gated_delta_gating(p, t, ort_parallel(ctx));
  return nullptr;
}

struct RMSNormKernel {
  float epsilon;
};

OrtStatus* rms_create(const OrtKernelInfo* info, void** out) {
  auto* k = new RMSNormKernel{attr_float(info, rms_norm::kAttrEpsilon, rms_norm::kDefaultEpsilon)};
  *out = k;
  return nullptr;
}

OrtStatus* rms_compute(void* kernel, OrtKernelContext* ctx) {
  const auto* k = static_cast<const RMSNormKernel*>(kernel);
  const char* name = op::kGatedRMSNorm;
  Inputs in;
  GDN_ORT_TRY(read_inputs(ctx, name, &in));
  RMSNormParams p;
  const std::string err = validate_rms_norm(k->epsilon, in.info.data(), in.info.size(), &p);
  if (!err.empty()) return invalid(err);
  RMSNormTensors t;
  t.x = in.data[rms_norm::kX];
  t.gate = in.data[rms_norm::kGate];
  t.weight = in.data[rms_norm::kWeight];
  GDN_ORT_TRY(get_output(ctx, name, "y", rms_norm::kY, p.shape, p.x_type, &t.y));
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
// Placeholders resolved per variant: kT1 = the op's main float type, kT2 = its secondary float type.
constexpr ONNXTensorElementDataType kT1 = static_cast<ONNXTensorElementDataType>(1001);
constexpr ONNXTensorElementDataType kT2 = static_cast<ONNXTensorElementDataType>(1002);

struct Variant {
  ONNXTensorElementDataType t1, t2;
};

struct IoSpec {
  ONNXTensorElementDataType type;
  bool optional;
  int like_input;       // outputs: type/shape taken from this input in shape inference (-1: none)
  int fallback_input;   // outputs: when like_input is absent, rank/leading dims from this input (-1: none)
  int fallback_rank;    //          ... padded with unknown dims to this rank
};

struct OpSpec {
  const char* name;
  std::vector<IoSpec> inputs;
  std::vector<IoSpec> outputs;
  OrtStatus* (*create)(const OrtKernelInfo*, void**);
  OrtStatus* (*compute)(void*, OrtKernelContext*);
  void (*destroy)(void*);
  std::vector<Variant> variants;
};

// A created kernel: the op spec plus the op-specific state (attributes).
struct KernelBox {
  const OpSpec* spec;
  void* impl;
  ~KernelBox() {
    if (spec->destroy && impl) spec->destroy(impl);
  }
};

struct GdnCustomOp : OrtCustomOp {
  const OpSpec* spec;
  Variant variant;
};

ONNXTensorElementDataType resolve(ONNXTensorElementDataType t, const Variant& v) {
  return t == kT1 ? v.t1 : t == kT2 ? v.t2 : t;
}

const OpSpec& spec_of(const OrtCustomOp* op) { return *static_cast<const GdnCustomOp*>(op)->spec; }

// Output type + shape inference (beyond ORT's default type guess): outputs follow the input named in the spec.
// Input infos belong to ORT (never released or modified here); outputs get fresh infos.
struct ShapeOf {
  bool ok = false;
  ONNXTensorElementDataType type = kAny;
  std::vector<int64_t> dims;
  std::vector<std::string> syms;
};

ShapeOf input_shape(OrtShapeInferContext* ctx, size_t n_in, int idx) {
  ShapeOf r;
  if (idx < 0 || (size_t)idx >= n_in) return r;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (OrtStatus* st = g_ort->ShapeInferContext_GetInputTypeShape(ctx, (size_t)idx, &info)) {
    g_ort->ReleaseStatus(st);
    return r;
  }
  if (info == nullptr) return r;
  size_t rank = 0;
  OrtStatus* st = g_ort->GetTensorElementType(info, &r.type);
  if (st == nullptr) st = g_ort->GetDimensionsCount(info, &rank);
  if (st == nullptr) {
    r.dims.assign(rank, -1);
    st = g_ort->GetDimensions(info, r.dims.data(), rank);
  }
  std::vector<const char*> sym(rank, nullptr);
  if (st == nullptr) st = g_ort->GetSymbolicDimensions(info, sym.data(), rank);
  if (st != nullptr) {
    g_ort->ReleaseStatus(st);
    return r;
  }
  for (const char* c : sym) r.syms.emplace_back(c ? c : "");
  r.ok = true;
  return r;
}

void set_output(OrtShapeInferContext* ctx, size_t index, const ShapeOf& s) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (OrtStatus* st = g_ort->CreateTensorTypeAndShapeInfo(&info)) {
    g_ort->ReleaseStatus(st);
    return;
  }
  std::vector<const char*> sym;
  for (const auto& x : s.syms) sym.push_back(x.c_str());
  OrtStatus* st = g_ort->SetTensorElementType(info, s.type);
  if (st == nullptr) st = g_ort->SetDimensions(info, s.dims.data(), s.dims.size());
  if (st == nullptr && sym.size() == s.dims.size()) st = g_ort->SetSymbolicDimensions(info, sym.data(), sym.size());
  if (st == nullptr) st = g_ort->ShapeInferContext_SetOutputTypeShape(ctx, index, info);
  if (st != nullptr) g_ort->ReleaseStatus(st);  // best effort: ORT's own type guess stays
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
}

OrtStatus* infer_shapes(const OrtCustomOp* op, OrtShapeInferContext* ctx) {
  const OpSpec& s = spec_of(op);
  size_t n_in = 0;
  if (OrtStatus* st = g_ort->ShapeInferContext_GetInputCount(ctx, &n_in)) {
    g_ort->ReleaseStatus(st);
    return nullptr;
  }
  for (size_t o = 0; o < s.outputs.size(); ++o) {
    const IoSpec& io = s.outputs[o];
    ShapeOf sh = input_shape(ctx, n_in, io.like_input);
    if (!sh.ok && io.fallback_input >= 0) {
      // e.g. final_state without initial_state: rank known, leading [B, H|C] from the fallback input
      ShapeOf src = input_shape(ctx, n_in, io.fallback_input);
      if (src.ok) {
        sh.ok = true;
        sh.type = src.type;
        sh.dims.assign((size_t)io.fallback_rank, -1);
        sh.syms.assign((size_t)io.fallback_rank, "");
        const size_t lead[2] = {0, (size_t)(io.fallback_input == delta_rule::kValue ? 2 : 1)};
        for (size_t d = 0; d < 2; ++d)
          if (lead[d] < src.dims.size()) sh.dims[d] = src.dims[lead[d]], sh.syms[d] = src.syms[lead[d]];
      }
    }
    if (!sh.ok) continue;
    // ORT builds one schema per op name from the first variant, so this function must not rely on the
    // variant: fixed-type outputs use their type, kT1 / kT2 outputs the type of the input they follow.
    if (io.type != kT1 && io.type != kT2 && io.type != kAny) sh.type = io.type;
    if (sh.type == kAny) continue;
    set_output(ctx, o, sh);
  }
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
    GDN_ORT_TRY(s.create(info, &impl));
    *kernel = new KernelBox{&s, impl};
    return nullptr;
  };
  op.KernelComputeV2 = [](void* k, OrtKernelContext* ctx) -> OrtStatus* {
    auto* box = static_cast<KernelBox*>(k);
    try {
      return box->spec->compute(box->impl, ctx);
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
  static const std::vector<IoSpec> dr_in_chunk = {
      {kT1, false, -1, -1, 0}, {kT1, false, -1, -1, 0}, {kT1, false, -1, -1, 0}, {kF32, false, -1, -1, 0},
      {kT1, false, -1, -1, 0}, {kF32, true, -1, -1, 0},  {kI64, true, -1, -1, 0},  {kAny, true, -1, -1, 0}};
  static std::vector<IoSpec> dr_in_rec = [] {
    auto v = dr_in_chunk;
    v.push_back({kAny, true, -1, -1, 0});
    return v;
  }();
  static const std::vector<IoSpec> dr_out = {{kT1, false, delta_rule::kValue, -1, 0},
                                             {kF32, true, delta_rule::kInitialState, delta_rule::kValue, 4}};
  static const OpSpec specs[] = {
      {op::kChunkGatedDeltaRule, dr_in_chunk, dr_out, &delta_rule_create<true>, &delta_rule_compute,
       &destroy_kernel<DeltaRuleKernel>, same},
      {op::kRecurrentGatedDeltaRule, dr_in_rec, dr_out, &delta_rule_create<false>, &delta_rule_compute,
       &destroy_kernel<DeltaRuleKernel>, same},
      {op::kCausalConv1d,
       {{kT1, false, -1, -1, 0}, {kT2, false, -1, -1, 0}, {kT2, true, -1, -1, 0}, {kT1, true, -1, -1, 0}},
       {{kT1, false, causal_conv1d::kX, -1, 0}, {kT1, true, causal_conv1d::kConvState, causal_conv1d::kX, 3}},
       &conv_create, &conv_compute, &destroy_kernel<ConvKernel>, with_f32_weight},
      {op::kGatedDeltaGating,
       {{kT2, false, -1, -1, 0}, {kT1, false, -1, -1, 0}, {kF32, false, -1, -1, 0}, {kF32, false, -1, -1, 0}},
       {{kF32, false, gating::kA, -1, 0}, {kT1, false, gating::kB, -1, 0}},
       &gating_create, &gating_compute, nullptr, all_pairs},
      {op::kGatedRMSNorm,
       {{kT1, false, -1, -1, 0}, {kT1, false, -1, -1, 0}, {kT2, false, -1, -1, 0}},
       {{kT1, false, rms_norm::kX, -1, 0}},
       &rms_create, &rms_compute, &destroy_kernel<RMSNormKernel>, with_f32_weight},
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
