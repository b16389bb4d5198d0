// dlkern._C_cuda conv2d / conv1d / causal_conv1d, forward and backward, on DeviceArrays.
// Names, arguments, checks and geometry are dlkern._C's (bind/conv_args.h); this file
// adds the device-array checks and the launches. _conv2d_plan (a testing aid, no device
// needed) runs the same checks on shapes alone.
#include <string>

#include "bind/conv_args.h"
#include "bind/cuda_common.h"
#include "cuda/check.h"
#include "cuda/conv.h"

namespace dlkern::bind {
namespace {

void require_same_device(const DeviceArray& a, const DeviceArray& x, const char* op, const char* arg) {
  if (a.device != x.device) value_error(op, ": ", arg, " is on cuda:", a.device, " but x is on cuda:", x.device);
}

// x and weight arrays with matching dtypes (the first checks of the CPU op).
std::pair<const DeviceArray*, const DeviceArray*> conv_inputs(const py::handle& x_obj, const py::handle& w_obj,
                                                              const char* op) {
  const DeviceArray& x = require_float_device_array(x_obj, op, "x");
  const DeviceArray& w = require_float_device_array(w_obj, op, "weight");
  if (w.dtype != x.dtype)
    type_error(op, ": x has dtype ", cuda::dtype_name(x.dtype), " but weight has dtype ", cuda::dtype_name(w.dtype),
               "; both must be the same float type");
  require_same_device(w, x, op, "weight");
  return {&x, &w};
}

py::object conv_forward(const char* op, int nd, bool causal, const py::object& x_obj, const py::object& w_obj,
                        const py::object& b_obj, const py::object& stride, const py::object& padding,
                        const py::object& dilation, const py::object& groups) {
  const auto [x, w] = conv_inputs(x_obj, w_obj, op);
  const ConvArgs g = conv_args(op, nd, causal, x->shape, w->shape, groups, stride, padding, dilation);
  const DeviceArray* b = nullptr;
  if (!b_obj.is_none()) {
    if (!py::isinstance<DeviceArray>(b_obj)) {
      if (py::isinstance<py::array>(b_obj)) require_device_array(b_obj, op, "bias");  // the host-memory hint
      type_error(op, ": bias must be a dlkern._C_cuda.DeviceArray or None, got ",
                 py::str(py::type::of(b_obj).attr("__name__")).cast<std::string>());
    }
    b = &b_obj.cast<const DeviceArray&>();
    const Shape bias_shape{w->shape[0]};
    require_like(*b, "bias", *x, "x", op, &bias_shape);
  }
  const cuda::Conv2dPlan plan = cuda::conv2d_plan(g.s, cuda::itemsize(x->dtype));
  DeviceArray y;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x->device, op);
    const DeviceArray xc = cuda::contiguous(*x, op);
    const cudaStream_t s = xc.stream;
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray wc = contiguous_on(*w, s, op);
    const DeviceArray bc = b ? contiguous_on(*b, s, op) : DeviceArray{};
    cuda::stream_wait(s, wc.stream, op);
    if (b) cuda::stream_wait(s, bc.stream, op);
    y = cuda::empty(g.g.out_shape(), x->dtype, x->device, s, op);
    // The column buffer comes from the caching allocator on this stream, so it is
    // handed back (and reusable by later work on the stream) when it goes out of scope.
    const DeviceArray cols =
        plan.column_elems ? cuda::empty({plan.column_elems}, x->dtype, x->device, s, op) : DeviceArray{};
    dispatch_cuda_float(x->dtype, [&](auto zero) {
      using T = decltype(zero);
      cuda::conv2d_forward<T>(g.s, plan, data_of<const T>(xc), data_of<const T>(wc), data_of<const T>(bc),
                              data_of<T>(y), data_of<T>(cols), s, op);
    });
  }
  return py::cast(std::move(y));
}

