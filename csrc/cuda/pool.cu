// CUDA pooling kernels: one thread per output for the forwards, one thread per input
// pixel (a gather over the windows that cover it) for the avg / adaptive backwards, so
// those write each dx element once, without atomics or a zero-fill. max_pool2d_backward
// scatters through the saved indices with atomicAdd (see pool.h for why).
#include "cuda/pool.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/launch.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;


#define DLKERN_GRID_LOOP(idx, total)                                                    \
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < (total); \
       idx += int64_t(gridDim.x) * blockDim.x)

template <typename T>
__global__ void max_forward_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ indices,
                                   Pool2dGeometry g) {
  const int64_t out_plane = g.out_h * g.out_w, total = g.planes * out_plane;
  DLKERN_GRID_LOOP(idx, total) {
    const int64_t plane = idx / out_plane, at = idx % out_plane;
    const int64_t oh = at / g.out_w, ow = at % g.out_w;
    const T* xp = x + plane * g.in_h * g.in_w;
    T best = static_cast<T>(-INFINITY);
    int64_t best_at = -1;
    // Scan order rows then columns; the first valid position starts the scan, then a
    // strictly larger value or a NaN takes over (the CPU kernels' and PyTorch's rule).
    for (int64_t r = 0; r < g.kernel_h; ++r) {
      const int64_t ih = oh * g.stride_h - g.pad_h + r * g.dilation_h;
      if (ih < 0 || ih >= g.in_h) continue;
      for (int64_t q = 0; q < g.kernel_w; ++q) {
        const int64_t iw = ow * g.stride_w - g.pad_w + q * g.dilation_w;
        if (iw < 0 || iw >= g.in_w) continue;
        const T v = xp[ih * g.in_w + iw];
        if (best_at < 0 || v > best || v != v) {
          best = v;
          best_at = ih * g.in_w + iw;
        }
      }
    }
    y[idx] = best;
    if (indices) indices[idx] = best_at;
  }
}

template <typename T>
__global__ void max_backward_kernel(const T* __restrict__ dy, const int64_t* __restrict__ indices,
                                    T* __restrict__ dx, unsigned long long* bad_position, Pool2dGeometry g) {
  const int64_t out_plane = g.out_h * g.out_w, in_plane = g.in_h * g.in_w, total = g.planes * out_plane;
  DLKERN_GRID_LOOP(idx, total) {
    const int64_t at = indices[idx];
    if (static_cast<uint64_t>(at) < static_cast<uint64_t>(in_plane))
      atomicAdd(dx + (idx / out_plane) * in_plane + at, dy[idx]);
    else if (at != -1)
      atomicMin(bad_position, static_cast<unsigned long long>(idx));
  }
}

// PyTorch's avg_pool2d window along one axis for output o: [start, stop) clipped to the
// padded plane (its length counts with count_include_pad), [first, end) clipped to the input.
struct AvgSpan {
  int64_t start, stop, first, end;
};

__device__ AvgSpan avg_span(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t in) {
  AvgSpan a;
  a.start = o * stride - pad;
  a.stop = min(a.start + kernel, in + pad);
  a.first = max(a.start, int64_t(0));
  a.end = min(a.stop, in);
  return a;
}

// The divisor of a window (one that holds at least one input element).
__device__ int64_t avg_divisor(const AvgSpan& h, const AvgSpan& w, bool count_include_pad,
                               int64_t divisor_override) {
  if (divisor_override != 0) return divisor_override;
  return count_include_pad ? (h.stop - h.start) * (w.stop - w.start) : (h.end - h.first) * (w.end - w.first);
}

