// Bindings for pooling: max_pool2d_forward/backward, avg_pool2d_forward/backward,
// adaptive_avg_pool2d_forward/backward on 4-D (N, C, H, W) C-contiguous float arrays.
// Python (dlkern.ops.pool) normalises int-or-pair arguments, 3-D inputs and
// non-contiguous inputs (an explicit copy) before calling these.
#include <array>
#include <optional>
#include <stdexcept>
#include <vector>

#include <pybind11/stl.h>

#include "bind/common.h"
#include "cpu/pool.h"

namespace dlkern::bind {
namespace {

using Pair = std::array<int64_t, 2>;

// x is a 4-D C-contiguous float array with non-empty planes.
DType check_nchw(const py::handle& obj, const char* op, const char* arg, py::array& out) {
  out = require_array(obj, op, arg);
  if (out.ndim() != 4)
    value_error(op, ": ", arg, " must be 4-D (N, C, H, W), got shape ", shape_str(out));
  const DType dt = float_dtype(out, op, arg);
  if (!(out.flags() & py::array::c_style))
    value_error(op, ": ", arg, " must be C-contiguous (got strides of a view); pass np.ascontiguousarray(", arg, ")");
  if (out.shape(2) < 1 || out.shape(3) < 1)
    value_error(op, ": ", arg, " has shape ", shape_str(out), "; H and W must be at least 1");
  return dt;
}

// input_shape of a backward: 4 non-negative sizes agreeing with grad_out on (N, C).
std::array<int64_t, 4> check_input_shape(const std::vector<int64_t>& shape, const py::array& grad,
                                         const char* op) {
  if (shape.size() != 4) value_error(op, ": input_shape must have 4 entries (N, C, H, W), got ", shape.size());
  for (int64_t s : shape)
    if (s < 0) value_error(op, ": input_shape has a negative size");
  if (shape[2] < 1 || shape[3] < 1) value_error(op, ": input_shape must have H and W at least 1");
  if (shape[0] != grad.shape(0) || shape[1] != grad.shape(1))
    value_error(op, ": grad_out has shape ", shape_str(grad), " but input_shape is (", shape[0], ", ",
                shape[1], ", ", shape[2], ", ", shape[3], "); N and C must agree");
  // dx is allocated from input_shape: its byte size must fit (NumPy's own limit is
  // PTRDIFF_MAX), computed without overflow.
  // Zero sizes are skipped, as NumPy does, so (0, C, 2**62, 2**62) is refused too.
  int64_t bytes = static_cast<int64_t>(grad.itemsize());
  for (int64_t s : shape)
    if (s > 0 && __builtin_mul_overflow(bytes, s, &bytes))
      value_error(op, ": input_shape (", shape[0], ", ", shape[1], ", ", shape[2], ", ", shape[3],
                  ") is too large to allocate");
  return {shape[0], shape[1], shape[2], shape[3]};
}

cpu::Pool2dGeometry geometry(const char* op, int64_t n, int64_t c, int64_t h, int64_t w,
                             const Pair& kernel, const Pair& stride, const Pair& padding,
                             const Pair& dilation, bool ceil_mode) {
  try {
    return cpu::make_pool2d_geometry(op, n * c, h, w, kernel.data(), stride.data(), padding.data(),
                                     dilation.data(), ceil_mode);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

int64_t check_divisor(const std::optional<int64_t>& divisor_override, const char* op) {
  if (!divisor_override) return 0;
  if (*divisor_override == 0) value_error(op, ": divisor_override must not be zero");
  return *divisor_override;
}

void require_grad_shape(const py::array& grad, const cpu::Pool2dGeometry& g, const char* op) {
  if (grad.shape(2) != g.out_h || grad.shape(3) != g.out_w)
    value_error(op, ": grad_out has shape ", shape_str(grad), ", expected (", grad.shape(0), ", ",
                grad.shape(1), ", ", g.out_h, ", ", g.out_w, ") for these pooling arguments");
}

bool is_int64(const py::array& a) {
  const py::dtype dt = a.dtype();
  const char order = dt.byteorder();
  return dt.kind() == 'i' && dt.itemsize() == 8 && (order == '=' || order == '<' || order == '|');
}

py::tuple max_pool2d_forward(const py::object& x_obj, Pair kernel, Pair stride, Pair padding,
                             Pair dilation, bool ceil_mode, bool with_indices) {
  const char* op = "max_pool2d";
  py::array x;
  const DType dt = check_nchw(x_obj, op, "x", x);
  const auto g = geometry(op, x.shape(0), x.shape(1), x.shape(2), x.shape(3), kernel, stride, padding,
                          dilation, ceil_mode);
  const std::vector<py::ssize_t> out_shape{x.shape(0), x.shape(1), g.out_h, g.out_w};
  py::array y(x.dtype(), out_shape);
  py::object indices = py::none();
  int64_t* ip = nullptr;
  if (with_indices) {
    py::array_t<int64_t> idx(out_shape);
    ip = idx.mutable_data();
    indices = idx;
  }
  const void* xp = x.data();
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::max_pool2d_forward(static_cast<const T*>(xp), static_cast<T*>(yp), ip, g);
    });
  }
  return py::make_tuple(y, indices);
}

py::array max_pool2d_backward(const py::object& grad_obj, const py::object& idx_obj,
                              const std::vector<int64_t>& input_shape) {
  const char* op = "max_pool2d_backward";
  py::array grad;
  const DType dt = check_nchw(grad_obj, op, "grad_out", grad);
  py::array idx = require_array(idx_obj, op, "indices");
  if (!is_int64(idx)) type_error(op, ": indices has dtype ", dtype_str(idx), "; expected int64");
  if (idx.ndim() != 4 || idx.shape(0) != grad.shape(0) || idx.shape(1) != grad.shape(1) ||
      idx.shape(2) != grad.shape(2) || idx.shape(3) != grad.shape(3))
    value_error(op, ": indices has shape ", shape_str(idx), " but grad_out has shape ", shape_str(grad),
                "; they must match");
  if (!(idx.flags() & py::array::c_style))
    value_error(op, ": indices must be C-contiguous; pass np.ascontiguousarray(indices)");
  const auto s = check_input_shape(input_shape, grad, op);
  cpu::Pool2dGeometry g;
  g.planes = s[0] * s[1], g.in_h = s[2], g.in_w = s[3];
  g.out_h = grad.shape(2), g.out_w = grad.shape(3);
  py::array dx(grad.dtype(), std::vector<py::ssize_t>{s[0], s[1], s[2], s[3]});
  const void* gp = grad.data();
  const int64_t* ip = static_cast<const int64_t*>(idx.data());
  void* dxp = dx.mutable_data();
  try {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::max_pool2d_backward(static_cast<const T*>(gp), ip, static_cast<T*>(dxp), g);
    });
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  return dx;
}

