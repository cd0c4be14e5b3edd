// The op table: for each op of the gdn domain its schema (input / output element types and which are optional),
// its type variants, its kernel (an op binding through the kernel adapter) and its shape inference rule, and the
// OrtCustomOp built from each (op, variant) pair. Every op is registered once per concrete type combination;
// ORT merges the variants into one schema and picks the kernel from the input types. Dynamically typed
// (UNDEFINED) outputs are avoided: ORT < 1.2x refuses them when an op has more than one dynamically typed input.
#include "custom-ops/op_table.h"

#include <climits>
#include <cstring>
#include <exception>
#include <string>

#include "common/gdn_contract.h"
#include "custom-ops/attributes.h"
#include "custom-ops/kernel_adapter.h"
#include "custom-ops/op_bindings.h"
#include "custom-ops/ort_api.h"
#include "custom-ops/shape_inference.h"

namespace gdn {
namespace custom_ops {
namespace {

constexpr uint32_t kCustomOpVersion = 17;  // OrtCustomOp struct fields we fill (must be <= the runtime's API)

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

struct OpSpec {
  const char* name;
  std::vector<IoSpec> inputs;
  std::vector<IoSpec> outputs;
  KernelFns kernel;
  std::vector<Variant> variants;
  InferRule infer;  // output shapes from input shapes (shape_inference.h)
};

// A created kernel: the op spec plus the op-specific state (attributes).
struct KernelBox {
  const OpSpec* spec;
  void* state;
  std::string node;  // the node's name, for messages
  ~KernelBox() {
    if (state) spec->kernel.destroy(state);
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
const Variant& variant_of(const OrtCustomOp* op) { return static_cast<const GdnCustomOp*>(op)->variant; }

OrtStatus* ORT_API_CALL infer_shapes(const OrtCustomOp* op, OrtShapeInferContext* ctx) {
  return run_shape_inference(ctx, spec_of(op).infer);
}

OrtStatus* ORT_API_CALL ort_create_kernel(const OrtCustomOp* o, const OrtApi*, const OrtKernelInfo* info,
                                          void** kernel) {
  const OpSpec& s = spec_of(o);
  void* state = nullptr;
  AttrReader reader{info, s.name, node_name(info), ""};
  try {
    GDN_ORT_TRY(s.kernel.create(reader, &state));
    *kernel = new KernelBox{&s, state, reader.node};
  } catch (const std::exception& e) {
    return fail(at_node(reader.node, s.name, e.what()));
  }
  return nullptr;
}

OrtStatus* ORT_API_CALL ort_compute_kernel(void* k, OrtKernelContext* ctx) {
  auto* box = static_cast<KernelBox*>(k);
  try {
    return box->spec->kernel.compute(box->state, box->node, ctx);
  } catch (const std::exception& e) {
    return fail(std::string(box->spec->name) + ": " + e.what());
  } catch (...) {
    return fail(std::string(box->spec->name) + ": unknown error");
  }
}

OrtCustomOpInputOutputCharacteristic characteristic(const IoSpec& io) {
  return io.optional ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}

GdnCustomOp make_op(const OpSpec* spec, Variant variant) {
  GdnCustomOp op;
  std::memset(static_cast<OrtCustomOp*>(&op), 0, sizeof(OrtCustomOp));
  op.spec = spec;
  op.variant = variant;
  op.version = kCustomOpVersion;
  op.CreateKernel = nullptr;  // V2 entry points are used (version >= 16)
  op.KernelCompute = nullptr;
  op.GetName = [](const OrtCustomOp* o) -> const char* { return spec_of(o).name; };
  op.GetExecutionProviderType = [](const OrtCustomOp*) -> const char* { return nullptr; };  // CPU
  op.GetInputType = [](const OrtCustomOp* o, size_t i) { return resolve(spec_of(o).inputs[i].type, variant_of(o)); };
  op.GetInputTypeCount = [](const OrtCustomOp* o) { return spec_of(o).inputs.size(); };
  op.GetOutputType = [](const OrtCustomOp* o, size_t i) { return resolve(spec_of(o).outputs[i].type, variant_of(o)); };
  op.GetOutputTypeCount = [](const OrtCustomOp* o) { return spec_of(o).outputs.size(); };
  op.KernelDestroy = [](void* k) { delete static_cast<KernelBox*>(k); };
  op.GetInputCharacteristic = [](const OrtCustomOp* o, size_t i) { return characteristic(spec_of(o).inputs[i]); };
  op.GetOutputCharacteristic = [](const OrtCustomOp* o, size_t i) { return characteristic(spec_of(o).outputs[i]); };
  op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
  op.GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.CreateKernelV2 = ort_create_kernel;
  op.KernelComputeV2 = ort_compute_kernel;
  op.InferOutputShapeFn = infer_shapes;
  op.GetStartVersion = [](const OrtCustomOp*) { return kOpsetVersion; };
  op.GetEndVersion = [](const OrtCustomOp*) { return INT_MAX; };
  return op;
}

const std::vector<OpSpec>& op_specs() {
  // Type variants. Delta rules: query/key/value/beta share one float type (t1).
  static const std::vector<Variant> same = {{kF32, kF32}, {kF16, kF16}, {kBF16, kBF16}};
  // Ops with a parameter tensor that may stay float32 while activations are float16 / bfloat16 (t2 = weight type).
  static const std::vector<Variant> with_f32_weight = {
      {kF32, kF32}, {kF16, kF16}, {kBF16, kBF16}, {kF16, kF32}, {kBF16, kF32}};
  // GatedDeltaGating: b (t1) and a (t2) independently float32 / float16 / bfloat16.
  static const std::vector<Variant> all_pairs = [] {
    std::vector<Variant> v;
    for (auto a : {kF32, kF16, kBF16})
      for (auto b : {kF32, kF16, kBF16}) v.push_back({b, a});
    return v;
  }();
  // Delta rule inputs: query, key, value, g, beta, initial_state, cu_seqlens, ssm_state_indices
  // [, num_accepted_tokens (recurrent only)]
  static const std::vector<IoSpec> dr_in_chunk = {{kT1, false}, {kT1, false}, {kT1, false}, {kF32, false},
                                                  {kT1, false}, {kF32, true},  {kAny, true},  {kAny, true}};
  static const std::vector<IoSpec> dr_in_rec = [] {
    auto v = dr_in_chunk;
    v.push_back({kAny, true});
    return v;
  }();
  static const std::vector<IoSpec> dr_out = {{kT1, false}, {kF32, true}};
  // CausalConv1d: x, weight, bias, conv_state; from opset 2 cu_seqlens, conv_state_indices, num_accepted_tokens
  // (int32 or int64, checked at run time) and has_initial_state.
  static const std::vector<IoSpec> conv_in = {{kT1, false}, {kT2, false}, {kT2, true},  {kT1, true},
                                              {kAny, true}, {kAny, true}, {kAny, true}, {kBool, true}};
  static const std::vector<OpSpec> specs = {
      {op::kChunkGatedDeltaRule, dr_in_chunk, dr_out, kernel_fns<ChunkGatedDeltaRuleBinding>(), same,
       &infer_delta_rule},
      {op::kRecurrentGatedDeltaRule, dr_in_rec, dr_out, kernel_fns<RecurrentGatedDeltaRuleBinding>(), same,
       &infer_delta_rule},
      {op::kCausalConv1d, conv_in, {{kT1, false}, {kT1, true}}, kernel_fns<CausalConv1dBinding>(), with_f32_weight,
       &infer_causal_conv1d},
      {op::kGatedDeltaGating, {{kT2, false}, {kT1, false}, {kF32, false}, {kF32, false}},
       {{kF32, false}, {kT1, false}}, kernel_fns<GatedDeltaGatingBinding>(), all_pairs, &infer_gating},
      {op::kGatedRMSNorm, {{kT1, false}, {kT1, false}, {kT2, false}}, {{kT1, false}},
       kernel_fns<GatedRMSNormBinding>(), with_f32_weight, &infer_rms_norm},
  };
  return specs;
}

std::vector<GdnCustomOp>& all_ops() {
  static std::vector<GdnCustomOp> ops = [] {
    std::vector<GdnCustomOp> v;
    for (const OpSpec& spec : op_specs())
      for (const Variant& var : spec.variants) v.push_back(make_op(&spec, var));
    return v;
  }();
  return ops;
}

}  // namespace

std::vector<OrtCustomOp*> custom_ops(bool with_shape_inference) {
  std::vector<OrtCustomOp*> out;
  for (GdnCustomOp& op : all_ops()) {
    op.InferOutputShapeFn = with_shape_inference ? infer_shapes : nullptr;
    out.push_back(&op);
  }
  return out;
}

}  // namespace custom_ops
}  // namespace gdn
