#include "bind/conv_args.h"

#include <limits>
#include <string>

namespace dlkern::bind {
namespace {

// numbers.Integral but not bool (Python's or NumPy's).
bool is_int(const py::handle& v) {
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr()) || PyFloat_Check(v.ptr())) return false;
  return py::str(py::type::of(v).attr("__name__")).cast<std::string>() != "bool";
}

// An int, or a tuple/list of n ints, none above kMaxConvArg (compared as Python ints: one
// past int64 would not even convert). A value below int64's range is clamped to its
// minimum, which every check then refuses as negative.
Dims ints(const py::handle& value, size_t n, const char* op, const char* name) {
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
  Dims out;
  for (const py::handle item : items) {
    const py::int_ v(py::reinterpret_borrow<py::object>(item));
    if (v > py::int_(kMaxConvArg)) value_error(op, ": ", name, " ", py_repr(value), " is too large (limit 2**31)");
    out.push_back(v < py::int_(std::numeric_limits<int64_t>::min()) ? std::numeric_limits<int64_t>::min()
                                                                     : v.cast<int64_t>());
  }
  return out;
}

ConvPadding padding_arg(const py::handle& value, int nd, const char* op) {
  ConvPadding p;
  if (py::isinstance<py::str>(value)) {
    const std::string mode = value.cast<std::string>();
    if (mode == "valid") return p.mode = ConvPadding::Mode::valid, p;
    if (mode == "same") return p.mode = ConvPadding::Mode::same, p;
    value_error(op, ": padding must be an int, a tuple, 'valid' or 'same', got ", py_repr(value));
  }
  p.sizes = ints(value, nd, op, "padding");
  return p;
}

}  // namespace

ConvArgs conv_args(const char* op, int nd, bool causal, const Dims& x, const Dims& w, const py::handle& groups,
                   const py::handle& stride, const py::handle& padding, const py::handle& dilation) {
  if (!is_int(groups)) type_error(op, ": groups must be an int, got ", py_repr(groups));
  const int64_t n_groups = ints(groups, 1, op, "groups")[0];
  ConvArgs a;
  if (causal) {
    a.g = causal_conv1d_geometry(op, x, w, n_groups, ints(dilation, 1, op, "dilation")[0]);
  } else {
    const Dims strides = ints(stride, nd, op, "stride"), dilations = ints(dilation, nd, op, "dilation");
    a.g = conv_geometry(op, nd, x, w, n_groups, strides, dilations, padding_arg(padding, nd, op));
  }
  const ConvGeometry& g = a.g;
  cpu::Conv2dShape& s = a.s;
  const int h = nd == 2 ? 0 : -1, last = nd - 1;  // axis of H (none for conv1d), of W
  s.n = g.n, s.c = g.c, s.o = g.o, s.groups = g.groups;
  s.h = h < 0 ? 1 : g.size[h], s.w = g.size[last];
  s.kh = h < 0 ? 1 : g.kernel[h], s.kw = g.kernel[last];
  s.stride_h = h < 0 ? 1 : g.stride[h], s.stride_w = g.stride[last];
  s.dil_h = h < 0 ? 1 : g.dilation[h], s.dil_w = g.dilation[last];
  s.pad_h = h < 0 ? 0 : g.pad_before[h], s.pad_w = g.pad_before[last];
  s.out_h = h < 0 ? 1 : g.out[h], s.out_w = g.out[last];
  return a;
}

std::array<bool, 3> conv_need(const py::handle& need, const char* op) {
  if (!py::hasattr(need, "__len__") || py::len(need) != 3)
    value_error(op, ": need must be three booleans (dx, dweight, dbias), got ", py_repr(need));
  std::array<bool, 3> out{};
  size_t i = 0;
  for (const py::handle v : need) out[i++] = py::bool_(py::reinterpret_borrow<py::object>(v)).cast<bool>();
  return out;
}

void def_conv_kernels(py::module_& m, ConvForward forward, ConvBackward backward) {
  const py::int_ one(1), zero(0);
  const py::tuple all = py::make_tuple(true, true, true);
  // conv2d and conv1d (the H = 1 case) take the same arguments.
  struct Spatial {
    const char *name, *backward_name, *doc;
    int nd;
  };
  for (const Spatial& c : {Spatial{"conv2d", "conv2d_backward",
                                   "2-D convolution of x (N, C, H, W) with weight (O, C/groups, kH, kW) plus bias "
                                   "(O,); padding an int, a pair, 'valid' or 'same'.", 2},
                           Spatial{"conv1d", "conv1d_backward",
                                   "1-D convolution of x (N, C, L) with weight (O, C/groups, K) plus bias (O,): the "
                                   "H = 1 case of conv2d.", 1}}) {
    m.def(c.name,
          [forward, c](const py::object& x, const py::object& w, const py::object& b, const py::object& stride,
                       const py::object& padding, const py::object& dilation, const py::object& groups) {
            return forward(c.name, c.nd, false, x, w, b, stride, padding, dilation, groups);
          },
          py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("stride") = one,
          py::arg("padding") = zero, py::arg("dilation") = one, py::arg("groups") = one, c.doc);
    m.def(c.backward_name,
          [backward, c](const py::object& dy, const py::object& x, const py::object& w, const py::object& stride,
                        const py::object& padding, const py::object& dilation, const py::object& groups,
                        const py::object& need) {
            return backward(c.backward_name, c.nd, false, dy, x, w, stride, padding, dilation, groups, need);
          },
          py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("stride") = one, py::arg("padding") = zero,
          py::arg("dilation") = one, py::arg("groups") = one, py::arg("need") = all,
          "Gradients: (dx | None, dweight | None, dbias | None), as selected by need.");
  }
  m.def("causal_conv1d",
        [forward](const py::object& x, const py::object& w, const py::object& b, const py::object& dilation,
                  const py::object& groups) {
          return forward("causal_conv1d", 1, true, x, w, b, py::none(), py::none(), dilation, groups);
        },
        py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(), py::arg("dilation") = one,
        py::arg("groups") = one,
        "conv1d with left padding (K-1)*dilation only: output (N, O, L), y[t] sees x[<= t].");
  m.def("causal_conv1d_backward",
        [backward](const py::object& dy, const py::object& x, const py::object& w, const py::object& dilation,
                   const py::object& groups, const py::object& need) {
          return backward("causal_conv1d_backward", 1, true, dy, x, w, py::none(), py::none(), dilation, groups,
                          need);
        },
        py::arg("grad_out"), py::arg("x"), py::arg("weight"), py::arg("dilation") = one, py::arg("groups") = one,
        py::arg("need") = all, "Gradients of causal_conv1d: (dx | None, dweight | None, dbias | None).");
}

}  // namespace dlkern::bind
