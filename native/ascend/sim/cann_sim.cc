// gdn-fuse CANN simulator: a CPU implementation of the slice of CANN that native/ascend uses, exporting
// the same C symbols as libascendcl / libnnopbase / libopapi. It behaves like a device, not a shortcut:
//  - device memory is a separate, tracked arena: an op handed a host pointer, a freed or foreign pointer, or
//    a view reaching outside its allocation fails with ACLNN_ERR_PARAM_INVALID, copies check their kind;
//  - work launched on a stream (ops, aclrtMemcpyAsync) only happens at aclrtSynchronizeStream, so a missing
//    synchronisation shows up as stale data;
//  - the ops check their documented arguments (dtypes, formats, shapes, limits) and return the documented
//    codes; the gated-delta ops compute like the device: bf16 in and out, float32 accumulation.
// Only loaded when GDN_FUSE_ASCEND=sim asks for it (native/ascend/device).
#include "ascend/sim/cann_sim.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sys/mman.h>
#include <string>
#include <vector>

#include "ascend/device/cann_api.h"
#include "common/float_convert.h"

#define SIM_EXPORT extern "C" __attribute__((visibility("default")))

using namespace cann;

// ---------------------------------------------------------------------------------------------------------
// State: the arena, streams, live tensors and the last error message.

struct aclTensor {
  std::vector<int64_t> dims, strides;
  int64_t offset = 0;  // in elements
  aclDataType dtype = ACL_DT_UNDEFINED;
  aclFormat format = ACL_FORMAT_ND;
  std::vector<int64_t> storage_dims;
  char* data = nullptr;
};

struct aclIntArray {
  std::vector<int64_t> values;
};

struct aclScalar {
  double value = 0;
  aclDataType dtype = ACL_DT_UNDEFINED;
};

struct Region {  // bytes an op touches: [begin, end)
  const char* begin;
  const char* end;
};

struct aclOpExecutor {
  const char* op = "";
  uint64_t workspace = 0;
  std::vector<Region> regions;
  std::function<std::string()> run;  // returns an error message, empty on success
};

