// 2-D pooling on the CPU: max (with argmax indices), average and adaptive average,
// forward and backward, float and double, NCHW planes, OpenMP over (n, c) planes.
#pragma once
#include <cstdint>

#include "../common/geometry.h"  // relative: see gemm.h

namespace dlkern::cpu {

// The argument limits are common/geometry.h's.
using dlkern::kMaxPoolArg;

// Shape of one pooling: `planes` = N*C independent (in_h, in_w) planes, each
// pooled to (out_h, out_w). Window (oh, ow) covers input rows oh*stride_h - pad_h +
// kh*dilation_h (kh < kernel_h) and likewise columns; positions outside the plane
// are padding (ignored by max, counted by avg only with count_include_pad).
struct Pool2dGeometry {
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
};

// PyTorch's rule for one axis: floor((in + 2*pad - dilation*(kernel-1) - 1 [+ stride-1
// if ceil_mode]) / stride) + 1, minus one if ceil_mode makes the last window start
// at or after in + pad (it must start inside the input or the left padding).
int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation, bool ceil_mode);

// Checks the arguments and fills a geometry; throws std::invalid_argument (naming
// `op`) for a kernel/stride/dilation < 1, a negative padding, a padding above half
// the effective kernel ((kernel-1)*dilation+1)/2, or an output size below 1.
Pool2dGeometry make_pool2d_geometry(const char* op, int64_t planes, int64_t in_h, int64_t in_w,
                                    const int64_t kernel[2], const int64_t stride[2],
                                    const int64_t pad[2], const int64_t dilation[2],
                                    bool ceil_mode);

// Max pooling. x: (planes, in_h, in_w), y: (planes, out_h, out_w), contiguous.
// indices (nullable): (planes, out_h, out_w), the flat position ih*in_w + iw of each
// maximum inside its plane, as PyTorch: the first maximum in scan order (rows, then
// columns); a NaN propagates (the last NaN of the window wins). A window holding no
// input element (only possible with dilation > 1) gives -inf and index -1.
template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g);

// dx (planes, in_h, in_w) = scatter-add of dy (planes, out_h, out_w) through
// `indices` (same shape as dy); overwritten. An index of -1 is skipped; any other
// index outside [0, in_h*in_w) throws std::invalid_argument (dx is then undefined).
template <typename T>
void max_pool2d_backward(const T* dy, const int64_t* indices, T* dx, const Pool2dGeometry& g);

// Average pooling (dilation must be 1). The divisor is divisor_override when it is
// non-zero, else the window's size clipped to the padded plane (count_include_pad)
// or the number of input elements it covers; a window with none gives 0.
template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad,
                        int64_t divisor_override);

// dx (planes, in_h, in_w), overwritten, from dy (planes, out_h, out_w).
template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, bool count_include_pad,
                         int64_t divisor_override);

// Adaptive average pooling, as PyTorch: output row oh averages input rows
// [floor(oh*in_h/out_h), ceil((oh+1)*in_h/out_h)), likewise columns. Only planes,
// in_h/in_w and out_h/out_w of the geometry are used. out 1x1 is a plane mean.
template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g);
template <typename T>
void adaptive_avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g);

}  // namespace dlkern::cpu
