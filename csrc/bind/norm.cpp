// Bindings for the normalisation kernels: layer_norm, rms_norm, group_norm and
// batch_norm, each *_forward (output plus what the backward needs) and *_backward.
// Every argument is checked here (dtype, C-contiguity, shapes) before the GIL is
// released; the kernels need contiguous arrays, and a needed copy is the caller's
// (dlkern.ops.norm makes it explicitly).
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "bind/common.h"
#include "common/geometry.h"
#include "cpu/norm.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

using Shape = std::vector<py::ssize_t>;

std::string shape_text(const Shape& s) { return dims_str(Dims(s.begin(), s.end())); }

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

// A float32/float64, C-contiguous array; dtype must equal `want` when given.
py::array float_array(const py::handle& obj, const char* op, const char* arg, DType* dt,
                      const char* dtype_from = nullptr) {
  py::array a = require_array(obj, op, arg);
  const DType got = float_dtype(a, op, arg);
  if (dtype_from && got != *dt)
    type_error(op, ": ", arg, " has dtype ", dtype_str(a), " but ", dtype_from, " has dtype ",
               *dt == DType::f32 ? "float32" : "float64", "; they must match");
  *dt = got;
  if (!(a.flags() & py::array::c_style))
    value_error(op, ": ", arg, " with shape ", shape_str(a), " must be C-contiguous "
                "(pass numpy.ascontiguousarray(", arg, "))");
  return a;
}

// An array of exactly shape `want` (and x's dtype), or nullopt for None.
std::optional<py::array> optional_param(const py::object& obj, const char* op, const char* arg,
                                        DType dt, const Shape& want) {
  if (obj.is_none()) return std::nullopt;
  DType d = dt;
  py::array a = float_array(obj, op, arg, &d, "x");
  if (shape_of(a) != want)
    value_error(op, ": ", arg, " has shape ", shape_str(a), ", expected ", shape_text(want));
  return a;
}

py::array required_param(const py::object& obj, const char* op, const char* arg, DType dt,
                         const Shape& want) {
  if (obj.is_none()) value_error(op, ": ", arg, " is None; expected an array of shape ", shape_text(want));
  return *optional_param(obj, op, arg, dt, want);
}

py::array new_array(DType dt, const Shape& shape) {
  return dt == DType::f32 ? py::array(py::dtype::of<float>(), shape)
                          : py::array(py::dtype::of<double>(), shape);
}

template <typename T>
const T* cptr(const std::optional<py::array>& a) {
  return a ? static_cast<const T*>(a->data()) : nullptr;
}
template <typename T>
const T* cptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <typename T>
T* mptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// eps: a real number, finite and >= 0.
double eps_arg(const py::object& obj, const char* op) {
  const double eps = double_arg(obj, op, "eps");
  check_norm_eps(op, eps);
  return eps;
}

// normalized_shape: an int or a sequence of ints (list, tuple, torch.Size), each in
// int64's range; floats, bools and strings are refused, not truncated.
std::vector<int64_t> shape_arg(const py::object& obj, const char* op) {
  const char* arg = "normalized_shape";
  const bool array = py::isinstance<py::array>(obj);
  if (array ? py::reinterpret_borrow<py::array>(obj).ndim() == 0 : PyIndex_Check(obj.ptr()) != 0)
    return {int64_arg(obj, op, arg)};
  if (!PySequence_Check(obj.ptr()) || py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj))
    type_error(op, ": ", arg, " must be an int or a sequence of ints, got ",
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  std::vector<int64_t> dims;
  for (const py::handle item : py::reinterpret_borrow<py::sequence>(obj)) dims.push_back(int64_arg(item, op, arg));
  return dims;
}

// ---------------------------------------------------------------------- layer / rms norm

struct RowLayout {
  Shape lead, norm;  // x.shape = lead + norm
  int64_t rows, cols;
};

RowLayout row_layout(const py::array& x, const py::object& normalized_shape_obj, const char* op) {
  const std::vector<int64_t> ns = shape_arg(normalized_shape_obj, op);
  const Shape xs = shape_of(x);
  RowLayout l;
  std::tie(l.rows, l.cols) = norm_rows_cols(op, Dims(xs.begin(), xs.end()), ns);
  l.lead = Shape(xs.begin(), xs.end() - static_cast<std::ptrdiff_t>(ns.size()));
  l.norm = Shape(ns.begin(), ns.end());
  return l;
}

