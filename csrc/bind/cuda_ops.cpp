// dlkern._C_cuda elementwise ops (NumPy broadcasting, any strides, Python scalars on
// either side) and reductions (one axis or all, keepdims), under the CPU namespace's
// names. Results are new contiguous arrays on the first array operand's device and
// stream. Shape and dtype errors are raised before any device work.
#include <cmath>

#include "bind/cuda_common.h"
#include "cuda/check.h"
#include "cuda/elementwise.h"
#include "cuda/reduce.h"

namespace dlkern::bind {
namespace {

using cuda::DeviceArray;
using cuda::DType;

// float32/float64 only: the elementwise and reduction kernels are not built for int64.
void require_float(const DeviceArray& x, const char* op, const char* arg) {
  if (x.dtype == DType::i64)
    type_error(op, ": ", arg, " has dtype int64; CUDA ", op, " supports float32 and float64");
}

// An operand: a DeviceArray, or a Python number standing for a scalar.
struct Operand {
  const DeviceArray* array = nullptr;
  double scalar = 0;
};

Operand parse_operand(const py::handle& obj, const char* op, const char* arg) {
  if (py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj)) return {nullptr, obj.cast<double>()};
  return {&require_device_array(obj, op, arg), 0};
}

DeviceArray unary_op(cuda::UnaryOp f, const char* op, const py::object& x_obj) {
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  require_float(x, op, "x");
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(x.device, op);
  DeviceArray out = cuda::empty(x.shape, x.dtype, x.device, x.stream, op);
  const cuda::StridedLoop loop = cuda::make_loop(x.shape, {out.strides, x.strides});
  dispatch_cuda_float(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    cuda::unary<T>(f, loop, static_cast<T*>(out.data()), static_cast<const T*>(x.data()), out.stream, op);
  });
  return out;
}

DeviceArray binary_op(cuda::BinaryOp f, const char* op, const py::object& a_obj, const py::object& b_obj) {
  const Operand a = parse_operand(a_obj, op, "a"), b = parse_operand(b_obj, op, "b");
  if (!a.array && !b.array)
    type_error(op, ": at least one operand must be a dlkern._C_cuda.DeviceArray (both are Python numbers)");
  const DeviceArray& first = a.array ? *a.array : *b.array;
  if (a.array) require_float(*a.array, op, "a");
  if (b.array) require_float(*b.array, op, "b");
  if (a.array && b.array) {
    if (a.array->dtype != b.array->dtype)
      type_error(op, ": a has dtype ", cuda::dtype_name(a.array->dtype), " but b has dtype ",
                 cuda::dtype_name(b.array->dtype), "; cast one first");
    if (a.array->device != b.array->device)
      value_error(op, ": operands are on different devices (cuda:", a.array->device, " and cuda:",
                  b.array->device, ")");
  }
  static const cuda::Shape kScalar;
  const cuda::Shape& a_shape = a.array ? a.array->shape : kScalar;
  const cuda::Shape& b_shape = b.array ? b.array->shape : kScalar;
  cuda::Shape shape;
  try {
    shape = cuda::broadcast_shapes(a_shape, b_shape);
  } catch (const std::invalid_argument& e) {
    value_error(op, ": ", e.what());
  }
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(first.device, op);
  DeviceArray out = cuda::empty(shape, first.dtype, first.device, first.stream, op);
  // The second array may have been produced on another stream.
  if (a.array && b.array) cuda::stream_wait(out.stream, (a.array == &first ? b.array : a.array)->stream, op);
  const cuda::Shape zeros(shape.size(), 0);
  const cuda::StridedLoop loop = cuda::make_loop(
      shape, {out.strides, a.array ? cuda::broadcast_strides(a_shape, a.array->strides, shape) : zeros,
              b.array ? cuda::broadcast_strides(b_shape, b.array->strides, shape) : zeros});
  dispatch_cuda_float(first.dtype, [&](auto zero) {
    using T = decltype(zero);
    auto ptr = [](const Operand& o) { return o.array ? static_cast<const T*>(o.array->data()) : nullptr; };
    cuda::binary<T>(f, loop, static_cast<T*>(out.data()), ptr(a), static_cast<T>(a.scalar), ptr(b),
                    static_cast<T>(b.scalar), out.stream, op);
  });
  return out;
}

