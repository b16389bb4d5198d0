// dlkern._C_cuda pooling: max_pool2d(_forward/_backward), avg_pool2d(_backward),
// adaptive_avg_pool2d(_backward), with the names, argument lists, return values and
// error messages of dlkern.ops.pool (its Python checks are repeated here) and the CPU
// kernels' geometry rule (cpu::make_pool2d_geometry, the same function). x is
// (N, C, H, W) or (C, H, W); strided inputs are made contiguous. Every argument is
// checked before device work; _pool2d_plan runs the same checks on shapes alone.
#include <array>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind/cuda_common.h"
#include "cpu/pool.h"
#include "cuda/check.h"
#include "cuda/pool.h"

namespace dlkern::bind {
namespace {

using cuda::DeviceArray;
using cuda::Shape;
using Pair = std::array<int64_t, 2>;

std::string py_repr(const py::handle& v) { return py::repr(v).cast<std::string>(); }

// numbers.Integral but not bool (Python's or NumPy's), as dlkern.ops.pool._int.
int64_t as_int(const py::handle& v, const char* op, const char* name) {
  const bool ok = !PyBool_Check(v.ptr()) && PyIndex_Check(v.ptr()) && !PyFloat_Check(v.ptr()) &&
                  py::str(py::type::of(v).attr("__name__")).cast<std::string>() != "bool";
  if (!ok) type_error(op, ": ", name, " must be an int or a pair of ints, got ", py_repr(v));
  // The geometry check refuses sizes above 2^31 by name; one past int64 would not even
  // convert, so it is refused here the same way (dlkern.ops.pool._int).
  const py::int_ big = py::int_(py::reinterpret_borrow<py::object>(v));
  if (big > py::int_(std::numeric_limits<int64_t>::max()) || big < py::int_(std::numeric_limits<int64_t>::min()))
    value_error(op, ": ", name, " ", py_repr(v), " is too large (limit 2**31)");
  return v.cast<int64_t>();
}

// An int, or a tuple/list of 1 or 2 ints, as (h, w).
Pair pair(const py::handle& value, const char* op, const char* name) {
  if (py::isinstance<py::tuple>(value) || py::isinstance<py::list>(value)) {
    const size_t n = py::len(value);
    if (n != 1 && n != 2) value_error(op, ": ", name, " must be an int or a pair of ints, got ", py_repr(value));
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(value);
    return {as_int(seq[0], op, name), as_int(seq[n - 1], op, name)};
  }
  const int64_t v = as_int(value, op, name);
  return {v, v};
}

// A float DeviceArray of 3 or 4 dimensions, with its 4-D shape (a batch of one added).
struct Planes {
  const DeviceArray* array = nullptr;
  Shape shape4;
  bool added = false;
};

Shape as_4d_shape(const Shape& shape, const char* op, const char* name, bool& added) {
  if (shape.size() != 3 && shape.size() != 4)
    value_error(op, ": ", name, " must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape ", cuda::shape_str(shape));
  added = shape.size() == 3;
  Shape s4 = shape;
  if (added) s4.insert(s4.begin(), 1);
  return s4;
}

// The kernels' checks on a 4-D float input (dlkern._C's check_nchw).
void check_planes(const Shape& s4, const char* op, const char* name) {
  if (s4[2] < 1 || s4[3] < 1)
    value_error(op, ": ", name, " has shape ", cuda::shape_str(s4), "; H and W must be at least 1");
}

Planes planes(const py::handle& obj, const char* op, const char* name) {
  Planes p;
  p.array = &require_device_array(obj, op, name);
  p.shape4 = as_4d_shape(p.array->shape, op, name, p.added);
  if (p.array->dtype == cuda::DType::i64)
    type_error(op, ": ", name, " has dtype int64; expected float32 or float64");
  check_planes(p.shape4, op, name);
  return p;
}

cuda::Pool2dGeometry geometry(const char* op, const Shape& s4, const Pair& kernel, const Pair& stride,
                              const Pair& padding, const Pair& dilation, bool ceil_mode) {
  try {
    return cpu::make_pool2d_geometry(op, s4[0] * s4[1], s4[2], s4[3], kernel.data(), stride.data(), padding.data(),
                                     dilation.data(), ceil_mode);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
}

// The geometry arguments of max/avg pooling: stride None means kernel_size.
struct PoolArgs {
  Pair kernel, stride, padding, dilation;
};

PoolArgs pool_args(const char* op, const py::handle& kernel, const py::handle& stride, const py::handle& padding,
                   const py::handle& dilation) {
  PoolArgs a;
  a.kernel = pair(kernel, op, "kernel_size");
  a.stride = stride.is_none() ? a.kernel : pair(stride, op, "stride");
  a.padding = pair(padding, op, "padding");
  a.dilation = dilation.is_none() ? Pair{1, 1} : pair(dilation, op, "dilation");
  return a;
}

// dlkern.ops.pool._input_shape plus the kernel binding's check_input_shape: 4 sizes.
Shape input_shape_of(const py::handle& obj, const Shape& grad_shape, const Shape& grad4, const char* op) {
  Shape shape;
  try {
    for (const py::handle v : obj) shape.push_back(as_int(v, op, "input_shape"));
  } catch (const py::type_error&) {
    type_error(op, ": input_shape must be a sequence of ints, got ", py_repr(obj));
  } catch (const py::error_already_set&) {  // not iterable
    type_error(op, ": input_shape must be a sequence of ints, got ", py_repr(obj));
  }
  if (shape.size() != grad_shape.size())
    value_error(op, ": input_shape ", cuda::shape_str(shape), " has ", shape.size(), " entries but grad_out is ",
                grad_shape.size(), "-D");
  if (shape.size() == 3) shape.insert(shape.begin(), 1);
  for (int64_t s : shape)
    if (s < 0) value_error(op, ": input_shape has a negative size");
  if (shape[2] < 1 || shape[3] < 1) value_error(op, ": input_shape must have H and W at least 1");
  if (shape[0] != grad4[0] || shape[1] != grad4[1])
    value_error(op, ": grad_out has shape ", cuda::shape_str(grad4), " but input_shape is ", cuda::shape_str(shape),
                "; N and C must agree");
  return shape;
}

int64_t divisor_of(const py::handle& obj, const char* op) {
  if (obj.is_none()) return 0;
  const int64_t d = as_int(obj, op, "divisor_override");
  if (d == 0) value_error(op, ": divisor_override must not be zero");
  return d;
}

// The result shape: 4-D, or 3-D when the input had no batch axis.
Shape result_shape(const Shape& s4, bool added) { return added ? Shape(s4.begin() + 1, s4.end()) : s4; }

template <typename T>
T* data_of(const DeviceArray& a) {
  return static_cast<T*>(a.data());
}

// Runs body(T{}, xc, stream) on the input's device with the GIL released; out is
// allocated on the input's stream.
template <typename Body>
void on_device(const DeviceArray& x, const char* op, Body&& body) {
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(x.device, op);
  const DeviceArray xc = cuda::contiguous(x, op);
  dispatch_cuda_float(x.dtype, [&](auto zero) { body(zero, xc, xc.stream); });
}

py::tuple max_forward(const py::object& x_obj, const py::object& kernel, const py::object& stride,
                      const py::object& padding, const py::object& dilation, bool ceil_mode, bool with_indices) {
  const char* op = "max_pool2d";
  const PoolArgs a = pool_args(op, kernel, stride, padding, dilation);
  const Planes x = planes(x_obj, op, "x");
  const auto g = geometry(op, x.shape4, a.kernel, a.stride, a.padding, a.dilation, ceil_mode);
  const Shape out = result_shape({x.shape4[0], x.shape4[1], g.out_h, g.out_w}, x.added);
  DeviceArray y, idx;
  on_device(*x.array, op, [&](auto zero, const DeviceArray& xc, cudaStream_t s) {
    using T = decltype(zero);
    y = cuda::empty(out, xc.dtype, xc.device, s, op);
    if (with_indices) idx = cuda::empty(out, cuda::DType::i64, xc.device, s, op);
    cuda::max_pool2d_forward<T>(data_of<const T>(xc), data_of<T>(y),
                                with_indices ? data_of<int64_t>(idx) : nullptr, g, s, op);
  });
  return py::make_tuple(std::move(y), with_indices ? py::cast(std::move(idx)) : py::none());
}

py::object max_backward(const py::object& grad_obj, const py::object& idx_obj, const py::object& input_shape) {
  const char* op = "max_pool2d_backward";
  const Planes gr = planes(grad_obj, op, "grad_out");
  const DeviceArray& idx = require_device_array(idx_obj, op, "indices");
  if (idx.shape != gr.array->shape)
    value_error(op, ": indices has shape ", cuda::shape_str(idx.shape), " but grad_out has shape ",
                cuda::shape_str(gr.array->shape));
  if (idx.dtype != cuda::DType::i64)
    type_error(op, ": indices has dtype ", cuda::dtype_name(idx.dtype), "; expected int64");
  if (idx.device != gr.array->device)
    value_error(op, ": indices is on cuda:", idx.device, " but grad_out is on cuda:", gr.array->device);
  const Shape in4 = input_shape_of(input_shape, gr.array->shape, gr.shape4, op);
  cuda::Pool2dGeometry g;
  g.planes = in4[0] * in4[1], g.in_h = in4[2], g.in_w = in4[3];
  g.out_h = gr.shape4[2], g.out_w = gr.shape4[3];
  DeviceArray dx;
  unsigned long long bad = std::numeric_limits<unsigned long long>::max();
  int64_t bad_value = 0;
  on_device(*gr.array, op, [&](auto zero, const DeviceArray& gc, cudaStream_t s) {
    using T = decltype(zero);
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray ic = contiguous_on(idx, s, op);
    cuda::stream_wait(s, ic.stream, op);
    dx = cuda::empty(result_shape(in4, gr.added), gc.dtype, gc.device, s, op);
    DeviceArray flag = cuda::empty({1}, cuda::DType::i64, gc.device, s, op);
    cuda::check(cudaMemsetAsync(flag.data(), 0xFF, sizeof(bad), s), op, "initialise the index check");
    cuda::max_pool2d_backward<T>(data_of<const T>(gc), data_of<const int64_t>(ic), data_of<T>(dx),
                                 data_of<unsigned long long>(flag), g, s, op);
    if (g.planes * g.in_h * g.in_w > 0) cuda::to_host(flag, &bad, op);  // waits for the kernel
    if (bad != std::numeric_limits<unsigned long long>::max()) {
      DeviceArray at = ic;  // the offending entry, for the message
      at.offset += static_cast<int64_t>(bad);
      at.shape = {1}, at.strides = {1};
      cuda::to_host(at, &bad_value, op);
    }
  });
  if (bad != std::numeric_limits<unsigned long long>::max())
    value_error(op, ": indices holds ", bad_value, ", outside [0, ", g.in_h * g.in_w, ") for input planes of (",
                g.in_h, ", ", g.in_w, ")");
  return py::cast(std::move(dx));
}

py::object avg_forward(const py::object& x_obj, const py::object& kernel, const py::object& stride,
                       const py::object& padding, bool ceil_mode, bool count_include_pad,
                       const py::object& divisor_override) {
  const char* op = "avg_pool2d";
  const PoolArgs a = pool_args(op, kernel, stride, padding, py::none());
  const int64_t divisor = divisor_of(divisor_override, op);
  const Planes x = planes(x_obj, op, "x");
  const auto g = geometry(op, x.shape4, a.kernel, a.stride, a.padding, a.dilation, ceil_mode);
  const Shape out = result_shape({x.shape4[0], x.shape4[1], g.out_h, g.out_w}, x.added);
  DeviceArray y;
  on_device(*x.array, op, [&](auto zero, const DeviceArray& xc, cudaStream_t s) {
    using T = decltype(zero);
    y = cuda::empty(out, xc.dtype, xc.device, s, op);
    cuda::avg_pool2d_forward<T>(data_of<const T>(xc), data_of<T>(y), g, count_include_pad, divisor, s, op);
  });
  return py::cast(std::move(y));
}

py::object avg_backward(const py::object& grad_obj, const py::object& input_shape, const py::object& kernel,
                        const py::object& stride, const py::object& padding, bool ceil_mode, bool count_include_pad,
                        const py::object& divisor_override) {
  const char* op = "avg_pool2d_backward";
  const PoolArgs a = pool_args(op, kernel, stride, padding, py::none());
  const int64_t divisor = divisor_of(divisor_override, op);
  const Planes gr = planes(grad_obj, op, "grad_out");
  const Shape in4 = input_shape_of(input_shape, gr.array->shape, gr.shape4, op);
  const auto g = geometry(op, in4, a.kernel, a.stride, a.padding, a.dilation, ceil_mode);
  if (gr.shape4[2] != g.out_h || gr.shape4[3] != g.out_w)
    value_error(op, ": grad_out has shape ", cuda::shape_str(gr.shape4), ", expected (", gr.shape4[0], ", ",
                gr.shape4[1], ", ", g.out_h, ", ", g.out_w, ") for these pooling arguments");
  DeviceArray dx;
  on_device(*gr.array, op, [&](auto zero, const DeviceArray& gc, cudaStream_t s) {
    using T = decltype(zero);
    dx = cuda::empty(result_shape(in4, gr.added), gc.dtype, gc.device, s, op);
    cuda::avg_pool2d_backward<T>(data_of<const T>(gc), data_of<T>(dx), g, count_include_pad, divisor, s, op);
  });
  return py::cast(std::move(dx));
}

Pair adaptive_size(const py::handle& output_size, const Shape& s4, const char* op) {
  Pair size;
  if (py::isinstance<py::tuple>(output_size) || py::isinstance<py::list>(output_size)) {
    if (py::len(output_size) != 2)
      value_error(op, ": output_size must be an int or a pair, got ", py_repr(output_size));
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(output_size);
    for (int a = 0; a < 2; ++a)
      size[a] = seq[a].is_none() ? s4[2 + a] : as_int(seq[a], op, "output_size");
  } else {
    size = pair(output_size, op, "output_size");
  }
  if (size[0] < 1 || size[1] < 1)
    value_error(op, ": output_size must be at least 1, got (", size[0], ", ", size[1], ")");
  // The kernel computes oh * in_h: bounded like the other pooling arguments (as dlkern._C).
  if (size[0] > cpu::kMaxPoolArg || size[1] > cpu::kMaxPoolArg)
    value_error(op, ": output_size (", size[0], ", ", size[1], ") is too large (limit 2^31)");
  return size;
}

py::object adaptive_forward(const py::object& x_obj, const py::object& output_size) {
  const char* op = "adaptive_avg_pool2d";
  const Planes x = planes(x_obj, op, "x");
  const Pair size = adaptive_size(output_size, x.shape4, op);
  cuda::Pool2dGeometry g;
  g.planes = x.shape4[0] * x.shape4[1], g.in_h = x.shape4[2], g.in_w = x.shape4[3];
  g.out_h = size[0], g.out_w = size[1];
  DeviceArray y;
  on_device(*x.array, op, [&](auto zero, const DeviceArray& xc, cudaStream_t s) {
    using T = decltype(zero);
    y = cuda::empty(result_shape({x.shape4[0], x.shape4[1], g.out_h, g.out_w}, x.added), xc.dtype, xc.device, s, op);
    cuda::adaptive_avg_pool2d_forward<T>(data_of<const T>(xc), data_of<T>(y), g, s, op);
  });
  return py::cast(std::move(y));
}

py::object adaptive_backward(const py::object& grad_obj, const py::object& input_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  const Planes gr = planes(grad_obj, op, "grad_out");
  const Shape in4 = input_shape_of(input_shape, gr.array->shape, gr.shape4, op);
  cuda::Pool2dGeometry g;
  g.planes = in4[0] * in4[1], g.in_h = in4[2], g.in_w = in4[3];
  g.out_h = gr.shape4[2], g.out_w = gr.shape4[3];
  DeviceArray dx;
  on_device(*gr.array, op, [&](auto zero, const DeviceArray& gc, cudaStream_t s) {
    using T = decltype(zero);
    dx = cuda::empty(result_shape(in4, gr.added), gc.dtype, gc.device, s, op);
    cuda::adaptive_avg_pool2d_backward<T>(data_of<const T>(gc), data_of<T>(dx), g, s, op);
  });
  return py::cast(std::move(dx));
}

// Testing aid: the output shape max_pool2d (kind "max") or avg_pool2d ("avg") would give
// for an input shape, with the same argument checks and errors; no device needed.
py::dict pool2d_plan(const std::string& kind, const py::object& x_shape, const py::object& kernel,
                     const py::object& stride, const py::object& padding, const py::object& dilation,
                     bool ceil_mode) {
  if (kind != "max" && kind != "avg") value_error("_pool2d_plan: kind must be 'max' or 'avg', got '", kind, "'");
  const char* op = kind == "max" ? "max_pool2d" : "avg_pool2d";
  const PoolArgs a = pool_args(op, kernel, stride, padding, kind == "max" ? py::object(dilation) : py::none());
  bool added = false;
  const Shape s4 = as_4d_shape(to_shape(x_shape, op, "x_shape"), op, "x", added);
  check_planes(s4, op, "x");
  const auto g = geometry(op, s4, a.kernel, a.stride, a.padding, a.dilation, ceil_mode);
  py::dict d;
  d["out_shape"] = to_tuple(result_shape({s4[0], s4[1], g.out_h, g.out_w}, added));
  d["kernel_size"] = py::make_tuple(g.kernel_h, g.kernel_w);
  d["stride"] = py::make_tuple(g.stride_h, g.stride_w);
  d["padding"] = py::make_tuple(g.pad_h, g.pad_w);
  d["dilation"] = py::make_tuple(g.dilation_h, g.dilation_w);
  return d;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_pool) {
  const py::int_ zero(0), one(1);
  m.def("max_pool2d_forward",
        [](const py::object& x, const py::object& k, const py::object& s, const py::object& p, const py::object& d,
           bool ceil_mode) { return max_forward(x, k, s, p, d, ceil_mode, true); },
        py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = zero,
        py::arg("dilation") = one, py::arg("ceil_mode") = false,
        "max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> (y, indices):\n"
        "indices (int64) hold each maximum's flat position ih*W + iw in its plane, -1 for a window of padding.");
  m.def("max_pool2d",
        [](const py::object& x, const py::object& k, const py::object& s, const py::object& p, const py::object& d,
           bool ceil_mode, bool return_indices) -> py::object {
          py::tuple r = max_forward(x, k, s, p, d, ceil_mode, return_indices);
          return return_indices ? py::object(r) : py::object(r[0]);
        },
        py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = zero,
        py::arg("dilation") = one, py::arg("ceil_mode") = false, py::arg("return_indices") = false,
        "max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False).");
  m.def("max_pool2d_backward", &max_backward, py::arg("grad_out"), py::arg("indices"), py::arg("input_shape"),
        "max_pool2d_backward(grad_out, indices, input_shape) -> dx: grad_out added into zeros of input_shape at the\n"
        "positions in indices (atomicAdd). An index outside the plane (other than -1) raises ValueError.");
  m.def("avg_pool2d", &avg_forward, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = zero, py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
        py::arg("divisor_override") = py::none(),
        "avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, "
        "divisor_override=None).");
  m.def("avg_pool2d_backward", &avg_backward, py::arg("grad_out"), py::arg("input_shape"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = zero, py::arg("ceil_mode") = false,
        py::arg("count_include_pad") = true, py::arg("divisor_override") = py::none(),
        "avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False, "
        "count_include_pad=True, divisor_override=None) -> dx of input_shape.");
  m.def("adaptive_avg_pool2d", &adaptive_forward, py::arg("x"), py::arg("output_size"),
        "adaptive_avg_pool2d(x, output_size): output_size an int or an (h, w) pair, None keeps that size.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_backward, py::arg("grad_out"), py::arg("input_shape"),
        "adaptive_avg_pool2d_backward(grad_out, input_shape) -> dx of input_shape.");
  m.def("_pool2d_plan", &pool2d_plan, py::arg("kind"), py::arg("x_shape"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = zero, py::arg("dilation") = one,
        py::arg("ceil_mode") = false,
        "Testing aid: the checks and output shape of max_pool2d (kind 'max') or avg_pool2d ('avg') for x_shape.");
}

}  // namespace dlkern::bind
