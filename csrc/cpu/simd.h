// The SIMD vector types of every CPU kernel family: VecF32 / VecF64 for the ISA of the
// including translation unit, plus a vectorised float exp. Included only by
// cpu/isa_kernels.h, inside the anonymous namespace of one isa_<name>.cpp, which
// defines DLKERN_SIMD_AVX512 or DLKERN_SIMD_AVX2 first (neither: the portable
// GCC-vector-extension path); every use is so compiled with that TU's flags. Plain
// loops only: no std templates (see cpu/isa.h).
//
// Every type provides: T, V, L, zero, load, store, bcast, add, sub, mul, div, fma, max,
// max_nan (numpy.maximum: NaN when either is NaN), sqrt,
// min, exp, abs, copysign(mag, sgn), select_lt(a, b, x, y) (a < b ? x : y per lane; a NaN
// compares false), hmax, hsum (lane order), hsum_tree (pairwise; the norm and pooling
// reductions), load_tail (first n lanes, the rest filled), store_tail, stream (a
// non-temporal store to a sizeof(V)-aligned address; plain on the portable path) and
// fence (after streaming stores). max(a, b)/min(a, b) return b when either is NaN (x86
// semantics), so clamping x as min(hi, x) keeps a NaN in x. Written once over any of
// them: exp_f32_poly, load_n / store_n (row tails), neg_inf / max_finite / min_normal.
// A family adds its own operations by deriving (pool_lanes.h).
#pragma once

// Every per-vector helper of the ISA code is forced inline: one translation unit per ISA
// holds every family, big enough that GCC's unit-growth limit otherwise leaves some
// (exp_f32_poly on the portable path, a transpose block) as a call per vector.
#define DLKERN_INLINE inline __attribute__((always_inline))
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
#include <immintrin.h>
#endif

// exp for float lanes, written once over a vector type: x = n*ln2 + r with
// |r| <= ln2/2, e^r by a degree-6 polynomial fitted for least maximum relative error
// on that interval (2e-9, well under an ulp), then p * 2^n by V::ldexp, which handles overflow (-> inf) and gradual
// underflow (-> subnormal, 0). Clamping x to [-104, 88.8] keeps n in [-150, 128];
// -inf gives exactly 0, +inf gives inf, NaN stays NaN.
template <typename S>
DLKERN_INLINE typename S::V exp_f32_poly(typename S::V x) {
  using V = typename S::V;
  x = S::min(S::bcast(88.8f), x);
  x = S::max(S::bcast(-104.0f), x);
  const V n = S::round(S::mul(x, S::bcast(1.44269504088896341f)));
  V r = S::fma(n, S::bcast(-0.693359375f), x);       // ln2 high part: n*hi is exact
  r = S::fma(n, S::bcast(2.12194440e-4f), r);        // -(ln2 low part)
  V p = S::bcast(1.3846146175637841e-3f);
  p = S::fma(p, r, S::bcast(8.374120108783245e-3f));
  p = S::fma(p, r, S::bcast(4.1667960584163666e-2f));
  p = S::fma(p, r, S::bcast(1.6666431725025177e-1f));
  p = S::fma(p, r, S::bcast(4.999999403953552e-1f));
  p = S::fma(p, r, S::bcast(1.0f));
  p = S::fma(p, r, S::bcast(1.0f));
  return S::ldexp(p, n);
}

// A whole vector when n >= L lanes remain, else the first n (load_n fills the rest with
// `fill`; store_n writes only those): row tails without a scalar loop.
template <class S>
DLKERN_INLINE typename S::V load_n(const typename S::T* p, int64_t n, typename S::T fill) {
  return n >= S::L ? S::load(p) : S::load_tail(p, n, fill);
}
template <class S>
DLKERN_INLINE void store_n(typename S::T* p, typename S::V v, int64_t n) {
  if (n >= S::L)
    S::store(p, v);
  else
    S::store_tail(p, v, n);
}

