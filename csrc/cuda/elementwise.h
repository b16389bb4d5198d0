// Elementwise kernels over strided loops (see layout.h: operand 0 is the output, then
// the inputs; any strides, 0 for broadcast dimensions). float and double. The work is
// queued on `stream`; launch failures throw cuda::Error naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/layout.h"

namespace dlkern::cuda {

enum class UnaryOp { neg, exp, log, sqrt, abs, tanh, sigmoid, relu };
enum class BinaryOp { add, sub, mul, div, maximum, minimum, pow };

// out = f(in); loop has operands (out, in).
template <typename T>
void unary(UnaryOp f, const StridedLoop& loop, T* out, const T* in, cudaStream_t stream,
           const char* op);

// out = f(a, b); loop has operands (out, a, b). A null a (or b) stands for the scalar
// a_scalar (b_scalar) in every position, so `x - 1` and `1 - x` need no broadcast array.
template <typename T>
void binary(BinaryOp f, const StridedLoop& loop, T* out, const T* a, T a_scalar, const T* b,
            T b_scalar, cudaStream_t stream, const char* op);

// out = in, element by element, for elements of `elem_bytes` (4 or 8) bytes; loop has
// operands (out, in). Copies bit patterns, so it serves every dtype of that size.
void copy_strided(const StridedLoop& loop, void* out, const void* in, int elem_bytes,
                  cudaStream_t stream, const char* op);

}  // namespace dlkern::cuda
