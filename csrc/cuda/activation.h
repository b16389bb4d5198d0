// Fused activations on strided loops (layout.h): GELU with the tanh approximation
// (GPT-2's), forward and backward in one pass each, the formulas of the CPU op
// (csrc/cpu/activation.h). float and double; queued on `stream`, launch failures throw
// cuda::Error naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include "cuda/layout.h"

namespace dlkern::cuda {

// y = x * sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3); loop operands (y, x).
template <typename T>
void gelu_tanh_forward(const StridedLoop& loop, T* y, const T* x, cudaStream_t stream, const char* op);

// dx = dy * (s + x s (1 - s) 2 dz/dx), s = sigmoid(2 z); loop operands (dx, dy, x).
template <typename T>
void gelu_tanh_backward(const StridedLoop& loop, T* dx, const T* dy, const T* x, cudaStream_t stream,
                        const char* op);

}  // namespace dlkern::cuda
