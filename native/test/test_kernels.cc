// gdn-fuse: standalone check of every CPU kernel against a float64 reference on random inputs.
// Build and run:  make -C native/test run     (prints one line per case; exits non-zero on any failure)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/float_convert.h"
#include "common/gdn_contract.h"
#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"
#include "thread_runner.h"

using namespace gdn;

namespace {

int g_fail = 0, g_pass = 0;
std::mt19937_64 rng(1234);

ThreadRunner g_runner{2};
Parallel g_par{&g_runner, &ThreadRunner::run};

// ---- typed buffer: stores elements in dtype, exposes the exact float values the kernel sees ----
struct Buf {
  DType t = DType::kFloat32;
  std::vector<unsigned char> raw;
  size_t n = 0;
  Buf() = default;
  Buf(DType t_, size_t n_) : t(t_), raw(n_ * dtype_size(t_)), n(n_) {}
  void set(const std::vector<float>& v) {
    for (size_t i = 0; i < n; ++i) store_row(t, raw.data(), i, 1, &v[i]);
  }
  std::vector<double> get() const {
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = load_one(t, raw.data(), i);
    return out;
  }
  void* data() { return raw.data(); }
  const void* data() const { return raw.data(); }
};

std::vector<float> randu(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
std::vector<float> randn(size_t n, float sd) {
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double rel_l2(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = got[i] - ref[i];
    if (!std::isfinite(got[i])) return INFINITY;
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

void report(const std::string& name, double err, double tol, const char* what = "output") {
  const bool ok = err <= tol;
  std::printf("%s %-86s %-11s rel_l2=%.3e tol=%.0e\n", ok ? "PASS" : "FAIL", name.c_str(), what, err, tol);
  (ok ? g_pass : g_fail)++;
}

double tol_for(DType t) { return t == DType::kFloat32 ? 1e-5 : 2e-3; }

// Layer ops have small outputs, where bf16's rounding alone (unit roundoff 2^-9) can reach 2e-3 rel-L2:
// compare low-precision outputs against the float64 reference rounded to the output type.
std::vector<double> round_to(DType t, std::vector<double> v) {
  for (auto& x : v) {
    const float f = (float)x;
    unsigned char buf[4];
    store_row(t, buf, 0, 1, &f);
    x = load_one(t, buf, 0);
  }
  return v;
}

// ---- float64 reference: transformers' torch_recurrent_gated_delta_rule (state in kv layout) ----
void ref_delta_rule(int B, int T, int Hk, int Hv, int K, int V, double scale, bool l2, const std::vector<double>& q,
                    const std::vector<double>& k, const std::vector<double>& v, const std::vector<double>& g,
                    const std::vector<double>& beta, const std::vector<double>* s0_kv, std::vector<double>& out,
                    std::vector<double>& s1_kv) {
  out.assign((size_t)B * T * Hv * V, 0.0);
  s1_kv.assign((size_t)B * Hv * K * V, 0.0);
  const int grp = Hv / Hk;
  std::vector<double> S((size_t)K * V), qt(K), kt(K), u(V);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < Hv; ++h) {
      const int hk = h / grp;
      for (size_t i = 0; i < S.size(); ++i) S[i] = s0_kv ? (*s0_kv)[((size_t)b * Hv + h) * K * V + i] : 0.0;
      for (int t = 0; t < T; ++t) {
        const size_t qo = (((size_t)b * T + t) * Hk + hk) * K;
        const size_t vo = (((size_t)b * T + t) * Hv + h);
        double nq = 0, nk = 0;
        for (int i = 0; i < K; ++i) nq += q[qo + i] * q[qo + i], nk += k[qo + i] * k[qo + i];
        const double fq = l2 ? 1.0 / std::sqrt(nq + 1e-6) : 1.0, fk = l2 ? 1.0 / std::sqrt(nk + 1e-6) : 1.0;
        for (int i = 0; i < K; ++i) qt[i] = q[qo + i] * fq * scale, kt[i] = k[qo + i] * fk;
        const double e = std::exp(g[vo]);
        for (auto& x : S) x *= e;
        for (int j = 0; j < V; ++j) {
          double m = 0;
          for (int i = 0; i < K; ++i) m += S[(size_t)i * V + j] * kt[i];
          u[j] = beta[vo] * (v[vo * V + j] - m);
        }
        for (int i = 0; i < K; ++i)
          for (int j = 0; j < V; ++j) S[(size_t)i * V + j] += kt[i] * u[j];
        for (int j = 0; j < V; ++j) {
          double o = 0;
          for (int i = 0; i < K; ++i) o += S[(size_t)i * V + j] * qt[i];
          out[vo * V + j] = o;
        }
      }
      std::copy(S.begin(), S.end(), s1_kv.begin() + ((size_t)b * Hv + h) * K * V);
    }
}

// kv <-> vk transpose of a [B*Hv] stack of K x V matrices
template <class F>
std::vector<F> transpose_state(const std::vector<F>& s, int BH, int rows, int cols) {
  std::vector<F> o(s.size());
  for (int n = 0; n < BH; ++n)
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) o[(size_t)n * rows * cols + (size_t)c * rows + r] = s[(size_t)n * rows * cols + (size_t)r * cols + c];
  return o;
}

enum class GMode { kNearZero, kStrong, kMixed };
const char* gmode_name(GMode m) { return m == GMode::kNearZero ? "g~0" : m == GMode::kStrong ? "g<=-20" : "g-mixed"; }

struct DrCase {
  bool chunk;
  DType dt;
  int B, T, Hk, Hv, K, V;
  StateLayout layout;
  GMode gm;
  bool l2;
  float scale_attr;  // 0 => default
  int64_t chunk_size;
  bool init, want_final;
};

void run_delta_rule(const DrCase& c) {
  const size_t nq = (size_t)c.B * c.T * c.Hk * c.K, nv = (size_t)c.B * c.T * c.Hv * c.V, nh = (size_t)c.B * c.T * c.Hv;
  const size_t ns = (size_t)c.B * c.Hv * c.K * c.V;
  Buf q(c.dt, nq), k(c.dt, nq), v(c.dt, nv), beta(c.dt, nh);
  q.set(randn(nq, 1.f));
  // Without l2norm keep |k|^2 < 1 so the recurrence stays contractive over long T.
  k.set(randn(nq, c.l2 ? 1.f : 0.7f / std::sqrt((float)c.K)));
  v.set(randn(nv, 1.f));
  beta.set(randu(nh, 0.05f, 0.95f));
  std::vector<float> g;
  if (c.gm == GMode::kNearZero) g = randu(nh, -0.02f, 0.f);
  else if (c.gm == GMode::kStrong) g = randu(nh, -40.f, -20.f);
  else {
    g = randu(nh, -2.f, 0.f);
    for (size_t i = 0; i < nh; i += 7) g[i] = -25.f;
    for (size_t i = 3; i < nh; i += 5) g[i] = -1e-4f;
  }
  std::vector<float> s0_kv = randn(ns, 0.5f);
  std::vector<float> s0 = c.layout == StateLayout::kKV ? s0_kv : transpose_state(s0_kv, c.B * c.Hv, c.K, c.V);

  DeltaRuleAttrs attrs;
  attrs.scale = c.scale_attr;
  attrs.use_qk_l2norm = c.l2;
  attrs.state_layout = c.layout == StateLayout::kKV ? "kv" : "vk";
  attrs.chunk_size = c.chunk_size;
  const char* opn = c.chunk ? op::kChunkGatedDeltaRule : op::kRecurrentGatedDeltaRule;
  TensorInfo in[6];
  in[0] = {true, c.dt, {c.B, c.T, c.Hk, c.K}};
  in[1] = {true, c.dt, {c.B, c.T, c.Hk, c.K}};
  in[2] = {true, c.dt, {c.B, c.T, c.Hv, c.V}};
  in[3] = {true, DType::kFloat32, {c.B, c.T, c.Hv}};
  in[4] = {true, c.dt, {c.B, c.T, c.Hv}};
  in[5] = {c.init, DType::kFloat32, {c.B, c.Hv, c.layout == StateLayout::kKV ? c.K : c.V, c.layout == StateLayout::kKV ? c.V : c.K}};
  DeltaRuleParams p;
  const std::string err = validate_delta_rule(opn, c.chunk, attrs, in, 6, &p);
  char name[256];
  std::snprintf(name, sizeof name, "%s %s B=%d T=%d Hk=%d Hv=%d K=%d V=%d %s %s l2=%d%s%s cs=%lld", opn,
                dtype_name(c.dt), c.B, c.T, c.Hk, c.Hv, c.K, c.V, attrs.state_layout.c_str(), gmode_name(c.gm), (int)c.l2,
                c.init ? " init" : "", c.want_final ? " final" : "", (long long)c.chunk_size);
  if (!err.empty()) {
    std::printf("FAIL %s: validation error: %s\n", name, err.c_str());
    ++g_fail;
    return;
  }
  Buf out(c.dt, nv);
  std::vector<float> s1(ns, NAN);
  DeltaRuleTensors t;
  t.query = q.data();
  t.key = k.data();
  t.value = v.data();
  t.g = g.data();
  t.beta = beta.data();
  t.initial_state = c.init ? s0.data() : nullptr;
  t.output = out.data();
  t.final_state = c.want_final ? s1.data() : nullptr;
  if (c.chunk) cpu::chunk_gated_delta_rule(p, t, g_par);
  else cpu::recurrent_gated_delta_rule(p, t, g_par);

  std::vector<double> s0d(s0_kv.begin(), s0_kv.end()), gd(g.begin(), g.end()), ro, rs;
  ref_delta_rule(c.B, c.T, c.Hk, c.Hv, c.K, c.V, p.scale, c.l2, q.get(), k.get(), v.get(), gd, beta.get(),
                 c.init ? &s0d : nullptr, ro, rs);
  report(name, rel_l2(out.get(), ro), tol_for(c.dt));
  if (c.want_final) {
    std::vector<float> s1kv = c.layout == StateLayout::kKV ? s1 : transpose_state(s1, c.B * c.Hv, c.V, c.K);
    report(name, rel_l2(std::vector<double>(s1kv.begin(), s1kv.end()), rs), 1e-5, "final_state");
  }
}

// ---- CausalConv1d ----
void run_conv(DType dt, DType wdt, int B, int C, int T, int W, int S, bool has_state, bool bias, bool silu, bool w2d,
              bool want_state) {
  Buf x(dt, (size_t)B * C * T), w(wdt, (size_t)C * W), bb(wdt, C), st(dt, (size_t)B * C * S);
  x.set(randn(x.n, 1.f));
  w.set(randn(w.n, 0.5f));
  bb.set(randn(bb.n, 0.5f));
  st.set(randn(st.n, 1.f));
  CausalConv1dAttrs a;
  a.activation = silu ? "silu" : "none";
  a.state_size = has_state ? 0 : S;
  TensorInfo in[4];
  in[0] = {true, dt, {B, C, T}};
  in[1] = {true, wdt, w2d ? std::vector<int64_t>{C, W} : std::vector<int64_t>{C, 1, W}};
  in[2] = {bias, wdt, {C}};
  in[3] = {has_state, dt, {B, C, S}};
  CausalConv1dParams p;
  char name[256];
  std::snprintf(name, sizeof name, "CausalConv1d x=%s w=%s B=%d C=%d T=%d W=%d S=%d state=%d bias=%d %s%s", dtype_name(dt),
                dtype_name(wdt), B, C, T, W, S, (int)has_state, (int)bias, silu ? "silu" : "none", w2d ? " w[C,W]" : "");
  const std::string err = validate_causal_conv1d(a, in, 4, &p);
  if (!err.empty()) {
    std::printf("FAIL %s: validation error: %s\n", name, err.c_str());
    ++g_fail;
    return;
  }
  Buf y(dt, x.n), so(dt, st.n);
  CausalConv1dTensors t{x.data(), w.data(), bias ? bb.data() : nullptr, has_state ? st.data() : nullptr, y.data(),
                        want_state ? so.data() : nullptr};
  cpu::causal_conv1d(p, t, g_par);
  auto xd = x.get(), wd = w.get(), bd = bb.get(), sd = st.get();
  std::vector<double> ry(x.n), rs(st.n);
  for (int b = 0; b < B; ++b)
    for (int ch = 0; ch < C; ++ch) {
      std::vector<double> xs(S + T, 0.0);
      for (int i = 0; i < S; ++i) xs[i] = has_state ? sd[((size_t)b * C + ch) * S + i] : 0.0;
      for (int i = 0; i < T; ++i) xs[S + i] = xd[((size_t)b * C + ch) * T + i];
      for (int i = 0; i < T; ++i) {
        double acc = bias ? bd[ch] : 0.0;
        for (int j = 0; j < W; ++j) acc += wd[(size_t)ch * W + j] * xs[S + i - (W - 1) + j];
        if (silu) acc = acc / (1.0 + std::exp(-acc));
        ry[((size_t)b * C + ch) * T + i] = acc;
      }
      for (int i = 0; i < S; ++i) rs[((size_t)b * C + ch) * S + i] = xs[T + i];
    }
  report(name, rel_l2(y.get(), round_to(dt, ry)), tol_for(dt));
  if (want_state) report(name, rel_l2(so.get(), rs), 0.0, "conv_state");
}

// ---- GatedDeltaGating ----
void run_gating(DType adt, DType bdt, int B, int T, int H) {
  const size_t n = (size_t)B * T * H;
  Buf a(adt, n), b(bdt, n);
  std::vector<float> av = randu(n, -30.f, 30.f);
  a.set(av);
  b.set(randn(n, 3.f));
  std::vector<float> A_log = randu(H, -2.f, 2.f), dt_bias = randu(H, -1.f, 1.f);
  TensorInfo in[4] = {{true, adt, {B, T, H}}, {true, bdt, {B, T, H}}, {true, DType::kFloat32, {H}}, {true, DType::kFloat32, {H}}};
  GatingParams p;
  char name[256];
  std::snprintf(name, sizeof name, "GatedDeltaGating a=%s b=%s B=%d T=%d H=%d", dtype_name(adt), dtype_name(bdt), B, T, H);
  const std::string err = validate_gating(in, 4, &p);
  if (!err.empty()) {
    std::printf("FAIL %s: validation error: %s\n", name, err.c_str());
    ++g_fail;
    return;
  }
  std::vector<float> g(n);
  Buf beta(bdt, n);
  GatingTensors t{a.data(), b.data(), A_log.data(), dt_bias.data(), g.data(), beta.data()};
  cpu::gated_delta_gating(p, t, g_par);
  auto ad = a.get(), bd = b.get();
  std::vector<double> rg(n), rb(n);
  for (size_t i = 0; i < n; ++i) {
    const int h = (int)(i % H);
    const double z = ad[i] + (double)dt_bias[h];
    const double sp = z > 20.0 ? z : std::log1p(std::exp(z));
    rg[i] = -std::exp((double)A_log[h]) * sp;
    rb[i] = 1.0 / (1.0 + std::exp(-bd[i]));
  }
  report(name, rel_l2(std::vector<double>(g.begin(), g.end()), rg), 1e-5, "g");
  report(name, rel_l2(beta.get(), round_to(bdt, rb)), tol_for(bdt), "beta");
}

// ---- GatedRMSNorm ----
void run_rms(DType xdt, DType wdt, std::vector<int64_t> shape, float eps) {
  const int D = (int)shape.back();
  size_t n = 1;
  for (auto d : shape) n *= (size_t)d;
  Buf x(xdt, n), gate(xdt, n), w(wdt, D);
  x.set(randn(n, 2.f));
  gate.set(randn(n, 2.f));
  w.set(randu(D, 0.5f, 1.5f));
  TensorInfo in[3] = {{true, xdt, shape}, {true, xdt, shape}, {true, wdt, {D}}};
  RMSNormParams p;
  char name[256];
  std::snprintf(name, sizeof name, "GatedRMSNorm x=%s w=%s shape=%s eps=%g", dtype_name(xdt), dtype_name(wdt),
                shape_str(shape).c_str(), eps);
  const std::string err = validate_rms_norm(eps, in, 3, &p);
  if (!err.empty()) {
    std::printf("FAIL %s: validation error: %s\n", name, err.c_str());
    ++g_fail;
    return;
  }
  Buf y(xdt, n);
  RMSNormTensors t{x.data(), gate.data(), w.data(), y.data()};
  cpu::gated_rms_norm(p, t, g_par);
  auto xd = x.get(), gd = gate.get(), wd = w.get();
  std::vector<double> ry(n);
  for (size_t r = 0; r < n / D; ++r) {
    double ss = 0;
    for (int i = 0; i < D; ++i) ss += xd[r * D + i] * xd[r * D + i];
    const double inv = 1.0 / std::sqrt(ss / D + eps);
    for (int i = 0; i < D; ++i) {
      const double gg = gd[r * D + i];
      ry[r * D + i] = wd[i] * xd[r * D + i] * inv * gg / (1.0 + std::exp(-gg));
    }
  }
  report(name, rel_l2(y.get(), round_to(xdt, ry)), tol_for(xdt));
}

// ---- validation messages ----
void expect_error(const std::string& name, const std::string& err, const char* needle) {
  const bool ok = err.find(needle) != std::string::npos;
  std::printf("%s %-86s error: %s\n", ok ? "PASS" : "FAIL", name.c_str(), err.empty() ? "(none)" : err.c_str());
  (ok ? g_pass : g_fail)++;
}

void run_validation() {
  DeltaRuleAttrs a;
  DeltaRuleParams p;
  TensorInfo in[9];
  auto base = [&] {
    in[0] = {true, DType::kFloat32, {1, 5, 4, 8}};
    in[1] = {true, DType::kFloat32, {1, 5, 4, 8}};
    in[2] = {true, DType::kFloat32, {1, 5, 8, 16}};
    in[3] = {true, DType::kFloat32, {1, 5, 8}};
    in[4] = {true, DType::kFloat32, {1, 5, 8}};
    for (int i = 5; i < 9; ++i) in[i] = TensorInfo();
  };
  base();
  in[2].shape = {1, 5, 6, 16};
  expect_error("validate: GQA heads", validate_delta_rule(op::kChunkGatedDeltaRule, true, a, in, 9, &p),
               "ChunkGatedDeltaRule: value has 6 heads, which is not a multiple of the 4 key heads");
  base();
  in[1].shape = {1, 5, 4, 9};
  expect_error("validate: key shape", validate_delta_rule(op::kChunkGatedDeltaRule, true, a, in, 9, &p),
               "key has shape [1,5,4,9], expected [1,5,4,8]");
  base();
  in[3].dtype = DType::kFloat16;
  expect_error("validate: g dtype", validate_delta_rule(op::kRecurrentGatedDeltaRule, false, a, in, 9, &p),
               "g must be float32, got float16");
  base();
  in[5] = {true, DType::kFloat32, {1, 8, 16, 8}};
  expect_error("validate: state layout", validate_delta_rule(op::kChunkGatedDeltaRule, true, a, in, 9, &p),
               "initial_state has shape [1,8,16,8], expected [1,8,8,16]");
  base();
  in[6] = {true, DType::kInt64, {2}};
  expect_error("validate: cu_seqlens reserved", validate_delta_rule(op::kChunkGatedDeltaRule, true, a, in, 9, &p),
               "cu_seqlens) is reserved in gdn opset 1 and not implemented by the CPU backend");
  base();
  in[8] = {true, DType::kInt64, {1}};
  expect_error("validate: num_accepted_tokens reserved", validate_delta_rule(op::kRecurrentGatedDeltaRule, false, a, in, 9, &p),
               "is reserved in gdn opset 1");
  base();
  a.state_layout = "kvv";
  expect_error("validate: layout attr", validate_delta_rule_attrs(op::kChunkGatedDeltaRule, true, a), "state_layout must be");
  CausalConv1dAttrs ca;
  CausalConv1dParams cp;
  TensorInfo cin[4] = {{true, DType::kFloat32, {1, 4, 3}}, {true, DType::kFloat32, {4, 1, 4}}, {}, {true, DType::kFloat32, {1, 4, 2}}};
  expect_error("validate: conv_state too short", validate_causal_conv1d(ca, cin, 4, &cp), "fewer than W-1 = 3");
  ca.state_size = int64_t{1} << 62;  // wrapped the scratch size to 64 bytes before it was bounded
  expect_error("validate: state_size bound", validate_causal_conv1d_attrs(ca), "state_size must be in 0..16777216");
  GatingParams gp;
  TensorInfo gin[4] = {{true, DType::kFloat32, {int64_t{1} << 40, 1, 0}}, {true, DType::kFloat32, {int64_t{1} << 40, 1, 0}},
                       {true, DType::kFloat32, {0}}, {true, DType::kFloat32, {0}}};
  const bool gating_empty = validate_gating(gin, 4, &gp).empty() && gp.N == 0;
  std::printf("%s validate: gating [2^40,1,0] has no rows (N = %lld)\n", gating_empty ? "PASS" : "FAIL", (long long)gp.N);
  (gating_empty ? g_pass : g_fail)++;
}

// ---- overflow-checked size arithmetic ----
void run_checked_arithmetic() {
  int64_t n = -7;
  const int64_t big = int64_t{1} << 62;
  const bool ok = !checked_mul(big, 2, &n) && n == -7 && checked_mul(big, 1, &n) && n == big && !checked_add(INT64_MAX, 1, &n) &&
                  !checked_mul(-1, 1, &n) && checked_numel({big, big, 0}, &n) && n == 0 && !checked_numel({big, 4}, &n) &&
                  checked_numel({}, &n) && n == 1 && !check_tensor_size("Op", "y", {big}, 4).empty() &&
                  check_tensor_size("Op", "y", {big / 4}, 4).empty();
  std::printf("%s checked_mul / checked_add / checked_numel / check_tensor_size\n", ok ? "PASS" : "FAIL");
  (ok ? g_pass : g_fail)++;
  // Scratch that cannot exist says what was asked for and why (it said std::bad_alloc).
  for (int64_t floats : {INT64_MAX, int64_t{1} << 60}) {
    std::string what = "(none)";
    try {
      cpu::Scratch s(floats, "a test buffer");
    } catch (const std::exception& e) {
      what = e.what();
    }
    const bool named = what.rfind("cannot allocate ", 0) == 0 && what.find(" of per-thread scratch for a test buffer") != std::string::npos;
    std::printf("%s scratch of %lld floats: %s\n", named ? "PASS" : "FAIL", (long long)floats, what.c_str());
    (named ? g_pass : g_fail)++;
  }
}


// ---- timings (direct kernel calls; std::thread runner) ----
// The fastest of `runs` calls of f(), in milliseconds.
template <class F>
double best_ms(int runs, F f) {
  double best = 1e30;
  for (int it = 0; it < runs; ++it) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

void bench() {
  for (int threads : {1, 2}) {
    g_runner.threads = threads;
    {
      const int64_t B = 1, T = 512, H = 32, K = 128, V = 128;
      std::vector<float> q(B * T * H * K), k(q.size()), v(B * T * H * V), g(B * T * H), beta(g.size()), s0(B * H * K * V),
          out(v.size()), s1(s0.size());
      q = randn(q.size(), 1.f), k = randn(k.size(), 1.f), v = randn(v.size(), 1.f), g = randu(g.size(), -1.f, 0.f);
      beta = randu(beta.size(), 0.f, 1.f), s0 = randn(s0.size(), 1.f);
      DeltaRuleParams p;
      p.B = B, p.T = T, p.Hk = H, p.Hv = H, p.K = K, p.V = V, p.scale = 0.088f, p.use_qk_l2norm = true;
      DeltaRuleTensors t{q.data(), k.data(), v.data(), g.data(), beta.data(), s0.data(), out.data(), s1.data()};
      const double best = best_ms(5, [&] { cpu::chunk_gated_delta_rule(p, t, g_par); });
      std::printf("BENCH ChunkGatedDeltaRule fp32 B=1 T=512 H=32 K=V=128 threads=%d: %.2f ms\n", threads, best);
    }
    {
      const int64_t B = 8, T = 1, Hk = 16, H = 32, K = 128, V = 128;
      std::vector<float> q = randn(B * T * Hk * K, 1.f), k = randn(q.size(), 1.f), v = randn(B * T * H * V, 1.f),
                         g = randu(B * T * H, -1.f, 0.f), beta = randu(B * T * H, 0.f, 1.f), s0 = randn(B * H * K * V, 1.f),
                         out(v.size()), s1(s0.size());
      DeltaRuleParams p;
      p.B = B, p.T = T, p.Hk = Hk, p.Hv = H, p.K = K, p.V = V, p.scale = 0.088f, p.use_qk_l2norm = true;
      DeltaRuleTensors t{q.data(), k.data(), v.data(), g.data(), beta.data(), s0.data(), out.data(), s1.data()};
      const double best = best_ms(50, [&] { cpu::recurrent_gated_delta_rule(p, t, g_par); });
      std::printf("BENCH RecurrentGatedDeltaRule fp32 B=8 T=1 Hk=16 Hv=32 K=V=128 threads=%d: %.3f ms\n", threads, best);
    }
  }
}
}  // namespace

// A work item that throws: Parallel::for_each rethrows its exception on the calling thread (not through the
// runner's threads). Serially, the items after it are skipped: exactly 4 of 64 run.
void run_parallel_errors() {
  for (const bool threaded : {false, true}) {
    std::atomic<int> ran{0};
    auto work = [&](size_t i) {
      ran.fetch_add(1);
      if (i == 3) throw std::runtime_error("item 3 failed");
    };
    std::string what;
    try {
      (threaded ? g_par : Parallel{}).for_each(64, work);
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    const bool ok = what == "item 3 failed" && (threaded || ran.load() == 4);
    std::printf("%s %-86s rethrown=\"%s\" items run=%d of 64\n", ok ? "PASS" : "FAIL",
                threaded ? "Parallel::for_each (2 threads) rethrows a work item's exception"
                         : "Parallel::for_each (serial) rethrows and skips the later items",
                what.c_str(), ran.load());
    (ok ? g_pass : g_fail)++;
  }
}

// ---- serving inputs (gdn opset 2): a packed batch with a state pool gives what each sequence gives alone ----
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  return rel_l2(std::vector<double>(a.begin(), a.end()), std::vector<double>(b.begin(), b.end()));
}

void run_serving(bool chunk, StateLayout layout) {
  const int Hk = 2, Hv = 4, K = 16, V = 24, S = 6;
  const std::vector<int64_t> lengths = {3, 0, 70, 1}, slots = {4, 0, 1, 5};
  std::vector<int64_t> cu = {0};
  for (int64_t n : lengths) cu.push_back(cu.back() + n);
  const int64_t T = cu.back(), N = (int64_t)lengths.size(), kv = (int64_t)Hv * K * V;
  auto q = randn(T * Hk * K, 1.f), k = randn(T * Hk * K, 0.15f), v = randn(T * Hv * V, 1.f);
  auto g = randu(T * Hv, -1.f, 0.f), beta = randu(T * Hv, 0.1f, 0.9f), pool = randn(S * kv, 0.5f);
  const std::vector<float> before = pool;
  DeltaRuleAttrs a;
  a.state_layout = layout == StateLayout::kKV ? "kv" : "vk";
  a.chunk_size = 16;
  const char* opn = chunk ? op::kChunkGatedDeltaRule : op::kRecurrentGatedDeltaRule;
  const std::vector<int64_t> st = layout == StateLayout::kKV ? std::vector<int64_t>{S, Hv, K, V}
                                                               : std::vector<int64_t>{S, Hv, V, K};
  TensorInfo in[8] = {{true, DType::kFloat32, {1, T, Hk, K}}, {true, DType::kFloat32, {1, T, Hk, K}},
                      {true, DType::kFloat32, {1, T, Hv, V}}, {true, DType::kFloat32, {1, T, Hv}},
                      {true, DType::kFloat32, {1, T, Hv}},    {true, DType::kFloat32, st},
                      {true, DType::kInt64, {N + 1}},         {true, DType::kInt64, {N}}};
  DeltaRuleParams p;
  DeltaRulePlan plan;
  std::string err = validate_delta_rule(opn, chunk, a, in, 8, &p, kOpsetVersionServing);
  if (err.empty()) err = build_delta_rule_plan(opn, p, cu.data(), slots.data(), nullptr, &plan);
  std::vector<float> out(T * Hv * V);
  DeltaRuleTensors t{q.data(), k.data(), v.data(), g.data(), beta.data(), pool.data(), out.data(), pool.data(), &plan};
  if (err.empty()) (chunk ? cpu::chunk_gated_delta_rule : cpu::recurrent_gated_delta_rule)(p, t, g_par);
  const std::string name = std::string(opn) + " packed, pool in place, " + a.state_layout;
  if (!err.empty()) std::printf("FAIL %s: %s\n", name.c_str(), err.c_str()), ++g_fail;
  for (int64_t n = 0; n < N && err.empty(); ++n) {  // each sequence alone through the plain kernel
    const int64_t L = lengths[n], t0 = cu[n];
    DeltaRuleParams one = p;
    one.T = L, one.N = 1, one.slots = 1, one.indices_type = one.cu_seqlens_type = DType::kUndefined;
    std::vector<float> o1(L * Hv * V), s1(kv);
    DeltaRuleTensors t1{q.data() + t0 * Hk * K, k.data() + t0 * Hk * K, v.data() + t0 * Hv * V, g.data() + t0 * Hv,
                        beta.data() + t0 * Hv, before.data() + slots[n] * kv, o1.data(), s1.data(), nullptr};
    (chunk ? cpu::chunk_gated_delta_rule : cpu::recurrent_gated_delta_rule)(one, t1, g_par);
    const std::vector<float> got(out.begin() + t0 * Hv * V, out.begin() + (t0 + L) * Hv * V);
    const std::vector<float> slot(pool.begin() + slots[n] * kv, pool.begin() + (slots[n] + 1) * kv);
    if (L > 0) report(name + " sequence " + std::to_string(n), max_rel(got, o1), 1e-6);
    report(name + " slot " + std::to_string(slots[n]), max_rel(slot, L > 0 ? s1 : std::vector<float>(
        before.begin() + slots[n] * kv, before.begin() + (slots[n] + 1) * kv)), L > 0 ? 1e-6 : 0.0, "state");
  }
  for (int64_t untouched : {2, 3})
    report(name + " untouched slot " + std::to_string(untouched),
           max_rel(std::vector<float>(pool.begin() + untouched * kv, pool.begin() + (untouched + 1) * kv),
                   std::vector<float>(before.begin() + untouched * kv, before.begin() + (untouched + 1) * kv)), 0.0,
           "state");
}

void run_serving_validation() {
  DeltaRuleAttrs a;
  DeltaRuleParams p;
  DeltaRulePlan plan;
  const char* R = op::kRecurrentGatedDeltaRule;
  TensorInfo in[9] = {{true, DType::kFloat32, {1, 4, 1, 4}}, {true, DType::kFloat32, {1, 4, 1, 4}},
                      {true, DType::kFloat32, {1, 4, 1, 4}}, {true, DType::kFloat32, {1, 4, 1}},
                      {true, DType::kFloat32, {1, 4, 1}},    {true, DType::kFloat32, {4, 1, 4, 4}},
                      {true, DType::kInt32, {3}},            {true, DType::kInt32, {2, 2}},
                      {true, DType::kInt32, {2}}};
  expect_error("validate: opset 1 still refuses cu_seqlens", validate_delta_rule(R, false, a, in, 9, &p),
               "input 6 (cu_seqlens) is reserved in gdn opset 1 and not implemented by the CPU backend");
  const std::string ok = validate_delta_rule(R, false, a, in, 9, &p, kOpsetVersionServing);
  expect_error("validate: opset 2 serving inputs", ok.empty() ? "valid" : ok, "valid");
  const int32_t cu[3] = {0, 2, 4}, bad_cu[3] = {0, 5, 4}, idx[4] = {0, 1, 2, 3}, acc[2] = {2, 3};
  expect_error("plan: cu_seqlens past T", build_delta_rule_plan(R, p, bad_cu, idx, nullptr, &plan),
               "cu_seqlens must end at T = 4, got cu_seqlens[1] = 5");
  expect_error("plan: accepted above Tmax", build_delta_rule_plan(R, p, cu, idx, acc, &plan),
               "num_accepted_tokens[1] = 3 is out of range 1..2 (the columns of ssm_state_indices)");
}

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
    std::printf("isa=%s\n", cpu::isa_name());
    bench();
    return 0;
  }
  std::printf("gdn-fuse CPU kernel tests (isa=%s, threads=%d)\n", cpu::isa_name(), g_runner.threads);
  const DType dts[3] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
  const int Ts[6] = {1, 2, 63, 64, 65, 200};
  int idx = 0;
  for (int chunk = 1; chunk >= 0; --chunk)
    for (DType dt : dts)
      for (int T : Ts)
        for (int B : {1, 3})
          for (StateLayout lay : {StateLayout::kKV, StateLayout::kVK})
            for (GMode gm : {GMode::kNearZero, GMode::kStrong, GMode::kMixed}) {
              if (dt != DType::kFloat32 && gm != GMode::kMixed) continue;
              if (quick && T == 200) continue;
              ++idx;
              DrCase c{chunk != 0, dt, B, T, 2, 4, 32, 48, lay, gm, idx % 3 != 0, idx % 4 == 1 ? 0.3f : 0.f, 64, true, true};
              run_delta_rule(c);
            }
  // Other shapes: Hk == Hv, K > V and K < V with full 64-wide panels, chunk sizes, no initial / final state.
  for (int chunk = 1; chunk >= 0; --chunk) {
    run_delta_rule({chunk != 0, DType::kFloat32, 2, 130, 4, 4, 64, 128, StateLayout::kKV, GMode::kMixed, true, 0.f, 64, true, true});
    run_delta_rule({chunk != 0, DType::kFloat32, 1, 130, 1, 2, 128, 64, StateLayout::kVK, GMode::kMixed, true, 0.f, 64, true, true});
    run_delta_rule({chunk != 0, DType::kBFloat16, 1, 77, 2, 6, 128, 128, StateLayout::kKV, GMode::kNearZero, true, 0.f, 64, false, true});
    run_delta_rule({chunk != 0, DType::kFloat16, 2, 33, 2, 2, 16, 24, StateLayout::kVK, GMode::kMixed, false, 0.f, 64, true, false});
    run_delta_rule({chunk != 0, DType::kFloat32, 1, 0, 2, 4, 32, 48, StateLayout::kVK, GMode::kMixed, true, 0.f, 64, true, true});
  }
  for (int64_t cs : {1, 7, 16, 32, 128})
    run_delta_rule({true, DType::kFloat32, 1, 65, 2, 4, 32, 48, StateLayout::kKV, GMode::kMixed, true, 0.f, cs, true, true});

  for (DType dt : dts) {
    for (int T : {1, 7, 40})
      for (int W : {1, 4})
        for (int extra : {0, 1}) {
          const int S = std::max(0, W - 1 + extra);
          run_conv(dt, dt, T == 1 ? 3 : 1, 48, T, W, S, true, T != 7, T != 40, W == 4, true);
          run_conv(dt, dt, 2, 40, T, W, S, false, true, true, false, extra == 0);
        }
    run_conv(dt, DType::kFloat32, 2, 64, 9, 4, 3, true, true, true, false, true);
    run_gating(dt, dt, 2, 5, 8);
    run_gating(DType::kFloat32, dt, 1, 3, 32);
    run_rms(dt, dt, {2, 3, 64}, 1e-6f);
    run_rms(dt, DType::kFloat32, {5, 48}, 1e-5f);
  }
  run_validation();
  run_serving_validation();
  for (bool chunk : {true, false})
    for (StateLayout lay : {StateLayout::kKV, StateLayout::kVK}) run_serving(chunk, lay);
  run_checked_arithmetic();
  run_parallel_errors();
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
