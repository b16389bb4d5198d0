// Binding of the float format conversion: dlkern._C.convert(x, dtype, out=None) between
// float32, float64, bfloat16 and float16 (cpu/f16.h's convert: RNE narrowing, exact
// widening, each bit for bit as NumPy's / ml_dtypes' astype).
#include <vector>

#include "bind/common.h"
#include "bind/gemm_args.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

py::array convert(const py::object& x_obj, const py::object& dtype_obj, const py::object& out_obj) {
  const char* op = "convert";
  py::array x = require_array(x_obj, op, "x");
  const DType from_dt = any_float_dtype(x, op, "x");
  const cpu::FloatFormat from = format_of(from_dt);
  const DType to_dt = dtype_arg(dtype_obj, op, "dtype");
  const cpu::FloatFormat to = format_of(to_dt);
  const std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  // Any layout in, C order out: a non-contiguous x is read through a C-ordered copy.
  const py::array xc = py::array::ensure(x, py::array::c_style);
  py::array out, result;
  bool write_back = false;
  if (out_obj.is_none()) {
    result = py::array(numpy_dtype(to_dt), shape);
  } else {
    out = require_array(out_obj, op, "out");
    if (std::vector<py::ssize_t>(out.shape(), out.shape() + out.ndim()) != shape)
      value_error(op, ": out has shape ", shape_str(out), " but x has shape ", shape_str(x));
    if (any_float_dtype(out, op, "out") != to_dt)
      type_error(op, ": out has dtype ", dtype_str(out), " but dtype is ", dtype_name(to_dt));
    require_writeable(out, op, "out");
    write_back = !(out.flags() & py::array::c_style) || may_overlap(out, xc);
    result = write_back ? py::array(numpy_dtype(to_dt), shape) : out;
  }
  const int64_t n = x.size();
  if (n > 0) {
    const void* src = xc.data();
    void* dst = result.mutable_data();
    py::gil_scoped_release nogil;
    cpu::convert(src, from, dst, to, n);
  }
  if (write_back) {
    out[py::ellipsis()] = result;
    return out;
  }
  return result;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(convert) {
  m.def("convert", &convert, py::arg("x"), py::arg("dtype"), py::arg("out") = py::none(),
        R"doc(convert(x, dtype, out=None)

x (float32, float64, bfloat16 or float16; any shape and strides) as a C-contiguous
array of dtype (one of the same four; bfloat16 = ml_dtypes.bfloat16), bit for bit as
x.astype(dtype): round to nearest even (once, float64 included), subnormals rounded,
overflow to Inf, bfloat16 NaNs canonical (sign kept), float16 NaN payloads kept;
bfloat16 <-> float16 through float32 (exact, then one rounding). float32 <-> 16 bits is
vectorised (F16C where the CPU has it), float64 scalar. `out`, if given, must have x's
shape and dtype `dtype` and be writeable.)doc");
}

}  // namespace dlkern::bind
