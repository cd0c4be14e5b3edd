// gdn-fuse: ONNX Runtime smoke test + timings for the op library (build/Release/gdn_ops.so).
// Loads libonnxruntime with dlopen, registers the library via RegisterCustomOpsLibrary_V2, runs one-node models
// of every op (hand-encoded ONNX protobuf) and compares with direct calls of the CPU kernels (those are checked
// against float64 by test_kernels). Also checks error messages and prints timings.
// Usage: ort_smoke <gdn_ops.so> <libonnxruntime.so.1> [--bench]
#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/float_convert.h"
#include "common/gdn_contract.h"
#include "cpu/cpu_kernels.h"
#include "onnxruntime_c_api.h"

using namespace gdn;

namespace {

const OrtApi* ort = nullptr;
int n_fail = 0, n_pass = 0;

void check_status(OrtStatus* s, const char* what) {
  if (s) {
    std::fprintf(stderr, "FATAL %s: %s\n", what, ort->GetErrorMessage(s));
    std::exit(2);
  }
}

// ---- minimal protobuf writer for ONNX ModelProto ----
struct Pb {
  std::string b;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      b.push_back(char((v & 0x7f) | 0x80));
      v >>= 7;
    }
    b.push_back(char(v));
  }
  void key(int field, int wt) { varint((uint64_t(field) << 3) | wt); }
  Pb& i(int field, int64_t v) { key(field, 0); varint(uint64_t(v)); return *this; }
  Pb& s(int field, const std::string& v) { key(field, 2); varint(v.size()); b += v; return *this; }
  Pb& m(int field, const Pb& v) { return s(field, v.b); }
  Pb& f(int field, float v) { key(field, 5); char c[4]; std::memcpy(c, &v, 4); b.append(c, 4); return *this; }
};

struct Attr {
  std::string name;
  int type;  // 1 float, 2 int, 3 string
  float f;
  int64_t i;
  std::string s;
};
Attr af(const char* n, float v) { return {n, 1, v, 0, ""}; }
Attr ai(const char* n, int64_t v) { return {n, 2, 0.f, v, ""}; }
Attr as(const char* n, const char* v) { return {n, 3, 0.f, 0, v}; }

struct Io {
  std::string name;
  int elem;  // ONNX elem type
  std::vector<int64_t> dims;  // -1 => symbolic
};

Pb value_info(const Io& io) {
  Pb shape;
  for (size_t d = 0; d < io.dims.size(); ++d) {
    Pb dim;
    if (io.dims[d] >= 0) dim.i(1, io.dims[d]);
    else dim.s(2, "d" + std::to_string(d));
    shape.m(1, dim);
  }
  Pb tensor;
  tensor.i(1, io.elem).m(2, shape);
  Pb type;
  type.m(1, tensor);
  Pb vi;
  vi.s(1, io.name).m(2, type);
  return vi;
}

// node inputs may contain "" (absent optional); graph inputs/outputs list the real ones
std::string make_model(const char* op_type, const std::vector<std::string>& node_in, const std::vector<std::string>& node_out,
                       const std::vector<Io>& g_in, const std::vector<Io>& g_out, const std::vector<Attr>& attrs) {
  Pb node;
  for (auto& n : node_in) node.s(1, n);
  for (auto& n : node_out) node.s(2, n);
  node.s(3, "n0").s(4, op_type).s(7, kDomain);
  for (auto& a : attrs) {
    Pb at;
    at.s(1, a.name);
    if (a.type == 1) at.f(2, a.f);
    if (a.type == 2) at.i(3, a.i);
    if (a.type == 3) at.s(4, a.s);
    at.i(20, a.type);
    node.m(5, at);
  }
  Pb graph;
  graph.m(1, node).s(2, "g");
  for (auto& io : g_in) graph.m(11, value_info(io));
  for (auto& io : g_out) graph.m(12, value_info(io));
  Pb onnx_ops, gdn_ops, model;
  onnx_ops.s(1, "").i(2, 17);
  gdn_ops.s(1, kDomain).i(2, kOpsetVersion);
  model.i(1, 8).s(2, "gdn-fuse-smoke").m(8, onnx_ops).m(8, gdn_ops).m(7, graph);
  return model.b;
}

