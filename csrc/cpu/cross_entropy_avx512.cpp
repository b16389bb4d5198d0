// Fused cross-entropy kernels (contiguous rows), AVX-512 path: 16 float lanes, masked tails, scalef for the 2^n of exp.
// gcc 12's AVX-512 intrinsics (max, min, roundscale) use _mm512_undefined_*(), which
// -Wmaybe-uninitialized reports falsely at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/softmax_isa.h"
#define DLKERN_SOFTMAX_AVX512 1

namespace dlkern::cpu::avx512 {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/cross_entropy_kernels.h"
}  // namespace

#define DLKERN_CE_ENTRY(T, VEC)                                                                          \
  void cross_entropy_fwd(const T* x, const int64_t* target, const T* weight, T w_all, T* loss, T* lse,   \
                         int64_t n, int64_t c, int64_t ignore_index, T eps, int nthreads) {              \
    CrossEntropyKernels<VEC>::forward(x, target, weight, w_all, loss, lse, n, c, ignore_index, eps, nthreads); \
  }                                                                                                      \
  void cross_entropy_bwd(const T* grad, int64_t grad_stride, T grad_scale, const T* x,                   \
                         const int64_t* target, const T* lse, const T* weight, T w_all, T* dx, int64_t n, \
                         int64_t c, int64_t ignore_index, T eps, int nthreads) {                         \
    CrossEntropyKernels<VEC>::backward(grad, grad_stride, grad_scale, x, target, lse, weight, w_all, dx, n, c, \
                                       ignore_index, eps, nthreads);                                     \
  }
DLKERN_CE_ENTRY(float, VecF32)
DLKERN_CE_ENTRY(double, VecF64)
#undef DLKERN_CE_ENTRY

}  // namespace dlkern::cpu::avx512
