// Attention kernels, AVX2+FMA path: 8 float lanes (vector types and exp from softmax_simd.h).

#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/runtime.h"
#include "cpu/attention_isa.h"
#define DLKERN_SOFTMAX_AVX2 1

namespace dlkern::cpu::avx2 {
namespace {
#include "cpu/softmax_simd.h"
#include "cpu/attention_kernels.h"
}  // namespace

#define DLKERN_ATTENTION_ENTRY(S)                                                                            \
  void attention_fwd(const AttentionProblem<S::T>& pr, S::T* out, S::T* lse, int nthreads) {                 \
    AttentionKernels<S>::forward(pr, out, lse, nthreads);                                                     \
  }                                                                                                           \
  void attention_bwd(const AttentionProblem<S::T>& pr, HeadView<S::T> dout, HeadView<S::T> o, const S::T* lse, \
                     S::T* dq, S::T* dk, S::T* dv, int nthreads) {                                            \
    AttentionKernels<S>::backward(pr, dout, o, lse, dq, dk, dv, nthreads);                                    \
  }
DLKERN_ATTENTION_ENTRY(VecF32)
DLKERN_ATTENTION_ENTRY(VecF64)
#undef DLKERN_ATTENTION_ENTRY

}  // namespace dlkern::cpu::avx2
