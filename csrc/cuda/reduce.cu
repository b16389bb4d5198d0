// Reductions: one block per output element (grid-stride over outputs); the block's
// threads stride over the reduced elements, then combine through warp shuffles and one
// shared-memory step. Accumulates in T (pairwise through the tree).
// Not yet done: splitting one huge reduction over several blocks (a full sum of a very
// large array runs on one block).
#include "cuda/reduce.h"

#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/strided_loop.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <typename T>
__device__ __forceinline__ T identity(ReduceOp f) {
  // NaN-free start values; NaN in the data still wins in combine().
  if (f == ReduceOp::amax) return -INFINITY;
  if (f == ReduceOp::amin) return INFINITY;
  return T(0);
}

template <typename T>
__device__ __forceinline__ T combine(ReduceOp f, T a, T b) {
  switch (f) {
    case ReduceOp::amax: return (a != a || a > b) ? a : b;
    case ReduceOp::amin: return (a != a || a < b) ? a : b;
    default: return a + b;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_kernel(ReduceOp f, const StridedLoop out_loop,
                                                          const StridedLoop red_loop,
                                                          T* __restrict__ out,
                                                          const T* __restrict__ in) {
  __shared__ T partial[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t o = blockIdx.x; o < out_loop.numel; o += gridDim.x) {
    int64_t out_off[2];
    offsets_of<2>(out_loop, o, out_off);
    const T* base = in + out_off[1];
    T acc = identity<T>(f);
    for (int64_t r = threadIdx.x; r < red_loop.numel; r += kThreads) {
      int64_t off[1];
      offsets_of<1>(red_loop, r, off);
      acc = combine(f, acc, base[off[0]]);
    }
#pragma unroll
    for (int s = 16; s > 0; s /= 2) acc = combine(f, acc, __shfl_down_sync(0xffffffffu, acc, s));
    if (lane == 0) partial[warp] = acc;
    __syncthreads();
    if (warp == 0) {
      acc = lane < kWarps ? partial[lane] : identity<T>(f);
#pragma unroll
      for (int s = 16; s > 0; s /= 2) acc = combine(f, acc, __shfl_down_sync(0xffffffffu, acc, s));
      if (lane == 0) {
        if (f == ReduceOp::mean) acc = red_loop.numel ? acc / T(red_loop.numel) : T(NAN);
        out[out_off[0]] = acc;
      }
    }
    // partial[] is rewritten by the next output's warps.
    __syncthreads();
  }
}

}  // namespace

template <typename T>
void reduce(ReduceOp f, const ReduceLayout& layout, T* out, const T* in, cudaStream_t stream,
            const char* op) {
  const int64_t outputs = layout.out_loop.numel;
  if (outputs == 0) return;
  const unsigned blocks = static_cast<unsigned>(outputs < 65536 ? outputs : 65536);
  reduce_kernel<T><<<blocks, kThreads, 0, stream>>>(f, layout.out_loop, layout.reduce_loop, out, in);
  check_launch(op);
}

template void reduce<float>(ReduceOp, const ReduceLayout&, float*, const float*, cudaStream_t, const char*);
template void reduce<double>(ReduceOp, const ReduceLayout&, double*, const double*, cudaStream_t, const char*);

}  // namespace dlkern::cuda