namespace {

// A stream is an ordered queue of tasks; task n (1-based, counting every task ever queued) runs only when
// the stream is synchronised, or when an event recorded after it is synchronised or waited on.
struct Stream {
  std::deque<std::function<std::string()>> work;
  uint64_t queued = 0;  // tasks ever queued
  uint64_t done = 0;    // tasks run (the first `done` of them)
  std::string error;    // the first task error not yet reported by a synchronisation
};

// An event marks a point in one stream's queue: complete once the tasks queued before aclrtRecordEvent ran.
struct Event {
  Stream* stream = nullptr;  // null: never recorded (synchronising or waiting on it returns at once)
  uint64_t mark = 0;
};

std::recursive_mutex g_mutex;

// Device memory: its own reserved address range, never shared with host allocations. Blocks are whole pages,
// handed out once (a freed address is never reused, so a stale pointer is always recognised) and made
// inaccessible when freed, so host code touching freed device memory faults as it would on a device.
class Arena {
 public:
  Arena() {
    void* base = mmap(nullptr, kReserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = next_ = base == MAP_FAILED ? nullptr : static_cast<char*>(base);
  }
  char* Allocate(size_t bytes) {
    const size_t span = (bytes + kPage - 1) / kPage * kPage;
    if (base_ == nullptr || next_ + span > base_ + kReserve) return nullptr;
    char* p = next_;
    if (mprotect(p, span, PROT_READ | PROT_WRITE) != 0) return nullptr;
    next_ += span;
    return p;
  }
  void Release(char* p, size_t bytes) {
    const size_t span = (bytes + kPage - 1) / kPage * kPage;
    madvise(p, span, MADV_DONTNEED);
    mprotect(p, span, PROT_NONE);
  }

 private:
  static constexpr size_t kPage = 4096;
  static constexpr size_t kReserve = size_t{1} << 36;  // 64 GiB of address space, committed page by page
  char* base_ = nullptr;
  char* next_ = nullptr;
};

Arena& DeviceArena() {
  static Arena arena;
  return arena;
}
std::map<const char*, size_t> g_arena;      // live device allocations: base -> size
std::map<const char*, size_t> g_freed;      // blocks freed (addresses are never reused), for messages
std::set<Stream*> g_streams;
std::set<Event*> g_events;
std::set<const aclTensor*> g_tensors;
std::set<const aclIntArray*> g_int_arrays;
std::set<const aclScalar*> g_scalars;
std::set<aclOpExecutor*> g_executors;
GdnSimCounters g_counters{};
thread_local std::string t_error;

int Fail(int code, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  t_error = "EZ9999: [gdn-fuse CANN simulator] " + std::string(buf) + " (error " + std::to_string(code) + ")";
  return code;
}

size_t ElementSize(aclDataType t) {
  switch (t) {
    case ACL_FLOAT: case ACL_INT32: case ACL_UINT32: return 4;
    case ACL_FLOAT16: case ACL_BF16: case ACL_INT16: case ACL_UINT16: return 2;
    case ACL_INT64: case ACL_UINT64: case ACL_DOUBLE: return 8;
    case ACL_INT8: case ACL_UINT8: case ACL_BOOL: return 1;
    default: return 0;
  }
}

const char* DtypeName(aclDataType t) {
  switch (t) {
    case ACL_FLOAT: return "FLOAT";
    case ACL_FLOAT16: return "FLOAT16";
    case ACL_BF16: return "BFLOAT16";
    case ACL_INT32: return "INT32";
    case ACL_INT64: return "INT64";
    case ACL_BOOL: return "BOOL";
    default: return "other";
  }
}

// The live allocation holding [p, p+n), or the end iterator.
std::map<const char*, size_t>::const_iterator FindAllocation(const char* p, size_t n) {
  auto it = g_arena.upper_bound(p);
  if (it == g_arena.begin()) return g_arena.end();
  --it;
  if (p >= it->first && p + n <= it->first + it->second) return it;
  return g_arena.end();
}

bool IsDevice(const void* p, size_t n) { return FindAllocation(static_cast<const char*>(p), n) != g_arena.end(); }

// Why `p` (n bytes) is not device memory, for messages.
std::string WhyNotDevice(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  if (p == nullptr) return "a null pointer";
  auto freed = g_freed.upper_bound(c);
  if (freed != g_freed.begin() && c < std::prev(freed)->first + std::prev(freed)->second) return "a freed device pointer";
  auto it = g_arena.upper_bound(c);
  if (it != g_arena.begin()) {
    --it;
    if (c >= it->first && c < it->first + it->second) return "a view reaching past the end of its device allocation";
  }
  (void)n;
  return "a host or foreign pointer (not from aclrtMalloc)";
}

int64_t Numel(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::string DimsStr(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + ")";
}

// The bytes a tensor view addresses (its lowest to its highest element).
Region ViewRegion(const aclTensor& t) {
  const size_t es = ElementSize(t.dtype);
  int64_t lo = t.offset, hi = t.offset;
  for (size_t i = 0; i < t.dims.size(); ++i) {
    if (t.dims[i] == 0) return {t.data, t.data};
    const int64_t span = (t.dims[i] - 1) * t.strides[i];
    (span < 0 ? lo : hi) += span;
  }
  return {t.data + lo * static_cast<int64_t>(es), t.data + (hi + 1) * static_cast<int64_t>(es)};
}

// Byte offset of element `linear` (row-major over the view's dims) from t.data.
int64_t ElementOffset(const aclTensor& t, int64_t linear) {
  int64_t off = t.offset;
  for (size_t i = t.dims.size(); i-- > 0;) {
    off += (linear % t.dims[i]) * t.strides[i];
    linear /= t.dims[i];
  }
  return off * static_cast<int64_t>(ElementSize(t.dtype));
}

float LoadAt(const aclTensor& t, int64_t byte_offset) {
  const char* p = t.data + byte_offset;
  uint16_t h;
  switch (t.dtype) {
    case ACL_FLOAT: { float f; std::memcpy(&f, p, 4); return f; }
    case ACL_FLOAT16: std::memcpy(&h, p, 2); return gdn::half_to_float(h);
    case ACL_BF16: std::memcpy(&h, p, 2); return gdn::bf16_to_float(h);
    case ACL_INT32: { int32_t i; std::memcpy(&i, p, 4); return static_cast<float>(i); }
    default: return 0.f;
  }
}

void StoreAt(const aclTensor& t, int64_t byte_offset, float v) {
  char* p = t.data + byte_offset;
  uint16_t h;
  switch (t.dtype) {
    case ACL_FLOAT: std::memcpy(p, &v, 4); break;
    case ACL_FLOAT16: h = gdn::float_to_half(v); std::memcpy(p, &h, 2); break;
    case ACL_BF16: h = gdn::float_to_bf16(v); std::memcpy(p, &h, 2); break;
    case ACL_INT32: { int32_t i = static_cast<int32_t>(v); std::memcpy(p, &i, 4); break; }
    default: break;
  }
}

int32_t LoadInt32(const aclTensor& t, int64_t i) {
  int32_t v;
  std::memcpy(&v, t.data + ElementOffset(t, i), 4);
  return v;
}

// Checks common to every op input/output: a live aclTensor, ND, its view inside one device allocation.
int CheckTensor(const char* op, const char* name, const aclTensor* t, std::vector<Region>* regions,
                aclFormat format = ACL_FORMAT_ND) {
  if (t == nullptr) return Fail(kAclnnErrParamNullptr, "%s: %s is a null pointer", op, name);
  if (!g_tensors.count(t)) return Fail(kAclnnErrParamInvalid, "%s: %s is not a live aclTensor", op, name);
  if (t->format != format) {
    return Fail(kAclnnErrParamInvalid, "%s: %s must have format %s", op, name, format == ACL_FORMAT_ND ? "ND" : "NCL");
  }
  const Region r = ViewRegion(*t);
  if (r.end > r.begin && !IsDevice(r.begin, static_cast<size_t>(r.end - r.begin))) {
    return Fail(kAclnnErrParamInvalid, "%s: %s data is %s (%p, %td bytes)", op, name,
                WhyNotDevice(r.begin, r.end - r.begin).c_str(), static_cast<const void*>(r.begin), r.end - r.begin);
  }
  regions->push_back(r);
  return kAclnnSuccess;
}

int CheckDtype(const char* op, const char* name, const aclTensor* t, std::initializer_list<aclDataType> allowed) {
  for (aclDataType a : allowed) if (t->dtype == a) return kAclnnSuccess;
  return Fail(kAclnnErrParamInvalid, "%s: %s has dtype %s, which is not supported", op, name, DtypeName(t->dtype));
}

int CheckShape(const char* op, const char* name, const aclTensor* t, const std::vector<int64_t>& want, int code) {
  if (t->dims == want) return kAclnnSuccess;
  return Fail(code, "%s: %s has shape %s, expected %s", op, name, DimsStr(t->dims).c_str(), DimsStr(want).c_str());
}

#define SIM_TRY(expr) do { const int rc_ = (expr); if (rc_ != 0) return rc_; } while (0)

void Enqueue(Stream* s, std::function<std::string()> task) {
  s->work.push_back(std::move(task));
  ++s->queued;
}

// Runs the stream's tasks up to task number `mark`; keeps the first error for the next synchronisation.
void RunUntil(Stream* s, uint64_t mark) {
  while (s->done < mark && !s->work.empty()) {
    auto task = std::move(s->work.front());
    s->work.pop_front();
    ++s->done;
    std::string err = task();
    if (!err.empty() && s->error.empty()) s->error = err;
  }
}

aclnnStatus NewExecutor(const char* op, uint64_t workspace, std::vector<Region> regions,
                        std::function<std::string()> run, uint64_t* workspace_size, aclOpExecutor** executor) {
  if (workspace_size == nullptr || executor == nullptr) return Fail(kAclnnErrParamNullptr, "%s: workspaceSize or executor is null", op);
  auto* e = new aclOpExecutor{op, workspace, std::move(regions), std::move(run)};
  g_executors.insert(e);
  *workspace_size = workspace;
  *executor = e;
  return kAclnnSuccess;
}

// Phase two of every op: check the executor, workspace and stream, and queue the work on the stream.
aclnnStatus Launch(const char* op, void* workspace, uint64_t size, aclOpExecutor* e, aclrtStream stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (e == nullptr || !g_executors.count(e)) return Fail(kAclnnErrParamInvalid, "%s: executor is not live (used twice?)", op);
  g_executors.erase(e);
  std::unique_ptr<aclOpExecutor> owned(e);
  if (std::strcmp(e->op, op) != 0) return Fail(kAclnnErrParamInvalid, "%s: executor belongs to %s", op, e->op);
  if (size < e->workspace) return Fail(kAclnnErrParamInvalid, "%s: workspace of %llu bytes, %llu needed", op, (unsigned long long)size, (unsigned long long)e->workspace);
  if (e->workspace > 0 && !IsDevice(workspace, e->workspace)) {
    return Fail(kAclnnErrParamInvalid, "%s: workspace is %s", op, WhyNotDevice(workspace, e->workspace).c_str());
  }
  auto* s = static_cast<Stream*>(stream);
  if (!g_streams.count(s)) return Fail(kAclErrorRtParamInvalid, "%s: stream is not a live aclrtStream", op);
  std::vector<Region> regions = std::move(e->regions);
  std::function<std::string()> run = std::move(e->run);
  const std::string name = op;
  Enqueue(s, [regions, run, name]() -> std::string {
    for (const Region& r : regions) {  // memory freed between launch and execution
      if (r.end > r.begin && !IsDevice(r.begin, r.end - r.begin)) return name + ": device memory was freed before the task ran";
    }
    ++g_counters.launches;
    return run();
  });
  return kAclnnSuccess;
}

// The first phase of an aclnn op (GetWorkspaceSize) holds the simulator's lock, checks the op's tensors in the
// order the op takes them (a failure returns the op's code with its message), collects the device memory they
// touch, and ends by making the executor whose task runs when the launch is synchronised.
class OpCheck {
 public:
  explicit OpCheck(const char* op) : op(op), lock_(g_mutex) {}

  int Tensor(const char* name, const aclTensor* t, aclFormat format = ACL_FORMAT_ND) {
    return CheckTensor(op, name, t, &regions_, format);
  }
  int Tensors(std::initializer_list<std::pair<const char*, const aclTensor*>> tensors) {
    for (const auto& [name, t] : tensors) SIM_TRY(Tensor(name, t));
    return kAclnnSuccess;
  }
  int Dtype(const char* name, const aclTensor* t, std::initializer_list<aclDataType> allowed) const {
    return CheckDtype(op, name, t, allowed);
  }
  int Dtypes(std::initializer_list<std::pair<const char*, const aclTensor*>> tensors,
             std::initializer_list<aclDataType> allowed) const {
    for (const auto& [name, t] : tensors) SIM_TRY(Dtype(name, t, allowed));
    return kAclnnSuccess;
  }
  int Shape(const char* name, const aclTensor* t, const std::vector<int64_t>& want,
            int code = kAclnnErrParamInvalid) const {
    return CheckShape(op, name, t, want, code);
  }
  aclnnStatus Executor(uint64_t workspace, std::function<std::string()> task, uint64_t* ws, aclOpExecutor** ex) {
    return NewExecutor(op, workspace, std::move(regions_), std::move(task), ws, ex);
  }

  const char* const op;

 private:
  std::lock_guard<std::recursive_mutex> lock_;
  std::vector<Region> regions_;
};

// The task of an element-wise op: out[i] = f(in[i]) over out's elements (row-major), computed in float32.
template <typename F>
std::function<std::string()> ElementwiseTask(const aclTensor& in, const aclTensor& out, F f) {
  return [in, out, f]() {
    const int64_t n = Numel(out.dims);
    for (int64_t i = 0; i < n; ++i) StoreAt(out, ElementOffset(out, i), f(LoadAt(in, ElementOffset(in, i))));
    return std::string();
  };
}

// `handle` as a live stream or event of `live`; otherwise ACL_ERROR_RT_PARAM_INVALID "<fn>: not a live <what>".
template <typename H>
aclError FindLive(const std::set<H*>& live, void* handle, const char* fn, const char* what, H** out) {
  *out = static_cast<H*>(handle);
  return live.count(*out) ? kAclSuccess : Fail(kAclErrorRtParamInvalid, "%s: not a live %s", fn, what);
}

// aclrtCreateStream / aclrtCreateEvent: a new live handle in *out.
template <typename H>
aclError CreateLive(std::set<H*>* live, void** out, const char* fn) {
  if (out == nullptr) return Fail(kAclErrorRtParamInvalid, "%s: null pointer", fn);
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  H* h = new H();
  live->insert(h);
  *out = h;
  return kAclSuccess;
}

// aclrtDestroyStream / aclrtDestroyEvent: `forget(h)` drops what still refers to the handle before it goes.
template <typename H, typename Forget>
aclError DestroyLive(std::set<H*>* live, void* handle, const char* fn, const char* what, Forget forget) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  H* h = nullptr;
  SIM_TRY(FindLive(*live, handle, fn, what, &h));
  live->erase(h);
  forget(h);
  delete h;
  return kAclSuccess;
}

// aclDestroyTensor / aclDestroyIntArray / aclDestroyScalar: null is a no-op, anything else must be live.
template <typename T>
aclnnStatus DestroyLive(std::set<const T*>* live, const T* p, const char* fn, const char* type) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (p == nullptr) return kAclnnSuccess;
  if (!live->erase(p)) return Fail(kAclnnErrParamInvalid, "%s: not a live %s", fn, type);
  delete p;
  return kAclnnSuccess;
}

}  // namespace

