// Attention kernels, AVX2+FMA path: 8 float lanes; vector types and exp from softmax_simd.h.

#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#include "common/runtime.h"
#include "cpu/attention_isa.h"
#define DLKERN_SOFTMAX_AVX2 1

namespace dlkern::cpu::avx2 {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/attention_kernels.h"
}  // namespace

DLKERN_DEFINE_ATTENTION_ISA(VecF32)
DLKERN_DEFINE_ATTENTION_ISA(VecF64)

}  // namespace dlkern::cpu::avx2
