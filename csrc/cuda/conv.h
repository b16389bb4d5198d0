// 2-D convolution (cross-correlation, as PyTorch) on a CUDA device, forward and
// backward, NCHW, float and double. conv1d is the H = 1 case (the binding views it so).
//
// Scheme: im2col + the project's tiled GEMM (gemm_strided_batched), over chunks of
// images so the column buffer stays bounded whatever the batch:
//   cols (images, C*kH*kW, outH*outW) = im2col(x)      -- per group g, rows g*K .. g*K+K-1
//   y[n, group g]   = W[g] (O/G, K) x cols[n, g] (K, P)
//   dW[g]          += dy[n, g] (O/G, P) x cols[n, g]^T   (summed over images by beta = 1)
//   dcols[n, g]     = W[g]^T x dy[n, g]; dx = col2im(dcols), a gather per input pixel
//   db[o]           = sum of dy over (n, p), one block per channel
// with K = (C/G)*kH*kW and P = outH*outW. A 1x1, stride-1, unpadded convolution uses x
// itself as cols (and writes dcols straight into dx): no im2col pass at all.
// Plain C++ header (no CUDA syntax). Launch failures throw cuda::Error naming `op`.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "cpu/conv.h"

namespace dlkern::cuda {

// The geometry is the CPU kernel's (cpu::Conv2dShape): pad_h / pad_w are the top /
// left padding, the bottom / right padding is implied by out_h / out_w.
using Conv2dShape = cpu::Conv2dShape;

// Default bound on the column buffer, per call.
constexpr size_t kConvColumnBytes = size_t(256) << 20;

// How one call is split; pure host arithmetic (exposed as _C_cuda._conv2d_plan).
struct Conv2dPlan {
  int64_t k = 0, p = 0;            // GEMM inner size (C/G)*kH*kW and output pixels per image
  int64_t images_per_chunk = 0;    // images whose columns share the buffer at a time (>= 1)
  int64_t chunks = 0;              // ceil(n / images_per_chunk); 0 when n == 0
  int64_t column_elems = 0;        // scratch elements the caller allocates (0 when direct)
  bool direct = false;             // 1x1, stride 1, no padding: x is the column matrix
  bool loop_over_groups = false;   // one batched GEMM per group (over images), else per image (over groups)
};

// images_per_chunk = max(1, min(n, max_column_bytes / bytes of one image's columns)).
// A single image larger than the budget still gets a one-image buffer.
Conv2dPlan conv2d_plan(const Conv2dShape& s, size_t itemsize, size_t max_column_bytes = kConvColumnBytes);

// y (n, o, out_h, out_w) = conv(x, weight) + bias; x (n, c, h, w), weight
// (o, c/groups, kh, kw), bias (o) or nullptr; all contiguous. cols: plan.column_elems
// scratch elements (unused when direct). Queued on `stream`.
template <typename T>
void conv2d_forward(const Conv2dShape& s, const Conv2dPlan& plan, const T* x, const T* weight, const T* bias,
                    T* y, T* cols, cudaStream_t stream, const char* op);

// Gradients from dy (n, o, out_h, out_w). dx (shape of x), dweight (shape of weight),
// dbias (o) are each overwritten, or skipped when nullptr. cols: scratch as above
// (the columns for dweight, then reused for dcols).
template <typename T>
void conv2d_backward(const Conv2dShape& s, const Conv2dPlan& plan, const T* dy, const T* x, const T* weight,
                     T* dx, T* dweight, T* dbias, T* cols, cudaStream_t stream, const char* op);

}  // namespace dlkern::cuda
