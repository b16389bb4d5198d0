// float16 (IEEE binary16) on the CPU, and the conversions between the float formats a
// 16-bit GEMM reads and writes. A half is stored as uint16_t bits.
#pragma once
#include <cstdint>

#include "bf16.h"  // relative: see gemm.h

namespace dlkern::cpu {

// dst[i] = x[i] rounded to float16, bit for bit NumPy's astype(np.float16): round to
// nearest even, subnormals rounded (not flushed), past the largest half to Inf, NaN
// payload's top bits kept. Active ISA (F16C where it has it), one thread.
void f16_from_f32(const float* x, uint16_t* dst, int64_t n);
// dst[i] = the float32 of half x[i] (exact; NaN bits kept as NumPy does).
void f16_to_f32(const uint16_t* x, float* dst, int64_t n);

// C (float32) = alpha * A B + beta * C with A and B as float16 bits: GemmBf16Args'
// contract. The bf16 fallback's loop nest on panels widened while packing, so it sums in
// the order gemm_bf16_model describes (products of halves are exact in float32).
void gemm_f16(const GemmBf16Args& args);

// The formats convert() moves between.
enum class FloatFormat { f32, f64, bf16, f16 };

// dst[i] = src[i] in format `to` (n elements, both contiguous, not overlapping), bit for
// bit NumPy's / ml_dtypes' astype: exact widening, RNE narrowing as above, bf16 <-> f16
// through float32 (exact then one rounding). float64 -> 16 bits rounds once, correctly
// (round-to-odd to float32, then RNE: float32 keeps more than 2 extra bits over either
// 16-bit format, so no double rounding); those and the widenings to float64 are scalar.
// Threads over blocks for large n; the same format copies.
void convert(const void* src, FloatFormat from, void* dst, FloatFormat to, int64_t n);

}  // namespace dlkern::cpu
