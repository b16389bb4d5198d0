// dlkern._C_cuda integer indexing under NumPy's names and semantics: take,
// take_along_axis, put_along_axis, add_at (numpy.add.at along axis 0), argmax, argmin.
// Indices are int64 DeviceArrays; negative ones wrap once. Shape, dtype and device
// errors are raised before any device work. An index out of range is found by the
// kernel itself: it records the first offending position in one device word, which the
// binding copies back after the launch (a synchronisation, correctness first) to raise
// IndexError naming the op, the index, the axis and its size, as NumPy words it.
#include <limits>
#include <optional>
#include <type_traits>

#include "bind/cuda_common.h"
#include "cuda/check.h"
#include "cuda/indexing.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

constexpr unsigned long long kNoBadIndex = std::numeric_limits<unsigned long long>::max();

const DeviceArray& require_index(const py::handle& obj, const DeviceArray& x, const char* op) {
  const DeviceArray& idx = require_device_array(obj, op, "indices");
  if (idx.dtype != DType::i64)
    type_error(op, ": indices has dtype ", cuda::dtype_name(idx.dtype), "; expected int64");
  if (idx.device != x.device) value_error(op, ": indices is on cuda:", idx.device, " but x is on cuda:", x.device);
  return idx;
}

// An int (or anything with __index__, e.g. numpy.int64; not bool) normalised against
// ndim; out of range raises IndexError, as the reductions of cuda_ops.cpp do.
int int_axis(const py::handle& axis, int ndim, const char* op) {
  if (py::isinstance<py::bool_>(axis) || !PyIndex_Check(axis.ptr()))
    type_error(op, ": axis must be an int, got ", py::str(py::type::of(axis).attr("__name__")).cast<std::string>());
  PyObject* index = PyNumber_Index(axis.ptr());
  if (!index) throw py::error_already_set();
  return cuda::normalize_axis(py::reinterpret_steal<py::int_>(index).cast<int64_t>(), ndim, op);
}

// Shape errors of the planners as ValueError naming the op.
template <typename F>
auto planned(const char* op, F&& f) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    value_error(op, ": ", e.what());
  }
}

// values: a DeviceArray of x's dtype and device broadcastable to the index space, or a
// Python number (no array; the number in `scalar`, read with zero strides).
struct Values {
  const DeviceArray* array = nullptr;
  double scalar = 0;
  Shape strides;  // per index-space dimension
};

Values parse_values(const py::handle& obj, const DeviceArray& x, const Shape& space, const char* op) {
  Values v;
  if (py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj)) {
    v.scalar = obj.cast<double>();
    v.strides.assign(space.size(), 0);
    return v;
  }
  v.array = &require_device_array(obj, op, "values");
  if (v.array->dtype != x.dtype)
    type_error(op, ": values has dtype ", cuda::dtype_name(v.array->dtype), " but x has dtype ",
               cuda::dtype_name(x.dtype), "; cast one first");
  if (v.array->device != x.device)
    value_error(op, ": values is on cuda:", v.array->device, " but x is on cuda:", x.device);
  Shape b;
  try {
    b = cuda::broadcast_shapes(v.array->shape, space);
  } catch (const std::invalid_argument&) {
    b.clear();
  }
  if (b != space)
    value_error(op, ": values of shape ", cuda::shape_str(v.array->shape), " cannot be broadcast to ",
                cuda::shape_str(space), ", the shape the indices select");
  v.strides = cuda::broadcast_strides(v.array->shape, v.array->strides, space);
  return v;
}