constexpr int F32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, F16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16,
              BF16 = ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
DType dt_of(int e) { return e == F32 ? DType::kFloat32 : e == F16 ? DType::kFloat16 : DType::kBFloat16; }

struct HostTensor {
  int elem;
  std::vector<int64_t> dims;
  std::vector<unsigned char> raw;
  size_t numel() const {
    size_t n = 1;
    for (auto d : dims) n *= (size_t)d;
    return n;
  }
};

std::mt19937 rng(7);
HostTensor rand_tensor(int elem, std::vector<int64_t> dims, float lo, float hi) {
  HostTensor t{elem, dims, {}};
  const size_t n = t.numel();
  t.raw.resize(n * dtype_size(dt_of(elem)));
  std::uniform_real_distribution<float> d(lo, hi);
  for (size_t i = 0; i < n; ++i) {
    float v = d(rng);
    store_row(dt_of(elem), t.raw.data(), i, 1, &v);
  }
  return t;
}

OrtEnv* env = nullptr;
OrtMemoryInfo* mem = nullptr;
std::string lib_path;

OrtSession* make_session(const std::string& model, int threads, std::string* err) {
  OrtSessionOptions* so = nullptr;
  check_status(ort->CreateSessionOptions(&so), "CreateSessionOptions");
  check_status(ort->SetIntraOpNumThreads(so, threads), "SetIntraOpNumThreads");
  check_status(ort->RegisterCustomOpsLibrary_V2(so, lib_path.c_str()), "RegisterCustomOpsLibrary_V2");
  OrtSession* sess = nullptr;
  OrtStatus* s = ort->CreateSessionFromArray(env, model.data(), model.size(), so, &sess);
  ort->ReleaseSessionOptions(so);
  if (s) {
    if (err) *err = ort->GetErrorMessage(s);
    ort->ReleaseStatus(s);
    return nullptr;
  }
  return sess;
}

// Runs; returns "" or the error message. outs receive copies.
std::string run(OrtSession* sess, const std::vector<std::string>& in_names, std::vector<HostTensor>& ins,
                const std::vector<std::string>& out_names, std::vector<HostTensor>* outs) {
  std::vector<OrtValue*> vals;
  for (auto& t : ins) {
    OrtValue* v = nullptr;
    check_status(ort->CreateTensorWithDataAsOrtValue(mem, t.raw.data(), t.raw.size(), t.dims.data(), t.dims.size(),
                                                     (ONNXTensorElementDataType)t.elem, &v),
                 "CreateTensor");
    vals.push_back(v);
  }
  std::vector<const char*> inn, outn;
  for (auto& n : in_names) inn.push_back(n.c_str());
  for (auto& n : out_names) outn.push_back(n.c_str());
  std::vector<OrtValue*> ov(out_names.size(), nullptr);
  OrtStatus* s = ort->Run(sess, nullptr, inn.data(), vals.data(), vals.size(), outn.data(), outn.size(), ov.data());
  std::string err;
  if (s) {
    err = ort->GetErrorMessage(s);
    ort->ReleaseStatus(s);
  } else if (outs) {
    outs->clear();
    for (auto* v : ov) {
      OrtTensorTypeAndShapeInfo* info = nullptr;
      check_status(ort->GetTensorTypeAndShape(v, &info), "GetTensorTypeAndShape");
      ONNXTensorElementDataType et;
      size_t rank;
      check_status(ort->GetTensorElementType(info, &et), "GetTensorElementType");
      check_status(ort->GetDimensionsCount(info, &rank), "GetDimensionsCount");
      HostTensor h{(int)et, std::vector<int64_t>(rank), {}};
      check_status(ort->GetDimensions(info, h.dims.data(), rank), "GetDimensions");
      ort->ReleaseTensorTypeAndShapeInfo(info);
      void* p;
      check_status(ort->GetTensorMutableData(v, &p), "GetTensorMutableData");
      const size_t bytes = h.numel() * dtype_size(dt_of((int)et));
      h.raw.assign((unsigned char*)p, (unsigned char*)p + bytes);
      outs->push_back(std::move(h));
    }
  }
  for (auto* v : ov)
    if (v) ort->ReleaseValue(v);
  for (auto* v : vals) ort->ReleaseValue(v);
  return err;
}