DeviceArray reduce_op(cuda::ReduceOp f, const char* op, const py::object& x_obj, const py::object& axis_obj,
                      bool keepdims) {
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  require_float(x, op, "x");
  const bool all = axis_obj.is_none();
  if (!all && !py::isinstance<py::int_>(axis_obj))
    type_error(op, ": axis must be an int or None (tuples of axes are not supported on CUDA yet), got ",
               py::str(py::type::of(axis_obj).attr("__name__")).cast<std::string>());
  int axis = -1;
  if (!all) {
    if (x.ndim() == 0) value_error(op, ": axis ", axis_obj.cast<int64_t>(), " given for a 0-d array");
    axis = cuda::normalize_axis(axis_obj.cast<int64_t>(), x.ndim(), op);
  }
  const int64_t reduced = all ? x.numel() : x.shape[axis];
  if (reduced == 0 && (f == cuda::ReduceOp::amax || f == cuda::ReduceOp::amin))
    value_error(op, ": zero-size reduction has no identity (array of shape ", cuda::shape_str(x.shape), ")");
  const cuda::ReduceLayout layout = cuda::make_reduce_layout(x.shape, x.strides, all, axis, keepdims);
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(x.device, op);
  DeviceArray out = cuda::empty(layout.out_shape, x.dtype, x.device, x.stream, op);
  // Partial results of a split reduction; back to the cache on return, which is safe
  // because later users of the block are ordered after this work on the same stream.
  const int64_t scratch_numel = cuda::plan_reduce(layout).scratch;
  const DeviceArray scratch =
      scratch_numel ? cuda::empty({scratch_numel}, x.dtype, x.device, out.stream, op) : DeviceArray{};
  dispatch_cuda_float(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    cuda::reduce<T>(f, layout, static_cast<T*>(out.data()), static_cast<const T*>(x.data()),
                    scratch_numel ? static_cast<T*>(scratch.data()) : nullptr, out.stream, op);
  });
  return out;
}

