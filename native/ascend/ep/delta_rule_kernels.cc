// ChunkGatedDeltaRule / RecurrentGatedDeltaRule on Ascend: our op contract adapted to the aclnn operators.
//   [B,T,H,D] (any float type)  -> packed (B*T, H, D) bf16, L2 norm first when use_qk_l2norm = 1;
//   state float32 kv [B,H,K,V]  -> vk (B,H,V,K) bf16 (aclnnPermute, aclnnCast), and back for final_state;
//   actualSeqLengths = T per sequence (int32); recurrent: slices of <= 8 tokens, the state updated in place
//   (one pool slot per sequence: ssmStateIndices = b for each of its tokens, numAcceptedTokens = 1).
#include <cmath>

#include "ascend/ep/device_ops.h"
#include "ascend/ep/ep.h"
#include "ascend/ep/kernel_util.h"
#include "ascend/ep/stream.h"
#include "common/gdn_contract.h"

namespace gdn_ascend {
namespace {

constexpr int64_t kMaxRecurrentTokens = gdn::delta_rule::kAscendMaxRecurrentTokens;

// Tokens [t0, t0+len) of a [B,T,...] view, as a [B,len,...] strided view.
View TimeSlice(const View& full, int64_t t0, int64_t len) {
  View s = full;
  s.dims[1] = len;
  s.offset += t0 * full.strides[1];
  return s;
}

// [B,len,rest...] -> (B*len, rest...) of a contiguous view.
View Packed(View v) {
  Dims dims{v.dims[0] * v.dims[1]};
  dims.insert(dims.end(), v.dims.begin() + 2, v.dims.end());
  return View::Contiguous(v.data, v.dtype, dims);
}

struct Attrs {
  float scale = 0.f;
  bool l2norm = false;
  bool kv_layout = true;
};

class DeltaRuleKernel : public OrtKernelImpl {
 public:
  DeltaRuleKernel(const OrtKernelInfo* info, bool chunk) : OrtKernelImpl{}, chunk_(chunk) {
    ort_version_supported = ORT_API_VERSION;
    Compute = ComputeImpl;
    Release = ReleaseImpl;
    const OrtEp* ep = nullptr;
    Ort::ThrowOnError(Ort::GetEpApi().KernelInfo_GetEp(info, &ep));
    ep_ = static_cast<const Ep*>(ep);
    // Absent attributes take the contract's defaults (docs/ops.md).
    const OrtApi& api = Ort::GetApi();
    int64_t l2norm = gdn::delta_rule::kDefaultUseQkL2norm;
    if (OrtStatus* st = api.KernelInfoGetAttribute_float(info, gdn::delta_rule::kAttrScale, &attrs_.scale)) api.ReleaseStatus(st);
    if (OrtStatus* st = api.KernelInfoGetAttribute_int64(info, gdn::delta_rule::kAttrUseQkL2norm, &l2norm)) api.ReleaseStatus(st);
    attrs_.l2norm = l2norm != 0;
    char layout[8] = {0};
    size_t size = sizeof layout;
    if (OrtStatus* st = api.KernelInfoGetAttribute_string(info, gdn::delta_rule::kAttrStateLayout, layout, &size)) {
      api.ReleaseStatus(st);
    } else {
      attrs_.kv_layout = std::string(layout) != "vk";
    }
  }

 private:
  static OrtStatus* ORT_API_CALL ComputeImpl(OrtKernelImpl* self, OrtKernelContext* context) noexcept {
    auto* k = static_cast<DeltaRuleKernel*>(self);
    try {
      k->Run(Ort::KernelContext(context));
      return nullptr;
    } catch (const std::exception& e) {
      const char* op = k->chunk_ ? "ChunkGatedDeltaRule" : "RecurrentGatedDeltaRule";
      return Ort::GetApi().CreateStatus(ORT_EP_FAIL, (std::string(op) + " on Ascend: " + e.what()).c_str());
    }
  }
  static void ORT_API_CALL ReleaseImpl(OrtKernelImpl* self) noexcept { delete static_cast<DeltaRuleKernel*>(self); }

  // q or k [B,T,Hk,K] -> bf16 [B,T,Hk,K] (L2-normalised in float32 first when asked).
  View PrepareQK(DeviceCall& dev, View x) const {
    if (attrs_.l2norm) {
      View f32 = x;
      if (x.dtype != ACL_FLOAT) {
        f32 = dev.NewTensor(ACL_FLOAT, x.dims);
        dev.Cast(x, f32);
      }
      View normed = dev.NewTensor(ACL_FLOAT, x.dims);
      dev.L2Normalize(f32, normed, gdn::delta_rule::kL2normEps);
      return normed;
    }
    return x;
  }

