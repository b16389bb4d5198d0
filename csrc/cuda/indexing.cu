// Gathers, scatters and arg-reductions (contracts in indexing.h). The host plans turn
// every indexing op into one strided loop over the index space, so a single gather and
// a single scatter kernel serve take, take_along_axis, put_along_axis and add_at, on
// any strides and without copies. Out-of-range indices are reported through one
// device word instead of a trap, so the context stays usable after the error.
#include "cuda/indexing.h"

#include <cuda_runtime.h>

#include <stdexcept>

#include "cuda/check.h"
#include "cuda/strided_loop.cuh"
#include "cuda/launch.cuh"

namespace dlkern::cuda {

// ---------------------------------------------------------------------------
// Host plans
// ---------------------------------------------------------------------------

IndexPlan plan_take(const Shape& x_shape, const Shape& x_strides, const Shape& index_shape,
                    const Shape& index_strides, int axis) {
  IndexPlan p;
  p.axis_size = x_shape[axis];
  p.axis_stride = x_strides[axis];
  for (int d = 0; d < axis; ++d) {
    p.out_shape.push_back(x_shape[d]);
    p.x_strides.push_back(x_strides[d]);
    p.index_strides.push_back(0);
  }
  for (size_t d = 0; d < index_shape.size(); ++d) {
    p.out_shape.push_back(index_shape[d]);
    p.x_strides.push_back(0);
    p.index_strides.push_back(index_strides[d]);
  }
  for (size_t d = axis + 1; d < x_shape.size(); ++d) {
    p.out_shape.push_back(x_shape[d]);
    p.x_strides.push_back(x_strides[d]);
    p.index_strides.push_back(0);
  }
  return p;
}

IndexPlan plan_along_axis(const Shape& x_shape, const Shape& x_strides, const Shape& index_shape,
                          const Shape& index_strides, int axis) {
  if (x_shape.size() != index_shape.size())
    throw std::invalid_argument("indices has shape " + shape_str(index_shape) + " (" +
                                std::to_string(index_shape.size()) + " dimensions) but x has shape " +
                                shape_str(x_shape) + " (" + std::to_string(x_shape.size()) +
                                "); they must have the same number of dimensions");
  IndexPlan p;
  p.axis_size = x_shape[axis];
  p.axis_stride = x_strides[axis];
  for (size_t d = 0; d < x_shape.size(); ++d) {
    if (static_cast<int>(d) == axis) {
      p.out_shape.push_back(index_shape[d]);
      p.x_strides.push_back(0);
      p.index_strides.push_back(index_strides[d]);
      continue;
    }
    const int64_t xs = x_shape[d], is = index_shape[d];
    if (xs != is && xs != 1 && is != 1)
      throw std::invalid_argument("x of shape " + shape_str(x_shape) + " and indices of shape " +
                                  shape_str(index_shape) + " do not broadcast on axis " + std::to_string(d) +
                                  " (every axis but the indexed one must match or be 1)");
    const int64_t n = xs == 1 ? is : xs;
    p.out_shape.push_back(n);
    p.x_strides.push_back(xs == 1 && n != 1 ? 0 : x_strides[d]);
    p.index_strides.push_back(is == 1 && n != 1 ? 0 : index_strides[d]);
  }
  return p;
}

IndexPlan plan_add_at(const Shape& x_shape, const Shape& x_strides, const Shape& index_shape,
                      const Shape& index_strides) {
  return plan_take(x_shape, x_strides, index_shape, index_strides, 0);
}

StridedLoop index_loop(const IndexPlan& plan, const Shape& dense_strides) {
  return make_loop(plan.out_shape, {dense_strides, plan.x_strides, plan.index_strides});
}

int64_t index_offset_at(const StridedLoop& loop, int64_t pos) {
  int64_t off = 0;
  for (int d = loop.ndim - 1; d >= 0; --d) {
    off += (pos % loop.sizes[d]) * loop.strides[2][d];
    pos /= loop.sizes[d];
  }
  return off;
}

namespace {

constexpr int kThreads = 256;


// The wrapped index, or -1 (and the position recorded) when it is out of range.
__device__ __forceinline__ int64_t checked_index(int64_t j, int64_t size, int64_t pos,
                                                 unsigned long long* bad) {
  if (j < 0) j += size;
  if (j < 0 || j >= size) {
    atomicMin(bad, static_cast<unsigned long long>(pos));
    return -1;
  }
  return j;
}

template <typename T>
__global__ void gather_kernel(const StridedLoop loop, int64_t axis_size, int64_t axis_stride,
                              T* __restrict__ out, const T* __restrict__ x, const int64_t* __restrict__ index,
                              unsigned long long* bad) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < loop.numel; i += step) {
    int64_t off[3];
    offsets_of<3>(loop, i, off);
    const int64_t j = checked_index(index[off[2]], axis_size, i, bad);
    out[off[0]] = j < 0 ? T(0) : x[off[1] + j * axis_stride];
  }
}