py::array avg_pool2d_forward(const py::object& x_obj, Pair kernel, Pair stride, Pair padding,
                             bool ceil_mode, bool count_include_pad,
                             std::optional<int64_t> divisor_override) {
  const char* op = "avg_pool2d";
  py::array x;
  const DType dt = check_nchw(x_obj, op, "x", x);
  const int64_t divisor = check_divisor(divisor_override, op);
  const auto g = geometry(op, x.shape(0), x.shape(1), x.shape(2), x.shape(3), kernel, stride, padding,
                          Pair{1, 1}, ceil_mode);
  py::array y(x.dtype(), std::vector<py::ssize_t>{x.shape(0), x.shape(1), g.out_h, g.out_w});
  const void* xp = x.data();
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::avg_pool2d_forward(static_cast<const T*>(xp), static_cast<T*>(yp), g, count_include_pad, divisor);
    });
  }
  return y;
}

py::array avg_pool2d_backward(const py::object& grad_obj, const std::vector<int64_t>& input_shape,
                              Pair kernel, Pair stride, Pair padding, bool ceil_mode,
                              bool count_include_pad, std::optional<int64_t> divisor_override) {
  const char* op = "avg_pool2d_backward";
  py::array grad;
  const DType dt = check_nchw(grad_obj, op, "grad_out", grad);
  const int64_t divisor = check_divisor(divisor_override, op);
  const auto s = check_input_shape(input_shape, grad, op);
  const auto g = geometry(op, s[0], s[1], s[2], s[3], kernel, stride, padding, Pair{1, 1}, ceil_mode);
  require_grad_shape(grad, g, op);
  py::array dx(grad.dtype(), std::vector<py::ssize_t>{s[0], s[1], s[2], s[3]});
  const void* gp = grad.data();
  void* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::avg_pool2d_backward(static_cast<const T*>(gp), static_cast<T*>(dxp), g, count_include_pad, divisor);
    });
  }
  return dx;
}

