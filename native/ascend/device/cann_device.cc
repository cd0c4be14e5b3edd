#include "ascend/device/cann_device.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace cann {
namespace {

std::mutex g_mutex;
Table g_table;
bool g_loaded = false;
Source g_source = Source::kReal;

// Folders that may hold CANN's libraries, from the environment variables CANN's set_env.sh exports.
std::vector<std::string> CannLibraryDirs() {
  std::vector<std::string> dirs;
  for (const char* var : {"ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"}) {
    const char* v = std::getenv(var);
    if (v == nullptr || *v == '\0') continue;
    dirs.push_back(std::string(v) + "/lib64");
    dirs.push_back(std::string(v) + "/aarch64-linux/lib64");
    dirs.push_back(std::string(v) + "/x86_64-linux/lib64");
  }
  return dirs;
}

// dlopen `name` from the first dir that has it, then through the loader path (LD_LIBRARY_PATH, ld.so.cache).
void* OpenLibrary(const std::string& name, const std::vector<std::string>& dirs, std::string* tried) {
  for (const std::string& d : dirs) {
    const std::string path = d + "/" + name;
    if (void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) return h;
    *tried += (tried->empty() ? "" : ", ") + path;
  }
  if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL)) return h;
  *tried += (tried->empty() ? "" : ", ") + name + " (loader path)";
  return nullptr;
}

template <typename F>
bool Resolve(void* handle, const char* name, F* slot, std::string* missing) {
  *slot = reinterpret_cast<F>(dlsym(handle, name));
  if (*slot == nullptr) *missing += (missing->empty() ? "" : ", ") + std::string(name);
  return *slot != nullptr;
}

bool FillTable(void* runtime, void* nnopbase, void* opapi, Table* t, std::string* missing) {
#define GDN_CANN_RESOLVE_RT(name, ret, params) Resolve(runtime, #name, &t->name, missing);
#define GDN_CANN_RESOLVE_NN(name, ret, params) Resolve(nnopbase, #name, &t->name, missing);
#define GDN_CANN_RESOLVE_OP(name, ret, params) Resolve(opapi, #name, &t->name, missing);
  GDN_CANN_RUNTIME_FUNCTIONS(GDN_CANN_RESOLVE_RT)
  GDN_CANN_NNOPBASE_FUNCTIONS(GDN_CANN_RESOLVE_NN)
  GDN_CANN_OPAPI_FUNCTIONS(GDN_CANN_RESOLVE_OP)
#undef GDN_CANN_RESOLVE_RT
#undef GDN_CANN_RESOLVE_NN
#undef GDN_CANN_RESOLVE_OP
  return missing->empty();
}

bool LoadReal(Table* t, std::string* error) {
  const std::vector<std::string> dirs = CannLibraryDirs();
  std::string tried;
  void* runtime = OpenLibrary("libascendcl.so", dirs, &tried);
  void* nnopbase = runtime ? OpenLibrary("libnnopbase.so", dirs, &tried) : nullptr;
  void* opapi = nnopbase ? OpenLibrary("libopapi.so", dirs, &tried) : nullptr;
  if (opapi == nullptr) {
    *error = "CANN was not found: cannot load libascendcl.so, libnnopbase.so and libopapi.so (tried " + tried +
             "); source CANN's set_env.sh (sets ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME) or add its lib64 to "
             "LD_LIBRARY_PATH, or set GDN_FUSE_ASCEND=sim to use the gdn-fuse CANN simulator";
    return false;
  }
  std::string missing;
  if (!FillTable(runtime, nnopbase, opapi, t, &missing)) {
    *error = "CANN was found but lacks " + missing + " (the aclnn gated-delta ops need a CANN with ops-transformer's "
             "ChunkGatedDeltaRule / RecurrentGatedDeltaRule)";
    return false;
  }
  t->origin = "CANN (libascendcl.so, libnnopbase.so, libopapi.so)";
  return true;
}

bool LoadSimulator(const std::string& path, Table* t, std::string* error) {
  void* sim = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (sim == nullptr) {
    *error = "GDN_FUSE_ASCEND=sim but the CANN simulator " + path + " cannot be loaded: " + dlerror();
    return false;
  }
  std::string missing;
  if (!FillTable(sim, sim, sim, t, &missing)) {
    *error = "the CANN simulator " + path + " lacks " + missing;
    return false;
  }
  t->simulated = true;
  t->origin = "CANN simulator (" + path + ")";
  return true;
}

}  // namespace

const Table* Load(const LoadRequest& request, std::string* error) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded) {
    if (request.source == g_source) return &g_table;
    *error = std::string("this process already uses ") + g_table.origin + "; real CANN and the simulator cannot be mixed";
    return nullptr;
  }
  Table t;
  const bool ok = request.source == Source::kSimulator ? LoadSimulator(request.simulator_library, &t, error)
                                                       : LoadReal(&t, error);
  if (!ok) return nullptr;
  const aclError init = t.aclInit(nullptr);
  if (init != kAclSuccess && init != kAclErrorRepeatInitialize) {
    *error = "aclInit failed with CANN error " + std::to_string(init);
    return nullptr;
  }
  g_table = t;
  g_source = request.source;
  g_loaded = true;
  return &g_table;
}

const Table* Loaded() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_loaded ? &g_table : nullptr;
}

}  // namespace cann
