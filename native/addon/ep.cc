#include "ep.h"

#include <dlfcn.h>

#include <mutex>
#include <string>
#include <vector>

#include "ascend/sim/cann_sim.h"
#include "runtime.h"

namespace gdn {
namespace {

constexpr const char* kRegistrationName = "gdn_ascend";
std::mutex g_mutex;
std::string g_registered;  // library path registered with the environment

std::string Str(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

void ThrowOrt(Napi::Env env, OrtStatus* st, const std::string& what) {
  if (st == nullptr) return;
  Ort::Status status(st);
  throw Napi::Error::New(env, what + ": " + status.GetErrorMessage());
}

void RegisterOnce(Napi::Env env, const std::string& library) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_registered == library) return;
  if (!g_registered.empty()) throw Napi::Error::New(env, "another Ascend EP library is registered: " + g_registered);
  ThrowOrt(env, Ort::GetApi().RegisterExecutionProviderLibrary(RuntimeEnv(), kRegistrationName, library.c_str()),
           "cannot register the Ascend EP library " + library);
  g_registered = library;
}

const OrtEpDevice* FindAscendDevice(Napi::Env env) {
  const OrtEpDevice* const* devices = nullptr;
  size_t n = 0;
  ThrowOrt(env, Ort::GetApi().GetEpDevices(RuntimeEnv(), &devices, &n), "GetEpDevices");
  for (size_t i = 0; i < n; ++i) {
    if (std::string(Ort::GetApi().EpDevice_EpName(devices[i])) == "GdnAscendExecutionProvider") return devices[i];
  }
  throw Napi::Error::New(env, "the Ascend EP library offers no device");
}

}  // namespace

void AppendAscendEp(Napi::Env env, Ort::SessionOptions& so, Napi::Object ascend) {
  const std::string library = Str(ascend, "library");
  if (library.empty()) throw Napi::TypeError::New(env, "ascend.library must be an absolute path");
  RegisterOnce(env, library);
  // JS option -> session config entry read by the EP (native/ascend/ep/ep.cc).
  const std::pair<const char*, const char*> keys[] = {{"cann", "cann"},         {"simLibrary", "sim_library"},
                                                       {"deviceId", "device_id"}, {"statsId", "stats_id"},
                                                       {"strict", "strict"},     {"testFault", "test_fault"}};
  for (const auto& [js, entry] : keys) {
    Napi::Value v = ascend.Get(js);
    if (v.IsUndefined() || v.IsNull()) continue;
    const std::string value = v.IsBoolean() ? (v.As<Napi::Boolean>().Value() ? "1" : "0") : v.ToString().Utf8Value();
    so.AddConfigEntry((std::string("gdn_ascend.") + entry).c_str(), value.c_str());
  }
  const OrtEpDevice* device = FindAscendDevice(env);
  ThrowOrt(env, Ort::GetApi().SessionOptionsAppendExecutionProvider_V2(so, RuntimeEnv(), &device, 1, nullptr, nullptr, 0),
           "cannot append the Ascend execution provider");
}

Napi::Value AscendStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "ascendStats(library, statsId)");
  const std::string library = info[0].As<Napi::String>().Utf8Value();
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_NOLOAD);  // the copy ORT loaded
  if (handle == nullptr) throw Napi::Error::New(env, "the Ascend EP library is not loaded");
  using StatsFn = size_t (*)(int, char*, size_t);
  auto fn = reinterpret_cast<StatsFn>(dlsym(handle, "GdnAscendStatsJson"));
  dlclose(handle);
  if (fn == nullptr) throw Napi::Error::New(env, "the Ascend EP library has no GdnAscendStatsJson");
  const int id = info[1].As<Napi::Number>().Int32Value();
  std::vector<char> buffer(fn(id, nullptr, 0));
  fn(id, buffer.data(), buffer.size());
  return Napi::String::New(env, buffer.data());
}

Napi::Value AscendSimCounters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "ascendSimCounters(simLibrary)");
  const std::string library = info[0].As<Napi::String>().Utf8Value();
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_NOLOAD);  // the copy the EP loaded
  if (handle == nullptr) throw Napi::Error::New(env, "the CANN simulator is not loaded");
  auto fn = reinterpret_cast<void (*)(GdnSimCounters*)>(dlsym(handle, "gdnSimGetCounters"));
  dlclose(handle);
  if (fn == nullptr) throw Napi::Error::New(env, "the CANN simulator has no gdnSimGetCounters");
  GdnSimCounters c{};
  fn(&c);
  Napi::Object out = Napi::Object::New(env);
  const std::pair<const char*, uint64_t> fields[] = {
      {"mallocs", c.mallocs},       {"frees", c.frees},           {"liveBytes", c.live_bytes},
      {"copiesH2D", c.copies_h2d},  {"copiesD2H", c.copies_d2h},  {"copiesD2D", c.copies_d2d},
      {"bytesH2D", c.bytes_h2d},    {"bytesD2H", c.bytes_d2h},    {"launches", c.launches},
      {"streamSyncs", c.syncs},     {"eventSyncs", c.event_syncs}, {"streamWaits", c.stream_waits}};
  for (const auto& [name, value] : fields) out.Set(name, Napi::Number::New(env, static_cast<double>(value)));
  return out;
}

}  // namespace gdn
