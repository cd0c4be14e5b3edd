// Checks the CANN simulator's documented behaviour through the device layer (native/ascend/device):
// tracked device memory, copy kinds, queued streams, the aclnn argument checks and their error codes.
//   g++ -std=c++17 -I native native/ascend/test/sim_test.cc native/ascend/device/cann_device.cc -ldl -o sim_test
//   ./sim_test build/Release/gdn_cann_sim.so
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ascend/device/cann_device.h"
#include "ascend/sim/cann_sim.h"
#include "common/float_convert.h"

namespace {

int g_failures = 0, g_checks = 0;
const cann::Table* T = nullptr;
void (*GetCounters)(GdnSimCounters*) = nullptr;  // the simulator's test-facing extra

GdnSimCounters Counters() {
  GdnSimCounters c{};
  GetCounters(&c);
  return c;
}

void Check(bool ok, const char* what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL: %s\n", what);
  }
}

// The code is `want` and CANN's recent error message contains `text`.
void Expect(int rc, int want, const char* text, const char* what) {
  const char* msg = T->aclGetRecentErrMsg();
  const bool ok = rc == want && (want == 0 || (msg != nullptr && std::strstr(msg, text) != nullptr));
  if (!ok) std::printf("  got %d (%s)\n", rc, msg ? msg : "no message");
  Check(ok, what);
}

void* DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  T->aclrtMalloc(&p, bytes, ACL_MEM_MALLOC_HUGE_FIRST);
  return p;
}

aclTensor* Tensor(void* data, std::vector<int64_t> dims, aclDataType dtype) {
  return T->aclCreateTensor(dims.data(), dims.size(), dtype, nullptr, 0, ACL_FORMAT_ND, dims.data(), dims.size(), data);
}

// The device tensors of one call: each in its own allocation; all are destroyed and freed with this object.
struct DeviceTensors {
  std::vector<void*> mem;  // in the order allocated
  std::vector<aclTensor*> tensors;

  aclTensor* Zeros(const std::vector<int64_t>& dims, aclDataType dt) {
    size_t n = dt == ACL_FLOAT || dt == ACL_INT32 ? 4 : 2;
    for (int64_t d : dims) n *= static_cast<size_t>(d);
    mem.push_back(DeviceAlloc(n));
    T->aclrtMemset(mem.back(), n, 0, n);
    return Keep(Tensor(mem.back(), dims, dt));
  }
  // A tensor holding `bytes` of host data.
  aclTensor* Upload(const std::vector<int64_t>& dims, aclDataType dt, const void* host, size_t bytes) {
    mem.push_back(DeviceAlloc(bytes));
    T->aclrtMemcpy(mem.back(), bytes, host, bytes, ACL_MEMCPY_HOST_TO_DEVICE);
    return Keep(Tensor(mem.back(), dims, dt));
  }
  ~DeviceTensors() {
    for (aclTensor* t : tensors) T->aclDestroyTensor(t);
    for (void* p : mem) T->aclrtFree(p);
  }

 private:
  aclTensor* Keep(aclTensor* t) {
    tensors.push_back(t);
    return t;
  }
};

int Cast(aclTensor* in, aclTensor* out, aclDataType dtype, aclrtStream stream) {
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  if (int rc = T->aclnnCastGetWorkspaceSize(in, dtype, out, &ws, &ex)) return rc;
  return T->aclnnCast(nullptr, ws, ex, stream);
}

void DeviceLayer(const char* sim) {
  std::string error;
  cann::LoadRequest bad{cann::Source::kSimulator, "/nonexistent/libgdn_cann_sim.so"};
  Check(cann::Load(bad, &error) == nullptr && error.find("GDN_FUSE_ASCEND=sim but the CANN simulator /nonexistent/libgdn_cann_sim.so cannot be loaded") == 0,
        "a missing simulator library is reported with its path");
  T = cann::Load({cann::Source::kSimulator, sim}, &error);
  Check(T != nullptr && T->simulated, "the simulator loads through the device layer");
  if (T == nullptr) return;
  Check(cann::Load({cann::Source::kReal, ""}, &error) == nullptr && error.find("cannot be mixed") != std::string::npos,
        "real CANN cannot be mixed with the simulator in one process");
}

void Memory() {
  void* d = DeviceAlloc(64);
  Expect(T->aclrtFree(d), 0, "", "aclrtFree of a live pointer");
  Expect(T->aclrtFree(d), cann::kAclErrorRtParamInvalid, "a freed device pointer", "aclrtFree twice is an error");
  int host = 0;
  Expect(T->aclrtFree(&host), cann::kAclErrorRtParamInvalid, "a host or foreign pointer", "aclrtFree of a host pointer");
}