// Scalar limits of T (no <limits>: see cpu/isa.h).
template <typename T>
DLKERN_INLINE T neg_inf() {
  return -__builtin_inf();
}
template <typename T>
DLKERN_INLINE T max_finite() {
  return sizeof(T) == 4 ? T(3.4028234663852886e38) : T(1.7976931348623157e308);
}
template <typename T>
DLKERN_INLINE T min_normal() {
  return sizeof(T) == 4 ? T(1.17549435e-38) : T(2.2250738585072014e-308);
}

// Lane by lane through an aligned copy: the horizontal max / sum (once per row, as fast
// as the _mm512_reduce_* sequences), and float64's exp from the C library (accuracy over
// speed).
template <typename V, typename T, int L>
DLKERN_INLINE T lanes_max(V v) {
  alignas(64) T t[L];
  std::memcpy(t, &v, sizeof(V));
  T m = t[0];
  for (int i = 1; i < L; ++i) m = t[i] > m ? t[i] : m;
  return m;
}
template <typename V, typename T, int L>
DLKERN_INLINE T lanes_sum(V v) {
  alignas(64) T t[L];
  std::memcpy(t, &v, sizeof(V));
  T s = 0;
  for (int i = 0; i < L; ++i) s += t[i];
  return s;
}
template <typename V, int L>
DLKERN_INLINE V lanes_exp(V x) {
  alignas(64) double t[L];
  std::memcpy(t, &x, sizeof(V));
  for (int i = 0; i < L; ++i) t[i] = std::exp(t[i]);
  std::memcpy(&x, t, sizeof(V));
  return x;
}

#if defined(DLKERN_SIMD_AVX512)

struct VecF32 {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  DLKERN_INLINE static V load(const T* p) { return _mm512_loadu_ps(p); }
  DLKERN_INLINE static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  DLKERN_INLINE static V zero() { return _mm512_setzero_ps(); }
  DLKERN_INLINE static V load_tail(const T* p, int64_t n, T fill) {
    const __mmask16 k = static_cast<__mmask16>((1u << n) - 1u);
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), k, p);
  }
  DLKERN_INLINE static void store_tail(T* p, V v, int64_t n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  }
  DLKERN_INLINE static V bcast(T x) { return _mm512_set1_ps(x); }
  DLKERN_INLINE static V add(V a, V b) { return _mm512_add_ps(a, b); }
  DLKERN_INLINE static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  DLKERN_INLINE static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  DLKERN_INLINE static V div(V a, V b) { return _mm512_div_ps(a, b); }
  DLKERN_INLINE static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  DLKERN_INLINE static V max(V a, V b) { return _mm512_max_ps(a, b); }
  DLKERN_INLINE static V max_nan(V a, V b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), max(a, b), a);
  }
  DLKERN_INLINE static V sqrt(V a) { return _mm512_sqrt_ps(a); }
  DLKERN_INLINE static V min(V a, V b) { return _mm512_min_ps(a, b); }
  DLKERN_INLINE static V round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // scalef computes p * 2^floor(n) with IEEE overflow/underflow.
  DLKERN_INLINE static V ldexp(V p, V n) { return _mm512_scalef_ps(p, n); }
  DLKERN_INLINE static V exp(V x) { return exp_f32_poly<VecF32>(x); }
  DLKERN_INLINE static V abs(V a) { return _mm512_abs_ps(a); }
  DLKERN_INLINE static V copysign(V mag, V sgn) {
    const __m512i s = _mm512_set1_epi32(int32_t(0x80000000u));
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(s, _mm512_castps_si512(sgn), _mm512_castps_si512(mag), 0xCA));
  }
  DLKERN_INLINE static V select_lt(V a, V b, V x, V y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
  }
  DLKERN_INLINE static T hmax(V v) { return lanes_max<V, T, L>(v); }
  DLKERN_INLINE static T hsum(V v) { return lanes_sum<V, T, L>(v); }
  // Butterfly over 256-, 128-, 64- and 32-bit halves. The maskz forms: GCC 12's
  // _mm512_reduce_add_ps and 512->256 casts trip -Wuninitialized in its own headers.
  DLKERN_INLINE static T hsum_tree(V v) {
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));
    return _mm512_cvtss_f32(v);
  }
  DLKERN_INLINE static void stream(T* p, V v) { _mm512_stream_ps(p, v); }
  DLKERN_INLINE static void fence() { _mm_sfence(); }
};

