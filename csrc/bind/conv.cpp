// dlkern._C convolution kernels on NumPy arrays: conv2d, conv1d, causal_conv1d and their
// backwards (arguments, checks and geometry shared with dlkern._C_cuda: bind/conv_args.h).
// Arrays must be C-contiguous (dlkern.ops copies, explicitly, before calling); conv1d
// runs the 2-D kernel with H = 1 on the same memory.
#include "bind/conv_args.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

// A C-contiguous float array, of x's dtype when `x` is given.
py::array conv_array(const py::handle& obj, const char* op, const char* arg, const py::array* x) {
  py::array a = require_array(obj, op, arg);
  const DType dt = float_dtype(a, op, arg);
  if (x && dt != float_dtype(*x, op, "x")) {
    if (std::string(arg) == "weight")
      type_error(op, ": x has dtype ", dtype_str(*x), " but weight has dtype ", dtype_str(a),
                 "; both must be the same float type");
    type_error(op, ": ", arg, " has dtype ", dtype_str(a), " but x has dtype ", dtype_str(*x));
  }
  if (!(a.flags() & py::array::c_style))
    value_error(op, ": ", arg, " must be C-contiguous (got shape ", shape_str(a),
                " with other strides); pass numpy.ascontiguousarray(", arg, ")");
  return a;
}

py::array new_array(const py::array& like, const Dims& shape) {
  return py::array(like.dtype(), std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

// The data of an input array (read-only arrays are fine) or of a new output array, or
// nullptr for None; taken with the GIL held.
const void* input_data(const py::object& a) {
  return a.is_none() ? nullptr : py::reinterpret_borrow<py::array>(a).data();
}
void* output_data(const py::object& a) {
  return a.is_none() ? nullptr : py::reinterpret_borrow<py::array>(a).mutable_data();
}

py::object conv_forward(const char* op, int nd, bool causal, const py::object& x_obj, const py::object& w_obj,
                        const py::object& b_obj, const py::object& stride, const py::object& padding,
                        const py::object& dilation, const py::object& groups) {
  const py::array x = conv_array(x_obj, op, "x", nullptr);
  const py::array w = conv_array(w_obj, op, "weight", &x);
  const ConvArgs a = conv_args(op, nd, causal, dims_of(x), dims_of(w), groups, stride, padding, dilation);
  py::object b = py::none();
  if (!b_obj.is_none()) {
    if (!py::isinstance<py::array>(b_obj))
      type_error(op, ": bias must be a numpy.ndarray or None, got ",
                 py::str(py::type::of(b_obj).attr("__name__")).cast<std::string>());
    const py::array bias = conv_array(b_obj, op, "bias", &x);
    if (dims_of(bias) != Dims{a.g.o})
      value_error(op, ": bias has shape ", shape_str(bias), ", expected (", a.g.o, ",)");
    b = bias;
  }
  py::array y = new_array(x, a.g.out_shape());
  const DType dt = float_dtype(x, op, "x");
  const void *xp = x.data(), *wp = w.data(), *bp = input_data(b);
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::conv2d_forward<T>(a.s, static_cast<const T*>(xp), static_cast<const T*>(wp),
                             static_cast<const T*>(bp), static_cast<T*>(yp));
    });
  }
  return std::move(y);
}

py::tuple conv_backward(const char* op, int nd, bool causal, const py::object& dy_obj, const py::object& x_obj,
                        const py::object& w_obj, const py::object& stride, const py::object& padding,
                        const py::object& dilation, const py::object& groups, const py::object& need_obj) {
  const py::array x = conv_array(x_obj, op, "x", nullptr);
  const py::array w = conv_array(w_obj, op, "weight", &x);
  const ConvArgs a = conv_args(op, nd, causal, dims_of(x), dims_of(w), groups, stride, padding, dilation);
  const py::array dy = require_array(dy_obj, op, "grad_out");
  if (dims_of(dy) != a.g.out_shape())
    value_error(op, ": grad_out has shape ", shape_str(dy), ", expected the output shape ",
                dims_str(a.g.out_shape()));
  conv_array(dy, op, "grad_out", &x);
  const auto need = conv_need(need_obj, op);
  py::object dx = need[0] ? py::object(new_array(x, dims_of(x))) : py::none();
  py::object dw = need[1] ? py::object(new_array(x, dims_of(w))) : py::none();
  py::object db = need[2] ? py::object(new_array(x, {a.g.o})) : py::none();
  const DType dt = float_dtype(x, op, "x");
  const void *dyp = dy.data(), *xp = x.data(), *wp = w.data();
  void *dxp = output_data(dx), *dwp = output_data(dw), *dbp = output_data(db);
  if (need[0] || need[1] || need[2]) {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::conv2d_backward<T>(a.s, static_cast<const T*>(dyp), static_cast<const T*>(xp),
                              static_cast<const T*>(wp), static_cast<T*>(dxp), static_cast<T*>(dwp),
                              static_cast<T*>(dbp));
    });
  }
  return py::make_tuple(dx, dw, db);
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(conv) { def_conv_kernels(m, &conv_forward, &conv_backward); }

}  // namespace dlkern::bind