  // Any [B,len,...] view -> a fresh contiguous tensor of `dtype` (aclnnCast also gathers strided slices).
  static View Convert(DeviceCall& dev, const View& in, aclDataType dtype) {
    View out = dev.NewTensor(dtype, in.dims);
    dev.Cast(in, out);
    return out;
  }

  // initial_state (float32, kv or vk layout, or absent) -> bf16 (B,Hv,V,K).
  View PrepareState(DeviceCall& dev, const Ort::ConstValue& state, int64_t B, int64_t Hv, int64_t K, int64_t V) const {
    if (state == nullptr) {
      View zeros = dev.NewTensor(ACL_BF16, {B, Hv, V, K});
      dev.Zero(zeros);
      return zeros;
    }
    View s = AsView(state);
    if (attrs_.kv_layout) {
      View vk = dev.NewTensor(ACL_FLOAT, {B, Hv, V, K});
      dev.Permute(s, {0, 1, 3, 2}, vk);
      s = vk;
    }
    return Convert(dev, s, ACL_BF16);
  }

  // bf16 (B,Hv,V,K) -> the final_state output (float32, kv or vk).
  void WriteState(DeviceCall& dev, const View& vk_bf16, const View& out) const {
    if (!attrs_.kv_layout) return dev.Cast(vk_bf16, out);
    View f32 = Convert(dev, vk_bf16, ACL_FLOAT);
    dev.Permute(f32, {0, 1, 3, 2}, out);
  }

  void Run(Ort::KernelContext ctx) const {
    if (ep_->cann == nullptr) throw DeviceError("CANN is not loaded");
    using namespace gdn::delta_rule;
    View q = AsView(ctx.GetInput(kQuery)), key = AsView(ctx.GetInput(kKey)), v = AsView(ctx.GetInput(kValue));
    View g = AsView(ctx.GetInput(kG)), beta = AsView(ctx.GetInput(kBeta));
    Ort::ConstValue state = ctx.GetInputCount() > kInitialState ? ctx.GetInput(kInitialState) : Ort::ConstValue{nullptr};
    const int64_t B = q.dims[0], T = q.dims[1], K = q.dims[3], Hv = v.dims[2], V = v.dims[3];
    const float scale = attrs_.scale != 0.f ? attrs_.scale : 1.f / std::sqrt(static_cast<float>(K));
    View out = AsView(ctx.GetOutput(kOutput, v.dims));
    View final_out;  // stays empty when final_state is not an output of the node
    if (ctx.GetOutputCount() > kFinalState) {
      const Dims sd = attrs_.kv_layout ? Dims{B, Hv, K, V} : Dims{B, Hv, V, K};
      Ort::UnownedValue fs = ctx.GetOutput(kFinalState, sd);
      if (fs != nullptr) final_out = AsView(fs);
    }
    if (B * T == 0) throw DeviceError("B*T = 0 is not supported by the aclnn gated-delta ops");

    const KernelStream stream = StreamFor(*ep_, ctx);
    DeviceCall::FreeAfterSync free_after_sync;
    if (stream.session) free_after_sync = [s = stream.session](void* p) { s->FreeAfterSync(p); };
    DeviceCall dev(*ep_->cann, stream.handle, free_after_sync);
    q = PrepareQK(dev, q);
    key = PrepareQK(dev, key);
    if (ep_->fault == Fault::kHostPointer) {  // test-only: hand the op a host buffer as query
      static thread_local std::vector<uint16_t> host;
      host.assign(static_cast<size_t>(q.numel()), 0);
      q = View::Contiguous(host.data(), ACL_BF16, q.dims);
    }
    View state_vk = PrepareState(dev, state, B, Hv, K, V);
    if (chunk_) {
      RunChunk(dev, q, key, v, g, beta, state_vk, scale, out, B, T);
    } else {
      for (int64_t t0 = 0; t0 < T; t0 += kMaxRecurrentTokens) {
        RunRecurrentSlice(dev, q, key, v, g, beta, state_vk, scale, out, t0, std::min(kMaxRecurrentTokens, T - t0));
      }
    }
    if (final_out.data != nullptr) WriteState(dev, state_vk, final_out);
    // Only enqueued: ORT synchronises the session stream where the host reads (notifications, end of run).
    if (stream.session == nullptr && ep_->fault != Fault::kSkipSync) dev.Synchronize();
  }

  void RunChunk(DeviceCall& dev, const View& q, const View& k, const View& v, const View& g, const View& beta,
                View& state, float scale, const View& out, int64_t B, int64_t T) const {
    const int64_t Hv = v.dims[2], V = v.dims[3];
    View qb = ep_->fault == Fault::kHostPointer ? q : Convert(dev, q, ACL_BF16);
    View kb = Convert(dev, k, ACL_BF16), vb = Convert(dev, v, ACL_BF16), bb = Convert(dev, beta, ACL_BF16);
    View seqlens = dev.NewTensor(ACL_INT32, {B});
    const std::vector<int32_t> lengths(static_cast<size_t>(B), static_cast<int32_t>(T));
    dev.Upload(seqlens.data, lengths.data(), lengths.size() * sizeof(int32_t));
    View out_b = dev.NewTensor(ACL_BF16, {B * T, Hv, V});
    View final_b = dev.NewTensor(ACL_BF16, state.dims);
    dev.ChunkGatedDeltaRule(Packed(qb), Packed(kb), Packed(vb), Packed(bb), state, seqlens, Packed(g), scale, out_b, final_b);
    dev.Cast(out_b, Packed(out));
    state = final_b;
  }