// Runs launch(flag) with a device word preset to "none", copies it back and, for an
// out-of-range index, copies that one index too. Returns the bad index value, if any.
// Call with the GIL released, on `stream` (ordered after the index's producer).
template <typename Launch>
std::optional<int64_t> run_checked(const DeviceArray& idx, const cuda::StridedLoop& loop, int device,
                                   cudaStream_t stream, const char* op, Launch&& launch) {
  if (loop.numel == 0) return std::nullopt;
  DeviceArray flag = cuda::empty({1}, DType::i64, device, stream, op);
  cuda::check(cudaMemsetAsync(flag.data(), 0xFF, sizeof(unsigned long long), stream), op,
              "initialise the index check");
  launch(static_cast<unsigned long long*>(flag.data()));
  unsigned long long bad = kNoBadIndex;
  cuda::to_host(flag, &bad, op);  // waits for the kernel
  if (bad == kNoBadIndex) return std::nullopt;
  DeviceArray one = idx;
  one.offset += cuda::index_offset_at(loop, static_cast<int64_t>(bad));
  one.shape.clear();
  one.strides.clear();
  int64_t value = 0;
  cuda::to_host(one, &value, op);
  return value;
}

[[noreturn]] void index_error(const char* op, int64_t index, int axis, int64_t size) {
  throw py::index_error(cat(op, ": index ", index, " is out of bounds for axis ", axis, " with size ", size));
}

// ---------------------------------------------------------------------------
// Gathers
// ---------------------------------------------------------------------------

DeviceArray run_gather(const DeviceArray& x, const DeviceArray& idx, const cuda::IndexPlan& plan, int axis,
                       const char* op) {
  std::optional<int64_t> bad;
  DeviceArray out;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    out = cuda::empty(plan.out_shape, x.dtype, x.device, x.stream, op);
    cuda::stream_wait(out.stream, idx.stream, op);
    const cuda::StridedLoop loop = cuda::index_loop(plan, out.strides);
    bad = run_checked(idx, loop, x.device, out.stream, op, [&](unsigned long long* flag) {
      const auto* ip = static_cast<const int64_t*>(idx.data());
      // Every dtype, bool included (a bool case once missing returned uninitialised memory).
      dispatch_cuda_any(x.dtype, [&](auto zero) {
        using T = decltype(zero);
        cuda::gather<T>(loop, plan.axis_size, plan.axis_stride, static_cast<T*>(out.data()),
                        static_cast<const T*>(x.data()), ip, flag, out.stream, op);
      });
    });
  }
  if (bad) index_error(op, *bad, axis, plan.axis_size);
  return out;
}

// An index-space loop needs at most kMaxDims dimensions after merging: check it here,
// before device work, so the error is a ValueError naming the op.
void check_loop(const cuda::IndexPlan& plan, const Shape& dense_strides, const char* op) {
  planned(op, [&] { return cuda::index_loop(plan, dense_strides); });
}

DeviceArray take(const py::object& x_obj, const py::object& idx_obj, const py::object& axis_obj) {
  const char* op = "take";
  DeviceArray x = require_device_array(x_obj, op, "x");
  const DeviceArray& idx = require_index(idx_obj, x, op);
  // numpy.take(axis=None) indexes the flattened array: plan for x as (numel,) with unit
  // stride, which holds once a strided x is packed (after the checks).
  const bool flat = axis_obj.is_none();
  const int axis = flat ? 0 : int_axis(axis_obj, x.ndim(), op);
  const Shape x_shape = flat ? Shape{x.numel()} : x.shape, x_strides = flat ? Shape{1} : x.strides;
  const cuda::IndexPlan plan = cuda::plan_take(x_shape, x_strides, idx.shape, idx.strides, axis);
  check_loop(plan, cuda::contiguous_strides(plan.out_shape), op);
  if (flat) {
    if (!x.is_contiguous()) {
      py::gil_scoped_release nogil;
      cuda::DeviceGuard guard(x.device, op);
      x = cuda::contiguous(x, op);
    }
    x.shape = x_shape;
    x.strides = x_strides;
  }
  return run_gather(x, idx, plan, axis, op);
}

