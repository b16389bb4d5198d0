// dlkern._C_cuda elementwise ops (NumPy broadcasting, any strides, Python scalars on
// either side, numpy's out=) and reductions (one axis or all, keepdims), under the CPU
// namespace's names. Results are new contiguous arrays on the first array operand's
// device and stream, or out= written in place. Shape and dtype errors are raised before
// any device work. The operand/out= machinery shared with cuda_logic.cpp and
// cuda_fill.cpp is defined here (declared in cuda_elementwise.h).
#include <Python.h>

#include <cmath>

#include "bind/cuda_elementwise.h"
#include "cuda/check.h"
#include "cuda/elementwise.h"
#include "cuda/reduce.h"

namespace dlkern::bind {

namespace {

// numpy.generic: NumPy scalars (numpy.float32(2), numpy.int64(3), numpy.bool_(True)) count
// as numbers. Looked up once and kept for the life of the process.
bool is_numpy_scalar(const py::handle& obj) {
  static const py::handle generic = py::object(py::module_::import("numpy").attr("generic")).release();
  return py::isinstance(obj, generic);
}

}  // namespace

Operand parse_operand(const py::handle& obj_in, const char* op, const char* arg) {
  py::object obj = py::reinterpret_borrow<py::object>(obj_in);
  if (is_numpy_scalar(obj)) obj = obj.attr("item")();  // as its Python value
  Operand o;
  o.arg = arg;
  if (py::isinstance<py::bool_>(obj)) {
    o.kind = Operand::Kind::boolean;
    o.integer = obj.cast<bool>();
    o.real = static_cast<double>(o.integer);
    o.fits_int64 = true;
  } else if (py::isinstance<py::int_>(obj)) {
    o.kind = Operand::Kind::integer;
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(obj.ptr(), &overflow);
    o.fits_int64 = overflow == 0;
    o.integer = o.fits_int64 ? v : 0;
    o.real = PyLong_AsDouble(obj.ptr());  // inf-free only up to ~1e308; huge ints raise
    if (PyErr_Occurred()) throw py::error_already_set();
  } else if (py::isinstance<py::float_>(obj)) {
    o.kind = Operand::Kind::real;
    o.real = obj.cast<double>();
  } else {
    o.array = &require_device_array(obj, op, arg);
  }
  return o;
}

Operand parse_number(const py::handle& obj, const char* op, const char* arg) {
  if (!py::isinstance<py::int_>(obj) && !py::isinstance<py::float_>(obj) && !is_numpy_scalar(obj))
    type_error(op, ": ", arg, " must be a Python number, got ",
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  return parse_operand(obj, op, arg);
}

const cuda::DeviceArray& first_array(const std::vector<Operand>& in) {
  for (const Operand& o : in)
    if (o.array) return *o.array;
  throw std::logic_error("first_array: no array operand");
}

cuda::DType common_dtype(const char* op, const std::vector<Operand>& in) {
  const Operand* first = nullptr;
  for (const Operand& o : in) {
    if (!o.array) continue;
    if (!first) {
      first = &o;
    } else if (o.array->dtype != first->array->dtype) {
      type_error(op, ": ", first->arg, " has dtype ", cuda::dtype_name(first->array->dtype), " but ", o.arg,
                 " has dtype ", cuda::dtype_name(o.array->dtype), "; cast one first (dlkern._C_cuda.astype)");
    }
  }
  if (!first) {
    std::string args;
    for (const Operand& o : in) args += cat(args.empty() ? "" : ", ", o.arg);
    type_error(op, ": at least one operand must be a dlkern._C_cuda.DeviceArray (", args,
               in.size() == 1 ? " is a Python number)" : " are Python numbers)");
  }
  const cuda::DType dt = first->array->dtype;
  for (const Operand& o : in) {
    if (o.array) continue;
    if (dt == cuda::DType::i64 && o.kind == Operand::Kind::real)
      type_error(op, ": ", o.arg, " is a Python float but ", first->arg, " has dtype int64; cast the array "
                 "to a float dtype first (dlkern._C_cuda.astype) or pass an int");
    if (dt == cuda::DType::i64 && !o.fits_int64)
      value_error(op, ": ", o.arg, " = ", o.real, " does not fit in int64");
    if (dt == cuda::DType::b8 && o.kind != Operand::Kind::boolean)
      type_error(op, ": ", o.arg, " is a Python number but ", first->arg, " has dtype bool; pass True or False");
  }
  return dt;
}

cuda::Shape broadcast_operands(const char* op, const std::vector<Operand>& in) {
  cuda::Shape shape;
  const cuda::DeviceArray* first = nullptr;
  for (const Operand& o : in) {
    if (!o.array) continue;
    if (first && o.array->device != first->device)
      value_error(op, ": operands are on different devices (cuda:", first->device, " and cuda:",
                  o.array->device, ")");
    if (!first) first = o.array;
    try {
      shape = cuda::broadcast_shapes(shape, o.array->shape);
    } catch (const std::invalid_argument& e) {
      // With more than two operands the shapes in e.what() may be partial results: list them.
      std::string shapes;
      for (const Operand& p : in)
        shapes += cat(shapes.empty() ? "" : ", ", p.arg, " ", p.array ? cuda::shape_str(p.array->shape) : "()");
      if (in.size() > 2) value_error(op, ": ", e.what(), " (operands: ", shapes, ")");
      value_error(op, ": ", e.what());
    }
  }
  return shape;
}

cuda::DeviceArray* parse_out(const py::object& out_obj, const char* op, const cuda::Shape& shape,
                             cuda::DType dtype, int device) {
  if (out_obj.is_none()) return nullptr;
  if (!py::isinstance<cuda::DeviceArray>(out_obj))
    type_error(op, ": out must be a dlkern._C_cuda.DeviceArray or None, got ",
               py::str(py::type::of(out_obj).attr("__name__")).cast<std::string>());
  cuda::DeviceArray& out = out_obj.cast<cuda::DeviceArray&>();
  require_match(out, "out", dtype, shape, device, {"the result has", "the result has", "the operands are"}, op);
  return &out;
}

namespace {

using cuda::DType;

// float32/float64 only.
void require_float(const DeviceArray& x, const char* op, const char* arg) {
  if (!cuda::is_float(x.dtype))
    type_error(op, ": ", arg, " has dtype ", cuda::dtype_name(x.dtype), "; CUDA ", op,
               " supports float32 and float64");
}

py::object unary_op(cuda::UnaryOp f, const char* op, const py::object& x_obj, const py::object& out_obj) {
  const std::vector<Operand> in{parse_operand(x_obj, op, "x")};
  if (!in[0].array)
    type_error(op, ": x must be a dlkern._C_cuda.DeviceArray, got a Python number");
  const DeviceArray& x = *in[0].array;
  require_float(x, op, "x");
  return elementwise(op, in, x.shape, x.dtype, x.device, out_obj, [&](auto& r, const auto& loop) {
    dispatch_cuda_float(x.dtype, [&](auto zero) {
      using T = decltype(zero);
      cuda::unary<T>(f, loop, static_cast<T*>(r.data()), static_cast<const T*>(x.data()), r.stream, op);
    });
  });
}

// The binary ops that also run on int64 (NumPy would turn int64 / and ** into floats
// or raise; here they ask for an explicit cast).
bool int64_ok(cuda::BinaryOp f) {
  return f == cuda::BinaryOp::add || f == cuda::BinaryOp::sub || f == cuda::BinaryOp::mul ||
         f == cuda::BinaryOp::maximum || f == cuda::BinaryOp::minimum;
}

py::object binary_op(cuda::BinaryOp f, const char* op, const py::object& a_obj, const py::object& b_obj,
                     const py::object& out_obj) {
  const std::vector<Operand> in{parse_operand(a_obj, op, "a"), parse_operand(b_obj, op, "b")};
  const DType dt = common_dtype(op, in);
  if (dt == DType::b8 || (dt == DType::i64 && !int64_ok(f)))
    type_error(op, ": operands have dtype ", cuda::dtype_name(dt), "; CUDA ", op, " supports float32 and float64",
               dt == DType::i64 ? " (int64 only for add, subtract, multiply, maximum, minimum)" : "",
               "; cast with dlkern._C_cuda.astype first");
  const cuda::Shape shape = broadcast_operands(op, in);
  return elementwise(op, in, shape, dt, first_array(in).device, out_obj, [&](auto& r, const auto& loop) {
    dispatch_cuda_any(dt, [&](auto zero) {
      using T = decltype(zero);
      if constexpr (!std::is_same_v<T, uint8_t>)
        cuda::binary<T>(f, loop, static_cast<T*>(r.data()), data_as<T>(in[0]), scalar_as<T>(in[0]),
                        data_as<T>(in[1]), scalar_as<T>(in[1]), r.stream, op);
    });
  });
}

// clip(x, lo, hi): lo/hi Python numbers or None, as numpy.clip.
py::object clip_op(const py::object& x_obj, const py::object& lo_obj, const py::object& hi_obj,
                   const py::object& out_obj) {
  const char* op = "clip";
  std::vector<Operand> in{parse_operand(x_obj, op, "x")};
  if (!in[0].array) type_error(op, ": x must be a dlkern._C_cuda.DeviceArray, got a Python number");
  const DeviceArray& x = *in[0].array;
  if (x.dtype == DType::b8)
    type_error(op, ": x has dtype bool; CUDA clip supports float32, float64 and int64");
  // The bounds are checked against x's dtype as the other operand would be.
  auto bound = [&](const py::object& obj, const char* arg) {
    if (obj.is_none()) return Operand{};
    Operand b = parse_number(obj, op, arg);
    common_dtype(op, {in[0], b});
    return b;
  };
  const Operand lo = bound(lo_obj, "lo"), hi = bound(hi_obj, "hi");
  return elementwise(op, in, x.shape, x.dtype, x.device, out_obj, [&](auto& r, const auto& loop) {
    dispatch_cuda_any(x.dtype, [&](auto zero) {
      using T = decltype(zero);
      if constexpr (!std::is_same_v<T, uint8_t>)
        cuda::clip<T>(loop, static_cast<T*>(r.data()), static_cast<const T*>(x.data()), !lo_obj.is_none(),
                      scalar_as<T>(lo), !hi_obj.is_none(), scalar_as<T>(hi), r.stream, op);
    });
  });
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
      {"negative", cuda::UnaryOp::neg}, {"neg", cuda::UnaryOp::neg},     {"exp", cuda::UnaryOp::exp},
      {"log", cuda::UnaryOp::log},      {"sqrt", cuda::UnaryOp::sqrt},   {"abs", cuda::UnaryOp::abs},
      {"tanh", cuda::UnaryOp::tanh},    {"sigmoid", cuda::UnaryOp::sigmoid},
      {"relu", cuda::UnaryOp::relu},    {"sin", cuda::UnaryOp::sin},     {"cos", cuda::UnaryOp::cos},
      {"sign", cuda::UnaryOp::sign},    {"log1p", cuda::UnaryOp::log1p}, {"expm1", cuda::UnaryOp::expm1},
      {"erf", cuda::UnaryOp::erf},      {"square", cuda::UnaryOp::square},
      {"reciprocal", cuda::UnaryOp::reciprocal},
  };
  for (const auto& [name, f] : unary)
    m.def(name, [name = name, f = f](const py::object& x, const py::object& out) { return unary_op(f, name, x, out); },
          py::arg("x"), py::arg("out") = py::none(),
          cat(name, "(x, out=None): elementwise on a float32/float64 DeviceArray; a new contiguous array, "
                    "or out (same shape and dtype, any strides, may be x itself) written in place and returned.").c_str());

  const std::pair<const char*, cuda::BinaryOp> binary[] = {
      {"add", cuda::BinaryOp::add},         {"subtract", cuda::BinaryOp::sub},
      {"sub", cuda::BinaryOp::sub},         {"multiply", cuda::BinaryOp::mul},
      {"mul", cuda::BinaryOp::mul},         {"divide", cuda::BinaryOp::div},
      {"div", cuda::BinaryOp::div},         {"maximum", cuda::BinaryOp::maximum},
      {"minimum", cuda::BinaryOp::minimum}, {"power", cuda::BinaryOp::pow},
      {"pow", cuda::BinaryOp::pow},         {"logaddexp", cuda::BinaryOp::logaddexp},
  };
  for (const auto& [name, f] : binary)
    m.def(name, [name = name, f = f](const py::object& a, const py::object& b, const py::object& out) {
            return binary_op(f, name, a, b, out);
          }, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
          cat(name, "(a, b, out=None): elementwise with NumPy broadcasting; either side may be a Python "
                    "number. float32/float64 (add, subtract, multiply, maximum, minimum also int64, with "
                    "int numbers only). A new contiguous array, or out (the broadcast shape and the dtype, "
                    "any strides, may be an input) written in place and returned.").c_str());

  m.def("clip", &clip_op, py::arg("x"), py::arg("lo"), py::arg("hi"), py::arg("out") = py::none(),
        "clip(x, lo, hi, out=None): min(max(x, lo), hi) as numpy.clip (hi wins if lo > hi); lo/hi Python "
        "numbers or None; "
        "float32/float64/int64 (int bounds for int64).");

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
  m.def("_alias", [](const py::object& shape, uintptr_t out_addr, const py::object& out_strides, int64_t out_item,
                     uintptr_t in_addr, const py::object& in_strides, int64_t in_item) {
    const cuda::Alias a = cuda::classify_alias(to_shape(shape, "_alias", "shape"), out_addr,
                                               to_shape(out_strides, "_alias", "out_strides"), out_item, in_addr,
                                               to_shape(in_strides, "_alias", "in_strides"), in_item);
    return a == cuda::Alias::none ? "none" : a == cuda::Alias::same ? "same" : "partial";
  }, py::arg("shape"), py::arg("out_addr"), py::arg("out_strides"), py::arg("out_item"), py::arg("in_addr"),
  py::arg("in_strides"), py::arg("in_item"),
  "Testing aid: how out= and an input (byte addresses, element strides broadcast to shape, item sizes) share "
  "memory: 'none', 'same' (computed in place) or 'partial' (through a temporary).");
  m.def("_check_view", [](const py::object& shape, const py::object& strides, int64_t offset, int64_t n) {
    cuda::check_view(to_shape(shape, "as_strided", "shape"), to_shape(strides, "as_strided", "strides"), offset, n);
  }, py::arg("shape"), py::arg("strides"), py::arg("offset"), py::arg("storage_numel"));
}

}  // namespace dlkern::bind