void Copies() {
  float host[4] = {1, 2, 3, 4}, back[4] = {0, 0, 0, 0};
  void* d = DeviceAlloc(sizeof host);
  Expect(T->aclrtMemcpy(host, 16, d, 16, ACL_MEMCPY_HOST_TO_DEVICE), cann::kAclErrorRtParamInvalid, "destination is a host",
         "H2D into host memory is refused");
  Expect(T->aclrtMemcpy(d, 8, host, 16, ACL_MEMCPY_HOST_TO_DEVICE), cann::kAclErrorRtParamInvalid, "count 16 > destMax 8",
         "a copy larger than destMax is refused");
  aclrtStream s = nullptr;
  T->aclrtCreateStream(&s);
  const GdnSimCounters before = Counters();
  Expect(T->aclrtMemcpyAsync(d, 16, host, 16, ACL_MEMCPY_HOST_TO_DEVICE, s), 0, "", "aclrtMemcpyAsync queues");
  const GdnSimCounters after = Counters();
  Check(after.copies_h2d == before.copies_h2d + 1 && after.bytes_h2d == before.bytes_h2d + 16, "the counters count the copy and its bytes");
  T->aclrtMemcpy(back, 16, d, 16, ACL_MEMCPY_DEVICE_TO_HOST);
  Check(back[0] != 1.f, "before synchronisation the device holds stale data");
  Expect(T->aclrtSynchronizeStream(s), 0, "", "aclrtSynchronizeStream runs the queue");
  T->aclrtMemcpy(back, 16, d, 16, ACL_MEMCPY_DEVICE_TO_HOST);
  Check(back[0] == 1.f && back[3] == 4.f, "after synchronisation the copy has happened");
  T->aclrtFree(d);
  T->aclrtDestroyStream(s);
}

void OpPointers() {
  aclrtStream s = nullptr;
  T->aclrtCreateStream(&s);
  void* d = DeviceAlloc(16 * 4);
  void* o = DeviceAlloc(16 * 2);
  std::vector<float> host(16);
  aclTensor* in_host = Tensor(host.data(), {16}, ACL_FLOAT);
  aclTensor* out = Tensor(o, {16}, ACL_BF16);
  Expect(Cast(in_host, out, ACL_BF16, s), cann::kAclnnErrParamInvalid, "self data is a host or foreign pointer",
         "an op handed a host pointer fails with ACLNN_ERR_PARAM_INVALID");
  aclTensor* too_big = Tensor(d, {17}, ACL_FLOAT);
  aclTensor* out17 = Tensor(o, {17}, ACL_BF16);
  Expect(Cast(too_big, out17, ACL_BF16, s), cann::kAclnnErrParamInvalid, "a view reaching past the end of its device allocation",
         "a view out of its allocation fails");
  aclTensor* in = Tensor(d, {16}, ACL_FLOAT);
  Expect(Cast(in, out, ACL_FLOAT16, s), cann::kAclnnErrParamInvalid, "out has dtype BFLOAT16, dtype argument is FLOAT16",
         "Cast checks out's dtype against its argument");
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  T->aclnnCastGetWorkspaceSize(in, ACL_BF16, out, &ws, &ex);
  const uint64_t launches = Counters().launches;
  Expect(T->aclnnCast(nullptr, ws, ex, s), 0, "", "Cast launches");
  Check(Counters().launches == launches, "a launched op has not run before synchronisation");
  Expect(T->aclnnCast(nullptr, ws, ex, s), cann::kAclnnErrParamInvalid, "executor is not live", "an executor runs once");
  T->aclrtFree(d);  // freed before the queued Cast ran
  Expect(T->aclrtSynchronizeStream(s), cann::kAclErrorRtAicoreException, "device memory was freed before the task ran",
         "work on memory freed before synchronisation fails at the synchronisation");
  void* d2 = DeviceAlloc(16 * 4);
  T->aclrtFree(d2);
  aclTensor* freed = Tensor(d2, {16}, ACL_FLOAT);
  Expect(Cast(freed, out, ACL_BF16, s), cann::kAclnnErrParamInvalid, "self data is a freed device pointer",
         "an op handed a freed pointer fails");
  for (aclTensor* t : {in_host, out, too_big, out17, in, freed}) T->aclDestroyTensor(t);
  T->aclrtFree(o);
  T->aclrtDestroyStream(s);
}

