// The convolution kernels' Python arguments, parsed once for both extension modules
// (dlkern._C on NumPy arrays, dlkern._C_cuda on DeviceArrays): conv2d, conv1d,
// causal_conv1d and their backwards take the same names, defaults and errors in both,
// registered by def_conv_kernels. The checks and shape arithmetic are
// dlkern::conv_geometry (common/geometry.h); this file only turns Python objects into
// its arguments (an int or a tuple of ints, "valid" / "same").
#pragma once
#include <array>

#include "bind/common.h"
#include "common/geometry.h"
#include "cpu/conv.h"

namespace dlkern::bind {

// A checked convolution: the geometry and the kernels' description of it (conv1d is the
// H = 1 case: one row, kernel height 1, no vertical padding).
struct ConvArgs {
  ConvGeometry g;
  cpu::Conv2dShape s;
};

// x / weight shapes and the Python stride, padding, dilation and groups of one call
// (stride and padding unused when causal).
ConvArgs conv_args(const char* op, int nd, bool causal, const Dims& x, const Dims& weight,
                   const py::handle& groups, const py::handle& stride, const py::handle& padding,
                   const py::handle& dilation);

// need: three booleans (dx, dweight, dbias).
std::array<bool, 3> conv_need(const py::handle& need, const char* op);

// Registers the six convolution kernels on m with one argument list. forward(op, nd,
// causal, x, weight, bias, stride, padding, dilation, groups) and backward(op, nd, causal,
// grad_out, x, weight, stride, padding, dilation, groups, need) are the module's.
using ConvForward = py::object (*)(const char*, int, bool, const py::object&, const py::object&,
                                   const py::object&, const py::object&, const py::object&, const py::object&,
                                   const py::object&);
using ConvBackward = py::tuple (*)(const char*, int, bool, const py::object&, const py::object&,
                                   const py::object&, const py::object&, const py::object&, const py::object&,
                                   const py::object&, const py::object&);
void def_conv_kernels(py::module_& m, ConvForward forward, ConvBackward backward);

}  // namespace dlkern::bind