DeviceArray take_along_axis(const py::object& x_obj, const py::object& idx_obj, const py::object& axis_obj) {
  const char* op = "take_along_axis";
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  const DeviceArray& idx = require_index(idx_obj, x, op);
  if (axis_obj.is_none())
    type_error(op, ": axis=None (the flattened array) is not supported on CUDA; pass x.reshape(-1) and a 1-d "
               "indices with axis=0");
  const int axis = int_axis(axis_obj, x.ndim(), op);
  const cuda::IndexPlan plan =
      planned(op, [&] { return cuda::plan_along_axis(x.shape, x.strides, idx.shape, idx.strides, axis); });
  check_loop(plan, cuda::contiguous_strides(plan.out_shape), op);
  return run_gather(x, idx, plan, axis, op);
}

// ---------------------------------------------------------------------------
// Scatters (in place into x)
// ---------------------------------------------------------------------------

void run_scatter(const DeviceArray& x, const DeviceArray& idx, const Values& v, const cuda::IndexPlan& plan,
                 int axis, bool accumulate, const char* op) {
  std::optional<int64_t> bad;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    const cudaStream_t s = x.stream;
    cuda::stream_wait(s, idx.stream, op);
    if (v.array) cuda::stream_wait(s, v.array->stream, op);
    const cuda::StridedLoop loop = cuda::index_loop(plan, v.strides);
    bad = run_checked(idx, loop, x.device, s, op, [&](unsigned long long* flag) {
      const auto* ip = static_cast<const int64_t*>(idx.data());
      // Every dtype, bool included (a bool case once missing left a bool x unwritten).
      dispatch_cuda_any(x.dtype, [&](auto zero) {
        using T = decltype(zero);
        cuda::scatter<T>(loop, plan.axis_size, plan.axis_stride, static_cast<T*>(x.data()),
                         v.array ? static_cast<const T*>(v.array->data()) : nullptr,
                         std::is_same_v<T, uint8_t> ? T(v.scalar != 0) : static_cast<T>(v.scalar), ip,
                         accumulate, flag, s, op);
      });
    });
  }
  if (bad) index_error(op, *bad, axis, plan.axis_size);
}

void put_along_axis(const py::object& x_obj, const py::object& idx_obj, const py::object& values_obj,
                    const py::object& axis_obj) {
  const char* op = "put_along_axis";
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  const DeviceArray& idx = require_index(idx_obj, x, op);
  if (axis_obj.is_none())
    type_error(op, ": axis=None (the flattened array) is not supported on CUDA; pass an int axis");
  const int axis = int_axis(axis_obj, x.ndim(), op);
  const cuda::IndexPlan plan =
      planned(op, [&] { return cuda::plan_along_axis(x.shape, x.strides, idx.shape, idx.strides, axis); });
  const Values v = parse_values(values_obj, x, plan.out_shape, op);
  check_loop(plan, v.strides, op);
  run_scatter(x, idx, v, plan, axis, false, op);
}

void add_at(const py::object& x_obj, const py::object& idx_obj, const py::object& values_obj) {
  const char* op = "add_at";
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  const DeviceArray& idx = require_index(idx_obj, x, op);
  if (x.ndim() == 0) value_error(op, ": x is 0-d; add_at indexes axis 0 of x");
  const cuda::IndexPlan plan = cuda::plan_add_at(x.shape, x.strides, idx.shape, idx.strides);
  const Values v = parse_values(values_obj, x, plan.out_shape, op);
  check_loop(plan, v.strides, op);
  run_scatter(x, idx, v, plan, 0, true, op);
}

// ---------------------------------------------------------------------------
// argmax / argmin
// ---------------------------------------------------------------------------

cuda::ReduceLayout arg_layout(const Shape& shape, const Shape& strides, const py::object& axis_obj, bool keepdims,
                              const char* op) {
  const bool all = axis_obj.is_none();
  int axis = -1;
  if (!all) axis = int_axis(axis_obj, static_cast<int>(shape.size()), op);
  const int64_t reduced = all ? cuda::numel(shape) : shape[axis];
  if (reduced == 0) value_error(op, ": attempt to get ", op, " of an empty sequence (shape ", cuda::shape_str(shape), ")");
  return planned(op, [&] { return cuda::make_reduce_layout(shape, strides, all, axis, keepdims); });
}

