// Pooling's lane operations per ISA: simd.h's VecF32 / VecF64 plus the window
// gathers and the NaN-propagating max masks of pool_driver.h (its header lists them).
// Included by cpu/isa_kernels.h after simd.h, inside the ISA's anonymous namespace.
#pragma once

#if defined(DLKERN_SIMD_AVX512)

// 16 float / 8 double output columns per vector; stride-2 windows are gathered with
// one two-source permute (evens of 2L inputs), and the second load is masked so
// nothing past the window's last element is read. hsum is simd.h's lane-order one
// (through memory: GCC 12's reduce intrinsics warn under -Wall).
struct PoolF32 : VecF32 {
  using M = __mmask16;
  // Lanes (elements) below `skip` become `fill` and are not read.
  DLKERN_INLINE static __mmask16 from(int64_t skip) { return skip >= 16 ? 0 : static_cast<__mmask16>(0xFFFFu << skip); }
  DLKERN_INLINE static V load_fill(const T* p, int64_t skip, T fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), from(skip), p);
  }
  DLKERN_INLINE static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const V f = _mm512_set1_ps(fill);
    const __mmask16 hi = 0x7FFF & (skip <= 16 ? 0xFFFF : from(skip - 16));
    return _mm512_permutex2var_ps(_mm512_mask_loadu_ps(f, from(skip), p), idx, _mm512_mask_loadu_ps(f, hi, p + 16));
  }
  DLKERN_INLINE static V evens(const T* p) {
    const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), idx, _mm512_maskz_loadu_ps(0x7FFF, p + 16));
  }

  DLKERN_INLINE static M better(V v, V cur) {
    return _mm512_cmp_ps_mask(v, cur, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  DLKERN_INLINE static V select(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }
  // The masked form: GCC 12's plain max intrinsic warns under -Wall.
  DLKERN_INLINE static V max_plain(V v, V cur) { return _mm512_mask_max_ps(cur, 0xFFFF, v, cur); }
  DLKERN_INLINE static M nan_lanes(V v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q); }
  DLKERN_INLINE static M mask_or(M a, M b) { return a | b; }
  DLKERN_INLINE static M mask_none() { return 0; }
  DLKERN_INLINE static void store_interleaved(T* p, V e, V o) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(e, lo, o));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(e, hi, o));
  }
};

struct PoolF64 : VecF64 {
  using M = __mmask8;
  DLKERN_INLINE static __mmask8 from(int64_t skip) { return skip >= 8 ? 0 : static_cast<__mmask8>(0xFFu << skip); }
  DLKERN_INLINE static V load_fill(const T* p, int64_t skip, T fill) {
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), from(skip), p);
  }
  DLKERN_INLINE static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    const V f = _mm512_set1_pd(fill);
    const __mmask8 hi = 0x7F & (skip <= 8 ? 0xFF : from(skip - 8));
    return _mm512_permutex2var_pd(_mm512_mask_loadu_pd(f, from(skip), p), idx, _mm512_mask_loadu_pd(f, hi, p + 8));
  }
  DLKERN_INLINE static V evens(const T* p) {
    const __m512i idx = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
    return _mm512_permutex2var_pd(_mm512_loadu_pd(p), idx, _mm512_maskz_loadu_pd(0x7F, p + 8));
  }

  DLKERN_INLINE static M better(V v, V cur) {
    return _mm512_cmp_pd_mask(v, cur, _CMP_GT_OQ) | _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
  }
  DLKERN_INLINE static V select(M m, V a, V b) { return _mm512_mask_blend_pd(m, b, a); }
  DLKERN_INLINE static V max_plain(V v, V cur) { return _mm512_mask_max_pd(cur, 0xFF, v, cur); }
  DLKERN_INLINE static M nan_lanes(V v) { return _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q); }
  DLKERN_INLINE static M mask_or(M a, M b) { return a | b; }
  DLKERN_INLINE static M mask_none() { return 0; }
  DLKERN_INLINE static void store_interleaved(T* p, V e, V o) {
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_storeu_pd(p, _mm512_permutex2var_pd(e, lo, o));
    _mm512_storeu_pd(p + 8, _mm512_permutex2var_pd(e, hi, o));
  }
};

#elif defined(DLKERN_SIMD_AVX2)

