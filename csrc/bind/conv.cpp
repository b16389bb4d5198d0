// Bindings for convolution: dlkern._C.conv2d_forward / conv2d_backward on NCHW arrays.
// Padding is passed as (top, bottom, left, right) so the Python layer can express
// "same" with even kernels and causal conv1d; conv1d is the H = 1 case.
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <tuple>

#include "bind/common.h"
#include "cpu/conv.h"

namespace dlkern::bind {
namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

void require_c_contiguous(const py::array& a, const char* op, const char* arg) {
  if (!(a.flags() & py::array::c_style))
    value_error(op, ": ", arg, " must be C-contiguous (got shape ", shape_str(a),
                " with other strides); pass numpy.ascontiguousarray(", arg, ")");
}

// Checks x (n, c, h, w) and weight (o, c/groups, kh, kw) and the geometry; returns the
// kernel's shape description with the output size.
cpu::Conv2dShape geometry(const char* op, const py::array& x, const py::array& w, const Pair& stride,
                          const Quad& padding, const Pair& dilation, int64_t groups, DType& dt) {
  if (x.ndim() != 4) value_error(op, ": x must be 4-D (N, C, H, W), got shape ", shape_str(x));
  if (w.ndim() != 4) value_error(op, ": weight must be 4-D (O, C/groups, kH, kW), got shape ", shape_str(w));
  dt = float_dtype(x, op, "x");
  if (float_dtype(w, op, "weight") != dt)
    type_error(op, ": x has dtype ", dtype_str(x), " but weight has dtype ", dtype_str(w),
               "; both must be the same float type");
  require_c_contiguous(x, op, "x");
  require_c_contiguous(w, op, "weight");
  if (stride[0] < 1 || stride[1] < 1)
    value_error(op, ": stride must be positive, got (", stride[0], ", ", stride[1], ")");
  if (dilation[0] < 1 || dilation[1] < 1)
    value_error(op, ": dilation must be positive, got (", dilation[0], ", ", dilation[1], ")");
  for (int64_t p : padding)
    if (p < 0)
      value_error(op, ": padding must be non-negative, got (top, bottom, left, right) = (", padding[0], ", ",
                  padding[1], ", ", padding[2], ", ", padding[3], ")");
  if (groups < 1) value_error(op, ": groups must be positive, got ", groups);
  // Bounded before any arithmetic on them, so the sizes below cannot overflow.
  constexpr int64_t kMax = cpu::kMaxConvArg;
  if (stride[0] > kMax || stride[1] > kMax)
    value_error(op, ": stride (", stride[0], ", ", stride[1], ") is too large (limit 2^31)");
  if (dilation[0] > kMax || dilation[1] > kMax)
    value_error(op, ": dilation (", dilation[0], ", ", dilation[1], ") is too large (limit 2^31)");
  for (int64_t p : padding)
    if (p > kMax)
      value_error(op, ": padding (top, bottom, left, right) = (", padding[0], ", ", padding[1], ", ", padding[2],
                  ", ", padding[3], ") is too large (limit 2^31)");
  cpu::Conv2dShape s;
  s.n = x.shape(0), s.c = x.shape(1), s.h = x.shape(2), s.w = x.shape(3);
  s.o = w.shape(0), s.kh = w.shape(2), s.kw = w.shape(3);
  s.groups = groups;
  if (s.c % groups != 0)
    value_error(op, ": input channels ", s.c, " (x shape ", shape_str(x), ") are not divisible by groups=", groups);
  if (s.o % groups != 0)
    value_error(op, ": output channels ", s.o, " (weight shape ", shape_str(w), ") are not divisible by groups=",
                groups);
  if (w.shape(1) != s.c / groups)
    value_error(op, ": weight shape ", shape_str(w), " needs C/groups = ", s.c / groups,
                " in dimension 1 for x of shape ", shape_str(x), " and groups=", groups);
  if (s.kh < 1 || s.kw < 1) value_error(op, ": weight has an empty kernel, shape ", shape_str(w));
  s.stride_h = stride[0], s.stride_w = stride[1];
  s.dil_h = dilation[0], s.dil_w = dilation[1];
  s.pad_h = padding[0], s.pad_w = padding[2];
  // dilation*(k-1) compared by division: the product itself may not fit in int64.
  if (s.kh - 1 > kMax / s.dil_h || s.kw - 1 > kMax / s.dil_w)
    value_error(op, ": dilation (", s.dil_h, ", ", s.dil_w, ") with kernel (", s.kh, ", ", s.kw,
                ") spans more than 2^31 (the limit)");
  const int64_t span_h = s.dil_h * (s.kh - 1) + 1, span_w = s.dil_w * (s.kw - 1) + 1;
  const int64_t padded_h = s.h + padding[0] + padding[1], padded_w = s.w + padding[2] + padding[3];
  if (padded_h < span_h || padded_w < span_w)
    value_error(op, ": kernel (", s.kh, ", ", s.kw, ") with dilation (", s.dil_h, ", ", s.dil_w, ") spans (",
                span_h, ", ", span_w, "), larger than the padded input (", padded_h, ", ", padded_w,
                "): output size would be < 1");
  s.out_h = (padded_h - span_h) / s.stride_h + 1;
  s.out_w = (padded_w - span_w) / s.stride_w + 1;
  return s;
}

py::array conv2d_forward(const py::object& x_obj, const py::object& w_obj, const py::object& b_obj,
                         const Pair& stride, const Quad& padding, const Pair& dilation, int64_t groups,
                         const std::string& op_name) {
  const char* op = op_name.c_str();
  py::array x = require_array(x_obj, op, "x");
  py::array w = require_array(w_obj, op, "weight");
  DType dt;
  const cpu::Conv2dShape s = geometry(op, x, w, stride, padding, dilation, groups, dt);
  const void* bias = nullptr;
  py::array b;
  if (!b_obj.is_none()) {
    b = require_array(b_obj, op, "bias");
    if (b.ndim() != 1 || b.shape(0) != s.o)
      value_error(op, ": bias has shape ", shape_str(b), ", expected (", s.o, ",) for weight of shape ",
                  shape_str(w));
    if (float_dtype(b, op, "bias") != dt)
      type_error(op, ": bias has dtype ", dtype_str(b), " but x has dtype ", dtype_str(x));
    require_c_contiguous(b, op, "bias");
    bias = b.data();
  }
  py::array y(x.dtype(), std::vector<py::ssize_t>{s.n, s.o, s.out_h, s.out_w});
  const void* xp = x.data();
  const void* wp = w.data();
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::conv2d_forward<T>(s, static_cast<const T*>(xp), static_cast<const T*>(wp),
                             static_cast<const T*>(bias), static_cast<T*>(yp));
    });
  }
  return y;
}

