// The fused optimizer steps' scalar arguments, shared by the CPU and CUDA bindings
// (bind/optim.cpp, bind/cuda_optim.cpp) and free of Python: the checks (a state buffer
// the options need, step >= 1, finite rates), each throwing dlkern::ValueError naming the
// op and the argument, and the per-step factors both kernels use. Every factor is
// computed here in double; a kernel rounds each to its element type once, as NumPy does
// when it multiplies a float32 array by a Python float (python/dlkern/optim/adam.py,
// sgd.py compose the same arithmetic). Array checks (dtype, shape, contiguity) stay in
// the bindings: their array types differ.
#pragma once
#include <cstdint>

namespace dlkern {

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

// Host-computed factors of one SGD step.
struct SgdFactors {
  double l2;              // g += l2 * p (weight decay); 0 without
  double momentum;        // 0: plain SGD (the buffer is not touched)
  double one_minus_dampening;
  double neg_lr;          // -lr
  bool nesterov, maximize;
  bool first;             // the buffer is set to g (PyTorch's first momentum step)
};

// adam_step's scalars checked (has_max_buffer: max_exp_avg_sq was given) and turned
// into factors.
AdamFactors adam_factors(const char* op, bool has_max_buffer, int64_t step, double lr, double beta1, double beta2,
                         double eps, double weight_decay, bool decoupled, bool amsgrad, bool maximize);

// sgd_step's (has_buffer: momentum_buffer was given).
SgdFactors sgd_factors(const char* op, bool has_buffer, double lr, double momentum, double dampening,
                       double weight_decay, bool nesterov, bool maximize, bool first);

}  // namespace dlkern
