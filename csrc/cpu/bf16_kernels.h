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
// WidenRow: the same over n contiguous elements, the ISA's vector conversion (a B
// pair-step is two of them: the odd row's NR values, then the even row's).
template <float (*Widen)(uint16_t), void (*WidenRow)(const uint16_t*, float*, int64_t)>
struct FallbackPolicy {
  using E = float;
  static constexpr int MR = GemmF32::MR, NR = GemmF32::NR, kPerPair = 2;
  static DLKERN_INLINE void put(float* step, int stride, int idx, uint16_t even, uint16_t odd) {
    step[idx] = Widen(odd);
    step[stride + idx] = Widen(even);
  }
  static DLKERN_INLINE void put_zip(float* step, int n, const uint16_t* even, const uint16_t* odd) {
    WidenRow(odd, step, n);
    WidenRow(even, step + n, n);
  }
  static void put_cols(float* out, const uint16_t* col0, int64_t cs, int cols, int64_t pairs) {
    for (int j = 0; j < NR; ++j) {
      const uint16_t* col = col0 + j * cs;
      for (int64_t q = 0; q < pairs; ++q)
        put(out + q * 2 * NR, NR, j, j < cols ? col[2 * q] : uint16_t(0), j < cols ? col[2 * q + 1] : uint16_t(0));
    }
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
  GemmBf16Driver<FallbackPolicy<&widen, &to_f32>>::run(g, nthreads, kGemmBlockingF32.mc, kGemmBlockingF32.nc);
}

#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
// F16C where the CPU has it (an out-of-line call per row: the driver is not compiled
// for F16C). The float16 GEMM runs at 0.90-0.97x of dlkern's float32 at 256-1024 (1
// thread): that gap is the loop nest (depth blocks of 768, every A row packed), not the
// conversion: widening A rows with F16C as well (then scattering) gained nothing.
void f16_row(const uint16_t* x, float* dst, int64_t n) {
  static const bool f16c = f16::has_f16c();
  if (f16c)
    f16::to_f32_f16c(x, dst, n);
  else
    f16::to_f32_scalar(x, dst, n);
}
#else
void f16_row(const uint16_t* x, float* dst, int64_t n) { f16::to_f32_scalar(x, dst, n); }
#endif

// acc[j] = fma(ae, even[j], fma(ao, odd[j], acc[j])) over n columns (odd == nullptr: a
// padded pair, zeros): the widening fused into the FMA pass. F16C's quieting of a
// signalling NaN cannot show: any NaN operand makes the FMA's result a quiet NaN anyway.
void f16_fma_rows_scalar(float* acc, const uint16_t* even, const uint16_t* odd, float ae, float ao, int64_t n) {
  for (int64_t j = 0; j < n; ++j)
    acc[j] = std::fma(ae, f16::widen(even[j]), std::fma(ao, odd ? f16::widen(odd[j]) : 0.0f, acc[j]));
}

#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
[[gnu::target("f16c")]] void f16_fma_rows_f16c(float* acc, const uint16_t* even, const uint16_t* odd, float ae,
                                               float ao, int64_t n) {
  const __m256 ve = _mm256_set1_ps(ae), vo = _mm256_set1_ps(ao);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 bo =
        odd ? _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(odd + j))) : _mm256_setzero_ps();
    const __m256 be = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(even + j)));
    _mm256_storeu_ps(acc + j, _mm256_fmadd_ps(ve, be, _mm256_fmadd_ps(vo, bo, _mm256_loadu_ps(acc + j))));
  }
  f16_fma_rows_scalar(acc + j, even + j, odd ? odd + j : nullptr, ae, ao, n - j);
}

void f16_fma_rows(float* acc, const uint16_t* even, const uint16_t* odd, float ae, float ao, int64_t n) {
  static const bool f16c = f16::has_f16c();
  (f16c ? f16_fma_rows_f16c : f16_fma_rows_scalar)(acc, even, odd, ae, ao, n);
}
#else
void f16_fma_rows(float* acc, const uint16_t* even, const uint16_t* odd, float ae, float ao, int64_t n) {
  f16_fma_rows_scalar(acc, even, odd, ae, ao, n);
}
#endif

// m == 1 with a row-major B (a GEMV): packing B into float32 panels cost 5.6x the float32
// GEMV at 1 x 4096 x 4096. Rows of B are widened while accumulated over blocks of
// columns, in the fallback's order (per depth block from zero, per pair the odd
// element's FMA then the even's, a padded pair's zeros included), so the result is the
// packed path's bit for bit when alpha = 1 and beta = 0 (matmul's call), and the
// model's epilogue otherwise.
void gemv_f16(const dlkern::cpu::GemmBf16Args& g, int nthreads) {
  constexpr int64_t kBlock = 2048;  // columns: 8 KiB of float32 accumulators in L1
  const int64_t pairs = (g.k + 1) / 2, kcp = gemm_bf16_depth_block(g.k);
  // Narrower blocks where that gives every thread one (16-column multiples).
  const int64_t width = std::min(kBlock, (g.n + 16 * nthreads - 1) / (16 * nthreads) * 16);
  const int64_t blocks = (g.n + width - 1) / width;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    alignas(64) float acc[kBlock];
    const int64_t j0 = blk * width, cols = std::min(width, g.n - j0);
    for (int64_t q0 = 0; q0 < pairs; q0 += kcp) {
      std::fill(acc, acc + cols, 0.0f);
      for (int64_t q = q0; q < std::min(pairs, q0 + kcp); ++q) {
        const int64_t e = 2 * q, o = e + 1;
        const float ae = f16::widen(g.a[e * g.a_cs]), ao = o < g.k ? f16::widen(g.a[o * g.a_cs]) : 0.0f;
        f16_fma_rows(acc, g.b + e * g.b_rs + j0, o < g.k ? g.b + o * g.b_rs + j0 : nullptr, ae, ao, cols);
      }
      float* c = g.c + j0;
      const float beta = q0 == 0 ? g.beta : 1.0f;
      for (int64_t j = 0; j < cols; ++j) c[j] = beta == 0.0f ? g.alpha * acc[j] : std::fma(beta, c[j], g.alpha * acc[j]);
    }
  }
}

void gemm_f16(const dlkern::cpu::GemmBf16Args& g, int nthreads) {
  if (g.m == 1 && g.b_cs == 1 && g.n >= 16) {
    gemv_f16(g, nthreads);
    return;
  }
  GemmBf16Driver<FallbackPolicy<&f16::widen, &f16_row>>::run(g, nthreads, kGemmBlockingF32.mc,
                                                             kGemmBlockingF32.nc);
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
