// The bf16 GEMM's vdpbf16ps path (cpu/bf16.h), compiled with the avx512 flags plus
// -mavx512bf16 (CMakeLists.txt). Not an ISA level of its own (a fourth table would
// recompile every family for one instruction): the avx512 table (cpu/bf16_kernels.h)
// points at gemm_bf16 only when cpu_features().avx512bf16 holds, so nothing here runs
// on a CPU without it. The loop nest is gemm_bf16_driver.h's, as the fallback's.
#if defined(DLKERN_HAVE_AVX512BF16)
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/runtime.h"
#include "cpu/isa.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace dlkern::cpu::avx512bf16 {
namespace {

// A pair of bf16 (even element in the low half, as vdpbf16ps reads it) per uint32.
// The main tile is 6 rows x 64 columns as the float32 AVX-512 kernel: 24 accumulators + 4
// B vectors + 1 broadcast of 32 registers; each vdpbf16ps does 32 multiply-adds, twice an
// FMA's. Narrow products (n <= 32: a classifier layer's n = 10) take NV = 1 or 2 vectors
// and more rows (16 x 16, 12 x 32), so a tile wastes at most 15 columns, not up to 63
// (256 x 1024 x 10 computed 6.4x its work in 64-column tiles).
template <int MR_, int NV_>
struct DpPolicy {
  using E = uint32_t;
  static constexpr int MR = MR_, NV = NV_, NR = NV * 16, kPerPair = 1;

  static inline void put(uint32_t* step, int, int idx, uint16_t even, uint16_t odd) {
    step[idx] = uint32_t(even) | (uint32_t(odd) << 16);
  }

  static inline void put_zip(uint32_t* step, int n, const uint16_t* even, const uint16_t* odd) {
    for (int j = 0; j < n; ++j) put(step, n, j, even[j], odd[j]);  // two rows zipped (vectorised)
  }