// The second phase of every aclnn op (cann_api.h lists them): queue the planned work on the stream.
#define SIM_LAUNCH(X, name, params)                                                          \
  SIM_EXPORT aclnnStatus name(void* workspace, uint64_t size, aclOpExecutor* e, aclrtStream s) { \
    return Launch(#name, workspace, size, e, s);                                             \
  }
GDN_CANN_ACLNN_OPS(SIM_LAUNCH, unused)
#undef SIM_LAUNCH

// ---------------------------------------------------------------------------------------------------------
// Runtime (libascendcl)

SIM_EXPORT aclError aclInit(const char*) {
  static bool initialised = false;
  if (initialised) return kAclErrorRepeatInitialize;
  initialised = true;
  return kAclSuccess;
}

SIM_EXPORT aclError aclrtSetDevice(int32_t device) {
  return device == 0 ? kAclSuccess : Fail(kAclErrorRtParamInvalid, "aclrtSetDevice: the simulator has device 0 only, got %d", device);
}

SIM_EXPORT const char* aclGetRecentErrMsg() { return t_error.empty() ? nullptr : t_error.c_str(); }

SIM_EXPORT aclError aclrtMalloc(void** ptr, size_t size, aclrtMemMallocPolicy) {
  if (ptr == nullptr || size == 0) return Fail(kAclErrorRtParamInvalid, "aclrtMalloc: null pointer or size 0");
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  const size_t rounded = (size + 31) / 32 * 32;  // the device allocates in 32-byte units
  char* p = DeviceArena().Allocate(rounded);
  if (p == nullptr) return Fail(kAclErrorRtMemoryAllocation, "aclrtMalloc: out of device memory (%zu bytes)", size);
  std::memset(p, 0xA5, rounded);  // device memory is not zeroed
  g_arena[p] = rounded;
  ++g_counters.mallocs;
  g_counters.live_bytes += rounded;
  *ptr = p;
  return kAclSuccess;
}

SIM_EXPORT aclError aclrtFree(void* ptr) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  auto it = g_arena.find(static_cast<char*>(ptr));
  if (it == g_arena.end()) return Fail(kAclErrorRtParamInvalid, "aclrtFree: %s", WhyNotDevice(ptr, 1).c_str());
  g_counters.live_bytes -= it->second;
  ++g_counters.frees;
  g_freed[it->first] = it->second;
  DeviceArena().Release(const_cast<char*>(it->first), it->second);
  g_arena.erase(it);
  return kAclSuccess;
}

SIM_EXPORT aclError aclrtMemset(void* dst, size_t max, int32_t value, size_t count) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (count > max) return Fail(kAclErrorRtParamInvalid, "aclrtMemset: count %zu > maxCount %zu", count, max);
  if (!IsDevice(dst, count)) return Fail(kAclErrorRtParamInvalid, "aclrtMemset: destination is %s", WhyNotDevice(dst, count).c_str());
  std::memset(dst, value, count);
  return kAclSuccess;
}

namespace {

// Checks a copy's pointers against its kind; counts it.
aclError CheckCopy(const char* fn, void* dst, size_t max, const void* src, size_t count, aclrtMemcpyKind kind) {
  if (count > max) return Fail(kAclErrorRtParamInvalid, "%s: count %zu > destMax %zu", fn, count, max);
  const bool dst_dev = kind == ACL_MEMCPY_HOST_TO_DEVICE || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
  const bool src_dev = kind == ACL_MEMCPY_DEVICE_TO_HOST || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
  if (kind < ACL_MEMCPY_HOST_TO_HOST || kind > ACL_MEMCPY_DEVICE_TO_DEVICE) return Fail(kAclErrorRtParamInvalid, "%s: bad kind %d", fn, kind);
  if (dst_dev != IsDevice(dst, count)) {
    return Fail(kAclErrorRtParamInvalid, "%s: kind %d but destination is %s", fn, kind,
                dst_dev ? WhyNotDevice(dst, count).c_str() : "device memory");
  }
  if (src_dev != IsDevice(src, count)) {
    return Fail(kAclErrorRtParamInvalid, "%s: kind %d but source is %s", fn, kind,
                src_dev ? WhyNotDevice(src, count).c_str() : "device memory");
  }
  if (kind == ACL_MEMCPY_HOST_TO_DEVICE) { ++g_counters.copies_h2d; g_counters.bytes_h2d += count; }
  if (kind == ACL_MEMCPY_DEVICE_TO_HOST) { ++g_counters.copies_d2h; g_counters.bytes_d2h += count; }
  if (kind == ACL_MEMCPY_DEVICE_TO_DEVICE) ++g_counters.copies_d2d;
  return kAclSuccess;
}

}  // namespace

SIM_EXPORT aclError aclrtMemcpy(void* dst, size_t max, const void* src, size_t count, aclrtMemcpyKind kind) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  SIM_TRY(CheckCopy("aclrtMemcpy", dst, max, src, count, kind));
  std::memcpy(dst, src, count);  // synchronous: does not wait for work queued on any stream
  return kAclSuccess;
}

SIM_EXPORT aclError aclrtMemcpyAsync(void* dst, size_t max, const void* src, size_t count, aclrtMemcpyKind kind,
                                     aclrtStream stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  auto* s = static_cast<Stream*>(stream);
  if (!g_streams.count(s)) return Fail(kAclErrorRtParamInvalid, "aclrtMemcpyAsync: stream is not a live aclrtStream");
  SIM_TRY(CheckCopy("aclrtMemcpyAsync", dst, max, src, count, kind));
  Enqueue(s, [=]() -> std::string {
    const bool dst_dev = kind == ACL_MEMCPY_HOST_TO_DEVICE || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    const bool src_dev = kind == ACL_MEMCPY_DEVICE_TO_HOST || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    if ((dst_dev && !IsDevice(dst, count)) || (src_dev && !IsDevice(src, count))) {
      return "aclrtMemcpyAsync: device memory was freed before the copy ran";
    }
    std::memcpy(dst, src, count);
    return "";
  });
  return kAclSuccess;
}

SIM_EXPORT aclError aclrtCreateStream(aclrtStream* stream) {
  return CreateLive(&g_streams, stream, "aclrtCreateStream");
}

// Work never synchronised is dropped with the stream.
SIM_EXPORT aclError aclrtDestroyStream(aclrtStream stream) {
  return DestroyLive(&g_streams, stream, "aclrtDestroyStream", "stream", [](Stream* s) {
    for (Event* e : g_events) {
      if (e->stream == s) e->stream = nullptr;  // complete from now on: the stream's work is dropped
    }
  });
}

SIM_EXPORT aclError aclrtSynchronizeStream(aclrtStream stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  Stream* s = nullptr;
  SIM_TRY(FindLive(g_streams, stream, "aclrtSynchronizeStream", "stream", &s));
  ++g_counters.syncs;
  RunUntil(s, s->queued);
  if (s->error.empty()) return kAclSuccess;
  const std::string error = std::move(s->error);
  s->error.clear();
  return Fail(kAclErrorRtAicoreException, "%s", error.c_str());
}

// ---------------------------------------------------------------------------------------------------------
// Events: stream-ordered markers. Recording marks the current end of a stream's queue; synchronising runs that
// stream up to the mark (not further); a stream waiting on an event runs the recorded stream up to the mark
// when the wait task itself runs. An event never recorded is complete: waiting on it orders nothing.

SIM_EXPORT aclError aclrtCreateEvent(aclrtEvent* event) { return CreateLive(&g_events, event, "aclrtCreateEvent"); }

SIM_EXPORT aclError aclrtDestroyEvent(aclrtEvent event) {
  return DestroyLive(&g_events, event, "aclrtDestroyEvent", "event", [](Event*) {});
}

SIM_EXPORT aclError aclrtRecordEvent(aclrtEvent event, aclrtStream stream) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  Event* e = nullptr;
  Stream* s = nullptr;
  SIM_TRY(FindLive(g_events, event, "aclrtRecordEvent", "event", &e));
  SIM_TRY(FindLive(g_streams, stream, "aclrtRecordEvent", "stream", &s));
  e->stream = s;
  e->mark = s->queued;
  return kAclSuccess;
}