template <typename T>
__global__ void avg_forward_kernel(const T* __restrict__ x, T* __restrict__ y, Pool2dGeometry g,
                                   bool count_include_pad, int64_t divisor_override) {
  const int64_t out_plane = g.out_h * g.out_w, total = g.planes * out_plane;
  DLKERN_GRID_LOOP(idx, total) {
    const int64_t plane = idx / out_plane, at = idx % out_plane;
    const AvgSpan h = avg_span(at / g.out_w, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
    const AvgSpan w = avg_span(at % g.out_w, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
    if (h.first >= h.end || w.first >= w.end) {  // only padding: 0, as the CPU kernel
      y[idx] = T(0);
      continue;
    }
    const T* xp = x + plane * g.in_h * g.in_w;
    T sum = 0;
    for (int64_t ih = h.first; ih < h.end; ++ih)
      for (int64_t iw = w.first; iw < w.end; ++iw) sum += xp[ih * g.in_w + iw];
    y[idx] = sum / static_cast<T>(avg_divisor(h, w, count_include_pad, divisor_override));
  }
}

// Outputs [lo, hi] along one axis whose window [o*stride - pad, o*stride - pad + kernel)
// covers input position i (empty when lo > hi).
__device__ void covering_outputs(int64_t i, int64_t stride, int64_t pad, int64_t kernel, int64_t out, int64_t& lo,
                                 int64_t& hi) {
  const int64_t first = i + pad - kernel + 1;  // o*stride must be >= first
  lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  hi = min((i + pad) / stride, out - 1);
}

template <typename T>
__global__ void avg_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, Pool2dGeometry g,
                                    bool count_include_pad, int64_t divisor_override) {
  const int64_t in_plane = g.in_h * g.in_w, total = g.planes * in_plane;
  DLKERN_GRID_LOOP(idx, total) {
    const int64_t plane = idx / in_plane, at = idx % in_plane;
    const int64_t ih = at / g.in_w, iw = at % g.in_w;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    covering_outputs(ih, g.stride_h, g.pad_h, g.kernel_h, g.out_h, oh_lo, oh_hi);
    covering_outputs(iw, g.stride_w, g.pad_w, g.kernel_w, g.out_w, ow_lo, ow_hi);
    const T* dyp = dy + plane * g.out_h * g.out_w;
    T sum = 0;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      const AvgSpan h = avg_span(oh, g.stride_h, g.pad_h, g.kernel_h, g.in_h);
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const AvgSpan w = avg_span(ow, g.stride_w, g.pad_w, g.kernel_w, g.in_w);
        sum += dyp[oh * g.out_w + ow] / static_cast<T>(avg_divisor(h, w, count_include_pad, divisor_override));
      }
    }
    dx[idx] = sum;
  }
}

// Adaptive windows: output o averages input [floor(o*in/out), ceil((o+1)*in/out)).
__device__ int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return o * in / out; }
__device__ int64_t adaptive_end(int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; }

template <typename T>
__global__ void adaptive_forward_kernel(const T* __restrict__ x, T* __restrict__ y, Pool2dGeometry g) {
  const int64_t out_plane = g.out_h * g.out_w, total = g.planes * out_plane;
  DLKERN_GRID_LOOP(idx, total) {
    const int64_t plane = idx / out_plane, at = idx % out_plane;
    const int64_t oh = at / g.out_w, ow = at % g.out_w;
    const int64_t h0 = adaptive_start(oh, g.in_h, g.out_h), h1 = adaptive_end(oh, g.in_h, g.out_h);
    const int64_t w0 = adaptive_start(ow, g.in_w, g.out_w), w1 = adaptive_end(ow, g.in_w, g.out_w);
    const T* xp = x + plane * g.in_h * g.in_w;
    T sum = 0;
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += xp[ih * g.in_w + iw];
    y[idx] = sum / static_cast<T>((h1 - h0) * (w1 - w0));
  }
}

// Outputs along one axis whose adaptive window holds input position i: start(o) <= i
// needs o <= ceil((i+1)*out/in) - 1, end(o) > i needs o >= floor(i*out/in).
__device__ void adaptive_covering(int64_t i, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = i * out / in;
  hi = min(((i + 1) * out + in - 1) / in - 1, out - 1);
}

