// The standard ONNX ops a fused gated-delta layer is made of, on Ascend:
//   MatMul [..,M,K] x [K,N]  -> aclnnMatmul;   Einsum "<a><s>,<s><b>-><a><b>" -> aclnnMatmul on 2-D views
//   Transpose -> aclnnPermute;   Split -> one strided copy (aclnnCast to the same dtype) per output
//   Gather (constant indices) -> aclnnIndexSelect;   Cast between float types -> aclnnCast
//   Reshape -> nothing (ORT aliases the buffer) or one D2D copy
// Reshape's shape and Split's sizes are host inputs of the kernels, so reading them needs no copy.
#include <algorithm>
#include <climits>

#include "ascend/ep/kernel_util.h"

namespace gdn_ascend {
namespace {

// `axis` of a rank-`rank` tensor in [0, rank), or an error naming the node.
size_t NormalizeAxis(int64_t axis, size_t rank, const std::string& where) {
  const int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) throw ContractError(where + "axis " + std::to_string(axis) + " is outside [-" +
                                                  std::to_string(r) + ", " + std::to_string(r) + ")");
  return static_cast<size_t>(axis < 0 ? axis + r : axis);
}

int64_t Product(const Dims& dims, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= dims[i];
  return n;
}

// The values of a host int64 input (Reshape's shape, Split's sizes).
std::vector<int64_t> HostInts(const Ort::ConstValue& v) {
  const auto info = v.GetTensorTypeAndShapeInfo();
  const int64_t* p = v.GetTensorData<int64_t>();
  return std::vector<int64_t>(p, p + info.GetElementCount());
}

// ------------------------------------------------------------------------------------------------------ MatMul

class MatMulKernel : public DeviceKernel {
 public:
  explicit MatMulKernel(const OrtKernelInfo* info) : DeviceKernel(info, "MatMul") {}

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    const View a = AsView(ctx.GetInput(0)), b = AsView(ctx.GetInput(1));
    if (a.dims.size() < 2 || b.dims.size() != 2 || a.dims.back() != b.dims[0]) {
      throw ContractError(Where() + "shapes " + gdn::shape_str(a.dims) + " x " + gdn::shape_str(b.dims) +
                          " are not [...,M,K] x [K,N]");
    }
    Dims out = a.dims;
    out.back() = b.dims[1];
    const View y = OutputView(ctx, 0, out);
    if (y.numel() > 0) dev.Matmul(a, b, y);
  }
  std::string Where() const { return "MatMul node '" + Node() + "': "; }
};

// ------------------------------------------------------------------------------------------------------ Einsum

class EinsumKernel : public DeviceKernel {
 public:
  explicit EinsumKernel(const OrtKernelInfo* info) : DeviceKernel(info, "Einsum") {
    const std::string eq = Ort::ConstKernelInfo(info).GetAttribute<std::string>("equation");
    if (!ParseContraction(eq, &plan_)) {
      throw ContractError("Einsum node '" + Node() + "': equation " + eq + " is not supported on Ascend");
    }
  }

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    const View a = AsView(ctx.GetInput(0)), b = AsView(ctx.GetInput(1));
    const size_t fa = plan_.a_free, s = plan_.shared, fb = plan_.b_free;
    const bool ranks = a.dims.size() == fa + s && b.dims.size() == s + fb;
    if (!ranks || !std::equal(a.dims.begin() + fa, a.dims.end(), b.dims.begin())) {
      throw ContractError("Einsum node '" + Node() + "': operand shapes " + gdn::shape_str(a.dims) + " and " +
                          gdn::shape_str(b.dims) + " do not fit the equation");
    }
    Dims out(a.dims.begin(), a.dims.begin() + fa);
    out.insert(out.end(), b.dims.begin() + s, b.dims.end());
    const View y = OutputView(ctx, 0, out);
    const int64_t M = Product(a.dims, 0, fa), K = Product(a.dims, fa, fa + s), N = Product(b.dims, s, s + fb);
    if (y.numel() > 0) dev.Matmul(Reshaped(a, {M, K}), Reshaped(b, {K, N}), Reshaped(y, {M, N}));
  }
  Contraction plan_;
};

// --------------------------------------------------------------------------------------------------- Transpose

