// The gated-delta layer ops on Ascend, composed of aclnn primitives, in float32 on the device (inputs cast up,
// outputs cast back: the contract computes in float32). Inputs are validated with the op contract
// (native/common/gdn_contract), so error messages are the CPU op library's.
//   CausalConv1d:      xs = [conv_state | x] (aclnnCast into one buffer), aclnnConvolution (groups = C), aclnnSilu
//   GatedDeltaGating:  g = -exp(A_log) * softplus(a + dt_bias) (Add, Softplus, Exp, Neg, Mul); beta = sigmoid(b)
//   GatedRMSNorm:      aclnnRmsNorm(x, weight) * silu(gate) (RmsNorm, Silu, Mul)
#include "ascend/ep/kernel_util.h"

namespace gdn_ascend {
namespace {

// The result `f32` (float32) written to `out` (any float type).
void Store(DeviceCall& dev, const View& f32, const View& out) {
  if (out.data != nullptr) dev.Cast(f32, out);
}

// A float32 destination for a result that ends in `out`: `out` itself when it is float32.
View Float32Target(DeviceCall& dev, const View& out, const Dims& dims) {
  return out.dtype == ACL_FLOAT ? out : dev.NewTensor(ACL_FLOAT, dims);
}

// ------------------------------------------------------------------------------------------------ CausalConv1d

class CausalConv1dKernel : public DeviceKernel {
 public:
  explicit CausalConv1dKernel(const OrtKernelInfo* info) : DeviceKernel(info, gdn::op::kCausalConv1d) {
    using namespace gdn::causal_conv1d;
    attrs_.activation = StringAttr(info, kAttrActivation, kDefaultActivation);
    attrs_.state_size = IntAttr(info, kAttrStateSize, kDefaultStateSize);
    CheckAttrs(gdn::validate_causal_conv1d_attrs(attrs_));
  }

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    using namespace gdn::causal_conv1d;
    const auto p = CheckedInputs<gdn::CausalConv1dParams>(
        ctx, [this](auto... args) { return gdn::validate_causal_conv1d(attrs_, args...); });
    const View y = OutputView(ctx, kY, p.y_shape());
    const View state_out = OutputView(ctx, kConvStateOut, p.state_shape());
    if (p.B == 0 || p.C == 0) return;
    // xs = [conv_state (or zeros) | x] along time, float32 [B, C, S+T].
    const View xs = dev.NewTensor(ACL_FLOAT, {p.B, p.C, p.S + p.T});
    if (p.has_state) dev.Cast(AsView(ctx.GetInput(kConvState)), Sliced(xs, 2, 0, p.S));
    else dev.Zero(xs);
    if (p.T > 0) {
      dev.Cast(AsView(ctx.GetInput(kX)), Sliced(xs, 2, p.S, p.T));
      Convolve(ctx, dev, p, xs, y);
    }
    if (state_out.data != nullptr && p.S > 0) dev.Cast(Sliced(xs, 2, p.T, p.S), state_out);
  }

  // y = act(conv(xs)) over the last T positions: a valid convolution of xs has S+T-W+1 outputs (S >= W-1).
  void Convolve(Ort::KernelContext& ctx, DeviceCall& dev, const gdn::CausalConv1dParams& p, const View& xs,
                const View& y) const {
    using namespace gdn::causal_conv1d;
    const View weight = AsFloat32(dev, Reshaped(AsView(ctx.GetInput(kWeight)), {p.C, 1, p.W}));
    View bias;
    if (p.has_bias) bias = AsFloat32(dev, AsView(ctx.GetInput(kBias)));
    const int64_t length = p.S + p.T - p.W + 1;
    const View conv = dev.NewTensor(ACL_FLOAT, {p.B, p.C, length});
    dev.Conv1d(xs, weight, p.has_bias ? &bias : nullptr, p.C, conv);
    const View last = Sliced(conv, 2, length - p.T, p.T);
    if (!p.silu) return dev.Cast(last, y);
    const View act = Float32Target(dev, y, p.y_shape());
    dev.Apply(DeviceCall::Unary::kSilu, last, act);
    if (act.data != y.data) Store(dev, act, y);
  }

