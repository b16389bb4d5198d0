// The portable kernels: GCC/Clang vector extensions (SSE2 on any x86-64, NEON on Arm),
// baseline flags. Slower than the wide paths but runs everywhere.
#define DLKERN_ISA_NAMESPACE generic
#include "cpu/isa_kernels.h"
