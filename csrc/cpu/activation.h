// Elementwise activations whose NumPy form costs many memory passes. One so far: GELU
// with the tanh approximation (GPT-2's), which runs on every transformer MLP.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

// y = 0.5 x (1 + tanh(z)) = x * sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3).
// x, y: n contiguous elements (y may be x: in place). Threads over blocks.
template <typename T>
void gelu_tanh_forward(const T* x, T* y, int64_t n);

// dx = dy * (s + x s (1 - s) 2 dz/dx) with s = sigmoid(2 z), dz/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
// dy, x, dx: n contiguous elements (dx may be dy). Nothing is saved by the forward.
template <typename T>
void gelu_tanh_backward(const T* dy, const T* x, T* dx, int64_t n);

}  // namespace dlkern::cpu