py::tuple conv2d_backward(const py::object& dy_obj, const py::object& x_obj, const py::object& w_obj,
                          const Pair& stride, const Quad& padding, const Pair& dilation, int64_t groups,
                          bool need_dx, bool need_dw, bool need_db, const std::string& op_name) {
  const char* op = op_name.c_str();
  py::array dy = require_array(dy_obj, op, "grad_out");
  py::array x = require_array(x_obj, op, "x");
  py::array w = require_array(w_obj, op, "weight");
  DType dt;
  const cpu::Conv2dShape s = geometry(op, x, w, stride, padding, dilation, groups, dt);
  if (dy.ndim() != 4 || dy.shape(0) != s.n || dy.shape(1) != s.o || dy.shape(2) != s.out_h ||
      dy.shape(3) != s.out_w)
    value_error(op, ": grad_out has shape ", shape_str(dy), ", expected the output shape (", s.n, ", ", s.o,
                ", ", s.out_h, ", ", s.out_w, ")");
  if (float_dtype(dy, op, "grad_out") != dt)
    type_error(op, ": grad_out has dtype ", dtype_str(dy), " but x has dtype ", dtype_str(x));
  require_c_contiguous(dy, op, "grad_out");
  py::object dx = py::none(), dw = py::none(), db = py::none();
  void *dxp = nullptr, *dwp = nullptr, *dbp = nullptr;
  if (need_dx) {
    py::array a(x.dtype(), std::vector<py::ssize_t>{s.n, s.c, s.h, s.w});
    dxp = a.mutable_data();
    dx = a;
  }
  if (need_dw) {
    py::array a(x.dtype(), std::vector<py::ssize_t>{s.o, s.c / s.groups, s.kh, s.kw});
    dwp = a.mutable_data();
    dw = a;
  }
  if (need_db) {
    py::array a(x.dtype(), std::vector<py::ssize_t>{s.o});
    dbp = a.mutable_data();
    db = a;
  }
  const void* dyp = dy.data();
  const void* xp = x.data();
  const void* wp = w.data();
  if (dxp || dwp || dbp) {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::conv2d_backward<T>(s, static_cast<const T*>(dyp), static_cast<const T*>(xp),
                              static_cast<const T*>(wp), static_cast<T*>(dxp), static_cast<T*>(dwp),
                              static_cast<T*>(dbp));
    });
  }
  return py::make_tuple(dx, dw, db);
}

}  // namespace

DLKERN_REGISTER_BINDINGS(conv) {
  m.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = Pair{1, 1}, py::arg("padding") = Quad{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1},
        py::arg("groups") = 1, py::arg("op") = "conv2d",
        R"doc(conv2d_forward(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, op="conv2d")

Kernel entry for dlkern.ops.conv2d (use that): x (N, C, H, W) and weight (O, C/groups, kH, kW),
C-contiguous, same float dtype; bias (O,) or None. padding is (top, bottom, left, right).
Returns y (N, O, H_out, W_out). `op` names the caller in error messages.)doc");
  m.def("conv2d_backward", &conv2d_backward, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("stride") = Pair{1, 1}, py::arg("padding") = Quad{0, 0, 0, 0}, py::arg("dilation") = Pair{1, 1},
        py::arg("groups") = 1, py::arg("need_dx") = true, py::arg("need_dw") = true, py::arg("need_db") = true,
        py::arg("op") = "conv2d_backward",
        R"doc(conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups, need_dx, need_dw, need_db, op)

Kernel entry for dlkern.ops.conv2d_backward: returns (dx | None, dweight | None, dbias | None).)doc");
  // dlkern.ops.conv refuses larger stride / dilation / padding with its own message
  // before they reach (and could not convert to) int64.
  m.attr("conv_max_arg") = cpu::kMaxConvArg;
}

}  // namespace dlkern::bind
