// Fused Adam/AdamW and SGD steps (see optim.h): a grid-stride pass per parameter,
// reading each state element once and writing it once.
#include "cuda/optim.h"

#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/launch.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;

// numpy.maximum: NaN if either is NaN (CUDA's max() would drop a NaN).
template <typename T>
__device__ __forceinline__ T nan_max(T a, T b) {
  return a != a ? a : (b != b ? b : (a > b ? a : b));
}

// Factors rounded to T once, as the CPU path's NumPy scalars are.
template <typename T>
struct AdamScalars {
  T decay, l2, beta1, one_minus_beta1, beta2, one_minus_beta2, bias_correction2_sqrt, eps, step_size;
  bool decayed, coupled, amsgrad, maximize;
};

template <typename T>
__global__ void adam_kernel(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ exp_avg,
                            T* __restrict__ exp_avg_sq, T* __restrict__ max_exp_avg_sq, const int64_t n,
                            const AdamScalars<T> s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    T p = param[i];
    if (s.decayed) p = p * s.decay;
    T g = s.maximize ? -grad[i] : grad[i];
    if (s.coupled) g = p * s.l2 + g;
    const T m = exp_avg[i] * s.beta1 + g * s.one_minus_beta1;
    const T v = exp_avg_sq[i] * s.beta2 + (g * g) * s.one_minus_beta2;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    T vhat = v;
    if (s.amsgrad) {
      vhat = nan_max(max_exp_avg_sq[i], v);
      max_exp_avg_sq[i] = vhat;
    }
    const T denom = sqrt(vhat) / s.bias_correction2_sqrt + s.eps;
    param[i] = p + (m / denom) * s.step_size;
  }
}

template <typename T>
struct SgdScalars {
  T l2, momentum, one_minus_dampening, neg_lr;
  bool coupled, use_momentum, nesterov, maximize, first;
};

template <typename T>
__global__ void sgd_kernel(T* __restrict__ param, const T* __restrict__ grad, T* __restrict__ buf, const int64_t n,
                           const SgdScalars<T> s) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T p = param[i];
    T g = s.maximize ? -grad[i] : grad[i];
    if (s.coupled) g = p * s.l2 + g;
    if (s.use_momentum) {
      const T b = s.first ? g : buf[i] * s.momentum + g * s.one_minus_dampening;
      buf[i] = b;
      g = s.nesterov ? g + b * s.momentum : b;
    }
    param[i] = p + g * s.neg_lr;
  }
}

}  // namespace

template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               const AdamFactors& f, cudaStream_t stream, const char* op) {
  if (n == 0) return;
  const AdamScalars<T> s{T(f.decay), T(f.l2), T(f.beta1), T(f.one_minus_beta1), T(f.beta2), T(f.one_minus_beta2),
                         T(f.bias_correction2_sqrt), T(f.eps), T(f.step_size), f.decay != 1.0, f.l2 != 0.0,
                         f.amsgrad, f.maximize};
  adam_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(param, grad, exp_avg, exp_avg_sq,
                                                                            max_exp_avg_sq, n, s);
  check_launch(op);
}

template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, int64_t n, const SgdFactors& f, cudaStream_t stream,
              const char* op) {
  if (n == 0) return;
  const SgdScalars<T> s{T(f.l2), T(f.momentum), T(f.one_minus_dampening), T(f.neg_lr), f.l2 != 0.0,
                        f.momentum != 0.0, f.nesterov, f.maximize, f.first};
  sgd_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(param, grad, momentum_buffer, n, s);
  check_launch(op);
}

template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, const AdamFactors&,
                               cudaStream_t, const char*);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, const AdamFactors&,
                                cudaStream_t, const char*);
template void sgd_step<float>(float*, const float*, float*, int64_t, const SgdFactors&, cudaStream_t, const char*);
template void sgd_step<double>(double*, const double*, double*, int64_t, const SgdFactors&, cudaStream_t,
                               const char*);

}  // namespace dlkern::cuda
