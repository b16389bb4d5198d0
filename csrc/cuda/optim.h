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

#include "common/optim_checks.h"  // AdamFactors, SgdFactors (computed on the host)

namespace dlkern::cuda {

// m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (amsgrad: v_max <- max(v_max, v));
// p <- p + step_size * m / (sqrt(v or v_max) / bias_correction2_sqrt + eps).
// max_exp_avg_sq is read only with amsgrad (may be null otherwise).
template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               const AdamFactors& f, cudaStream_t stream, const char* op);

// g = (maximize ? -grad : grad) + l2 p; with momentum: buf <- first ? g : momentum buf +
// (1 - dampening) g, then d = nesterov ? g + momentum buf : buf; p <- p + neg_lr d.
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, int64_t n, const SgdFactors& f, cudaStream_t stream,
              const char* op);

}  // namespace dlkern::cuda