class TransposeKernel : public DeviceKernel {
 public:
  explicit TransposeKernel(const OrtKernelInfo* info) : DeviceKernel(info, "Transpose") {
    perm_ = IntsAttr(info, "perm", &has_perm_);
  }

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    const View x = AsView(ctx.GetInput(0));
    const size_t rank = x.dims.size();
    Dims perm = perm_;
    if (!has_perm_) for (size_t i = rank; i-- > 0;) perm.push_back(static_cast<int64_t>(i));
    std::vector<bool> seen(rank, false);
    Dims out;
    for (int64_t p : perm) {
      if (perm.size() != rank || p < 0 || p >= static_cast<int64_t>(rank) || seen[p]) {
        throw ContractError("Transpose node '" + Node() + "': perm is not a permutation of the " +
                            std::to_string(rank) + " axes");
      }
      seen[p] = true;
      out.push_back(x.dims[p]);
    }
    const View y = OutputView(ctx, 0, out);
    if (y.numel() == 0) return;
    if (rank < 2) return dev.Copy(x, y);
    dev.Permute(x, perm, y);
  }
  Dims perm_;
  bool has_perm_ = false;
};

// ------------------------------------------------------------------------------------------------------- Split

class SplitKernel : public DeviceKernel {
 public:
  explicit SplitKernel(const OrtKernelInfo* info) : DeviceKernel(info, "Split") { axis_ = IntAttr(info, "axis", 0); }

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    const View x = AsView(ctx.GetInput(0));
    const std::string where = "Split node '" + Node() + "': ";
    const size_t axis = NormalizeAxis(axis_, x.dims.size(), where);
    const Dims sizes = Sizes(ctx, x.dims[axis], where);
    int64_t start = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      Dims dims = x.dims;
      dims[axis] = sizes[i];
      const View y = OutputView(ctx, i, dims);
      if (y.data != nullptr && y.numel() > 0) dev.Copy(Sliced(x, axis, start, sizes[i]), y);
      start += sizes[i];
    }
  }

  // The split sizes: the `split` input, else equal parts (the last one smaller, as opset 18 defines it).
  Dims Sizes(Ort::KernelContext& ctx, int64_t length, const std::string& where) const {
    const size_t n = ctx.GetOutputCount();
    Ort::ConstValue split = ctx.GetInputCount() > 1 ? ctx.GetInput(1) : Ort::ConstValue{nullptr};
    Dims sizes;
    if (split != nullptr) {
      sizes = HostInts(split);
    } else {
      const int64_t part = (length + static_cast<int64_t>(n) - 1) / static_cast<int64_t>(n);
      for (size_t i = 0; i < n; ++i) sizes.push_back(std::max<int64_t>(0, std::min(part, length - part * int64_t(i))));
    }
    int64_t total = 0;
    for (int64_t s : sizes) {
      if (s < 0 || !gdn::checked_add(total, s, &total)) throw ContractError(where + "split sizes must be >= 0");
    }
    if (sizes.size() != n || total != length) {
      throw ContractError(where + "split sizes " + gdn::shape_str(sizes) + " do not cut an axis of " +
                          std::to_string(length) + " into " + std::to_string(n) + " outputs");
    }
    return sizes;
  }
  int64_t axis_ = 0;
};

// ----------------------------------------------------------------------------------------------------- Reshape

class ReshapeKernel : public DeviceKernel {
 public:
  explicit ReshapeKernel(const OrtKernelInfo* info) : DeviceKernel(info, "Reshape") {
    allow_zero_ = IntAttr(info, "allowzero", 0) != 0;
  }

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    const View x = AsView(ctx.GetInput(0));
    const Dims out = Target(x.dims, HostInts(ctx.GetInput(1)));
    Ort::UnownedValue y = ctx.GetOutput(0, out);
    const size_t bytes = DeviceCall::Bytes(x.dtype, x.dims);
    dev.CopyContiguous(y.GetTensorMutableRawData(), x.data, bytes);  // nothing when ORT aliased the buffers
  }

  // The output shape: 0 copies the input's dim (unless allowzero), one -1 is inferred.
  Dims Target(const Dims& in, Dims shape) const {
    const std::string where = "Reshape node '" + Node() + "': ";
    int64_t known = 1, infer = -1, total = 0;
    if (!gdn::checked_numel(in, &total)) throw ContractError(where + "input is too large");
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == 0 && !allow_zero_) {
        if (i >= in.size()) throw ContractError(where + "shape entry 0 at " + std::to_string(i) + " has no input dim");
        shape[i] = in[i];
      }
      if (shape[i] == -1 && infer < 0) { infer = static_cast<int64_t>(i); continue; }
      if (shape[i] < 0 || !gdn::checked_mul(known, shape[i], &known)) {
        throw ContractError(where + "shape " + gdn::shape_str(shape) + " is invalid");
      }
    }
    if (infer >= 0) {
      if (known == 0 || total % known != 0) {
        throw ContractError(where + "cannot infer the -1 of " + gdn::shape_str(shape));
      }
      shape[infer] = total / known;
      known = total;
    }
    if (known != total) {
      throw ContractError(where + "input of shape " + gdn::shape_str(in) + " cannot become " + gdn::shape_str(shape));
    }
    return shape;
  }
  bool allow_zero_ = false;
};

