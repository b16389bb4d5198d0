#include "common/cpu_features.h"

#include <atomic>
#if defined(DLKERN_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace dlkern {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(DLKERN_X86) && (defined(__GNUC__) || defined(__clang__))
    // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512dq = __builtin_cpu_supports("avx512dq");
    // CPUID leaf 7 sub-leaf 1, EAX bit 5; the OS saving zmm state is what avx512f's
    // check above already required.
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) f.avx512bf16 = f.avx512f && ((eax >> 5) & 1u);
#endif
    return f;
  }();
  return features;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

Isa parse_isa(const std::string& name) {
  if (name == "generic") return Isa::generic;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  throw std::invalid_argument("dlkern: unknown ISA '" + name +
                              "'; expected one of generic, avx2, avx512");
}

bool isa_compiled(Isa isa) {
#if defined(DLKERN_X86)
  (void)isa;
  return true;
#else
  return isa == Isa::generic;
#endif
}

bool isa_supported(Isa isa) {
  if (!isa_compiled(isa)) return false;
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::avx512:
      return f.avx512f && f.avx512vl && f.avx512bw && f.avx512dq && f.avx2 && f.fma;
    case Isa::avx2: return f.avx2 && f.fma;
    default: return true;
  }
}

Isa best_isa() {
  if (isa_supported(Isa::avx512)) return Isa::avx512;
  if (isa_supported(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

namespace {
std::atomic<int> g_active{-1};
std::mutex g_init_mutex;

void require_supported(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::runtime_error(std::string("dlkern: ISA '") + isa_name(isa) +
                             "' is not " + (isa_compiled(isa) ? "supported by this CPU" : "compiled into this build") +
                             "; best available is '" + isa_name(best_isa()) + "'");
  }
}
}  // namespace

Isa active_isa() {
  int v = g_active.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<Isa>(v);
  std::lock_guard<std::mutex> lock(g_init_mutex);
  v = g_active.load(std::memory_order_relaxed);
  if (v >= 0) return static_cast<Isa>(v);
  Isa isa = best_isa();
  if (const char* env = std::getenv("DLKERN_ISA"); env && *env) {
    isa = parse_isa(env);
    require_supported(isa);
  }
  g_active.store(static_cast<int>(isa), std::memory_order_release);
  return isa;
}

void set_active_isa(Isa isa) {
  require_supported(isa);
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

}  // namespace dlkern
