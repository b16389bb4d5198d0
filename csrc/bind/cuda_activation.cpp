// dlkern._C_cuda fused activations, under the CPU op's names and argument order
// (python/dlkern/ops/activation.py): gelu_tanh(x), gelu_tanh_backward(grad_out, x).
// Inputs may have any strides (read in place, no copy); results are new contiguous
// arrays on x's device and stream. Argument errors are raised before device work.
#include "bind/cuda_common.h"
#include "cuda/activation.h"
#include "cuda/check.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

cuda::StridedLoop loop_or_value_error(const cuda::Shape& shape, const std::vector<cuda::Shape>& strides,
                                      const char* op) {
  try {
    return cuda::make_loop(shape, strides);
  } catch (const std::invalid_argument& e) {
    value_error(op, ": ", e.what());
  }
}

DeviceArray gelu_tanh(const py::object& x_obj) {
  const char* op = "gelu_tanh";
  const DeviceArray& x = require_float_device_array(x_obj, op, "x");
  const cuda::Shape out_strides = cuda::contiguous_strides(x.shape);
  const cuda::StridedLoop loop = loop_or_value_error(x.shape, {out_strides, x.strides}, op);
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(x.device, op);
  DeviceArray y = cuda::empty(x.shape, x.dtype, x.device, x.stream, op);
  dispatch_cuda_float(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    cuda::gelu_tanh_forward<T>(loop, static_cast<T*>(y.data()), static_cast<const T*>(x.data()), y.stream, op);
  });
  return y;
}

DeviceArray gelu_tanh_backward(const py::object& g_obj, const py::object& x_obj) {
  const char* op = "gelu_tanh_backward";
  const DeviceArray& g = require_float_device_array(g_obj, op, "grad_out");
  const DeviceArray& x = require_float_device_array(x_obj, op, "x");
  if (g.dtype != x.dtype)
    type_error(op, ": grad_out has dtype ", cuda::dtype_name(g.dtype), " but x has dtype ", cuda::dtype_name(x.dtype),
               "; both must be the same float type");
  if (g.shape != x.shape)
    value_error(op, ": grad_out has shape ", cuda::shape_str(g.shape), " but x has shape ", cuda::shape_str(x.shape));
  if (g.device != x.device) value_error(op, ": grad_out is on cuda:", g.device, " but x is on cuda:", x.device);
  const cuda::Shape out_strides = cuda::contiguous_strides(x.shape);
  const cuda::StridedLoop loop = loop_or_value_error(x.shape, {out_strides, g.strides, x.strides}, op);
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(x.device, op);
  DeviceArray dx = cuda::empty(x.shape, x.dtype, x.device, x.stream, op);
  cuda::stream_wait(dx.stream, g.stream, op);
  dispatch_cuda_float(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    cuda::gelu_tanh_backward<T>(loop, static_cast<T*>(dx.data()), static_cast<const T*>(g.data()),
                                static_cast<const T*>(x.data()), dx.stream, op);
  });
  return dx;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_activation) {
  m.def("gelu_tanh", &gelu_tanh, py::arg("x"),
        "gelu_tanh(x): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) of a float32/float64 DeviceArray (any "
        "strides), one fused pass; a new contiguous array.");
  m.def("gelu_tanh_backward", &gelu_tanh_backward, py::arg("grad_out"), py::arg("x"),
        "gelu_tanh_backward(grad_out, x): grad_out * d gelu_tanh(x) / dx, recomputed from x in one fused pass.");
}

}  // namespace dlkern::bind