struct GdrArgs {
  int64_t B = 1, L = 4, Nk = 2, Nv = 4, Dk = 8, Dv = 8;
  aclDataType qdtype = ACL_BF16;
};

// Calls aclnnChunkGatedDeltaRuleGetWorkspaceSize with device tensors of the given sizes; seqlens = L each.
int ChunkWorkspace(const GdrArgs& a, bool null_query, aclrtStream s, int32_t seqlen_override = -1) {
  const int64_t T_ = a.B * a.L;
  DeviceTensors d;
  aclTensor* q = null_query ? nullptr : d.Zeros({T_, a.Nk, a.Dk}, a.qdtype);
  aclTensor* k = d.Zeros({T_, a.Nk, a.Dk}, ACL_BF16);
  aclTensor* v = d.Zeros({T_, a.Nv, a.Dv}, ACL_BF16);
  aclTensor* beta = d.Zeros({T_, a.Nv}, ACL_BF16);
  aclTensor* state = d.Zeros({a.B, a.Nv, a.Dv, a.Dk}, ACL_BF16);
  std::vector<int32_t> lens(a.B, seqlen_override >= 0 ? seqlen_override : static_cast<int32_t>(a.L));
  aclTensor* seqlens = d.Upload({a.B}, ACL_INT32, lens.data(), lens.size() * 4);
  aclTensor* g = d.Zeros({T_, a.Nv}, ACL_FLOAT);
  aclTensor* out = d.Zeros({T_, a.Nv, a.Dv}, ACL_BF16);
  aclTensor* fin = d.Zeros({a.B, a.Nv, a.Dv, a.Dk}, ACL_BF16);
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  int rc = T->aclnnChunkGatedDeltaRuleGetWorkspaceSize(q, k, v, beta, state, seqlens, g, 0.5f, out, fin, &ws, &ex);
  if (rc == 0) {
    void* w = DeviceAlloc(ws);
    rc = T->aclnnChunkGatedDeltaRule(w, ws, ex, s);
    if (rc == 0) rc = T->aclrtSynchronizeStream(s);
    T->aclrtFree(w);
  }
  return rc;
}

void GatedDeltaChecks() {
  aclrtStream s = nullptr;
  T->aclrtCreateStream(&s);
  GdrArgs a;
  Expect(ChunkWorkspace(a, false, s), 0, "", "a valid chunk call runs");
  Expect(ChunkWorkspace(a, true, s), cann::kAclnnErrParamNullptr, "query is a null pointer", "a null query is ACLNN_ERR_PARAM_NULLPTR");
  GdrArgs f32 = a;
  f32.qdtype = ACL_FLOAT;
  Expect(ChunkWorkspace(f32, false, s), cann::kAclnnErrParamInvalid, "query has dtype FLOAT, which is not supported",
         "a float32 query is ACLNN_ERR_PARAM_INVALID");
  GdrArgs wide = a;
  wide.Dk = 129;
  Expect(ChunkWorkspace(wide, false, s), cann::kAclnnErrInnerTiling, "Dk=129", "Dk > 128 is ACLNN_ERR_INNER_TILING_ERROR");
  GdrArgs heads = a;
  heads.Nv = 6;
  heads.Nk = 4;
  Expect(ChunkWorkspace(heads, false, s), cann::kAclnnErrInnerTiling, "Nv%Nk==0", "Nv not a multiple of Nk is refused");
  Expect(ChunkWorkspace(a, false, s, 3), cann::kAclErrorRtAicoreException, "actualSeqLengths sum to 3, T is 4",
         "sequence lengths that do not sum to T fail when the task runs");
  T->aclrtDestroyStream(s);
}


