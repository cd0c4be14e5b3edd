// ChunkGatedDeltaRule / RecurrentGatedDeltaRule on Ascend: our op contract adapted to the aclnn operators.
//   [B,T,H,D] (any float type)  -> packed (B*T, H, D) bf16, L2 norm first when use_qk_l2norm = 1;
//   state float32 kv [B,H,K,V]  -> vk (B,H,V,K) bf16 (aclnnPermute, aclnnCast), and back for final_state;
//   actualSeqLengths = T per sequence (int32); recurrent: slices of <= 8 tokens, the state updated in place
//   (one pool slot per sequence: ssmStateIndices = b for each of its tokens, numAcceptedTokens = 1).
// Serving inputs (gdn opset 2, docs/ascend.md "Serving inputs"): cu_seqlens -> actualSeqLengths of the sequences
// of length > 0; the float32 state pool -> a bf16 vk pool on the device; ssm_state_indices / num_accepted_tokens
// -> the recurrent op's ssmStateIndices / numAcceptedTokens over that pool, or per-sequence gathers and scatters
// around the chunk op; only the slots written go back to the float32 final_state.
#include <algorithm>
#include <cmath>

#include "ascend/ep/device_ops.h"
#include "ascend/ep/ep.h"
#include "ascend/ep/kernel_util.h"
#include "ascend/ep/serving_plan.h"
#include "ascend/ep/stream.h"
#include "common/gdn_contract.h"

namespace gdn_ascend {
namespace {

constexpr int64_t kMaxRecurrentTokens = cann::kRecurrentMaxTokens;
constexpr int kOpsetServing = 2;  // gdn opset 2: the delta-rule inputs 6-8 are the serving inputs

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

// Rows [row0, row0 + rows) of a contiguous view (its first axis).
View Rows(const View& full, int64_t row0, int64_t rows) {
  View r = full;
  r.dims[0] = rows;
  r.offset += row0 * full.strides[0];
  return r;
}

bool HasInput(Ort::KernelContext& ctx, size_t i) { return ctx.GetInputCount() > i && ctx.GetInput(i) != nullptr; }

// The host data of input i (the index inputs: the kernel declares them OrtMemTypeCPUInput), or null when absent.
const void* HostInput(Ort::KernelContext& ctx, size_t i) {
  return HasInput(ctx, i) ? ctx.GetInput(i).GetTensorRawData() : nullptr;
}

class DeltaRuleKernel : public EpKernel {
 public:
  DeltaRuleKernel(const OrtKernelInfo* info, bool chunk) : EpKernel(info), chunk_(chunk) {
    // Absent attributes take the contract's defaults (docs/ops.md).
    using namespace gdn::delta_rule;
    attrs_.scale = FloatAttr(info, kAttrScale, kDefaultScale);
    attrs_.use_qk_l2norm = IntAttr(info, kAttrUseQkL2norm, kDefaultUseQkL2norm);
    attrs_.state_layout = StringAttr(info, kAttrStateLayout, kDefaultStateLayout);
    if (chunk_) attrs_.chunk_size = IntAttr(info, kAttrChunkSize, kDefaultChunkSize);
    l2norm_ = attrs_.use_qk_l2norm != 0;
    kv_layout_ = attrs_.state_layout != "vk";
  }

 private:
  const char* Op() const { return chunk_ ? gdn::op::kChunkGatedDeltaRule : gdn::op::kRecurrentGatedDeltaRule; }

  OrtStatus* ComputeOnEp(OrtKernelContext* context) noexcept override {
    try {
      Run(Ort::KernelContext(context));
      return nullptr;
    } catch (const std::exception& e) {
      return Ort::GetApi().CreateStatus(ORT_EP_FAIL, (std::string(Op()) + " on Ascend: " + e.what()).c_str());
    }
  }

