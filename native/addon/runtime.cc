#include "runtime.h"

#include <dlfcn.h>

#include <mutex>
#include <stdexcept>

namespace gdn {
namespace {

std::mutex g_mutex;
bool g_loaded = false;
RuntimeInfo g_info;
// Deliberately leaked: the env must outlive every session of every JS environment, and releasing it
// from static destructors at process exit races with ORT's own teardown.
Ort::Env* g_env = nullptr;

using GetApiBaseFn = const OrtApiBase* (*)();

}  // namespace

RuntimeInfo LoadRuntime(const std::string& library_path, int log_severity) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded) return g_info;

  // RTLD_NOW surfaces missing dependencies here rather than at the first call. If onnxruntime-node already
  // loaded this very file, the loader hands back the same instance (one ORT per process).
  void* handle = dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    throw std::runtime_error("cannot load ONNX Runtime from " + library_path + ": " + (err ? err : "unknown dlopen error"));
  }
  auto get_api_base = reinterpret_cast<GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
  if (get_api_base == nullptr) {
    throw std::runtime_error(library_path + " does not export OrtGetApiBase; is it an ONNX Runtime library?");
  }
  const OrtApiBase* base = get_api_base();
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  const char* version = base->GetVersionString();
  if (api == nullptr) {
    throw std::runtime_error("ONNX Runtime " + std::string(version ? version : "?") + " at " + library_path +
                             " does not support C API version " + std::to_string(ORT_API_VERSION) +
                             " (gdn-fuse needs ONNX Runtime >= 1.24)");
  }
  Ort::InitApi(api);
  if (log_severity < ORT_LOGGING_LEVEL_VERBOSE || log_severity > ORT_LOGGING_LEVEL_FATAL) log_severity = ORT_LOGGING_LEVEL_WARNING;
  g_env = new Ort::Env(static_cast<OrtLoggingLevel>(log_severity), "gdn-fuse");
  g_info.library_path = library_path;
  g_info.version = version ? version : "";
  g_loaded = true;
  return g_info;
}

bool RuntimeLoaded() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_loaded;
}

Ort::Env& RuntimeEnv() { return *g_env; }

}  // namespace gdn
