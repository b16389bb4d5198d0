// Elementwise activations whose NumPy form costs many memory passes, one fused pass each
// way. Each is one row of DLKERN_ACTIVATIONS below: the name (Python's dlkern.ops.<name>
// and <name>_backward) and its kernel struct in cpu/activation_kernels.h. The dispatch
// table (cpu/isa.h), the bindings (bind/activation.cpp) and the kernel name list
// (bind/kernels.h) are all made from this list, so adding an activation is a row here and
// a struct there.
#pragma once
#include <cstdint>

// X(name, Kernel):
//  gelu_tanh  y = x * sigmoid(2 z), z = sqrt(2/pi) (x + 0.044715 x^3) (GPT-2's GELU);
//             dx = dy * (s + x s (1 - s) 2 dz/dx), s = sigmoid(2 z).
//  gelu_erf   y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)) (the exact GELU);
//             dx = dy * (Phi(x) + x phi(x)), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
#define DLKERN_ACTIVATIONS(X) \
  X(gelu_tanh, GeluTanh)      \
  X(gelu_erf, GeluErf)

// Elementwise functions with a forward only (their gradient is plain NumPy / device math
// in the Function), bound as <name>(x, out=None), the signature of the CUDA module's
// array primitive of the same name. X(name, Kernel); the kernel struct has forward(x, y, n).
//  erf        y = erf(x).
#define DLKERN_UNARY_KERNELS(X) \
  X(erf, Erf)

namespace dlkern::cpu {

enum class Activation : int {
#define DLKERN_ACTIVATION_ENUM(name, Kernel) name,
  DLKERN_ACTIVATIONS(DLKERN_ACTIVATION_ENUM)
#undef DLKERN_ACTIVATION_ENUM
};

enum class Unary : int {
#define DLKERN_UNARY_ENUM(name, Kernel) name,
  DLKERN_UNARY_KERNELS(DLKERN_UNARY_ENUM)
#undef DLKERN_UNARY_ENUM
};

#define DLKERN_LIST_COUNT(name, Kernel) +1
inline constexpr int kActivations = 0 DLKERN_ACTIVATIONS(DLKERN_LIST_COUNT);
inline constexpr int kUnaryKernels = 0 DLKERN_UNARY_KERNELS(DLKERN_LIST_COUNT);
#undef DLKERN_LIST_COUNT

// y = f(x). x, y: n contiguous elements (y may be x: in place). Threads over blocks.
template <typename T>
void activation_forward(Activation f, const T* x, T* y, int64_t n);

// dx = dy * f'(x), recomputed from x (the forward saves nothing).
// dy, x, dx: n contiguous elements (dx may be dy).
template <typename T>
void activation_backward(Activation f, const T* dy, const T* x, T* dx, int64_t n);

// y = f(x) for a row of DLKERN_UNARY_KERNELS (y may be x). Threads over blocks.
template <typename T>
void unary_forward(Unary f, const T* x, T* y, int64_t n);

}  // namespace dlkern::cpu
