// Convolution's layout copies for the x86 vector ISAs (cpu/isa.h's conv_* entries):
// the channels-first <-> channels-last copies of the shifted-window path (stride 1 and
// the polyphase split) as 8 x 8 AVX register transposes (the scalar version gathers one
// element per load and was ~14% of a ResNet 3x3 forward). The AVX-512 table compiles
// the same 256-bit code. Included by cpu/isa_kernels.h inside the ISA's anonymous
// namespace; the portable table has none (conv.cpp's scalar loops).
#pragma once

#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
#define DLKERN_CONV_TRANSPOSES 1


// The 8 x 8 transpose of r, in registers: c[j] holds element j of each r[i].
DLKERN_INLINE void transpose8(const __m256 r[8], __m256 c[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  c[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  c[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  c[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  c[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  c[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  c[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  c[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  c[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Columns j0..j0+7 of rows i0..i0+7 of src, written as rows of dst.
DLKERN_INLINE void block8x8(const float* src, int64_t ld_src, float* dst, int64_t ld_dst, const float* add) {
  __m256 r[8], c[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld_src);
  transpose8(r, c);
  for (int j = 0; j < 8; ++j) {
    const __m256 v = add ? _mm256_add_ps(c[j], _mm256_set1_ps(add[j])) : c[j];
    _mm256_storeu_ps(dst + j * ld_dst, v);
  }
}

// Calls tile(i, j) for the 8 x 8 tiles covering rows x cols (both >= 8). A ragged edge is
// covered by one more tile that overlaps the previous one (its values are written twice,
// identically) rather than element by element: a 14-pixel row of a stride-2 layer would
// otherwise go 6/14 scalar.
template <typename Tile>
void for_each_tile(int64_t rows, int64_t cols, Tile tile) {
  for (int64_t i0 = 0;; i0 += 8) {
    for (int64_t j0 = 0;; j0 += 8) {
      tile(std::min(i0, rows - 8), std::min(j0, cols - 8));
      if (j0 + 8 >= cols) break;
    }
    if (i0 + 8 >= rows) break;
  }
}

void conv_transpose_f32(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                        int64_t ld_dst, const float* add) {
  if (rows < 8 || cols < 8) {
    for (int64_t j = 0; j < cols; ++j) {
      const float a = add ? add[j] : 0.0f;
      for (int64_t i = 0; i < rows; ++i) dst[j * ld_dst + i] = src[i * ld_src + j] + a;
    }
    return;
  }
  for_each_tile(rows, cols, [&](int64_t i, int64_t j) {
    block8x8(src + i * ld_src + j, ld_src, dst + j * ld_dst + i, ld_dst, add ? add + j : nullptr);
  });
}

void conv_scatter_rows_f32(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                           const int64_t* col_off) {
  if (rows < 8 || cols < 8) {
    for (int64_t j = 0; j < cols; ++j)
      if (col_off[j] >= 0)
        for (int64_t i = 0; i < rows; ++i) dst[col_off[j] + i] = src[i * ld_src + j];
    return;
  }
  for_each_tile(rows, cols, [&](int64_t i, int64_t j) {
    __m256 r[8], c[8];
    for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + (i + k) * ld_src + j);
    transpose8(r, c);
    for (int k = 0; k < 8; ++k)
      if (col_off[j + k] >= 0) _mm256_storeu_ps(dst + col_off[j + k] + i, c[k]);
  });
}

void conv_gather_rows_f32(const float* src, const int64_t* col_off, int64_t rows, int64_t cols, float* dst,
                          int64_t ld_dst) {
  if (rows < 8 || cols < 8) {
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t i = 0; i < rows; ++i) dst[i * ld_dst + j] = col_off[j] >= 0 ? src[col_off[j] + i] : 0.0f;
    return;
  }
  for_each_tile(rows, cols, [&](int64_t i, int64_t j) {
    __m256 r[8], c[8];
    for (int k = 0; k < 8; ++k)
      r[k] = col_off[j + k] >= 0 ? _mm256_loadu_ps(src + col_off[j + k] + i) : _mm256_setzero_ps();
    transpose8(r, c);
    for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + (i + k) * ld_dst + j, c[k]);
  });
}

#endif