// Creates a session of `model` (2 threads), runs it once and releases it; returns "" or the error message.
std::string run_model(const std::string& model, const std::vector<std::string>& in_names, std::vector<HostTensor>& ins,
                      const std::vector<std::string>& out_names, std::vector<HostTensor>* outs) {
  std::string err;
  OrtSession* sess = make_session(model, 2, &err);
  if (sess) err = run(sess, in_names, ins, out_names, outs), ort->ReleaseSession(sess);
  return err;
}

// The contract's view of host tensors (all present).
std::vector<TensorInfo> infos_of(const std::vector<HostTensor>& ts) {
  std::vector<TensorInfo> ti;
  for (auto& t : ts) ti.push_back({true, dt_of(t.elem), t.dims});
  return ti;
}

void expect(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  (ok ? n_pass : n_fail)++;
}

bool same(const HostTensor& a, const void* b, size_t bytes) { return a.raw.size() == bytes && std::memcmp(a.raw.data(), b, bytes) == 0; }

Parallel serial{};

// ---------------------------------------------------------------------------------------------------
void test_delta_rule(bool chunk, int elem, bool with_state, bool with_final, const char* layout, int threads) {
  const int64_t B = 2, T = chunk ? 70 : 3, Hk = 2, Hv = 4, K = 32, V = 48;
  const bool vk = std::strcmp(layout, "vk") == 0;
  std::vector<int64_t> sdims = {B, Hv, vk ? V : K, vk ? K : V};
  std::vector<HostTensor> ins = {rand_tensor(elem, {B, T, Hk, K}, -1, 1), rand_tensor(elem, {B, T, Hk, K}, -1, 1),
                                 rand_tensor(elem, {B, T, Hv, V}, -1, 1), rand_tensor(F32, {B, T, Hv}, -3, 0),
                                 rand_tensor(elem, {B, T, Hv}, 0, 1)};
  std::vector<std::string> node_in = {"q", "k", "v", "g", "beta", with_state ? "s0" : ""};
  std::vector<std::string> in_names = {"q", "k", "v", "g", "beta"};
  std::vector<Io> g_in = {{"q", elem, {-1, -1, Hk, K}}, {"k", elem, {-1, -1, Hk, K}}, {"v", elem, {-1, -1, Hv, V}},
                          {"g", F32, {-1, -1, Hv}}, {"beta", elem, {-1, -1, Hv}}};
  if (with_state) {
    ins.push_back(rand_tensor(F32, sdims, -1, 1));
    in_names.push_back("s0");
    g_in.push_back({"s0", F32, {-1, Hv, sdims[2], sdims[3]}});
  }
  std::vector<std::string> node_out = {"out"}, out_names = {"out"};
  std::vector<Io> g_out = {{"out", elem, {-1, -1, Hv, V}}};
  if (with_final) {
    node_out.push_back("s1");
    out_names.push_back("s1");
    g_out.push_back({"s1", F32, {-1, Hv, sdims[2], sdims[3]}});
  }
  const char* opn = chunk ? op::kChunkGatedDeltaRule : op::kRecurrentGatedDeltaRule;
  std::vector<Attr> attrs = {ai("use_qk_l2norm", 1), as("state_layout", layout)};
  if (chunk) attrs.push_back(ai("chunk_size", 32));
  std::string model = make_model(opn, node_in, node_out, g_in, g_out, attrs);
  std::string err;
  OrtSession* sess = make_session(model, threads, &err);
  char name[200];
  std::snprintf(name, sizeof name, "ORT %s %s state=%d final=%d layout=%s threads=%d", opn, dtype_name(dt_of(elem)),
                (int)with_state, (int)with_final, layout, threads);
  if (!sess) {
    expect(false, std::string(name) + ": session: " + err);
    return;
  }
  std::vector<HostTensor> outs;
  err = run(sess, in_names, ins, out_names, &outs);
  ort->ReleaseSession(sess);
  if (!err.empty()) {
    expect(false, std::string(name) + ": run: " + err);
    return;
  }
  // direct kernel call
  DeltaRuleAttrs a;
  a.use_qk_l2norm = 1;
  a.state_layout = layout;
  a.chunk_size = 32;
  const std::vector<TensorInfo> ti = infos_of(ins);
  DeltaRuleParams p;
  err = validate_delta_rule(opn, chunk, a, ti.data(), ti.size(), &p);
  std::vector<unsigned char> out(ins[2].raw.size());
  std::vector<float> s1((size_t)B * Hv * K * V);
  DeltaRuleTensors t{ins[0].raw.data(), ins[1].raw.data(), ins[2].raw.data(), (const float*)ins[3].raw.data(),
                     ins[4].raw.data(), with_state ? (const float*)ins[5].raw.data() : nullptr, out.data(), s1.data()};
  if (chunk) cpu::chunk_gated_delta_rule(p, t, serial);
  else cpu::recurrent_gated_delta_rule(p, t, serial);
  bool ok = err.empty() && outs[0].elem == elem && outs[0].dims == ins[2].dims && same(outs[0], out.data(), out.size());
  if (with_final) ok = ok && outs[1].dims == sdims && same(outs[1], s1.data(), s1.size() * 4);
  expect(ok, name);
}

