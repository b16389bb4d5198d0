// bfloat16 on the CPU: conversions and the bf16 x bf16 -> float32 GEMM.
// A bf16 value is stored as uint16_t: the high half of the float32 with the same sign,
// exponent and top 7 mantissa bits.
#pragma once
#include <cstdint>

#include "gemm.h"  // relative: the installed header set has no csrc/ on the path

namespace dlkern::cpu {

// dst[i] = x[i] rounded to bf16, round-to-nearest-even; denormals are rounded like any
// other value (not flushed), Inf stays Inf, a NaN stays a NaN (made quiet, sign kept),
// a finite value past the largest bf16 becomes Inf. Active ISA, one thread.
void bf16_from_f32(const float* x, uint16_t* dst, int64_t n);
// dst[i] = the float32 of bf16 x[i] (exact).
void bf16_to_f32(const uint16_t* x, float* dst, int64_t n);

// C (float32) = alpha * A B + beta * C with A (m, k) and B (k, n) in bf16: GemmArgs'
// contract (cpu/gemm.h: element strides, C with unit column stride, beta == 0 makes C
// write-only) with A and B as uint16_t bf16 bits.
using GemmBf16Args = GemmArgs<float, uint16_t>;

// Which kernel runs the product: the best the active ISA has (vdpbf16ps where the CPU
// has AVX-512 BF16 and the ISA is avx512), or the float32 micro-kernel on converted
// panels (every ISA), or vdpbf16ps required (std::runtime_error where it cannot run).
enum class Bf16Path { best, fallback, dpbf16 };

// Every path computes exactly what gemm_bf16_model computes (with flush_denormals on
// the dpbf16 path, off on the fallback): the K axis is split into pairs (an odd K gets
// a zero last element), each pair accumulated as vdpbf16ps does, the pairs in depth
// blocks of gemm_bf16_depth_block(k) pairs; the result is therefore the same for every
// thread count and, away from denormals, for every path.
void gemm_bf16(const GemmBf16Args& args, Bf16Path path = Bf16Path::best);

// Whether the dpbf16 path can run here (compiled in, CPU has AVX-512 BF16) at all;
// Bf16Path::best uses it when this holds and the active ISA is avx512.
bool gemm_bf16_has_dpbf16();

// Pairs per depth block for a product of depth k.
int64_t gemm_bf16_depth_block(int64_t k);

// The scalar model of the kernels, one element at a time, after Intel's pseudo-code of
// VDPBF16PS: per pair (even element e, odd element o) the accumulator takes
//   acc = round(acc + a_o * b_o); acc = round(acc + a_e * b_e)
// (bf16 products are exact in float32; each addition rounds to nearest even), and with
// flush_denormals the instruction's DAZ/FTZ: denormal inputs read as zero, denormal
// results become zero. Per depth block the accumulator starts at 0 and C takes
// alpha * acc (the first block, beta == 0), fma(beta, C, alpha * acc) (the first
// block) or C + alpha * acc (later blocks).
void gemm_bf16_model(const GemmBf16Args& args, bool flush_denormals);

}  // namespace dlkern::cpu
