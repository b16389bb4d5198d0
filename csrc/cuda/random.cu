// Counter-based rand / randn (the hash is in random.h, shared with the host twin).
// A grid-stride loop: each element (each pair for randn, which yields two per
// Box-Muller step) depends only on its index, so the grid size is free.
#include "cuda/random.h"

#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/launch.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;


template <typename T>
__global__ void uniform_kernel(T* __restrict__ out, int64_t n, uint64_t key) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    out[i] = rng::uniform_at<T>(key, static_cast<uint64_t>(i));
}

// Thread per pair p: elements 2p and 2p + 1 (the last pair of an odd n writes one).
template <typename T>
__global__ void normal_kernel(T* __restrict__ out, int64_t n, uint64_t key) {
  const int64_t pairs = (n + 1) / 2;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs; p += step) {
    double even, odd;
    rng::normal_pair(key, static_cast<uint64_t>(p), &even, &odd);
    out[2 * p] = static_cast<T>(even);
    if (2 * p + 1 < n) out[2 * p + 1] = static_cast<T>(odd);
  }
}

}  // namespace

template <typename T>
void rand_uniform(T* out, int64_t n, uint64_t seed, cudaStream_t stream, const char* op) {
  if (n == 0) return;
  uniform_kernel<T><<<grid_stride_blocks(n, kThreads), kThreads, 0, stream>>>(out, n,
                                                                             rng::key(seed, rng::kUniformStream));
  check_launch(op);
}

template <typename T>
void rand_normal(T* out, int64_t n, uint64_t seed, cudaStream_t stream, const char* op) {
  if (n == 0) return;
  normal_kernel<T><<<grid_stride_blocks((n + 1) / 2, kThreads), kThreads, 0, stream>>>(
      out, n, rng::key(seed, rng::kNormalStream));
  check_launch(op);
}

template void rand_uniform<float>(float*, int64_t, uint64_t, cudaStream_t, const char*);
template void rand_uniform<double>(double*, int64_t, uint64_t, cudaStream_t, const char*);
template void rand_normal<float>(float*, int64_t, uint64_t, cudaStream_t, const char*);
template void rand_normal<double>(double*, int64_t, uint64_t, cudaStream_t, const char*);

}  // namespace dlkern::cuda