// (sizes, [strides per operand]) of a loop, for the testing aids below.
py::tuple loop_tuple(const cuda::StridedLoop& l) {
  py::list per_operand;
  for (int k = 0; k < l.operands; ++k) per_operand.append(to_tuple(cuda::Shape(l.strides[k], l.strides[k] + l.ndim)));
  return py::make_tuple(to_tuple(cuda::Shape(l.sizes, l.sizes + l.ndim)), per_operand);
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_ops) {
  const std::pair<const char*, cuda::UnaryOp> unary[] = {
      {"negative", cuda::UnaryOp::neg}, {"neg", cuda::UnaryOp::neg},   {"exp", cuda::UnaryOp::exp},
      {"log", cuda::UnaryOp::log},      {"sqrt", cuda::UnaryOp::sqrt}, {"abs", cuda::UnaryOp::abs},
      {"tanh", cuda::UnaryOp::tanh},    {"sigmoid", cuda::UnaryOp::sigmoid},
      {"relu", cuda::UnaryOp::relu},
  };
  for (const auto& [name, f] : unary)
    m.def(name, [name = name, f = f](const py::object& x) { return unary_op(f, name, x); }, py::arg("x"),
          cat(name, "(x): elementwise on a DeviceArray; a new contiguous array.").c_str());

  const std::pair<const char*, cuda::BinaryOp> binary[] = {
      {"add", cuda::BinaryOp::add},         {"subtract", cuda::BinaryOp::sub},
      {"sub", cuda::BinaryOp::sub},         {"multiply", cuda::BinaryOp::mul},
      {"mul", cuda::BinaryOp::mul},         {"divide", cuda::BinaryOp::div},
      {"div", cuda::BinaryOp::div},         {"maximum", cuda::BinaryOp::maximum},
      {"minimum", cuda::BinaryOp::minimum}, {"power", cuda::BinaryOp::pow},
      {"pow", cuda::BinaryOp::pow},
  };
  for (const auto& [name, f] : binary)
    m.def(name, [name = name, f = f](const py::object& a, const py::object& b) { return binary_op(f, name, a, b); },
          py::arg("a"), py::arg("b"),
          cat(name, "(a, b): elementwise with NumPy broadcasting; either side may be a Python "
                    "number. A new contiguous array.").c_str());

  const std::pair<const char*, cuda::ReduceOp> reductions[] = {
      {"sum", cuda::ReduceOp::sum}, {"mean", cuda::ReduceOp::mean},
      {"amax", cuda::ReduceOp::amax}, {"amin", cuda::ReduceOp::amin},
  };
  for (const auto& [name, f] : reductions)
    m.def(name, [name = name, f = f](const py::object& x, const py::object& axis, bool keepdims) {
            return reduce_op(f, name, x, axis, keepdims);
          }, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdims") = false,
          cat(name, "(x, axis=None, keepdims=False): over one axis or all; a new array.").c_str());

  // Host-side layout helpers, bound so tests check them without a GPU.
  m.def("_broadcast_shapes", [](const py::object& a, const py::object& b) {
    try {
      return to_tuple(cuda::broadcast_shapes(to_shape(a, "broadcast", "a"), to_shape(b, "broadcast", "b")));
    } catch (const std::invalid_argument& e) {
      value_error("broadcast: ", e.what());
    }
  }, py::arg("a"), py::arg("b"));
  m.def("_make_loop", [](const py::object& shape, const py::list& strides) {
    std::vector<cuda::Shape> s;
    for (const py::handle& st : strides) s.push_back(to_shape(st, "_make_loop", "strides"));
    return loop_tuple(cuda::make_loop(to_shape(shape, "_make_loop", "shape"), s));
  }, py::arg("shape"), py::arg("strides"),
  "Testing aid: (sizes, [strides per operand]) of the coalesced loop the kernels run.");
  m.def("_reduce_layout", [](const py::object& shape, const py::object& strides, const py::object& axis,
                             bool keepdims) {
    const cuda::Shape sh = to_shape(shape, "_reduce_layout", "shape");
    const int ax = axis.is_none() ? -1 : cuda::normalize_axis(axis.cast<int64_t>(), static_cast<int>(sh.size()), "_reduce_layout");
    const cuda::ReduceLayout r = cuda::make_reduce_layout(sh, to_shape(strides, "_reduce_layout", "strides"),
                                                          axis.is_none(), ax, keepdims);
    const cuda::ReducePlan plan = cuda::plan_reduce(r);
    py::dict p;
    p["threads_per_output"] = plan.threads_per_output;
    p["splits"] = plan.splits;
    p["chunk"] = plan.chunk;
    p["scratch"] = plan.scratch;
    return py::make_tuple(to_tuple(r.out_shape), loop_tuple(r.out_loop), loop_tuple(r.reduce_loop), p);
  }, py::arg("shape"), py::arg("strides"), py::arg("axis"), py::arg("keepdims"),
  "Testing aid: (out_shape, (sizes, strides) of the output loop, of the reduce loop, launch plan).");
  m.def("_check_view", [](const py::object& shape, const py::object& strides, int64_t offset, int64_t n) {
    cuda::check_view(to_shape(shape, "as_strided", "shape"), to_shape(strides, "as_strided", "strides"), offset, n);
  }, py::arg("shape"), py::arg("strides"), py::arg("offset"), py::arg("storage_numel"));
}

}  // namespace dlkern::bind
