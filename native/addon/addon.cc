// Entry point of gdn_addon.node. Exports:
//   init(ortLibraryPath: string, logSeverity: number) -> { libraryPath, version, apiVersion }
//   createSession(model: string | Uint8Array, options: object) -> Promise<Session>
//   Session (class; instances come from createSession only)
#include "addon.h"

#include "ep.h"
#include "session.h"

namespace gdn {
namespace {

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "init(ortLibraryPath, logSeverity)");
  const int severity = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 2;
  RuntimeInfo ri = LoadRuntime(info[0].As<Napi::String>().Utf8Value(), severity);
  Napi::Object out = Napi::Object::New(env);
  out.Set("libraryPath", ri.library_path);
  out.Set("version", ri.version);
  out.Set("apiVersion", Napi::Number::New(env, ORT_API_VERSION));
  return out;
}

}  // namespace

Napi::Object ModuleInit(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  Napi::Function ctor = Session::Define(env);
  data->session_ctor = Napi::Persistent(ctor);
  env.SetInstanceData<AddonData>(data);
  exports.Set("Session", ctor);
  exports.Set("init", Napi::Function::New<Init>(env, "init"));
  exports.Set("createSession", Napi::Function::New<Session::Create>(env, "createSession"));
  exports.Set("ascendStats", Napi::Function::New<AscendStats>(env, "ascendStats"));
  exports.Set("ascendSimCounters", Napi::Function::New<AscendSimCounters>(env, "ascendSimCounters"));
  exports.Set("ascendRunBound", Napi::Function::New<AscendRunBound>(env, "ascendRunBound"));
  exports.Set("ascendDeviceRead", Napi::Function::New<AscendDeviceRead>(env, "ascendDeviceRead"));
  exports.Set("ascendDeviceRelease", Napi::Function::New<AscendDeviceRelease>(env, "ascendDeviceRelease"));
  return exports;
}

AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace gdn

static Napi::Object GdnAddonInit(Napi::Env env, Napi::Object exports) { return gdn::ModuleInit(env, exports); }

NODE_API_MODULE(gdn_addon, GdnAddonInit)