struct VecF64 {
  using T = double;
  using V = __m512d;
  static constexpr int L = 8;
  DLKERN_INLINE static V load(const T* p) { return _mm512_loadu_pd(p); }
  DLKERN_INLINE static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  DLKERN_INLINE static V zero() { return _mm512_setzero_pd(); }
  DLKERN_INLINE static V load_tail(const T* p, int64_t n, T fill) {
    const __mmask8 k = static_cast<__mmask8>((1u << n) - 1u);
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), k, p);
  }
  DLKERN_INLINE static void store_tail(T* p, V v, int64_t n) {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1u), v);
  }
  DLKERN_INLINE static V bcast(T x) { return _mm512_set1_pd(x); }
  DLKERN_INLINE static V add(V a, V b) { return _mm512_add_pd(a, b); }
  DLKERN_INLINE static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  DLKERN_INLINE static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  DLKERN_INLINE static V div(V a, V b) { return _mm512_div_pd(a, b); }
  DLKERN_INLINE static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  DLKERN_INLINE static V max(V a, V b) { return _mm512_max_pd(a, b); }
  DLKERN_INLINE static V max_nan(V a, V b) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q), max(a, b), a);
  }
  DLKERN_INLINE static V sqrt(V a) { return _mm512_sqrt_pd(a); }
  DLKERN_INLINE static V min(V a, V b) { return _mm512_min_pd(a, b); }
  DLKERN_INLINE static V exp(V x) { return lanes_exp<V, L>(x); }
  DLKERN_INLINE static V abs(V a) { return _mm512_abs_pd(a); }
  DLKERN_INLINE static V copysign(V mag, V sgn) {
    const __m512i s = _mm512_set1_epi64(int64_t(0x8000000000000000ull));
    return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(s, _mm512_castpd_si512(sgn), _mm512_castpd_si512(mag), 0xCA));
  }
  DLKERN_INLINE static V select_lt(V a, V b, V x, V y) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, b, _CMP_LT_OQ), y, x);
  }
  DLKERN_INLINE static T hmax(V v) { return lanes_max<V, T, L>(v); }
  DLKERN_INLINE static T hsum(V v) { return lanes_sum<V, T, L>(v); }
  DLKERN_INLINE static T hsum_tree(V v) {
    v = _mm512_add_pd(v, _mm512_maskz_shuffle_f64x2(0xFF, v, v, 0x4E));
    v = _mm512_add_pd(v, _mm512_maskz_shuffle_f64x2(0xFF, v, v, 0xB1));
    v = _mm512_add_pd(v, _mm512_maskz_permute_pd(0xFF, v, 0x55));
    return _mm512_cvtsd_f64(v);
  }
  DLKERN_INLINE static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
  DLKERN_INLINE static void fence() { _mm_sfence(); }
};

#elif defined(DLKERN_SIMD_AVX2)