SIM_EXPORT aclError aclrtSynchronizeEvent(aclrtEvent event) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  Event* e = nullptr;
  SIM_TRY(FindLive(g_events, event, "aclrtSynchronizeEvent", "event", &e));
  ++g_counters.event_syncs;
  if (e->stream == nullptr || !g_streams.count(e->stream)) return kAclSuccess;
  RunUntil(e->stream, e->mark);
  return kAclSuccess;
}

SIM_EXPORT aclError aclrtStreamWaitEvent(aclrtStream stream, aclrtEvent event) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  Stream* s = nullptr;
  Event* e = nullptr;
  SIM_TRY(FindLive(g_streams, stream, "aclrtStreamWaitEvent", "stream", &s));
  SIM_TRY(FindLive(g_events, event, "aclrtStreamWaitEvent", "event", &e));
  ++g_counters.stream_waits;
  Stream* producer = e->stream;
  const uint64_t mark = e->mark;  // the point recorded now; a later re-record does not move this wait
  if (producer == nullptr || producer == s) return kAclSuccess;
  Enqueue(s, [producer, mark]() -> std::string {
    if (g_streams.count(producer)) RunUntil(producer, mark);
    return "";
  });
  return kAclSuccess;
}

SIM_EXPORT void gdnSimGetCounters(GdnSimCounters* out) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  *out = g_counters;
}

// ---------------------------------------------------------------------------------------------------------
// Tensors (libnnopbase)

SIM_EXPORT aclTensor* aclCreateTensor(const int64_t* view_dims, uint64_t n, aclDataType dtype, const int64_t* stride,
                                      int64_t offset, aclFormat format, const int64_t* storage_dims,
                                      uint64_t storage_n, void* data) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if ((n > 0 && view_dims == nullptr) || (storage_n > 0 && storage_dims == nullptr)) {
    Fail(kAclnnErrParamNullptr, "aclCreateTensor: null dims");
    return nullptr;
  }
  if (ElementSize(dtype) == 0 || offset < 0 || n > 8) {
    Fail(kAclnnErrParamInvalid, "aclCreateTensor: bad dtype %d, offset %lld or rank %llu", dtype, (long long)offset, (unsigned long long)n);
    return nullptr;
  }
  auto* t = new aclTensor();
  t->dims.assign(view_dims, view_dims + n);
  t->storage_dims.assign(storage_dims, storage_dims + storage_n);
  t->dtype = dtype;
  t->format = format;
  t->offset = offset;
  t->data = static_cast<char*>(data);
  if (stride != nullptr) {
    t->strides.assign(stride, stride + n);
  } else {  // contiguous
    t->strides.assign(n, 1);
    for (size_t i = n; i-- > 1;) t->strides[i - 1] = t->strides[i] * t->dims[i];
  }
  for (int64_t d : t->dims) {
    if (d < 0) {
      delete t;
      Fail(kAclnnErrParamInvalid, "aclCreateTensor: negative dimension");
      return nullptr;
    }
  }
  g_tensors.insert(t);
  return t;
}

SIM_EXPORT aclnnStatus aclDestroyTensor(const aclTensor* t) {
  return DestroyLive(&g_tensors, t, "aclDestroyTensor", "aclTensor");
}

SIM_EXPORT aclIntArray* aclCreateIntArray(const int64_t* value, uint64_t size) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (value == nullptr && size > 0) return nullptr;
  auto* a = new aclIntArray{std::vector<int64_t>(value, value + size)};
  g_int_arrays.insert(a);
  return a;
}

SIM_EXPORT aclnnStatus aclDestroyIntArray(const aclIntArray* a) {
  return DestroyLive(&g_int_arrays, a, "aclDestroyIntArray", "aclIntArray");
}

// ---------------------------------------------------------------------------------------------------------
// Element-wise primitives (ops-math / ops-nn aclnn ops)

SIM_EXPORT aclnnStatus aclnnCastGetWorkspaceSize(const aclTensor* self, aclDataType dtype, aclTensor* out,
                                                 uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnCast");
  SIM_TRY(c.Tensors({{"self", self}, {"out", out}}));
  SIM_TRY(c.Dtype("self", self, {ACL_FLOAT, ACL_FLOAT16, ACL_BF16, ACL_INT32}));
  if (out->dtype != dtype) {
    return Fail(kAclnnErrParamInvalid, "%s: out has dtype %s, dtype argument is %s", c.op, DtypeName(out->dtype),
                DtypeName(dtype));
  }
  SIM_TRY(c.Dtype("out", out, {ACL_FLOAT, ACL_FLOAT16, ACL_BF16, ACL_INT32}));
  SIM_TRY(c.Shape("out", out, self->dims));
  return c.Executor(0, ElementwiseTask(*self, *out, [](float x) { return x; }), ws, ex);
}

SIM_EXPORT aclnnStatus aclnnPermuteGetWorkspaceSize(const aclTensor* self, const aclIntArray* dims, aclTensor* out,
                                                    uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnPermute");
  const char* op = c.op;
  if (dims == nullptr) return Fail(kAclnnErrParamNullptr, "%s: dims is a null pointer", op);
  SIM_TRY(c.Tensors({{"self", self}, {"out", out}}));
  if (out->dtype != self->dtype) return Fail(kAclnnErrParamInvalid, "%s: out dtype differs from self", op);
  const size_t rank = self->dims.size();
  std::vector<int64_t> perm = dims->values, want(rank);
  std::vector<bool> seen(rank, false);
  if (perm.size() != rank) return Fail(kAclnnErrParamInvalid, "%s: dims has %zu entries for rank %zu", op, perm.size(), rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t d = perm[i] < 0 ? perm[i] + static_cast<int64_t>(rank) : perm[i];
    if (d < 0 || d >= static_cast<int64_t>(rank) || seen[d]) return Fail(kAclnnErrParamInvalid, "%s: dims is not a permutation", op);
    seen[d] = true;
    perm[i] = d;
    want[i] = self->dims[d];
  }
  SIM_TRY(c.Shape("out", out, want));
  aclTensor permuted = *self;  // self seen through the permutation: same elements, out's order
  for (size_t i = 0; i < rank; ++i) {
    permuted.dims[i] = self->dims[perm[i]];
    permuted.strides[i] = self->strides[perm[i]];
  }
  return c.Executor(0, ElementwiseTask(permuted, *out, [](float x) { return x; }), ws, ex);
}

// y = x * rsqrt(mean(x^2 over gamma's dims) + eps) * gamma; rstd = that rsqrt (float32).
SIM_EXPORT aclnnStatus aclnnRmsNormGetWorkspaceSize(const aclTensor* x, const aclTensor* gamma, double eps,
                                                    const aclTensor* y, const aclTensor* rstd, uint64_t* ws,
                                                    aclOpExecutor** ex) {
  OpCheck c("aclnnRmsNorm");
  const char* op = c.op;
  SIM_TRY(c.Tensors({{"x", x}, {"gamma", gamma}, {"yOut", y}, {"rstdOut", rstd}}));
  SIM_TRY(c.Dtype("x", x, {ACL_FLOAT, ACL_FLOAT16, ACL_BF16}));
  SIM_TRY(c.Dtype("gamma", gamma, {x->dtype, ACL_FLOAT}));
  SIM_TRY(c.Dtype("yOut", y, {x->dtype}));
  SIM_TRY(c.Dtype("rstdOut", rstd, {ACL_FLOAT}));
  const size_t g_rank = gamma->dims.size(), rank = x->dims.size();
  if (g_rank == 0 || g_rank > rank || !std::equal(gamma->dims.begin(), gamma->dims.end(), x->dims.end() - g_rank)) {
    return Fail(kAclnnErrParamInvalid, "%s: gamma shape %s is not a suffix of x shape %s", op, DimsStr(gamma->dims).c_str(), DimsStr(x->dims).c_str());
  }
  SIM_TRY(c.Shape("yOut", y, x->dims));
  std::vector<int64_t> rstd_dims = x->dims;
  for (size_t i = rank - g_rank; i < rank; ++i) rstd_dims[i] = 1;
  SIM_TRY(c.Shape("rstdOut", rstd, rstd_dims));
  const aclTensor xs = *x, gs = *gamma, ys = *y, rs = *rstd;
  return c.Executor(0, [xs, gs, ys, rs, eps]() {
    const int64_t d = Numel(gs.dims), rows = Numel(xs.dims) / std::max<int64_t>(d, 1);
    for (int64_t r = 0; r < rows; ++r) {
      float sum = 0.f;
      for (int64_t i = 0; i < d; ++i) { const float v = LoadAt(xs, ElementOffset(xs, r * d + i)); sum += v * v; }
      const float inv = 1.f / std::sqrt(sum / static_cast<float>(d) + static_cast<float>(eps));
      for (int64_t i = 0; i < d; ++i) {
        const float v = LoadAt(xs, ElementOffset(xs, r * d + i)) * inv * LoadAt(gs, ElementOffset(gs, i));
        StoreAt(ys, ElementOffset(ys, r * d + i), v);
      }
      StoreAt(rs, ElementOffset(rs, r), inv);
    }
    return std::string();
  }, ws, ex);
}

