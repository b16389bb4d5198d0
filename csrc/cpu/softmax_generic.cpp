// softmax / log_softmax kernels, portable path: GCC/Clang vector extensions (SSE2 on any x86-64).
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/softmax_isa.h"

namespace dlkern::cpu::generic {
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

}  // namespace dlkern::cpu::generic
