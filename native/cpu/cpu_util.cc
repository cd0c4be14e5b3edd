// gdn-fuse CPU backend: ISA detection.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

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

namespace {

[[noreturn]] void too_large(const char* what, const std::string& size) {
  throw std::runtime_error("cannot allocate " + size + " of per-thread scratch for " + what);
}

std::string mib(size_t bytes) { return std::to_string((bytes + (size_t{1} << 20) - 1) >> 20) + " MiB"; }

struct KeptBuffer {
  float* p = nullptr;
  size_t bytes = 0;
  ~KeptBuffer() { std::free(p); }
};

}  // namespace

int64_t checked_product(std::initializer_list<int64_t> factors, const char* what) {
  int64_t n = 1;
  for (int64_t f : factors)
    if (!checked_mul(n, f, &n)) too_large(what, "more than 2^63 floats");
  return n;
}

int64_t scratch_size(std::initializer_list<int64_t> terms, const char* what) {
  int64_t n = 0;
  for (int64_t t : terms)
    if (!checked_add(n, t, &n)) too_large(what, "more than 2^63 floats");
  return n;
}

Scratch::Scratch(int64_t n, const char* what) {
  if (n < 0 || (uint64_t)n > (SIZE_MAX - 4096) / sizeof(float)) too_large(what, std::to_string(n) + " floats");
  const size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
  if (bytes <= kScratchKeepBytes) {
    thread_local KeptBuffer kept;
    if (kept.bytes < bytes) {
      std::free(kept.p);
      kept.p = static_cast<float*>(std::aligned_alloc(64, bytes));
      kept.bytes = kept.p != nullptr ? bytes : 0;
      if (kept.p == nullptr) too_large(what, std::to_string(bytes) + " bytes");
    }
    p_ = kept.p;
    return;
  }
  const size_t page = 4096, mapped = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) too_large(what, mib(bytes));
  p_ = static_cast<float*>(p);
  mapped_bytes_ = mapped;
}

Scratch::~Scratch() {
  if (mapped_bytes_ != 0) munmap(p_, mapped_bytes_);
}

const char* isa_name() {
  switch (detect_isa()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

const DeltaRulePlan& plain_delta_rule_plan(const DeltaRuleParams& p, const DeltaRuleTensors& t,
                                          DeltaRulePlan* storage) {
  storage->sequences.resize((size_t)p.B);
  for (int64_t b = 0; b < p.B; ++b) {
    DeltaRuleSequence& s = storage->sequences[b];
    s.number = b, s.token0 = b * p.T, s.length = p.T;
    s.read_slot = t.initial_state != nullptr ? b : -1;
    s.write_slot = b;
  }
  storage->max_length = p.T;
  return *storage;
}

void copy_pool_once(const DeltaRuleParams& p, const DeltaRuleTensors& t) {
  if (t.final_state == nullptr || t.initial_state == nullptr || t.final_state == t.initial_state) return;
  const size_t n = (size_t)checked_product({p.slots, p.Hv, p.K, p.V}, "a state pool");
  std::memmove(t.final_state, t.initial_state, n * sizeof(float));
}

}  // namespace cpu
}  // namespace gdn
