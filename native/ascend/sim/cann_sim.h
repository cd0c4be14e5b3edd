// Test-facing extras of the gdn-fuse CANN simulator (libgdn_cann_sim), beside the CANN symbols it exports.
#pragma once

#include <cstdint>

extern "C" {

struct GdnSimCounters {
  uint64_t mallocs, frees, live_bytes;    // device arena
  uint64_t copies_h2d, copies_d2h, copies_d2d, bytes_h2d, bytes_d2h;  // aclrtMemcpy(Async), all callers
  uint64_t launches;                      // aclnn ops executed (at stream synchronisation)
  uint64_t syncs;                         // aclrtSynchronizeStream calls
  uint64_t event_syncs;                   // aclrtSynchronizeEvent calls (a host waiting for part of a stream)
  uint64_t stream_waits;                  // aclrtStreamWaitEvent calls (a stream waiting for another, on the device)
};

// Snapshot of the simulator's counters (process-wide).
void gdnSimGetCounters(GdnSimCounters* out);

}  // extern "C"