// -------------------------------------------------------------------------------------------------------- Cast

class CastKernel : public DeviceKernel {
 public:
  explicit CastKernel(const OrtKernelInfo* info) : DeviceKernel(info, "Cast") {}

 private:
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    const View x = AsView(ctx.GetInput(0));
    const View y = OutputView(ctx, 0, x.dims);
    if (y.numel() > 0) dev.Cast(x, y);
  }
};

// ------------------------------------------------------------------------------------------------------ Gather

class GatherKernel : public DeviceKernel {
 public:
  explicit GatherKernel(const OrtKernelInfo* info) : DeviceKernel(info, "Gather") { axis_ = IntAttr(info, "axis", 0); }

 private:
  // data[:axis] + indices.shape + data[axis+1:]; aclnnIndexSelect sees the indices flattened (same layout).
  void Run(Ort::KernelContext& ctx, DeviceCall& dev) override {
    const View x = AsView(ctx.GetInput(0)), idx = AsView(ctx.GetInput(1));
    const size_t axis = NormalizeAxis(axis_, x.dims.size(), "Gather node '" + Node() + "': ");
    Dims out(x.dims.begin(), x.dims.begin() + axis);
    out.insert(out.end(), idx.dims.begin(), idx.dims.end());
    out.insert(out.end(), x.dims.begin() + axis + 1, x.dims.end());
    const View y = OutputView(ctx, 0, out);
    if (y.numel() == 0) return;
    Dims flat = x.dims;
    flat[axis] = idx.numel();
    dev.IndexSelect(x, static_cast<int64_t>(axis), Reshaped(idx, {idx.numel()}), Reshaped(y, flat));
  }
  int64_t axis_ = 0;
};

constexpr ONNXTensorElementDataType kI64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
constexpr ONNXTensorElementDataType kI32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;

std::vector<KernelSpec> Specs() {
  const auto T = std::make_pair("T", kFloatTypes);
  return {
      {"MatMul", "", 13, INT_MAX, {T}, {}, {}, Create<MatMulKernel>},
      {"Einsum", "", 12, INT_MAX, {T}, {}, {}, Create<EinsumKernel>},
      {"Transpose", "", 13, INT_MAX, {T}, {}, {}, Create<TransposeKernel>},
      {"Split", "", 13, 17, {T}, {1}, {}, Create<SplitKernel>},
      {"Split", "", 18, INT_MAX, {T}, {1}, {}, Create<SplitKernel>},
      {"Reshape", "", 14, INT_MAX, {T}, {1}, {{0, 0}}, Create<ReshapeKernel>},
      {"Gather", "", 13, INT_MAX, {T, {"Tind", {kI32, kI64}}}, {}, {}, Create<GatherKernel>},
      {"Cast", "", 13, INT_MAX, {{"T1", kFloatTypes}, {"T2", kFloatTypes}}, {}, {}, Create<CastKernel>},
  };
}

}  // namespace

bool ParseContraction(const std::string& equation, Contraction* out) {
  const size_t comma = equation.find(','), arrow = equation.find("->");
  if (comma == std::string::npos || arrow == std::string::npos || arrow < comma) return false;
  const std::string a = equation.substr(0, comma), b = equation.substr(comma + 1, arrow - comma - 1);
  const std::string c = equation.substr(arrow + 2);
  auto letters = [](const std::string& s) {
    std::string sorted = s;
    std::sort(sorted.begin(), sorted.end());
    const bool distinct = std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
    return distinct && std::all_of(s.begin(), s.end(), [](char ch) { return ch >= 'a' && ch <= 'z'; });
  };
  if (!letters(a) || !letters(b) || !letters(c)) return false;
  size_t shared = 0;  // the letters of b found in a: they must be a's suffix and b's prefix, in order
  for (char ch : b) shared += a.find(ch) != std::string::npos;
  if (shared == 0 || shared > a.size() || a.substr(a.size() - shared) != b.substr(0, shared)) return false;
  if (c != a.substr(0, a.size() - shared) + b.substr(shared)) return false;
  *out = Contraction{a.size() - shared, shared, b.size() - shared};
  return true;
}

OrtStatus* AddStandardKernels(OrtKernelRegistry* registry) {
  for (const KernelSpec& spec : Specs()) {
    if (OrtStatus* st = AddKernel(registry, spec)) return st;
  }
  return nullptr;
}

}  // namespace gdn_ascend