// aclnnRecurrentGatedDeltaRule with one sequence of L tokens, stateRef with one slot per sequence.
int RecurrentRun(int64_t L, bool with_gk, aclrtStream s) {
  const int64_t B = 1, Nk = 2, Nv = 2, D = 8;
  DeviceTensors d;
  aclTensor *q = d.Zeros({B * L, Nk, D}, ACL_BF16), *k = d.Zeros({B * L, Nk, D}, ACL_BF16);
  aclTensor *v = d.Zeros({B * L, Nv, D}, ACL_BF16), *beta = d.Zeros({B * L, Nv}, ACL_BF16);
  aclTensor *state = d.Zeros({B, Nv, D, D}, ACL_BF16), *g = d.Zeros({B * L, Nv}, ACL_FLOAT);
  aclTensor* gk = with_gk ? d.Zeros({B * L, Nv, D}, ACL_FLOAT) : nullptr;
  aclTensor* ssm = d.Zeros({B * L}, ACL_INT32);  // zeros: every token uses slot 0
  const int32_t one = 1, len = static_cast<int32_t>(L);
  aclTensor* accepted = d.Upload({B}, ACL_INT32, &one, 4);
  aclTensor* seqlens = d.Upload({B}, ACL_INT32, &len, 4);
  aclTensor* out = d.Zeros({B * L, Nv, D}, ACL_BF16);
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  int rc = T->aclnnRecurrentGatedDeltaRuleGetWorkspaceSize(q, k, v, beta, state, seqlens, ssm, g, gk, accepted, 0.5f, out, &ws, &ex);
  if (rc == 0) rc = T->aclnnRecurrentGatedDeltaRule(nullptr, ws, ex, s);
  if (rc == 0) rc = T->aclrtSynchronizeStream(s);
  return rc;
}

void RecurrentChecks() {
  aclrtStream s = nullptr;
  T->aclrtCreateStream(&s);
  Expect(RecurrentRun(8, false, s), 0, "", "8 tokens per sequence run");
  Expect(RecurrentRun(9, false, s), cann::kAclErrorRtAicoreException, "actualSeqLengths[0] = 9 is outside [0, 8]",
         "more than 8 tokens per sequence fail");
  Expect(RecurrentRun(2, true, s), cann::kAclnnErrParamInvalid, "gk is reserved and must be nullptr", "gk must be null");
  T->aclrtDestroyStream(s);
}

// Serving arguments of aclnnRecurrentGatedDeltaRule: one sequence of 2 tokens over a pool of 4 slots holding
// 1, 2, 3, 4 (Nk = Nv = Dk = Dv = 1, beta = 0: the state passes through unchanged, o = scale * S). The token
// slots are {2, 3}; `accepted` picks the start slot; *out gets both outputs, *pool the pool afterwards.
int ServingRun(int32_t accepted, std::vector<int32_t> slots, aclDataType index_dtype, aclrtStream s,
               std::vector<float>* out, std::vector<float>* pool) {
  DeviceTensors d;
  auto bf16 = [&](std::vector<int64_t> dims, std::vector<float> values) {
    std::vector<uint16_t> h;
    for (float v : values) h.push_back(gdn::float_to_bf16(v));
    return d.Upload(dims, ACL_BF16, h.data(), h.size() * 2);
  };
  const std::vector<int64_t> tok3{2, 1, 1}, tok2{2, 1};
  aclTensor *q = bf16(tok3, {1, 1}), *k = bf16(tok3, {1, 1}), *v = bf16(tok3, {0, 0}), *beta = bf16(tok2, {0, 0});
  aclTensor* state = bf16({4, 1, 1, 1}, {1, 2, 3, 4});
  const float g_host[2] = {0, 0};
  aclTensor* g = d.Upload(tok2, ACL_FLOAT, g_host, sizeof g_host);
  const int32_t len = 2;
  aclTensor* seqlens = d.Upload({1}, ACL_INT32, &len, 4);
  const std::vector<int64_t> wide(slots.begin(), slots.end());
  aclTensor* ssm = index_dtype == ACL_INT64 ? d.Upload({2}, ACL_INT64, wide.data(), 16)
                                            : d.Upload({2}, ACL_INT32, slots.data(), 8);
  aclTensor* acc = d.Upload({1}, ACL_INT32, &accepted, 4);
  aclTensor* o = bf16(tok3, {0, 0});
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  int rc = T->aclnnRecurrentGatedDeltaRuleGetWorkspaceSize(q, k, v, beta, state, seqlens, ssm, g, nullptr, acc, 0.5f,
                                                           o, &ws, &ex);
  if (rc == 0) rc = T->aclnnRecurrentGatedDeltaRule(nullptr, ws, ex, s);
  if (rc == 0) rc = T->aclrtSynchronizeStream(s);
  auto download = [&](void* d, size_t n, std::vector<float>* host) {
    std::vector<uint16_t> h(n);
    T->aclrtMemcpy(h.data(), n * 2, d, n * 2, ACL_MEMCPY_DEVICE_TO_HOST);
    host->clear();
    for (uint16_t x : h) host->push_back(gdn::bf16_to_float(x));
  };
  if (rc == 0) {
    download(d.mem[4], 4, pool);
    download(d.mem.back(), 2, out);
  }
  return rc;
}

