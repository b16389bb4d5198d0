// Per-ISA pooling entry points, one namespace per translation unit (pool_<isa>.cpp).
// pool.cpp picks one at run time; nothing else should call these directly.
#pragma once
#include "cpu/pool.h"

#define DLKERN_DECLARE_POOL_ISA_T(T)                                                        \
  void max_pool2d_forward_run(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g,  \
                              int nthreads);                                                \
  void avg_pool2d_forward_run(const T* x, T* y, const Pool2dGeometry& g,                    \
                              bool count_include_pad, int64_t divisor_override, int nthreads); \
  void avg_pool2d_backward_run(const T* dy, T* dx, const Pool2dGeometry& g,                 \
                               bool count_include_pad, int64_t divisor_override, int nthreads); \
  void adaptive_avg_pool2d_forward_run(const T* x, T* y, const Pool2dGeometry& g, int nthreads);

#define DLKERN_DECLARE_POOL_ISA(isa) \
  namespace dlkern::cpu::isa {       \
  DLKERN_DECLARE_POOL_ISA_T(float)   \
  DLKERN_DECLARE_POOL_ISA_T(double)  \
  }

DLKERN_DECLARE_POOL_ISA(generic)
#if defined(DLKERN_X86)
DLKERN_DECLARE_POOL_ISA(avx2)
DLKERN_DECLARE_POOL_ISA(avx512)
#endif
#undef DLKERN_DECLARE_POOL_ISA
#undef DLKERN_DECLARE_POOL_ISA_T