  // Transpose 16 x 16 uint32: r[i] lane j -> r[j] lane i (unpack 32, unpack 64, then
  // 128-bit lanes twice).
  static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
      u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
      u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
      u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    // u[4 b + c], lane L: rows 4b..4b+3 of column 4L + c.
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), w0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
      const __m512i v1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
      const __m512i w1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
      r[c] = _mm512_shuffle_i32x4(v0, v1, 0x88);
      r[8 + c] = _mm512_shuffle_i32x4(v0, v1, 0xDD);
      r[4 + c] = _mm512_shuffle_i32x4(w0, w1, 0x88);
      r[12 + c] = _mm512_shuffle_i32x4(w0, w1, 0xDD);
    }
  }

  // Pair-steps [0, pairs) of a panel whose column j's pairs are contiguous at col0 + j cs:
  // blocks of 16 columns x 16 pairs loaded as 16 rows of 32-bit pairs (masked at the
  // tails, columns past `cols` zero) and transposed in registers.
  static void put_cols(uint32_t* out, const uint16_t* col0, int64_t cs, int cols, int64_t pairs) {
    for (int g = 0; g < NV; ++g) {
      for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
        const int64_t nq = std::min<int64_t>(16, pairs - q0);
        const __mmask16 mk = nq == 16 ? __mmask16(0xffff) : __mmask16((1u << nq) - 1);
        __m512i r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; ++j)
          r[j] = 16 * g + j < cols ? _mm512_maskz_loadu_epi32(mk, col0 + (16 * g + j) * cs + 2 * q0)
                                   : _mm512_setzero_si512();
        transpose16(r);
        uint32_t* dst = out + q0 * NR + 16 * g;
        if (nq == 16) {
#pragma GCC unroll 16
          for (int q = 0; q < 16; ++q) _mm512_storeu_si512(dst + q * NR, r[q]);
        } else {
          for (int64_t q = 0; q < nq; ++q) _mm512_storeu_si512(dst + q * NR, r[q]);
        }
      }
    }
  }

  // C[0:MR, 0:NR] = alpha * (A_panel B_panel) + beta * C, the float kernel's epilogue.
  // Row i's pair q is the 32 bits at a + i * a_row + q * a_step (uint16 units): a packed
  // panel (a_row 2, a_step 2 MR) or rows of A in place (a_row = A's row stride, a_step 2).
  // VC <= NV: the vectors of the panel computed (a panel's last columns: n = 784 leaves 16
  // of 64, which full tiles computed 4x over: 6% of 1024 x 256 x 784). Never inlined,
  // for the float kernel's reason (gemm_driver.h's micro).
  template <int VC = NV>
  [[gnu::noinline]] static void micro(int64_t kcp, const uint16_t* __restrict a, int64_t a_row, int64_t a_step,
                                      const uint32_t* __restrict b, float* __restrict c, int64_t ldc, float alpha,
                                      float beta) {
    __m512 acc[MR][VC];
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < VC; ++j) acc[i][j] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t q = 0; q < kcp; ++q) {
      __m512bh bv[VC];
#pragma GCC unroll 4
      for (int j = 0; j < VC; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(b + j * 16);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        int pair;
        std::memcpy(&pair, a + i * a_row, sizeof(pair));
        const __m512bh av = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 4
        for (int j = 0; j < VC; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], av, bv[j]);
      }
      a += a_step;
      b += NR;
    }
    const __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0.0f) {
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < VC; ++j) _mm512_storeu_ps(c + i * ldc + j * 16, _mm512_mul_ps(va, acc[i][j]));
    } else {
      const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < VC; ++j) {
          float* cp = c + i * ldc + j * 16;
          _mm512_storeu_ps(cp, _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp), _mm512_mul_ps(va, acc[i][j])));
        }
    }
  }

  // A partial tile: the vectors covering `cols` into scratch (the rows past `rows` come
  // from a zero-padded panel, never from A in place), then the valid part merged with the
  // same roundings as micro's epilogue.
  static void micro_edge(int64_t kcp, const uint16_t* a, int64_t a_row, int64_t a_step, const uint32_t* b,
                         float* c, int64_t ldc, float alpha, float beta, int rows, int cols) {
    alignas(64) float tile[MR * NR];
    with_vectors(cols, [&](auto vc) { micro<decltype(vc)::value>(kcp, a, a_row, a_step, b, tile, NR, 1.0f, 0.0f); });
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) {
        float* cp = c + i * ldc + j;
        const float v = alpha * tile[i * NR + j];
        *cp = beta == 0.0f ? v : std::fma(beta, *cp, v);
      }
  }

  // f(std::integral_constant<int, VC>) with VC = the vectors covering `cols` (1..NV).
  template <class F>
  static void with_vectors(int cols, F&& f) {
    const int vc = (cols + 15) / 16;
    if constexpr (NV >= 4)
      if (vc == 3) return f(std::integral_constant<int, 3>());
    if constexpr (NV >= 3)
      if (vc == 2) return f(std::integral_constant<int, 2>());
    if constexpr (NV >= 2)
      if (vc == 1) return f(std::integral_constant<int, 1>());
    f(std::integral_constant<int, NV>());
  }

  static constexpr bool kDirectA = true;

  // One tile: rows [i0, i0 + MR) x panel jp.
  template <class ABlock>
  static inline void tile(int64_t i0, int64_t jp, int64_t mc, int64_t nc, int64_t kcp, const ABlock& A,
                          const uint32_t* bp, float* c, int64_t ldc, float alpha, float beta) {
    const int64_t j0 = jp * NR;
    const int cols = static_cast<int>(std::min<int64_t>(NR, nc - j0));
    const uint32_t* bpanel = bp + jp * NR * kcp;
    const int rows = static_cast<int>(std::min<int64_t>(MR, mc - i0));
    float* ct = c + i0 * ldc + j0;
    const bool direct = i0 < A.direct_rows;
    const uint16_t* a = direct ? A.direct + i0 * A.rs
                               : reinterpret_cast<const uint16_t*>(A.packed + (i0 - A.direct_rows) * kcp);
    const int64_t a_row = direct ? A.rs : 2, a_step = direct ? 2 : 2 * MR;
    if (rows == MR && cols == NR)
      micro(kcp, a, a_row, a_step, bpanel, ct, ldc, alpha, beta);
    else if (rows == MR && cols % 16 == 0)  // whole vectors: straight into C
      with_vectors(cols, [&](auto vc) {
        micro<decltype(vc)::value>(kcp, a, a_row, a_step, bpanel, ct, ldc, alpha, beta);
      });
    else
      micro_edge(kcp, a, a_row, a_step, bpanel, ct, ldc, alpha, beta, rows, cols);
  }

  // Column panels outer (a panel of B stays in L1 over the block's rows), each next
  // tile's C lines prefetched. A shallow product (kcp <= 16 pairs: the backward's g @ W3,
  // k = 10) is bound by writing C instead: rows outer, so C is written a row strip at a
  // time, whole rows in order (panels outer walked it 64 columns wide down rows 4 KiB
  // apart); every B panel then sits in L1 anyway.
  template <class ABlock>
  static void macro(int64_t mc, int64_t nc, int64_t kcp, const ABlock& A, const uint32_t* bp, int64_t n_panels,
                    float* c, int64_t ldc, float alpha, float beta) {
    if (kcp <= 16) {
      for (int64_t i0 = 0; i0 < mc; i0 += MR)
        for (int64_t jp = 0; jp < n_panels; ++jp) tile(i0, jp, mc, nc, kcp, A, bp, c, ldc, alpha, beta);
      return;
    }
    for (int64_t jp = 0; jp < n_panels; ++jp) {
      for (int64_t i0 = 0; i0 < mc; i0 += MR) {
        if (i0 + MR < mc)  // the next tile's C lines, as gemm_driver.h's macro
          for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NR; j += 16) __builtin_prefetch(c + (i0 + MR + i) * ldc + jp * NR + j, 1, 3);
        tile(i0, jp, mc, nc, kcp, A, bp, c, ldc, alpha, beta);
      }
    }
  }
};

#include "cpu/gemm_bf16_driver.h"

