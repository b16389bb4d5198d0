// Bindings for the activation kernels: C-contiguous float32/float64 arrays of any
// shape (the Python layer copies a strided input once, explicitly).
#include <vector>

#include "bind/common.h"
#include "cpu/activation.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

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

// kernel(x, y, n) over the C-contiguous arrays x and y of dtype dt, the GIL released.
template <class Kernel>
void run_forward(DType dt, const py::array& x, py::array& y, Kernel&& kernel) {
  const void* xp = x.data();
  void* yp = y.mutable_data();
  const int64_t n = x.size();
  py::gil_scoped_release nogil;
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    kernel(static_cast<const T*>(xp), static_cast<T*>(yp), n);
  });
}

py::array forward(cpu::Activation f, const char* op, const py::object& x_obj) {
  DType dt;
  py::array x = contiguous_float(x_obj, op, "x", &dt);
  py::array y = empty_like(x);
  run_forward(dt, x, y, [f](auto xp, auto yp, int64_t n) { cpu::activation_forward(f, xp, yp, n); });
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

// <name>(x, out=None) of a DLKERN_UNARY_KERNELS row, as the CUDA module's primitive: x of
// any strides (a strided x is copied once); out, when given, an ndarray of x's shape and
// dtype, any strides, may be x itself, written and returned.
py::object unary(cpu::Unary f, const char* op, const py::object& x_obj, const py::object& out_obj) {
  py::array x = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x, op, "x");
  const bool has_out = !out_obj.is_none();
  py::array out;
  if (has_out) {
    out = require_array(out_obj, op, "out");
    const std::vector<py::ssize_t> os(out.shape(), out.shape() + out.ndim()), xs(x.shape(), x.shape() + x.ndim());
    if (os != xs) value_error(op, ": out has shape ", shape_str(out), " but the result has shape ", shape_str(x));
    if (!out.dtype().is(x.dtype()))
      type_error(op, ": out has dtype ", dtype_str(out), " but the result has dtype ", dtype_str(x));
    require_writeable(out, op, "out");
  }
  if (!(x.flags() & py::array::c_style)) x = py::module_::import("numpy").attr("ascontiguousarray")(x);
  // The kernel writes a C-contiguous y that is x itself or shares no memory with it;
  // anything else goes through a fresh array and one copy.
  const bool direct = has_out && (out.flags() & py::array::c_style) && (out.data() == x.data() || !may_overlap(out, x));
  py::array y = direct ? out : empty_like(x);
  run_forward(dt, x, y, [f](auto xp, auto yp, int64_t n) { cpu::unary_forward(f, xp, yp, n); });
  if (!has_out) return std::move(y);
  if (!direct) out[py::ellipsis()] = y;
  return std::move(out);
}

}  // namespace DLKERN_TU_LOCAL
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

  py::list unary_names;
#define DLKERN_BIND_UNARY(name, Kernel)                                                                     \
  m.def(                                                                                                    \
      #name, [](const py::object& x, const py::object& out) { return unary(cpu::Unary::name, #name, x, out); }, \
      py::arg("x"), py::arg("out") = py::none(),                                                            \
      #name "(x, out=None): elementwise on a float32/float64 array of any strides (csrc/cpu/activation.h); "  \
      "a new C-contiguous array, or out (x's shape and dtype, any strides, may be x) written and returned."); \
  unary_names.append(#name);
  DLKERN_UNARY_KERNELS(DLKERN_BIND_UNARY)
#undef DLKERN_BIND_UNARY
  m.attr("UNARY_KERNELS") = py::tuple(unary_names);
}

}  // namespace dlkern::bind