py::tuple conv_backward(const char* op, int nd, bool causal, const py::object& dy_obj, const py::object& x_obj,
                        const py::object& w_obj, const py::object& stride, const py::object& padding,
                        const py::object& dilation, const py::object& groups, const py::object& need_obj) {
  const auto [x, w] = conv_inputs(x_obj, w_obj, op);
  const ConvArgs g = conv_args(op, nd, causal, x->shape, w->shape, groups, stride, padding, dilation);
  if (!py::isinstance<DeviceArray>(dy_obj)) require_device_array(dy_obj, op, "grad_out");
  const DeviceArray& dy = dy_obj.cast<const DeviceArray&>();
  if (dy.shape != g.g.out_shape())
    value_error(op, ": grad_out has shape ", dims_str(dy.shape), ", expected the output shape ",
                dims_str(g.g.out_shape()));
  if (dy.dtype != x->dtype)
    type_error(op, ": grad_out has dtype ", cuda::dtype_name(dy.dtype), " but x has dtype ",
               cuda::dtype_name(x->dtype));
  require_same_device(dy, *x, op, "grad_out");
  const auto need = conv_need(need_obj, op);
  const cuda::Conv2dPlan plan = cuda::conv2d_plan(g.s, cuda::itemsize(x->dtype));
  DeviceArray dx, dw, db;
  if (need[0] || need[1] || need[2]) {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x->device, op);
    const DeviceArray xc = cuda::contiguous(*x, op);
    const cudaStream_t s = xc.stream;
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray wc = contiguous_on(*w, s, op);
    const DeviceArray dyc = contiguous_on(dy, s, op);
    cuda::stream_wait(s, wc.stream, op);
    cuda::stream_wait(s, dyc.stream, op);
    if (need[0]) dx = cuda::empty(x->shape, x->dtype, x->device, s, op);
    if (need[1]) dw = cuda::empty(w->shape, x->dtype, x->device, s, op);
    if (need[2]) db = cuda::empty({w->shape[0]}, x->dtype, x->device, s, op);
    const bool uses_columns = (need[0] || need[1]) && plan.column_elems;
    const DeviceArray cols =
        uses_columns ? cuda::empty({plan.column_elems}, x->dtype, x->device, s, op) : DeviceArray{};
    dispatch_cuda_float(x->dtype, [&](auto zero) {
      using T = decltype(zero);
      cuda::conv2d_backward<T>(g.s, plan, data_of<const T>(dyc), data_of<const T>(xc), data_of<const T>(wc),
                               need[0] ? data_of<T>(dx) : nullptr, need[1] ? data_of<T>(dw) : nullptr,
                               need[2] ? data_of<T>(db) : nullptr, data_of<T>(cols), s, op);
    });
  }
  auto or_none = [](bool want, DeviceArray& a) { return want ? py::cast(std::move(a)) : py::none(); };
  return py::make_tuple(or_none(need[0], dx), or_none(need[1], dw), or_none(need[2], db));
}

// Testing aid: the geometry and chunking conv2d would use for these shapes (same
// checks and errors, no device needed).
py::dict conv2d_plan(const py::object& x_shape, const py::object& w_shape, const py::object& stride,
                     const py::object& padding, const py::object& dilation, const py::object& groups,
                     int64_t itemsize, int64_t max_column_bytes) {
  const char* op = "conv2d";
  const ConvArgs g = conv_args(op, 2, false, to_shape(x_shape, op, "x_shape"), to_shape(w_shape, op, "weight_shape"),
                               groups, stride, padding, dilation);
  if (itemsize != 4 && itemsize != 8) value_error(op, ": itemsize must be 4 or 8, got ", itemsize);
  if (max_column_bytes < 1) value_error(op, ": max_column_bytes must be positive, got ", max_column_bytes);
  const cuda::Conv2dPlan p = cuda::conv2d_plan(g.s, static_cast<size_t>(itemsize), static_cast<size_t>(max_column_bytes));
  py::dict d;
  d["out_shape"] = to_tuple(g.g.out_shape());
  d["padding"] = py::make_tuple(g.g.pad_before[0], g.g.pad_after[0], g.g.pad_before[1], g.g.pad_after[1]);
  d["gemm_k"] = p.k;
  d["gemm_n"] = p.p;
  d["images_per_chunk"] = p.images_per_chunk;
  d["chunks"] = p.chunks;
  d["column_bytes"] = p.column_elems * itemsize;
  d["direct"] = p.direct;
  d["loop"] = p.loop_over_groups ? "groups" : "images";
  return d;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_conv) {
  def_conv_kernels(m, &conv_forward, &conv_backward);
  const py::int_ one(1), zero(0);
  m.def("_conv2d_plan", &conv2d_plan, py::arg("x_shape"), py::arg("weight_shape"), py::arg("stride") = one,
        py::arg("padding") = zero, py::arg("dilation") = one, py::arg("groups") = one, py::arg("itemsize") = 4,
        py::arg("max_column_bytes") = static_cast<int64_t>(cuda::kConvColumnBytes),
        "Testing aid: conv2d's checks and plan for these shapes -> dict(out_shape, padding (top, bottom, left, "
        "right), gemm_k, gemm_n, images_per_chunk, chunks, column_bytes, direct, loop). No device needed.");
}

}  // namespace dlkern::bind
