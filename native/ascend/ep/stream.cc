#include "ascend/ep/stream.h"

#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>

namespace gdn_ascend {
namespace {

std::mutex g_registry_mutex;
std::set<Stream*> g_streams;              // live streams of this library
std::map<int, CopyCounters> g_copies;     // by stats id; std::map never moves its values

OrtStatus* Error(const std::string& message) { return Ort::GetApi().CreateStatus(ORT_EP_FAIL, message.c_str()); }

OrtStatus* CannError(const cann::Table& t, const char* what, int code) {
  const char* msg = t.aclGetRecentErrMsg ? t.aclGetRecentErrMsg() : nullptr;
  const std::string detail = msg ? ": " + std::string(msg) : "";
  return Error(std::string(what) + " failed with CANN error " + std::to_string(code) + detail);
}

// One aclrtEvent: Activate records it on the producing stream; a consumer stream waits for it on the device,
// the host waits with aclrtSynchronizeEvent.
struct Notification : OrtSyncNotificationImpl {
  explicit Notification(Stream& producer) : OrtSyncNotificationImpl{}, producer_(producer) {
    ort_version_supported = ORT_API_VERSION;
    Release = [](OrtSyncNotificationImpl* self) noexcept { delete static_cast<Notification*>(self); };
    Activate = ActivateImpl;
    WaitOnDevice = WaitOnDeviceImpl;
    WaitOnHost = WaitOnHostImpl;
    if (const int rc = producer_.cann().aclrtCreateEvent(&event_)) {
      throw std::runtime_error("aclrtCreateEvent failed with CANN error " + std::to_string(rc));
    }
  }
  ~Notification() { producer_.cann().aclrtDestroyEvent(event_); }

  static OrtStatus* ORT_API_CALL ActivateImpl(OrtSyncNotificationImpl* self) noexcept {
    auto* n = static_cast<Notification*>(self);
    const cann::Table& t = n->producer_.cann();
    const int rc = t.aclrtRecordEvent(n->event_, n->producer_.handle());
    return rc ? CannError(t, "aclrtRecordEvent", rc) : nullptr;
  }

  static OrtStatus* ORT_API_CALL WaitOnDeviceImpl(OrtSyncNotificationImpl* self, OrtSyncStream* consumer) noexcept {
    auto* n = static_cast<Notification*>(self);
    if (consumer == nullptr) return nullptr;
    const cann::Table& t = n->producer_.cann();
    void* handle = Ort::GetApi().SyncStream_GetHandle(consumer);
    if (handle == n->producer_.handle()) return nullptr;  // same queue: already ordered
    const int rc = t.aclrtStreamWaitEvent(handle, n->event_);
    return rc ? CannError(t, "aclrtStreamWaitEvent", rc) : nullptr;
  }

  // A CPU node is about to read what the producer wrote.
  static OrtStatus* ORT_API_CALL WaitOnHostImpl(OrtSyncNotificationImpl* self) noexcept {
    auto* n = static_cast<Notification*>(self);
    if (n->producer_.fault() == Fault::kSkipSync) return nullptr;  // test-only: the host reads too early
    const cann::Table& t = n->producer_.cann();
    const int rc = t.aclrtSynchronizeEvent(n->event_);
    return rc ? CannError(t, "aclrtSynchronizeEvent", rc) : nullptr;
  }

  Stream& producer_;
  aclrtEvent event_ = nullptr;
};

}  // namespace

void CopyCounters::Count(aclrtMemcpyKind kind, size_t bytes) {
  if (kind == ACL_MEMCPY_HOST_TO_DEVICE) {
    ++h2d;
    bytes_h2d += bytes;
  } else if (kind == ACL_MEMCPY_DEVICE_TO_HOST) {
    ++d2h;
    bytes_d2h += bytes;
  }
}

CopyCounters& SessionCopies(int stats_id) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  return g_copies[stats_id];
}

CopyTotals SessionCopyTotals(int stats_id) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  auto it = g_copies.find(stats_id);
  if (it == g_copies.end()) return {};
  const CopyCounters& c = it->second;
  return {c.h2d.load(), c.d2h.load(), c.bytes_h2d.load(), c.bytes_d2h.load()};
}

void ForgetSessionCopies(int stats_id) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  g_copies.erase(stats_id);
}

CopyCounters& UnattributedCopies() {
  static CopyCounters counters;
  return counters;
}