  // q or k [B,T,Hk,K] -> bf16 [B,T,Hk,K] (L2-normalised in float32 first when asked).
  View PrepareQK(DeviceCall& dev, View x) const {
    if (l2norm_) {
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
    if (kv_layout_) {
      View vk = dev.NewTensor(ACL_FLOAT, {B, Hv, V, K});
      dev.Permute(s, {0, 1, 3, 2}, vk);
      s = vk;
    }
    return Convert(dev, s, ACL_BF16);
  }

  // bf16 (B,Hv,V,K) -> the final_state output (float32, kv or vk).
  void WriteState(DeviceCall& dev, const View& vk_bf16, const View& out) const {
    if (!kv_layout_) return dev.Cast(vk_bf16, out);
    View f32 = Convert(dev, vk_bf16, ACL_FLOAT);
    dev.Permute(f32, {0, 1, 3, 2}, out);
  }

  void Run(Ort::KernelContext ctx) const {
    if (ep_->cann == nullptr) throw DeviceError("CANN is not loaded");
    using namespace gdn::delta_rule;
    View q = AsView(ctx.GetInput(kQuery)), key = AsView(ctx.GetInput(kKey)), v = AsView(ctx.GetInput(kValue));
    View g = AsView(ctx.GetInput(kG)), beta = AsView(ctx.GetInput(kBeta));
    Ort::ConstValue state = ctx.GetInputCount() > kInitialState ? ctx.GetInput(kInitialState) : Ort::ConstValue{nullptr};
    const bool accepted = !chunk_ && HasInput(ctx, kNumAcceptedTokens);
    if (HasInput(ctx, kCuSeqlens) || HasInput(ctx, kSsmStateIndices) || accepted) {
      const ServingInputs serving{HostInput(ctx, kCuSeqlens), HostInput(ctx, kSsmStateIndices),
                                  accepted ? HostInput(ctx, kNumAcceptedTokens) : nullptr};
      return RunServing(ctx, q, key, v, g, beta, state, serving);
    }
    const int64_t B = q.dims[0], T = q.dims[1], K = q.dims[3], Hv = v.dims[2], V = v.dims[3];
    const float scale = attrs_.scale != 0.f ? attrs_.scale : 1.f / std::sqrt(static_cast<float>(K));
    View out = AsView(ctx.GetOutput(kOutput, v.dims));
    View final_out;  // stays empty when final_state is not an output of the node
    if (ctx.GetOutputCount() > kFinalState) {
      const Dims sd = kv_layout_ ? Dims{B, Hv, K, V} : Dims{B, Hv, V, K};
      Ort::UnownedValue fs = ctx.GetOutput(kFinalState, sd);
      if (fs != nullptr) final_out = AsView(fs);
    }
    if (B * T == 0) throw DeviceError("B*T = 0 is not supported by the aclnn gated-delta ops");

    KernelRun run(*ep_, ctx);
    DeviceCall& dev = run.dev;
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
    run.Finish();
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

  // ---------------------------------------------------------------------------------------- serving inputs

  // q, k, v, beta as packed (B*T, H, D) bf16 and g as (B*T, Hv) float32: the whole call's tokens.
  struct PackedTokens {
    View q, k, v, beta, g;
  };
  // An end state to copy back: a bf16 (1,Hv,V,K) view and the final_state slot it goes to.
  struct Written {
    View state;
    int64_t slot;
  };

  void RunServing(Ort::KernelContext& ctx, View q, View key, const View& v, const View& g, const View& beta,
                  const Ort::ConstValue& state, const ServingInputs& in) const {
    using namespace gdn::delta_rule;
    const int64_t K = q.dims[3], Hv = v.dims[2], V = v.dims[3];
    const ServingPlan plan = BuildServingPlan(Op(), chunk_, attrs_, InputInfos(ctx), in);
    const View state_in = state != nullptr ? AsView(state) : View{};
    const Dims state_dims = kv_layout_ ? Dims{plan.slots, Hv, K, V} : Dims{plan.slots, Hv, V, K};
    const float scale = attrs_.scale != 0.f ? attrs_.scale : 1.f / std::sqrt(static_cast<float>(K));
    const View out = Packed(AsView(ctx.GetOutput(kOutput, v.dims)));
    View final_out;  // stays empty when final_state is not an output of the node
    if (ctx.GetOutputCount() > kFinalState) {
      Ort::UnownedValue fs = ctx.GetOutput(kFinalState, state_dims);
      if (fs != nullptr) final_out = AsView(fs);
    }
    KernelRun run(*ep_, ctx);
    DeviceCall& dev = run.dev;
    std::vector<Written> written;
    View pool;  // bf16 (S,Hv,V,K): the recurrent op updates it in place
    if (!plan.sequences.empty()) {
      q = PrepareQK(dev, q);
      key = PrepareQK(dev, key);
      const PackedTokens x{Convert(dev, Packed(q), ACL_BF16), Convert(dev, Packed(key), ACL_BF16),
                           Convert(dev, Packed(v), ACL_BF16), Convert(dev, Packed(beta), ACL_BF16), Packed(g)};
      pool = PrepareState(dev, state, plan.slots, Hv, K, V);
      if (chunk_) {
        ServeChunk(dev, plan, x, pool, scale, out, &written);
      } else {
        ServeRecurrent(dev, plan, x, pool, scale, out, &written);
      }
    }
    if (final_out.data != nullptr) WriteSlots(dev, state != nullptr ? &state_in : nullptr, written, final_out);
    // Only enqueued, as the plain path: ORT synchronises the session stream where the host reads.
    run.Finish();
  }

  static void UploadInt32(DeviceCall& dev, const View& dst, const std::vector<int32_t>& host) {
    dev.Upload(dst.data, host.data(), host.size() * sizeof(int32_t));
  }

  // One aclnnChunkGatedDeltaRule call over the packed tokens: actualSeqLengths are the sequences of length > 0
  // (their tokens are all the tokens, in order); their start states are gathered from the pool.
  void ServeChunk(DeviceCall& dev, const ServingPlan& plan, const PackedTokens& x, const View& pool, float scale,
                  const View& out, std::vector<Written>* written) const {
    const int64_t n = static_cast<int64_t>(plan.sequences.size());
    View init = dev.NewTensor(ACL_BF16, {n, pool.dims[1], pool.dims[2], pool.dims[3]});
    std::vector<int32_t> lengths;
    for (int64_t i = 0; i < n; ++i) {
      const ServingSequence& s = plan.sequences[i];
      dev.Cast(Rows(pool, s.read_slot, 1), Rows(init, i, 1));
      lengths.push_back(static_cast<int32_t>(s.length));
    }
    View seqlens = dev.NewTensor(ACL_INT32, {n});
    UploadInt32(dev, seqlens, lengths);
    View out_b = dev.NewTensor(ACL_BF16, out.dims);
    View final_b = dev.NewTensor(ACL_BF16, init.dims);
    dev.ChunkGatedDeltaRule(x.q, x.k, x.v, x.beta, init, seqlens, x.g, scale, out_b, final_b);
    dev.Cast(out_b, out);
    for (int64_t i = 0; i < n; ++i) written->push_back({Rows(final_b, i, 1), plan.sequences[i].write_slots[0]});
  }

  // A part of a sequence that one recurrent call runs: tokens [t0, t0 + length) of it.
  struct Piece {
    const ServingSequence* seq;
    int64_t t0, length;
  };

  // aclnnRecurrentGatedDeltaRule over the pool in place, in calls of at most 8 tokens per sequence.
  void ServeRecurrent(DeviceCall& dev, const ServingPlan& plan, const PackedTokens& x, const View& pool, float scale,
                      const View& out, std::vector<Written>* written) const {
    for (int64_t t0 = 0; t0 < plan.max_length; t0 += kMaxRecurrentTokens) {
      std::vector<Piece> pieces;
      for (const ServingSequence& s : plan.sequences) {
        if (s.length > t0) pieces.push_back({&s, t0, std::min(kMaxRecurrentTokens, s.length - t0)});
      }
      RecurrentCall(dev, pieces, plan.max_length <= kMaxRecurrentTokens, x, pool, scale, out);
    }
    for (const ServingSequence& s : plan.sequences) {
      for (int64_t slot : s.write_slots) written->push_back({Rows(pool, slot, 1), slot});
    }
  }

  // The slot a piece starts from and its token slots; numAcceptedTokens picks the start among the token slots,
  // so a start elsewhere is first copied into the slot its first token overwrites anyway.
  static int32_t PieceSlots(DeviceCall& dev, const Piece& p, const View& pool, std::vector<int32_t>* ssm) {
    const ServingSequence& s = *p.seq;
    const bool per_token = static_cast<int64_t>(s.write_slots.size()) == s.length;  // 2-D indices
    std::vector<int64_t> slots;
    for (int64_t i = 0; i < p.length; ++i) slots.push_back(per_token ? s.write_slots[p.t0 + i] : s.write_slots[0]);
    const int64_t start = p.t0 == 0 ? s.read_slot : per_token ? s.write_slots[p.t0 - 1] : s.write_slots[0];
    ssm->insert(ssm->end(), slots.begin(), slots.end());
    const auto at = std::find(slots.begin(), slots.end(), start);
    if (at != slots.end()) return static_cast<int32_t>(at - slots.begin() + 1);
    dev.Cast(Rows(pool, start, 1), Rows(pool, slots[0], 1));
    return 1;
  }

  void RecurrentCall(DeviceCall& dev, const std::vector<Piece>& pieces, bool all_tokens, const PackedTokens& x,
                     const View& pool, float scale, const View& out) const {
    std::vector<int32_t> lengths, accepted, ssm;
    int64_t rows = 0;
    for (const Piece& p : pieces) {
      lengths.push_back(static_cast<int32_t>(p.length));
      accepted.push_back(PieceSlots(dev, p, pool, &ssm));
      rows += p.length;
    }
    // One call over all the tokens needs no gathering; slices of longer sequences gather their tokens.
    const PackedTokens xs = all_tokens ? x : Gather(dev, pieces, x, rows);
    const int64_t n = static_cast<int64_t>(pieces.size());
    View seqlens = dev.NewTensor(ACL_INT32, {n}), acc = dev.NewTensor(ACL_INT32, {n});
    View ssm_d = dev.NewTensor(ACL_INT32, {rows});
    UploadInt32(dev, seqlens, lengths);
    UploadInt32(dev, acc, accepted);
    UploadInt32(dev, ssm_d, ssm);
    View out_b = dev.NewTensor(ACL_BF16, {rows, out.dims[1], out.dims[2]});
    dev.RecurrentGatedDeltaRule(xs.q, xs.k, xs.v, xs.beta, pool, seqlens, ssm_d, xs.g, acc, scale, out_b);
    if (all_tokens) return dev.Cast(out_b, out);
    int64_t row = 0;
    for (const Piece& p : pieces) {
      dev.Cast(Rows(out_b, row, p.length), Rows(out, p.seq->token0 + p.t0, p.length));
      row += p.length;
    }
  }

  static PackedTokens Gather(DeviceCall& dev, const std::vector<Piece>& pieces, const PackedTokens& x, int64_t rows) {
    auto gather = [&](const View& full) {
      Dims dims = full.dims;
      dims[0] = rows;
      View buf = dev.NewTensor(full.dtype, dims);
      int64_t row = 0;
      for (const Piece& p : pieces) {
        dev.Cast(Rows(full, p.seq->token0 + p.t0, p.length), Rows(buf, row, p.length));
        row += p.length;
      }
      return buf;
    };
    return {gather(x.q), gather(x.k), gather(x.v), gather(x.beta), gather(x.g)};
  }

  // final_state: the float32 states as given (zeros without initial_state), then the slots written by the call.
  void WriteSlots(DeviceCall& dev, const View* state_in, const std::vector<Written>& written, const View& out) const {
    if (state_in == nullptr) {
      dev.Zero(out);
    } else if (state_in->data != out.data) {
      dev.Cast(*state_in, out);
    }
    for (const Written& w : written) {
      const View dst = Rows(out, w.slot, 1);
      if (!kv_layout_) {
        dev.Cast(w.state, dst);
        continue;
      }
      dev.Permute(Convert(dev, w.state, ACL_FLOAT), {0, 1, 3, 2}, dst);
    }
  }

  bool chunk_;
  gdn::DeltaRuleAttrs attrs_;  // as the node has them, for the contract's checks of serving calls
  bool l2norm_ = false;
  bool kv_layout_ = true;
};

// gdn opsets 1 and 2. ORT gives a custom op's nodes the schema's since-version (1) in every opset, so the kernel
// covers 1..2 from version 1; GetCapability refuses the serving inputs in opset-1 models. The index inputs are
// read on the host (small): ORT hands them over in CPU memory, no device round trip.
KernelSpec DeltaRuleSpec(bool chunk) {
  using namespace gdn::delta_rule;
  if (chunk) {
    return {gdn::op::kChunkGatedDeltaRule, gdn::kDomain, gdn::kOpsetVersion, kOpsetServing, {},
            {kCuSeqlens, kSsmStateIndices}, {}, Create<DeltaRuleKernel, true>};
  }
  return {gdn::op::kRecurrentGatedDeltaRule, gdn::kDomain, gdn::kOpsetVersion, kOpsetServing, {},
          {kCuSeqlens, kSsmStateIndices, kNumAcceptedTokens}, {}, Create<DeltaRuleKernel, false>};
}

}  // namespace

OrtStatus* CreateKernelRegistry(OrtKernelRegistry** out) {
  const OrtEpApi& api = Ort::GetEpApi();
  if (OrtStatus* st = api.CreateKernelRegistry(out)) return st;
  OrtStatus* st = AddKernel(*out, DeltaRuleSpec(true));
  if (!st) st = AddKernel(*out, DeltaRuleSpec(false));
  if (!st) st = AddMemcpyKernels(*out);
  if (!st) st = AddLayerKernels(*out);
  if (!st) st = AddStandardKernels(*out);
  return st;
}

}  // namespace gdn_ascend