// ---------------------------------------------------------------------------------------------------------
// Gated delta rule (ops-transformer attention/chunk_gated_delta_rule, attention/recurrent_gated_delta_rule)

namespace {

struct GdrTensors {
  aclTensor q, k, v, beta, g, state_in, state_out, seqlens, out;
  bool has_g = false;
  aclTensor ssm, accepted;  // recurrent only
};

// Element (a, b, c) of a rank-3 view (rank-2: c ignored) as float.
inline float At3(const aclTensor& t, int64_t a, int64_t b, int64_t c = 0) {
  const int64_t off = t.offset + a * t.strides[0] + b * t.strides[1] + (t.dims.size() > 2 ? c * t.strides[2] : 0);
  return LoadAt(t, off * static_cast<int64_t>(ElementSize(t.dtype)));
}
inline int64_t Off4(const aclTensor& t, int64_t a, int64_t b, int64_t c, int64_t d) {
  return (t.offset + a * t.strides[0] + b * t.strides[1] + c * t.strides[2] + d * t.strides[3]) *
         static_cast<int64_t>(ElementSize(t.dtype));
}

// One sequence of one value head: S (Dv x Dk, float32) runs over tokens [t0, t0+len); after token i the
// state is handed to `keep(i, S)`. S_t = a S + b (v - a S k) k^T, o_t = S_t (scale q_t), a = exp(g_t).
template <typename Keep>
void RunHead(const GdrTensors& x, int64_t h, int64_t hk, int64_t t0, int64_t len, float scale, std::vector<float>& S,
             Keep keep) {
  const int64_t Dk = x.q.dims[2], Dv = x.v.dims[2];
  std::vector<float> q(Dk), k(Dk), sk(Dv);
  for (int64_t i = 0; i < len; ++i) {
    const int64_t t = t0 + i;
    for (int64_t j = 0; j < Dk; ++j) { q[j] = At3(x.q, t, hk, j); k[j] = At3(x.k, t, hk, j); }
    const float a = x.has_g ? std::exp(At3(x.g, t, h)) : 1.f;
    const float b = At3(x.beta, t, h);
    for (int64_t r = 0; r < Dv; ++r) {
      float acc = 0.f;
      for (int64_t j = 0; j < Dk; ++j) acc += S[r * Dk + j] * k[j];
      sk[r] = a * acc;
    }
    for (int64_t r = 0; r < Dv; ++r) {
      const float u = b * (At3(x.v, t, h, r) - sk[r]);
      float o = 0.f;
      for (int64_t j = 0; j < Dk; ++j) {
        S[r * Dk + j] = a * S[r * Dk + j] + u * k[j];
        o += S[r * Dk + j] * q[j];
      }
      StoreAt(x.out, (x.out.offset + t * x.out.strides[0] + h * x.out.strides[1] + r * x.out.strides[2]) * 2, o * scale);
    }
    keep(i, S);
  }
}

void LoadState(const aclTensor& st, int64_t slot, int64_t h, std::vector<float>& S) {
  const int64_t Dv = st.dims[2], Dk = st.dims[3];
  for (int64_t r = 0; r < Dv; ++r)
    for (int64_t j = 0; j < Dk; ++j) S[r * Dk + j] = LoadAt(st, Off4(st, slot, h, r, j));
}

void StoreState(const aclTensor& st, int64_t slot, int64_t h, const std::vector<float>& S) {
  const int64_t Dv = st.dims[2], Dk = st.dims[3];
  for (int64_t r = 0; r < Dv; ++r)
    for (int64_t j = 0; j < Dk; ++j) StoreAt(st, Off4(st, slot, h, r, j), S[r * Dk + j]);
}

// Sequence lengths from device memory (read when the task runs); checks that they sum to T.
std::string SeqStarts(const aclTensor& seqlens, int64_t T, int64_t max_len, const char* op, std::vector<int64_t>* starts) {
  int64_t total = 0;
  for (int64_t b = 0; b < seqlens.dims[0]; ++b) {
    const int32_t len = LoadInt32(seqlens, b);
    if (len < 0 || (max_len > 0 && len > max_len)) {
      return std::string(op) + ": actualSeqLengths[" + std::to_string(b) + "] = " + std::to_string(len) +
             (max_len > 0 ? " is outside [0, " + std::to_string(max_len) + "]" : " is negative");
    }
    starts->push_back(total);
    total += len;
  }
  starts->push_back(total);
  if (total != T) return std::string(op) + ": actualSeqLengths sum to " + std::to_string(total) + ", T is " + std::to_string(T);
  return "";
}

// The token tensors of both gated-delta ops against query (T, Nk, Dk) and value (T, Nv, Dv): key, value, beta and g.
int CheckTokenShapes(const OpCheck& c, const aclTensor* query, const aclTensor* key, const aclTensor* value,
                     const aclTensor* beta, const aclTensor* g, const char* g_name, int code) {
  const int64_t T = query->dims[0], Nk = query->dims[1], Dk = query->dims[2], Nv = value->dims[1], Dv = value->dims[2];
  SIM_TRY(c.Shape("key", key, {T, Nk, Dk}, code));
  SIM_TRY(c.Shape("value", value, {T, Nv, Dv}, code));
  SIM_TRY(c.Shape("beta", beta, {T, Nv}, code));
  if (g != nullptr) SIM_TRY(c.Shape(g_name, g, {T, Nv}, code));
  return kAclnnSuccess;
}

}  // namespace

SIM_EXPORT aclnnStatus aclnnChunkGatedDeltaRuleGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* beta,
    const aclTensor* initial_state, const aclTensor* seqlens, const aclTensor* g, float scale, const aclTensor* out,
    const aclTensor* final_state, uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnChunkGatedDeltaRule");
  const char* op = c.op;
  SIM_TRY(c.Tensors({{"query", query}, {"key", key}, {"value", value}, {"beta", beta}, {"initialState", initial_state},
                     {"actualSeqLengths", seqlens}}));
  if (g != nullptr) SIM_TRY(c.Tensor("gOptional", g));
  SIM_TRY(c.Tensors({{"out", out}, {"finalState", final_state}}));
  SIM_TRY(c.Dtypes({{"query", query}, {"key", key}, {"value", value}, {"beta", beta}, {"out", out}}, {ACL_BF16}));
  SIM_TRY(c.Dtype("initialState", initial_state, {ACL_BF16, ACL_FLOAT}));  // FLOAT32: Ascend 950 only
  SIM_TRY(c.Dtype("finalState", final_state, {initial_state->dtype}));
  SIM_TRY(c.Dtype("actualSeqLengths", seqlens, {ACL_INT32}));
  if (g != nullptr) SIM_TRY(c.Dtype("gOptional", g, {ACL_FLOAT}));
  if (query->dims.size() != 3 || value->dims.size() != 3 || initial_state->dims.size() != 4 || seqlens->dims.size() != 1) {
    return Fail(kAclnnErrInnerTiling, "%s: query/key/value must be rank 3, initialState rank 4, actualSeqLengths rank 1", op);
  }
  const int64_t T = query->dims[0], Nk = query->dims[1], Dk = query->dims[2], Nv = value->dims[1], Dv = value->dims[2];
  const int64_t B = seqlens->dims[0];
  SIM_TRY(CheckTokenShapes(c, query, key, value, beta, g, "gOptional", kAclnnErrInnerTiling));
  SIM_TRY(c.Shape("initialState", initial_state, {B, Nv, Dv, Dk}, kAclnnErrInnerTiling));
  SIM_TRY(c.Shape("out", out, {T, Nv, Dv}, kAclnnErrInnerTiling));
  SIM_TRY(c.Shape("finalState", final_state, {B, Nv, Dv, Dk}, kAclnnErrInnerTiling));
  if (!(Nv > 0 && Nv <= 64 && Nk > 0 && Nk <= 64 && Nv % Nk == 0 && Dv > 0 && Dv <= 128 && Dk > 0 && Dk <= 128 && B > 0 && T > 0)) {
    return Fail(kAclnnErrInnerTiling, "%s: Nk=%lld Nv=%lld Dk=%lld Dv=%lld B=%lld T=%lld outside 0<Nk,Nv<=64, Nv%%Nk==0, 0<Dk,Dv<=128, B,T>0",
                op, (long long)Nk, (long long)Nv, (long long)Dk, (long long)Dv, (long long)B, (long long)T);
  }
  GdrTensors x{*query, *key, *value, *beta, g ? *g : aclTensor{}, *initial_state, *final_state, *seqlens, *out, g != nullptr, {}, {}};
  const uint64_t workspace = static_cast<uint64_t>(B * Nv * Dv * Dk * 4 + 16 * 1024);  // an fp32 state per head, plus tiling data
  return c.Executor(workspace, [x, scale, op]() {
    std::vector<int64_t> starts;
    std::string err = SeqStarts(x.seqlens, x.q.dims[0], 0, op, &starts);
    if (!err.empty()) return err;
    const int64_t B = x.seqlens.dims[0], Nv = x.v.dims[1], Nk = x.q.dims[1], Dv = x.v.dims[2], Dk = x.q.dims[2];
    std::vector<float> S(Dv * Dk);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < Nv; ++h) {
        LoadState(x.state_in, b, h, S);
        RunHead(x, h, h / (Nv / Nk), starts[b], starts[b + 1] - starts[b], scale, S, [](int64_t, const std::vector<float>&) {});
        StoreState(x.state_out, b, h, S);
      }
    }
    return std::string();
  }, ws, ex);
}

