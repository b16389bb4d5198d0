// Reductions over a ReduceLayout (layout.h): each output element combines the input
// elements its reduce_loop walks. float and double; the work is queued on `stream`,
// launch failures throw cuda::Error naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include "cuda/layout.h"

namespace dlkern::cuda {

// amax/amin propagate NaN, as NumPy's. An empty reduce_loop (no elements) gives
// 0 for sum and NaN for mean; amax/amin must be rejected by the caller before.
enum class ReduceOp { sum, mean, amax, amin };

template <typename T>
void reduce(ReduceOp f, const ReduceLayout& layout, T* out, const T* in, cudaStream_t stream,
            const char* op);

}  // namespace dlkern::cuda
