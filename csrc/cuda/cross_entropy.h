// Fused cross-entropy (log-softmax + NLL over int64 class indices) on a CUDA device,
// with PyTorch's semantics for ignore_index, label_smoothing, class weights and
// reduction; the same formulas as cpu/cross_entropy.h. One thread block per row of a
// contiguous (rows, c) logits buffer: the bindings bring an (N, C, d1, ...) input's
// class axis last first. float and double. Work is queued on `stream`; launch failures
// throw cuda::Error naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dlkern::cuda {

enum class CeReduction { none, mean, sum };

// x: (rows, c); target: (rows); weight: (c) or nullptr. Writes loss (rows) (0 where
// target == ignore_index), lse (rows) and row_weight (rows): weight[target] (1 without
// weights), 0 for ignored rows, the mean's divisor terms. A target outside [0, c) that
// is not ignore_index gives a NaN loss and lowers *bad_index (initialised by the caller
// to UINT64_MAX) to the smallest such row, so the caller can report it.
template <typename T>
void cross_entropy_forward(const T* x, const int64_t* target, const T* weight, T* loss, T* lse, T* row_weight,
                           unsigned long long* bad_index, int64_t rows, int64_t c, int64_t ignore_index,
                           T label_smoothing, cudaStream_t stream, const char* op);

// *out = sum(loss) (sum) or sum(loss) / sum(row_weight) (mean; NaN when that is 0),
// accumulated in double by one block, so the result does not depend on scheduling.
template <typename T>
void cross_entropy_reduce(const T* loss, const T* row_weight, T* out, int64_t rows, CeReduction reduction,
                          cudaStream_t stream, const char* op);

// dx: (rows, c), overwritten. grad: (rows) for CeReduction::none, else one element
// (read on the device; nullptr means 1) times grad_scalar; for mean also divided by the sum over rows of
// weight[target] (computed here, in `scratch`: one double). Rows are recomputed from x
// (max and log-sum-exp) rather than the saved lse, as on the CPU, for accuracy with
// large logits. A row whose target is out of range gets NaN.
template <typename T>
void cross_entropy_backward(const T* grad, T grad_scalar, const T* x, const int64_t* target, const T* weight,
                            T* dx, double* scratch, int64_t rows, int64_t c, int64_t ignore_index,
                            CeReduction reduction, T label_smoothing, cudaStream_t stream, const char* op);

}  // namespace dlkern::cuda
