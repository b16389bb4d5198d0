// Device-side indexing of a StridedLoop (layout.h), shared by the .cu kernels.
#pragma once
#include <cstdint>

#include "cuda/layout.h"

namespace dlkern::cuda {

// Offsets (in elements) of linear element i in the loop's first N operands.
template <int N>
__device__ __forceinline__ void offsets_of(const StridedLoop& loop, int64_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = loop.ndim - 1; d >= 0; --d) {
    const int64_t size = loop.sizes[d];
    const int64_t idx = i % size;
    i /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += idx * loop.strides[k][d];
  }
}

}  // namespace dlkern::cuda