void ServingChecks() {
  aclrtStream s = nullptr;
  T->aclrtCreateStream(&s);
  std::vector<float> out, pool;
  Expect(ServingRun(1, {2, 3}, ACL_INT32, s, &out, &pool), 0, "", "a serving call runs");
  Check(out == std::vector<float>{1.5f, 1.5f} && pool == std::vector<float>{1, 2, 3, 3},
        "numAcceptedTokens = 1 starts from the first token's slot; each token writes its own slot");
  Expect(ServingRun(2, {2, 3}, ACL_INT32, s, &out, &pool), 0, "", "a serving call with 2 accepted tokens runs");
  Check(out == std::vector<float>{2.f, 2.f} && pool == std::vector<float>{1, 2, 4, 4},
        "numAcceptedTokens = 2 starts from the second token's slot");
  Expect(ServingRun(3, {2, 3}, ACL_INT32, s, &out, &pool), cann::kAclErrorRtAicoreException,
         "numAcceptedTokens[0] outside [1, seq length]", "numAcceptedTokens beyond the sequence's tokens fails");
  Expect(ServingRun(1, {2, 4}, ACL_INT32, s, &out, &pool), cann::kAclErrorRtAicoreException,
         "ssmStateIndices entry 4 outside the state pool", "a slot outside the pool fails");
  Expect(ServingRun(1, {2, 3}, ACL_INT64, s, &out, &pool), cann::kAclnnErrParamInvalid,
         "ssmStateIndices has dtype INT64, which is not supported", "int64 ssmStateIndices are refused");
  T->aclrtDestroyStream(s);
}

// ------------------------------------------------------------------------------------------------------------
// The layer's primitives: for each, a bad-dtype call, a bad-shape call and a correct one against a host reference.

// A device float32 tensor holding `values` (shape `dims`), or of another dtype (contents unset).
struct DevTensor {
  void* data = nullptr;
  aclTensor* t = nullptr;
  std::vector<int64_t> dims;
  DevTensor(std::vector<int64_t> d, const std::vector<float>& values, aclDataType dtype = ACL_FLOAT,
            aclFormat format = ACL_FORMAT_ND)
      : dims(std::move(d)) {
    size_t n = 1;
    for (int64_t x : dims) n *= static_cast<size_t>(x);
    const size_t es = dtype == ACL_FLOAT || dtype == ACL_INT32 ? 4 : dtype == ACL_INT64 ? 8 : 2;
    data = DeviceAlloc(n * es);
    if (!values.empty()) T->aclrtMemcpy(data, n * 4, values.data(), n * 4, ACL_MEMCPY_HOST_TO_DEVICE);
    t = T->aclCreateTensor(dims.data(), dims.size(), dtype, nullptr, 0, format, dims.data(), dims.size(), data);
  }
  ~DevTensor() {
    T->aclDestroyTensor(t);
    T->aclrtFree(data);
  }
  std::vector<float> Read() const {
    size_t n = 1;
    for (int64_t x : dims) n *= static_cast<size_t>(x);
    std::vector<float> out(n);
    T->aclrtMemcpy(out.data(), n * 4, data, n * 4, ACL_MEMCPY_DEVICE_TO_HOST);
    return out;
  }
};

std::vector<float> Ramp(size_t n, float lo, float step) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = lo + step * static_cast<float>(i);
  return v;
}

bool Near(const std::vector<float>& got, const std::vector<float>& want, float tol = 1e-5f) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::fabs(got[i] - want[i]) > tol * (1.f + std::fabs(want[i]))) {
      std::printf("  [%zu] got %g, want %g\n", i, got[i], want[i]);
      return false;
    }
  }
  return true;
}

// Runs phase two of an op and synchronises; the code of the first failure.
template <typename Launch>
int RunOp(int rc, const uint64_t& ws, aclOpExecutor* const& ex, Launch launch, aclrtStream s) {  // after the call
  if (rc != 0) return rc;
  void* w = ws > 0 ? DeviceAlloc(ws) : nullptr;
  rc = launch(w, ws, ex, s);
  if (rc == 0) rc = T->aclrtSynchronizeStream(s);
  if (w) T->aclrtFree(w);
  return rc;
}

using UnaryWs = aclnnStatus (*)(const aclTensor*, aclTensor*, uint64_t*, aclOpExecutor**);
using LaunchFn = aclnnStatus (*)(void*, uint64_t, aclOpExecutor*, aclrtStream);

