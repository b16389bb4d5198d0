// Elementwise kernels over strided loops (see layout.h: operand 0 is the output, then
// the inputs; any strides, 0 for broadcast dimensions). The work is queued on `stream`;
// launch failures throw cuda::Error naming `op`. Plain C++ header.
//
// Element types: float, double, int64_t, and uint8_t standing for bool (read as
// "nonzero", written as 0 or 1). The output may be the very same memory as an input
// (same address and strides: each thread reads its element before writing it); any
// other overlap must be resolved by the caller (layout.h's classify_alias).
// A null input pointer stands for the matching scalar in every position, so `x - 1`
// and `1 - x` need no broadcast array.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/device_array.h"
#include "cuda/layout.h"

namespace dlkern::cuda {

enum class UnaryOp {
  neg, exp, log, sqrt, abs, tanh, sigmoid, relu,
  sin, cos, sign, log1p, expm1, erf, square, reciprocal,
};
// add, sub, mul, maximum, minimum also run on int64 (wrapping like NumPy); the others
// are float-only (the bindings refuse int64 for them).
enum class BinaryOp { add, sub, mul, div, maximum, minimum, pow, logaddexp };
enum class CompareOp { greater, greater_equal, less, less_equal, equal, not_equal };
// logical_not reads only a.
enum class LogicalOp { logical_and, logical_or, logical_not };

// out = f(in); loop has operands (out, in). T: float or double.
template <typename T>
void unary(UnaryOp f, const StridedLoop& loop, T* out, const T* in, cudaStream_t stream,
           const char* op);

// out = f(a, b); loop has operands (out, a, b). T: float, double or int64_t.
template <typename T>
void binary(BinaryOp f, const StridedLoop& loop, T* out, const T* a, T a_scalar, const T* b,
            T b_scalar, cudaStream_t stream, const char* op);

// out (bool) = a <op> b; loop has operands (out, a, b). T: float, double, int64_t or
// uint8_t (bool). NaN compares as in NumPy: unequal to everything, unordered.
template <typename T>
void compare(CompareOp f, const StridedLoop& loop, uint8_t* out, const T* a, T a_scalar, const T* b,
             T b_scalar, cudaStream_t stream, const char* op);

// out (bool) = a and/or b, or not a; loop has operands (out, a, b) (out, a for not).
void logical(LogicalOp f, const StridedLoop& loop, uint8_t* out, const uint8_t* a, uint8_t a_scalar,
             const uint8_t* b, uint8_t b_scalar, cudaStream_t stream, const char* op);

// out = cond ? a : b; loop has operands (out, cond, a, b). T: any of the four.
template <typename T>
void where(const StridedLoop& loop, T* out, const uint8_t* cond, const T* a, T a_scalar, const T* b,
           T b_scalar, cudaStream_t stream, const char* op);

// out = min(max(in, lo), hi) as numpy.clip (NaN stays NaN); a bound is skipped when its
// has_ flag is false. loop has operands (out, in). T: float, double or int64_t.
template <typename T>
void clip(const StridedLoop& loop, T* out, const T* in, bool has_lo, T lo, bool has_hi, T hi,
          cudaStream_t stream, const char* op);

// out = value at every position; loop has the one operand (out). T: any of the four.
template <typename T>
void fill(const StridedLoop& loop, T* out, T value, cudaStream_t stream, const char* op);

// out[i] = start + i * step for i < n, out contiguous. Floats are computed in double
// and rounded once (as PyTorch does); int64 in integers.
void arange(int64_t n, void* out, DType dtype, double start_f, double step_f, int64_t start_i,
            int64_t step_i, cudaStream_t stream, const char* op);

// out = in converted between any two of the four dtypes, as NumPy's astype: float to
// int64 truncates toward zero, to bool is `!= 0`, bool to numbers is 0 or 1. loop has
// operands (out, in).
void convert(const StridedLoop& loop, void* out, DType out_dtype, const void* in, DType in_dtype,
             cudaStream_t stream, const char* op);

// out = in, element by element, for elements of `elem_bytes` (1, 4 or 8) bytes; loop has
// operands (out, in). Copies bit patterns, so it serves every dtype of that size.
void copy_strided(const StridedLoop& loop, void* out, const void* in, int elem_bytes,
                  cudaStream_t stream, const char* op);

}  // namespace dlkern::cuda