// Sequence b reads its state from slot ssmStateIndices[start_b + numAcceptedTokens[b] - 1] and writes the state
// after each of its tokens i to slot ssmStateIndices[start_b + i] (stateRef is updated in place).
SIM_EXPORT aclnnStatus aclnnRecurrentGatedDeltaRuleGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* beta, aclTensor* state,
    const aclTensor* seqlens, const aclTensor* ssm, const aclTensor* g, const aclTensor* gk, const aclTensor* accepted,
    float scale, aclTensor* out, uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnRecurrentGatedDeltaRule");
  const char* op = c.op;
  SIM_TRY(c.Tensors({{"query", query}, {"key", key}, {"value", value}, {"beta", beta}, {"stateRef", state},
                     {"actualSeqLengths", seqlens}, {"ssmStateIndices", ssm}, {"numAcceptedTokens", accepted},
                     {"out", out}}));
  if (g != nullptr) SIM_TRY(c.Tensor("g", g));
  if (gk != nullptr) return Fail(kAclnnErrParamInvalid, "%s: gk is reserved and must be nullptr", op);
  SIM_TRY(c.Dtypes(
      {{"query", query}, {"key", key}, {"value", value}, {"beta", beta}, {"out", out}, {"stateRef", state}},
      {ACL_BF16}));
  SIM_TRY(c.Dtypes({{"actualSeqLengths", seqlens}, {"ssmStateIndices", ssm}, {"numAcceptedTokens", accepted}},
                   {ACL_INT32}));
  if (g != nullptr) SIM_TRY(c.Dtype("g", g, {ACL_FLOAT}));
  if (query->dims.size() != 3 || value->dims.size() != 3 || state->dims.size() != 4 || seqlens->dims.size() != 1) {
    return Fail(kAclnnErrParamInvalid, "%s: query/key/value must be rank 3, stateRef rank 4, actualSeqLengths rank 1", op);
  }
  const int64_t T = query->dims[0], Nk = query->dims[1], Dk = query->dims[2], Nv = value->dims[1], Dv = value->dims[2];
  const int64_t B = seqlens->dims[0], blocks = state->dims[0];
  SIM_TRY(CheckTokenShapes(c, query, key, value, beta, g, "g", kAclnnErrParamInvalid));
  SIM_TRY(c.Shape("stateRef", state, {blocks, Nv, Dv, Dk}));
  SIM_TRY(c.Shape("ssmStateIndices", ssm, {T}));
  SIM_TRY(c.Shape("numAcceptedTokens", accepted, {B}));
  SIM_TRY(c.Shape("out", out, {T, Nv, Dv}));
  if (!(Nk > 0 && Nk <= 256 && Nv > 0 && Nv <= 256 && Nv % Nk == 0 && Dk > 0 && Dk <= 256 && Dv > 0 && Dv <= 256 && T > 0 && blocks > 0)) {
    return Fail(kAclnnErrParamInvalid, "%s: Nk=%lld Nv=%lld Dk=%lld Dv=%lld outside 0<Nk,Nv,Dk,Dv<=256, Nv%%Nk==0", op,
                (long long)Nk, (long long)Nv, (long long)Dk, (long long)Dv);
  }
  GdrTensors x{*query, *key, *value, *beta, g ? *g : aclTensor{}, *state, *state, *seqlens, *out, g != nullptr, *ssm, *accepted};
  return c.Executor(0, [x, scale, op]() {
    std::vector<int64_t> starts;
    std::string err = SeqStarts(x.seqlens, x.q.dims[0], kRecurrentMaxTokens, op, &starts);
    if (!err.empty()) return err;
    const int64_t B = x.seqlens.dims[0], Nv = x.v.dims[1], Nk = x.q.dims[1], Dv = x.v.dims[2], Dk = x.q.dims[2];
    const int64_t blocks = x.state_in.dims[0];
    std::vector<float> S(Dv * Dk);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = starts[b + 1] - starts[b];
      if (len == 0) continue;
      const int32_t acc = LoadInt32(x.accepted, b);
      if (acc < 1 || acc > len) return std::string(op) + ": numAcceptedTokens[" + std::to_string(b) + "] outside [1, seq length]";
      for (int64_t i = 0; i < len; ++i) {
        const int32_t slot = LoadInt32(x.ssm, starts[b] + i);
        if (slot < 0 || slot >= blocks) return std::string(op) + ": ssmStateIndices entry " + std::to_string(slot) + " outside the state pool";
      }
      const int64_t read_slot = LoadInt32(x.ssm, starts[b] + acc - 1);
      for (int64_t h = 0; h < Nv; ++h) {
        LoadState(x.state_in, read_slot, h, S);
        RunHead(x, h, h / (Nv / Nk), starts[b], len, scale, S, [&](int64_t i, const std::vector<float>& s) {
          StoreState(x.state_out, LoadInt32(x.ssm, starts[b] + i), h, s);
        });
      }
    }
    return std::string();
  }, ws, ex);
}

// ---------------------------------------------------------------------------------------------------------
// Scalars (libnnopbase)

SIM_EXPORT aclScalar* aclCreateScalar(void* value, aclDataType dtype) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (value == nullptr) {
    Fail(kAclnnErrParamNullptr, "aclCreateScalar: value is a null pointer");
    return nullptr;
  }
  auto* s = new aclScalar{0, dtype};
  switch (dtype) {
    case ACL_FLOAT: { float f; std::memcpy(&f, value, 4); s->value = f; break; }
    case ACL_DOUBLE: std::memcpy(&s->value, value, 8); break;
    case ACL_INT32: { int32_t i; std::memcpy(&i, value, 4); s->value = i; break; }
    case ACL_INT64: { int64_t i; std::memcpy(&i, value, 8); s->value = static_cast<double>(i); break; }
    default:
      delete s;
      Fail(kAclnnErrParamInvalid, "aclCreateScalar: dtype %s is not simulated", DtypeName(dtype));
      return nullptr;
  }
  g_scalars.insert(s);
  return s;
}

SIM_EXPORT aclnnStatus aclDestroyScalar(const aclScalar* s) {
  return DestroyLive(&g_scalars, s, "aclDestroyScalar", "aclScalar");
}

// ---------------------------------------------------------------------------------------------------------
// The layer's primitives (ops-math / ops-nn): element-wise ops, Matmul, IndexSelect, Convolution. Every one
// reads its inputs as float32 and rounds its output to the output's dtype, as the vector / cube units do.

namespace {

constexpr std::initializer_list<aclDataType> kFloatTypes = {ACL_FLOAT, ACL_FLOAT16, ACL_BF16};

// Byte offset in `t` of the element that broadcasts to element `linear` of a row-major `out_dims` array.
int64_t BroadcastOffset(const aclTensor& t, const std::vector<int64_t>& out_dims, int64_t linear) {
  int64_t off = t.offset;
  const size_t shift = out_dims.size() - t.dims.size();
  for (size_t i = out_dims.size(); i-- > 0;) {
    const int64_t idx = linear % out_dims[i];
    linear /= out_dims[i];
    if (i >= shift && t.dims[i - shift] != 1) off += idx * t.strides[i - shift];
  }
  return off * static_cast<int64_t>(ElementSize(t.dtype));
}

// The broadcast shape of a and b (numpy rules), or false.
bool BroadcastDims(const std::vector<int64_t>& a, const std::vector<int64_t>& b, std::vector<int64_t>* out) {
  const size_t n = std::max(a.size(), b.size());
  out->assign(n, 1);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1) return false;
    (*out)[i] = da == 1 ? db : da;
  }
  return true;
}

