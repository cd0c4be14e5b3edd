// Session and run options from the normalized plain objects that src/runtime/options.ts builds.
#pragma once

#include "napi_include.h"

#include "ort.h"

namespace gdn {

// Keys: intraOpNumThreads, interOpNumThreads, graphOptimizationLevel (ORT enum value), executionMode (0|1),
// enableCpuMemArena, enableMemPattern, logId, logSeverityLevel, logVerbosityLevel, optimizedModelFilePath,
// enableProfiling, profileFilePrefix, freeDimensionOverrides ([name, value][]), configEntries ([key, value][]),
// opsLibrary (path of the gdn op library, registered with RegisterCustomOpsLibrary_V2).
Ort::SessionOptions SessionOptionsFromJs(Napi::Env env, Napi::Object cfg);

// Keys: logSeverityLevel, logVerbosityLevel, tag, configEntries ([key, value][]).
Ort::RunOptions RunOptionsFromJs(Napi::Env env, Napi::Object cfg);

}  // namespace gdn
