// dlkern._C_cuda conv2d / conv1d / causal_conv1d, forward and backward, with the names,
// argument lists, return values and error messages of dlkern.ops.conv (the CPU ops'
// Python layer, whose checks are repeated here because _C_cuda is called directly).
// Every argument is checked before device work; the shape-level checks live in one
// function that _conv2d_plan (a testing aid, no device needed) also runs.
#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "bind/cuda_common.h"
#include "cpu/conv.h"
#include "cuda/check.h"
#include "cuda/conv.h"

namespace dlkern::bind {
namespace {

using cuda::DeviceArray;
using cuda::Shape;

std::string py_repr(const py::handle& v) { return py::repr(v).cast<std::string>(); }

// numbers.Integral but not bool (Python's or NumPy's).
bool is_int(const py::handle& v) {
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr()) || PyFloat_Check(v.ptr())) return false;
  return py::str(py::type::of(v).attr("__name__")).cast<std::string>() != "bool";
}

// Largest stride, dilation, padding and dilation*(kernel-1): the CPU kernels' limit
// (dlkern._C.conv_max_arg), below which no size computed from them overflows int64.
using cpu::kMaxConvArg;

// dlkern.ops.conv._ints: an int, or a tuple/list of n ints, none above kMaxConvArg
// (compared as Python ints: one past int64 would not even convert).
std::vector<int64_t> ints(const py::handle& value, size_t n, const char* op, const char* name) {
  std::vector<py::handle> items;
  if (is_int(value)) {
    items.assign(n, value);
  } else if ((py::isinstance<py::tuple>(value) || py::isinstance<py::list>(value)) && py::len(value) == n) {
    for (const py::handle item : value)
      if (is_int(item)) items.push_back(item);
  }
  if (items.size() != n)
    type_error(op, ": ", name, " must be ", n == 1 ? "an int" : cat("an int or a tuple of ", n, " ints"), ", got ",
               py_repr(value));
  std::vector<int64_t> out;
  for (const py::handle item : items) {
    if (py::int_(py::reinterpret_borrow<py::object>(item)) > py::int_(kMaxConvArg))
      value_error(op, ": ", name, " ", py_repr(value), " is too large (limit 2**31)");
    out.push_back(item.cast<int64_t>());
  }
  return out;
}

// dilation*(k-1) above kMaxConvArg, tested by division (the product may not fit).
bool extent_too_large(int64_t dilation, int64_t k) { return k - 1 > kMaxConvArg / dilation; }

// Python's repr of a tuple of ints ("(2,)" for one), or the bare value for nd == 1 (as
// the CPU op's messages print stride / dilation / padding).
std::string tuple_or_scalar(const std::vector<int64_t>& v) {
  return v.size() == 1 ? std::to_string(v[0]) : cuda::shape_str(v);
}

// Validated geometry of a conv over nd = 1 or 2 spatial dimensions (nd = 1 is H = 1).
struct ConvGeometry {
  cuda::Conv2dShape s;
  Shape out_shape;                          // (N, O, *out spatial)
  std::array<int64_t, 4> padding{};         // (top, bottom, left, right)
};

