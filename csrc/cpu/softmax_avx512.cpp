// softmax / log_softmax kernels, AVX-512 path: 16 float lanes, masked tails, scalef for the 2^n of exp.
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
#include "cpu/softmax_kernels.h"
}  // namespace

void softmax_fwd(const float* x, float* y, int64_t outer, int64_t dim, int64_t inner, bool log, int nthreads) {
  SoftmaxKernels<VecF32>::forward(x, y, outer, dim, inner, log, nthreads);
}
void softmax_fwd(const double* x, double* y, int64_t outer, int64_t dim, int64_t inner, bool log, int nthreads) {
  SoftmaxKernels<VecF64>::forward(x, y, outer, dim, inner, log, nthreads);
}
void softmax_bwd(const float* dy, const float* y, float* dx, int64_t outer, int64_t dim, int64_t inner, bool log,
                 int nthreads) {
  SoftmaxKernels<VecF32>::backward(dy, y, dx, outer, dim, inner, log, nthreads);
}
void softmax_bwd(const double* dy, const double* y, double* dx, int64_t outer, int64_t dim, int64_t inner,
                 bool log, int nthreads) {
  SoftmaxKernels<VecF64>::backward(dy, y, dx, outer, dim, inner, log, nthreads);
}

}  // namespace dlkern::cpu::avx512