void check_same_shape(const py::array& a, const py::array& x, const char* op, const char* arg) {
  if (shape_of(a) != shape_of(x))
    value_error(op, ": ", arg, " has shape ", shape_str(a), " but x has shape ", shape_str(x));
}

py::tuple layer_norm_forward(const py::object& x_obj, const py::object& normalized_shape,
                             const py::object& w_obj, const py::object& b_obj, const py::object& eps_obj) {
  const char* op = "layer_norm";
  const double eps = eps_arg(eps_obj, op);
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  const RowLayout l = row_layout(x, normalized_shape, op);
  auto w = optional_param(w_obj, op, "weight", dt, l.norm);
  auto b = optional_param(b_obj, op, "bias", dt, l.norm);
  py::array y = new_array(dt, shape_of(x)), mean = new_array(dt, l.lead), rstd = new_array(dt, l.lead);
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w), *bp = cptr<T>(b);
    T *yp = mptr<T>(y), *mp = mptr<T>(mean), *rp = mptr<T>(rstd);
    py::gil_scoped_release nogil;
    cpu::layer_norm_forward<T>(xp, wp, bp, yp, mp, rp, l.rows, l.cols, static_cast<T>(eps));
  });
  return py::make_tuple(y, mean, rstd);
}

py::tuple layer_norm_backward(const py::object& dy_obj, const py::object& x_obj,
                              const py::object& normalized_shape, const py::object& w_obj,
                              const py::object& mean_obj, const py::object& rstd_obj, bool need_bias) {
  const char* op = "layer_norm_backward";
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  py::array dy = float_array(dy_obj, op, "grad_out", &dt, "x");
  check_same_shape(dy, x, op, "grad_out");
  const RowLayout l = row_layout(x, normalized_shape, op);
  auto w = optional_param(w_obj, op, "weight", dt, l.norm);
  py::array mean = required_param(mean_obj, op, "mean", dt, l.lead);
  py::array rstd = required_param(rstd_obj, op, "rstd", dt, l.lead);
  py::array dx = new_array(dt, shape_of(x));
  py::object dw = py::none(), db = py::none();
  if (w) dw = new_array(dt, l.norm);
  if (need_bias) db = new_array(dt, l.norm);
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *dyp = cptr<T>(dy), *xp = cptr<T>(x), *wp = cptr<T>(w), *mp = cptr<T>(mean), *rp = cptr<T>(rstd);
    T* dxp = mptr<T>(dx);
    T* dwp = w ? static_cast<T*>(py::cast<py::array>(dw).mutable_data()) : nullptr;
    T* dbp = need_bias ? static_cast<T*>(py::cast<py::array>(db).mutable_data()) : nullptr;
    py::gil_scoped_release nogil;
    cpu::layer_norm_backward<T>(dyp, xp, wp, mp, rp, dxp, dwp, dbp, l.rows, l.cols);
  });
  return py::make_tuple(dx, dw, db);
}

py::tuple rms_norm_forward(const py::object& x_obj, const py::object& normalized_shape,
                           const py::object& w_obj, const py::object& eps_obj) {
  const char* op = "rms_norm";
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  const RowLayout l = row_layout(x, normalized_shape, op);
  auto w = optional_param(w_obj, op, "weight", dt, l.norm);
  // eps=None: the dtype's machine epsilon, as PyTorch.
  const double eps = eps_obj.is_none()
                         ? (dt == DType::f32 ? double(std::numeric_limits<float>::epsilon())
                                             : std::numeric_limits<double>::epsilon())
                         : eps_arg(eps_obj, op);
  py::array y = new_array(dt, shape_of(x)), rstd = new_array(dt, l.lead);
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w);
    T *yp = mptr<T>(y), *rp = mptr<T>(rstd);
    py::gil_scoped_release nogil;
    cpu::rms_norm_forward<T>(xp, wp, yp, rp, l.rows, l.cols, static_cast<T>(eps));
  });
  return py::make_tuple(y, rstd);
}

