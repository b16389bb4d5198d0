// Per-ISA helpers of the convolution kernels (conv_<isa>.cpp); conv.cpp dispatches on
// dlkern::active_isa(). Nothing else should call these.
#pragma once
#include <cstdint>

#if defined(DLKERN_X86)
namespace dlkern::cpu::avx2 {
// dst[j*ld_dst + i] = src[i*ld_src + j] (+ add[j] when add is not null), i < rows, j < cols.
void conv_transpose_f32(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                        int64_t ld_dst, const float* add);
// dst[col_off[j] + i] = src[i*ld_src + j], i < rows, j < cols; columns with col_off[j] < 0
// are skipped. Channels-first rows scattered into channels-last pixels anywhere.
void conv_scatter_rows_f32(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                           const int64_t* col_off);
// The reverse: dst[i*ld_dst + j] = src[col_off[j] + i], or 0 where col_off[j] < 0.
void conv_gather_rows_f32(const float* src, const int64_t* col_off, int64_t rows, int64_t cols, float* dst,
                          int64_t ld_dst);
}  // namespace dlkern::cpu::avx2
#endif