// An element-wise op's float self and its out: out has self's shape and dtype (the ops' documented constraint).
int CheckElementwise(const OpCheck& c, const aclTensor* self, const aclTensor* out) {
  SIM_TRY(c.Dtype("self", self, kFloatTypes));
  SIM_TRY(c.Dtype("out", out, {self->dtype}));
  return c.Shape("out", out, self->dims);
}

// self -> out, element-wise (aclnnSilu, aclnnSigmoid, aclnnExp, aclnnNeg).
aclnnStatus UnaryOp(const char* op, const aclTensor* self, const aclTensor* out, float (*f)(float), uint64_t* ws,
                    aclOpExecutor** ex) {
  OpCheck c(op);
  SIM_TRY(c.Tensors({{"self", self}, {"out", out}}));
  SIM_TRY(CheckElementwise(c, self, out));
  return c.Executor(0, ElementwiseTask(*self, *out, f), ws, ex);
}

// out = self (op) other * alpha, with broadcasting; out has the broadcast shape and a float dtype. Checks the
// tensors after the caller has checked its scalars (`c` holds the lock).
aclnnStatus BinaryOp(OpCheck& c, const aclTensor* self, const aclTensor* other, double alpha, const aclTensor* out,
                     bool multiply, uint64_t* ws, aclOpExecutor** ex) {
  SIM_TRY(c.Tensors({{"self", self}, {"other", other}, {"out", out}}));
  SIM_TRY(c.Dtypes({{"self", self}, {"other", other}, {"out", out}}, kFloatTypes));
  std::vector<int64_t> dims;
  if (!BroadcastDims(self->dims, other->dims, &dims)) {
    return Fail(kAclnnErrParamInvalid, "%s: self %s and other %s do not broadcast", c.op, DimsStr(self->dims).c_str(),
                DimsStr(other->dims).c_str());
  }
  SIM_TRY(c.Shape("out", out, dims));
  const aclTensor a = *self, b = *other, o = *out;
  const float scale = static_cast<float>(alpha);
  return c.Executor(0, [a, b, o, scale, multiply]() {
    const int64_t n = Numel(o.dims);
    for (int64_t i = 0; i < n; ++i) {
      const float x = LoadAt(a, BroadcastOffset(a, o.dims, i)), y = LoadAt(b, BroadcastOffset(b, o.dims, i));
      StoreAt(o, ElementOffset(o, i), multiply ? x * y : x + scale * y);
    }
    return std::string();
  }, ws, ex);
}

int CheckScalar(const char* op, const char* name, const aclScalar* s) {
  if (s == nullptr) return Fail(kAclnnErrParamNullptr, "%s: %s is a null pointer", op, name);
  if (!g_scalars.count(s)) return Fail(kAclnnErrParamInvalid, "%s: %s is not a live aclScalar", op, name);
  return kAclnnSuccess;
}

// fp32 rounded to HFLOAT32 (11 explicit mantissa bits): the cube unit's fp32 "down precision" mode.
float ToHf32(float v) {
  return gdn::bits_float((gdn::float_bits(v) + 0x800u) & ~0xFFFu);  // round to nearest on the 12 dropped bits
}

float Silu(float x) { return x / (1.f + std::exp(-x)); }
float Sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
float Exp(float x) { return std::exp(x); }
float Neg(float x) { return -x; }

}  // namespace

#define SIM_UNARY(name, fn)                                                                          \
  SIM_EXPORT aclnnStatus name##GetWorkspaceSize(const aclTensor* self, aclTensor* out, uint64_t* ws, \
                                                aclOpExecutor** ex) {                                \
    return UnaryOp(#name, self, out, fn, ws, ex);                                                    \
  }
SIM_UNARY(aclnnSilu, Silu)
SIM_UNARY(aclnnSigmoid, Sigmoid)
SIM_UNARY(aclnnExp, Exp)
SIM_UNARY(aclnnNeg, Neg)
#undef SIM_UNARY

// out = x if beta*x > threshold else log1p(exp(beta*x)) / beta (aclnnSoftplus, torch's definition).
SIM_EXPORT aclnnStatus aclnnSoftplusGetWorkspaceSize(const aclTensor* self, const aclScalar* beta,
                                                     const aclScalar* threshold, aclTensor* out, uint64_t* ws,
                                                     aclOpExecutor** ex) {
  OpCheck c("aclnnSoftplus");
  SIM_TRY(c.Tensor("self", self));
  SIM_TRY(CheckScalar(c.op, "beta", beta));
  SIM_TRY(CheckScalar(c.op, "threshold", threshold));
  SIM_TRY(c.Tensor("out", out));
  SIM_TRY(CheckElementwise(c, self, out));
  const float b = static_cast<float>(beta->value), th = static_cast<float>(threshold->value);
  auto softplus = [b, th](float x) { return b * x > th ? x : std::log1p(std::exp(b * x)) / b; };
  return c.Executor(0, ElementwiseTask(*self, *out, softplus), ws, ex);
}

SIM_EXPORT aclnnStatus aclnnMulGetWorkspaceSize(const aclTensor* self, const aclTensor* other, aclTensor* out,
                                                uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnMul");
  return BinaryOp(c, self, other, 1.0, out, true, ws, ex);
}

SIM_EXPORT aclnnStatus aclnnAddGetWorkspaceSize(const aclTensor* self, const aclTensor* other, const aclScalar* alpha,
                                                aclTensor* out, uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnAdd");
  SIM_TRY(CheckScalar(c.op, "alpha", alpha));
  return BinaryOp(c, self, other, alpha->value, out, false, ws, ex);
}

// self [..., M, K] x mat2 [K, N] or [..., K, N] (same batch dims) -> out [..., M, N]; float32 accumulation.
SIM_EXPORT aclnnStatus aclnnMatmulGetWorkspaceSize(const aclTensor* self, const aclTensor* mat2, aclTensor* out,
                                                   int8_t cube_math, uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnMatmul");
  const char* op = c.op;
  SIM_TRY(c.Tensors({{"self", self}, {"mat2", mat2}, {"out", out}}));
  SIM_TRY(c.Dtype("self", self, kFloatTypes));
  SIM_TRY(c.Dtypes({{"mat2", mat2}, {"out", out}}, {self->dtype}));
  if (cube_math < 0 || cube_math > 3) {
    return Fail(kAclnnErrParamInvalid, "%s: cubeMathType %d is not 0..3", op, cube_math);
  }
  if (cube_math == 2 && self->dtype == ACL_BF16) {
    return Fail(kAclnnErrParamInvalid, "%s: USE_FP16 with BFLOAT16 input", op);
  }
  const size_t rank = self->dims.size(), rank2 = mat2->dims.size();
  if (rank < 2 || rank > 6 || (rank2 != 2 && rank2 != rank)) {
    return Fail(kAclnnErrParamInvalid, "%s: self rank %zu, mat2 rank %zu (simulated: self 2..6, mat2 2 or self's)", op,
                rank, rank2);
  }
  const int64_t M = self->dims[rank - 2], K = self->dims[rank - 1], N = mat2->dims[rank2 - 1];
  if (mat2->dims[rank2 - 2] != K) {
    return Fail(kAclnnErrParamInvalid, "%s: mat2 has %lld rows, self has %lld columns", op,
                (long long)mat2->dims[rank2 - 2], (long long)K);
  }
  std::vector<int64_t> want_mat2 = rank2 == 2 ? std::vector<int64_t>{K, N} : self->dims;
  if (rank2 != 2) want_mat2.back() = N;
  SIM_TRY(c.Shape("mat2", mat2, want_mat2));
  std::vector<int64_t> want = self->dims;
  want.back() = N;
  SIM_TRY(c.Shape("out", out, want));
  const aclTensor a = *self, b = *mat2, o = *out;
  return c.Executor(0, [a, b, o, M, K, N]() {
    const int64_t batches = Numel(a.dims) / std::max<int64_t>(M * K, 1);
    const bool batched_b = b.dims.size() > 2;
    for (int64_t p = 0; p < batches; ++p) {
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) {
          float acc = 0.f;
          for (int64_t k = 0; k < K; ++k) {
            acc += LoadAt(a, ElementOffset(a, (p * M + m) * K + k)) *
                   LoadAt(b, ElementOffset(b, ((batched_b ? p * K : 0) + k) * N + n));
          }
          StoreAt(o, ElementOffset(o, (p * M + m) * N + n), acc);
        }
      }
    }
    return std::string();
  }, ws, ex);
}

