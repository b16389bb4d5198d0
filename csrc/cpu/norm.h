// Normalisation kernels on the CPU: layer norm, RMS norm, group norm and batch norm,
// forward and backward, float and double. Contiguous (row-major) arrays only; the
// bindings check shapes. Statistics are two-pass (shifted sum for the mean, then the
// sum of squared deviations with a correction term), so inputs with a large mean
// (1e4 + noise) keep their accuracy. OpenMP over rows / (n, group) / channels; weight
// and bias gradients are reduced from per-thread partial sums in a fixed order, so
// they are deterministic for a fixed thread count.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

// Layer norm over the last `cols` elements of each row.
// x, y: (rows, cols). weight, bias: (cols) or nullptr. mean, rstd: (rows), written
// here for the backward; rstd = 1 / sqrt(biased variance + eps).
template <typename T>
void layer_norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                        int64_t rows, int64_t cols, T eps);

// dy, x: (rows, cols); weight: (cols) or nullptr; mean, rstd from the forward.
// dx: (rows, cols). dweight, dbias: (cols), overwritten; nullptr to skip.
template <typename T>
void layer_norm_backward(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd,
                         T* dx, T* dweight, T* dbias, int64_t rows, int64_t cols);

// RMS norm: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps).
// x, y: (rows, cols); weight: (cols) or nullptr; rstd: (rows), written here.
template <typename T>
void rms_norm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t cols, T eps);

// dy, x: (rows, cols); dx: (rows, cols); dweight: (cols) overwritten, or nullptr.
template <typename T>
void rms_norm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx, T* dweight,
                       int64_t rows, int64_t cols);

// Group norm. x, y: (n, channels, inner) with channels % groups == 0; each (n, group)
// normalises its (channels / groups) * inner contiguous values.
// weight, bias: (channels) or nullptr. mean, rstd: (n, groups), written here.
template <typename T>
void group_norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                        int64_t n, int64_t channels, int64_t inner, int64_t groups, T eps);

// dy, x, dx: (n, channels, inner). dweight, dbias: (channels), overwritten; nullptr to skip.
template <typename T>
void group_norm_backward(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd,
                         T* dx, T* dweight, T* dbias, int64_t n, int64_t channels, int64_t inner,
                         int64_t groups);

// Batch norm. x, y: (n, channels, inner) (inner = 1 for (N, C) input).
// training: statistics of the batch (biased variance normalises; n * inner must be >= 2
// if running stats are updated, which the bindings check); running_mean/var
// (channels, or nullptr) are updated in place:
//   r = (1 - momentum) * r + momentum * stat, with the unbiased variance for running_var.
// Not training: running_mean/var (required) are the statistics.
// save_mean, save_rstd: (channels), the statistics used (rstd = 1 / sqrt(var + eps)).
template <typename T>
void batch_norm_forward(const T* x, const T* weight, const T* bias, T* running_mean, T* running_var,
                        T* y, T* save_mean, T* save_rstd, int64_t n, int64_t channels,
                        int64_t inner, bool training, T momentum, T eps);

// dy, x, dx: (n, channels, inner); save_mean/save_rstd from the forward.
// training: the statistics depended on x (full gradient); otherwise they were constants.
// dweight, dbias: (channels), overwritten; nullptr to skip.
template <typename T>
void batch_norm_backward(const T* dy, const T* x, const T* weight, const T* save_mean,
                         const T* save_rstd, T* dx, T* dweight, T* dbias, int64_t n,
                         int64_t channels, int64_t inner, bool training);

}  // namespace dlkern::cpu
