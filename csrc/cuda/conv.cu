// CUDA conv2d: im2col / col2im kernels around the project's tiled GEMM, a per-channel
// bias kernel and a per-channel reduction for dbias (see conv.h for the scheme).
#include "cuda/conv.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/gemm.h"
#include "cuda/launch.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;


// cols[i, c, r, q, oh, ow] = x[n0 + i, c, oh*sh - pt + r*dh, ow*sw - pl + q*dw] (0 outside x),
// for `images` images; one thread per column element, ow fastest so writes coalesce.
template <typename T>
__global__ void im2col_kernel(const T* __restrict__ x, T* __restrict__ cols, Conv2dShape s, int64_t images) {
  const int64_t p = s.out_h * s.out_w;
  const int64_t total = images * s.c * s.kh * s.kw * p;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = idx % s.out_w;
    int64_t t = idx / s.out_w;
    const int64_t oh = t % s.out_h;
    t /= s.out_h;
    const int64_t q = t % s.kw;
    t /= s.kw;
    const int64_t r = t % s.kh;
    const int64_t plane = t / s.kh;  // image * c + channel
    const int64_t ih = oh * s.stride_h - s.pad_h + r * s.dil_h;
    const int64_t iw = ow * s.stride_w - s.pad_w + q * s.dil_w;
    cols[idx] = (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) ? x[(plane * s.h + ih) * s.w + iw] : T(0);
  }
}

// dx[i, c, ih, iw] = sum of dcols[i, c, r, q, oh, ow] over the taps (r, q) and outputs
// (oh, ow) that read input pixel (ih, iw). A gather, one thread per input pixel: each dx
// element is written once by one thread, so there are no atomics, the result does not
// depend on scheduling, and dx needs no zero-fill first. (The scatter alternative, a
// thread per column element adding into dx, would need atomicAdd on overlapping
// windows, which is slow for double and not deterministic.)
template <typename T>
__global__ void col2im_kernel(const T* __restrict__ dcols, T* __restrict__ dx, Conv2dShape s, int64_t images) {
  const int64_t p = s.out_h * s.out_w;
  const int64_t total = images * s.c * s.h * s.w;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = idx % s.w;
    int64_t t = idx / s.w;
    const int64_t ih = t % s.h;
    const int64_t plane = t / s.h;  // image * c + channel
    const T* taps = dcols + plane * s.kh * s.kw * p;
    T sum = 0;
    for (int64_t r = 0; r < s.kh; ++r) {
      const int64_t th = ih + s.pad_h - r * s.dil_h;  // = oh * stride_h when tap r of row oh reads ih
      if (th < 0) break;                              // only decreases with r
      if (th % s.stride_h) continue;
      const int64_t oh = th / s.stride_h;
      if (oh >= s.out_h) continue;
      for (int64_t q = 0; q < s.kw; ++q) {
        const int64_t tw = iw + s.pad_w - q * s.dil_w;
        if (tw < 0) break;
        if (tw % s.stride_w) continue;
        const int64_t ow = tw / s.stride_w;
        if (ow >= s.out_w) continue;
        sum += taps[(r * s.kw + q) * p + oh * s.out_w + ow];
      }
    }
    dx[idx] = sum;
  }
}

// y[n, o, :] += bias[o].
template <typename T>
__global__ void add_bias_kernel(T* __restrict__ y, const T* __restrict__ bias, int64_t total, int64_t o,
                                int64_t p) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x)
    y[idx] += bias[(idx / p) % o];
}

// db[o] = sum over n, p of dy[n, o, p]: one block per channel, double accumulation, a
// fixed-order tree in shared memory (deterministic).
template <typename T>
__global__ void bias_grad_kernel(const T* __restrict__ dy, T* __restrict__ db, int64_t n, int64_t o, int64_t p) {
  __shared__ double partial[kThreads];
  for (int64_t ch = blockIdx.x; ch < o; ch += gridDim.x) {
    double acc = 0;
    for (int64_t i = threadIdx.x; i < n * p; i += blockDim.x) {
      const int64_t img = i / p, at = i % p;
      acc += static_cast<double>(dy[(img * o + ch) * p + at]);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
      if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) db[ch] = static_cast<T>(partial[0]);
    __syncthreads();  // partial is reused by the next channel
  }
}