// 8 float / 4 double output columns per vector; stride-2 windows are gathered by a
// shuffle + cross-lane permute, and the second load is a masked load so nothing past
// the window's last element is read.
struct PoolF32 : VecF32 {
  using M = __m256;
  DLKERN_INLINE static __m256i first7() { return _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, -1, 0); }
  DLKERN_INLINE static T hsum(V v) { return hsum_tree(v); }
  // Elements below `skip` become `fill` and are not read (masked loads do not fault).
  DLKERN_INLINE static __m256i from(int64_t skip, int first) {
    const int64_t s = skip - first;
    return _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                              _mm256_set1_epi32(static_cast<int>(s < -1 ? -1 : s > 8 ? 8 : s) - 1));
  }
  DLKERN_INLINE static V load_fill(const T* p, int64_t skip, T fill) {
    const __m256i m = from(skip, 0);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  DLKERN_INLINE static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m256i m0 = from(skip, 0), m1 = _mm256_and_si256(from(skip, 8), first7());
    const V f = _mm256_set1_ps(fill);
    const V a = _mm256_blendv_ps(f, _mm256_maskload_ps(p, m0), _mm256_castsi256_ps(m0));
    const V b = _mm256_blendv_ps(f, _mm256_maskload_ps(p + 8, m1), _mm256_castsi256_ps(m1));
    const V t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
  }
  DLKERN_INLINE static V evens(const T* p) {
    // per 128-bit lane: a0 a2 b0 b2 | a4 a6 b4 b6, then 64-bit pieces reordered 0 2 1 3.
    const V t = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_maskload_ps(p + 8, first7()), _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
  }

  DLKERN_INLINE static M better(V v, V cur) {
    return _mm256_or_ps(_mm256_cmp_ps(v, cur, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  DLKERN_INLINE static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  DLKERN_INLINE static V max_plain(V v, V cur) { return _mm256_max_ps(v, cur); }  // cur on NaN or equality
  DLKERN_INLINE static M nan_lanes(V v) { return _mm256_cmp_ps(v, v, _CMP_UNORD_Q); }
  DLKERN_INLINE static M mask_or(M a, M b) { return _mm256_or_ps(a, b); }
  DLKERN_INLINE static M mask_none() { return _mm256_setzero_ps(); }
  DLKERN_INLINE static void store_interleaved(T* p, V e, V o) {
    const V ul = _mm256_unpacklo_ps(e, o), uh = _mm256_unpackhi_ps(e, o);
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(ul, uh, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(ul, uh, 0x31));
  }
};

struct PoolF64 : VecF64 {
  using M = __m256d;
  DLKERN_INLINE static __m256i first3() { return _mm256_setr_epi64x(-1, -1, -1, 0); }
  DLKERN_INLINE static T hsum(V v) { return hsum_tree(v); }
  DLKERN_INLINE static __m256i from(int64_t skip, int first) {
    const int64_t s = skip - first;
    return _mm256_cmpgt_epi64(_mm256_setr_epi64x(0, 1, 2, 3), _mm256_set1_epi64x((s < -1 ? -1 : s > 4 ? 4 : s) - 1));
  }
  DLKERN_INLINE static V load_fill(const T* p, int64_t skip, T fill) {
    const __m256i m = from(skip, 0);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
  }
  DLKERN_INLINE static V evens_fill(const T* p, int64_t skip, T fill) {
    const __m256i m0 = from(skip, 0), m1 = _mm256_and_si256(from(skip, 4), first3());
    const V f = _mm256_set1_pd(fill);
    const V a = _mm256_blendv_pd(f, _mm256_maskload_pd(p, m0), _mm256_castsi256_pd(m0));
    const V b = _mm256_blendv_pd(f, _mm256_maskload_pd(p + 4, m1), _mm256_castsi256_pd(m1));
    return _mm256_permute4x64_pd(_mm256_unpacklo_pd(a, b), _MM_SHUFFLE(3, 1, 2, 0));
  }
  DLKERN_INLINE static V evens(const T* p) {
    const V t = _mm256_unpacklo_pd(_mm256_loadu_pd(p), _mm256_maskload_pd(p + 4, first3()));
    return _mm256_permute4x64_pd(t, _MM_SHUFFLE(3, 1, 2, 0));
  }

  DLKERN_INLINE static M better(V v, V cur) {
    return _mm256_or_pd(_mm256_cmp_pd(v, cur, _CMP_GT_OQ), _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
  }
  DLKERN_INLINE static V select(M m, V a, V b) { return _mm256_blendv_pd(b, a, m); }
  DLKERN_INLINE static V max_plain(V v, V cur) { return _mm256_max_pd(v, cur); }
  DLKERN_INLINE static M nan_lanes(V v) { return _mm256_cmp_pd(v, v, _CMP_UNORD_Q); }
  DLKERN_INLINE static M mask_or(M a, M b) { return _mm256_or_pd(a, b); }
  DLKERN_INLINE static M mask_none() { return _mm256_setzero_pd(); }
  DLKERN_INLINE static void store_interleaved(T* p, V e, V o) {
    const V ul = _mm256_unpacklo_pd(e, o), uh = _mm256_unpackhi_pd(e, o);
    _mm256_storeu_pd(p, _mm256_permute2f128_pd(ul, uh, 0x20));
    _mm256_storeu_pd(p + 4, _mm256_permute2f128_pd(ul, uh, 0x31));
  }
};

#else

// Portable: a one-lane "vector" (plain scalars), so every output takes the per-output
// loop. Runs on any CPU.
template <typename Scalar>
struct PoolScalar {
  using T = Scalar;
  using V = Scalar;
  using M = bool;
  static constexpr int L = 1;
  DLKERN_INLINE static V load(const T* p) { return *p; }
  DLKERN_INLINE static void store(T* p, V v) { *p = v; }
  DLKERN_INLINE static V bcast(T x) { return x; }
  DLKERN_INLINE static V zero() { return T(0); }
  DLKERN_INLINE static V add(V a, V b) { return a + b; }
  DLKERN_INLINE static V div(V a, V b) { return a / b; }
  DLKERN_INLINE static T hsum(V v) { return v; }
  DLKERN_INLINE static V evens(const T* p) { return *p; }
  DLKERN_INLINE static V load_fill(const T* p, int64_t skip, T fill) { return skip > 0 ? fill : *p; }
  DLKERN_INLINE static V evens_fill(const T* p, int64_t skip, T fill) { return skip > 0 ? fill : *p; }
  DLKERN_INLINE static M better(V v, V cur) { return v > cur || v != v; }
  DLKERN_INLINE static V select(M m, V a, V b) { return m ? a : b; }
  DLKERN_INLINE static V max_plain(V v, V cur) { return v > cur ? v : cur; }
  DLKERN_INLINE static M nan_lanes(V v) { return v != v; }
  DLKERN_INLINE static M mask_or(M a, M b) { return a || b; }
  DLKERN_INLINE static M mask_none() { return false; }
  DLKERN_INLINE static void store_interleaved(T* p, V e, V o) {
    p[0] = e;
    p[1] = o;
  }
};

using PoolF32 = PoolScalar<float>;
using PoolF64 = PoolScalar<double>;

#endif