void UnaryChecks(const char* name, UnaryWs get, LaunchFn launch, float (*ref)(float), aclrtStream s) {
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  const std::string label(name);
  {
    DevTensor in({2, 3}, {}, ACL_INT32), out({2, 3}, {}, ACL_INT32);
    Expect(get(in.t, out.t, &ws, &ex), cann::kAclnnErrParamInvalid, "self has dtype INT32",
           (label + ": an INT32 input is ACLNN_ERR_PARAM_INVALID").c_str());
  }
  {
    DevTensor in({2, 3}, Ramp(6, -1, 0.4f)), out({3, 2}, {});
    Expect(get(in.t, out.t, &ws, &ex), cann::kAclnnErrParamInvalid, "out has shape (3,2), expected (2,3)",
           (label + ": an out of another shape is refused").c_str());
  }
  DevTensor in({2, 3}, Ramp(6, -1, 0.4f)), out({2, 3}, {});
  const int rc = RunOp(get(in.t, out.t, &ws, &ex), ws, ex, launch, s);
  std::vector<float> want;
  for (float x : Ramp(6, -1, 0.4f)) want.push_back(ref(x));
  Check(rc == 0 && Near(out.Read(), want), (label + " matches the host reference").c_str());
}

float RefSilu(float x) { return x / (1.f + std::exp(-x)); }
float RefSigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
float RefExp(float x) { return std::exp(x); }
float RefNeg(float x) { return -x; }

void ElementwiseChecks(aclrtStream s) {
  UnaryChecks("aclnnSilu", T->aclnnSiluGetWorkspaceSize, T->aclnnSilu, RefSilu, s);
  UnaryChecks("aclnnSigmoid", T->aclnnSigmoidGetWorkspaceSize, T->aclnnSigmoid, RefSigmoid, s);
  UnaryChecks("aclnnExp", T->aclnnExpGetWorkspaceSize, T->aclnnExp, RefExp, s);
  UnaryChecks("aclnnNeg", T->aclnnNegGetWorkspaceSize, T->aclnnNeg, RefNeg, s);
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  float one = 1.f, twenty = 20.f, half = 0.5f;
  aclScalar *beta = T->aclCreateScalar(&one, ACL_FLOAT), *th = T->aclCreateScalar(&twenty, ACL_FLOAT);
  aclScalar* alpha = T->aclCreateScalar(&half, ACL_FLOAT);
  {  // Softplus: x > 20 passes through, else log1p(exp(x))
    DevTensor in({4}, {-3.f, 0.f, 2.f, 25.f}), out({4}, {}), bad({4}, {}, ACL_INT32);
    Expect(T->aclnnSoftplusGetWorkspaceSize(bad.t, beta, th, out.t, &ws, &ex), cann::kAclnnErrParamInvalid,
           "self has dtype INT32", "aclnnSoftplus: an INT32 input is refused");
    Expect(T->aclnnSoftplusGetWorkspaceSize(in.t, nullptr, th, out.t, &ws, &ex), cann::kAclnnErrParamNullptr,
           "beta is a null pointer", "aclnnSoftplus: a null beta is ACLNN_ERR_PARAM_NULLPTR");
    const int rc =
        RunOp(T->aclnnSoftplusGetWorkspaceSize(in.t, beta, th, out.t, &ws, &ex), ws, ex, T->aclnnSoftplus, s);
    Check(rc == 0 && Near(out.Read(), {std::log1p(std::exp(-3.f)), std::log(2.f), std::log1p(std::exp(2.f)), 25.f}),
          "aclnnSoftplus matches the host reference");
  }
  {  // Mul and Add broadcast [2,3] with [3]; Add scales other by alpha
    DevTensor a({2, 3}, Ramp(6, 1, 1)), b({3}, {10, 20, 30}), out({2, 3}, {}), wrong({3, 2}, {}), c({2}, {1, 2});
    Expect(T->aclnnMulGetWorkspaceSize(a.t, c.t, out.t, &ws, &ex), cann::kAclnnErrParamInvalid, "do not broadcast",
           "aclnnMul: shapes that do not broadcast are refused");
    Expect(T->aclnnMulGetWorkspaceSize(a.t, b.t, wrong.t, &ws, &ex), cann::kAclnnErrParamInvalid,
           "out has shape (3,2), expected (2,3)", "aclnnMul: an out of another shape is refused");
    DevTensor bad({3}, {}, ACL_INT32);
    Expect(T->aclnnAddGetWorkspaceSize(a.t, bad.t, alpha, out.t, &ws, &ex), cann::kAclnnErrParamInvalid,
           "other has dtype INT32", "aclnnAdd: an INT32 operand is refused");
    int rc = RunOp(T->aclnnMulGetWorkspaceSize(a.t, b.t, out.t, &ws, &ex), ws, ex, T->aclnnMul, s);
    Check(rc == 0 && Near(out.Read(), {10, 40, 90, 40, 100, 180}), "aclnnMul broadcasts like numpy");
    rc = RunOp(T->aclnnAddGetWorkspaceSize(a.t, b.t, alpha, out.t, &ws, &ex), ws, ex, T->aclnnAdd, s);
    Check(rc == 0 && Near(out.Read(), {6, 12, 18, 9, 15, 21}), "aclnnAdd computes self + alpha * other");
  }
  for (aclScalar* x : {beta, th, alpha}) T->aclDestroyScalar(x);
}

