// Bindings for the activation kernels: C-contiguous float32/float64 arrays of any
// shape (the Python layer copies a strided input once, explicitly).
#include <vector>

#include "bind/common.h"
#include "cpu/activation.h"

namespace dlkern::bind {
namespace {

py::array contiguous_float(const py::object& obj, const char* op, const char* arg, DType* dt) {
  py::array a = require_array(obj, op, arg);
  *dt = float_dtype(a, op, arg);
  if (!(a.flags() & py::array::c_style))
    value_error(op, ": ", arg, " must be C-contiguous (shape ", shape_str(a), "); pass numpy.ascontiguousarray(",
                arg, ")");
  return a;
}

py::array empty_like(const py::array& a) {
  return py::array(a.dtype(), std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
}

py::array gelu_tanh(const py::object& x_obj) {
  const char* op = "gelu_tanh";
  DType dt;
  py::array x = contiguous_float(x_obj, op, "x", &dt);
  py::array y = empty_like(x);
  const void* xp = x.data();
  void* yp = y.mutable_data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::gelu_tanh_forward(static_cast<const T*>(xp), static_cast<T*>(yp), n);
    });
  }
  return y;
}

py::array gelu_tanh_backward(const py::object& g_obj, const py::object& x_obj) {
  const char* op = "gelu_tanh_backward";
  DType dt, xt;
  py::array g = contiguous_float(g_obj, op, "grad_out", &dt);
  py::array x = contiguous_float(x_obj, op, "x", &xt);
  if (xt != dt)
    type_error(op, ": grad_out has dtype ", dtype_str(g), " but x has dtype ", dtype_str(x),
               "; both must be the same float type");
  const std::vector<py::ssize_t> gs(g.shape(), g.shape() + g.ndim()), xs(x.shape(), x.shape() + x.ndim());
  if (gs != xs) value_error(op, ": grad_out has shape ", shape_str(g), " but x has shape ", shape_str(x));
  py::array dx = empty_like(x);
  const void* gp = g.data();
  const void* xp = x.data();
  void* dp = dx.mutable_data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::gelu_tanh_backward(static_cast<const T*>(gp), static_cast<const T*>(xp), static_cast<T*>(dp), n);
    });
  }
  return dx;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(activation) {
  m.def("gelu_tanh", &gelu_tanh, py::arg("x"),
        "gelu_tanh(x): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) of a C-contiguous float32/float64 array.");
  m.def("gelu_tanh_backward", &gelu_tanh_backward, py::arg("grad_out"), py::arg("x"),
        "gelu_tanh_backward(grad_out, x): grad_out * d gelu_tanh(x) / dx (recomputed from x).");
}

}  // namespace dlkern::bind
