#include "bind/gemm_args.h"

namespace dlkern::bind {

GemmCall check_gemm_call(const py::object& a_obj, const py::object& b_obj,
                         const py::object& c_obj, double beta, bool trans_a, bool trans_b) {
  const char* op = "gemm";
  GemmCall call;
  call.a = require_array(a_obj, op, "a");
  call.b = require_array(b_obj, op, "b");
  const py::array& a = call.a;
  const py::array& b = call.b;
  if (a.ndim() != 2) value_error(op, ": a must be 2-D, got shape ", shape_str(a));
  if (b.ndim() != 2) value_error(op, ": b must be 2-D, got shape ", shape_str(b));
  call.dtype = float_dtype(a, op, "a");
  if (float_dtype(b, op, "b") != call.dtype)
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
    call.c = py::array(a.dtype(), std::vector<py::ssize_t>{m, n});
  } else {
    call.c = require_array(c_obj, op, "c");
    const py::array& c = call.c;
    if (c.ndim() != 2 || c.shape(0) != m || c.shape(1) != n)
      value_error(op, ": c has shape ", shape_str(c), ", expected (", m, ", ", n, ")");
    if (float_dtype(c, op, "c") != call.dtype)
      type_error(op, ": c has dtype ", dtype_str(c), " but a and b have dtype ", dtype_str(a));
    require_writeable(c, op, "c");
    if (may_overlap(c, a) || may_overlap(c, b))
      value_error(op, ": c shares memory with an input; pass a separate output array");
  }
  return call;
}

}  // namespace dlkern::bind
