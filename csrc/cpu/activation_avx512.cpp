// Activation kernels (activation_kernels.h), AVX-512 path: 16 float lanes.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/activation_isa.h"
#define DLKERN_SOFTMAX_AVX512 1

namespace dlkern::cpu::avx512 {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/activation_kernels.h"
}  // namespace
DLKERN_ACTIVATION_ENTRIES
#undef DLKERN_ACTIVATION_ENTRIES
}  // namespace dlkern::cpu::avx512
