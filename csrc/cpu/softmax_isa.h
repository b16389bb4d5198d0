// Per-ISA entry points of the softmax and cross-entropy kernels, one namespace per
// translation unit (softmax_<isa>.cpp, cross_entropy_<isa>.cpp). softmax.cpp and
// cross_entropy.cpp pick one at run time; nothing else should call these directly.
#pragma once
#include <cstdint>

#define DLKERN_DECLARE_SOFTMAX_ISA(isa, T)                                                          \
  namespace dlkern::cpu::isa {                                                                      \
  void softmax_fwd(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log, int nthreads); \
  void softmax_bwd(const T* dy, const T* y, T* dx, int64_t outer, int64_t dim, int64_t inner, bool log,  \
                   int nthreads);                                                                   \
  void cross_entropy_fwd(const T* x, const int64_t* target, const T* weight, T w_all, T* loss, T* lse,  \
                         int64_t n, int64_t c, int64_t ignore_index, T eps, int nthreads);          \
  void cross_entropy_bwd(const T* grad, int64_t grad_stride, T grad_scale, const T* x,              \
                         const int64_t* target, const T* lse, const T* weight, T w_all, T* dx,      \
                         int64_t n, int64_t c, int64_t ignore_index, T eps, int nthreads);          \
  }

#define DLKERN_DECLARE_SOFTMAX_ISA_BOTH(isa) \
  DLKERN_DECLARE_SOFTMAX_ISA(isa, float)     \
  DLKERN_DECLARE_SOFTMAX_ISA(isa, double)

DLKERN_DECLARE_SOFTMAX_ISA_BOTH(generic)
#if defined(DLKERN_X86)
DLKERN_DECLARE_SOFTMAX_ISA_BOTH(avx2)
DLKERN_DECLARE_SOFTMAX_ISA_BOTH(avx512)
#endif
#undef DLKERN_DECLARE_SOFTMAX_ISA_BOTH
#undef DLKERN_DECLARE_SOFTMAX_ISA
