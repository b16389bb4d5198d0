// bfloat16 kernels of one ISA (cpu/bf16.h): the conversions and the GEMM's float32
// fallback. Included by cpu/isa_kernels.h after gemm_driver.h (GemmF32, its blocking).
//
// The conversions are written once over GCC vector extensions as wide as the ISA's
// float vector (VecF32::L lanes): each TU lowers them to its own registers. Wider
// vectors than the ISA's are lowered badly (16 lanes on AVX2: 4 GB/s rather than 19,
// the uint32 -> uint16 narrowing goes scalar). The AVX-512 BF16
// vcvtneps2bf16 is not used: it flushes denormal inputs to zero (checked on this Zen 4:
// 0x007fffff gives 0, not 0x0080), and the conversion
// must round them like any other value.

namespace bf16 {

constexpr int kLanes = VecF32::L;
typedef uint32_t U32xL __attribute__((vector_size(4 * kLanes)));
typedef uint16_t U16xL __attribute__((vector_size(2 * kLanes)));
typedef int32_t I32xL __attribute__((vector_size(4 * kLanes)));

DLKERN_INLINE uint16_t round_one(uint32_t u) {
  // NaN: the canonical quiet NaN with the sign kept, as ml_dtypes' astype (truncating
  // would turn a NaN whose payload sits in the low half into Inf). Else add 0x7fff plus
  // the lowest kept bit: RNE, and a carry out of the mantissa bumps the exponent (max
  // float -> Inf), as it should.
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(((u >> 16) & 0x8000u) | 0x7fc0u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void from_f32(const float* x, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    U32xL u;
    std::memcpy(&u, x + i, sizeof(u));
    const U32xL rne = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const U32xL quiet = ((u >> 16) & 0x8000u) | 0x7fc0u;
    const I32xL is_nan = (u & 0x7fffffffu) > 0x7f800000u;
    const U32xL r = (U32xL)((is_nan & (I32xL)quiet) | (~is_nan & (I32xL)rne));
    const U16xL h = __builtin_convertvector(r, U16xL);
    std::memcpy(dst + i, &h, sizeof(h));
  }
  for (; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    dst[i] = round_one(u);
  }
}

void to_f32(const uint16_t* x, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    U16xL h;
    std::memcpy(&h, x + i, sizeof(h));
    const U32xL u = __builtin_convertvector(h, U32xL) << 16;
    std::memcpy(dst + i, &u, sizeof(u));
  }
  for (; i < n; ++i) {
    const uint32_t u = uint32_t(x[i]) << 16;
    std::memcpy(dst + i, &u, 4);
  }
}

DLKERN_INLINE float widen(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace bf16

#include "cpu/f16_kernels.h"

namespace bf16 {

// The fallback's panels are the float32 micro-kernel's (gemm_driver.h: A panels
// (kc, MR), B panels (kc, NR), kc = 2 kcp), converted while packing, with each pair's
// odd element first: the micro-kernel's FMAs then take a pair in vdpbf16ps' order and
// round exactly where it does. Widen: the 16-bit format's exact float32 (bf16 here,
// f16::widen for the float16 GEMM, which shares the loop nest and its summation order).
template <float (*Widen)(uint16_t)>
struct FallbackPolicy {
  using E = float;
  static constexpr int MR = GemmF32::MR, NR = GemmF32::NR, kPerPair = 2;
  static DLKERN_INLINE void put(float* step, int stride, int idx, uint16_t even, uint16_t odd) {
    step[idx] = Widen(odd);
    step[stride + idx] = Widen(even);
  }
  static constexpr bool kDirectA = false;  // every row is converted
  template <class ABlock>
  static void macro(int64_t mc, int64_t nc, int64_t kcp, const ABlock& a, const float* bp, int64_t n_panels,
                    float* c, int64_t ldc, float alpha, float beta) {
    const GemmF32::ABlock A{nullptr, 0, 0, a.packed};
    GemmF32::macro(mc, nc, 2 * kcp, A, bp, 0, n_panels, c, ldc, alpha, beta);
  }
};

#include "cpu/gemm_bf16_driver.h"

void gemm_fallback(const dlkern::cpu::GemmBf16Args& g, int nthreads) {
  GemmBf16Driver<FallbackPolicy<&widen>>::run(g, nthreads, kGemmBlockingF32.mc, kGemmBlockingF32.nc);
}

void gemm_f16(const dlkern::cpu::GemmBf16Args& g, int nthreads) {
  GemmBf16Driver<FallbackPolicy<&f16::widen>>::run(g, nthreads, kGemmBlockingF32.mc, kGemmBlockingF32.nc);
}

}  // namespace bf16

dlkern::cpu::Bf16Kernels bf16_kernels() {
  dlkern::cpu::Bf16Kernels k{};
  k.from_f32 = &bf16::from_f32;
  k.to_f32 = &bf16::to_f32;
  k.gemm_fallback = &bf16::gemm_fallback;
  k.f16_from_f32 = &f16::from_f32_scalar;
  k.f16_to_f32 = &f16::to_f32_scalar;
#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
  if (f16::has_f16c()) {
    k.f16_from_f32 = &f16::from_f32_f16c;
    k.f16_to_f32 = &f16::to_f32_f16c;
  }
#endif
  k.gemm_f16 = &bf16::gemm_f16;
#if defined(DLKERN_SIMD_AVX512) && defined(DLKERN_HAVE_AVX512BF16)
  // A separate TU (built with -mavx512bf16) holds the vdpbf16ps path; the table only
  // points at it where the CPU has the instruction.
  if (dlkern::cpu_features().avx512bf16) k.gemm_dpbf16 = &dlkern::cpu::avx512bf16::gemm_bf16;
#endif
  return k;
}