struct VecF32 {
  using T = float;
  using V = __m256;
  static constexpr int L = 8;
  DLKERN_INLINE static V load(const T* p) { return _mm256_loadu_ps(p); }
  DLKERN_INLINE static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  DLKERN_INLINE static V zero() { return _mm256_setzero_ps(); }
  DLKERN_INLINE static __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  DLKERN_INLINE static V load_tail(const T* p, int64_t n, T fill) {
    const __m256i k = tail_mask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, k), _mm256_castsi256_ps(k));
  }
  DLKERN_INLINE static void store_tail(T* p, V v, int64_t n) { _mm256_maskstore_ps(p, tail_mask(n), v); }
  DLKERN_INLINE static V bcast(T x) { return _mm256_set1_ps(x); }
  DLKERN_INLINE static V add(V a, V b) { return _mm256_add_ps(a, b); }
  DLKERN_INLINE static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  DLKERN_INLINE static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  DLKERN_INLINE static V div(V a, V b) { return _mm256_div_ps(a, b); }
  DLKERN_INLINE static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  DLKERN_INLINE static V max(V a, V b) { return _mm256_max_ps(a, b); }
  DLKERN_INLINE static V max_nan(V a, V b) {
    return _mm256_blendv_ps(max(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  }
  DLKERN_INLINE static V sqrt(V a) { return _mm256_sqrt_ps(a); }
  DLKERN_INLINE static V min(V a, V b) { return _mm256_min_ps(a, b); }
  DLKERN_INLINE static V round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p * 2^n in two steps (2^(n>>1) * 2^(n - (n>>1))), each a normal power of two for
  // n in [-150, 128], so the product overflows or underflows as IEEE says.
  DLKERN_INLINE static V ldexp(V p, V n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1);
    const __m256i n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  }
  DLKERN_INLINE static V exp(V x) { return exp_f32_poly<VecF32>(x); }
  DLKERN_INLINE static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  DLKERN_INLINE static V copysign(V mag, V sgn) {
    const V s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sgn));
  }
  DLKERN_INLINE static V select_lt(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
  DLKERN_INLINE static T hmax(V v) { return lanes_max<V, T, L>(v); }
  DLKERN_INLINE static T hsum(V v) { return lanes_sum<V, T, L>(v); }
  DLKERN_INLINE static T hsum_tree(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  DLKERN_INLINE static void stream(T* p, V v) { _mm256_stream_ps(p, v); }
  DLKERN_INLINE static void fence() { _mm_sfence(); }
};

struct VecF64 {
  using T = double;
  using V = __m256d;
  static constexpr int L = 4;
  DLKERN_INLINE static V load(const T* p) { return _mm256_loadu_pd(p); }
  DLKERN_INLINE static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  DLKERN_INLINE static V zero() { return _mm256_setzero_pd(); }
  DLKERN_INLINE static __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  DLKERN_INLINE static V load_tail(const T* p, int64_t n, T fill) {
    const __m256i k = tail_mask(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, k), _mm256_castsi256_pd(k));
  }
  DLKERN_INLINE static void store_tail(T* p, V v, int64_t n) { _mm256_maskstore_pd(p, tail_mask(n), v); }
  DLKERN_INLINE static V bcast(T x) { return _mm256_set1_pd(x); }
  DLKERN_INLINE static V add(V a, V b) { return _mm256_add_pd(a, b); }
  DLKERN_INLINE static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  DLKERN_INLINE static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  DLKERN_INLINE static V div(V a, V b) { return _mm256_div_pd(a, b); }
  DLKERN_INLINE static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  DLKERN_INLINE static V max(V a, V b) { return _mm256_max_pd(a, b); }
  DLKERN_INLINE static V max_nan(V a, V b) {
    return _mm256_blendv_pd(max(a, b), a, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
  }
  DLKERN_INLINE static V sqrt(V a) { return _mm256_sqrt_pd(a); }
  DLKERN_INLINE static V min(V a, V b) { return _mm256_min_pd(a, b); }
  DLKERN_INLINE static V exp(V x) { return lanes_exp<V, L>(x); }
  DLKERN_INLINE static V abs(V a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  DLKERN_INLINE static V copysign(V mag, V sgn) {
    const V s = _mm256_set1_pd(-0.0);
    return _mm256_or_pd(_mm256_andnot_pd(s, mag), _mm256_and_pd(s, sgn));
  }
  DLKERN_INLINE static V select_lt(V a, V b, V x, V y) { return _mm256_blendv_pd(y, x, _mm256_cmp_pd(a, b, _CMP_LT_OQ)); }
  DLKERN_INLINE static T hmax(V v) { return lanes_max<V, T, L>(v); }
  DLKERN_INLINE static T hsum(V v) { return lanes_sum<V, T, L>(v); }
  DLKERN_INLINE static T hsum_tree(V v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  DLKERN_INLINE static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
  DLKERN_INLINE static void fence() { _mm_sfence(); }
};

#else  // portable: GCC/Clang vector extensions (SSE2 on x86-64)

template <typename Scalar, typename Int, int Lanes>
struct VecExt {
  using T = Scalar;
  typedef Scalar V __attribute__((vector_size(sizeof(Scalar) * Lanes)));
  typedef Int VI __attribute__((vector_size(sizeof(Int) * Lanes)));
  static constexpr int L = Lanes;
  DLKERN_INLINE static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  DLKERN_INLINE static void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  DLKERN_INLINE static V zero() { return V{}; }
  DLKERN_INLINE static V load_tail(const T* p, int64_t n, T fill) {
    T t[L];
    for (int i = 0; i < L; ++i) t[i] = i < n ? p[i] : fill;
    return load(t);
  }
  DLKERN_INLINE static void store_tail(T* p, V v, int64_t n) {
    T t[L];
    store(t, v);
    for (int64_t i = 0; i < n; ++i) p[i] = t[i];
  }
  DLKERN_INLINE static V bcast(T x) { return V{} + x; }
  DLKERN_INLINE static V add(V a, V b) { return a + b; }
  DLKERN_INLINE static V sub(V a, V b) { return a - b; }
  DLKERN_INLINE static V mul(V a, V b) { return a * b; }
  DLKERN_INLINE static V div(V a, V b) { return a / b; }
  DLKERN_INLINE static V fma(V a, V b, V c) { return a * b + c; }
  DLKERN_INLINE static V select(VI mask, V a, V b) {
    VI ai, bi;
    std::memcpy(&ai, &a, sizeof(V));
    std::memcpy(&bi, &b, sizeof(V));
    const VI r = (mask & ai) | (~mask & bi);
    V out;
    std::memcpy(&out, &r, sizeof(V));
    return out;
  }
  DLKERN_INLINE static V max(V a, V b) { return select(a > b, a, b); }
  DLKERN_INLINE static V max_nan(V a, V b) { return select(a != a, a, max(a, b)); }
  DLKERN_INLINE static V sqrt(V a) {
    for (int i = 0; i < L; ++i) a[i] = std::sqrt(a[i]);  // sqrtps/sqrtpd once vectorised
    return a;
  }
  DLKERN_INLINE static V min(V a, V b) { return select(a < b, a, b); }
  DLKERN_INLINE static V select_lt(V a, V b, V x, V y) { return select(a < b, x, y); }
  // The sign bit of each lane as an integer mask (no std::signbit per lane).
  DLKERN_INLINE static VI sign_bits(V v) {
    VI i;
    std::memcpy(&i, &v, sizeof(V));
    return i & (VI{} + static_cast<Int>(1ull << (sizeof(Int) * 8 - 1)));
  }
  DLKERN_INLINE static V abs(V a) {
    VI i;
    std::memcpy(&i, &a, sizeof(V));
    i ^= sign_bits(a);
    std::memcpy(&a, &i, sizeof(V));
    return a;
  }
  DLKERN_INLINE static V copysign(V mag, V sgn) {
    VI i;
    std::memcpy(&i, &mag, sizeof(V));
    i = (i ^ sign_bits(mag)) | sign_bits(sgn);
    std::memcpy(&mag, &i, sizeof(V));
    return mag;
  }
  DLKERN_INLINE static T hmax(V v) { return lanes_max<V, T, L>(v); }
  DLKERN_INLINE static T hsum(V v) { return lanes_sum<V, T, L>(v); }
  // Four or two lanes: lane order is as good as a tree. No portable non-temporal
  // store: plain stores.
  DLKERN_INLINE static T hsum_tree(V v) { return hsum(v); }
  DLKERN_INLINE static void stream(T* p, V v) { store(p, v); }
  DLKERN_INLINE static void fence() {}
};

struct VecF32 : VecExt<float, int32_t, 4> {
  // Round to nearest by the 1.5 * 2^23 trick (valid for |a| < 2^22).
  DLKERN_INLINE static V round(V a) {
    const V magic = bcast(12582912.0f);
    return (a + magic) - magic;
  }
  DLKERN_INLINE static V ldexp(V p, V n) {
    const VI ni = __builtin_convertvector(n, VI);
    const VI n1 = ni >> 1;
    const VI n2 = ni - n1;
    const VI b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
    V s1, s2;
    std::memcpy(&s1, &b1, sizeof(V));
    std::memcpy(&s2, &b2, sizeof(V));
    return p * s1 * s2;
  }
  DLKERN_INLINE static V exp(V x) { return exp_f32_poly<VecF32>(x); }
};

struct VecF64 : VecExt<double, int64_t, 2> {
  DLKERN_INLINE static V exp(V x) { return lanes_exp<V, L>(x); }
};

#endif
