// Reductions (plans in reduce.h). Block per output (or per output part): the block's
// threads stride over the reduced elements, then combine through warp shuffles and one
// shared-memory step; parts are combined by a second launch of the same kernel over the
// partial results. Thread per output: a plain loop. Accumulates in T.
#include "cuda/reduce.h"

#include <cuda_runtime.h>

#include <algorithm>

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

// The value stored for an output: a mean divides by the element count (NaN for none).
template <typename T>
__device__ __forceinline__ T finish(ReduceOp f, T acc, int64_t count) {
  if (f != ReduceOp::mean) return acc;
  return count ? acc / T(count) : T(NAN);
}

template <typename T>
__device__ __forceinline__ T combine(ReduceOp f, T a, T b) {
  switch (f) {
    case ReduceOp::amax: return (a != a || a > b) ? a : b;
    case ReduceOp::amin: return (a != a || a < b) ? a : b;
    default: return a + b;
  }
}

// Work item w covers part (w % splits) of output (w / splits): elements
// [part * chunk, min(R, (part + 1) * chunk)). With splits == 1 the result goes to the
// output (mean divided by mean_count); else, unscaled, to partial[w].
template <typename T>
__global__ void __launch_bounds__(kThreads) reduce_blocks_kernel(ReduceOp f, const StridedLoop out_loop,
                                                                 const StridedLoop red_loop, T* __restrict__ out,
                                                                 const T* __restrict__ in, int64_t splits,
                                                                 int64_t chunk, int64_t mean_count) {
  __shared__ T partial[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t items = out_loop.numel * splits;
  for (int64_t w = blockIdx.x; w < items; w += gridDim.x) {
    const int64_t o = w / splits, part = w % splits;
    int64_t out_off[2];
    offsets_of<2>(out_loop, o, out_off);
    const T* base = in + out_off[1];
    const int64_t r0 = part * chunk;
    const int64_t r1 = r0 + chunk < red_loop.numel ? r0 + chunk : red_loop.numel;
    T acc = identity<T>(f);
    for (int64_t r = r0 + threadIdx.x; r < r1; r += kThreads) {
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
        if (splits > 1) {
          out[w] = acc;
        } else {
          out[out_off[0]] = finish(f, acc, mean_count);
        }
      }
    }
    // partial[] is rewritten by the next item's warps.
    __syncthreads();
  }
}

template <typename T>
__global__ void reduce_threads_kernel(ReduceOp f, const StridedLoop out_loop, const StridedLoop red_loop,
                                      T* __restrict__ out, const T* __restrict__ in, int64_t mean_count) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < out_loop.numel; o += step) {
    int64_t out_off[2];
    offsets_of<2>(out_loop, o, out_off);
    const T* base = in + out_off[1];
    T acc = identity<T>(f);
    for (int64_t r = 0; r < red_loop.numel; ++r) {
      int64_t off[1];
      offsets_of<1>(red_loop, r, off);
      acc = combine(f, acc, base[off[0]]);
    }
    out[out_off[0]] = finish(f, acc, mean_count);
  }
}

unsigned grid_for(int64_t items) { return static_cast<unsigned>(items < 65536 ? items : 65536); }

}  // namespace

ReducePlan plan_reduce(const ReduceLayout& layout) {
  const StridedLoop &out = layout.out_loop, &red = layout.reduce_loop;
  ReducePlan plan;
  plan.chunk = red.numel;
  if (out.numel == 0 || red.numel == 0) return plan;
  const bool outputs_adjacent = out.strides[1][out.ndim - 1] == 1 && out.sizes[out.ndim - 1] > 1;
  const bool elements_adjacent = red.strides[0][red.ndim - 1] == 1;
  if (outputs_adjacent && !elements_adjacent && out.numel >= 1024) {
    plan.threads_per_output = true;
    return plan;
  }
  // Few outputs with many elements: at least ~16K elements per part, at most 1024 parts.
  constexpr int64_t kPartElements = 16384, kMaxParts = 1024;
  if (out.numel < 128 && red.numel >= 2 * kPartElements) {
    plan.splits = std::min<int64_t>((red.numel + kPartElements - 1) / kPartElements, kMaxParts);
    plan.chunk = (red.numel + plan.splits - 1) / plan.splits;
    plan.scratch = out.numel * plan.splits;
  }
  return plan;
}

template <typename T>
void reduce(ReduceOp f, const ReduceLayout& layout, T* out, const T* in, T* scratch, cudaStream_t stream,
            const char* op) {
  const int64_t outputs = layout.out_loop.numel, count = layout.reduce_loop.numel;
  if (outputs == 0) return;
  const ReducePlan plan = plan_reduce(layout);
  if (plan.threads_per_output) {
    reduce_threads_kernel<T><<<grid_for((outputs + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
        f, layout.out_loop, layout.reduce_loop, out, in, count);
    check_launch(op);
    return;
  }
  if (plan.splits == 1) {
    reduce_blocks_kernel<T><<<grid_for(outputs), kThreads, 0, stream>>>(f, layout.out_loop, layout.reduce_loop,
                                                                       out, in, 1, plan.chunk, count);
    check_launch(op);
    return;
  }
  // Pass 1: partial results, (outputs, splits) contiguous in scratch. Pass 2: each
  // output combines its row of partials (a mean is a sum of sums, divided by count).
  reduce_blocks_kernel<T><<<grid_for(outputs * plan.splits), kThreads, 0, stream>>>(
      f, layout.out_loop, layout.reduce_loop, scratch, in, plan.splits, plan.chunk, count);
  check_launch(op);
  // Output o reads its partials at scratch + o * splits: the output loop's own strides
  // (contiguous over its sizes, as the output array is) times splits.
  StridedLoop final_out = layout.out_loop;
  for (int d = 0; d < final_out.ndim; ++d) final_out.strides[1][d] = final_out.strides[0][d] * plan.splits;
  const StridedLoop row = make_loop({plan.splits}, {{1}});
  reduce_blocks_kernel<T><<<grid_for(outputs), kThreads, 0, stream>>>(f, final_out, row, out, scratch, 1,
                                                                     plan.splits, count);
  check_launch(op);
}

template void reduce<float>(ReduceOp, const ReduceLayout&, float*, const float*, float*, cudaStream_t, const char*);
template void reduce<double>(ReduceOp, const ReduceLayout&, double*, const double*, double*, cudaStream_t,
                             const char*);

}  // namespace dlkern::cuda