Stream::Stream(const cann::Table& cann, int stats_id, Fault fault)
    : OrtSyncStreamImpl{}, cann_(cann), stats_id_(stats_id), fault_(fault) {
  ort_version_supported = ORT_API_VERSION;
  Release = [](OrtSyncStreamImpl* self) noexcept { delete static_cast<Stream*>(self); };
  GetHandle = [](OrtSyncStreamImpl* self) noexcept -> void* { return static_cast<Stream*>(self)->handle_; };
  CreateNotification = [](OrtSyncStreamImpl* self, OrtSyncNotificationImpl** out) noexcept -> OrtStatus* {
    try {
      *out = new Notification(*static_cast<Stream*>(self));
      return nullptr;
    } catch (const std::exception& e) {
      *out = nullptr;
      return Error(e.what());
    }
  };
  Flush = [](OrtSyncStreamImpl* self) noexcept { return static_cast<Stream*>(self)->Synchronize(); };
  OnSessionRunEnd = [](OrtSyncStreamImpl* self) noexcept { return static_cast<Stream*>(self)->Synchronize(); };
  if (const int rc = cann_.aclrtCreateStream(&handle_)) {
    throw std::runtime_error("aclrtCreateStream failed with CANN error " + std::to_string(rc));
  }
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  g_streams.insert(this);
}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    g_streams.erase(this);
  }
  if (fault_ != Fault::kSkipSync && pending_work_) cann_.aclrtSynchronizeStream(handle_);  // before the frees
  cann_.aclrtDestroyStream(handle_);
  ReleaseDeferred();
}

void Stream::FreeAfterSync(void* device) {
  std::lock_guard<std::mutex> lock(mutex_);
  device_frees_.push_back(device);
}

const void* Stream::StageHost(const void* host, size_t bytes) {
  std::vector<uint8_t> copy(bytes);
  std::memcpy(copy.data(), host, bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  host_staging_.push_back(std::move(copy));
  return host_staging_.back().data();  // the vector's buffer does not move with the outer vector
}

OrtStatus* Stream::Synchronize() {
  if (fault_ == Fault::kSkipSync) return nullptr;  // test-only: results are read before the work ran
  // Nothing enqueued since the last synchronisation: no need to wait (what waits for it can go all the same).
  if (pending_work_.exchange(false)) {
    if (const int rc = cann_.aclrtSynchronizeStream(handle_)) return CannError(cann_, "aclrtSynchronizeStream", rc);
  }
  ReleaseDeferred();
  return nullptr;
}

void Stream::ReleaseDeferred() {
  std::vector<void*> frees;
  std::vector<std::vector<uint8_t>> staging;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    frees.swap(device_frees_);
    staging.swap(host_staging_);
  }
  for (void* p : frees) cann_.aclrtFree(p);
}

bool Stream::FreeAfterSyncIfLive(Stream* stream, void* device) {
  std::lock_guard<std::mutex> lock(g_registry_mutex);  // the stream cannot be destroyed meanwhile
  if (!g_streams.count(stream)) return false;
  stream->FreeAfterSync(device);
  return true;
}

Stream* Stream::Find(void* handle) {
  if (handle == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  for (Stream* s : g_streams) {
    if (s->handle_ == handle) return s;
  }
  return nullptr;
}

Stream* Stream::FromOrt(OrtSyncStream* stream) {
  if (stream == nullptr) return nullptr;
  const OrtSyncStreamImpl* impl = Ort::GetEpApi().SyncStream_GetImpl(stream);
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  for (Stream* s : g_streams) {
    if (static_cast<const OrtSyncStreamImpl*>(s) == impl) return s;
  }
  return nullptr;
}

KernelStream StreamFor(const Ep& ep, const Ort::KernelContext& context) {
  Stream* session = Stream::Find(context.GetGPUComputeStream());
  if (session) session->MarkWork();
  return session ? KernelStream{session->handle(), session} : KernelStream{ep.stream, nullptr};
}

OrtStatus* CreateStream(const cann::Table* cann, int stats_id, Fault fault, OrtSyncStreamImpl** out) {
  *out = nullptr;
  if (cann == nullptr) return Error("Ascend stream: CANN is not loaded");
  try {
    *out = new Stream(*cann, stats_id, fault);
    return nullptr;
  } catch (const std::exception& e) {
    return Error(e.what());
  }
}

}  // namespace gdn_ascend
