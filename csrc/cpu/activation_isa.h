// Per-ISA entry points of the activation kernels, one namespace per translation unit
// (activation_<isa>.cpp). activation.cpp picks one at run time and threads over
// blocks; nothing else should call these directly.
#pragma once
#include <cstdint>

#define DLKERN_DECLARE_ACTIVATION_ISA(isa, T)                     \
  namespace dlkern::cpu::isa {                                    \
  void gelu_tanh_fwd(const T* x, T* y, int64_t n);                \
  void gelu_tanh_bwd(const T* dy, const T* x, T* dx, int64_t n);  \
  }

#define DLKERN_DECLARE_ACTIVATION_ISA_BOTH(isa) \
  DLKERN_DECLARE_ACTIVATION_ISA(isa, float)     \
  DLKERN_DECLARE_ACTIVATION_ISA(isa, double)

DLKERN_DECLARE_ACTIVATION_ISA_BOTH(generic)
#if defined(DLKERN_X86)
DLKERN_DECLARE_ACTIVATION_ISA_BOTH(avx2)
DLKERN_DECLARE_ACTIVATION_ISA_BOTH(avx512)
#endif
#undef DLKERN_DECLARE_ACTIVATION_ISA_BOTH
#undef DLKERN_DECLARE_ACTIVATION_ISA
