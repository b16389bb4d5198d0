// CPU feature detection and the run-time choice of SIMD path (ISA).
// The ISA is chosen once, from CPU features or the DLKERN_ISA environment variable,
// and can be changed later by set_active_isa() so tests can run every path.
#pragma once
#include <string>

namespace dlkern {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512vl = false, avx512bw = false, avx512dq = false;
  // AVX-512 BF16 (vdpbf16ps): not an ISA level, one kernel of the avx512 table (cpu/isa.h).
  bool avx512bf16 = false;
};

const CpuFeatures& cpu_features();

const char* isa_name(Isa isa);
// Throws std::invalid_argument for a name other than generic, avx2, avx512.
Isa parse_isa(const std::string& name);

// Compiled into this build (x86 builds compile all three).
bool isa_compiled(Isa isa);
// Compiled and runnable on this CPU.
bool isa_supported(Isa isa);
// The fastest supported path.
Isa best_isa();

// The path kernels use. First call resolves DLKERN_ISA (or best_isa());
// throws std::invalid_argument / std::runtime_error for a bad or unsupported value.
Isa active_isa();
// Throws std::runtime_error if `isa` cannot run here.
void set_active_isa(Isa isa);

}  // namespace dlkern