DeviceArray arg_reduce(cuda::ArgOp f, const char* op, const py::object& x_obj, const py::object& axis_obj,
                       bool keepdims) {
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  // The dtype switch below has no bool kernel: without this a bool x returned an
  // uninitialised int64 array.
  if (x.dtype == DType::b8)
    type_error(op, ": x has dtype bool; CUDA ", op, " supports float32, float64 and int64 (astype first)");
  const cuda::ReduceLayout layout = arg_layout(x.shape, x.strides, axis_obj, keepdims, op);
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(x.device, op);
  DeviceArray out = cuda::empty(layout.out_shape, DType::i64, x.device, x.stream, op);
  auto* o = static_cast<int64_t*>(out.data());
  switch (x.dtype) {
    case DType::f32: cuda::arg_reduce<float>(f, layout, o, static_cast<const float*>(x.data()), out.stream, op); break;
    case DType::f64: cuda::arg_reduce<double>(f, layout, o, static_cast<const double*>(x.data()), out.stream, op); break;
    case DType::i64: cuda::arg_reduce<int64_t>(f, layout, o, static_cast<const int64_t*>(x.data()), out.stream, op); break;
  }
  return out;
}

// (sizes, [strides per operand]) of a loop, for the testing aids.
py::tuple loop_tuple(const cuda::StridedLoop& l) {
  py::list per_operand;
  for (int k = 0; k < l.operands; ++k) per_operand.append(to_tuple(Shape(l.strides[k], l.strides[k] + l.ndim)));
  return py::make_tuple(to_tuple(Shape(l.sizes, l.sizes + l.ndim)), per_operand);
}