void MatmulChecks(aclrtStream s) {
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  DevTensor a({2, 2, 3}, Ramp(12, 0, 1)), b({3, 2}, {1, 0, 0, 1, 1, 1}), out({2, 2, 2}, {});
  DevTensor b16({3, 2}, {}, ACL_BF16), wrong({2, 2}, {});
  Expect(T->aclnnMatmulGetWorkspaceSize(a.t, b16.t, out.t, 0, &ws, &ex), cann::kAclnnErrParamInvalid,
         "mat2 has dtype BFLOAT16", "aclnnMatmul: mixed dtypes are refused");
  Expect(T->aclnnMatmulGetWorkspaceSize(a.t, wrong.t, out.t, 0, &ws, &ex), cann::kAclnnErrParamInvalid,
         "mat2 has 2 rows, self has 3 columns", "aclnnMatmul: inner dimensions must agree");
  const int rc = RunOp(T->aclnnMatmulGetWorkspaceSize(a.t, b.t, out.t, 0, &ws, &ex), ws, ex, T->aclnnMatmul, s);
  // rows r = (3i, 3i+1, 3i+2): r x b = (r0 + r2, r1 + r2)
  Check(rc == 0 && Near(out.Read(), {2, 3, 8, 9, 14, 15, 20, 21}), "aclnnMatmul matches the host reference");
}

void IndexSelectChecks(aclrtStream s) {
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  const std::vector<int64_t> picks = {2, 0, 2};
  DevTensor x({2, 3}, Ramp(6, 0, 1)), out({2, 3}, {}), idx({3}, {}, ACL_INT64), fidx({3}, {});
  T->aclrtMemcpy(idx.data, 24, picks.data(), 24, ACL_MEMCPY_HOST_TO_DEVICE);
  Expect(T->aclnnIndexSelectGetWorkspaceSize(x.t, 1, fidx.t, out.t, &ws, &ex), cann::kAclnnErrParamInvalid,
         "index has dtype FLOAT", "aclnnIndexSelect: a float index is refused");
  Expect(T->aclnnIndexSelectGetWorkspaceSize(x.t, 2, idx.t, out.t, &ws, &ex), cann::kAclnnErrParamInvalid,
         "dim 2 outside [-2, 2)", "aclnnIndexSelect: a dim outside the rank is refused");
  int rc = RunOp(T->aclnnIndexSelectGetWorkspaceSize(x.t, 1, idx.t, out.t, &ws, &ex), ws, ex, T->aclnnIndexSelect, s);
  Check(rc == 0 && Near(out.Read(), {2, 0, 2, 5, 3, 5}), "aclnnIndexSelect matches the host reference");
  const std::vector<int64_t> outside = {0, 3, 1};
  T->aclrtMemcpy(idx.data, 24, outside.data(), 24, ACL_MEMCPY_HOST_TO_DEVICE);
  rc = RunOp(T->aclnnIndexSelectGetWorkspaceSize(x.t, 1, idx.t, out.t, &ws, &ex), ws, ex, T->aclnnIndexSelect, s);
  Expect(rc, cann::kAclErrorRtAicoreException, "index 3 is outside [0, 3)",
         "aclnnIndexSelect: an index outside the axis faults the task");
}

