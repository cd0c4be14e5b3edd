// Streams of the Ascend EP (ORT's plugin-EP stream support over aclrtStream and aclrtEvent), and the per-session
// copy counters the streams carry.
//
// ORT creates one Stream per session run for the EP's device (OrtEp::CreateSyncStreamForDevice) and hands its
// aclrtStream to the kernels (KernelContext_GetGPUComputeStream) and to the data transfer. Kernels and copies only
// enqueue work; the host waits where ORT asks for it: a notification's WaitOnHost (a CPU node reads what a device
// node wrote), Flush and OnSessionRunEnd (end of run), and D2H copies of graph outputs. Device scratch memory a
// kernel used and host staging buffers of H2D copies stay alive until the stream is synchronised.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "ascend/ep/ep.h"

namespace gdn_ascend {

// Host<->device copies of one session (or, for copies ORT makes without a stream, of the process).
struct CopyCounters {
  std::atomic<uint64_t> h2d{0}, d2h{0}, bytes_h2d{0}, bytes_d2h{0};
  void Count(aclrtMemcpyKind kind, size_t bytes);
};

// The counters of the session with this stats id, until ForgetSessionCopies (when its EP is released).
CopyCounters& SessionCopies(int stats_id);
// The session's counts so far (all 0 for an unknown id), without creating its counters.
struct CopyTotals {
  uint64_t h2d = 0, d2h = 0, bytes_h2d = 0, bytes_d2h = 0;
};
CopyTotals SessionCopyTotals(int stats_id);
// Frees the session's counters: a process that creates sessions without end must not keep one per session.
void ForgetSessionCopies(int stats_id);
// Copies made without a stream, which ORT does not attribute to a session (e.g. initializers moved at creation).
CopyCounters& UnattributedCopies();

class Stream : public OrtSyncStreamImpl {
 public:
  // Creates the aclrtStream; throws DeviceError on failure.
  Stream(const cann::Table& cann, int stats_id, Fault fault);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  aclrtStream handle() const { return handle_; }
  int stats_id() const { return stats_id_; }
  const cann::Table& cann() const { return cann_; }
  Fault fault() const { return fault_; }

  // Work is about to be enqueued on this stream (kernels, copies): the next Synchronize has something to wait for.
  void MarkWork() { pending_work_ = true; }

  // Device memory freed only after the next synchronisation (work queued on this stream may still use it).
  void FreeAfterSync(void* device);
  // A copy of `bytes` host bytes that lives until the next synchronisation (the source of an async H2D copy,
  // which ORT may reuse as soon as the copy is enqueued).
  const void* StageHost(const void* host, size_t bytes);
  // aclrtSynchronizeStream, then releases what waited for it. Skipped under the test fault skip_sync.
  OrtStatus* Synchronize();

  // FreeAfterSync on `stream` if it is still alive (then true); false if it was released (its work is done).
  static bool FreeAfterSyncIfLive(Stream* stream, void* device);
  // Our stream with this aclrtStream handle, or null (kernels receive only the handle).
  static Stream* Find(void* handle);
  // Our stream behind an OrtSyncStream ORT hands the data transfer, or null.
  static Stream* FromOrt(OrtSyncStream* stream);

 private:
  void ReleaseDeferred();

  const cann::Table& cann_;
  aclrtStream handle_ = nullptr;
  int stats_id_;
  Fault fault_;
  std::atomic<bool> pending_work_{false};
  std::mutex mutex_;
  std::vector<void*> device_frees_;
  std::vector<std::vector<uint8_t>> host_staging_;
};

// The stream a kernel enqueues on: the session's stream ORT hands the kernel, or, where ORT hands none, the
// EP's own stream (session == null: the kernel synchronises it before returning).
struct KernelStream {
  aclrtStream handle = nullptr;
  Stream* session = nullptr;
};
KernelStream StreamFor(const Ep& ep, const Ort::KernelContext& context);

// An OrtSyncStreamImpl for the EP's device, for session `stats_id` (0: not a session's, e.g. a user's stream).
OrtStatus* CreateStream(const cann::Table* cann, int stats_id, Fault fault, OrtSyncStreamImpl** out);

}  // namespace gdn_ascend
