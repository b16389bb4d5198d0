// Attention kernels, AVX-512 path: 16 float lanes; vector types and exp from softmax_simd.h.
// gcc 12's AVX-512 intrinsics use _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports falsely at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#include "common/runtime.h"
#include "cpu/attention_isa.h"
#define DLKERN_SOFTMAX_AVX512 1

namespace dlkern::cpu::avx512 {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/attention_kernels.h"
}  // namespace

DLKERN_DEFINE_ATTENTION_ISA(VecF32)
DLKERN_DEFINE_ATTENTION_ISA(VecF64)

}  // namespace dlkern::cpu::avx512