void test_layer_ops(int elem) {
  const char* tn = dtype_name(dt_of(elem));
  {  // CausalConv1d decode with state, HF-style S = W
    const int64_t B = 2, C = 16, T = 1, W = 4, S = 4;
    std::vector<HostTensor> ins = {rand_tensor(elem, {B, C, T}, -1, 1), rand_tensor(elem, {C, 1, W}, -1, 1),
                                   rand_tensor(elem, {C}, -1, 1), rand_tensor(elem, {B, C, S}, -1, 1)};
    std::string model = make_model(op::kCausalConv1d, {"x", "w", "b", "st"}, {"y", "st_out"},
                                   {{"x", elem, {-1, C, -1}}, {"w", elem, {C, 1, W}}, {"b", elem, {C}}, {"st", elem, {-1, C, S}}},
                                   {{"y", elem, {-1, C, -1}}, {"st_out", elem, {-1, C, S}}}, {as("activation", "silu")});
    std::vector<HostTensor> outs;
    const std::string err = run_model(model, {"x", "w", "b", "st"}, ins, {"y", "st_out"}, &outs);
    bool ok = err.empty();
    if (ok) {
      CausalConv1dAttrs a;
      const std::vector<TensorInfo> ti = infos_of(ins);
      CausalConv1dParams p;
      ok = validate_causal_conv1d(a, ti.data(), ti.size(), &p).empty();
      std::vector<unsigned char> y(ins[0].raw.size()), so(ins[3].raw.size());
      CausalConv1dTensors t{ins[0].raw.data(), ins[1].raw.data(), ins[2].raw.data(), ins[3].raw.data(), y.data(), so.data()};
      cpu::causal_conv1d(p, t, serial);
      ok = ok && same(outs[0], y.data(), y.size()) && same(outs[1], so.data(), so.size());
    }
    expect(ok, std::string("ORT CausalConv1d ") + tn + (err.empty() ? "" : ": " + err));
  }
  {  // CausalConv1d prefill without state input, conv_state_out requested (S from state_size)
    const int64_t B = 1, C = 8, T = 10, W = 4;
    std::vector<HostTensor> ins = {rand_tensor(elem, {B, C, T}, -1, 1), rand_tensor(elem, {C, W}, -1, 1)};
    std::string model = make_model(op::kCausalConv1d, {"x", "w"}, {"y", "st_out"},
                                   {{"x", elem, {B, C, T}}, {"w", elem, {C, W}}},
                                   {{"y", elem, {B, C, T}}, {"st_out", elem, {B, C, 3}}}, {as("activation", "none")});
    std::vector<HostTensor> outs;
    const std::string err = run_model(model, {"x", "w"}, ins, {"y", "st_out"}, &outs);
    bool ok = err.empty() && outs.size() == 2 && outs[1].dims == std::vector<int64_t>{B, C, 3} && outs[1].elem == elem;
    if (ok) {  // state out = last 3 columns of x
      for (int64_t c = 0; c < C && ok; ++c)
        ok = std::memcmp(outs[1].raw.data() + c * 3 * dtype_size(dt_of(elem)),
                         ins[0].raw.data() + (c * T + T - 3) * dtype_size(dt_of(elem)), 3 * dtype_size(dt_of(elem))) == 0;
    }
    expect(ok, std::string("ORT CausalConv1d no-state ") + tn + (err.empty() ? "" : ": " + err));
  }
  {  // GatedDeltaGating
    const int64_t B = 2, T = 3, H = 8;
    std::vector<HostTensor> ins = {rand_tensor(elem, {B, T, H}, -25, 25), rand_tensor(elem, {B, T, H}, -5, 5),
                                   rand_tensor(F32, {H}, -1, 1), rand_tensor(F32, {H}, -1, 1)};
    std::string model = make_model(op::kGatedDeltaGating, {"a", "b", "A_log", "dt_bias"}, {"g", "beta"},
                                   {{"a", elem, {-1, -1, H}}, {"b", elem, {-1, -1, H}}, {"A_log", F32, {H}}, {"dt_bias", F32, {H}}},
                                   {{"g", F32, {-1, -1, H}}, {"beta", elem, {-1, -1, H}}}, {});
    std::vector<HostTensor> outs;
    const std::string err = run_model(model, {"a", "b", "A_log", "dt_bias"}, ins, {"g", "beta"}, &outs);
    bool ok = err.empty();
    if (ok) {
      const std::vector<TensorInfo> ti = infos_of(ins);
      GatingParams p;
      ok = validate_gating(ti.data(), ti.size(), &p).empty();
      std::vector<float> g((size_t)B * T * H);
      std::vector<unsigned char> beta(ins[1].raw.size());
      GatingTensors t{ins[0].raw.data(), ins[1].raw.data(), (const float*)ins[2].raw.data(), (const float*)ins[3].raw.data(),
                      g.data(), beta.data()};
      cpu::gated_delta_gating(p, t, serial);
      ok = ok && same(outs[0], g.data(), g.size() * 4) && same(outs[1], beta.data(), beta.size());
    }
    expect(ok, std::string("ORT GatedDeltaGating ") + tn + (err.empty() ? "" : ": " + err));
  }
  {  // GatedRMSNorm with float32 weight (output must keep x's type)
    const int64_t N = 6, D = 64;
    std::vector<HostTensor> ins = {rand_tensor(elem, {2, N / 2, D}, -2, 2), rand_tensor(elem, {2, N / 2, D}, -2, 2),
                                   rand_tensor(F32, {D}, 0.5, 1.5)};
    std::string model = make_model(op::kGatedRMSNorm, {"x", "z", "w"}, {"y"},
                                   {{"x", elem, {-1, -1, D}}, {"z", elem, {-1, -1, D}}, {"w", F32, {D}}},
                                   {{"y", elem, {-1, -1, D}}}, {af("epsilon", 1e-5f)});
    std::vector<HostTensor> outs;
    const std::string err = run_model(model, {"x", "z", "w"}, ins, {"y"}, &outs);
    bool ok = err.empty();
    if (ok) {
      const std::vector<TensorInfo> ti = infos_of(ins);
      RMSNormParams p;
      ok = validate_rms_norm(1e-5f, ti.data(), ti.size(), &p).empty();
      std::vector<unsigned char> y(ins[0].raw.size());
      RMSNormTensors t{ins[0].raw.data(), ins[1].raw.data(), ins[2].raw.data(), y.data()};
      cpu::gated_rms_norm(p, t, serial);
      ok = ok && outs[0].elem == elem && same(outs[0], y.data(), y.size());
    }
    expect(ok, std::string("ORT GatedRMSNorm weight=float32 ") + tn + (err.empty() ? "" : ": " + err));
  }
}

