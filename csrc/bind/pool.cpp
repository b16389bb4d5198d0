// dlkern._C pooling kernels on NumPy arrays: max_pool2d(_forward, _backward),
// avg_pool2d(_backward), adaptive_avg_pool2d(_backward) (arguments, checks and geometry
// shared with dlkern._C_cuda: bind/pool_args.h). Arrays must be C-contiguous float
// (dlkern.ops copies, explicitly, before calling); a 3-D (C, H, W) input is one image.
#include "bind/pool_args.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

// A C-contiguous float array of 3 or 4 dimensions with its 4-D shape.
struct Planes {
  py::array array;
  Dims shape4;
  bool added = false;
  DType dtype = DType::f32;
};

Planes planes(const py::handle& obj, const char* op, const char* arg) {
  Planes p;
  p.array = require_array(obj, op, arg);
  p.shape4 = pool_planes(dims_of(p.array), op, arg, p.added);
  p.dtype = float_dtype(p.array, op, arg);
  if (!(p.array.flags() & py::array::c_style))
    value_error(op, ": ", arg, " must be C-contiguous (got strides of a view); pass np.ascontiguousarray(", arg, ")");
  return p;
}

py::array new_array(const py::dtype& dtype, const Dims& shape, bool added) {
  const Dims s = pool_result(shape, added);
  return py::array(dtype, std::vector<py::ssize_t>(s.begin(), s.end()));
}

// Runs body(T{}) for the array's dtype with the GIL released.
template <typename Body>
void without_gil(DType dt, Body&& body) {
  py::gil_scoped_release nogil;
  dispatch_float(dt, std::forward<Body>(body));
}

py::tuple max_forward(const py::object& x_obj, const py::object& kernel, const py::object& stride,
                      const py::object& padding, const py::object& dilation, bool ceil_mode, bool with_indices) {
  const char* op = "max_pool2d";
  const PoolArgs a = pool_args(op, kernel, stride, padding, dilation);
  const Planes x = planes(x_obj, op, "x");
  const auto g = pool_geometry(op, x.shape4, a, ceil_mode);
  const Dims out{x.shape4[0], x.shape4[1], g.out_h, g.out_w};
  py::array y = new_array(x.array.dtype(), out, x.added);
  py::object indices = py::none();
  int64_t* ip = nullptr;
  if (with_indices) {
    py::array idx = new_array(py::dtype::of<int64_t>(), out, x.added);
    ip = static_cast<int64_t*>(idx.mutable_data());
    indices = idx;
  }
  const void* xp = x.array.data();
  void* yp = y.mutable_data();
  without_gil(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    cpu::max_pool2d_forward(static_cast<const T*>(xp), static_cast<T*>(yp), ip, g);
  });
  return py::make_tuple(y, indices);
}

bool is_int64(const py::array& a) {
  const py::dtype dt = a.dtype();
  const char order = dt.byteorder();
  return dt.kind() == 'i' && dt.itemsize() == 8 && (order == '=' || order == '<' || order == '|');
}

py::object max_backward(const py::object& grad_obj, const py::object& idx_obj, const py::object& input_shape) {
  const char* op = "max_pool2d_backward";
  const Planes gr = planes(grad_obj, op, "grad_out");
  const py::array idx = require_array(idx_obj, op, "indices");
  if (dims_of(idx) != dims_of(gr.array))
    value_error(op, ": indices has shape ", shape_str(idx), " but grad_out has shape ", shape_str(gr.array));
  if (!is_int64(idx)) type_error(op, ": indices has dtype ", dtype_str(idx), "; expected int64");
  if (!(idx.flags() & py::array::c_style))
    value_error(op, ": indices must be C-contiguous; pass np.ascontiguousarray(indices)");
  const Dims in4 = pool_input_shape(input_shape, dims_of(gr.array), gr.shape4, gr.array.itemsize(), op);
  const auto g = pool_backward_planes(gr.shape4, in4);
  py::array dx = new_array(gr.array.dtype(), in4, gr.added);
  const void* gp = gr.array.data();
  const int64_t* ip = static_cast<const int64_t*>(idx.data());
  void* dxp = dx.mutable_data();
  // An index outside its plane is the kernel's std::invalid_argument: a ValueError.
  without_gil(gr.dtype, [&](auto zero) {
    using T = decltype(zero);
    cpu::max_pool2d_backward(static_cast<const T*>(gp), ip, static_cast<T*>(dxp), g);
  });
  return std::move(dx);
}

