// Per-JS-environment data of the addon (one per main thread / worker_thread).
#pragma once

#include "napi_include.h"

#include "runtime.h"

namespace gdn {

struct AddonData {
  Napi::FunctionReference session_ctor;
};

AddonData& GetAddonData(Napi::Env env);
Napi::Object ModuleInit(Napi::Env env, Napi::Object exports);

}  // namespace gdn
