// Per-ISA GEMM entry points, one namespace per translation unit (gemm_<isa>.cpp).
// gemm.cpp picks one at run time; nothing else should call these directly.
#pragma once
#include "cpu/gemm.h"

#define DLKERN_DECLARE_GEMM_ISA(isa)                                  \
  namespace dlkern::cpu::isa {                                        \
  void gemm_run(const GemmArgs<float>& args, int nthreads);           \
  void gemm_run(const GemmArgs<double>& args, int nthreads);          \
  }

DLKERN_DECLARE_GEMM_ISA(generic)
#if defined(DLKERN_X86)
DLKERN_DECLARE_GEMM_ISA(avx2)
DLKERN_DECLARE_GEMM_ISA(avx512)
#endif
#undef DLKERN_DECLARE_GEMM_ISA