// x and weight shapes, groups, then stride / dilation / padding, in the CPU op's order.
// causal: padding is ((K-1)*dilation, 0) and stride 1 (stride_obj, padding_obj unused).
ConvGeometry conv_geometry(const char* op, int nd, const Shape& x, const Shape& w, const py::handle& groups_obj,
                           const py::handle& stride_obj, const py::handle& padding_obj,
                           const py::handle& dilation_obj, bool causal) {
  const char* spatial = nd == 1 ? "(N, C, L)" : "(N, C, H, W)";
  const char* kernel = nd == 1 ? "(O, C/groups, K)" : "(O, C/groups, kH, kW)";
  if (static_cast<int>(x.size()) != nd + 2)
    value_error(op, ": x must be ", nd + 2, "-D ", spatial, ", got shape ", cuda::shape_str(x));
  if (static_cast<int>(w.size()) != nd + 2)
    value_error(op, ": weight must be ", nd + 2, "-D ", kernel, ", got shape ", cuda::shape_str(w));
  if (!is_int(groups_obj)) type_error(op, ": groups must be an int, got ", py_repr(groups_obj));
  const int64_t groups = groups_obj.cast<int64_t>();
  if (groups < 1) value_error(op, ": groups must be positive, got ", groups);
  const int64_t c = x[1], o = w[0];
  if (c % groups)
    value_error(op, ": groups=", groups, " does not divide the ", c, " input channels of x ", cuda::shape_str(x));
  if (o % groups)
    value_error(op, ": groups=", groups, " does not divide the ", o, " output channels of weight ",
                cuda::shape_str(w));
  if (w[1] != c / groups)
    value_error(op, ": weight ", cuda::shape_str(w), " must have C/groups = ", c / groups,
                " in dimension 1 (x ", cuda::shape_str(x), ", groups=", groups, ")");
  if (*std::min_element(w.begin() + 2, w.end()) < 1)
    value_error(op, ": weight ", cuda::shape_str(w), " has an empty kernel");

  std::vector<int64_t> stride(nd, 1), dilation;
  std::vector<std::pair<int64_t, int64_t>> pads;
  if (causal) {
    dilation = ints(dilation_obj, 1, op, "dilation");
    if (dilation[0] < 1) value_error(op, ": dilation must be positive, got ", dilation[0]);
    if (extent_too_large(dilation[0], w[2]))
      value_error(op, ": dilation ", dilation[0], " with kernel size ", w[2],
                  " needs a causal padding above the limit 2**31");
    pads = {{(w[2] - 1) * dilation[0], 0}};
    if (x[2] < 1) value_error(op, ": x ", cuda::shape_str(x), " has no time steps");
  } else {
    stride = ints(stride_obj, nd, op, "stride");
    dilation = ints(dilation_obj, nd, op, "dilation");
    if (*std::min_element(stride.begin(), stride.end()) < 1)
      value_error(op, ": stride must be positive, got ", tuple_or_scalar(stride));
    if (*std::min_element(dilation.begin(), dilation.end()) < 1)
      value_error(op, ": dilation must be positive, got ", tuple_or_scalar(dilation));
    for (int a = 0; a < nd; ++a)
      if (extent_too_large(dilation[a], w[2 + a]))
        value_error(op, ": dilation ", tuple_or_scalar(dilation), " with kernel ", cuda::shape_str(w),
                    " spans more than 2**31 (the limit)");
    if (py::isinstance<py::str>(padding_obj)) {
      const std::string mode = padding_obj.cast<std::string>();
      if (mode == "valid") {
        pads.assign(nd, {0, 0});
      } else if (mode == "same") {
        if (*std::max_element(stride.begin(), stride.end()) != 1)
          value_error(op, ": padding='same' needs stride 1, got stride ", cuda::shape_str(stride));
        // As PyTorch: the extra element of an odd total goes after.
        for (int a = 0; a < nd; ++a) {
          const int64_t total = dilation[a] * (w[2 + a] - 1);
          pads.emplace_back(total / 2, total - total / 2);
        }
      } else {
        value_error(op, ": padding must be an int, a tuple, 'valid' or 'same', got ", py_repr(padding_obj));
      }
    } else {
      const std::vector<int64_t> pad = ints(padding_obj, nd, op, "padding");
      if (*std::min_element(pad.begin(), pad.end()) < 0)
        value_error(op, ": padding must be non-negative, got ", tuple_or_scalar(pad));
      for (int64_t p : pad) pads.emplace_back(p, p);
    }
  }
  ConvGeometry g;
  g.out_shape = {x[0], o};
  std::vector<int64_t> out;
  for (int a = 0; a < nd; ++a) {
    const int64_t size = x[2 + a], k = w[2 + a], d = dilation[a];
    const auto [before, after] = pads[a];
    const int64_t span = d * (k - 1) + 1, padded = size + before + after;
    if (padded < span)
      value_error(op, ": kernel size ", k, " with dilation ", d, " spans ", span, ", larger than the padded input ",
                  padded, " (size ", size, " + padding ", before + after, "); x ", cuda::shape_str(x), ", weight ",
                  cuda::shape_str(w));
    out.push_back((padded - span) / stride[a] + 1);
    g.out_shape.push_back(out.back());
  }
  cuda::Conv2dShape& s = g.s;
  s.n = x[0], s.c = c, s.o = o, s.groups = groups;
  // nd == 1 is the H = 1 case: one row, kernel height 1, no vertical padding.
  s.h = nd == 2 ? x[2] : 1, s.w = x[nd + 1];
  s.kh = nd == 2 ? w[2] : 1, s.kw = w[nd + 1];
  s.stride_h = nd == 2 ? stride[0] : 1, s.stride_w = stride[nd - 1];
  s.dil_h = nd == 2 ? dilation[0] : 1, s.dil_w = dilation[nd - 1];
  s.pad_h = nd == 2 ? pads[0].first : 0, s.pad_w = pads[nd - 1].first;
  s.out_h = nd == 2 ? out[0] : 1, s.out_w = out[nd - 1];
  g.padding = {nd == 2 ? pads[0].first : 0, nd == 2 ? pads[0].second : 0, pads[nd - 1].first, pads[nd - 1].second};
  return g;
}

