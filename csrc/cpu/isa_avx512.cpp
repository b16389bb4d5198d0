// The AVX-512 kernels (16 float lanes, masked tails, scalef for exp's 2^n), compiled
// with -mavx512f/vl/bw/dq (CMakeLists.txt).
// GCC 12's AVX-512 intrinsics (max, min, roundscale) use _mm512_undefined_*(), which
// -Wmaybe-uninitialized reports falsely at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define DLKERN_ISA_NAMESPACE avx512
#define DLKERN_SIMD_AVX512 1
#include "cpu/isa_kernels.h"
