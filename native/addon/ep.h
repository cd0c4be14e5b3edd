// The Ascend plugin EP hooks of the addon: registering the EP library with ORT's environment, appending
// it to a session, and reading its placement/copy statistics.
#pragma once

#include <napi.h>

#include "ort.h"

namespace gdn {

// cfg.ascend = { library, cann: "sim" | "real", simLibrary?, deviceId?, statsId, strict?, testFault? }: registers the EP
// library once per process and appends its device to `so` (gdn_ascend.* config entries carry the options).
void AppendAscendEp(Napi::Env env, Ort::SessionOptions& so, Napi::Object ascend);

// ascendStats(library, statsId) -> JSON string (GdnAscendStatsJson of the loaded EP library).
Napi::Value AscendStats(const Napi::CallbackInfo& info);

// ascendSimCounters(simLibrary) -> the CANN simulator's process-wide counters (gdnSimGetCounters) as an object.
Napi::Value AscendSimCounters(const Napi::CallbackInfo& info);

// Decode loops with device-resident values (src/runtime/ascend.ts, AscendDeviceLoop):
//   ascendRunBound(session, inputs, { inputName: handle }, hostOutputs, deviceOutputs)
//     -> Promise<{ host: { name: descriptor }, device: { name: { handle, type, dims } } }>
//   ascendDeviceRead(handle, name) -> descriptor (a D2H copy);  ascendDeviceRelease(handle)
Napi::Value AscendRunBound(const Napi::CallbackInfo& info);
Napi::Value AscendDeviceRead(const Napi::CallbackInfo& info);
Napi::Value AscendDeviceRelease(const Napi::CallbackInfo& info);

}  // namespace gdn
