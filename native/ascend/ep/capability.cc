// Which gdn delta-rule nodes the Ascend device path can run, from their static types and shapes, against
// the documented limits of the aclnn ops (ops-transformer docs of ChunkGatedDeltaRule / RecurrentGatedDeltaRule).
#include <optional>

#include "ascend/ep/ep.h"
#include "common/gdn_contract.h"

namespace gdn_ascend {
namespace {

std::optional<std::vector<int64_t>> StaticShape(const Ort::ConstValueInfo& v) {
  if (v == nullptr) return std::nullopt;
  Ort::ConstTypeInfo ti = v.TypeInfo();
  if (ti.GetONNXType() != ONNX_TYPE_TENSOR) return std::nullopt;
  return ti.GetTensorTypeAndShapeInfo().GetShape();
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

}  // namespace

std::string DeviceDeclineReason(const Ort::ConstNode& node) {
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
    return "heads Hk=" + std::to_string(Hk) + ", Hv=" + std::to_string(Hv) + " exceed " + op + "'s limit of " + std::to_string(max_heads);
  }
  if (K > max_dim || V > max_dim) {
    return "head sizes K=" + std::to_string(K) + ", V=" + std::to_string(V) + " exceed " + op + "'s limit of " + std::to_string(max_dim);
  }
  if (Hv % Hk != 0) return "Hv is not a multiple of Hk";
  return "";
}

}  // namespace gdn_ascend