// atomicAdd for the three element types (int64 through the unsigned overload: two's
// complement addition is the same bits).
__device__ __forceinline__ void atomic_add(float* p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(double* p, double v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(int64_t* p, int64_t v) {
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}
// bool (a byte): numpy.add.at on bool is a logical or, so every writer stores the same 1
// and no atomic is needed (a byte atomicAdd does not exist; bool x used to be skipped).
__device__ __forceinline__ void atomic_add(uint8_t* p, uint8_t v) {
  if (v) *p = 1;
}

template <typename T>
__global__ void scatter_kernel(const StridedLoop loop, int64_t axis_size, int64_t axis_stride, T* x,
                               const T* __restrict__ values, T scalar, const int64_t* __restrict__ index,
                               bool accumulate, unsigned long long* bad) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < loop.numel; i += step) {
    int64_t off[3];
    offsets_of<3>(loop, i, off);
    const int64_t j = checked_index(index[off[2]], axis_size, i, bad);
    if (j < 0) continue;
    const T v = values ? values[off[0]] : scalar;
    T* dst = x + off[1] + j * axis_stride;
    if (accumulate)
      atomic_add(dst, v);
    else
      *dst = v;
  }
}

// ---------------------------------------------------------------------------
// argmax / argmin
// ---------------------------------------------------------------------------

// A candidate: value and its position; position INT64_MAX marks "none yet".
template <typename T>
struct Best {
  T v;
  int64_t i;
};

// True when a should be kept over b: NaN beats numbers, then the larger (smaller)
// value, then the earlier position, so the result is the first extreme whatever order
// the threads combined in.
template <typename T>
__device__ __forceinline__ bool keeps(ArgOp f, const Best<T>& a, const Best<T>& b) {
  const bool a_nan = a.v != a.v, b_nan = b.v != b.v;  // always false for int64
  if (a_nan || b_nan) return a_nan && (!b_nan || a.i < b.i);
  if (a.v != b.v) return f == ArgOp::argmax ? a.v > b.v : a.v < b.v;
  return a.i < b.i;
}

template <typename T>
__device__ __forceinline__ Best<T> better(ArgOp f, const Best<T>& a, const Best<T>& b) {
  return keeps(f, a, b) ? a : b;
}

template <typename T>
__device__ __forceinline__ Best<T> shfl_down(const Best<T>& b, int s) {
  return {__shfl_down_sync(0xffffffffu, b.v, s), __shfl_down_sync(0xffffffffu, b.i, s)};
}

template <typename T>
__global__ void __launch_bounds__(kThreads) arg_blocks_kernel(ArgOp f, const StridedLoop out_loop,
                                                              const StridedLoop red_loop, int64_t* __restrict__ out,
                                                              const T* __restrict__ in) {
  constexpr int kWarps = kThreads / 32;
  __shared__ T part_v[kWarps];
  __shared__ int64_t part_i[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t o = blockIdx.x; o < out_loop.numel; o += gridDim.x) {
    int64_t out_off[2];
    offsets_of<2>(out_loop, o, out_off);
    const T* base = in + out_off[1];
    // Each thread starts from its first element, so no identity value is needed.
    Best<T> best{T(0), INT64_MAX};
    for (int64_t r = threadIdx.x; r < red_loop.numel; r += kThreads) {
      int64_t off[1];
      offsets_of<1>(red_loop, r, off);
      const Best<T> c{base[off[0]], r};
      if (best.i == INT64_MAX || keeps(f, c, best)) best = c;
    }
#pragma unroll
    for (int s = 16; s > 0; s /= 2) {
      const Best<T> other = shfl_down(best, s);
      if (other.i != INT64_MAX && (best.i == INT64_MAX || keeps(f, other, best))) best = other;
    }
    if (lane == 0) {
      part_v[warp] = best.v;
      part_i[warp] = best.i;
    }
    __syncthreads();
    if (warp == 0) {
      best = lane < kWarps ? Best<T>{part_v[lane], part_i[lane]} : Best<T>{T(0), INT64_MAX};
#pragma unroll
      for (int s = 16; s > 0; s /= 2) {
        const Best<T> other = shfl_down(best, s);
        if (other.i != INT64_MAX && (best.i == INT64_MAX || keeps(f, other, best))) best = other;
      }
      if (lane == 0) out[out_off[0]] = best.i;
    }
    // part_v/part_i are rewritten by the next output's warps.
    __syncthreads();
  }
}

