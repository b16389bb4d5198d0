// dlkern._C_cuda comparisons (bool results), logical ops on bool arrays, and where.
// Same operand rules, broadcasting and out= as the arithmetic ops (cuda_elementwise.h).
#include <cmath>
#include <limits>

#include "bind/cuda_elementwise.h"
#include "cuda/elementwise.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

// x <f> s for int64 x and a double s, exactly (no rounding of x to double), as the
// int64 comparison x <result.f> result.k. A NaN or out-of-range s gives a comparison
// that is constant over all int64 x (against INT64_MIN).
struct IntCompare {
  cuda::CompareOp f;
  int64_t k;
};

IntCompare int_compare(cuda::CompareOp f, double s) {
  using Op = cuda::CompareOp;
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  const IntCompare always{Op::greater_equal, kMin}, never{Op::less, kMin};
  constexpr double kTwo63 = 9223372036854775808.0;
  if (std::isnan(s)) return f == Op::not_equal ? always : never;
  if (s >= kTwo63 || s < -kTwo63) {  // above or below every int64
    const bool above = s > 0;
    switch (f) {
      case Op::greater: case Op::greater_equal: return above ? never : always;
      case Op::less: case Op::less_equal: return above ? always : never;
      case Op::equal: return never;
      case Op::not_equal: return always;
    }
  }
  // Here floor(s) and ceil(s) are int64 values (doubles this large are integers).
  const int64_t lo = static_cast<int64_t>(std::floor(s)), hi = static_cast<int64_t>(std::ceil(s));
  const bool whole = lo == hi;
  switch (f) {
    case Op::greater: return {Op::greater, lo};
    case Op::greater_equal: return {Op::greater_equal, hi};
    case Op::less: return {Op::less, hi};
    case Op::less_equal: return {Op::less_equal, lo};
    case Op::equal: return whole ? IntCompare{Op::equal, lo} : never;
    case Op::not_equal: return whole ? IntCompare{Op::not_equal, lo} : always;
  }
  return never;
}

// s <f> x is x <mirror(f)> s.
cuda::CompareOp mirror(cuda::CompareOp f) {
  using Op = cuda::CompareOp;
  switch (f) {
    case Op::greater: return Op::less;
    case Op::greater_equal: return Op::less_equal;
    case Op::less: return Op::greater;
    case Op::less_equal: return Op::greater_equal;
    default: return f;
  }
}

// a <op> b -> bool. Arrays of one dtype (float32, float64, int64 or bool); numbers as
// common_dtype allows, except that an int64 array also compares exactly with a Python
// float (rewritten by int_compare into an int64 comparison).
py::object compare_op(cuda::CompareOp f, const char* op, const py::object& a_obj, const py::object& b_obj,
                      const py::object& out_obj) {
  std::vector<Operand> in{parse_operand(a_obj, op, "a"), parse_operand(b_obj, op, "b")};
  for (int side = 0; side < 2; ++side) {
    const Operand &arr = in[1 - side], &num = in[side];
    if (arr.array && arr.array->dtype == DType::i64 && num.kind == Operand::Kind::real) {
      const IntCompare c = int_compare(side == 1 ? f : mirror(f), num.real);
      Operand k = num;
      k.kind = Operand::Kind::integer;
      k.integer = c.k;
      k.fits_int64 = true;
      f = c.f;
      in = {arr, k};  // array on the left from here on
      break;
    }
  }
  const DType dt = common_dtype(op, in);
  const cuda::Shape shape = broadcast_operands(op, in);
  return elementwise(op, in, shape, DType::b8, first_array(in).device, out_obj, [&](auto& r, const auto& loop) {
    dispatch_cuda_any(dt, [&](auto zero) {
      using T = decltype(zero);
      cuda::compare<T>(f, loop, static_cast<uint8_t*>(r.data()), data_as<T>(in[0]), scalar_as<T>(in[0]),
                       data_as<T>(in[1]), scalar_as<T>(in[1]), r.stream, op);
    });
  });
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
  return elementwise(op, in, shape, DType::b8, first_array(in).device, out_obj, [&](auto& r, const auto& loop) {
    const bool two = in.size() == 2;
    cuda::logical(f, loop, static_cast<uint8_t*>(r.data()), data_as<uint8_t>(in[0]), scalar_as<uint8_t>(in[0]),
                  two ? data_as<uint8_t>(in[1]) : nullptr, two ? scalar_as<uint8_t>(in[1]) : 0, r.stream, op);
  });
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
  return elementwise(op, in, shape, dt, in[0].array->device, out_obj, [&](auto& r, const auto& loop) {
    dispatch_cuda_any(dt, [&](auto zero) {
      using T = decltype(zero);
      cuda::where<T>(loop, static_cast<T*>(r.data()), data_as<uint8_t>(in[0]), data_as<T>(in[1]),
                     scalar_as<T>(in[1]), data_as<T>(in[2]), scalar_as<T>(in[2]), r.stream, op);
    });
  });
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
                    "number (True/False for bool arrays; an int64 array compares exactly with ints and floats).").c_str());

  m.def("_int_compare", [](const std::string& name, double s, bool scalar_on_left) {
          const char* names[] = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"};
          int i = 0;
          while (i < 6 && name != names[i]) ++i;
          if (i == 6) value_error("_int_compare: unknown comparison ", name);
          const auto f = static_cast<cuda::CompareOp>(i);
          const IntCompare c = int_compare(scalar_on_left ? mirror(f) : f, s);
          return py::make_tuple(names[static_cast<int>(c.f)], c.k);
        }, py::arg("name"), py::arg("s"), py::arg("scalar_on_left"),
        "Testing aid: (comparison, int) that an int64 array compared with the float s becomes "
        "(the array on the left).");

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
