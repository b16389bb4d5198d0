// dlkern._C_cuda comparisons (bool results), logical ops on bool arrays, and where.
// Same operand rules, broadcasting and out= as the arithmetic ops (cuda_elementwise.h).
#include "bind/cuda_elementwise.h"
#include "cuda/elementwise.h"

namespace dlkern::bind {
namespace {

using cuda::DeviceArray;
using cuda::DType;

// a <op> b -> bool. Arrays of one dtype (float32, float64, int64 or bool); numbers as
// common_dtype allows (so an int64 array compares with ints, not floats).
py::object compare_op(cuda::CompareOp f, const char* op, const py::object& a_obj, const py::object& b_obj,
                      const py::object& out_obj) {
  const std::vector<Operand> in{parse_operand(a_obj, op, "a"), parse_operand(b_obj, op, "b")};
  const DType dt = common_dtype(op, in);
  const cuda::Shape shape = broadcast_operands(op, in);
  DeviceArray* out = parse_out(out_obj, op, shape, DType::b8, first_array(in).device);
  DeviceArray result;
  {
    py::gil_scoped_release nogil;
    result = run_elementwise(op, in, shape, DType::b8, out, [&](DeviceArray& r, const cuda::StridedLoop& loop) {
      dispatch_cuda_any(dt, [&](auto zero) {
        using T = decltype(zero);
        cuda::compare<T>(f, loop, static_cast<uint8_t*>(r.data()), data_as<T>(in[0]), scalar_as<T>(in[0]),
                         data_as<T>(in[1]), scalar_as<T>(in[1]), r.stream, op);
      });
    });
  }
  return result_object(std::move(result), out_obj);
}

void require_bool(const std::vector<Operand>& in, const char* op) {
  for (const Operand& o : in)
    if (o.array && o.array->dtype != DType::b8)
      type_error(op, ": ", o.arg, " has dtype ", cuda::dtype_name(o.array->dtype),
                 "; CUDA ", op, " takes bool arrays (compare first, or dlkern._C_cuda.astype(x, bool))");
}

py::object logical_op(cuda::LogicalOp f, const char* op, std::vector<Operand> in, const py::object& out_obj) {
  require_bool(in, op);
  common_dtype(op, in);
  const cuda::Shape shape = broadcast_operands(op, in);
  DeviceArray* out = parse_out(out_obj, op, shape, DType::b8, first_array(in).device);
  DeviceArray result;
  {
    py::gil_scoped_release nogil;
    result = run_elementwise(op, in, shape, DType::b8, out, [&](DeviceArray& r, const cuda::StridedLoop& loop) {
      const bool two = in.size() == 2;
      cuda::logical(f, loop, static_cast<uint8_t*>(r.data()), data_as<uint8_t>(in[0]), scalar_as<uint8_t>(in[0]),
                    two ? data_as<uint8_t>(in[1]) : nullptr, two ? scalar_as<uint8_t>(in[1]) : 0, r.stream, op);
    });
  }
  return result_object(std::move(result), out_obj);
}

// where(cond, a, b): cond a bool array; a and b arrays of one dtype or numbers (at least
// one array); the result broadcasts all three and has the arrays' dtype.
py::object where_op(const py::object& cond_obj, const py::object& a_obj, const py::object& b_obj,
                    const py::object& out_obj) {
  const char* op = "where";
  const std::vector<Operand> in{parse_operand(cond_obj, op, "cond"), parse_operand(a_obj, op, "a"),
                                parse_operand(b_obj, op, "b")};
  if (!in[0].array || in[0].array->dtype != DType::b8)
    type_error(op, ": cond must be a bool DeviceArray, got ",
               in[0].array ? cat("dtype ", cuda::dtype_name(in[0].array->dtype)) : std::string("a Python number"),
               " (compare first, e.g. dlkern._C_cuda.greater(x, 0))");
  const DType dt = common_dtype(op, {in[1], in[2]});
  const cuda::Shape shape = broadcast_operands(op, in);
  DeviceArray* out = parse_out(out_obj, op, shape, dt, in[0].array->device);
  DeviceArray result;
  {
    py::gil_scoped_release nogil;
    result = run_elementwise(op, in, shape, dt, out, [&](DeviceArray& r, const cuda::StridedLoop& loop) {
      dispatch_cuda_any(dt, [&](auto zero) {
        using T = decltype(zero);
        cuda::where<T>(loop, static_cast<T*>(r.data()), data_as<uint8_t>(in[0]), data_as<T>(in[1]),
                       scalar_as<T>(in[1]), data_as<T>(in[2]), scalar_as<T>(in[2]), r.stream, op);
      });
    });
  }
  return result_object(std::move(result), out_obj);
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_logic) {
  const std::pair<const char*, cuda::CompareOp> comparisons[] = {
      {"greater", cuda::CompareOp::greater}, {"greater_equal", cuda::CompareOp::greater_equal},
      {"less", cuda::CompareOp::less},       {"less_equal", cuda::CompareOp::less_equal},
      {"equal", cuda::CompareOp::equal},     {"not_equal", cuda::CompareOp::not_equal},
  };
  for (const auto& [name, f] : comparisons)
    m.def(name, [name = name, f = f](const py::object& a, const py::object& b, const py::object& out) {
            return compare_op(f, name, a, b, out);
          }, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
          cat(name, "(a, b, out=None): elementwise comparison with NumPy broadcasting -> a bool array. "
                    "Arrays of one dtype (float32, float64, int64 or bool); either side may be a Python "
                    "number (an int for int64 arrays, True/False for bool arrays).").c_str());

  m.def("logical_not", [](const py::object& x, const py::object& out) {
          return logical_op(cuda::LogicalOp::logical_not, "logical_not", {parse_operand(x, "logical_not", "x")}, out);
        }, py::arg("x"), py::arg("out") = py::none(), "logical_not(x, out=None) on a bool DeviceArray.");
  const std::pair<const char*, cuda::LogicalOp> logical[] = {
      {"logical_and", cuda::LogicalOp::logical_and}, {"logical_or", cuda::LogicalOp::logical_or}};
  for (const auto& [name, f] : logical)
    m.def(name, [name = name, f = f](const py::object& a, const py::object& b, const py::object& out) {
            return logical_op(f, name, {parse_operand(a, name, "a"), parse_operand(b, name, "b")}, out);
          }, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
          cat(name, "(a, b, out=None) on bool DeviceArrays (or True/False), with NumPy broadcasting.").c_str());

  m.def("where", &where_op, py::arg("cond"), py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        "where(cond, a, b, out=None): a where the bool array cond is true, else b. a and b are "
        "DeviceArrays of one dtype or Python numbers (at least one array); everything broadcasts.");
}

}  // namespace dlkern::bind
