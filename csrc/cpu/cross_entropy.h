// Fused cross-entropy (log-softmax + negative log-likelihood over integer targets)
// on the CPU, with PyTorch's semantics for ignore_index, label_smoothing, class
// weights and reduction. float and double.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

enum class Reduction { none, mean, sum };

// Index of the first target that is neither in [0, c) nor ignore_index, or -1.
// The kernels below require valid targets: call this first.
int64_t cross_entropy_bad_target(const int64_t* target, int64_t count, int64_t c, int64_t ignore_index);

// x: (n, c, s) contiguous, classes on the middle axis (s = 1 for an (N, C) input).
// target: (n, s); weight: (c) or nullptr. Writes the unreduced per-sample losses
// loss (n, s) (0 where target == ignore_index) and the per-sample log-sum-exp
// lse (n, s) for the backward. Returns the sum of loss for Reduction::sum, the
// weighted mean for Reduction::mean (sum / sum of w[target] over non-ignored samples;
// NaN when that is 0, as PyTorch), 0 for Reduction::none.
template <typename T>
T cross_entropy_forward(const T* x, const int64_t* target, const T* weight, T* loss, T* lse, int64_t n,
                        int64_t c, int64_t s, int64_t ignore_index, Reduction reduction, T label_smoothing);

// grad: (n, s) for Reduction::none, else one value (the loss's cotangent).
// x, target, weight as in the forward, lse from it. dx: (n, c, s), overwritten.
template <typename T>
void cross_entropy_backward(const T* grad, const T* x, const int64_t* target, const T* lse, const T* weight,
                            T* dx, int64_t n, int64_t c, int64_t s, int64_t ignore_index, Reduction reduction,
                            T label_smoothing);

}  // namespace dlkern::cpu