// out = self with axis `dim` gathered at `index` (INT32 / INT64, rank 1); indices outside the axis fault the task.
SIM_EXPORT aclnnStatus aclnnIndexSelectGetWorkspaceSize(const aclTensor* self, int64_t dim, const aclTensor* index,
                                                        aclTensor* out, uint64_t* ws, aclOpExecutor** ex) {
  OpCheck c("aclnnIndexSelect");
  const char* op = c.op;
  SIM_TRY(c.Tensors({{"self", self}, {"index", index}, {"out", out}}));
  SIM_TRY(c.Dtype("self", self, {ACL_FLOAT, ACL_FLOAT16, ACL_BF16, ACL_INT32, ACL_INT64}));
  SIM_TRY(c.Dtype("index", index, {ACL_INT32, ACL_INT64}));
  SIM_TRY(c.Dtype("out", out, {self->dtype}));
  const int64_t rank = static_cast<int64_t>(self->dims.size());
  if (rank < 1 || rank > 8 || dim < -rank || dim >= rank) {
    return Fail(kAclnnErrParamInvalid, "%s: dim %lld outside [-%lld, %lld)", op, (long long)dim, (long long)rank,
                (long long)rank);
  }
  if (index->dims.size() > 1) return Fail(kAclnnErrParamInvalid, "%s: index must have rank 0 or 1", op);
  const size_t axis = static_cast<size_t>(dim < 0 ? dim + rank : dim);
  std::vector<int64_t> want = self->dims;
  want[axis] = Numel(index->dims);
  SIM_TRY(c.Shape("out", out, want));
  const aclTensor in = *self, idx = *index, o = *out;
  return c.Executor(0, [in, idx, o, axis, op]() {
    int64_t inner = 1;
    for (size_t i = axis + 1; i < in.dims.size(); ++i) inner *= in.dims[i];
    const int64_t n = Numel(o.dims), picked = o.dims[axis], size = in.dims[axis];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = (i / inner) % picked, outer = i / inner / picked;
      int64_t at = 0;
      if (idx.dtype == ACL_INT64) std::memcpy(&at, idx.data + ElementOffset(idx, j), 8);
      else at = LoadInt32(idx, j);
      if (at < 0 || at >= size) {
        return std::string(op) + ": index " + std::to_string(at) + " is outside [0, " + std::to_string(size) + ")";
      }
      const int64_t src = (outer * size + at) * inner + i % inner;
      std::memcpy(o.data + ElementOffset(o, i), in.data + ElementOffset(in, src), ElementSize(in.dtype));
    }
    return std::string();
  }, ws, ex);
}

namespace {

// One entry of a conv parameter array of length `len`, each in [lo, hi].
int ConvArray(const char* op, const char* name, const aclIntArray* a, std::initializer_list<size_t> lens, int64_t lo,
              int64_t hi) {
  if (a == nullptr) return Fail(kAclnnErrParamNullptr, "%s: %s is a null pointer", op, name);
  if (!g_int_arrays.count(a)) return Fail(kAclnnErrParamInvalid, "%s: %s is not a live aclIntArray", op, name);
  if (std::find(lens.begin(), lens.end(), a->values.size()) == lens.end()) {
    return Fail(kAclnnErrParamInvalid, "%s: %s has %zu entries", op, name, a->values.size());
  }
  for (int64_t v : a->values) {
    if (v < lo || v > hi) return Fail(kAclnnErrParamInvalid, "%s: %s value %lld outside [%lld, %lld]", op, name,
                                      (long long)v, (long long)lo, (long long)hi);
  }
  return kAclnnSuccess;
}

struct Conv1dShape {
  int64_t N, Cin, L, Cout, Kw, stride, pad, dilation, groups, Lout;
};

}  // namespace

// 1-D convolution (NCL input, weight [Cout, Cin/groups, K], bias [Cout]), float32 accumulation. The simulator
// implements the forward 1-D case only; the documented A2/A3 constraints on dtypes and cubeMathType apply.
SIM_EXPORT aclnnStatus aclnnConvolutionGetWorkspaceSize(const aclTensor* input, const aclTensor* weight,
                                                        const aclTensor* bias, const aclIntArray* stride,
                                                        const aclIntArray* padding, const aclIntArray* dilation,
                                                        bool transposed, const aclIntArray* output_padding,
                                                        const int64_t groups, aclTensor* output, int8_t cube_math,
                                                        uint64_t* ws, aclOpExecutor** ex) {
  OpCheck check("aclnnConvolution");
  const char* op = check.op;
  SIM_TRY(check.Tensor("input", input, ACL_FORMAT_NCL));
  SIM_TRY(check.Tensor("weight", weight, ACL_FORMAT_NCL));
  if (bias != nullptr) SIM_TRY(check.Tensor("bias", bias));
  SIM_TRY(check.Tensor("output", output, ACL_FORMAT_NCL));
  SIM_TRY(check.Dtype("input", input, kFloatTypes));
  SIM_TRY(check.Dtype("weight", weight, {input->dtype}));
  if (bias != nullptr) SIM_TRY(check.Dtype("bias", bias, {input->dtype}));
  SIM_TRY(check.Dtype("output", output, {input->dtype}));
  if (cube_math < 0 || cube_math > 3) {
    return Fail(kAclnnErrParamInvalid, "%s: cubeMathType %d is not 0..3", op, cube_math);
  }
  if (cube_math == 0 && input->dtype == ACL_FLOAT) {
    return Fail(kAclnnErrParamInvalid, "%s: cubeMathType KEEP_DTYPE is not supported for FLOAT input", op);
  }
  if (cube_math == 2 && input->dtype == ACL_BF16) {
    return Fail(kAclnnErrParamInvalid, "%s: USE_FP16 with BFLOAT16 input", op);
  }
  if (transposed) return Fail(kAclnnErrParamInvalid, "%s: transposed convolution is not simulated", op);
  if (input->dims.size() != 3 || weight->dims.size() != 3) {
    return Fail(kAclnnErrParamInvalid, "%s: input and weight must be rank 3 (the simulator implements conv1d)", op);
  }
  SIM_TRY(ConvArray(op, "stride", stride, {1}, 1, INT64_MAX));
  SIM_TRY(ConvArray(op, "padding", padding, {1, 2}, 0, 255));
  SIM_TRY(ConvArray(op, "dilation", dilation, {1}, 1, INT64_MAX));
  if (output_padding != nullptr) SIM_TRY(ConvArray(op, "outputPadding", output_padding, {1}, 0, INT64_MAX));
  Conv1dShape c{input->dims[0], input->dims[1], input->dims[2], weight->dims[0], weight->dims[2],
                stride->values[0], padding->values[0], dilation->values[0], groups, 0};
  if (groups < 1 || groups > 65535 || weight->dims[1] * groups != c.Cin || c.Cout % groups != 0) {
    return Fail(kAclnnErrParamInvalid, "%s: groups %lld does not fit input channels %lld and weight %s", op,
                (long long)groups, (long long)c.Cin, DimsStr(weight->dims).c_str());
  }
  if (bias != nullptr) SIM_TRY(check.Shape("bias", bias, {c.Cout}));
  const int64_t span = c.dilation * (c.Kw - 1) + 1, padded = c.L + 2 * c.pad;
  if (padded < span) return Fail(kAclnnErrParamInvalid, "%s: padded input length %lld is shorter than the kernel",
                                 op, (long long)padded);
  c.Lout = (padded - span) / c.stride + 1;
  SIM_TRY(check.Shape("output", output, {c.N, c.Cout, c.Lout}));
  const aclTensor x = *input, w = *weight, o = *output;
  const aclTensor b = bias ? *bias : aclTensor{};
  const bool has_bias = bias != nullptr, hf32 = input->dtype == ACL_FLOAT && cube_math != 0;
  return check.Executor(0, [x, w, o, b, has_bias, hf32, c]() {
    const int64_t per_group_in = c.Cin / c.groups, per_group_out = c.Cout / c.groups;
    auto in = [&](float v) { return hf32 ? ToHf32(v) : v; };
    for (int64_t n = 0; n < c.N; ++n) {
      for (int64_t co = 0; co < c.Cout; ++co) {
        const int64_t g = co / per_group_out;
        for (int64_t t = 0; t < c.Lout; ++t) {
          float acc = has_bias ? LoadAt(b, ElementOffset(b, co)) : 0.f;
          for (int64_t ci = 0; ci < per_group_in; ++ci) {
            for (int64_t k = 0; k < c.Kw; ++k) {
              const int64_t pos = t * c.stride + k * c.dilation - c.pad;
              if (pos < 0 || pos >= c.L) continue;
              const int64_t cin = g * per_group_in + ci;
              acc += in(LoadAt(x, ElementOffset(x, (n * c.Cin + cin) * c.L + pos))) *
                     in(LoadAt(w, ElementOffset(w, (co * per_group_in + ci) * c.Kw + k)));
            }
          }
          StoreAt(o, ElementOffset(o, (n * c.Cout + co) * c.Lout + t), acc);
        }
      }
    }
    return std::string();
  }, ws, ex);
}
