#include "options.h"

#include <string>

#include "ep.h"

namespace gdn {
namespace {

bool Has(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

int Int(Napi::Env env, Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("option ") + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

bool Bool(Napi::Env env, Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) throw Napi::TypeError::New(env, std::string("option ") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Str(Napi::Env env, Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(env, std::string("option ") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// [[string, T], ...] -> callback(key, value)
template <typename F>
void Pairs(Napi::Env env, Napi::Object o, const char* key, F&& f) {
  if (!Has(o, key)) return;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string("option ") + key + " must be an array of pairs");
  Napi::Array arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Value p = arr.Get(i);
    if (!p.IsArray() || p.As<Napi::Array>().Length() != 2 || !p.As<Napi::Array>().Get(0u).IsString()) {
      throw Napi::TypeError::New(env, std::string("option ") + key + " must be an array of pairs");
    }
    f(p.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(), p.As<Napi::Array>().Get(1u));
  }
}

}  // namespace

Ort::SessionOptions SessionOptionsFromJs(Napi::Env env, Napi::Object cfg) {
  Ort::SessionOptions so;
  if (Has(cfg, "intraOpNumThreads")) so.SetIntraOpNumThreads(Int(env, cfg, "intraOpNumThreads"));
  if (Has(cfg, "interOpNumThreads")) so.SetInterOpNumThreads(Int(env, cfg, "interOpNumThreads"));
  if (Has(cfg, "graphOptimizationLevel")) {
    so.SetGraphOptimizationLevel(static_cast<GraphOptimizationLevel>(Int(env, cfg, "graphOptimizationLevel")));
  }
  if (Has(cfg, "executionMode")) so.SetExecutionMode(static_cast<ExecutionMode>(Int(env, cfg, "executionMode")));
  if (Has(cfg, "enableCpuMemArena")) {
    if (Bool(env, cfg, "enableCpuMemArena")) so.EnableCpuMemArena(); else so.DisableCpuMemArena();
  }
  if (Has(cfg, "enableMemPattern")) {
    if (Bool(env, cfg, "enableMemPattern")) so.EnableMemPattern(); else so.DisableMemPattern();
  }
  if (Has(cfg, "logId")) so.SetLogId(Str(env, cfg, "logId").c_str());
  if (Has(cfg, "logSeverityLevel")) so.SetLogSeverityLevel(Int(env, cfg, "logSeverityLevel"));
  if (Has(cfg, "logVerbosityLevel")) Ort::ThrowOnError(Ort::GetApi().SetSessionLogVerbosityLevel(so, Int(env, cfg, "logVerbosityLevel")));
  if (Has(cfg, "optimizedModelFilePath")) so.SetOptimizedModelFilePath(Str(env, cfg, "optimizedModelFilePath").c_str());
  if (Has(cfg, "enableProfiling") && Bool(env, cfg, "enableProfiling")) {
    so.EnableProfiling(Has(cfg, "profileFilePrefix") ? Str(env, cfg, "profileFilePrefix").c_str() : "gdn_profile");
  }
  Pairs(env, cfg, "freeDimensionOverrides", [&](const std::string& name, Napi::Value v) {
    if (!v.IsNumber()) throw Napi::TypeError::New(env, "freeDimensionOverrides values must be numbers");
    so.AddFreeDimensionOverrideByName(name.c_str(), v.As<Napi::Number>().Int64Value());
  });
  Pairs(env, cfg, "configEntries", [&](const std::string& key, Napi::Value v) {
    so.AddConfigEntry(key.c_str(), v.ToString().Utf8Value().c_str());
  });
  if (Has(cfg, "opsLibrary")) {
    const std::string lib = Str(env, cfg, "opsLibrary");
    if (OrtStatus* st = Ort::GetApi().RegisterCustomOpsLibrary_V2(so, lib.c_str())) {
      Ort::Status status(st);  // releases st
      Napi::Error err = Napi::Error::New(env, "cannot register the gdn op library " + lib + ": " + status.GetErrorMessage());
      err.Set("opsLibraryError", Napi::Boolean::New(env, true));
      throw err;
    }
  }
  if (Has(cfg, "ascend")) AppendAscendEp(env, so, cfg.Get("ascend").As<Napi::Object>());
  return so;
}

Ort::RunOptions RunOptionsFromJs(Napi::Env env, Napi::Object cfg) {
  Ort::RunOptions ro;
  if (Has(cfg, "logSeverityLevel")) ro.SetRunLogSeverityLevel(Int(env, cfg, "logSeverityLevel"));
  if (Has(cfg, "logVerbosityLevel")) ro.SetRunLogVerbosityLevel(Int(env, cfg, "logVerbosityLevel"));
  if (Has(cfg, "tag")) ro.SetRunTag(Str(env, cfg, "tag").c_str());
  Pairs(env, cfg, "configEntries", [&](const std::string& key, Napi::Value v) {
    ro.AddConfigEntry(key.c_str(), v.ToString().Utf8Value().c_str());
  });
  return ro;
}

}  // namespace gdn
