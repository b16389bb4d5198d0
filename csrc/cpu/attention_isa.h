// Per-ISA entry points of the attention kernels, one namespace per translation unit
// (attention_<isa>.cpp). attention.cpp picks one at run time; nothing else should call these.
#pragma once
#include <cstdint>

#include "cpu/attention.h"

#define DLKERN_DECLARE_ATTENTION_ISA(isa, T)                                                            \
  namespace dlkern::cpu::isa {                                                                          \
  void attention_fwd(const AttentionProblem<T>& pr, T* out, T* lse, int nthreads);                      \
  void attention_bwd(const AttentionProblem<T>& pr, HeadView<T> dout, HeadView<T> o, const T* lse, T* dq, \
                     T* dk, T* dv, int nthreads);                                                        \
  }

#define DLKERN_DECLARE_ATTENTION_ISA_BOTH(isa) \
  DLKERN_DECLARE_ATTENTION_ISA(isa, float)     \
  DLKERN_DECLARE_ATTENTION_ISA(isa, double)

DLKERN_DECLARE_ATTENTION_ISA_BOTH(generic)
#if defined(DLKERN_X86)
DLKERN_DECLARE_ATTENTION_ISA_BOTH(avx2)
DLKERN_DECLARE_ATTENTION_ISA_BOTH(avx512)
#endif
#undef DLKERN_DECLARE_ATTENTION_ISA_BOTH
#undef DLKERN_DECLARE_ATTENTION_ISA

// Defines the entry points above for vector type S, inside an ISA translation unit's
// namespace after attention_kernels.h has defined AttentionKernels there.
#define DLKERN_DEFINE_ATTENTION_ISA(S)                                                                        \
  void attention_fwd(const AttentionProblem<S::T>& pr, S::T* out, S::T* lse, int nthreads) {                 \
    AttentionKernels<S>::forward(pr, out, lse, nthreads);                                                     \
  }                                                                                                           \
  void attention_bwd(const AttentionProblem<S::T>& pr, HeadView<S::T> dout, HeadView<S::T> o, const S::T* lse, \
                     S::T* dq, S::T* dk, S::T* dv, int nthreads) {                                            \
    AttentionKernels<S>::backward(pr, dout, o, lse, dq, dk, dv, nthreads);                                    \
  }
