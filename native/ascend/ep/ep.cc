// Entry points, factory, EP, allocator and data transfer of the gdn Ascend plugin EP library.
// ORT loads it with RegisterExecutionProviderLibrary; native/addon/ep.cc appends it to a session with the
// session config entries gdn_ascend.* (cann = sim|real, sim_library, device_id, stats_id, strict, test_fault).
#include "ascend/ep/ep.h"

#include <cstring>

#include "ascend/ep/device_ops.h"
#include "ascend/ep/stream.h"
#include "common/gdn_contract.h"

namespace gdn_ascend {
namespace {

const OrtApi* g_ort = nullptr;
std::mutex g_stats_mutex;
std::map<int, PlacementStats> g_stats;  // by stats_id
thread_local int g_running_stats_id = 0;  // the session whose Run is on this thread (0: none)

OrtStatus* Error(const std::string& message) { return g_ort->CreateStatus(ORT_EP_FAIL, message.c_str()); }

std::string ConfigEntry(const OrtSessionOptions* so, const char* key) {
  Ort::ConstSessionOptions options(so);
  return options.HasConfigEntry(key) ? options.GetConfigEntry(key) : std::string();
}

// ------------------------------------------------------------------------------------------------- allocator

// aclrtMalloc / aclrtFree. A block ORT allocates on a session stream (AllocOnStream) may still be used by work
// queued on that stream when ORT frees it: it is freed after the stream's next synchronisation.
struct DeviceAllocator : OrtAllocator {
  explicit DeviceAllocator(const OrtMemoryInfo* info) : OrtAllocator{}, info_(info) {
    version = ORT_API_VERSION;
    Alloc = AllocImpl;
    Free = FreeImpl;
    Info = InfoImpl;
    Reserve = AllocImpl;
    AllocOnStream = AllocOnStreamImpl;
  }
  static void* ORT_API_CALL AllocImpl(OrtAllocator*, size_t size) noexcept {
    const cann::Table* t = cann::Loaded();
    void* p = nullptr;
    if (t == nullptr || t->aclrtMalloc(&p, size == 0 ? 1 : size, ACL_MEM_MALLOC_HUGE_FIRST) != 0) return nullptr;
    return p;
  }
  static void* ORT_API_CALL AllocOnStreamImpl(OrtAllocator* self, size_t size, OrtSyncStream* ort_stream) noexcept {
    void* p = AllocImpl(self, size);
    Stream* stream = Stream::FromOrt(ort_stream);
    if (p == nullptr || stream == nullptr) return p;
    auto* a = static_cast<DeviceAllocator*>(self);
    std::lock_guard<std::mutex> lock(a->mutex_);
    a->on_stream_[p] = stream;
    return p;
  }
  static void ORT_API_CALL FreeImpl(OrtAllocator* self, void* p) noexcept {
    const cann::Table* t = cann::Loaded();
    if (t == nullptr || p == nullptr) return;
    auto* a = static_cast<DeviceAllocator*>(self);
    Stream* stream = nullptr;
    {
      std::lock_guard<std::mutex> lock(a->mutex_);
      if (auto it = a->on_stream_.find(p); it != a->on_stream_.end()) {
        stream = it->second;
        a->on_stream_.erase(it);
      }
    }
    if (stream == nullptr || !Stream::FreeAfterSyncIfLive(stream, p)) t->aclrtFree(p);
  }
  static const OrtMemoryInfo* ORT_API_CALL InfoImpl(const OrtAllocator* self) noexcept {
    return static_cast<const DeviceAllocator*>(self)->info_;
  }
  const OrtMemoryInfo* info_;
  std::mutex mutex_;
  std::map<void*, Stream*> on_stream_;  // blocks allocated on a stream, until freed
};

// ------------------------------------------------------------------------------------------- data transfer

struct DataTransfer : OrtDataTransferImpl {
  explicit DataTransfer(const OrtMemoryDevice* device) : OrtDataTransferImpl{}, device_(device) {
    ort_version_supported = ORT_API_VERSION;
    Release = [](OrtDataTransferImpl*) noexcept {};  // owned by the factory
    CanCopy = CanCopyImpl;
    CopyTensors = CopyTensorsImpl;
  }

  bool Ours(const OrtMemoryDevice* d) const { return Ort::GetEpApi().MemoryDevice_AreEqual(d, device_); }
  static bool IsCpu(const OrtMemoryDevice* d) {
    return Ort::GetEpApi().MemoryDevice_GetDeviceType(d) == OrtMemoryInfoDeviceType_CPU;
  }

