#include "ep.h"

#include <dlfcn.h>

#include <algorithm>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ascend/sim/cann_sim.h"
#include "runtime.h"
#include "session.h"
#include "tensor.h"
#include "worker.h"

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

// ---------------------------------------------------------------------------------------------------------------
// Device-resident values for decode loops: a run whose named outputs stay on the Ascend device (IoBinding to the
// EP's memory) and whose named inputs are such values, fed back without a copy.

namespace {

// A handle JS holds: the value, shared with runs in flight (a released handle keeps them valid until they end).
using DeviceValue = std::shared_ptr<Ort::Value>;
const napi_type_tag kDeviceValueTag = {0x6764'6e2d'6675'7365ULL, 0x6173'6365'6e64'7631ULL};

Napi::Value NewHandle(Napi::Env env, DeviceValue value) {
  auto handle = Napi::External<DeviceValue>::New(env, new DeviceValue(std::move(value)),
                                                 [](Napi::Env, DeviceValue* p) { delete p; });
  handle.TypeTag(&kDeviceValueTag);
  return handle;
}

DeviceValue& HandleOf(Napi::Env env, Napi::Value v) {
  if (!v.IsExternal() || !v.As<Napi::External<DeviceValue>>().CheckTypeTag(&kDeviceValueTag)) {
    throw Napi::TypeError::New(env, "not an ascend device value");
  }
  DeviceValue& value = *v.As<Napi::External<DeviceValue>>().Data();
  if (!value) throw Napi::Error::New(env, "the ascend device value was released");
  return value;
}

Napi::Object HandleInfo(Napi::Env env, const DeviceValue& value) {
  auto info = value->GetTensorTypeAndShapeInfo();
  Napi::Object out = Napi::Object::New(env);
  const char* type = ElementTypeName(info.GetElementType());
  out.Set("type", type ? Napi::Value(Napi::String::New(env, type)) : env.Undefined());
  const std::vector<int64_t> shape = info.GetShape();
  Napi::Array dims = Napi::Array::New(env, shape.size());
  for (uint32_t i = 0; i < shape.size(); ++i) dims.Set(i, Napi::Number::New(env, static_cast<double>(shape[i])));
  out.Set("dims", dims);
  out.Set("handle", NewHandle(env, value));
  return out;
}

class BoundRunWorker : public PromiseWorker {
 public:
  BoundRunWorker(Napi::Env env, std::shared_ptr<SessionState> state) : PromiseWorker(env), state_(std::move(state)) {}
  std::vector<std::string> input_names, device_input_names, host_outputs, device_outputs;
  std::vector<Ort::Value> inputs;
  std::vector<DeviceValue> device_inputs;
  std::vector<Napi::ObjectReference> keep_alive;
  const OrtMemoryInfo* device_memory = nullptr;

 protected:
  void Work() override {
    Ort::IoBinding binding(state_->session);
    for (size_t i = 0; i < inputs.size(); ++i) binding.BindInput(input_names[i].c_str(), inputs[i]);
    for (size_t i = 0; i < device_inputs.size(); ++i) {
      binding.BindInput(device_input_names[i].c_str(), *device_inputs[i]);
    }
    Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
    for (const std::string& name : host_outputs) binding.BindOutput(name.c_str(), cpu);
    for (const std::string& name : device_outputs) binding.BindOutput(name.c_str(), device_memory);
    state_->session.Run(Ort::RunOptions{}, binding);
    const std::vector<std::string> names = binding.GetOutputNames();
    std::vector<Ort::Value> values = binding.GetOutputValues();
    for (size_t i = 0; i < names.size(); ++i) results_.emplace_back(names[i], std::move(values[i]));
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object host = Napi::Object::New(env), device = Napi::Object::New(env);
    for (auto& [name, value] : results_) {
      const bool on_device = std::find(device_outputs.begin(), device_outputs.end(), name) != device_outputs.end();
      if (on_device) {
        device.Set(name, HandleInfo(env, std::make_shared<Ort::Value>(std::move(value))));
      } else {
        host.Set(name, ValueToJs(env, name, value));
      }
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("host", host);
    out.Set("device", device);
    return out;
  }

 private:
  std::shared_ptr<SessionState> state_;
  std::vector<std::pair<std::string, Ort::Value>> results_;
};

std::vector<std::string> Strings(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string(what) + " must be an array of names");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(a.Get(i).ToString().Utf8Value());
  return out;
}

}  // namespace

Napi::Value AscendRunBound(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsObject() || !info[1].IsArray() || !info[2].IsObject()) {
    throw Napi::TypeError::New(env, "ascendRunBound(session, inputs, deviceInputs, hostOutputs, deviceOutputs)");
  }
  Session* session = Session::Unwrap(info[0].As<Napi::Object>());
  if (session == nullptr) throw Napi::TypeError::New(env, "ascendRunBound: not a session");
  auto worker = std::make_unique<BoundRunWorker>(env, session->Live(env));
  Napi::Array inputs = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < inputs.Length(); ++i) {
    Napi::Object desc = inputs.Get(i).As<Napi::Object>();
    std::string name = desc.Get("name").ToString().Utf8Value();
    worker->inputs.push_back(ValueFromJs(env, "input '" + name + "'", desc, worker->keep_alive));
    worker->input_names.push_back(std::move(name));
  }
  Napi::Object device_inputs = info[2].As<Napi::Object>();
  Napi::Array keys = device_inputs.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); ++i) {
    const std::string name = keys.Get(i).ToString().Utf8Value();
    worker->device_inputs.push_back(HandleOf(env, device_inputs.Get(name)));
    worker->device_input_names.push_back(name);
  }
  worker->host_outputs = Strings(env, info[3], "hostOutputs");
  worker->device_outputs = Strings(env, info[4], "deviceOutputs");
  worker->device_memory = Ort::GetApi().EpDevice_MemoryInfo(FindAscendDevice(env), OrtDeviceMemoryType_DEFAULT);
  Napi::Promise promise = worker->Promise();
  worker.release()->Queue();  // AsyncWorker deletes itself after settling
  return promise;
}

Napi::Value AscendDeviceRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsString()) throw Napi::TypeError::New(env, "ascendDeviceRead(handle, name)");
  const DeviceValue value = HandleOf(env, info[0]);
  auto type_shape = value->GetTensorTypeAndShapeInfo();
  Ort::AllocatorWithDefaultOptions cpu;
  const std::vector<int64_t> shape = type_shape.GetShape();
  Ort::Value host = Ort::Value::CreateTensor(cpu, shape.data(), shape.size(), type_shape.GetElementType());
  const OrtValue* src = *value;
  OrtValue* dst = host;
  ThrowOrt(env, Ort::GetApi().CopyTensors(RuntimeEnv(), &src, &dst, nullptr, 1), "copying an ascend device value");
  return ValueToJs(env, info[1].ToString().Utf8Value(), host);
}

Napi::Value AscendDeviceRelease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HandleOf(env, info[0]).reset();  // runs in flight keep their own reference
  return env.Undefined();
}

}  // namespace gdn
