// Which nodes the Ascend device path can run, from their static types, shapes, attributes and constant inputs,
// against the documented limits of the aclnn ops they are composed of (ops-transformer, ops-nn, ops-math).
// A node the device cannot run keeps the CPU, with one reason.
#include <algorithm>
#include <optional>

#include "ascend/ep/ep.h"
#include "ascend/ep/kernel_util.h"
#include "common/gdn_contract.h"

namespace gdn_ascend {
namespace {

std::optional<std::vector<int64_t>> StaticShape(const Ort::ConstValueInfo& v) {
  if (v == nullptr) return std::nullopt;
  Ort::ConstTypeInfo ti = v.TypeInfo();
  if (ti.GetONNXType() != ONNX_TYPE_TENSOR) return std::nullopt;
  return ti.GetTensorTypeAndShapeInfo().GetShape();
}

ONNXTensorElementDataType ElementType(const Ort::ConstValueInfo& v) {
  if (v == nullptr) return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  Ort::ConstTypeInfo ti = v.TypeInfo();
  if (ti.GetONNXType() != ONNX_TYPE_TENSOR) return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  return ti.GetTensorTypeAndShapeInfo().GetElementType();
}

bool Present(const std::vector<Ort::ConstValueInfo>& inputs, size_t i) {
  return i < inputs.size() && inputs[i] != nullptr && !inputs[i].GetName().empty();
}

constexpr int kOpsetServing = 2;

// The gdn opset the node's graph imports (1 when it cannot be told).
int GdnOpset(const Ort::ConstNode& node) {
  const OrtGraph* graph = nullptr;
  if (OrtStatus* st = Ort::GetApi().Node_GetGraph(node, &graph)) {
    Ort::GetApi().ReleaseStatus(st);
    return gdn::kOpsetVersion;
  }
  if (graph == nullptr) return gdn::kOpsetVersion;
  for (const Ort::OperatorSet& set : Ort::ConstGraph(graph).GetOperatorSets()) {
    if (set.domain == gdn::kDomain) return static_cast<int>(set.version);
  }
  return gdn::kOpsetVersion;
}


bool IsFloat(ONNXTensorElementDataType t) {
  return std::find(kFloatTypes.begin(), kFloatTypes.end(), t) != kFloatTypes.end();
}

// "" when input i is float32, float16 or bfloat16 (the types the device kernels take).
std::string FloatInput(const std::vector<Ort::ConstValueInfo>& inputs, size_t i, const char* name) {
  if (!Present(inputs, i) || IsFloat(ElementType(inputs[i]))) return "";
  return std::string("input ") + name + " is not float32, float16 or bfloat16";
}

// The values of a constant int64 initializer, or nullopt when the input is computed (or another type).
std::optional<std::vector<int64_t>> ConstantInts(const Ort::ConstValueInfo& v) {
  if (v == nullptr || !v.IsConstantInitializer()) return std::nullopt;
  Ort::ConstValue value{nullptr};
  if (!v.GetInitializer(value).IsOK() || value == nullptr) return std::nullopt;
  auto info = value.GetTensorTypeAndShapeInfo();
  if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) return std::nullopt;
  const int64_t* p = value.GetTensorData<int64_t>();
  return std::vector<int64_t>(p, p + info.GetElementCount());
}

template <typename R>
std::optional<R> Attribute(const Ort::ConstNode& node, const char* name) {
  Ort::ConstOpAttr attr{nullptr};
  if (!node.GetAttributeByName(name, attr).IsOK() || attr == nullptr) return std::nullopt;
  R value{};
  if (!attr.GetValue(value).IsOK()) return std::nullopt;
  return value;
}

std::string DeltaRuleReason(const Ort::ConstNode& node) {
  using namespace gdn::delta_rule;
  const bool chunk = node.GetOperatorType() == gdn::op::kChunkGatedDeltaRule;
  const std::vector<Ort::ConstValueInfo> inputs = node.GetInputs();
  // The serving inputs have their meaning from gdn opset 2 on (opset 1 reserved them).
  const int opset = GdnOpset(node);
  for (size_t i : {size_t(kCuSeqlens), size_t(kSsmStateIndices), size_t(kNumAcceptedTokens)}) {
    if (Present(inputs, i) && opset < kOpsetServing) {
      return std::string("input ") + kInputNames[i] + " is reserved in gdn opset " + std::to_string(opset);
    }
  }
  const auto q = StaticShape(inputs[kQuery]);
  const auto v = Present(inputs, kValue) ? StaticShape(inputs[kValue]) : std::nullopt;
  if (!q || !v || q->size() != 4 || v->size() != 4) return "query/value shapes are unknown";
  const int64_t Hk = (*q)[2], K = (*q)[3], Hv = (*v)[2], V = (*v)[3];
  if (Hk <= 0 || K <= 0 || Hv <= 0 || V <= 0) return "head counts and head sizes must be static";
  // aclnnChunkGatedDeltaRule: 0 < Nk, Nv <= 64, 0 < Dk, Dv <= 128; aclnnRecurrentGatedDeltaRule: all <= 256.
  const int64_t max_heads = chunk ? 64 : 256, max_dim = chunk ? 128 : 256;
  const char* op = chunk ? "aclnnChunkGatedDeltaRule" : "aclnnRecurrentGatedDeltaRule";
  if (Hk > max_heads || Hv > max_heads) {
    return "heads Hk=" + std::to_string(Hk) + ", Hv=" + std::to_string(Hv) + " exceed " + op + "'s limit of " +
           std::to_string(max_heads);
  }
  if (K > max_dim || V > max_dim) {
    return "head sizes K=" + std::to_string(K) + ", V=" + std::to_string(V) + " exceed " + op + "'s limit of " +
           std::to_string(max_dim);
  }
  if (Hv % Hk != 0) return "Hv is not a multiple of Hk";
  return "";
}

// aclnnConvolution: groups (= channels here) in [1, 65535], every dim <= 1000000.
std::string ConvReason(const std::vector<Ort::ConstValueInfo>& inputs) {
  using namespace gdn::causal_conv1d;
  // The device kernel implements the plain convolution only: a node with serving inputs stays on the CPU.
  for (size_t i = kNumInputsOpset1; i < kNumInputs; ++i) {
    if (Present(inputs, i)) return std::string("serving input ") + kInputNames[i] + " has no Ascend kernel yet";
  }
  for (size_t i : {size_t(kX), size_t(kWeight), size_t(kBias), size_t(kConvState)}) {
    if (std::string r = FloatInput(inputs, i, kInputNames[i]); !r.empty()) return r;
  }
  const auto x = StaticShape(inputs[kX]);
  if (!x || x->size() != 3 || (*x)[1] <= 0) return "the channel count of x is not static";
  if ((*x)[1] > 65535) {
    return "channels C=" + std::to_string((*x)[1]) + " exceed aclnnConvolution's groups limit of 65535";
  }
  const auto w = StaticShape(inputs[kWeight]);
  if (w && !w->empty() && w->back() > 1000000) return "kernel width exceeds aclnnConvolution's limit of 1000000";
  return "";
}

std::string MatMulReason(const std::vector<Ort::ConstValueInfo>& inputs) {
  if (std::string r = FloatInput(inputs, 0, "A"); !r.empty()) return r;
  const auto a = StaticShape(inputs[0]), b = StaticShape(inputs[1]);
  if (!a || !b || a->size() < 2 || b->size() != 2) return "only [...,M,K] x [K,N] products run on Ascend";
  return "";
}

std::string EinsumReason(const Ort::ConstNode& node, const std::vector<Ort::ConstValueInfo>& inputs) {
  if (std::string r = FloatInput(inputs, 0, "Inputs"); !r.empty()) return r;
  const std::string eq = Attribute<std::string>(node, "equation").value_or("");
  Contraction plan;
  if (inputs.size() != 2 || !ParseContraction(eq, &plan)) {
    return "equation '" + eq + "' is not one contraction of the form '<a><s>,<s><b>-><a><b>'";
  }
  return "";
}

// Split sizes and Reshape shapes are read on the host: they must be constants so that no copy is needed.
std::string ShapeInputReason(const std::vector<Ort::ConstValueInfo>& inputs, size_t i, const char* name) {
  if (std::string r = FloatInput(inputs, 0, "data"); !r.empty()) return r;
  if (Present(inputs, i) && !ConstantInts(inputs[i])) return std::string(name) + " is not a constant initializer";
  return "";
}

// aclnnIndexSelect reads indices in [0, size): constant indices inside a static axis.
std::string GatherReason(const Ort::ConstNode& node, const std::vector<Ort::ConstValueInfo>& inputs) {
  if (std::string r = FloatInput(inputs, 0, "data"); !r.empty()) return r;
  const auto data = StaticShape(inputs[0]);
  const auto indices = ConstantInts(inputs[1]);
  if (!indices) return "indices are not a constant int64 initializer";
  const int64_t rank = data ? static_cast<int64_t>(data->size()) : 0;
  int64_t axis = Attribute<int64_t>(node, "axis").value_or(0);
  if (axis < 0) axis += rank;
  if (!data || axis < 0 || axis >= rank || (*data)[axis] <= 0) return "the gathered axis is not static";
  for (int64_t i : *indices) {
    if (i < 0 || i >= (*data)[axis]) return "index " + std::to_string(i) + " is negative or outside the axis";
  }
  return "";
}

std::string CastReason(const Ort::ConstNode& node, const std::vector<Ort::ConstValueInfo>& inputs) {
  if (std::string r = FloatInput(inputs, 0, "input"); !r.empty()) return r;
  const auto outputs = node.GetOutputs();
  if (outputs.empty() || !IsFloat(ElementType(outputs[0]))) return "the target type is not a float type";
  return "";
}

bool IsOp(const Ort::ConstNode& node, const char* domain, const char* op) {
  return node.GetDomain() == domain && node.GetOperatorType() == op;
}

}  // namespace