template <typename T>
void gemm_or_throw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, int64_t sa,
                   const T* b, int64_t ldb, int64_t sb, T beta, T* c, int64_t ldc, int64_t sc, int64_t batch,
                   cudaStream_t stream, const char* op) {
  check(gemm_strided_batched<T>(ta, tb, m, n, k, T(1), a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch, stream), op,
        "run the convolution GEMM");
}

template <typename T>
void im2col(const Conv2dShape& s, const T* x, T* cols, int64_t images, cudaStream_t stream, const char* op) {
  const int64_t total = images * s.c * s.kh * s.kw * s.out_h * s.out_w;
  if (total == 0) return;
  cudaGetLastError();
  im2col_kernel<T><<<grid_stride_blocks(total, kThreads), kThreads, 0, stream>>>(x, cols, s, images);
  check_launch(op);
}

// y (or dcols) of images [n0, n0 + nb): out[i, g] = op(W[g]) x in[i, g], batched either
// over the images of each group (stride 0 on W) or over the groups of each image,
// whichever needs fewer launches. Forward: in = cols, out = y. Transposed (dx): in = dy,
// out = dcols, with W[g]^T.
template <typename T>
void grouped_products(const Conv2dShape& s, const Conv2dPlan& plan, bool for_dx, const T* weight, const T* in,
                      T* out, int64_t nb, cudaStream_t stream, const char* op) {
  const int64_t g_count = s.groups, og = s.o / s.groups, k = plan.k, p = plan.p;
  // Per image: cols / dcols hold groups * k * p elements, y / dy hold o * p.
  const int64_t cols_image = g_count * k * p, y_image = s.o * p;
  const int64_t m = for_dx ? k : og, kk = for_dx ? og : k;
  const int64_t in_image = for_dx ? y_image : cols_image, out_image = for_dx ? cols_image : y_image;
  const int64_t in_group = for_dx ? og * p : k * p, out_group = for_dx ? k * p : og * p;
  if (plan.loop_over_groups) {
    for (int64_t g = 0; g < g_count; ++g)
      gemm_or_throw<T>(for_dx, false, m, p, kk, weight + g * og * k, k, 0, in + g * in_group, p, in_image, T(0),
                       out + g * out_group, p, out_image, nb, stream, op);
  } else {
    for (int64_t i = 0; i < nb; ++i)
      gemm_or_throw<T>(for_dx, false, m, p, kk, weight, k, og * k, in + i * in_image, p, in_group, T(0),
                       out + i * out_image, p, out_group, g_count, stream, op);
  }
}

}  // namespace

Conv2dPlan conv2d_plan(const Conv2dShape& s, size_t itemsize, size_t max_column_bytes) {
  Conv2dPlan plan;
  plan.k = (s.groups > 0 ? s.c / s.groups : 0) * s.kh * s.kw;
  plan.p = s.out_h * s.out_w;
  plan.direct = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 && s.pad_w == 0 &&
                s.out_h == s.h && s.out_w == s.w;
  const int64_t image_elems = s.c * s.kh * s.kw * plan.p;
  const int64_t image_bytes = image_elems * static_cast<int64_t>(itemsize);
  const int64_t fit = image_bytes > 0 ? static_cast<int64_t>(max_column_bytes) / image_bytes : s.n;
  plan.images_per_chunk = std::max<int64_t>(1, std::min<int64_t>(s.n, fit));
  if (plan.direct) plan.images_per_chunk = std::max<int64_t>(1, s.n);  // no buffer to bound
  plan.chunks = s.n > 0 ? (s.n + plan.images_per_chunk - 1) / plan.images_per_chunk : 0;
  plan.column_elems = plan.direct || s.n == 0 ? 0 : plan.images_per_chunk * image_elems;
  // Fewer launches: per group when there are fewer groups than images in a chunk.
  plan.loop_over_groups = s.groups <= plan.images_per_chunk;
  return plan;
}

