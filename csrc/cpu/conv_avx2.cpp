// AVX2 helpers of the convolution kernels: the channels-first <-> channels-last copies
// of the stride-1 path as 8 x 8 register transposes (the scalar version gathers one
// element per load and was ~14% of a ResNet 3x3 forward).
#include <immintrin.h>

#include "cpu/conv_isa.h"

namespace dlkern::cpu::avx2 {
namespace {

// Columns j0..j0+7 of rows i0..i0+7 of src, written as rows of dst.
inline void block8x8(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, const float* add) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld_src);
  const __m256 r2 = _mm256_loadu_ps(src + 2 * ld_src), r3 = _mm256_loadu_ps(src + 3 * ld_src);
  const __m256 r4 = _mm256_loadu_ps(src + 4 * ld_src), r5 = _mm256_loadu_ps(src + 5 * ld_src);
  const __m256 r6 = _mm256_loadu_ps(src + 6 * ld_src), r7 = _mm256_loadu_ps(src + 7 * ld_src);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 c[8];
  c[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  c[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  c[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  c[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  c[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  c[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  c[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  c[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
  for (int j = 0; j < 8; ++j) {
    const __m256 v = add ? _mm256_add_ps(c[j], _mm256_set1_ps(add[j])) : c[j];
    _mm256_storeu_ps(dst + j * ld_dst, v);
  }
}

}  // namespace

void conv_transpose_f32(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                        int64_t ld_dst, const float* add) {
  int64_t i0 = 0;
  for (; i0 + 8 <= rows; i0 += 8) {
    int64_t j0 = 0;
    for (; j0 + 8 <= cols; j0 += 8)
      block8x8(src + i0 * ld_src + j0, ld_src, dst + j0 * ld_dst + i0, ld_dst, add ? add + j0 : nullptr);
    for (int64_t j = j0; j < cols; ++j) {
      const float a = add ? add[j] : 0.0f;
      for (int64_t i = i0; i < i0 + 8; ++i) dst[j * ld_dst + i] = src[i * ld_src + j] + a;
    }
  }
  for (int64_t j = 0; j < cols; ++j) {
    const float a = add ? add[j] : 0.0f;
    for (int64_t i = i0; i < rows; ++i) dst[j * ld_dst + i] = src[i * ld_src + j] + a;
  }
}

}  // namespace dlkern::cpu::avx2