std::string DeviceDeclineReason(const Ort::ConstNode& node) {
  const std::string domain = node.GetDomain(), op = node.GetOperatorType();
  const std::vector<Ort::ConstValueInfo> inputs = node.GetInputs();
  if (domain == gdn::kDomain) {
    if (op == gdn::op::kChunkGatedDeltaRule || op == gdn::op::kRecurrentGatedDeltaRule) return DeltaRuleReason(node);
    if (op == gdn::op::kCausalConv1d) return ConvReason(inputs);
    if (op == gdn::op::kGatedDeltaGating) {
      return FloatInput(inputs, gdn::gating::kA, "a") + FloatInput(inputs, gdn::gating::kB, "b");
    }
    if (op == gdn::op::kGatedRMSNorm) return FloatInput(inputs, gdn::rms_norm::kX, "x");
    return "no Ascend kernel for this op";
  }
  if (!domain.empty() && domain != "ai.onnx") return "no Ascend kernel for this op";
  if (op == "MatMul") return MatMulReason(inputs);
  if (op == "Einsum") return EinsumReason(node, inputs);
  if (op == "Transpose") return FloatInput(inputs, 0, "data");
  if (op == "Split") return ShapeInputReason(inputs, 1, "split");
  if (op == "Reshape") return ShapeInputReason(inputs, 1, "shape");
  if (op == "Gather") return GatherReason(node, inputs);
  if (op == "Cast") return CastReason(node, inputs);
  return "no Ascend kernel for this op";
}

bool HasDeviceKernel(const Ort::ConstNode& node) {
  if (node.GetDomain() == gdn::kDomain) return true;
  for (const char* known : {"MatMul", "Einsum", "Transpose", "Split", "Reshape", "Gather", "Cast"}) {
    if (IsOp(node, "", known) || IsOp(node, "ai.onnx", known)) return true;
  }
  return false;
}

}  // namespace gdn_ascend
