// Per-ISA helpers of the convolution kernels (conv_<isa>.cpp); conv.cpp dispatches on
// dlkern::active_isa(). Nothing else should call these.
#pragma once
#include <cstdint>

#if defined(DLKERN_X86)
namespace dlkern::cpu::avx2 {
// dst[j*ld_dst + i] = src[i*ld_src + j] (+ add[j] when add is not null), i < rows, j < cols.
void conv_transpose_f32(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                        int64_t ld_dst, const float* add);
}  // namespace dlkern::cpu::avx2
#endif
