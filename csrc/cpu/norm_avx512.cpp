// AVX-512 path of the normalisation segment loops (norm_segments.h).
#include <immintrin.h>

#include <cstdint>

#include "cpu/norm_isa.h"

namespace dlkern::cpu::avx512 {
namespace {

#include "cpu/simd_avx512.h"

struct SimdF32 : VecF32 {
  // Butterfly over 256-, 128-, 64- and 32-bit halves. The maskz forms: GCC 12's
  // _mm512_reduce_add_ps and 512->256 casts trip -Wuninitialized in its own headers.
  static T hsum(V v) {
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));
    v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));
    v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));
    return _mm512_cvtss_f32(v);
  }
  static void stream(T* p, V v) { _mm512_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
};

struct SimdF64 : VecF64 {
  static T hsum(V v) {
    v = _mm512_add_pd(v, _mm512_maskz_shuffle_f64x2(0xFF, v, v, 0x4E));
    v = _mm512_add_pd(v, _mm512_maskz_shuffle_f64x2(0xFF, v, v, 0xB1));
    v = _mm512_add_pd(v, _mm512_maskz_permute_pd(0xFF, v, 0x55));
    return _mm512_cvtsd_f64(v);
  }
  static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
  static void fence() { _mm_sfence(); }
};

#include "cpu/norm_segments.h"

}  // namespace

const NormSegmentKernels<float>& norm_kernels(float) { return NormSegments<SimdF32>::table(); }
const NormSegmentKernels<double>& norm_kernels(double) { return NormSegments<SimdF64>::table(); }

}  // namespace dlkern::cpu::avx512
