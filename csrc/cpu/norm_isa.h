// Per-ISA building blocks of the normalisation kernels: loops over one contiguous
// segment (a row, a channel plane, a group), written once in norm_segments.h and
// compiled per ISA in norm_<isa>.cpp. norm.cpp does the threading and picks a table
// at run time; nothing else should call these.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

template <typename T>
struct NormSegmentKernels {
  // sum(x - k): the mean's pass, shifted by a sample k so large means do not cancel.
  T (*sum_shifted)(const T* x, int64_t n, T k);
  // *sq = sum((x - m)^2), *s = sum(x - m) (the correction term of the two-pass variance).
  void (*dev_stats)(const T* x, int64_t n, T m, T* sq, T* s);
  // sum(x^2).
  T (*sum_sq)(const T* x, int64_t n);
  // Writers take `stream`: write the output with non-temporal stores (outputs too big
  // for the caches; saves reading each output line before writing it). Call
  // stream_fence() once per thread after streaming writes.
  // y = (x - m) * r * w + b; w and b may be nullptr (then 1 and 0).
  void (*normalize_wb)(const T* x, const T* w, const T* b, T* y, int64_t n, T m, T r, bool stream);
  // y = (x - m) * s + t.
  void (*normalize_st)(const T* x, T* y, int64_t n, T m, T s, T t, bool stream);
  // *s1 = sum(dy * w), *s2 = sum(dy * w * (x - m)); w may be nullptr.
  void (*grad_sums)(const T* dy, const T* x, const T* w, int64_t n, T m, T* s1, T* s2);
  // dx = a * w * dy + b * (x - m) + c; dw_acc += dy * (x - m) * r; db_acc += dy.
  // w, dw_acc, db_acc may be nullptr.
  void (*grad_apply)(const T* dy, const T* x, const T* w, T* dx, T* dw_acc, T* db_acc, int64_t n,
                     T m, T r, T a, T b, T c, bool stream);
  void (*stream_fence)();
};

#define DLKERN_DECLARE_NORM_ISA(isa)                          \
  namespace dlkern::cpu::isa {                                \
  const NormSegmentKernels<float>& norm_kernels(float);       \
  const NormSegmentKernels<double>& norm_kernels(double);     \
  }

}  // namespace dlkern::cpu

DLKERN_DECLARE_NORM_ISA(generic)
#if defined(DLKERN_X86)
DLKERN_DECLARE_NORM_ISA(avx2)
DLKERN_DECLARE_NORM_ISA(avx512)
#endif
#undef DLKERN_DECLARE_NORM_ISA
