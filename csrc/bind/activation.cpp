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

py::array forward(cpu::Activation f, const char* op, const py::object& x_obj) {
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
      cpu::activation_forward(f, static_cast<const T*>(xp), static_cast<T*>(yp), n);
    });
  }
  return y;
}

py::array backward(cpu::Activation f, const char* op, const py::object& g_obj, const py::object& x_obj) {
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
      cpu::activation_backward(f, static_cast<const T*>(gp), static_cast<const T*>(xp), static_cast<T*>(dp), n);
    });
  }
  return dx;
}

}  // namespace

// Every row of cpu/activation.h's list becomes <name>(x) and <name>_backward(grad_out, x);
// ACTIVATIONS lists the names for dlkern.ops.activation.
DLKERN_REGISTER_BINDINGS(activation) {
  py::list names;
#define DLKERN_BIND_ACTIVATION(name, Kernel)                                                               \
  m.def(                                                                                                  \
      #name, [](const py::object& x) { return forward(cpu::Activation::name, #name, x); }, py::arg("x"),   \
      #name "(x): the activation of a C-contiguous float32/float64 array (csrc/cpu/activation.h).");       \
  m.def(                                                                                                  \
      #name "_backward",                                                                                  \
      [](const py::object& g, const py::object& x) {                                                      \
        return backward(cpu::Activation::name, #name "_backward", g, x);                                   \
      },                                                                                                  \
      py::arg("grad_out"), py::arg("x"), #name "_backward(grad_out, x): grad_out * d " #name "(x) / dx.");  \
  names.append(#name);
  DLKERN_ACTIVATIONS(DLKERN_BIND_ACTIVATION)
#undef DLKERN_BIND_ACTIVATION
  m.attr("ACTIVATIONS") = py::tuple(names);
}

}  // namespace dlkern::bind
