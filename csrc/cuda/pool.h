// 2-D pooling on a CUDA device: max (with argmax indices), average and adaptive
// average, forward and backward, float and double, contiguous NCHW planes. Same
// geometry struct, output-size rule and semantics as the CPU kernels (cpu/pool.h):
// max takes the first maximum in scan order and lets NaN win, a window with no input
// element gives -inf and index -1; avg uses PyTorch's divisor rule.
// Plain C++ header (no CUDA syntax). Launch failures throw cuda::Error naming `op`.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cpu/pool.h"

namespace dlkern::cuda {

using Pool2dGeometry = cpu::Pool2dGeometry;

// One thread per output. indices may be nullptr.
template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g, cudaStream_t stream,
                        const char* op);

// dx (planes, in_h, in_w) = scatter-add of dy through indices (planes, out_h, out_w).
// A scatter with atomicAdd: the indices may come from anywhere (no geometry is given),
// so a gather could not know which outputs point at a pixel. An index of -1 is skipped;
// any other index outside [0, in_h*in_w) lowers *bad_position (initialised by the caller
// to all ones) to the flat position of that entry in indices.
template <typename T>
void max_pool2d_backward(const T* dy, const int64_t* indices, T* dx, unsigned long long* bad_position,
                         const Pool2dGeometry& g, cudaStream_t stream, const char* op);

// divisor_override 0 means none. Backward is a gather (one thread per input pixel).
template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad,
                        int64_t divisor_override, cudaStream_t stream, const char* op);
template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, bool count_include_pad,
                         int64_t divisor_override, cudaStream_t stream, const char* op);

// Adaptive average (planes, in_h/in_w, out_h/out_w of g are used). Backward is a gather.
template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, cudaStream_t stream, const char* op);
template <typename T>
void adaptive_avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, cudaStream_t stream,
                                  const char* op);

}  // namespace dlkern::cuda
