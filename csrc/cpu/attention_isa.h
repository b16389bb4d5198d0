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
