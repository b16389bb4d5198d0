// Attention kernels, AVX-512 path: 16 float lanes (vector types and exp from softmax_simd.h).
// gcc 12's AVX-512 intrinsics use _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports falsely at every use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/runtime.h"
#include "cpu/attention_isa.h"
#define DLKERN_SOFTMAX_AVX512 1

namespace dlkern::cpu::avx512 {
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

}  // namespace dlkern::cpu::avx512
