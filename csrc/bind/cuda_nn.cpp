// dlkern._C_cuda softmax / log_softmax, layer_norm and rms_norm, forward and backward, with the
// CPU module's names and call shapes. The kernels work on contiguous rows over the last
// axis; another softmax axis is brought last with a strided copy (and the result put
// back), strided inputs are made contiguous. Arguments are checked before device work.
#include <algorithm>
#include <limits>

#include "bind/cuda_common.h"
#include "common/geometry.h"
#include "cuda/check.h"
#include "cuda/rowwise.h"

namespace dlkern::bind {
namespace {

py::object softmax_call(bool is_log, bool backward, const char* op, const py::object& a_obj,
                        const py::object& b_obj, int64_t dim, const py::object& out_obj) {
  // forward: a = x; backward: a = grad_out, b = y (the forward's output)
  const DeviceArray& a = require_float_device_array(a_obj, op, backward ? "grad_out" : "x");
  const DeviceArray* b = backward ? &require_float_device_array(b_obj, op, "y") : nullptr;
  if (b) require_like(*b, "y", a, "grad_out", op, &a.shape);
  if (a.ndim() == 0) value_error(op, ": expected an array with at least one dimension, got a 0-d array");
  const int d = cuda::normalize_axis(dim, a.ndim(), op);
  const int last = a.ndim() - 1;
  DeviceArray* out = nullptr;
  if (!out_obj.is_none()) {
    out = &require_device_array(out_obj, op, "out");
    require_like(*out, "out", a, backward ? "grad_out" : "x", op, &a.shape);
  }
  DeviceArray result;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(a.device, op);
    const DeviceArray ac = cuda::contiguous(cuda::move_axis(a, d, last), op);
    DeviceArray bc;
    if (b) {
      // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
      bc = contiguous_on(cuda::move_axis(*b, d, last), ac.stream, op);
      cuda::stream_wait(ac.stream, bc.stream, op);
    }
    DeviceArray res = cuda::empty(ac.shape, ac.dtype, ac.device, ac.stream, op);
    const int64_t cols = a.shape[d], rows = cols ? a.numel() / cols : 0;
    dispatch_cuda_float(a.dtype, [&](auto zero) {
      using T = decltype(zero);
      if (backward)
        cuda::softmax_backward<T>(static_cast<const T*>(ac.data()), static_cast<const T*>(bc.data()),
                                  static_cast<T*>(res.data()), rows, cols, is_log, res.stream, op);
      else
        cuda::softmax_forward<T>(static_cast<const T*>(ac.data()), static_cast<T*>(res.data()), rows, cols,
                                 is_log, res.stream, op);
    });
    const DeviceArray back = cuda::move_axis(res, last, d);
    if (out) {
      cuda::copy_into(*out, back, op);
    } else {
      result = cuda::contiguous(back, op);
    }
  }
  return out ? out_obj : py::cast(std::move(result));
}

const DeviceArray* optional_param(const py::object& obj, const DeviceArray& x, const Shape& shape,
                                  const char* op, const char* arg) {
  if (obj.is_none()) return nullptr;
  const DeviceArray& p = require_float_device_array(obj, op, arg);
  require_like(p, arg, x, "x", op, &shape);
  return &p;
}

// layer_norm_forward -> (y, mean, rstd), or rms_norm_forward (rms: no bias, no mean) -> (y, rstd).
py::tuple norm_forward(bool rms, const py::object& x_obj, const py::object& shape_obj, const py::object& w_obj,
                       const py::object& b_obj, const py::object& eps_obj) {
  const char* op = rms ? "rms_norm_forward" : "layer_norm_forward";
  const DeviceArray& x = require_float_device_array(x_obj, op, "x");
  const Shape normalized = to_shape(shape_obj, op, "normalized_shape");
  const auto [rows, cols] = norm_rows_cols(op, x.shape, normalized);
  const DeviceArray* w = optional_param(w_obj, x, normalized, op, "weight");
  const DeviceArray* b = optional_param(b_obj, x, normalized, op, "bias");
  // RMS norm's default eps is the dtype's machine epsilon, as in PyTorch.
  const double eps = !eps_obj.is_none()          ? double_arg(eps_obj, op, "eps")
                     : x.dtype == cuda::DType::f32 ? double(std::numeric_limits<float>::epsilon())
                                                   : std::numeric_limits<double>::epsilon();
  check_norm_eps(op, eps);
  const Shape stat_shape(x.shape.begin(), x.shape.end() - static_cast<std::ptrdiff_t>(normalized.size()));
  DeviceArray y, mean, rstd;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    const DeviceArray xc = cuda::contiguous(x, op);
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray wc = w ? contiguous_on(*w, xc.stream, op) : DeviceArray{};
    const DeviceArray bc = b ? contiguous_on(*b, xc.stream, op) : DeviceArray{};
    y = cuda::empty(x.shape, x.dtype, x.device, x.stream, op);
    if (!rms) mean = cuda::empty(stat_shape, x.dtype, x.device, x.stream, op);
    rstd = cuda::empty(stat_shape, x.dtype, x.device, x.stream, op);
    if (w) cuda::stream_wait(y.stream, w->stream, op);
    if (b) cuda::stream_wait(y.stream, b->stream, op);
    dispatch_cuda_float(x.dtype, [&](auto zero) {
      using T = decltype(zero);
      cuda::layer_norm_forward<T>(static_cast<const T*>(xc.data()), data_of<const T>(wc), data_of<const T>(bc),
                                  static_cast<T*>(y.data()), data_of<T>(mean), static_cast<T*>(rstd.data()),
                                  rows, cols, static_cast<T>(eps), y.stream, op);
    });
  }
  if (rms) return py::make_tuple(std::move(y), std::move(rstd));
  return py::make_tuple(std::move(y), std::move(mean), std::move(rstd));
}

