// Row-wise CUDA kernels, one warp per row: softmax / log_softmax and layer_norm,
// forward and backward, on contiguous (rows, cols) device buffers, float and double.
// Same contracts as the CPU kernels (cpu/softmax.h, cpu/norm.h) with inner == 1; the
// bindings bring other axes to the last one. Work is queued on `stream`; launch
// failures throw cuda::Error naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dlkern::cuda {

// y = softmax(x) (or log_softmax when log) over each row. A row of all -inf gives 0
// (softmax) or -inf (log_softmax), as on the CPU.
template <typename T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols, bool log, cudaStream_t stream,
                     const char* op);

// softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
template <typename T>
void softmax_backward(const T* dy, const T* y, T* dx, int64_t rows, int64_t cols, bool log,
                      cudaStream_t stream, const char* op);

// y = (x - mean) * rstd * weight + bias; mean, rstd: (rows), written here
// (rstd = 1 / sqrt(var + eps), biased variance). weight, bias: (cols) or nullptr.
// mean == nullptr gives RMS norm: y = x * rstd * weight (+ bias), rstd = 1 / sqrt(mean(x^2) + eps).
template <typename T>
void layer_norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                        int64_t rows, int64_t cols, T eps, cudaStream_t stream, const char* op);

// dx: (rows, cols); dweight, dbias: (cols), overwritten, or nullptr to skip; mean ==
// nullptr: the RMS-norm gradient (from the forward without centring). `scratch`
// holds param_grad_scratch(rows, cols) elements when dweight or dbias is wanted.
template <typename T>
void layer_norm_backward(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd,
                         T* dx, T* dweight, T* dbias, T* scratch, int64_t rows, int64_t cols,
                         cudaStream_t stream, const char* op);

// Elements of scratch layer_norm_backward needs for its column sums (host-only).
int64_t param_grad_scratch(int64_t rows, int64_t cols);

}  // namespace dlkern::cuda