void test_errors() {
  // value heads not a multiple of key heads -> clear ORT_INVALID_ARGUMENT at run time
  const int64_t B = 1, T = 4, Hk = 4, Hv = 6, K = 8, V = 8;
  std::vector<HostTensor> ins = {rand_tensor(F32, {B, T, Hk, K}, -1, 1), rand_tensor(F32, {B, T, Hk, K}, -1, 1),
                                 rand_tensor(F32, {B, T, Hv, V}, -1, 1), rand_tensor(F32, {B, T, Hv}, -1, 0),
                                 rand_tensor(F32, {B, T, Hv}, 0, 1)};
  std::string model = make_model(op::kChunkGatedDeltaRule, {"q", "k", "v", "g", "beta"}, {"out"},
                                 {{"q", F32, {-1, -1, -1, -1}}, {"k", F32, {-1, -1, -1, -1}}, {"v", F32, {-1, -1, -1, -1}},
                                  {"g", F32, {-1, -1, -1}}, {"beta", F32, {-1, -1, -1}}},
                                 {{"out", F32, {-1, -1, -1, -1}}}, {});
  std::string err;
  OrtSession* sess = make_session(model, 1, &err);
  if (sess) err = run(sess, {"q", "k", "v", "g", "beta"}, ins, {"out"}, nullptr), ort->ReleaseSession(sess);
  expect(err.find("ChunkGatedDeltaRule: value has 6 heads, which is not a multiple of the 4 key heads") != std::string::npos,
         "ORT error message: " + err);
  // bad attribute -> error at session creation
  model = make_model(op::kRecurrentGatedDeltaRule, {"q", "k", "v", "g", "beta"}, {"out"},
                     {{"q", F32, {-1, -1, -1, -1}}, {"k", F32, {-1, -1, -1, -1}}, {"v", F32, {-1, -1, -1, -1}},
                      {"g", F32, {-1, -1, -1}}, {"beta", F32, {-1, -1, -1}}},
                     {{"out", F32, {-1, -1, -1, -1}}}, {as("state_layout", "kvk")});
  err.clear();
  sess = make_session(model, 1, &err);
  if (sess) err = run(sess, {"q", "k", "v", "g", "beta"}, ins, {"out"}, nullptr), ort->ReleaseSession(sess);
  expect(err.find("state_layout must be") != std::string::npos, "ORT attribute error: " + err);
}

