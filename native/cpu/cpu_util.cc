// gdn-fuse CPU backend: ISA detection.
#include <cstdlib>
#include <cstring>
#include <unistd.h>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_util.h"

namespace gdn {
namespace cpu {

static Isa detect_isa_uncached() {
#if GDN_HAVE_X86_DISPATCH
  __builtin_cpu_init();
  Isa best = Isa::kGeneric;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
  if (best == Isa::kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    best = Isa::kAvx512;
  if (const char* env = std::getenv("GDN_CPU_ISA")) {
    Isa want = best;
    if (std::strcmp(env, "generic") == 0) want = Isa::kGeneric;
    else if (std::strcmp(env, "avx2") == 0) want = Isa::kAvx2;
    else if (std::strcmp(env, "avx512") == 0) want = Isa::kAvx512;
    if (static_cast<int>(want) <= static_cast<int>(best)) best = want;
  }
  return best;
#else
  return Isa::kGeneric;
#endif
}

Isa detect_isa() {
  static const Isa isa = detect_isa_uncached();
  return isa;
}

size_t l2_cache_bytes() {
  static const size_t bytes = [] {
    long n = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    n = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return n > 0 ? (size_t)n : (size_t)512 * 1024;
  }();
  return bytes;
}

const char* isa_name() {
  switch (detect_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace cpu
}  // namespace gdn