  static bool ORT_API_CALL CanCopyImpl(const OrtDataTransferImpl* self, const OrtMemoryDevice* src,
                                       const OrtMemoryDevice* dst) noexcept {
    auto* dt = static_cast<const DataTransfer*>(self);
    return (dt->Ours(src) && (dt->Ours(dst) || IsCpu(dst))) || (dt->Ours(dst) && IsCpu(src));
  }

  // Each copy goes on the stream ORT gives it (the session's stream of the node that produces or consumes the
  // tensor), or on the transfer's own stream when ORT gives none. H2D sources are staged (ORT may reuse them once
  // the copy is enqueued); a stream that took a D2H copy is synchronised before returning, since the host reads
  // the result next (graph outputs); the transfer's own stream is always synchronised.
  static OrtStatus* ORT_API_CALL CopyTensorsImpl(OrtDataTransferImpl* self, const OrtValue** src, OrtValue** dst,
                                                 OrtSyncStream** streams, size_t n) noexcept {
    auto* dt = static_cast<DataTransfer*>(self);
    const cann::Table* t = cann::Loaded();
    if (t == nullptr) return Error("Ascend data transfer: CANN is not loaded");
    std::lock_guard<std::mutex> lock(dt->mutex_);
    if (dt->stream_ == nullptr && t->aclrtCreateStream(&dt->stream_) != 0) return Error("aclrtCreateStream failed");
    std::vector<Stream*> to_sync;
    bool own_stream_used = false;
    for (size_t i = 0; i < n; ++i) {
      Stream* stream = Stream::FromOrt(streams ? streams[i] : nullptr);
      aclrtMemcpyKind kind = ACL_MEMCPY_HOST_TO_HOST;
      if (OrtStatus* st = dt->CopyOne(*t, src[i], dst[i], stream, &kind)) return st;
      if (stream == nullptr) {
        own_stream_used = true;
      } else if (kind == ACL_MEMCPY_DEVICE_TO_HOST) {
        to_sync.push_back(stream);
      }
    }
    for (Stream* s : to_sync) {
      if (OrtStatus* st = s->Synchronize()) return st;
    }
    if (own_stream_used) {
      if (const int rc = t->aclrtSynchronizeStream(dt->stream_)) {
        return Error("aclrtSynchronizeStream failed with CANN error " + std::to_string(rc));
      }
    }
    return nullptr;
  }

  OrtStatus* CopyOne(const cann::Table& t, const OrtValue* src, OrtValue* dst, Stream* stream,
                     aclrtMemcpyKind* kind) const {
    const void* s = nullptr;
    void* d = nullptr;
    size_t bytes = 0;
    if (OrtStatus* st = g_ort->GetTensorData(src, &s)) return st;
    if (OrtStatus* st = g_ort->GetTensorMutableData(dst, &d)) return st;
    if (OrtStatus* st = g_ort->GetTensorSizeInBytes(src, &bytes)) return st;
    if (bytes == 0) return nullptr;
    const bool from_device = Ours(Ort::GetEpApi().Value_GetMemoryDevice(src));
    const bool to_device = Ours(Ort::GetEpApi().Value_GetMemoryDevice(dst));
    *kind = from_device ? (to_device ? ACL_MEMCPY_DEVICE_TO_DEVICE : ACL_MEMCPY_DEVICE_TO_HOST)
                        : (to_device ? ACL_MEMCPY_HOST_TO_DEVICE : ACL_MEMCPY_HOST_TO_HOST);
    if (stream != nullptr) stream->MarkWork();
    if (stream != nullptr && *kind == ACL_MEMCPY_HOST_TO_DEVICE) s = stream->StageHost(s, bytes);
    if (const int rc = t.aclrtMemcpyAsync(d, bytes, s, bytes, *kind, stream ? stream->handle() : stream_)) {
      return Error("aclrtMemcpyAsync failed with CANN error " + std::to_string(rc));
    }
    // A copy ORT makes without a stream (graph inputs and outputs of a graph wholly on the device) belongs to
    // the session whose run is on this thread (OnRunStart / OnRunEnd), if any.
    const int session = stream ? stream->stats_id() : g_running_stats_id;
    (session != 0 ? SessionCopies(session) : UnattributedCopies()).Count(*kind, bytes);
    return nullptr;
  }

