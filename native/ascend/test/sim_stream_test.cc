// Checks the CANN simulator's stream-ordered events through the device layer: an event marks a point in one
// stream's queue; synchronising it runs that stream up to the mark and no further; a stream waiting on it runs
// the recorded stream up to the mark first; an event never recorded orders nothing (stale data shows).
//   g++ -std=c++17 -I native native/ascend/test/sim_stream_test.cc native/ascend/device/cann_device.cc -ldl
//   ./a.out build/Release/gdn_cann_sim.so
#include <cstdio>
#include <string>

#include "ascend/device/cann_device.h"

namespace {

int g_failures = 0, g_checks = 0;
const cann::Table* T = nullptr;

void Check(bool ok, const char* what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL: %s\n", what);
  }
}

void* DeviceAlloc(size_t bytes) {
  void* p = nullptr;
  T->aclrtMalloc(&p, bytes, ACL_MEM_MALLOC_HUGE_FIRST);
  return p;
}

float ReadBack(const void* device) {
  float v = 0.f;
  T->aclrtMemcpy(&v, 4, device, 4, ACL_MEMCPY_DEVICE_TO_HOST);
  return v;
}

struct Fixture {
  aclrtStream s1 = nullptr, s2 = nullptr;
  aclrtEvent event = nullptr;
  void* a = DeviceAlloc(4);
  void* b = DeviceAlloc(4);
  Fixture() {
    T->aclrtCreateStream(&s1);
    T->aclrtCreateStream(&s2);
    T->aclrtCreateEvent(&event);
  }
  ~Fixture() {
    T->aclrtDestroyEvent(event);
    T->aclrtDestroyStream(s1);
    T->aclrtDestroyStream(s2);
    T->aclrtFree(a);
    T->aclrtFree(b);
  }
};

void SynchronizeEventRunsUpToTheMark() {
  Fixture f;
  const float one = 1.f, two = 2.f;
  T->aclrtMemcpyAsync(f.a, 4, &one, 4, ACL_MEMCPY_HOST_TO_DEVICE, f.s1);
  Check(T->aclrtRecordEvent(f.event, f.s1) == 0, "aclrtRecordEvent on a live stream succeeds");
  T->aclrtMemcpyAsync(f.b, 4, &two, 4, ACL_MEMCPY_HOST_TO_DEVICE, f.s1);  // after the mark
  Check(T->aclrtSynchronizeEvent(f.event) == 0, "aclrtSynchronizeEvent succeeds");
  Check(ReadBack(f.a) == 1.f, "work queued before the event ran at aclrtSynchronizeEvent");
  Check(ReadBack(f.b) != 2.f, "work queued after the event has not run (stale data)");
  T->aclrtSynchronizeStream(f.s1);
  Check(ReadBack(f.b) == 2.f, "aclrtSynchronizeStream runs the rest");
}

void UnrecordedEventOrdersNothing() {
  Fixture f;
  const float one = 1.f;
  T->aclrtMemcpyAsync(f.a, 4, &one, 4, ACL_MEMCPY_HOST_TO_DEVICE, f.s1);
  Check(T->aclrtSynchronizeEvent(f.event) == 0, "synchronising an unrecorded event returns at once");
  Check(ReadBack(f.a) != 1.f, "waiting on an unrecorded event leaves stale data");
  T->aclrtSynchronizeStream(f.s1);
}

void StreamWaitEventOrdersTwoStreams(bool record) {
  Fixture f;
  const float one = 1.f;
  T->aclrtMemcpyAsync(f.a, 4, &one, 4, ACL_MEMCPY_HOST_TO_DEVICE, f.s1);
  if (record) T->aclrtRecordEvent(f.event, f.s1);
  Check(T->aclrtStreamWaitEvent(f.s2, f.event) == 0, "aclrtStreamWaitEvent succeeds");
  T->aclrtMemcpyAsync(f.b, 4, f.a, 4, ACL_MEMCPY_DEVICE_TO_DEVICE, f.s2);  // reads what s1 writes
  T->aclrtSynchronizeStream(f.s2);
  if (record) {
    Check(ReadBack(f.b) == 1.f, "a stream waiting on a recorded event sees the producer's work");
  } else {
    Check(ReadBack(f.b) != 1.f, "a stream waiting on an unrecorded event reads stale data");
  }
  T->aclrtSynchronizeStream(f.s1);
}

void EventErrors() {
  aclrtEvent e = nullptr;
  T->aclrtCreateEvent(&e);
  T->aclrtDestroyEvent(e);
  Check(T->aclrtSynchronizeEvent(e) == cann::kAclErrorRtParamInvalid, "a destroyed event is refused");
  Check(T->aclrtCreateEvent(nullptr) == cann::kAclErrorRtParamInvalid, "aclrtCreateEvent(nullptr) is refused");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::printf("usage: sim_stream_test path/to/gdn_cann_sim.so\n");
    return 2;
  }
  std::string error;
  T = cann::Load({cann::Source::kSimulator, argv[1]}, &error);
  if (T == nullptr) {
    std::printf("cannot load the simulator: %s\n", error.c_str());
    return 1;
  }
  SynchronizeEventRunsUpToTheMark();
  UnrecordedEventOrdersNothing();
  StreamWaitEventOrdersTwoStreams(true);
  StreamWaitEventOrdersTwoStreams(false);
  EventErrors();
  std::printf("%d of %d checks passed\n", g_checks - g_failures, g_checks);
  return g_failures == 0 ? 0 : 1;
}