py::array adaptive_avg_pool2d_forward(const py::object& x_obj, Pair output_size) {
  const char* op = "adaptive_avg_pool2d";
  py::array x;
  const DType dt = check_nchw(x_obj, op, "x", x);
  if (output_size[0] < 1 || output_size[1] < 1)
    value_error(op, ": output_size must be at least 1, got (", output_size[0], ", ", output_size[1], ")");
  // The kernel computes oh * in_h: bounded like the other pooling arguments.
  if (output_size[0] > cpu::kMaxPoolArg || output_size[1] > cpu::kMaxPoolArg)
    value_error(op, ": output_size (", output_size[0], ", ", output_size[1], ") is too large (limit 2^31)");
  cpu::Pool2dGeometry g;
  g.planes = x.shape(0) * x.shape(1), g.in_h = x.shape(2), g.in_w = x.shape(3);
  g.out_h = output_size[0], g.out_w = output_size[1];
  py::array y(x.dtype(), std::vector<py::ssize_t>{x.shape(0), x.shape(1), g.out_h, g.out_w});
  const void* xp = x.data();
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::adaptive_avg_pool2d_forward(static_cast<const T*>(xp), static_cast<T*>(yp), g);
    });
  }
  return y;
}

py::array adaptive_avg_pool2d_backward(const py::object& grad_obj, const std::vector<int64_t>& input_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  py::array grad;
  const DType dt = check_nchw(grad_obj, op, "grad_out", grad);
  const auto s = check_input_shape(input_shape, grad, op);
  cpu::Pool2dGeometry g;
  g.planes = s[0] * s[1], g.in_h = s[2], g.in_w = s[3];
  g.out_h = grad.shape(2), g.out_w = grad.shape(3);
  py::array dx(grad.dtype(), std::vector<py::ssize_t>{s[0], s[1], s[2], s[3]});
  const void* gp = grad.data();
  void* dxp = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::adaptive_avg_pool2d_backward(static_cast<const T*>(gp), static_cast<T*>(dxp), g);
    });
  }
  return dx;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(pool) {
  m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("x"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"),
        py::arg("with_indices") = true,
        "max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode, with_indices=True)\n\n"
        "Max pooling of a C-contiguous (N, C, H, W) float array; every geometry argument is an\n"
        "(h, w) pair. Returns (y, indices): indices (int64, y's shape) holds each maximum's flat\n"
        "position in its H*W plane, or None when with_indices is False.");
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_out"), py::arg("indices"),
        py::arg("input_shape"),
        "max_pool2d_backward(grad_out, indices, input_shape) -> dx: grad_out scattered (added)\n"
        "through indices into zeros of input_shape (N, C, H, W).");
  m.def("avg_pool2d_forward", &avg_pool2d_forward, py::arg("x"), py::arg("kernel_size"),
        py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"),
        py::arg("divisor_override") = py::none(),
        "avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, count_include_pad,\n"
        "divisor_override=None) -> y, average pooling of a C-contiguous (N, C, H, W) float array.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("grad_out"), py::arg("input_shape"),
        py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override") = py::none(),
        "avg_pool2d_backward(grad_out, input_shape, kernel_size, stride, padding, ceil_mode,\n"
        "count_include_pad, divisor_override=None) -> dx of shape input_shape.");
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward, py::arg("x"), py::arg("output_size"),
        "adaptive_avg_pool2d_forward(x, output_size) -> y of shape (N, C, *output_size).");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_out"),
        py::arg("input_shape"),
        "adaptive_avg_pool2d_backward(grad_out, input_shape) -> dx of shape input_shape.");
}

}  // namespace dlkern::bind