// One row of A times a row-major B (m == 1: a GEMV, B read once) without packing B,
// which would cost more than the product (measured 1 x 1024 x 1024: 0.20 ms packed, 2.6x
// dlkern's float32 GEMV). The pairs vdpbf16ps wants are zipped from two rows of B in
// registers: unpacklo/hi_epi16 interleave within 128-bit lanes, so each accumulator holds
// a fixed permutation of its 32 columns, undone once per depth block. B is walked row by
// row over column blocks of kBlock (up to 8 KiB of each row, sequential; a 32-column
// strip walked down 4096 rows was 3.6x slower, a page per row, and 1024-column blocks
// 1.4x slower at 1 x 4096 x 4096), the float32 accumulators of the block in L1. Same pairs, same depth blocks, same epilogue as the packed path: the
// result is the model's, bit for bit.
struct Gemv {
  static constexpr int64_t kBlock = 4096;  // columns per block (16 KiB of accumulators)

  static __mmask32 mask32(int64_t cols) { return cols >= 32 ? ~__mmask32(0) : (__mmask32(1) << cols) - 1; }

  // acc[2 s], acc[2 s + 1] (the lo/hi halves of step s) += pairs [q0, q1) of columns
  // [j0, j0 + cols).
  static void accumulate(const GemmBf16Args& g, int64_t q0, int64_t q1, int64_t j0, int64_t cols, __m512* acc) {
    const int64_t steps = (cols + 31) / 32;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t e = 2 * q, o = e + 1;
      const bool has_odd = o < g.k;
      const uint32_t ae = g.a[e * g.a_cs], ao = has_odd ? g.a[o * g.a_cs] : 0u;
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(ae | (ao << 16)));
      const uint16_t* re = g.b + e * g.b_rs + j0;
      const uint16_t* ro = re + g.b_rs;
      for (int64_t s = 0; s < steps; ++s) {
        const __mmask32 mk = mask32(cols - 32 * s);
        const __m512i be = _mm512_maskz_loadu_epi16(mk, re + 32 * s);
        const __m512i bo = has_odd ? _mm512_maskz_loadu_epi16(mk, ro + 32 * s) : _mm512_setzero_si512();
        acc[2 * s] = _mm512_dpbf16_ps(acc[2 * s], av, (__m512bh)_mm512_unpacklo_epi16(be, bo));
        acc[2 * s + 1] = _mm512_dpbf16_ps(acc[2 * s + 1], av, (__m512bh)_mm512_unpackhi_epi16(be, bo));
      }
    }
  }

  // C[j0, j0 + cols) = alpha * acc (+ beta * C), the packed kernel's epilogue.
  static void store(const GemmBf16Args& g, int64_t j0, int64_t cols, const __m512* acc, float beta) {
    // lo holds columns {0-3, 8-11, 16-19, 24-27} of its 32, hi {4-7, 12-15, 20-23, 28-31}.
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    const __m512 va = _mm512_set1_ps(g.alpha), vb = _mm512_set1_ps(beta);
    for (int64_t j = 0; j < cols; j += 16) {
      const int64_t s = j / 32;
      const __m512 sum = _mm512_permutex2var_ps(acc[2 * s], (j / 16) % 2 ? second : first, acc[2 * s + 1]);
      const int64_t left = cols - j;
      const __mmask16 m16 = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
      float* c = g.c + j0 + j;
      const __m512 v = _mm512_mul_ps(va, sum);
      _mm512_mask_storeu_ps(c, m16, beta == 0.0f ? v : _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m16, c), v));
    }
  }

  static void run(const GemmBf16Args& g, int nthreads) {
    const int64_t pairs = (g.k + 1) / 2, kcp = gemm_bf16_depth_block(g.k);
    // Narrower blocks where that gives every thread one (32-column multiples).
    const int64_t width = std::min(kBlock, (g.n + 32 * nthreads - 1) / (32 * nthreads) * 32);
    const int64_t blocks = (g.n + width - 1) / width;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      alignas(64) __m512 acc[kBlock / 16];
      const int64_t j0 = blk * width, cols = std::min(width, g.n - j0);
      for (int64_t q0 = 0; q0 < pairs; q0 += kcp) {
        for (int64_t i = 0; i < (cols + 31) / 32 * 2; ++i) acc[i] = _mm512_setzero_ps();
        accumulate(g, q0, std::min(pairs, q0 + kcp), j0, cols, acc);
        store(g, j0, cols, acc, q0 == 0 ? g.beta : 1.0f);
      }
    }
  }
};

}  // namespace

// MC = 192 rows: the packed A block (192 x 768 bf16, 288 KiB) in L2; NC = 4096 as float32.
void gemm_bf16(const GemmBf16Args& args, int nthreads) {
  if (args.m == 1 && args.b_cs == 1 && args.n >= 16) {
    Gemv::run(args, nthreads);
    return;
  }
  if (args.n <= 16)
    GemmBf16Driver<DpPolicy<16, 1>>::run(args, nthreads, 192, 4096);
  else if (args.n <= 32)
    GemmBf16Driver<DpPolicy<12, 2>>::run(args, nthreads, 192, 4096);
  else
    GemmBf16Driver<DpPolicy<6, 4>>::run(args, nthreads, 192, 4096);
}

}  // namespace dlkern::cpu::avx512bf16
#endif