  const OrtMemoryDevice* device_;
  std::mutex mutex_;
  aclrtStream stream_ = nullptr;
};

// -------------------------------------------------------------------------------------------------- placement

std::string OpKey(const Ort::ConstNode& node) {
  const std::string domain = node.GetDomain();
  return domain.empty() || domain == "ai.onnx" ? node.GetOperatorType() : domain + "." + node.GetOperatorType();
}

OrtStatus* ORT_API_CALL GetCapabilityImpl(OrtEp* self, const OrtGraph* graph, OrtEpGraphSupportInfo* info) noexcept {
  try {
    auto* ep = static_cast<Ep*>(self);
    PlacementStats stats;
    std::string strict_failure;  // the first node with a device kernel left on the CPU (strict placement)
    for (const Ort::ConstNode& node : Ort::ConstGraph(graph).GetNodes()) {
      const std::string key = OpKey(node);
      std::string reason =
          ep->fault == Fault::kDeclineAll ? std::string("declined (test fault decline_all)") : DeviceDeclineReason(node);
      const OrtKernelDef* def = nullptr;
      if (reason.empty()) Ort::ThrowOnError(Ort::GetEpApi().EpGraphSupportInfo_LookUpKernel(info, node, &def));
      if (reason.empty() && def == nullptr) reason = "no Ascend kernel matches the node (opset or element types)";
      if (reason.empty()) {
        Ort::ThrowOnError(Ort::GetEpApi().EpGraphSupportInfo_AddSingleNode(info, node));
        ++stats.on_device[key];
        continue;
      }
      stats.fallback_reasons.push_back(key + " node '" + node.GetName() + "': " + reason);
      ++stats.on_cpu[key];
      if (ep->strict && strict_failure.empty() && HasDeviceKernel(node)) strict_failure = stats.fallback_reasons.back();
    }
    // ORT only logs a GetCapability error; the session fails in OnSessionInitializationEnd instead.
    ep->strict_failure = strict_failure;
    std::lock_guard<std::mutex> lock(g_stats_mutex);
    g_stats[ep->stats_id] = std::move(stats);  // the last call describes the final graph
    return nullptr;
  } catch (const std::exception& e) {
    return Error(std::string("GdnAscend GetCapability: ") + e.what());
  }
}

// ---------------------------------------------------------------------------------------------------- factory

struct Factory : OrtEpFactory {
  Factory() : OrtEpFactory{} {
    ort_version_supported = ORT_API_VERSION;
    GetName = [](const OrtEpFactory*) noexcept { return kEpName; };
    GetVendor = [](const OrtEpFactory*) noexcept { return "gdn-fuse"; };
    GetVendorId = [](const OrtEpFactory*) noexcept { return kHuaweiVendorId; };
    GetVersion = [](const OrtEpFactory*) noexcept { return "0.1.0"; };
    GetSupportedDevices = GetSupportedDevicesImpl;
    CreateEp = CreateEpImpl;
    ReleaseEp = [](OrtEpFactory*, OrtEp* ep) noexcept { delete static_cast<Ep*>(ep); };
    CreateAllocator = CreateAllocatorImpl;
    ReleaseAllocator = [](OrtEpFactory*, OrtAllocator* a) noexcept { delete static_cast<DeviceAllocator*>(a); };
    CreateDataTransfer = [](OrtEpFactory* f, OrtDataTransferImpl** out) noexcept -> OrtStatus* {
      *out = static_cast<Factory*>(f)->transfer.get();
      return nullptr;
    };
    IsStreamAware = [](const OrtEpFactory*) noexcept { return true; };
    // A stream not tied to a session (CreateSyncStreamForEpDevice); sessions get theirs from the EP.
    CreateSyncStreamForDevice = [](OrtEpFactory*, const OrtMemoryDevice*, const OrtKeyValuePairs*,
                                   OrtSyncStreamImpl** out) noexcept -> OrtStatus* {
      return CreateStream(cann::Loaded(), 0, Fault::kNone, out);
    };
    Ort::ThrowOnError(g_ort->CreateMemoryInfo_V2("GdnAscend", OrtMemoryInfoDeviceType_NPU, kHuaweiVendorId, 0,
                                                 OrtDeviceMemoryType_DEFAULT, 0, OrtDeviceAllocator, &memory_info));
    transfer = std::make_unique<DataTransfer>(Ort::GetEpApi().MemoryInfo_GetMemoryDevice(memory_info));
  }
  ~Factory() {
    if (registry) Ort::GetEpApi().ReleaseKernelRegistry(registry);
    if (hardware) Ort::GetEpApi().ReleaseHardwareDevice(hardware);
    g_ort->ReleaseMemoryInfo(memory_info);
  }

