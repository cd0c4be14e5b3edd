// Output type + shape inference of the gdn ops. Input infos belong to ORT (never released or modified here);
// outputs get fresh infos. ORT reports an input of unknown rank as rank 0, and no input of these ops may be a
// scalar: an input whose rank is not the one the contract requires gives no information, and an output is only
// set when its rank is known (a rank-0 output would let ORT fold Shape(output) to []). ORT builds one schema per
// op name from the first type variant, so no rule relies on the variant: outputs of a fixed type use it, the
// others the type of the input they follow.
#include "custom-ops/shape_inference.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/gdn_contract.h"
#include "custom-ops/ort_api.h"

namespace gdn {
namespace custom_ops {
namespace {

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

}  // namespace

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
  // Output `o` like input `i` (see in / out); false when the input tells nothing.
  bool same_as_input(size_t o, int i, size_t rank, ONNXTensorElementDataType type) {
    const ShapeOf s = in(i, rank);
    if (s.ok) out(o, s, type);
    return s.ok;
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

// output [B,T,Hv,V] like value; final_state like initial_state (or the pool), else [B,Hv,K,V] ("kv") /
// [B,Hv,V,K] ("vk"), with N (the length of cu_seqlens - 1) for B when there is a cu_seqlens input.
void infer_delta_rule(ShapeInfer& si) {
  using namespace delta_rule;
  const bool has_value = si.same_as_input(kOutput, kValue, 4, kAny);
  if (si.same_as_input(kFinalState, kInitialState, 4, kF32) || !has_value) return;
  const ShapeOf q = si.in(kQuery, 4), v = si.in(kValue, 4);
  if (!q.ok) return;
  const bool vk = si.attr_string(kAttrStateLayout, kDefaultStateLayout) == "vk";
  const ShapeOf cu = si.in(kCuSeqlens, 1);  // packed: one state per sequence, N = its length - 1
  ShapeOf st;
  if (cu.ok) {
    st.dims.push_back(cu.dims[0] >= 1 ? cu.dims[0] - 1 : -1);
    st.syms.push_back("");
  } else {
    st.push(q, 0);
  }
  st.push(v, 2);
  st.push(vk ? v : q, 3);
  st.push(vk ? q : v, 3);
  si.out(kFinalState, st, kF32);
}

// y like x; conv_state_out like conv_state, else [B,C,S] with S = state_size, or W-1 from weight's last dim.
void infer_causal_conv1d(ShapeInfer& si) {
  using namespace causal_conv1d;
  const bool has_x = si.same_as_input(kY, kX, 3, kAny);
  if (si.same_as_input(kConvStateOut, kConvState, 3, kAny) || !has_x) return;
  const ShapeOf x = si.in(kX, 3);
  ShapeOf out;
  out.type = x.type;
  const ShapeOf cu = si.in(kCuSeqlens, 1);  // packed (opset 2): one state row per sequence, N = length - 1
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
  si.same_as_input(gating::kG, gating::kA, 3, kF32);
  si.same_as_input(gating::kBeta, gating::kB, 3, kAny);
}

void infer_rms_norm(ShapeInfer& si) {
  si.same_as_input(rms_norm::kY, rms_norm::kX, 0, kAny);
}

OrtStatus* run_shape_inference(OrtShapeInferContext* ctx, InferRule rule) {
  size_t n_in = 0;
  if (!ok(g_ort->ShapeInferContext_GetInputCount(ctx, &n_in))) return nullptr;
  ShapeInfer si{ctx, n_in};
  rule(si);
  return nullptr;
}

}  // namespace custom_ops
}  // namespace gdn