// layer_norm_backward -> (dx, dweight or None, dbias or None), or rms_norm_backward
// (mean_obj None, need_bias false) -> (dx, dweight or None).
py::tuple norm_backward(bool rms, const py::object& dy_obj, const py::object& x_obj, const py::object& shape_obj,
                        const py::object& w_obj, const py::object& mean_obj, const py::object& rstd_obj,
                        bool need_bias) {
  const char* op = rms ? "rms_norm_backward" : "layer_norm_backward";
  const DeviceArray& dy = require_float_device_array(dy_obj, op, "grad_out");
  const DeviceArray& x = require_float_device_array(x_obj, op, "x");
  require_like(dy, "grad_out", x, "x", op, &x.shape);
  const Shape normalized = to_shape(shape_obj, op, "normalized_shape");
  const auto [rows, cols] = norm_rows_cols(op, x.shape, normalized);
  const DeviceArray* w = optional_param(w_obj, x, normalized, op, "weight");
  const Shape stat_shape(x.shape.begin(), x.shape.end() - static_cast<std::ptrdiff_t>(normalized.size()));
  const DeviceArray* mean = rms ? nullptr : &require_float_device_array(mean_obj, op, "mean");
  const DeviceArray& rstd = require_float_device_array(rstd_obj, op, "rstd");
  if (mean) require_like(*mean, "mean", x, "x", op, &stat_shape);
  require_like(rstd, "rstd", x, "x", op, &stat_shape);
  DeviceArray dx, dw, db;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    const DeviceArray xc = cuda::contiguous(x, op);
    const cudaStream_t s = xc.stream;
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray dyc = contiguous_on(dy, s, op);
    const DeviceArray mc = mean ? contiguous_on(*mean, s, op) : DeviceArray{};
    const DeviceArray rc = contiguous_on(rstd, s, op);
    const DeviceArray wc = w ? contiguous_on(*w, s, op) : DeviceArray{};
    for (const DeviceArray* other : {&dyc, &mc, &rc, &wc})
      if (other->storage) cuda::stream_wait(s, other->stream, op);
    dx = cuda::empty(x.shape, x.dtype, x.device, s, op);
    if (w) dw = cuda::empty(normalized, x.dtype, x.device, s, op);
    if (need_bias) db = cuda::empty(normalized, x.dtype, x.device, s, op);
    DeviceArray scratch;
    if (w || need_bias) scratch = cuda::empty({cuda::param_grad_scratch(rows, cols)}, x.dtype, x.device, s, op);
    dispatch_cuda_float(x.dtype, [&](auto zero) {
      using T = decltype(zero);
      cuda::layer_norm_backward<T>(static_cast<const T*>(dyc.data()), static_cast<const T*>(xc.data()),
                                   data_of<const T>(wc), data_of<const T>(mc), static_cast<const T*>(rc.data()),
                                   data_of<T>(dx), data_of<T>(dw), data_of<T>(db),
                                   data_of<T>(scratch), rows, cols, s, op);
    });
  }
  py::object dw_obj = w ? py::cast(std::move(dw)) : py::none();
  if (rms) return py::make_tuple(std::move(dx), dw_obj);
  return py::make_tuple(std::move(dx), dw_obj, need_bias ? py::cast(std::move(db)) : py::none());
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_nn) {
  const struct {
    const char* name;
    bool is_log, backward;
  } softmax_family[] = {{"softmax", false, false},
                        {"log_softmax", true, false},
                        {"softmax_backward", false, true},
                        {"log_softmax_backward", true, true}};
  for (const auto& e : softmax_family) {
    const char* name = e.name;
    const bool is_log = e.is_log, backward = e.backward;
    if (backward)
      m.def(name, [=](const py::object& g, const py::object& y, int64_t dim, const py::object& out) {
              return softmax_call(is_log, true, name, g, y, dim, out);
            }, py::arg("grad_out"), py::arg("y"), py::arg("dim") = -1, py::arg("out") = py::none(),
            cat(name, "(grad_out, y, dim=-1, out=None): gradient from the forward's output y.").c_str());
    else
      m.def(name, [=](const py::object& x, int64_t dim, const py::object& out) {
              return softmax_call(is_log, false, name, x, py::none(), dim, out);
            }, py::arg("x"), py::arg("dim") = -1, py::arg("out") = py::none(),
            cat(name, "(x, dim=-1, out=None) over one axis; a row of all -inf gives ",
                is_log ? "-inf" : "0", ".").c_str());
  }
  m.def("layer_norm_forward",
        [](const py::object& x, const py::object& ns, const py::object& w, const py::object& b, double eps) {
          return norm_forward(false, x, ns, w, b, py::float_(eps));
        }, py::arg("x"), py::arg("normalized_shape"), py::arg("weight") = py::none(),
        py::arg("bias") = py::none(), py::arg("eps") = 1e-5,
        "Layer norm over the trailing normalized_shape dims -> (y, mean, rstd), mean/rstd of shape "
        "x.shape[:-len(normalized_shape)].");
  m.def("layer_norm_backward",
        [](const py::object& g, const py::object& x, const py::object& ns, const py::object& w,
           const py::object& mean, const py::object& rstd, bool need_bias) {
          return norm_backward(false, g, x, ns, w, mean, rstd, need_bias);
        }, py::arg("grad_out"), py::arg("x"), py::arg("normalized_shape"), py::arg("weight"), py::arg("mean"),
        py::arg("rstd"), py::arg("need_bias") = true,
        "-> (dx, dweight or None (weight None), dbias or None (need_bias False)).");
  m.def("rms_norm_forward",
        [](const py::object& x, const py::object& ns, const py::object& w, const py::object& eps) {
          return norm_forward(true, x, ns, w, py::none(), eps);
        }, py::arg("x"), py::arg("normalized_shape"), py::arg("weight") = py::none(), py::arg("eps") = py::none(),
        "RMS norm -> (y, rstd); eps=None uses the dtype's machine epsilon (as PyTorch).");
  m.def("rms_norm_backward",
        [](const py::object& g, const py::object& x, const py::object& ns, const py::object& w,
           const py::object& rstd) { return norm_backward(true, g, x, ns, w, py::none(), rstd, false); },
        py::arg("grad_out"), py::arg("x"), py::arg("normalized_shape"), py::arg("weight"), py::arg("rstd"),
        "-> (dx, dweight or None).");
}

}  // namespace dlkern::bind
