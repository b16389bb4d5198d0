// 2-D convolution (cross-correlation, as PyTorch) on NCHW arrays, forward and backward.
// conv1d is the H = 1 case of this kernel (the Python layer reshapes).
//
// Paths, chosen per call from the geometry:
// - 16+ channels per group and wide rows (at most 1/8 "garbage" columns at stride 1,
//   1/12 otherwise): the zero-padded image is copied channels-last once per image and
//   each kernel tap is one GEMM that reads a shifted window of it in place (no im2col
//   buffer at all); a stride s > 1 first splits the padded image into its s*s phases
//   (every s-th row and column), on which each tap is again a stride-1 window;
// - otherwise im2col + GEMM (dlkern::cpu::gemm) per image and group, over chunks of
//   output rows so the column buffer stays bounded (kColumnBytes per thread, whatever
//   the batch); 1x1 stride-1 unpadded convolutions use the input as the GEMM operand;
// - one input channel per group with groups > 1 (depthwise): a direct kernel, since
//   its GEMMs would have a single row.
// Threads split the images (per-thread scratch and dweight/dbias partial sums, added in
// thread order); a single image runs its GEMMs multi-threaded instead.
#pragma once
#include <cstdint>

#include "../common/geometry.h"  // relative: see gemm.h

namespace dlkern::cpu {

// The argument limits are common/geometry.h's (the bindings check them there).
using dlkern::kMaxConvArg;

// Geometry of one convolution. The caller validates it (positive sizes, stride and
// dilation >= 1, padding >= 0, each at most kMaxConvArg, channels divisible by groups,
// output sizes >= 1).
// pad_h / pad_w are the top / left padding; the bottom / right padding is implied by
// out_h / out_w (input positions past the edge read as zero), so asymmetric padding
// ("same" with an even kernel, causal conv1d) needs no extra argument.
struct Conv2dShape {
  int64_t n = 0, c = 0, h = 0, w = 0;   // input x: (n, c, h, w)
  int64_t o = 0, kh = 0, kw = 0;        // weight: (o, c / groups, kh, kw)
  int64_t groups = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t out_h = 0, out_w = 0;         // output y: (n, o, out_h, out_w)
};

// y = conv(x, weight) + bias. x, weight, y contiguous; bias: (o) or nullptr.
template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* weight, const T* bias, T* y);

// Gradients from dy (n, o, out_h, out_w), contiguous. Each of dx (shape of x),
// dweight (shape of weight), dbias (o) is overwritten, or skipped when nullptr.
template <typename T>
void conv2d_backward(const Conv2dShape& s, const T* dy, const T* x, const T* weight, T* dx,
                     T* dweight, T* dbias);

}  // namespace dlkern::cpu
