// gdn-fuse op library (gdn_ops): the ONNX Runtime custom-op domain "gdn" (opset 1), plain ORT C API only.
// Loads through SessionOptions RegisterCustomOpsLibrary_V2 on any ORT >= 1.17 (C API >= 17, headers <= 29).
// RegisterCustomOps is the library's one exported symbol (gdn_ops.map): it picks the C API table, adds every op
// of the op table to a new domain and keeps the domain alive until the library unloads.
#include <cstdio>
#include <mutex>
#include <vector>

#include "common/gdn_contract.h"
#include "custom-ops/op_table.h"
#include "custom-ops/ort_api.h"

#define GDN_EXPORT __attribute__((visibility("default")))

namespace {

using namespace gdn::custom_ops;

constexpr uint32_t kMinOrtApiVersion = 17;  // ORT 1.17: CreateKernelV2/KernelComputeV2, ParallelFor, shape inference
constexpr unsigned kMinOrtMinorForShapeInference = 30;

// Domains handed to ORT must outlive the sessions that use them: keep them until the library unloads.
struct DomainKeeper {
  std::mutex mu;
  std::vector<OrtCustomOpDomain*> domains;
  ~DomainKeeper() {
    if (g_ort != nullptr)
      for (auto* d : domains) g_ort->ReleaseCustomOpDomain(d);
  }
};
DomainKeeper& domain_keeper() {
  static DomainKeeper k;
  return k;
}

// ORT 1.x serves C API versions 1..x. Ask for min(x, the headers' version) directly: GetApi prints a message to
// stderr for every version it does not have, so probing downwards would be noisy. *major / *minor: the runtime's.
const OrtApi* pick_api(const OrtApiBase* api_base, unsigned* major, unsigned* minor) {
  uint32_t want = ORT_API_VERSION;
  if (const char* ver = api_base->GetVersionString()) {
    if (std::sscanf(ver, "%u.%u", major, minor) == 2 && *major == 1 && *minor < want) want = *minor;
  }
  const OrtApi* api = want >= kMinOrtApiVersion ? api_base->GetApi(want) : nullptr;
  for (uint32_t v = want; api == nullptr && v > kMinOrtApiVersion;) api = api_base->GetApi(--v);
  return api;
}

}  // namespace

extern "C" GDN_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                const OrtApiBase* api_base) {
  if (api_base == nullptr) return nullptr;
  unsigned major = 0, minor = 0;
  const OrtApi* api = pick_api(api_base, &major, &minor);
  if (api == nullptr) {
    // Cannot create an OrtStatus without an API table; fall back to the oldest table to report the problem.
    const OrtApi* old = api_base->GetApi(1);
    if (old == nullptr) return nullptr;
    return old->CreateStatus(ORT_FAIL, "gdn-fuse op library needs ONNX Runtime >= 1.17 (C API version >= 17)");
  }
  set_ort_api(api);
  OrtCustomOpDomain* domain = nullptr;
  GDN_ORT_TRY(api->CreateCustomOpDomain(gdn::kDomain, &domain));
  // Output shape inference: ORT 1.17's OrtShapeInferContext dereferences absent optional inputs (crash), so it
  // is only offered to runtimes it was tested with (1.30+; 1.22 crashes too). Output element types never depend
  // on it: every variant has concrete types, and ORT infers them from the kernel that matches the inputs.
  const bool shape_inference = major > 1 || (major == 1 && minor >= kMinOrtMinorForShapeInference);
  for (OrtCustomOp* op : custom_ops(shape_inference)) {
    if (OrtStatus* s = api->CustomOpDomain_Add(domain, op)) {
      api->ReleaseCustomOpDomain(domain);
      return s;
    }
  }
  if (OrtStatus* s = api->AddCustomOpDomain(options, domain)) {
    api->ReleaseCustomOpDomain(domain);
    return s;
  }
  DomainKeeper& keeper = domain_keeper();
  std::lock_guard<std::mutex> lock(keeper.mu);
  keeper.domains.push_back(domain);
  return nullptr;
}
