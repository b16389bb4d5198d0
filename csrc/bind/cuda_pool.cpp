// dlkern._C_cuda pooling: max_pool2d(_forward/_backward), avg_pool2d(_backward),
// adaptive_avg_pool2d(_backward) on DeviceArrays. Names, arguments, checks and geometry
// are dlkern._C's (bind/pool_args.h); this file adds the device-array checks and the
// launches. x is (N, C, H, W) or (C, H, W); strided inputs are made contiguous.
// _pool2d_plan runs the same checks on shapes alone.
#include <array>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind/cuda_common.h"
#include "bind/pool_args.h"
#include "cuda/check.h"
#include "cuda/pool.h"

namespace dlkern::bind {
namespace {

// A float DeviceArray of 3 or 4 dimensions, with its 4-D shape (a batch of one added).
struct Planes {
  const DeviceArray* array = nullptr;
  Shape shape4;
  bool added = false;
};

Planes planes(const py::handle& obj, const char* op, const char* name) {
  Planes p;
  p.array = &require_device_array(obj, op, name);
  p.shape4 = pool_planes(p.array->shape, op, name, p.added);
  if (p.array->dtype == cuda::DType::i64)
    type_error(op, ": ", name, " has dtype int64; expected float32 or float64");
  return p;
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
  const auto g = pool_geometry(op, x.shape4, a, ceil_mode);
  const Shape out = pool_result({x.shape4[0], x.shape4[1], g.out_h, g.out_w}, x.added);
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
  const Shape in4 = pool_input_shape(input_shape, gr.array->shape, gr.shape4, cuda::itemsize(gr.array->dtype), op);
  const cuda::Pool2dGeometry g = pool_backward_planes(gr.shape4, in4);
  DeviceArray dx;
  unsigned long long bad = std::numeric_limits<unsigned long long>::max();
  int64_t bad_value = 0;
  on_device(*gr.array, op, [&](auto zero, const DeviceArray& gc, cudaStream_t s) {
    using T = decltype(zero);
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray ic = contiguous_on(idx, s, op);
    cuda::stream_wait(s, ic.stream, op);
    dx = cuda::empty(pool_result(in4, gr.added), gc.dtype, gc.device, s, op);
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
  const int64_t divisor = pool_divisor(divisor_override, op);
  const Planes x = planes(x_obj, op, "x");
  const auto g = pool_geometry(op, x.shape4, a, ceil_mode);
  const Shape out = pool_result({x.shape4[0], x.shape4[1], g.out_h, g.out_w}, x.added);
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
  const int64_t divisor = pool_divisor(divisor_override, op);
  const Planes gr = planes(grad_obj, op, "grad_out");
  const Shape in4 = pool_input_shape(input_shape, gr.array->shape, gr.shape4, cuda::itemsize(gr.array->dtype), op);
  const auto g = pool_geometry(op, in4, a, ceil_mode);
  pool_require_grad_shape(gr.shape4, g, op);
  DeviceArray dx;
  on_device(*gr.array, op, [&](auto zero, const DeviceArray& gc, cudaStream_t s) {
    using T = decltype(zero);
    dx = cuda::empty(pool_result(in4, gr.added), gc.dtype, gc.device, s, op);
    cuda::avg_pool2d_backward<T>(data_of<const T>(gc), data_of<T>(dx), g, count_include_pad, divisor, s, op);
  });
  return py::cast(std::move(dx));
}

py::object adaptive_forward(const py::object& x_obj, const py::object& output_size) {
  const char* op = "adaptive_avg_pool2d";
  const Planes x = planes(x_obj, op, "x");
  const Pair size = adaptive_size(output_size, x.shape4, op);
  const cuda::Pool2dGeometry g = pool_backward_planes({x.shape4[0], x.shape4[1], size[0], size[1]}, x.shape4);
  DeviceArray y;
  on_device(*x.array, op, [&](auto zero, const DeviceArray& xc, cudaStream_t s) {
    using T = decltype(zero);
    y = cuda::empty(pool_result({x.shape4[0], x.shape4[1], g.out_h, g.out_w}, x.added), xc.dtype, xc.device, s, op);
    cuda::adaptive_avg_pool2d_forward<T>(data_of<const T>(xc), data_of<T>(y), g, s, op);
  });
  return py::cast(std::move(y));
}

py::object adaptive_backward(const py::object& grad_obj, const py::object& input_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  const Planes gr = planes(grad_obj, op, "grad_out");
  const Shape in4 = pool_input_shape(input_shape, gr.array->shape, gr.shape4, cuda::itemsize(gr.array->dtype), op);
  const cuda::Pool2dGeometry g = pool_backward_planes(gr.shape4, in4);
  DeviceArray dx;
  on_device(*gr.array, op, [&](auto zero, const DeviceArray& gc, cudaStream_t s) {
    using T = decltype(zero);
    dx = cuda::empty(pool_result(in4, gr.added), gc.dtype, gc.device, s, op);
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
  const Shape s4 = pool_planes(to_shape(x_shape, op, "x_shape"), op, "x", added);
  const auto g = pool_geometry(op, s4, a, ceil_mode);
  py::dict d;
  d["out_shape"] = to_tuple(pool_result({s4[0], s4[1], g.out_h, g.out_w}, added));
  d["kernel_size"] = py::make_tuple(g.kernel_h, g.kernel_w);
  d["stride"] = py::make_tuple(g.stride_h, g.stride_w);
  d["padding"] = py::make_tuple(g.pad_h, g.pad_w);
  d["dilation"] = py::make_tuple(g.dilation_h, g.dilation_w);
  return d;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_pool) {
  def_pool_kernels(m, {&max_forward, &max_backward, &avg_forward, &avg_backward, &adaptive_forward,
                       &adaptive_backward});
  const py::int_ zero(0), one(1);
  m.def("_pool2d_plan", &pool2d_plan, py::arg("kind"), py::arg("x_shape"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = zero, py::arg("dilation") = one,
        py::arg("ceil_mode") = false,
        "Testing aid: the checks and output shape of max_pool2d (kind 'max') or avg_pool2d ('avg') for x_shape.");
}

}  // namespace dlkern::bind
