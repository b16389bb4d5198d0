// Activation kernels (activation_kernels.h), AVX2+FMA path: 8 float lanes.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/activation_isa.h"
#define DLKERN_SOFTMAX_AVX2 1

namespace dlkern::cpu::avx2 {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/activation_kernels.h"
}  // namespace
DLKERN_ACTIVATION_ENTRIES
#undef DLKERN_ACTIVATION_ENTRIES
}  // namespace dlkern::cpu::avx2
