#include "bind/gemm_args.h"

namespace dlkern::bind {

GemmCall check_gemm_call(const py::object& a_obj, const py::object& b_obj,
                         const py::object& c_obj, double beta, bool trans_a, bool trans_b,
                         const py::object* out_dtype) {
  const char* op = "gemm";
  GemmCall call;
  call.a = require_array(a_obj, op, "a");
  call.b = require_array(b_obj, op, "b");
  const py::array& a = call.a;
  const py::array& b = call.b;
  if (a.ndim() != 2) value_error(op, ": a must be 2-D, got shape ", shape_str(a));
  if (b.ndim() != 2) value_error(op, ": b must be 2-D, got shape ", shape_str(b));
  auto dtype_of = [&](const py::array& x, const char* arg) {
    return out_dtype ? any_float_dtype(x, op, arg) : float_dtype(x, op, arg);
  };
  call.dtype = dtype_of(a, "a");
  if (dtype_of(b, "b") != call.dtype)
    type_error(op, ": a has dtype ", dtype_str(a), " but b has dtype ", dtype_str(b),
               "; both must be the same float type");

  // op(A) is (m, k), op(B) is (k, n); a transpose swaps the axes.
  const int64_t m = a.shape(trans_a ? 1 : 0), k = a.shape(trans_a ? 0 : 1);
  const int64_t kb = b.shape(trans_b ? 1 : 0), n = b.shape(trans_b ? 0 : 1);
  if (k != kb)
    value_error(op, ": inner dimensions differ: op(a) is (", m, ", ", k, ") from a of shape ",
                shape_str(a), (trans_a ? " transposed" : ""), ", op(b) is (", kb, ", ", n,
                ") from b of shape ", shape_str(b), (trans_b ? " transposed" : ""));
  call.m = m, call.n = n, call.k = k;

  if (c_obj.is_none()) {
    if (beta != 0.0) value_error(op, ": beta=", beta, " needs an input c, but c is None");
    call.c_dtype = out_dtype ? product_dtype(call.dtype, *out_dtype, op) : call.dtype;
    call.c = py::array(numpy_dtype(call.c_dtype), std::vector<py::ssize_t>{m, n});
  } else {
    call.c = require_array(c_obj, op, "c");
    const py::array& c = call.c;
    if (c.ndim() != 2 || c.shape(0) != m || c.shape(1) != n)
      value_error(op, ": c has shape ", shape_str(c), ", expected (", m, ", ", n, ")");
    call.c_dtype = dtype_of(c, "c");
    const bool lowp = call.dtype == DType::bf16 || call.dtype == DType::f16;
    if (call.c_dtype != call.dtype && !(lowp && call.c_dtype == DType::f32))
      type_error(op, ": c has dtype ", dtype_str(c), " but a and b have dtype ", dtype_str(a),
                 lowp ? " (c may be float32 or the inputs' dtype)" : "");
    if (out_dtype && !out_dtype->is_none() && product_dtype(call.dtype, *out_dtype, op) != call.c_dtype)
      type_error(op, ": out_dtype is ", dtype_name(product_dtype(call.dtype, *out_dtype, op)), " but c has dtype ",
                 dtype_str(c));
    require_writeable(c, op, "c");
    if (may_overlap(c, a) || may_overlap(c, b))
      value_error(op, ": c shares memory with an input; pass a separate output array");
  }
  return call;
}

DType product_dtype(DType in, const py::object& out_dtype, const char* op) {
  if (out_dtype.is_none()) return in;
  const DType want = dtype_arg(out_dtype, op, "out_dtype");
  const bool lowp = in == DType::bf16 || in == DType::f16;
  if (want != in && !(lowp && want == DType::f32))
    type_error(op, ": out_dtype ", dtype_name(want), " is not available for ", dtype_name(in), " inputs (",
               lowp ? "float32 or the inputs' dtype" : "only the inputs' dtype", ")");
  return want;
}

}  // namespace dlkern::bind