template <typename T>
__global__ void adaptive_backward_kernel(const T* __restrict__ dy, T* __restrict__ dx, Pool2dGeometry g) {
  const int64_t in_plane = g.in_h * g.in_w, total = g.planes * in_plane;
  DLKERN_GRID_LOOP(idx, total) {
    const int64_t plane = idx / in_plane, at = idx % in_plane;
    const int64_t ih = at / g.in_w, iw = at % g.in_w;
    int64_t oh_lo, oh_hi, ow_lo, ow_hi;
    adaptive_covering(ih, g.in_h, g.out_h, oh_lo, oh_hi);
    adaptive_covering(iw, g.in_w, g.out_w, ow_lo, ow_hi);
    const T* dyp = dy + plane * g.out_h * g.out_w;
    T sum = 0;
    for (int64_t oh = oh_lo; oh <= oh_hi; ++oh) {
      const int64_t h0 = adaptive_start(oh, g.in_h, g.out_h), h1 = adaptive_end(oh, g.in_h, g.out_h);
      if (ih < h0 || ih >= h1) continue;  // guards the closed-form range
      for (int64_t ow = ow_lo; ow <= ow_hi; ++ow) {
        const int64_t w0 = adaptive_start(ow, g.in_w, g.out_w), w1 = adaptive_end(ow, g.in_w, g.out_w);
        if (iw < w0 || iw >= w1) continue;
        sum += dyp[oh * g.out_w + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
      }
    }
    dx[idx] = sum;
  }
}

#undef DLKERN_GRID_LOOP

// Launches kernel over `total` threads' worth of work on stream (nothing when empty).
template <typename Kernel, typename... Args>
void launch(int64_t total, cudaStream_t stream, const char* op, Kernel kernel, Args... args) {
  if (total <= 0) return;
  cudaGetLastError();
  kernel<<<grid_stride_blocks(total, kThreads), kThreads, 0, stream>>>(args...);
  check_launch(op);
}

}  // namespace

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g, cudaStream_t stream,
                        const char* op) {
  launch(g.planes * g.out_h * g.out_w, stream, op, max_forward_kernel<T>, x, y, indices, g);
}

template <typename T>
void max_pool2d_backward(const T* dy, const int64_t* indices, T* dx, unsigned long long* bad_position,
                         const Pool2dGeometry& g, cudaStream_t stream, const char* op) {
  const int64_t in_total = g.planes * g.in_h * g.in_w;
  if (in_total == 0) return;
  check(cudaMemsetAsync(dx, 0, sizeof(T) * in_total, stream), op, "clear dx");
  launch(g.planes * g.out_h * g.out_w, stream, op, max_backward_kernel<T>, dy, indices, dx, bad_position, g);
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad,
                        int64_t divisor_override, cudaStream_t stream, const char* op) {
  launch(g.planes * g.out_h * g.out_w, stream, op, avg_forward_kernel<T>, x, y, g, count_include_pad,
         divisor_override);
}

template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, bool count_include_pad,
                         int64_t divisor_override, cudaStream_t stream, const char* op) {
  launch(g.planes * g.in_h * g.in_w, stream, op, avg_backward_kernel<T>, dy, dx, g, count_include_pad,
         divisor_override);
}

template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, cudaStream_t stream, const char* op) {
  launch(g.planes * g.out_h * g.out_w, stream, op, adaptive_forward_kernel<T>, x, y, g);
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, cudaStream_t stream,
                                  const char* op) {
  launch(g.planes * g.in_h * g.in_w, stream, op, adaptive_backward_kernel<T>, dy, dx, g);
}

#define DLKERN_INSTANTIATE_POOL(T)                                                                                 \
  template void max_pool2d_forward<T>(const T*, T*, int64_t*, const Pool2dGeometry&, cudaStream_t, const char*); \
  template void max_pool2d_backward<T>(const T*, const int64_t*, T*, unsigned long long*, const Pool2dGeometry&,  \
                                       cudaStream_t, const char*);                                                \
  template void avg_pool2d_forward<T>(const T*, T*, const Pool2dGeometry&, bool, int64_t, cudaStream_t,          \
                                      const char*);                                                               \
  template void avg_pool2d_backward<T>(const T*, T*, const Pool2dGeometry&, bool, int64_t, cudaStream_t,         \
                                       const char*);                                                              \
  template void adaptive_avg_pool2d_forward<T>(const T*, T*, const Pool2dGeometry&, cudaStream_t, const char*);  \
  template void adaptive_avg_pool2d_backward<T>(const T*, T*, const Pool2dGeometry&, cudaStream_t, const char*);
DLKERN_INSTANTIATE_POOL(float)
DLKERN_INSTANTIATE_POOL(double)
#undef DLKERN_INSTANTIATE_POOL

}  // namespace dlkern::cuda