py::tuple rms_norm_backward(const py::object& dy_obj, const py::object& x_obj,
                            const py::object& normalized_shape, const py::object& w_obj,
                            const py::object& rstd_obj) {
  const char* op = "rms_norm_backward";
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  py::array dy = float_array(dy_obj, op, "grad_out", &dt, "x");
  check_same_shape(dy, x, op, "grad_out");
  const RowLayout l = row_layout(x, normalized_shape, op);
  auto w = optional_param(w_obj, op, "weight", dt, l.norm);
  py::array rstd = required_param(rstd_obj, op, "rstd", dt, l.lead);
  py::array dx = new_array(dt, shape_of(x));
  py::object dw = py::none();
  if (w) dw = new_array(dt, l.norm);
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *dyp = cptr<T>(dy), *xp = cptr<T>(x), *wp = cptr<T>(w), *rp = cptr<T>(rstd);
    T* dxp = mptr<T>(dx);
    T* dwp = w ? static_cast<T*>(py::cast<py::array>(dw).mutable_data()) : nullptr;
    py::gil_scoped_release nogil;
    cpu::rms_norm_backward<T>(dyp, xp, wp, rp, dxp, dwp, l.rows, l.cols);
  });
  return py::make_tuple(dx, dw);
}

// ---------------------------------------------------------------------- group / batch norm

struct ChannelLayout {
  int64_t n, channels, inner;
};

ChannelLayout channel_layout(const py::array& x, const char* op) {
  if (x.ndim() < 2)
    value_error(op, ": x must have shape (N, C, *) with at least 2 dimensions, got shape ", shape_str(x));
  const Shape xs = shape_of(x);
  return {xs[0], xs[1], prod(xs, 2, xs.size())};
}

// num_groups: an int in [1, C] dividing C (1 when C is 0: the (N, num_groups)
// statistics would otherwise be as large as the caller asks).
ChannelLayout group_layout(const py::array& x, int64_t groups, const char* op) {
  ChannelLayout l = channel_layout(x, op);
  if (groups <= 0) value_error(op, ": num_groups must be positive, got ", groups);
  if (groups > std::max<int64_t>(l.channels, 1))
    value_error(op, ": num_groups=", groups, " exceeds the ", l.channels, " channels of x (shape ", shape_str(x),
                ")");
  if (l.channels % groups != 0)
    value_error(op, ": the ", l.channels, " channels of x (shape ", shape_str(x),
                ") are not divisible by num_groups=", groups);
  return l;
}

py::tuple group_norm_forward(const py::object& x_obj, const py::object& groups_obj, const py::object& w_obj,
                             const py::object& b_obj, const py::object& eps_obj) {
  const char* op = "group_norm";
  const int64_t groups = int64_arg(groups_obj, op, "num_groups");
  const double eps = eps_arg(eps_obj, op);
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  const ChannelLayout l = group_layout(x, groups, op);
  auto w = optional_param(w_obj, op, "weight", dt, {l.channels});
  auto b = optional_param(b_obj, op, "bias", dt, {l.channels});
  py::array y = new_array(dt, shape_of(x));
  py::array mean = new_array(dt, {l.n, groups}), rstd = new_array(dt, {l.n, groups});
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w), *bp = cptr<T>(b);
    T *yp = mptr<T>(y), *mp = mptr<T>(mean), *rp = mptr<T>(rstd);
    py::gil_scoped_release nogil;
    cpu::group_norm_forward<T>(xp, wp, bp, yp, mp, rp, l.n, l.channels, l.inner, groups,
                               static_cast<T>(eps));
  });
  return py::make_tuple(y, mean, rstd);
}

py::tuple group_norm_backward(const py::object& dy_obj, const py::object& x_obj, const py::object& groups_obj,
                              const py::object& w_obj, const py::object& mean_obj,
                              const py::object& rstd_obj, bool need_bias) {
  const char* op = "group_norm_backward";
  const int64_t groups = int64_arg(groups_obj, op, "num_groups");
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  py::array dy = float_array(dy_obj, op, "grad_out", &dt, "x");
  check_same_shape(dy, x, op, "grad_out");
  const ChannelLayout l = group_layout(x, groups, op);
  auto w = optional_param(w_obj, op, "weight", dt, {l.channels});
  py::array mean = required_param(mean_obj, op, "mean", dt, {l.n, groups});
  py::array rstd = required_param(rstd_obj, op, "rstd", dt, {l.n, groups});
  py::array dx = new_array(dt, shape_of(x));
  py::object dw = py::none(), db = py::none();
  if (w) dw = new_array(dt, {l.channels});
  if (need_bias) db = new_array(dt, {l.channels});
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *dyp = cptr<T>(dy), *xp = cptr<T>(x), *wp = cptr<T>(w), *mp = cptr<T>(mean), *rp = cptr<T>(rstd);
    T* dxp = mptr<T>(dx);
    T* dwp = w ? static_cast<T*>(py::cast<py::array>(dw).mutable_data()) : nullptr;
    T* dbp = need_bias ? static_cast<T*>(py::cast<py::array>(db).mutable_data()) : nullptr;
    py::gil_scoped_release nogil;
    cpu::group_norm_backward<T>(dyp, xp, wp, mp, rp, dxp, dwp, dbp, l.n, l.channels, l.inner, groups);
  });
  return py::make_tuple(dx, dw, db);
}