template <typename T>
__global__ void arg_threads_kernel(ArgOp f, const StridedLoop out_loop, const StridedLoop red_loop,
                                   int64_t* __restrict__ out, const T* __restrict__ in) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < out_loop.numel; o += step) {
    int64_t out_off[2];
    offsets_of<2>(out_loop, o, out_off);
    const T* base = in + out_off[1];
    int64_t off[1];
    offsets_of<1>(red_loop, 0, off);
    Best<T> best{base[off[0]], 0};
    for (int64_t r = 1; r < red_loop.numel; ++r) {
      offsets_of<1>(red_loop, r, off);
      const Best<T> c{base[off[0]], r};
      if (keeps(f, c, best)) best = c;
    }
    out[out_off[0]] = best.i;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

template <typename T>
void gather(const StridedLoop& loop, int64_t axis_size, int64_t axis_stride, T* out, const T* x,
            const int64_t* index, unsigned long long* bad, cudaStream_t stream, const char* op) {
  if (loop.numel == 0) return;
  gather_kernel<T><<<grid_stride_blocks(loop.numel, kThreads), kThreads, 0, stream>>>(loop, axis_size, axis_stride,
                                                                                      out, x, index, bad);
  check_launch(op);
}

template <typename T>
void scatter(const StridedLoop& loop, int64_t axis_size, int64_t axis_stride, T* x, const T* values, T scalar,
             const int64_t* index, bool accumulate, unsigned long long* bad, cudaStream_t stream, const char* op) {
  if (loop.numel == 0) return;
  scatter_kernel<T><<<grid_stride_blocks(loop.numel, kThreads), kThreads, 0, stream>>>(
      loop, axis_size, axis_stride, x, values, scalar, index, accumulate, bad);
  check_launch(op);
}

bool arg_reduce_threads_per_output(const ReduceLayout& layout) {
  // A thread per output pays off when there are enough outputs to fill the device and
  // either a warp's outputs are adjacent in memory (coalesced loads, as plan_reduce) or
  // each output has so few elements that a block would leave most threads idle.
  const StridedLoop &out = layout.out_loop, &red = layout.reduce_loop;
  if (out.numel < 1024 || red.numel == 0) return false;
  if (red.numel <= 16) return true;
  const bool outputs_adjacent = out.strides[1][out.ndim - 1] == 1 && out.sizes[out.ndim - 1] > 1;
  const bool elements_adjacent = red.strides[0][red.ndim - 1] == 1;
  return outputs_adjacent && !elements_adjacent;
}

template <typename T>
void arg_reduce(ArgOp f, const ReduceLayout& layout, int64_t* out, const T* in, cudaStream_t stream,
                const char* op) {
  const int64_t outputs = layout.out_loop.numel;
  if (outputs == 0) return;
  if (arg_reduce_threads_per_output(layout)) {
    arg_threads_kernel<T><<<grid_stride_blocks(outputs, kThreads), kThreads, 0, stream>>>(
        f, layout.out_loop, layout.reduce_loop, out, in);
  } else {
    const unsigned grid = static_cast<unsigned>(outputs < 65536 ? outputs : 65536);
    arg_blocks_kernel<T><<<grid, kThreads, 0, stream>>>(f, layout.out_loop, layout.reduce_loop, out, in);
  }
  check_launch(op);
}

#define DLKERN_INDEXING_INSTANTIATE(T)                                                                       \
  template void gather<T>(const StridedLoop&, int64_t, int64_t, T*, const T*, const int64_t*,                  \
                          unsigned long long*, cudaStream_t, const char*);                                     \
  template void scatter<T>(const StridedLoop&, int64_t, int64_t, T*, const T*, T, const int64_t*, bool,        \
                           unsigned long long*, cudaStream_t, const char*);                                    \
  template void arg_reduce<T>(ArgOp, const ReduceLayout&, int64_t*, const T*, cudaStream_t, const char*);
DLKERN_INDEXING_INSTANTIATE(float)
DLKERN_INDEXING_INSTANTIATE(double)
DLKERN_INDEXING_INSTANTIATE(int64_t)
#undef DLKERN_INDEXING_INSTANTIATE
// bool arrays (bytes) for the gather and the scatter: the bindings' dtype switches had no
// bool case, so take/put_along_axis on a bool array silently left the output unwritten.
template void gather<uint8_t>(const StridedLoop&, int64_t, int64_t, uint8_t*, const uint8_t*, const int64_t*,
                              unsigned long long*, cudaStream_t, const char*);
template void scatter<uint8_t>(const StridedLoop&, int64_t, int64_t, uint8_t*, const uint8_t*, uint8_t,
                               const int64_t*, bool, unsigned long long*, cudaStream_t, const char*);

}  // namespace dlkern::cuda
