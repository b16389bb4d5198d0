// Bindings for the fused cross-entropy loss: dlkern._C.cross_entropy_forward and
// dlkern._C.cross_entropy_backward. input (N, C) or (N, C, d1, ...), target int64
// (N,) or (N, d1, ...), all C-contiguous (the Python layer copies explicitly).
#include <string>
#include <vector>

#include "bind/common.h"
#include "cpu/cross_entropy.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
constexpr char kNativeOrder = '>';
#else
constexpr char kNativeOrder = '<';
#endif

struct CeShape {
  int64_t n = 0, c = 0, s = 1;
  std::vector<py::ssize_t> sample_shape;  // (N, d1, ...)
};

std::string shape_of(const std::vector<py::ssize_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

void require_contiguous(const py::array& a, const char* op, const char* arg) {
  if (!(a.flags() & py::array::c_style))
    value_error(op, ": ", arg, " must be C-contiguous (shape ", shape_str(a), "); pass numpy.ascontiguousarray(",
                arg, ")");
}

// Everything the forward and backward share: input, target, weight, options.
// reduction_arg's index is the enum's value.
static_assert(static_cast<int>(cpu::Reduction::mean) == 1 && static_cast<int>(cpu::Reduction::sum) == 2);

struct CeArgs {
  py::array input, target, weight;
  bool has_weight = false;
  DType dt = DType::f32;
  CeShape shape;
  cpu::Reduction reduction = cpu::Reduction::mean;
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
};

CeArgs check_common(const py::object& input_obj, const py::object& target_obj, const py::object& weight_obj,
                    const py::object& ignore_index_obj, const py::object& reduction,
                    const py::object& label_smoothing_obj, const char* op) {
  CeArgs a;
  a.ignore_index = int64_arg(ignore_index_obj, op, "ignore_index");
  a.label_smoothing = double_arg(label_smoothing_obj, op, "label_smoothing");
  const int64_t ignore_index = a.ignore_index;
  const double label_smoothing = a.label_smoothing;
  a.input = require_array(input_obj, op, "input");
  a.dt = float_dtype(a.input, op, "input");
  if (a.input.ndim() < 2)
    value_error(op, ": input must have shape (N, C) or (N, C, d1, ...), got shape ", shape_str(a.input));
  require_contiguous(a.input, op, "input");
  a.shape.n = a.input.shape(0);
  a.shape.c = a.input.shape(1);
  if (a.shape.c < 1) value_error(op, ": input has no classes (shape ", shape_str(a.input), ")");
  a.shape.sample_shape.push_back(a.input.shape(0));
  for (py::ssize_t i = 2; i < a.input.ndim(); ++i) {
    a.shape.s *= a.input.shape(i);
    a.shape.sample_shape.push_back(a.input.shape(i));
  }
  a.target = require_array(target_obj, op, "target");
  const py::dtype td = a.target.dtype();
  const char order = td.byteorder();
  const bool native = order == '=' || order == '|' || order == kNativeOrder;
  if (!(td.kind() == 'i' && td.itemsize() == 8 && native))
    type_error(op, ": target has dtype ", dtype_str(a.target), "; expected int64 class indices");
  const std::vector<py::ssize_t> ts(a.target.shape(), a.target.shape() + a.target.ndim());
  if (ts != a.shape.sample_shape)
    value_error(op, ": target has shape ", shape_str(a.target), ", expected ", shape_of(a.shape.sample_shape),
                " for input of shape ", shape_str(a.input));
  require_contiguous(a.target, op, "target");
  if (!weight_obj.is_none()) {
    a.weight = require_array(weight_obj, op, "weight");
    if (float_dtype(a.weight, op, "weight") != a.dt)
      type_error(op, ": weight has dtype ", dtype_str(a.weight), " but input has dtype ", dtype_str(a.input));
    if (a.weight.ndim() != 1 || a.weight.shape(0) != a.shape.c)
      value_error(op, ": weight has shape ", shape_str(a.weight), ", expected (", a.shape.c, ",) for input of shape ",
                  shape_str(a.input));
    require_contiguous(a.weight, op, "weight");
    a.has_weight = true;
  }
  a.reduction = static_cast<cpu::Reduction>(reduction_arg(reduction, op));
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    value_error(op, ": label_smoothing must be in [0, 1], got ", label_smoothing);
  const auto* tp = static_cast<const int64_t*>(a.target.data());
  const int64_t count = a.shape.n * a.shape.s;
  const int64_t bad = cpu::cross_entropy_bad_target(tp, count, a.shape.c, ignore_index);
  if (bad >= 0)
    value_error(op, ": target value ", tp[bad], " (flat index ", bad, ") is out of range for ", a.shape.c,
                " classes (expected 0 <= target < ", a.shape.c, " or ignore_index=", ignore_index, ")");
  return a;
}

py::tuple ce_forward(const py::object& input, const py::object& target, const py::object& weight,
                     const py::object& ignore_index_obj, const py::object& reduction,
                     const py::object& label_smoothing_obj) {
  const char* op = "cross_entropy";
  CeArgs a = check_common(input, target, weight, ignore_index_obj, reduction, label_smoothing_obj, op);
  const int64_t ignore_index = a.ignore_index;
  const double label_smoothing = a.label_smoothing;
  py::array losses(a.input.dtype(), a.shape.sample_shape);
  py::array lse(a.input.dtype(), a.shape.sample_shape);
  const void* xp = a.input.data();
  const auto* tp = static_cast<const int64_t*>(a.target.data());
  const void* wp = a.has_weight ? a.weight.data() : nullptr;
  void* lp = losses.mutable_data();
  void* sp = lse.mutable_data();
  double reduced = 0;
  {
    py::gil_scoped_release nogil;
    dispatch_float(a.dt, [&](auto zero) {
      using T = decltype(zero);
      reduced = cpu::cross_entropy_forward(static_cast<const T*>(xp), tp, static_cast<const T*>(wp),
                                           static_cast<T*>(lp), static_cast<T*>(sp), a.shape.n, a.shape.c,
                                           a.shape.s, ignore_index, a.reduction, static_cast<T>(label_smoothing));
    });
  }
  if (a.reduction == cpu::Reduction::none) return py::make_tuple(losses, lse);
  py::array scalar(a.input.dtype(), std::vector<py::ssize_t>{});
  dispatch_float(a.dt, [&](auto zero) {
    using T = decltype(zero);
    *static_cast<T*>(scalar.mutable_data()) = static_cast<T>(reduced);
  });
  return py::make_tuple(scalar, lse);
}

py::array ce_backward(const py::object& grad_obj, const py::object& input, const py::object& target,
                      const py::object& lse_obj, const py::object& weight, const py::object& ignore_index_obj,
                      const py::object& reduction, const py::object& label_smoothing_obj,
                      const py::object& out_obj) {
  const char* op = "cross_entropy_backward";
  CeArgs a = check_common(input, target, weight, ignore_index_obj, reduction, label_smoothing_obj, op);
  const int64_t ignore_index = a.ignore_index;
  const double label_smoothing = a.label_smoothing;
  py::array grad = require_array(grad_obj, op, "grad_loss");
  if (float_dtype(grad, op, "grad_loss") != a.dt)
    type_error(op, ": grad_loss has dtype ", dtype_str(grad), " but input has dtype ", dtype_str(a.input));
  const std::vector<py::ssize_t> gs(grad.shape(), grad.shape() + grad.ndim());
  if (a.reduction == cpu::Reduction::none) {
    if (gs != a.shape.sample_shape)
      value_error(op, ": grad_loss has shape ", shape_str(grad), ", expected ", shape_of(a.shape.sample_shape),
                  " for reduction='none'");
    require_contiguous(grad, op, "grad_loss");
  } else if (grad.size() != 1) {
    value_error(op, ": grad_loss has shape ", shape_str(grad), ", expected a single value for reduction='",
                py::str(reduction).cast<std::string>(), "'");
  }
  py::array lse = require_array(lse_obj, op, "lse");
  if (float_dtype(lse, op, "lse") != a.dt)
    type_error(op, ": lse has dtype ", dtype_str(lse), " but input has dtype ", dtype_str(a.input));
  const std::vector<py::ssize_t> ls(lse.shape(), lse.shape() + lse.ndim());
  if (ls != a.shape.sample_shape)
    value_error(op, ": lse has shape ", shape_str(lse), ", expected ", shape_of(a.shape.sample_shape));
  require_contiguous(lse, op, "lse");

  py::array dx;
  if (out_obj.is_none()) {
    dx = py::array(a.input.dtype(), std::vector<py::ssize_t>(a.input.shape(), a.input.shape() + a.input.ndim()));
  } else {
    dx = require_array(out_obj, op, "out");
    if (float_dtype(dx, op, "out") != a.dt)
      type_error(op, ": out has dtype ", dtype_str(dx), " but input has dtype ", dtype_str(a.input));
    const std::vector<py::ssize_t> os(dx.shape(), dx.shape() + dx.ndim()),
        is(a.input.shape(), a.input.shape() + a.input.ndim());
    if (os != is) value_error(op, ": out has shape ", shape_str(dx), ", expected ", shape_str(a.input));
    require_writeable(dx, op, "out");
    require_contiguous(dx, op, "out");
    for (const py::array* in : {&a.input, &a.target, &lse, &grad})
      if (may_overlap(dx, *in)) value_error(op, ": out shares memory with an input; pass a separate array");
    if (a.has_weight && may_overlap(dx, a.weight))
      value_error(op, ": out shares memory with an input; pass a separate array");
  }
  // One value for mean/sum, read here so its strides never matter.
  double gscalar = 0;
  if (a.reduction != cpu::Reduction::none)
    gscalar = py::float_(grad.attr("reshape")(-1).attr("__getitem__")(0)).cast<double>();
  const void* gp = grad.data();
  const void* xp = a.input.data();
  const auto* tp = static_cast<const int64_t*>(a.target.data());
  const void* sp = lse.data();
  const void* wp = a.has_weight ? a.weight.data() : nullptr;
  void* dp = dx.mutable_data();
  const bool none = a.reduction == cpu::Reduction::none;
  {
    py::gil_scoped_release nogil;
    dispatch_float(a.dt, [&](auto zero) {
      using T = decltype(zero);
      const T gval = static_cast<T>(gscalar);
      cpu::cross_entropy_backward(none ? static_cast<const T*>(gp) : &gval, static_cast<const T*>(xp), tp,
                                  static_cast<const T*>(sp), static_cast<const T*>(wp), static_cast<T*>(dp),
                                  a.shape.n, a.shape.c, a.shape.s, ignore_index, a.reduction,
                                  static_cast<T>(label_smoothing));
    });
  }
  return dx;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(loss) {
  m.def("cross_entropy_forward", &ce_forward, py::arg("input"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = py::int_(-100), py::arg("reduction") = "mean",
        py::arg("label_smoothing") = py::float_(0.0),
        "cross_entropy_forward(input, target, weight=None, ignore_index=-100, reduction='mean', "
        "label_smoothing=0.0) -> (loss, lse): fused log-softmax + NLL with PyTorch's semantics; lse is the "
        "per-sample log-sum-exp (N, d1, ...) for the backward.");
  m.def("cross_entropy_backward", &ce_backward, py::arg("grad_loss"), py::arg("input"), py::arg("target"),
        py::arg("lse"), py::arg("weight") = py::none(), py::arg("ignore_index") = py::int_(-100),
        py::arg("reduction") = "mean", py::arg("label_smoothing") = py::float_(0.0), py::arg("out") = py::none(),
        "cross_entropy_backward(grad_loss, input, target, lse, weight=None, ignore_index=-100, "
        "reduction='mean', label_smoothing=0.0, out=None) -> dinput, in one pass from the logits and lse.");
}

}  // namespace dlkern::bind