const DeviceArray& conv_array(const py::handle& obj, const char* op, const char* arg) {
  const DeviceArray& a = require_device_array(obj, op, arg);
  if (!cuda::is_float(a.dtype))
    type_error(op, ": ", arg, " has dtype ", cuda::dtype_name(a.dtype), "; expected float32 or float64");
  return a;
}

void require_same_device(const DeviceArray& a, const DeviceArray& x, const char* op, const char* arg) {
  if (a.device != x.device) value_error(op, ": ", arg, " is on cuda:", a.device, " but x is on cuda:", x.device);
}

// x and weight arrays with matching dtypes (the first checks of the CPU op).
std::pair<const DeviceArray*, const DeviceArray*> conv_inputs(const py::handle& x_obj, const py::handle& w_obj,
                                                              const char* op) {
  const DeviceArray& x = conv_array(x_obj, op, "x");
  const DeviceArray& w = conv_array(w_obj, op, "weight");
  if (w.dtype != x.dtype)
    type_error(op, ": x has dtype ", cuda::dtype_name(x.dtype), " but weight has dtype ", cuda::dtype_name(w.dtype),
               "; both must be the same float type");
  require_same_device(w, x, op, "weight");
  return {&x, &w};
}

template <typename T>
T* data_of(const DeviceArray& a) {
  return a.storage ? static_cast<T*>(a.data()) : nullptr;
}

