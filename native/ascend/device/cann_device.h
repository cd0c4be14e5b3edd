// The device layer: one table of CANN function pointers, filled by dlopen/dlsym either from the real
// CANN libraries or, only when asked for explicitly, from the gdn-fuse CANN simulator.
#pragma once

#include <string>

#include "ascend/device/cann_api.h"

namespace cann {

struct Table {
#define GDN_CANN_FIELD(name, ret, params) ret(*name) params = nullptr;
  GDN_CANN_RUNTIME_FUNCTIONS(GDN_CANN_FIELD)
  GDN_CANN_NNOPBASE_FUNCTIONS(GDN_CANN_FIELD)
  GDN_CANN_OPAPI_FUNCTIONS(GDN_CANN_FIELD)
#undef GDN_CANN_FIELD
  bool simulated = false;
  std::string origin;  // the libraries the table came from
};

enum class Source { kReal, kSimulator };

struct LoadRequest {
  Source source = Source::kReal;
  std::string simulator_library;  // absolute path of libgdn_cann_sim (kSimulator only)
};

// Loads the table once per process (later calls must ask for the same source). On failure returns null
// and sets *error to one line naming the libraries and paths tried and how to point at CANN.
const Table* Load(const LoadRequest& request, std::string* error);

// The table loaded by Load, or null before.
const Table* Loaded();

}  // namespace cann