double time_run(OrtSession* sess, const std::vector<std::string>& in_names, std::vector<HostTensor>& ins,
                const std::vector<std::string>& out_names, int iters) {
  std::vector<HostTensor> outs;
  run(sess, in_names, ins, out_names, &outs);  // warm-up
  double best = 1e30;
  for (int i = 0; i < iters; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    std::string e = run(sess, in_names, ins, out_names, nullptr);
    auto t1 = std::chrono::steady_clock::now();
    if (!e.empty()) {
      std::printf("bench error: %s\n", e.c_str());
      return -1;
    }
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return best;
}

void bench(int threads) {
  {
    const int64_t B = 1, T = 512, H = 32, K = 128, V = 128;
    std::vector<HostTensor> ins = {rand_tensor(F32, {B, T, H, K}, -1, 1), rand_tensor(F32, {B, T, H, K}, -1, 1),
                                   rand_tensor(F32, {B, T, H, V}, -1, 1), rand_tensor(F32, {B, T, H}, -1, 0),
                                   rand_tensor(F32, {B, T, H}, 0, 1), rand_tensor(F32, {B, H, K, V}, -1, 1)};
    std::string model = make_model(op::kChunkGatedDeltaRule, {"q", "k", "v", "g", "beta", "s0"}, {"out", "s1"},
                                   {{"q", F32, {B, T, H, K}}, {"k", F32, {B, T, H, K}}, {"v", F32, {B, T, H, V}},
                                    {"g", F32, {B, T, H}}, {"beta", F32, {B, T, H}}, {"s0", F32, {B, H, K, V}}},
                                   {{"out", F32, {B, T, H, V}}, {"s1", F32, {B, H, K, V}}}, {ai("use_qk_l2norm", 1)});
    OrtSession* sess = make_session(model, threads, nullptr);
    const double ms = time_run(sess, {"q", "k", "v", "g", "beta", "s0"}, ins, {"out", "s1"}, 10);
    const double flop = 2.0 * B * H * T * (3.0 * K * V + 64.0 * (1.5 * K + V));  // approx useful flops
    std::printf("BENCH ChunkGatedDeltaRule fp32 B=1 T=512 H=32 K=V=128 threads=%d: %.2f ms (~%.1f GFLOP/s)\n", threads,
                ms, flop / ms * 1e-6);
    ort->ReleaseSession(sess);
  }
  {
    const int64_t B = 8, T = 1, H = 32, K = 128, V = 128;
    std::vector<HostTensor> ins = {rand_tensor(F32, {B, T, H / 2, K}, -1, 1), rand_tensor(F32, {B, T, H / 2, K}, -1, 1),
                                   rand_tensor(F32, {B, T, H, V}, -1, 1), rand_tensor(F32, {B, T, H}, -1, 0),
                                   rand_tensor(F32, {B, T, H}, 0, 1), rand_tensor(F32, {B, H, K, V}, -1, 1)};
    std::string model = make_model(op::kRecurrentGatedDeltaRule, {"q", "k", "v", "g", "beta", "s0"}, {"out", "s1"},
                                   {{"q", F32, {B, T, H / 2, K}}, {"k", F32, {B, T, H / 2, K}}, {"v", F32, {B, T, H, V}},
                                    {"g", F32, {B, T, H}}, {"beta", F32, {B, T, H}}, {"s0", F32, {B, H, K, V}}},
                                   {{"out", F32, {B, T, H, V}}, {"s1", F32, {B, H, K, V}}}, {ai("use_qk_l2norm", 1)});
    OrtSession* sess = make_session(model, threads, nullptr);
    const double ms = time_run(sess, {"q", "k", "v", "g", "beta", "s0"}, ins, {"out", "s1"}, 50);
    const double bytes = 2.0 * B * H * K * V * 4;  // state read + write
    std::printf("BENCH RecurrentGatedDeltaRule fp32 B=8 T=1 Hk=16 Hv=32 K=V=128 threads=%d: %.3f ms (state traffic %.1f GB/s)\n",
                threads, ms, bytes / ms * 1e-6);
    ort->ReleaseSession(sess);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s <gdn_ops.so> <libonnxruntime.so.1> [--bench]\n", argv[0]);
    return 2;
  }
  lib_path = argv[1];
  void* h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::fprintf(stderr, "dlopen %s: %s\n", argv[2], dlerror());
    return 2;
  }
  auto get_base = reinterpret_cast<const OrtApiBase* (*)()>(dlsym(h, "OrtGetApiBase"));
  const OrtApiBase* base = get_base();
  uint32_t want = ORT_API_VERSION;  // ORT 1.x serves API versions 1..x
  unsigned major = 0, minor = 0;
  if (std::sscanf(base->GetVersionString(), "%u.%u", &major, &minor) == 2 && major == 1 && minor < want) want = minor;
  ort = base->GetApi(want);
  if (!ort) {
    std::fprintf(stderr, "runtime does not provide C API %d\n", ORT_API_VERSION);
    return 2;
  }
  std::printf("ORT %s, op library %s, kernels isa=%s\n", base->GetVersionString(), lib_path.c_str(), cpu::isa_name());
  check_status(ort->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "gdn-smoke", &env), "CreateEnv");
  check_status(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &mem), "CreateCpuMemoryInfo");
  const bool only_bench = argc > 3 && std::strcmp(argv[3], "--bench-only") == 0;
  if (!only_bench) {
    for (int chunk = 1; chunk >= 0; --chunk)
      for (int elem : {F32, F16, BF16}) {
        test_delta_rule(chunk, elem, true, true, "kv", 2);
        test_delta_rule(chunk, elem, false, true, "vk", 1);
        test_delta_rule(chunk, elem, true, false, "vk", 2);
        test_delta_rule(chunk, elem, false, false, "kv", 2);
      }
    for (int elem : {F32, F16, BF16}) test_layer_ops(elem);
    test_errors();
  }
  if (argc > 3) {
    bench(1);
    bench(2);
  }
  ort->ReleaseMemoryInfo(mem);
  ort->ReleaseEnv(env);
  std::printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail == 0 ? 0 : 1;
}
