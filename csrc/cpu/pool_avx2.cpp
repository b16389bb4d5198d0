// AVX2 pooling path: 8 float / 4 double output columns per vector; stride-2 windows
// are gathered by a shuffle + cross-lane permute, and the second load is a masked
// load so nothing past the window's last element is read.
#include <immintrin.h>
#include <omp.h>

#include <cstdint>

#include "common/runtime.h"
#include "cpu/pool_isa.h"

namespace dlkern::cpu::avx2 {
namespace {

struct SimdF32 {
  using T = float;
  using V = __m256;
  using M = __m256;
  static constexpr int L = 8;
  static __m256i first7() { return _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V bcast(T x) { return _mm256_set1_ps(x); }
  static V zero() { return _mm256_setzero_ps(); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static T hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Elements below `skip` become `fill` and are not read (masked loads do not fault).
  static __m256i from(int64_t skip, int first) {
    const int64_t s = skip - first;
    return _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                              _mm256_set1_epi32(static_cast<int>(s < -1 ? -1 : s > 8 ? 8 : s) - 1));
  }
  static V load_fill(const T* p, int64_t skip, T fill) {
    const __m256i m = from(skip, 0);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m256i m0 = from(skip, 0), m1 = _mm256_and_si256(from(skip, 8), first7());
    const V f = _mm256_set1_ps(fill);
    const V a = _mm256_blendv_ps(f, _mm256_maskload_ps(p, m0), _mm256_castsi256_ps(m0));
    const V b = _mm256_blendv_ps(f, _mm256_maskload_ps(p + 8, m1), _mm256_castsi256_ps(m1));
    const V t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  static V evens(const T* p) {
    // per 128-bit lane: a0 a2 b0 b2 | a4 a6 b4 b6, then 64-bit pieces reordered 0 2 1 3.
    const V t = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_maskload_ps(p + 8, first7()), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
  }

  static M better(V v, V cur) {
    return _mm256_or_ps(_mm256_cmp_ps(v, cur, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  static V max_plain(V v, V cur) { return _mm256_max_ps(v, cur); }  // cur on NaN or equality
  static M nan_lanes(V v) { return _mm256_cmp_ps(v, v, _CMP_UNORD_Q); }
  static M mask_or(M a, M b) { return _mm256_or_ps(a, b); }
  static M mask_none() { return _mm256_setzero_ps(); }
  static void store_interleaved(T* p, V e, V o) {
    const V ul = _mm256_unpacklo_ps(e, o), uh = _mm256_unpackhi_ps(e, o);
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(ul, uh, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(ul, uh, 0x31));
  }
};

struct SimdF64 {
  using T = double;
  using V = __m256d;
  using M = __m256d;
  static constexpr int L = 4;
  static __m256i first3() { return _mm256_setr_epi64x(-1, -1, -1, 0); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static V bcast(T x) { return _mm256_set1_pd(x); }
  static V zero() { return _mm256_setzero_pd(); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static T hsum(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static __m256i from(int64_t skip, int first) {
    const int64_t s = skip - first;
    return _mm256_cmpgt_epi64(_mm256_setr_epi64x(0, 1, 2, 3), _mm256_set1_epi64x((s < -1 ? -1 : s > 4 ? 4 : s) - 1));
  }
  static V load_fill(const T* p, int64_t skip, T fill) {
    const __m256i m = from(skip, 0);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m256i m0 = from(skip, 0), m1 = _mm256_and_si256(from(skip, 4), first3());
    const V f = _mm256_set1_pd(fill);
    const V a = _mm256_blendv_pd(f, _mm256_maskload_pd(p, m0), _mm256_castsi256_pd(m0));
    const V b = _mm256_blendv_pd(f, _mm256_maskload_pd(p + 4, m1), _mm256_castsi256_pd(m1));
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  }
  static V evens(const T* p) {
    const V t = _mm256_unpacklo_pd(_mm256_loadu_pd(p), _mm256_maskload_pd(p + 4, first3()));
    return _mm256_permute4x64_pd(t, _MM_SHUFFLE(3, 1, 2, 0));
  }

  static M better(V v, V cur) {
    return _mm256_or_pd(_mm256_cmp_pd(v, cur, _CMP_GT_OQ), _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
  }
  static V select(M m, V a, V b) { return _mm256_blendv_pd(b, a, m); }
  static V max_plain(V v, V cur) { return _mm256_max_pd(v, cur); }
  static M nan_lanes(V v) { return _mm256_cmp_pd(v, v, _CMP_UNORD_Q); }
  static M mask_or(M a, M b) { return _mm256_or_pd(a, b); }
  static M mask_none() { return _mm256_setzero_pd(); }
  static void store_interleaved(T* p, V e, V o) {
    const V ul = _mm256_unpacklo_pd(e, o), uh = _mm256_unpackhi_pd(e, o);
    _mm256_storeu_pd(p, _mm256_permute2f128_pd(ul, uh, 0x20));
    _mm256_storeu_pd(p + 4, _mm256_permute2f128_pd(ul, uh, 0x31));
  }
};

#include "cpu/pool_driver.h"

}  // namespace

DLKERN_DEFINE_POOL_ENTRY_POINTS(SimdF32, SimdF64)

}  // namespace dlkern::cpu::avx2
