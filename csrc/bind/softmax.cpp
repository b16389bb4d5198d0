// Bindings for softmax / log_softmax over any axis and their backward passes.
// Inputs must be C-contiguous (the Python layer makes an explicit copy otherwise);
// the axis is passed to the kernel as (outer, dim, inner), so nothing is transposed.
#include <vector>

#include "bind/common.h"
#include "cpu/softmax.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

struct AxisView {
  int64_t outer = 1, dim = 1, inner = 1;
};

void require_contiguous(const py::array& a, const char* op, const char* arg) {
  if (!(a.flags() & py::array::c_style))
    value_error(op, ": ", arg, " must be C-contiguous (shape ", shape_str(a),
                "); pass numpy.ascontiguousarray(", arg, ")");
}

// dim (an int, not bool) in [-ndim, ndim) (a 0-d array counts as one axis of size 1,
// as in PyTorch).
AxisView axis_view(const py::array& a, const py::object& dim_obj, const char* op) {
  const int64_t dim = int64_arg(dim_obj, op, "dim");
  const int64_t nd = a.ndim(), span = nd == 0 ? 1 : nd;
  if (dim < -span || dim >= span)
    value_error(op, ": dim ", dim, " is out of range for an array of shape ", shape_str(a), " (expected ",
                -span, " <= dim < ", span, ")");
  AxisView v;
  if (nd == 0) return v;
  const int64_t d = dim < 0 ? dim + nd : dim;
  for (int64_t i = 0; i < nd; ++i) {
    if (i < d) v.outer *= a.shape(i);
    else if (i == d) v.dim = a.shape(i);
    else v.inner *= a.shape(i);
  }
  return v;
}

py::array make_output(const py::object& out_obj, const py::array& like, DType dt, const char* op,
                      std::initializer_list<const py::array*> inputs) {
  if (out_obj.is_none()) return py::array(like.dtype(), std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
  py::array out = require_array(out_obj, op, "out");
  if (float_dtype(out, op, "out") != dt)
    type_error(op, ": out has dtype ", dtype_str(out), " but the input has dtype ", dtype_str(like));
  const std::vector<py::ssize_t> want(like.shape(), like.shape() + like.ndim()), got(out.shape(), out.shape() + out.ndim());
  if (got != want) value_error(op, ": out has shape ", shape_str(out), ", expected ", shape_str(like));
  require_writeable(out, op, "out");
  require_contiguous(out, op, "out");
  for (const py::array* in : inputs)
    if (may_overlap(out, *in)) value_error(op, ": out shares memory with an input; pass a separate array");
  return out;
}

py::array forward(const py::object& x_obj, const py::object& dim, const py::object& out_obj, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  py::array x = require_array(x_obj, op, "x");
  const DType dt = float_dtype(x, op, "x");
  require_contiguous(x, op, "x");
  const AxisView v = axis_view(x, dim, op);
  py::array y = make_output(out_obj, x, dt, op, {&x});
  const void* xp = x.data();
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::softmax_forward(static_cast<const T*>(xp), static_cast<T*>(yp), v.outer, v.dim, v.inner, log);
    });
  }
  return y;
}

py::array backward(const py::object& g_obj, const py::object& y_obj, const py::object& dim, const py::object& out_obj,
                   bool log) {
  const char* op = log ? "log_softmax_backward" : "softmax_backward";
  py::array g = require_array(g_obj, op, "grad_out");
  py::array y = require_array(y_obj, op, "y");
  const DType dt = float_dtype(g, op, "grad_out");
  if (float_dtype(y, op, "y") != dt)
    type_error(op, ": grad_out has dtype ", dtype_str(g), " but y has dtype ", dtype_str(y),
               "; both must be the same float type");
  const std::vector<py::ssize_t> gs(g.shape(), g.shape() + g.ndim()), ys(y.shape(), y.shape() + y.ndim());
  if (gs != ys) value_error(op, ": grad_out has shape ", shape_str(g), " but y has shape ", shape_str(y));
  require_contiguous(g, op, "grad_out");
  require_contiguous(y, op, "y");
  const AxisView v = axis_view(y, dim, op);
  py::array dx = make_output(out_obj, y, dt, op, {&g, &y});
  const void* gp = g.data();
  const void* yp = y.data();
  void* dp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::softmax_backward(static_cast<const T*>(gp), static_cast<const T*>(yp), static_cast<T*>(dp), v.outer,
                            v.dim, v.inner, log);
    });
  }
  return dx;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(softmax) {
  // softmax and log_softmax, and their backwards, differ only in is_log and the docstring.
  struct Row {
    const char *name, *doc, *backward_name, *backward_doc;
  };
  const Row rows[2] = {
      {"softmax",
       "softmax(x, dim=-1, out=None): exp(x - max) / sum over axis dim of a C-contiguous float32/float64 "
       "array. A slice whose entries are all -inf gives 0; a slice holding a NaN gives all NaN.",
       "softmax_backward",
       "softmax_backward(grad_out, y, dim=-1, out=None): dx = y * (grad_out - sum(grad_out * y, dim)), "
       "y the softmax output."},
      {"log_softmax",
       "log_softmax(x, dim=-1, out=None): x - max - log(sum(exp(x - max))) over axis dim. A slice whose "
       "entries are all -inf gives -inf; a slice holding a NaN gives all NaN.",
       "log_softmax_backward",
       "log_softmax_backward(grad_out, y, dim=-1, out=None): dx = grad_out - exp(y) * sum(grad_out, dim), "
       "y the log_softmax output."},
  };
  for (const bool is_log : {false, true}) {
    const Row& r = rows[is_log];
    m.def(
        r.name,
        [is_log](const py::object& x, const py::object& dim, const py::object& out) {
          return forward(x, dim, out, is_log);
        },
        py::arg("x"), py::arg("dim") = py::int_(-1), py::arg("out") = py::none(), r.doc);
    m.def(
        r.backward_name,
        [is_log](const py::object& g, const py::object& y, const py::object& dim, const py::object& out) {
          return backward(g, y, dim, out, is_log);
        },
        py::arg("grad_out"), py::arg("y"), py::arg("dim") = py::int_(-1), py::arg("out") = py::none(), r.backward_doc);
  }
}

}  // namespace dlkern::bind