// Testing aid: the plan an op would run for operands of these shapes and strides,
// with the op's own argument errors (values_shape None: a gather, or a scalar value).
py::dict index_plan(const std::string& op_name, const py::object& x_shape_obj, const py::object& x_strides_obj,
                    const py::object& idx_shape_obj, const py::object& idx_strides_obj, const py::object& axis_obj,
                    const py::object& values_shape_obj) {
  const char* op = op_name.c_str();
  const Shape xs = to_shape(x_shape_obj, op, "x_shape"), xst = to_shape(x_strides_obj, op, "x_strides");
  const Shape is = to_shape(idx_shape_obj, op, "index_shape"), ist = to_shape(idx_strides_obj, op, "index_strides");
  if (xs.size() != xst.size() || is.size() != ist.size()) value_error(op, ": shape and strides differ in length");
  cuda::IndexPlan plan;
  if (op_name == "take") {
    plan = cuda::plan_take(xs, xst, is, ist, int_axis(axis_obj, static_cast<int>(xs.size()), op));
  } else if (op_name == "take_along_axis" || op_name == "put_along_axis") {
    const int axis = int_axis(axis_obj, static_cast<int>(xs.size()), op);
    plan = planned(op, [&] { return cuda::plan_along_axis(xs, xst, is, ist, axis); });
  } else if (op_name == "add_at") {
    if (xs.empty()) value_error(op, ": x is 0-d; add_at indexes axis 0 of x");
    plan = cuda::plan_add_at(xs, xst, is, ist);
  } else {
    value_error("_index_plan: unknown op '", op_name, "'");
  }
  Shape dense = cuda::contiguous_strides(plan.out_shape);
  if (!values_shape_obj.is_none()) {
    const Shape vs = to_shape(values_shape_obj, op, "values_shape");
    Shape b;
    try {
      b = cuda::broadcast_shapes(vs, plan.out_shape);
    } catch (const std::invalid_argument&) {
      b.clear();
    }
    if (b != plan.out_shape)
      value_error(op, ": values of shape ", cuda::shape_str(vs), " cannot be broadcast to ",
                  cuda::shape_str(plan.out_shape), ", the shape the indices select");
    dense = cuda::broadcast_strides(vs, cuda::contiguous_strides(vs), plan.out_shape);
  }
  const cuda::StridedLoop loop = planned(op, [&] { return cuda::index_loop(plan, dense); });
  py::dict d;
  d["out_shape"] = to_tuple(plan.out_shape);
  d["axis_size"] = plan.axis_size;
  d["axis_stride"] = plan.axis_stride;
  d["loop"] = loop_tuple(loop);
  return d;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_indexing) {
  m.def("take", &take, py::arg("x"), py::arg("indices"), py::arg("axis") = 0,
        "take(x, indices, axis=0): numpy.take with an int64 DeviceArray of indices of any shape; result shape "
        "x.shape[:axis] + indices.shape + x.shape[axis+1:] (axis=None: the flattened x). Negative indices wrap "
        "once; an out-of-range index raises IndexError (after the kernel: one flag is copied back).");
  m.def("take_along_axis", &take_along_axis, py::arg("x"), py::arg("indices"), py::arg("axis"),
        "take_along_axis(x, indices, axis): numpy.take_along_axis with int64 indices of x's ndim.");
  m.def("put_along_axis", &put_along_axis, py::arg("x"), py::arg("indices"), py::arg("values"), py::arg("axis"),
        "put_along_axis(x, indices, values, axis): numpy.put_along_axis, in place into x; values a DeviceArray "
        "broadcastable to the selected shape, or a Python number. With repeated indices one write wins "
        "(unordered). x may be partly written when IndexError is raised.");
  m.def("add_at", &add_at, py::arg("x"), py::arg("indices"), py::arg("values"),
        "add_at(x, indices, values): numpy.add.at(x, indices, values) for int64 indices into axis 0 of x; "
        "values broadcastable to indices.shape + x.shape[1:] (or a number). Repeated indices accumulate "
        "(atomicAdd, so the float summation order is unspecified). In place; returns None.");
  const std::pair<const char*, cuda::ArgOp> args[] = {{"argmax", cuda::ArgOp::argmax}, {"argmin", cuda::ArgOp::argmin}};
  for (const auto& [name, f] : args)
    m.def(name, [name = name, f = f](const py::object& x, const py::object& axis, bool keepdims) {
            return arg_reduce(f, name, x, axis, keepdims);
          }, py::arg("x"), py::arg("axis") = py::none(), py::arg("keepdims") = false,
          cat(name, "(x, axis=None, keepdims=False): int64 index of the first extreme (NaN wins, as NumPy) "
                    "over one axis or the flattened array.").c_str());

  m.def("_index_plan", &index_plan, py::arg("op"), py::arg("x_shape"), py::arg("x_strides"), py::arg("index_shape"),
        py::arg("index_strides"), py::arg("axis") = 0, py::arg("values_shape") = py::none(),
        "Testing aid: {out_shape, axis_size, axis_stride, loop: (sizes, [dense, x, index strides])} of the "
        "gather/scatter loop of op ('take', 'take_along_axis', 'put_along_axis', 'add_at').");
  m.def("_argreduce_plan", [](const py::object& shape, const py::object& strides, const py::object& axis,
                              bool keepdims) {
    const char* op = "argmax";
    const Shape sh = to_shape(shape, op, "shape"), st = to_shape(strides, op, "strides");
    if (sh.size() != st.size()) value_error(op, ": shape and strides differ in length");
    const cuda::ReduceLayout layout = arg_layout(sh, st, axis, keepdims, op);
    py::dict d;
    d["out_shape"] = to_tuple(layout.out_shape);
    d["threads_per_output"] = cuda::arg_reduce_threads_per_output(layout);
    d["reduce_loop"] = loop_tuple(layout.reduce_loop);
    return d;
  }, py::arg("shape"), py::arg("strides"), py::arg("axis") = py::none(), py::arg("keepdims") = false,
  "Testing aid: {out_shape, threads_per_output, reduce_loop} of argmax/argmin on that layout.");
}

}  // namespace dlkern::bind