py::tuple batch_norm_forward(const py::object& x_obj, const py::object& rm_obj,
                             const py::object& rv_obj, const py::object& w_obj,
                             const py::object& b_obj, bool training, const py::object& momentum_obj,
                             const py::object& eps_obj) {
  const char* op = "batch_norm";
  // Updated in place, so never copied: a strided one is refused (a copy's update would be lost).
  for (const auto& [obj, arg] : {std::pair{&rm_obj, "running_mean"}, std::pair{&rv_obj, "running_var"}})
    if (py::isinstance<py::array>(*obj) && !(py::reinterpret_borrow<py::array>(*obj).flags() & py::array::c_style))
      value_error(op, ": ", arg, " must be C-contiguous (it is updated in place)");
  const double momentum = double_arg(momentum_obj, op, "momentum");
  if (!std::isfinite(momentum)) value_error(op, ": momentum must be finite, got ", momentum);
  const double eps = eps_arg(eps_obj, op);
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  const ChannelLayout l = channel_layout(x, op);
  const Shape cshape{l.channels};
  auto w = optional_param(w_obj, op, "weight", dt, cshape);
  auto b = optional_param(b_obj, op, "bias", dt, cshape);
  auto rm = optional_param(rm_obj, op, "running_mean", dt, cshape);
  auto rv = optional_param(rv_obj, op, "running_var", dt, cshape);
  if (rm.has_value() != rv.has_value())
    value_error(op, ": running_mean and running_var must both be arrays or both be None");
  if (!training && !rm)
    value_error(op, ": running_mean and running_var are required when training=False");
  if (training && l.n * l.inner <= 1)
    value_error(op, ": expected more than 1 value per channel when training, got x of shape ",
                shape_str(x));
  if (training && rm) {
    require_writeable(*rm, op, "running_mean");
    require_writeable(*rv, op, "running_var");
    if (may_overlap(*rm, *rv) || may_overlap(*rm, x) || may_overlap(*rv, x))
      value_error(op, ": running_mean / running_var share memory with each other or with x");
    // They are updated before weight and bias are read: an alias would change them mid-way.
    for (const auto* p : {&w, &b})
      if (*p && (may_overlap(*rm, **p) || may_overlap(*rv, **p)))
        value_error(op, ": running_mean / running_var share memory with ", p == &w ? "weight" : "bias");
  }
  py::array y = new_array(dt, shape_of(x));
  py::array save_mean = new_array(dt, cshape), save_rstd = new_array(dt, cshape);
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w), *bp = cptr<T>(b);
    // Written only when training (the eval path reads them).
    T* rmp = rm ? static_cast<T*>(const_cast<void*>(rm->data())) : nullptr;
    T* rvp = rv ? static_cast<T*>(const_cast<void*>(rv->data())) : nullptr;
    T *yp = mptr<T>(y), *smp = mptr<T>(save_mean), *srp = mptr<T>(save_rstd);
    py::gil_scoped_release nogil;
    cpu::batch_norm_forward<T>(xp, wp, bp, rmp, rvp, yp, smp, srp, l.n, l.channels, l.inner,
                               training, static_cast<T>(momentum), static_cast<T>(eps));
  });
  return py::make_tuple(y, save_mean, save_rstd);
}