void ConvolutionChecks(aclrtStream s) {
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  const int64_t one[] = {1}, zero[] = {0};
  aclIntArray *stride = T->aclCreateIntArray(one, 1), *pad = T->aclCreateIntArray(zero, 1);
  aclIntArray* dil = T->aclCreateIntArray(one, 1);
  // depthwise: 2 channels, length 4, kernel 2: y[c,t] = w[c,0] x[c,t] + w[c,1] x[c,t+1] + bias[c]
  DevTensor x({1, 2, 4}, {1, 2, 3, 4, 10, 20, 30, 40}, ACL_FLOAT, ACL_FORMAT_NCL);
  DevTensor w({2, 1, 2}, {1, 1, 0.5f, -1}, ACL_FLOAT, ACL_FORMAT_NCL), bias({2}, {0.25f, 0});
  DevTensor out({1, 2, 3}, {}, ACL_FLOAT, ACL_FORMAT_NCL), wrong({1, 2, 4}, {}, ACL_FLOAT, ACL_FORMAT_NCL);
  DevTensor w16({2, 1, 2}, {}, ACL_FLOAT16, ACL_FORMAT_NCL), nd({1, 2, 4}, {1, 2, 3, 4, 10, 20, 30, 40});
  auto conv = [&](aclTensor* in, aclTensor* wt, aclTensor* o, int8_t cube) {
    return T->aclnnConvolutionGetWorkspaceSize(in, wt, bias.t, stride, pad, dil, false, nullptr, 2, o, cube, &ws, &ex);
  };
  Expect(conv(x.t, w16.t, out.t, 1), cann::kAclnnErrParamInvalid, "weight has dtype FLOAT16",
         "aclnnConvolution: a weight of another dtype is refused");
  Expect(conv(x.t, w.t, wrong.t, 1), cann::kAclnnErrParamInvalid, "output has shape (1,2,4), expected (1,2,3)",
         "aclnnConvolution: an output of another length is refused");
  Expect(conv(nd.t, w.t, out.t, 1), cann::kAclnnErrParamInvalid, "input must have format NCL",
         "aclnnConvolution: an ND input is refused");
  Expect(conv(x.t, w.t, out.t, 0), cann::kAclnnErrParamInvalid, "KEEP_DTYPE is not supported for FLOAT",
         "aclnnConvolution: KEEP_DTYPE with float32 is refused (A2/A3)");
  const int rc = RunOp(conv(x.t, w.t, out.t, 1), ws, ex, T->aclnnConvolution, s);
  Check(rc == 0 && Near(out.Read(), {3.25f, 5.25f, 7.25f, -15, -20, -25}, 1e-3f),
        "aclnnConvolution (depthwise, HFLOAT32) matches the host reference");
  for (aclIntArray* a : {stride, pad, dil}) T->aclDestroyIntArray(a);
}

void RmsNormChecks(aclrtStream s) {
  uint64_t ws = 0;
  aclOpExecutor* ex = nullptr;
  DevTensor x({2, 2}, {3, 4, 1, -1}), g({2}, {1, 2}), y({2, 2}, {}), rstd({2, 1}, {});
  DevTensor wrong({1, 2}, {});
  Expect(T->aclnnRmsNormGetWorkspaceSize(x.t, g.t, 0.0, y.t, wrong.t, &ws, &ex), cann::kAclnnErrParamInvalid,
         "rstdOut has shape (1,2), expected (2,1)", "aclnnRmsNorm: a rstd of another shape is refused");
  const int rc =
      RunOp(T->aclnnRmsNormGetWorkspaceSize(x.t, g.t, 0.0, y.t, rstd.t, &ws, &ex), ws, ex, T->aclnnRmsNorm, s);
  const float r0 = 1.f / std::sqrt(12.5f), r1 = 1.f;
  Check(rc == 0 && Near(y.Read(), {3 * r0, 8 * r0, 1 * r1, -2 * r1}), "aclnnRmsNorm matches the host reference");
}

void LayerPrimitives() {
  aclrtStream s = nullptr;
  T->aclrtCreateStream(&s);
  ElementwiseChecks(s);
  MatmulChecks(s);
  IndexSelectChecks(s);
  ConvolutionChecks(s);
  RmsNormChecks(s);
  T->aclrtDestroyStream(s);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::printf("usage: sim_test path/to/gdn_cann_sim.so\n");
    return 2;
  }
  DeviceLayer(argv[1]);
  if (T == nullptr) return 1;
  GetCounters = reinterpret_cast<void (*)(GdnSimCounters*)>(dlsym(dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD), "gdnSimGetCounters"));
  if (GetCounters == nullptr) return 1;
  Memory();
  Copies();
  OpPointers();
  GatedDeltaChecks();
  RecurrentChecks();
  ServingChecks();
  LayerPrimitives();
  std::printf("%d of %d checks passed\n", g_checks - g_failures, g_checks);
  return g_failures == 0 ? 0 : 1;
}