py::object avg_forward(const py::object& x_obj, const py::object& kernel, const py::object& stride,
                       const py::object& padding, bool ceil_mode, bool count_include_pad,
                       const py::object& divisor_override) {
  const char* op = "avg_pool2d";
  const PoolArgs a = pool_args(op, kernel, stride, padding, py::none());
  const int64_t divisor = pool_divisor(divisor_override, op);
  const Planes x = planes(x_obj, op, "x");
  const auto g = pool_geometry(op, x.shape4, a, ceil_mode);
  py::array y = new_array(x.array.dtype(), {x.shape4[0], x.shape4[1], g.out_h, g.out_w}, x.added);
  const void* xp = x.array.data();
  void* yp = y.mutable_data();
  without_gil(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    cpu::avg_pool2d_forward(static_cast<const T*>(xp), static_cast<T*>(yp), g, count_include_pad, divisor);
  });
  return std::move(y);
}

py::object avg_backward(const py::object& grad_obj, const py::object& input_shape, const py::object& kernel,
                        const py::object& stride, const py::object& padding, bool ceil_mode, bool count_include_pad,
                        const py::object& divisor_override) {
  const char* op = "avg_pool2d_backward";
  const PoolArgs a = pool_args(op, kernel, stride, padding, py::none());
  const int64_t divisor = pool_divisor(divisor_override, op);
  const Planes gr = planes(grad_obj, op, "grad_out");
  const Dims in4 = pool_input_shape(input_shape, dims_of(gr.array), gr.shape4, gr.array.itemsize(), op);
  const auto g = pool_geometry(op, in4, a, ceil_mode);
  pool_require_grad_shape(gr.shape4, g, op);
  py::array dx = new_array(gr.array.dtype(), in4, gr.added);
  const void* gp = gr.array.data();
  void* dxp = dx.mutable_data();
  without_gil(gr.dtype, [&](auto zero) {
    using T = decltype(zero);
    cpu::avg_pool2d_backward(static_cast<const T*>(gp), static_cast<T*>(dxp), g, count_include_pad, divisor);
  });
  return std::move(dx);
}

// Adaptive average pooling either way: from src's planes into a new array of dims dst, with
// the plane geometry of the (output, input) pair; Backward picks the kernel.
template <bool Backward>
py::object adaptive_run(const Planes& src, const Dims& dst, const Dims& out, const Dims& in) {
  const auto g = pool_backward_planes(out, in);
  py::array y = new_array(src.array.dtype(), dst, src.added);
  const void* sp = src.array.data();
  void* yp = y.mutable_data();
  without_gil(src.dtype, [&](auto zero) {
    using T = decltype(zero);
    if constexpr (Backward)
      cpu::adaptive_avg_pool2d_backward(static_cast<const T*>(sp), static_cast<T*>(yp), g);
    else
      cpu::adaptive_avg_pool2d_forward(static_cast<const T*>(sp), static_cast<T*>(yp), g);
  });
  return std::move(y);
}

py::object adaptive_forward(const py::object& x_obj, const py::object& output_size) {
  const char* op = "adaptive_avg_pool2d";
  const Planes x = planes(x_obj, op, "x");
  const Pair size = adaptive_size(output_size, x.shape4, op);
  const Dims out{x.shape4[0], x.shape4[1], size[0], size[1]};
  return adaptive_run<false>(x, out, out, x.shape4);
}

py::object adaptive_backward(const py::object& grad_obj, const py::object& input_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  const Planes gr = planes(grad_obj, op, "grad_out");
  const Dims in4 = pool_input_shape(input_shape, dims_of(gr.array), gr.shape4, gr.array.itemsize(), op);
  return adaptive_run<true>(gr, in4, gr.shape4, in4);
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(pool) {
  def_pool_kernels(m, {&max_forward, &max_backward, &avg_forward, &avg_backward, &adaptive_forward,
                       &adaptive_backward});
}

}  // namespace dlkern::bind
