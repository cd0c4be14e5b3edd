// Process-wide ONNX Runtime state of the addon: the dlopen()ed library, its OrtApi and the OrtEnv.
// Shared by every JS environment (main thread and worker_threads) of the process.
#pragma once

#include <string>

#include "ort.h"

namespace gdn {

struct RuntimeInfo {
  std::string library_path;  // the ORT library actually in use
  std::string version;       // OrtGetApiBase()->GetVersionString()
};

// Loads ONNX Runtime from `library_path` (first call wins; later calls with another path are ignored and
// the path in use is reported back). Throws std::runtime_error with a readable message on failure.
RuntimeInfo LoadRuntime(const std::string& library_path, int log_severity);

// True once LoadRuntime succeeded.
bool RuntimeLoaded();

// The process-wide environment. Only valid after LoadRuntime.
Ort::Env& RuntimeEnv();

}  // namespace gdn
