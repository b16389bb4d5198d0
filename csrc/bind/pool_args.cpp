#include "bind/pool_args.h"

#include <limits>
#include <string>

namespace dlkern::bind {
namespace {

// numbers.Integral but not bool (Python's or NumPy's). One past int64 would not even
// convert, so it is refused as too large, by name, like the geometry's limit.
int64_t as_int(const py::handle& v, const char* op, const char* name) {
  const bool ok = !PyBool_Check(v.ptr()) && PyIndex_Check(v.ptr()) && !PyFloat_Check(v.ptr()) &&
                  py::str(py::type::of(v).attr("__name__")).cast<std::string>() != "bool";
  if (!ok) type_error(op, ": ", name, " must be an int or a pair of ints, got ", py_repr(v));
  const py::int_ big = py::int_(py::reinterpret_borrow<py::object>(v));
  if (big > py::int_(std::numeric_limits<int64_t>::max()) || big < py::int_(std::numeric_limits<int64_t>::min()))
    value_error(op, ": ", name, " ", py_repr(v), " is too large (limit 2**31)");
  return v.cast<int64_t>();
}

// An int, or a tuple/list of 1 or 2 ints (PyTorch accepts both), as (h, w).
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

}  // namespace

PoolArgs pool_args(const char* op, const py::handle& kernel, const py::handle& stride, const py::handle& padding,
                   const py::handle& dilation) {
  PoolArgs a;
  a.kernel = pair(kernel, op, "kernel_size");
  a.stride = stride.is_none() ? a.kernel : pair(stride, op, "stride");
  a.padding = pair(padding, op, "padding");
  a.dilation = dilation.is_none() ? Pair{1, 1} : pair(dilation, op, "dilation");
  return a;
}

Dims pool_planes(const Dims& shape, const char* op, const char* arg, bool& added) {
  if (shape.size() != 3 && shape.size() != 4)
    value_error(op, ": ", arg, " must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape ", dims_str(shape));
  added = shape.size() == 3;
  Dims s4 = shape;
  if (added) s4.insert(s4.begin(), 1);
  if (s4[2] < 1 || s4[3] < 1)
    value_error(op, ": ", arg, " has shape ", dims_str(s4), "; H and W must be at least 1");
  return s4;
}

Dims pool_result(const Dims& s4, bool added) { return added ? Dims(s4.begin() + 1, s4.end()) : s4; }

cpu::Pool2dGeometry pool_geometry(const char* op, const Dims& s4, const PoolArgs& a, bool ceil_mode) {
  return cpu::make_pool2d_geometry(op, s4[0] * s4[1], s4[2], s4[3], a.kernel.data(), a.stride.data(),
                                   a.padding.data(), a.dilation.data(), ceil_mode);
}

cpu::Pool2dGeometry pool_backward_planes(const Dims& grad4, const Dims& in4) {
  cpu::Pool2dGeometry g;
  g.planes = in4[0] * in4[1], g.in_h = in4[2], g.in_w = in4[3];
  g.out_h = grad4[2], g.out_w = grad4[3];
  return g;
}

Dims pool_input_shape(const py::handle& obj, const Dims& grad_shape, const Dims& grad4, int64_t itemsize,
                      const char* op) {
  Dims shape;
  try {
    for (const py::handle v : obj) shape.push_back(as_int(v, op, "input_shape"));
  } catch (const py::type_error&) {
    type_error(op, ": input_shape must be a sequence of ints, got ", py_repr(obj));
  } catch (const py::error_already_set&) {  // not iterable
    type_error(op, ": input_shape must be a sequence of ints, got ", py_repr(obj));
  }
  if (shape.size() != grad_shape.size())
    value_error(op, ": input_shape ", dims_str(shape), " has ", shape.size(), " entries but grad_out is ",
                grad_shape.size(), "-D");
  if (shape.size() == 3) shape.insert(shape.begin(), 1);
  for (int64_t s : shape)
    if (s < 0) value_error(op, ": input_shape has a negative size");
  if (shape[2] < 1 || shape[3] < 1) value_error(op, ": input_shape must have H and W at least 1");
  if (shape[0] != grad4[0] || shape[1] != grad4[1])
    value_error(op, ": grad_out has shape ", dims_str(grad4), " but input_shape is ", dims_str(shape),
                "; N and C must agree");
  // dx is allocated from input_shape: its byte size must fit (NumPy's own limit is
  // PTRDIFF_MAX), computed without overflow. Zero sizes are skipped, as NumPy does, so
  // (0, C, 2**62, 2**62) is refused too.
  int64_t bytes = itemsize;
  for (int64_t s : shape)
    if (s > 0 && __builtin_mul_overflow(bytes, s, &bytes))
      value_error(op, ": input_shape ", dims_str(shape), " is too large to allocate");
  return shape;
}

void pool_require_grad_shape(const Dims& grad4, const cpu::Pool2dGeometry& g, const char* op) {
  if (grad4[2] != g.out_h || grad4[3] != g.out_w)
    value_error(op, ": grad_out has shape ", dims_str(grad4), ", expected (", grad4[0], ", ", grad4[1], ", ",
                g.out_h, ", ", g.out_w, ") for these pooling arguments");
}

int64_t pool_divisor(const py::handle& obj, const char* op) {
  if (obj.is_none()) return 0;
  const int64_t d = as_int(obj, op, "divisor_override");
  if (d == 0) value_error(op, ": divisor_override must not be zero");
  return d;
}

Pair adaptive_size(const py::handle& output_size, const Dims& s4, const char* op) {
  Pair size;
  if (py::isinstance<py::tuple>(output_size) || py::isinstance<py::list>(output_size)) {
    if (py::len(output_size) != 2)
      value_error(op, ": output_size must be an int or a pair, got ", py_repr(output_size));
    const py::sequence seq = py::reinterpret_borrow<py::sequence>(output_size);
    for (int a = 0; a < 2; ++a) size[a] = seq[a].is_none() ? s4[2 + a] : as_int(seq[a], op, "output_size");
  } else {
    size = pair(output_size, op, "output_size");
  }
  if (size[0] < 1 || size[1] < 1)
    value_error(op, ": output_size must be at least 1, got (", size[0], ", ", size[1], ")");
  // The kernels compute oh * in_h: bounded like the other pooling arguments.
  if (size[0] > kMaxPoolArg || size[1] > kMaxPoolArg)
    value_error(op, ": output_size (", size[0], ", ", size[1], ") is too large (limit 2^31)");
  return size;
}

void def_pool_kernels(py::module_& m, const PoolKernels& k) {
  const py::int_ zero(0), one(1);
  auto max_forward = k.max_forward;
  m.def("max_pool2d_forward",
        [max_forward](const py::object& x, const py::object& kernel, const py::object& s, const py::object& p,
                      const py::object& d, bool ceil_mode) { return max_forward(x, kernel, s, p, d, ceil_mode, true); },
        py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = zero,
        py::arg("dilation") = one, py::arg("ceil_mode") = false,
        "(y, indices): max pooling and the int64 flat index ih * W + iw of each maximum in its plane "
        "(-1 for a window of padding only).");
  m.def("max_pool2d",
        [max_forward](const py::object& x, const py::object& kernel, const py::object& s, const py::object& p,
                      const py::object& d, bool ceil_mode, bool return_indices) -> py::object {
          py::tuple r = max_forward(x, kernel, s, p, d, ceil_mode, return_indices);
          return return_indices ? py::object(r) : py::object(r[0]);
        },
        py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = zero,
        py::arg("dilation") = one, py::arg("ceil_mode") = false, py::arg("return_indices") = false,
        "Max pooling as torch.nn.functional.max_pool2d; (y, indices) with return_indices.");
  m.def("max_pool2d_backward", k.max_backward, py::arg("grad_out"), py::arg("indices"), py::arg("input_shape"),
        "dx of input_shape: grad_out added into dx at the positions held in indices.");
  m.def("avg_pool2d", k.avg_forward, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = zero, py::arg("ceil_mode") = false, py::arg("count_include_pad") = true,
        py::arg("divisor_override") = py::none(), "Average pooling as torch.nn.functional.avg_pool2d.");
  m.def("avg_pool2d_backward", k.avg_backward, py::arg("grad_out"), py::arg("input_shape"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = zero, py::arg("ceil_mode") = false,
        py::arg("count_include_pad") = true, py::arg("divisor_override") = py::none(),
        "dx of input_shape for avg_pool2d with the same arguments.");
  m.def("adaptive_avg_pool2d", k.adaptive_forward, py::arg("x"), py::arg("output_size"),
        "Adaptive average pooling; output_size an int or an (h, w) pair, None keeping that input size.");
  m.def("adaptive_avg_pool2d_backward", k.adaptive_backward, py::arg("grad_out"), py::arg("input_shape"),
        "dx of input_shape for adaptive_avg_pool2d (the output size is grad_out's).");
}

}  // namespace dlkern::bind
