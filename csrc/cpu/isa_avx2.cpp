// The AVX2+FMA kernels (8 float lanes), compiled with -mavx2 -mfma (CMakeLists.txt).
#define DLKERN_ISA_NAMESPACE avx2
#define DLKERN_SIMD_AVX2 1
#include "cpu/isa_kernels.h"
