// Fused optimizer steps on the CPU: one pass per parameter that reads param, grad and
// the state and writes param and the state, in place, where the NumPy composition
// (python/dlkern/optim/adam.py, sgd.py) makes about a dozen passes. The same contract
// as the CUDA kernels (cuda/optim.h), with the factors of common/optim_checks.h:
//   adam_step: p *= decay; g = (maximize ? -grad : grad) + l2 p;
//     m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (amsgrad: v_max <- max(v_max, v));
//     p <- p + step_size * m / (sqrt(v or v_max) / bias_correction2_sqrt + eps).
//   sgd_step: g as above; with momentum buf <- first ? g : momentum buf + (1 - dampening) g,
//     d = nesterov ? g + momentum buf : buf; p <- p + neg_lr d (buf untouched without).
// Contiguous arrays of n elements (the binding checks them); max_exp_avg_sq is read only
// with amsgrad and momentum_buffer only with momentum (else either may be null).
// Elementwise, so the blocks run on threads_for's threads with the same result.
#pragma once
#include <cstdint>

#include "../common/optim_checks.h"  // relative: see gemm.h

namespace dlkern::cpu {

template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               const AdamFactors& f);

template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, int64_t n, const SgdFactors& f);

}  // namespace dlkern::cpu
