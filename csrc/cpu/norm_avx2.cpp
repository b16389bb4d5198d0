// AVX2+FMA path of the normalisation segment loops (norm_segments.h).
#include <immintrin.h>

#include <cstdint>

#include "cpu/norm_isa.h"

namespace dlkern::cpu::avx2 {
namespace {

#include "cpu/simd_avx2.h"

struct SimdF32 : VecF32 {
  static T hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static void stream(T* p, V v) { _mm256_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
};

struct SimdF64 : VecF64 {
  static T hsum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
  static void fence() { _mm_sfence(); }
};

#include "cpu/norm_segments.h"

}  // namespace

const NormSegmentKernels<float>& norm_kernels(float) { return NormSegments<SimdF32>::table(); }
const NormSegmentKernels<double>& norm_kernels(double) { return NormSegments<SimdF64>::table(); }

}  // namespace dlkern::cpu::avx2
