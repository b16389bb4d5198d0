// Fused optimizer updates: one pass over a parameter and its state per step, where the
// composed elementwise form takes about a dozen launches per parameter. The arithmetic
// is the CPU path's (python/dlkern/optim/adam.py, sgd.py), step by step, with every
// scalar factor computed on the host in double and rounded to T once, as NumPy does
// when it multiplies a float32 array by a Python float. Contiguous arrays of n
// elements; float and double; queued on `stream`, launch failures throw cuda::Error
// naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dlkern::cuda {

// Host-computed factors of one Adam/AdamW step.
struct AdamFactors {
  double decay;          // p *= decay first (decoupled weight decay, AdamW); 1 otherwise
  double l2;             // g += l2 * p (coupled weight decay, Adam); 0 otherwise
  double beta1, one_minus_beta1, beta2, one_minus_beta2;
  double bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  double eps;
  double step_size;      // -lr / (1 - beta1^step)
  bool amsgrad, maximize;
};

// m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (amsgrad: v_max <- max(v_max, v));
// p <- p + step_size * m / (sqrt(v or v_max) / bias_correction2_sqrt + eps).
// max_exp_avg_sq is read only with amsgrad (may be null otherwise).
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               const AdamFactors& f, cudaStream_t stream, const char* op);

// Host-computed factors of one SGD step.
struct SgdFactors {
  double l2;              // g += l2 * p (weight decay); 0 without
  double momentum;        // 0: plain SGD (the buffer is not touched)
  double one_minus_dampening;
  double neg_lr;          // -lr
  bool nesterov, maximize;
  bool first;             // the buffer is set to g (PyTorch's first momentum step)
};

// g = (maximize ? -grad : grad) + l2 p; with momentum: buf <- first ? g : momentum buf +
// (1 - dampening) g, then d = nesterov ? g + momentum buf : buf; p <- p + neg_lr d.
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, int64_t n, const SgdFactors& f, cudaStream_t stream,
              const char* op);

}  // namespace dlkern::cuda