py::object conv_forward(const char* op, int nd, bool causal, const py::object& x_obj, const py::object& w_obj,
                        const py::object& b_obj, const py::object& stride, const py::object& padding,
                        const py::object& dilation, const py::object& groups) {
  const auto [x, w] = conv_inputs(x_obj, w_obj, op);
  const ConvGeometry g = conv_geometry(op, nd, x->shape, w->shape, groups, stride, padding, dilation, causal);
  const DeviceArray* b = nullptr;
  if (!b_obj.is_none()) {
    if (!py::isinstance<DeviceArray>(b_obj)) {
      if (py::isinstance<py::array>(b_obj)) require_device_array(b_obj, op, "bias");  // the host-memory hint
      type_error(op, ": bias must be a dlkern._C_cuda.DeviceArray or None, got ",
                 py::str(py::type::of(b_obj).attr("__name__")).cast<std::string>());
    }
    b = &b_obj.cast<const DeviceArray&>();
    if (b->dtype != x->dtype)
      type_error(op, ": bias has dtype ", cuda::dtype_name(b->dtype), " but x has dtype ", cuda::dtype_name(x->dtype));
    if (b->shape != Shape{w->shape[0]})
      value_error(op, ": bias has shape ", cuda::shape_str(b->shape), ", expected (", w->shape[0], ",)");
    require_same_device(*b, *x, op, "bias");
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
    y = cuda::empty(g.out_shape, x->dtype, x->device, s, op);
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

std::array<bool, 3> parse_need(const py::object& need, const char* op) {
  if (py::len(need) != 3) value_error(op, ": need must be three booleans (dx, dweight, dbias), got ", py_repr(need));
  std::array<bool, 3> out{};
  size_t i = 0;
  for (const py::handle v : need) out[i++] = py::bool_(py::reinterpret_borrow<py::object>(v)).cast<bool>();
  return out;
}

py::tuple conv_backward(const char* op, int nd, bool causal, const py::object& dy_obj, const py::object& x_obj,
                        const py::object& w_obj, const py::object& stride, const py::object& padding,
                        const py::object& dilation, const py::object& groups, const py::object& need_obj) {
  const auto [x, w] = conv_inputs(x_obj, w_obj, op);
  const ConvGeometry g = conv_geometry(op, nd, x->shape, w->shape, groups, stride, padding, dilation, causal);
  if (!py::isinstance<DeviceArray>(dy_obj)) require_device_array(dy_obj, op, "grad_out");
  const DeviceArray& dy = dy_obj.cast<const DeviceArray&>();
  if (dy.shape != g.out_shape)
    value_error(op, ": grad_out has shape ", cuda::shape_str(dy.shape), ", expected the output shape ",
                cuda::shape_str(g.out_shape));
  if (dy.dtype != x->dtype)
    type_error(op, ": grad_out has dtype ", cuda::dtype_name(dy.dtype), " but x has dtype ",
               cuda::dtype_name(x->dtype));
  require_same_device(dy, *x, op, "grad_out");
  const auto need = parse_need(need_obj, op);
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
  const ConvGeometry g = conv_geometry(op, 2, to_shape(x_shape, op, "x_shape"), to_shape(w_shape, op, "weight_shape"),
                                       groups, stride, padding, dilation, false);
  if (itemsize != 4 && itemsize != 8) value_error(op, ": itemsize must be 4 or 8, got ", itemsize);
  if (max_column_bytes < 1) value_error(op, ": max_column_bytes must be positive, got ", max_column_bytes);
  const cuda::Conv2dPlan p = cuda::conv2d_plan(g.s, static_cast<size_t>(itemsize), static_cast<size_t>(max_column_bytes));
  py::dict d;
  d["out_shape"] = to_tuple(g.out_shape);
  d["padding"] = py::make_tuple(g.padding[0], g.padding[1], g.padding[2], g.padding[3]);
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
  const py::int_ one(1), zero(0);
  m.def("conv2d",
        [](const py::object& x, const py::object& w, const py::object& b, const py::object& stride,
           const py::object& padding, const py::object& dilation, const py::object& groups) {
          return conv_forward("conv2d", 2, false, x, w, b, stride, padding, dilation, groups);
        },
        py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = one,
        py::arg("padding") = zero, py::arg("dilation") = one, py::arg("groups") = one,
        "conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) as dlkern.ops.conv2d on "
        "DeviceArrays: x (N, C, H, W), weight (O, C/groups, kH, kW); padding an int, a pair, 'valid' or 'same'.");
  m.def("conv2d_backward",
        [](const py::object& dy, const py::object& x, const py::object& w, const py::object& stride,
           const py::object& padding, const py::object& dilation, const py::object& groups, const py::object& need) {
          return conv_backward("conv2d_backward", 2, false, dy, x, w, stride, padding, dilation, groups, need);
        },
        py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("stride") = one, py::arg("padding") = zero,
        py::arg("dilation") = one, py::arg("groups") = one,
        py::arg("need") = py::make_tuple(true, true, true),
        "conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True))"
        " -> (dx | None, dweight | None, dbias | None).");
  m.def("conv1d",
        [](const py::object& x, const py::object& w, const py::object& b, const py::object& stride,
           const py::object& padding, const py::object& dilation, const py::object& groups) {
          return conv_forward("conv1d", 1, false, x, w, b, stride, padding, dilation, groups);
        },
        py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = one,
        py::arg("padding") = zero, py::arg("dilation") = one, py::arg("groups") = one,
        "conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1): x (N, C, L), "
        "weight (O, C/groups, K); the H = 1 case of conv2d.");
  m.def("conv1d_backward",
        [](const py::object& dy, const py::object& x, const py::object& w, const py::object& stride,
           const py::object& padding, const py::object& dilation, const py::object& groups, const py::object& need) {
          return conv_backward("conv1d_backward", 1, false, dy, x, w, stride, padding, dilation, groups, need);
        },
        py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("stride") = one, py::arg("padding") = zero,
        py::arg("dilation") = one, py::arg("groups") = one,
        py::arg("need") = py::make_tuple(true, true, true),
        "conv1d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True)).");
  m.def("causal_conv1d",
        [](const py::object& x, const py::object& w, const py::object& b, const py::object& dilation,
           const py::object& groups) {
          return conv_forward("causal_conv1d", 1, true, x, w, b, py::none(), py::none(), dilation, groups);
        },
        py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("dilation") = one,
        py::arg("groups") = one,
        "causal_conv1d(x, weight, bias=None, dilation=1, groups=1): conv1d with left padding (K-1)*dilation only.");
  m.def("causal_conv1d_backward",
        [](const py::object& dy, const py::object& x, const py::object& w, const py::object& dilation,
           const py::object& groups, const py::object& need) {
          return conv_backward("causal_conv1d_backward", 1, true, dy, x, w, py::none(), py::none(), dilation, groups,
                               need);
        },
        py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("dilation") = one, py::arg("groups") = one,
        py::arg("need") = py::make_tuple(true, true, true),
        "causal_conv1d_backward(grad_out, x, weight, dilation=1, groups=1, need=(True, True, True)).");
  m.def("_conv2d_plan", &conv2d_plan, py::arg("x_shape"), py::arg("weight_shape"), py::arg("stride") = one,
        py::arg("padding") = zero, py::arg("dilation") = one, py::arg("groups") = one, py::arg("itemsize") = 4,
        py::arg("max_column_bytes") = static_cast<int64_t>(cuda::kConvColumnBytes),
        "Testing aid: conv2d's checks and plan for these shapes -> dict(out_shape, padding (top, bottom, left, "
        "right), gemm_k, gemm_n, images_per_chunk, chunks, column_bytes, direct, loop). No device needed.");
}

}  // namespace dlkern::bind
