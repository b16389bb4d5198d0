// The pooling kernels' Python arguments, parsed once for both extension modules
// (dlkern._C on NumPy arrays, dlkern._C_cuda on DeviceArrays): max_pool2d(_forward,
// _backward), avg_pool2d(_backward) and adaptive_avg_pool2d(_backward) take the same
// names, defaults and errors in both, registered by def_pool_kernels. The geometry rule
// is the kernels' own (cpu::make_pool2d_geometry); x is (N, C, H, W) or (C, H, W).
#pragma once
#include <array>

#include "bind/common.h"
#include "common/geometry.h"
#include "cpu/pool.h"

namespace dlkern::bind {

using Pair = std::array<int64_t, 2>;

// kernel_size, stride (None: kernel_size), padding and dilation (None: 1), each an int
// or a sequence of 1 or 2 ints.
struct PoolArgs {
  Pair kernel, stride, padding, dilation;
};
PoolArgs pool_args(const char* op, const py::handle& kernel, const py::handle& stride, const py::handle& padding,
                   const py::handle& dilation);

// The shape of x as 4-D (a batch of one added for 3-D, `added` says so); ValueError
// unless 3-D or 4-D with H and W at least 1.
Dims pool_planes(const Dims& shape, const char* op, const char* arg, bool& added);
// The result shape: 4-D, or 3-D when the input had no batch axis.
Dims pool_result(const Dims& s4, bool added);

cpu::Pool2dGeometry pool_geometry(const char* op, const Dims& s4, const PoolArgs& a, bool ceil_mode);
// A backward's geometry from grad_out's 4-D shape and input_shape (adaptive / max).
cpu::Pool2dGeometry pool_backward_planes(const Dims& grad4, const Dims& in4);

// input_shape of a backward, as 4 sizes: as many entries as grad_out has dimensions,
// non-negative, H and W at least 1, N and C those of grad_out, and a size whose bytes
// (itemsize each) can be allocated.
Dims pool_input_shape(const py::handle& input_shape, const Dims& grad_shape, const Dims& grad4, int64_t itemsize,
                      const char* op);
// grad_out of avg_pool2d_backward must have the forward's output shape.
void pool_require_grad_shape(const Dims& grad4, const cpu::Pool2dGeometry& g, const char* op);

// divisor_override: None (0) or a non-zero int.
int64_t pool_divisor(const py::handle& divisor, const char* op);
// adaptive_avg_pool2d's output_size: an int or a pair, None keeping that input size.
Pair adaptive_size(const py::handle& output_size, const Dims& s4, const char* op);

// The module's implementations, registered under one argument list by def_pool_kernels.
struct PoolKernels {
  py::tuple (*max_forward)(const py::object& x, const py::object& kernel, const py::object& stride,
                           const py::object& padding, const py::object& dilation, bool ceil_mode, bool with_indices);
  py::object (*max_backward)(const py::object& grad_out, const py::object& indices, const py::object& input_shape);
  py::object (*avg_forward)(const py::object& x, const py::object& kernel, const py::object& stride,
                            const py::object& padding, bool ceil_mode, bool count_include_pad,
                            const py::object& divisor_override);
  py::object (*avg_backward)(const py::object& grad_out, const py::object& input_shape, const py::object& kernel,
                             const py::object& stride, const py::object& padding, bool ceil_mode,
                             bool count_include_pad, const py::object& divisor_override);
  py::object (*adaptive_forward)(const py::object& x, const py::object& output_size);
  py::object (*adaptive_backward)(const py::object& grad_out, const py::object& input_shape);
};
void def_pool_kernels(py::module_& m, const PoolKernels& k);

}  // namespace dlkern::bind