  // ORT does not discover Ascend NPUs: the factory offers one NPU device of its own.
  static OrtStatus* ORT_API_CALL GetSupportedDevicesImpl(OrtEpFactory* self, const OrtHardwareDevice* const*, size_t,
                                                         OrtEpDevice** out, size_t max, size_t* n) noexcept {
    auto* f = static_cast<Factory*>(self);
    *n = 0;
    if (max == 0) return nullptr;
    const OrtEpApi& api = Ort::GetEpApi();
    if (f->hardware == nullptr) {
      if (OrtStatus* st = api.CreateHardwareDevice(OrtHardwareDeviceType_NPU, kHuaweiVendorId, 0, "Huawei", nullptr, &f->hardware)) return st;
    }
    OrtEpDevice* device = nullptr;
    if (OrtStatus* st = api.CreateEpDevice(self, f->hardware, nullptr, nullptr, &device)) return st;
    if (OrtStatus* st = api.EpDevice_AddAllocatorInfo(device, f->memory_info)) return st;
    out[(*n)++] = device;
    return nullptr;
  }

  static OrtStatus* ORT_API_CALL CreateEpImpl(OrtEpFactory* self, const OrtHardwareDevice* const*, const OrtKeyValuePairs* const*,
                                              size_t, const OrtSessionOptions* so, const OrtLogger*, OrtEp** out) noexcept {
    *out = nullptr;
    try {
      cann::LoadRequest request;
      if (ConfigEntry(so, "gdn_ascend.cann") == "sim") {
        request.source = cann::Source::kSimulator;
        request.simulator_library = ConfigEntry(so, "gdn_ascend.sim_library");
      }
      std::string error;
      const cann::Table* table = cann::Load(request, &error);
      if (table == nullptr) return Error(error);
      const std::string device = ConfigEntry(so, "gdn_ascend.device_id");
      if (const int rc = table->aclrtSetDevice(device.empty() ? 0 : std::stoi(device))) {
        return Error("aclrtSetDevice(" + device + ") failed with CANN error " + std::to_string(rc));
      }
      auto ep = std::make_unique<Ep>();
      ep->ort_version_supported = ORT_API_VERSION;
      ep->GetName = [](const OrtEp*) noexcept { return kEpName; };
      ep->GetCapability = GetCapabilityImpl;
      ep->OnSessionInitializationEnd = [](OrtEp* e) noexcept -> OrtStatus* {
        const std::string& failure = static_cast<Ep*>(e)->strict_failure;
        return failure.empty() ? nullptr : Error("strict placement: " + failure + " (it would run on the CPU)");
      };
      ep->GetKernelRegistry = [](OrtEp* e, const OrtKernelRegistry** r) noexcept -> OrtStatus* {
        *r = *static_cast<Ep*>(e)->registry;
        return nullptr;
      };
      // A run's copies without a stream (its graph inputs and outputs) are counted for the session running.
      ep->OnRunStart = [](OrtEp* e, const OrtRunOptions*) noexcept -> OrtStatus* {
        g_running_stats_id = static_cast<Ep*>(e)->stats_id;
        return nullptr;
      };
      ep->OnRunEnd = [](OrtEp*, const OrtRunOptions*, bool) noexcept -> OrtStatus* {
        g_running_stats_id = 0;
        return nullptr;
      };
      // The session's streams: they carry its copy counters and test fault.
      ep->CreateSyncStreamForDevice = [](OrtEp* e, const OrtMemoryDevice*, OrtSyncStreamImpl** out) noexcept {
        auto* self = static_cast<Ep*>(e);
        return CreateStream(self->cann, self->stats_id, self->fault, out);
      };
      ep->registry = &static_cast<Factory*>(self)->registry;
      ep->cann = table;
      if (const int rc = table->aclrtCreateStream(&ep->stream)) return Error("aclrtCreateStream failed with CANN error " + std::to_string(rc));
      const std::string fault = ConfigEntry(so, "gdn_ascend.test_fault");
      ep->fault = fault == "skip_sync"      ? Fault::kSkipSync
                  : fault == "host_pointer" ? Fault::kHostPointer
                  : fault == "decline_all"  ? Fault::kDeclineAll
                                            : Fault::kNone;
      ep->strict = ConfigEntry(so, "gdn_ascend.strict") == "1";
      const std::string id = ConfigEntry(so, "gdn_ascend.stats_id");
      ep->stats_id = id.empty() ? 0 : std::stoi(id);
      auto* f = static_cast<Factory*>(self);
      std::lock_guard<std::mutex> lock(f->mutex);
      if (f->registry == nullptr) {
        if (OrtStatus* st = CreateKernelRegistry(&f->registry)) return st;
      }
      *out = ep.release();
      return nullptr;
    } catch (const std::exception& e) {
      return Error(e.what());
    }
  }

