// AVX-512 pooling path: 16 float / 8 double output columns per vector; stride-2
// windows are gathered with one two-source permute (evens of 2L inputs), and the
// second load is masked so nothing past the window's last element is read.
#include <immintrin.h>
#include <omp.h>

#include <cstdint>

#include "common/runtime.h"
#include "cpu/pool_isa.h"

namespace dlkern::cpu::avx512 {
namespace {

struct SimdF32 {
  using T = float;
  using V = __m512;
  using M = __mmask16;
  static constexpr int L = 16;
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static V bcast(T x) { return _mm512_set1_ps(x); }
  static V zero() { return _mm512_setzero_ps(); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static T hsum(V v) {  // through memory: GCC 12's reduce intrinsics warn under -Wall
    T lanes[L];
    _mm512_storeu_ps(lanes, v);
    T s = 0;
    for (int i = 0; i < L; ++i) s += lanes[i];
    return s;
  }
  // Lanes (elements) below `skip` become `fill` and are not read.
  static __mmask16 from(int64_t skip) { return skip >= 16 ? 0 : static_cast<__mmask16>(0xFFFFu << skip); }
  static V load_fill(const T* p, int64_t skip, T fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), from(skip), p);
  }
  static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const V f = _mm512_set1_ps(fill);
    const __mmask16 hi = 0x7FFF & (skip <= 16 ? 0xFFFF : from(skip - 16));
    return _mm512_permutex2var_ps(_mm512_mask_loadu_ps(f, from(skip), p), idx, _mm512_mask_loadu_ps(f, hi, p + 16));
  }
  static V evens(const T* p) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_maskz_loadu_ps(0x7FFF, p + 16));
  }

  static M better(V v, V cur) {
    return _mm512_cmp_ps_mask(v, cur, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
  // The masked form: GCC 12's plain max intrinsic warns under -Wall.
  static V max_plain(V v, V cur) { return _mm512_mask_max_ps(cur, 0xFFFF, v, cur); }
  static M nan_lanes(V v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); }
  static M mask_or(M a, M b) { return a | b; }
  static M mask_none() { return 0; }
  static void store_interleaved(T* p, V e, V o) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(e, lo, o));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(e, hi, o));
  }
};

struct SimdF64 {
  using T = double;
  using V = __m512d;
  using M = __mmask8;
  static constexpr int L = 8;
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static V bcast(T x) { return _mm512_set1_pd(x); }
  static V zero() { return _mm512_setzero_pd(); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V div(V a, V b) { return _mm512_div_pd(a, b); }
  static T hsum(V v) {  // through memory: GCC 12's reduce intrinsics warn under -Wall
    T lanes[L];
    _mm512_storeu_pd(lanes, v);
    T s = 0;
    for (int i = 0; i < L; ++i) s += lanes[i];
    return s;
  }
  static __mmask8 from(int64_t skip) { return skip >= 8 ? 0 : static_cast<__mmask8>(0xFFu << skip); }
  static V load_fill(const T* p, int64_t skip, T fill) {
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), from(skip), p);
  }
  static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const V f = _mm512_set1_pd(fill);
    const __mmask8 hi = 0x7F & (skip <= 8 ? 0xFF : from(skip - 8));
    return _mm512_permutex2var_pd(_mm512_mask_loadu_pd(f, from(skip), p), idx, _mm512_mask_loadu_pd(f, hi, p + 8));
  }
  static V evens(const T* p) {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm512_permutex2var_pd(_mm512_loadu_pd(p), idx, _mm512_maskz_loadu_pd(0x7F, p + 8));
  }

  static M better(V v, V cur) {
    return _mm512_cmp_pd_mask(v, cur, _CMP_GT_OQ) | _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
  }
  static V select(M m, V a, V b) { return _mm512_mask_blend_pd(m, b, a); }
  static V max_plain(V v, V cur) { return _mm512_mask_max_pd(cur, 0xFF, v, cur); }
  static M nan_lanes(V v) { return _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q); }
  static M mask_or(M a, M b) { return a | b; }
  static M mask_none() { return 0; }
  static void store_interleaved(T* p, V e, V o) {
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_storeu_pd(p, _mm512_permutex2var_pd(e, lo, o));
    _mm512_storeu_pd(p + 8, _mm512_permutex2var_pd(e, hi, o));
  }
};

#include "cpu/pool_driver.h"

}  // namespace

DLKERN_DEFINE_POOL_ENTRY_POINTS(SimdF32, SimdF64)

}  // namespace dlkern::cpu::avx512
