// The choice of dispatch table (cpu/isa.h); baseline flags, so it runs on any CPU.
#include "cpu/isa.h"

namespace dlkern::cpu {

const IsaKernels& isa_kernels(Isa isa) {
  // Built once, on the first kernel call; the tables themselves are constant.
  static const IsaKernels* const tables[] = {
      &generic::table(),
#if defined(DLKERN_X86)
      &avx2::table(),
      &avx512::table(),
#endif
  };
  const int i = static_cast<int>(isa);
  return *tables[i < int(sizeof(tables) / sizeof(tables[0])) ? i : 0];
}

}  // namespace dlkern::cpu