py::tuple batch_norm_backward(const py::object& dy_obj, const py::object& x_obj,
                              const py::object& w_obj, const py::object& mean_obj,
                              const py::object& rstd_obj, bool training, bool need_bias) {
  const char* op = "batch_norm_backward";
  DType dt;
  py::array x = float_array(x_obj, op, "x", &dt);
  py::array dy = float_array(dy_obj, op, "grad_out", &dt, "x");
  check_same_shape(dy, x, op, "grad_out");
  const ChannelLayout l = channel_layout(x, op);
  const Shape cshape{l.channels};
  auto w = optional_param(w_obj, op, "weight", dt, cshape);
  py::array mean = required_param(mean_obj, op, "save_mean", dt, cshape);
  py::array rstd = required_param(rstd_obj, op, "save_rstd", dt, cshape);
  py::array dx = new_array(dt, shape_of(x));
  py::object dw = py::none(), db = py::none();
  if (w) dw = new_array(dt, cshape);
  if (need_bias) db = new_array(dt, cshape);
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *dyp = cptr<T>(dy), *xp = cptr<T>(x), *wp = cptr<T>(w), *mp = cptr<T>(mean), *rp = cptr<T>(rstd);
    T* dxp = mptr<T>(dx);
    T* dwp = w ? static_cast<T*>(py::cast<py::array>(dw).mutable_data()) : nullptr;
    T* dbp = need_bias ? static_cast<T*>(py::cast<py::array>(db).mutable_data()) : nullptr;
    py::gil_scoped_release nogil;
    cpu::batch_norm_backward<T>(dyp, xp, wp, mp, rp, dxp, dwp, dbp, l.n, l.channels, l.inner, training);
  });
  return py::make_tuple(dx, dw, db);
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(norm) {
  m.def("layer_norm_forward", &layer_norm_forward, py::arg("x"), py::arg("normalized_shape"),
        py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("eps") = py::float_(1e-5),
        "layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5) -> (y, mean, rstd)\n\n"
        "Layer norm over the trailing dimensions named by normalized_shape (a sequence of ints).\n"
        "x C-contiguous float32/float64; weight/bias of shape normalized_shape or None;\n"
        "mean and rstd have shape x.shape[:-len(normalized_shape)].");
  m.def("layer_norm_backward", &layer_norm_backward, py::arg("grad_out"), py::arg("x"),
        py::arg("normalized_shape"), py::arg("weight"), py::arg("mean"), py::arg("rstd"),
        py::kw_only(), py::arg("need_bias") = true,
        "layer_norm_backward(grad_out, x, normalized_shape, weight, mean, rstd, *, need_bias=True)\n"
        "-> (dx, dweight or None, dbias or None). dweight is None when weight is None; dbias is\n"
        "None when need_bias is False (the backward does not see the bias).");
  m.def("rms_norm_forward", &rms_norm_forward, py::arg("x"), py::arg("normalized_shape"),
        py::arg("weight") = py::none(), py::arg("eps") = py::none(),
        "rms_norm_forward(x, normalized_shape, weight=None, eps=None) -> (y, rstd)\n\n"
        "y = x / sqrt(mean(x^2) + eps) * weight; eps=None uses finfo(x.dtype).eps (as PyTorch).");
  m.def("rms_norm_backward", &rms_norm_backward, py::arg("grad_out"), py::arg("x"),
        py::arg("normalized_shape"), py::arg("weight"), py::arg("rstd"),
        "rms_norm_backward(grad_out, x, normalized_shape, weight, rstd) -> (dx, dweight or None)");
  m.def("group_norm_forward", &group_norm_forward, py::arg("x"), py::arg("num_groups"),
        py::arg("weight") = py::none(), py::arg("bias") = py::none(), py::arg("eps") = py::float_(1e-5),
        "group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5) -> (y, mean, rstd)\n\n"
        "x (N, C, *) C-contiguous; weight/bias (C,) or None; mean/rstd (N, num_groups).");
  m.def("group_norm_backward", &group_norm_backward, py::arg("grad_out"), py::arg("x"),
        py::arg("num_groups"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::kw_only(),
        py::arg("need_bias") = true,
        "group_norm_backward(grad_out, x, num_groups, weight, mean, rstd, *, need_bias=True)\n"
        "-> (dx, dweight or None, dbias or None)");
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("running_mean"),
        py::arg("running_var"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
        py::arg("training") = false, py::arg("momentum") = py::float_(0.1), py::arg("eps") = py::float_(1e-5),
        "batch_norm_forward(x, running_mean, running_var, weight=None, bias=None, training=False,\n"
        "momentum=0.1, eps=1e-5) -> (y, save_mean, save_rstd)\n\n"
        "x (N, C) or (N, C, *). Training: batch statistics; running_mean/running_var (or None)\n"
        "are updated in place with the unbiased variance. Eval: the running statistics.\n"
        "save_mean/save_rstd (C,) are the statistics used.");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("grad_out"), py::arg("x"),
        py::arg("weight"), py::arg("save_mean"), py::arg("save_rstd"), py::arg("training"),
        py::kw_only(), py::arg("need_bias") = true,
        "batch_norm_backward(grad_out, x, weight, save_mean, save_rstd, training, *, need_bias=True)\n"
        "-> (dx, dweight or None, dbias or None)");
}

}  // namespace dlkern::bind