template <typename T>
void conv2d_forward(const Conv2dShape& s, const Conv2dPlan& plan, const T* x, const T* weight, const T* bias,
                    T* y, T* cols, cudaStream_t stream, const char* op) {
  const int64_t p = plan.p, total = s.n * s.o * p;
  if (total == 0) return;
  const int64_t x_image = s.c * s.h * s.w;
  if (plan.k == 0) {  // no input channels: y is the bias (or zero)
    check(cudaMemsetAsync(y, 0, sizeof(T) * total, stream), op, "clear the output");
  } else {
    for (int64_t n0 = 0; n0 < s.n; n0 += plan.images_per_chunk) {
      const int64_t nb = std::min(plan.images_per_chunk, s.n - n0);
      const T* c = x + n0 * x_image;
      if (!plan.direct) {
        im2col<T>(s, c, cols, nb, stream, op);
        c = cols;
      }
      grouped_products<T>(s, plan, false, weight, c, y + n0 * s.o * p, nb, stream, op);
    }
  }
  if (bias) {
    cudaGetLastError();
    add_bias_kernel<T><<<grid_stride_blocks(total, kThreads), kThreads, 0, stream>>>(y, bias, total, s.o, p);
    check_launch(op);
  }
}

template <typename T>
void conv2d_backward(const Conv2dShape& s, const Conv2dPlan& plan, const T* dy, const T* x, const T* weight,
                     T* dx, T* dweight, T* dbias, T* cols, cudaStream_t stream, const char* op) {
  const int64_t p = plan.p, og = s.o / s.groups, k = plan.k;
  const int64_t x_image = s.c * s.h * s.w, y_image = s.o * p;
  if (dbias && s.o > 0) {
    if (s.n * p == 0) {
      check(cudaMemsetAsync(dbias, 0, sizeof(T) * s.o, stream), op, "clear dbias");
    } else {
      cudaGetLastError();
      bias_grad_kernel<T><<<static_cast<unsigned>(std::min<int64_t>(s.o, kMaxGridBlocks)), kThreads, 0, stream>>>(
          dy, dbias, s.n, s.o, p);
      check_launch(op);
    }
  }
  const int64_t w_elems = s.o * k;
  // Nothing flows into dweight when there are no images or no outputs: it is zero.
  if (dweight && w_elems > 0 && (s.n == 0 || p == 0))
    check(cudaMemsetAsync(dweight, 0, sizeof(T) * w_elems, stream), op, "clear dweight");
  if (dx && s.n * x_image > 0 && (p == 0 || s.o == 0))
    check(cudaMemsetAsync(dx, 0, sizeof(T) * s.n * x_image, stream), op, "clear dx");
  if (p == 0 || s.o == 0 || k == 0) return;
  for (int64_t n0 = 0; n0 < s.n; n0 += plan.images_per_chunk) {
    const int64_t nb = std::min(plan.images_per_chunk, s.n - n0);
    const T* dyc = dy + n0 * y_image;
    if (dweight) {
      const T* c = x + n0 * x_image;
      if (!plan.direct) {
        im2col<T>(s, c, cols, nb, stream, op);
        c = cols;
      }
      // dW[g] (+)= dy[i, g] (og, p) x cols[i, g]^T (p, k), batched over groups, one
      // launch per image; beta = 1 after the very first image accumulates the batch.
      for (int64_t i = 0; i < nb; ++i)
        gemm_or_throw<T>(false, true, og, k, p, dyc + i * y_image, p, og * p, c + i * s.groups * k * p, p, k * p,
                         (n0 + i == 0) ? T(0) : T(1), dweight, k, og * k, s.groups, stream, op);
    }
    if (dx) {
      T* dxc = dx + n0 * x_image;
      // dcols = W^T dy lands in the column buffer (after the dweight GEMMs that read it,
      // by stream order), or straight in dx for a direct convolution.
      T* dcols = plan.direct ? dxc : cols;
      grouped_products<T>(s, plan, true, weight, dyc, dcols, nb, stream, op);
      if (!plan.direct) {
        cudaGetLastError();
        col2im_kernel<T><<<grid_stride_blocks(nb * x_image, kThreads), kThreads, 0, stream>>>(dcols, dxc, s, nb);
        check_launch(op);
      }
    }
  }
}

#define DLKERN_INSTANTIATE_CONV(T)                                                                              \
  template void conv2d_forward<T>(const Conv2dShape&, const Conv2dPlan&, const T*, const T*, const T*, T*, T*,  \
                                  cudaStream_t, const char*);                                                   \
  template void conv2d_backward<T>(const Conv2dShape&, const Conv2dPlan&, const T*, const T*, const T*, T*, T*, \
                                   T*, T*, cudaStream_t, const char*);
DLKERN_INSTANTIATE_CONV(float)
DLKERN_INSTANTIATE_CONV(double)
#undef DLKERN_INSTANTIATE_CONV

}  // namespace dlkern::cuda