  static OrtStatus* ORT_API_CALL CreateAllocatorImpl(OrtEpFactory* self, const OrtMemoryInfo* info, const OrtKeyValuePairs*,
                                                     OrtAllocator** out) noexcept {
    auto* f = static_cast<Factory*>(self);
    if (info != f->memory_info) return Error("GdnAscend: unknown memory info");
    *out = new DeviceAllocator(info);
    return nullptr;
  }

  OrtMemoryInfo* memory_info = nullptr;
  OrtHardwareDevice* hardware = nullptr;
  OrtKernelRegistry* registry = nullptr;
  std::unique_ptr<DataTransfer> transfer;
  std::mutex mutex;
};

void AppendCounts(std::string& json, const std::map<std::string, int>& counts) {
  json += "{";
  bool first = true;
  for (const auto& [k, v] : counts) {
    json += (first ? "\"" : ",\"") + k + "\":" + std::to_string(v);
    first = false;
  }
  json += "}";
}

std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out + "\"";
}

}  // namespace

Ep::~Ep() {
  if (stream && cann) cann->aclrtDestroyStream(stream);
  // The session is gone (ORT releases its EP last, after every run): its statistics go with it.
  {
    std::lock_guard<std::mutex> lock(g_stats_mutex);
    g_stats.erase(stats_id);
  }
  ForgetSessionCopies(stats_id);
}

}  // namespace gdn_ascend

extern "C" {

__attribute__((visibility("default"))) OrtStatus* CreateEpFactories(const char*, const OrtApiBase* base, const OrtLogger*,
                                                                    OrtEpFactory** factories, size_t max, size_t* n) {
  using namespace gdn_ascend;
  *n = 0;
  g_ort = base->GetApi(ORT_API_VERSION);
  if (g_ort == nullptr) return nullptr;  // ORT older than the API this library was built for
  Ort::InitApi(g_ort);
  if (max < 1) return g_ort->CreateStatus(ORT_INVALID_ARGUMENT, "GdnAscend: no room for the factory");
  try {
    factories[0] = new Factory();
  } catch (const std::exception& e) {
    return g_ort->CreateStatus(ORT_EP_FAIL, e.what());
  }
  *n = 1;
  return nullptr;
}

__attribute__((visibility("default"))) OrtStatus* ReleaseEpFactory(OrtEpFactory* f) {
  delete static_cast<gdn_ascend::Factory*>(f);  // NOLINT
  return nullptr;
}

// What ran where for the session with this stats id, and the copies so far, as JSON. Returns the length
// needed; writes when `size` is enough.
__attribute__((visibility("default"))) size_t GdnAscendStatsJson(int stats_id, char* buffer, size_t size) {
  using namespace gdn_ascend;
  PlacementStats p;
  {
    std::lock_guard<std::mutex> lock(g_stats_mutex);
    if (auto it = g_stats.find(stats_id); it != g_stats.end()) p = it->second;
  }
  std::string json = "{\"nodesOnDevice\":";
  AppendCounts(json, p.on_device);
  json += ",\"nodesOnCpu\":";
  AppendCounts(json, p.on_cpu);
  json += ",\"fallbackReasons\":[";
  for (size_t i = 0; i < p.fallback_reasons.size(); ++i) json += (i ? "," : "") + Quoted(p.fallback_reasons[i]);
  const CopyTotals c = SessionCopyTotals(stats_id);
  json += "],\"copiesH2D\":" + std::to_string(c.h2d) + ",\"copiesD2H\":" + std::to_string(c.d2h) +
          ",\"bytesH2D\":" + std::to_string(c.bytes_h2d) + ",\"bytesD2H\":" + std::to_string(c.bytes_d2h) + "}";
  if (json.size() < size) std::memcpy(buffer, json.c_str(), json.size() + 1);
  return json.size() + 1;
}

}  // extern "C"
