// The gdn Ascend plugin execution provider (kernel-registry based, ORT plugin EP API).
#pragma once

#ifndef ORT_API_MANUAL_INIT
#define ORT_API_MANUAL_INIT
#endif
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ascend/device/cann_device.h"
#include "onnxruntime_cxx_api.h"

namespace gdn_ascend {

constexpr const char* kEpName = "GdnAscendExecutionProvider";
constexpr uint32_t kHuaweiVendorId = 0x19e5;

// What GetCapability decided for one session (what ran where); read by ascendStats through GdnAscendStatsJson.
struct PlacementStats {
  std::map<std::string, int> on_device, on_cpu;
  std::vector<std::string> fallback_reasons;
};

// Test-only faults, selected by the session config entry gdn_ascend.test_fault.
// kDeclineAll: GetCapability claims no node (everything runs on the CPU, as when the EP declines a model).
enum class Fault { kNone, kSkipSync, kHostPointer, kDeclineAll };

struct Ep : OrtEp {
  Ep() : OrtEp{} {}
  OrtKernelRegistry* const* registry = nullptr;  // the factory's (shared by its EPs)
  const cann::Table* cann = nullptr;
  aclrtStream stream = nullptr;  // used only where ORT hands a kernel no stream (then the kernel synchronises it)
  Fault fault = Fault::kNone;
  bool strict = false;  // a node of an op with a device kernel left on the CPU fails session creation
  std::string strict_failure;  // that node and why (set by GetCapability)
  int stats_id = 0;
  ~Ep();
};

// Kernel registry with ChunkGatedDeltaRule and RecurrentGatedDeltaRule (delta_rule_kernels.cc) and the
// Memcpy kernels ORT needs between CPU nodes and ours (memcpy_kernels.cc).
OrtStatus* CreateKernelRegistry(OrtKernelRegistry** out);
OrtStatus* AddMemcpyKernels(OrtKernelRegistry* registry);

// Why the device path cannot run a node (empty: it can), from its static types, shapes and constant inputs.
std::string DeviceDeclineReason(const Ort::ConstNode& node);
// Whether the EP has a kernel for the node's op (the gdn ops and the layer's standard ops): strict placement
// fails session creation when such a node stays on the CPU.
bool HasDeviceKernel(const Ort::ConstNode& node);

}  // namespace gdn_ascend