  void RunRecurrentSlice(DeviceCall& dev, const View& q, const View& k, const View& v, const View& g, const View& beta,
                         const View& state, float scale, const View& out, int64_t t0, int64_t len) const {
    const int64_t B = q.dims[0], Hv = v.dims[2], V = v.dims[3];
    View qb = ep_->fault == Fault::kHostPointer ? TimeSlice(q, t0, len) : Convert(dev, TimeSlice(q, t0, len), ACL_BF16);
    View kb = Convert(dev, TimeSlice(k, t0, len), ACL_BF16), vb = Convert(dev, TimeSlice(v, t0, len), ACL_BF16);
    View bb = Convert(dev, TimeSlice(beta, t0, len), ACL_BF16), gf = Convert(dev, TimeSlice(g, t0, len), ACL_FLOAT);
    std::vector<int32_t> lengths(B, static_cast<int32_t>(len)), accepted(B, 1), slots;
    for (int64_t b = 0; b < B; ++b) slots.insert(slots.end(), static_cast<size_t>(len), static_cast<int32_t>(b));
    View seqlens = dev.NewTensor(ACL_INT32, {B}), acc = dev.NewTensor(ACL_INT32, {B});
    View ssm = dev.NewTensor(ACL_INT32, {B * len});
    dev.Upload(seqlens.data, lengths.data(), lengths.size() * 4);
    dev.Upload(acc.data, accepted.data(), accepted.size() * 4);
    dev.Upload(ssm.data, slots.data(), slots.size() * 4);
    View out_b = dev.NewTensor(ACL_BF16, {B * len, Hv, V});
    dev.RecurrentGatedDeltaRule(Packed(qb), Packed(kb), Packed(vb), Packed(bb), state, seqlens, ssm, Packed(gf), acc,
                                scale, out_b);
    dev.Cast(View::Contiguous(out_b.data, ACL_BF16, {B, len, Hv, V}), TimeSlice(out, t0, len));
  }

  bool chunk_;
  const Ep* ep_ = nullptr;
  Attrs attrs_;
};

template <bool kChunk>
OrtStatus* ORT_API_CALL CreateKernel(void*, const OrtKernelInfo* info, OrtKernelImpl** out) noexcept {
  try {
    *out = new DeltaRuleKernel(info, kChunk);
    return nullptr;
  } catch (const std::exception& e) {
    *out = nullptr;
    return Ort::GetApi().CreateStatus(ORT_EP_FAIL, e.what());
  }
}

OrtStatus* AddKernel(OrtKernelRegistry* registry, const char* op, OrtKernelCreateFunc create) {
  const OrtEpApi& api = Ort::GetEpApi();
  OrtKernelDefBuilder* b = nullptr;
  if (OrtStatus* st = api.CreateKernelDefBuilder(&b)) return st;
  OrtKernelDef* def = nullptr;
  OrtStatus* st = api.KernelDefBuilder_SetOperatorType(b, op);
  if (!st) st = api.KernelDefBuilder_SetDomain(b, gdn::kDomain);
  if (!st) st = api.KernelDefBuilder_SetSinceVersion(b, gdn::kOpsetVersion, gdn::kOpsetVersion);
  if (!st) st = api.KernelDefBuilder_SetExecutionProvider(b, kEpName);
  if (!st) st = api.KernelDefBuilder_Build(b, &def);
  api.ReleaseKernelDefBuilder(b);
  if (!st) st = api.KernelRegistry_AddKernel(registry, def, create, nullptr);
  if (def) api.ReleaseKernelDef(def);
  return st;
}

}  // namespace

OrtStatus* CreateKernelRegistry(OrtKernelRegistry** out) {
  const OrtEpApi& api = Ort::GetEpApi();
  if (OrtStatus* st = api.CreateKernelRegistry(out)) return st;
  OrtStatus* st = AddKernel(*out, gdn::op::kChunkGatedDeltaRule, CreateKernel<true>);
  if (!st) st = AddKernel(*out, gdn::op::kRecurrentGatedDeltaRule, CreateKernel<false>);
  if (!st) st = AddMemcpyKernels(*out);
  if (!st) st = AddLayerKernels(*out);
  if (!st) st = AddStandardKernels(*out);
  return st;
}

}  // namespace gdn_ascend