  gdn::CausalConv1dAttrs attrs_;
};

// -------------------------------------------------------------------------------------------- GatedDeltaGating

class GatingKernel : public DeviceKernel {
 public:
  explicit GatingKernel(const OrtKernelInfo* info) : DeviceKernel(info, gdn::op::kGatedDeltaGating) {}

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    using namespace gdn::gating;
    const auto p = CheckedInputs<gdn::GatingParams>(ctx, gdn::validate_gating);
    const View g = OutputView(ctx, kG, p.shape);
    const View beta = OutputView(ctx, kBeta, p.shape);
    if (p.N == 0 || p.H == 0) return;
    if (g.data != nullptr) Decay(ctx, dev, p, g);
    if (beta.data == nullptr) return;
    const View b = AsFloat32(dev, AsView(ctx.GetInput(kB)));
    const View strength = Float32Target(dev, beta, p.shape);
    dev.Apply(DeviceCall::Unary::kSigmoid, b, strength);
    if (strength.data != beta.data) Store(dev, strength, beta);
  }

  // g = -exp(A_log) * softplus(a + dt_bias) (float32 output).
  static void Decay(Ort::KernelContext& ctx, DeviceCall& dev, const gdn::GatingParams& p, const View& g) {
    using namespace gdn::gating;
    const View a = AsFloat32(dev, AsView(ctx.GetInput(kA)));
    const View shifted = dev.NewTensor(ACL_FLOAT, p.shape);
    dev.Add(a, AsView(ctx.GetInput(kDtBias)), shifted);
    const View soft = dev.NewTensor(ACL_FLOAT, p.shape);
    dev.Softplus(shifted, soft, 1.f, kSoftplusThreshold);
    const View rate = dev.NewTensor(ACL_FLOAT, {p.H}), neg_rate = dev.NewTensor(ACL_FLOAT, {p.H});
    dev.Apply(DeviceCall::Unary::kExp, AsView(ctx.GetInput(kALog)), rate);
    dev.Apply(DeviceCall::Unary::kNeg, rate, neg_rate);
    dev.Mul(soft, neg_rate, g);
  }
};

// ------------------------------------------------------------------------------------------------ GatedRMSNorm

class RmsNormKernel : public DeviceKernel {
 public:
  explicit RmsNormKernel(const OrtKernelInfo* info) : DeviceKernel(info, gdn::op::kGatedRMSNorm) {
    epsilon_ = FloatAttr(info, gdn::rms_norm::kAttrEpsilon, gdn::rms_norm::kDefaultEpsilon);
    CheckAttrs(gdn::validate_rms_norm_attrs(epsilon_));
  }

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    using namespace gdn::rms_norm;
    const auto p = CheckedInputs<gdn::RMSNormParams>(
        ctx, [this](auto... args) { return gdn::validate_rms_norm(epsilon_, args...); });
    const View y = OutputView(ctx, kY, p.shape);
    if (y.data == nullptr || p.N == 0 || p.D == 0) return;
    const View x = AsFloat32(dev, AsView(ctx.GetInput(kX)));
    const View weight = AsFloat32(dev, AsView(ctx.GetInput(kWeight)));
    const View normed = dev.NewTensor(ACL_FLOAT, p.shape);
    dev.RmsNorm(x, weight, static_cast<double>(epsilon_), normed);
    const View gate = dev.NewTensor(ACL_FLOAT, p.shape);
    dev.Apply(DeviceCall::Unary::kSilu, AsFloat32(dev, AsView(ctx.GetInput(kGate))), gate);
    const View product = Float32Target(dev, y, p.shape);
    dev.Mul(normed, gate, product);
    if (product.data != y.data) Store(dev, product, y);
  }

  float epsilon_ = gdn::rms_norm::kDefaultEpsilon;
};

KernelSpec GdnSpec(const char* op, OrtKernelCreateFunc create) {
  // Opset 2 adds serving inputs to CausalConv1d only; GetCapability keeps a node that has them on the CPU.
  return KernelSpec{op, gdn::kDomain, gdn::kOpsetVersion, gdn::kOpsetVersionServing, {}, {}, {}, create};
}

}  // namespace

OrtStatus* AddLayerKernels(OrtKernelRegistry* registry) {
  for (const KernelSpec& spec : {GdnSpec(gdn::op::kCausalConv1d, Create<CausalConv1dKernel>),
                                 GdnSpec(gdn::op::kGatedDeltaGating, Create<GatingKernel>),
                                 GdnSpec(gdn::op::kGatedRMSNorm, Create<RmsNormKernel>)}) {
    if (OrtStatus* st = AddKernel(registry, spec)) return st;
  }
  return nullptr;
}

}  // namespace gdn_ascend
