// Bindings for matrix products: dlkern._C.gemm (BLAS-style) and dlkern._C.matmul
// (numpy.matmul semantics). Views, transposes and broadcast batch dimensions are passed
// to the kernel as strides, so the inputs are never copied.
#include <algorithm>
#include <optional>
#include <vector>

#include "bind/common.h"
#include "bind/gemm_args.h"
#include "common/batch_axes.h"
#include "cpu/gemm.h"

namespace dlkern::bind {
namespace {

struct MatrixOperand {
  const void* data;
  int64_t rs, cs;  // element strides of op(X)
};

template <typename T>
cpu::GemmArgs<T> make_args(int64_t m, int64_t n, int64_t k, double alpha, const MatrixOperand& a,
                           const MatrixOperand& b, double beta, void* c, int64_t ldc) {
  cpu::GemmArgs<T> g;
  g.m = m, g.n = n, g.k = k;
  g.alpha = static_cast<T>(alpha), g.beta = static_cast<T>(beta);
  g.a = static_cast<const T*>(a.data), g.a_rs = a.rs, g.a_cs = a.cs;
  g.b = static_cast<const T*>(b.data), g.b_rs = b.rs, g.b_cs = b.cs;
  g.c = static_cast<T*>(c), g.ldc = ldc;
  return g;
}

py::array gemm(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj,
               const py::object& alpha_obj, const py::object& beta_obj, bool trans_a, bool trans_b) {
  const char* op = "gemm";
  const double alpha = double_arg(alpha_obj, op, "alpha"), beta = double_arg(beta_obj, op, "beta");
  GemmCall call = check_gemm_call(a_obj, b_obj, c_obj, beta, trans_a, trans_b);
  const py::array &a = call.a, &b = call.b;
  py::array &c = call.c;
  const int64_t m = call.m, n = call.n, k = call.k;
  // An empty c has nothing to write and no layout: NumPy 2 gives every empty array zero
  // strides, which the layout checks below would refuse.
  if (m == 0 || n == 0) return c;
  const int64_t as0 = elem_stride(a, 0, op, "a"), as1 = elem_stride(a, 1, op, "a");
  const int64_t bs0 = elem_stride(b, 0, op, "b"), bs1 = elem_stride(b, 1, op, "b");
  const MatrixOperand A{a.data(), trans_a ? as1 : as0, trans_a ? as0 : as1};
  const MatrixOperand B{b.data(), trans_b ? bs1 : bs0, trans_b ? bs0 : bs1};
  if (n > 1 && elem_stride(c, 1, op, "c") != 1)
    value_error(op, ": c must have unit stride along its last axis (got ", c.strides(1),
                " bytes); pass a row-major c");
  const int64_t ldc = elem_stride(c, 0, op, "c");
  // Rows overlap when |ldc| < n (a single column too: ldc == 0 writes every row to one
  // element, from several threads).
  if (m > 1 && n > 0 && (ldc < n && -ldc < n))
    value_error(op, ": the rows of c overlap (row stride ", c.strides(0), " bytes for ", n,
                " columns of ", c.itemsize(), " bytes)");
  void* c_data = c.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(call.dtype, [&](auto zero) {
      using T = decltype(zero);
      cpu::gemm(make_args<T>(m, n, k, alpha, A, B, beta, c_data, ldc));
    });
  }
  return c;
}

py::array matmul(const py::object& a_obj, const py::object& b_obj, const py::object& out_obj) {
  const char* op = "matmul";
  py::array a = require_array(a_obj, op, "a");
  py::array b = require_array(b_obj, op, "b");
  if (a.ndim() == 0) value_error(op, ": a is 0-d; matmul needs at least 1 dimension (use * for scalars)");
  if (b.ndim() == 0) value_error(op, ": b is 0-d; matmul needs at least 1 dimension (use * for scalars)");
  const DType dt = float_dtype(a, op, "a");
  if (float_dtype(b, op, "b") != dt)
    type_error(op, ": a has dtype ", dtype_str(a), " but b has dtype ", dtype_str(b),
               "; both must be the same float type");

  // 1-D operands are promoted: a (k,) -> (1, k), b (k,) -> (k, 1); the added axis is
  // dropped from the result. Strides of a promoted axis are irrelevant (size 1).
  const int an = static_cast<int>(a.ndim()), bn = static_cast<int>(b.ndim());
  const bool a_vec = an == 1, b_vec = bn == 1;
  const int64_t m = a_vec ? 1 : a.shape(an - 2), k = a.shape(an - 1);
  const int64_t kb = b_vec ? b.shape(0) : b.shape(bn - 2), n = b_vec ? 1 : b.shape(bn - 1);
  if (k != kb)
    value_error(op, ": inner dimensions differ: a has shape ", shape_str(a), " (k=", k,
                ") and b has shape ", shape_str(b), " (k=", kb, ")");
  const MatrixOperand A{a.data(), a_vec ? 0 : elem_stride(a, an - 2, op, "a"), elem_stride(a, an - 1, op, "a")};
  const MatrixOperand B{b.data(), elem_stride(b, b_vec ? 0 : bn - 2, op, "b"),
                        b_vec ? 0 : elem_stride(b, bn - 1, op, "b")};

  // Broadcast the batch axes, right-aligned as numpy does.
  const int a_batch = std::max(0, an - 2), b_batch = std::max(0, bn - 2);
  const int nbatch = std::max(a_batch, b_batch);
  std::vector<py::ssize_t> out_shape;
  std::vector<BatchAxis> axes(nbatch);
  for (int d = 0; d < nbatch; ++d) {
    const int ia = d - (nbatch - a_batch), ib = d - (nbatch - b_batch);
    const int64_t sa = ia >= 0 ? a.shape(ia) : 1, sb = ib >= 0 ? b.shape(ib) : 1;
    if (sa != sb && sa != 1 && sb != 1)
      value_error(op, ": batch dimensions do not broadcast: a has shape ", shape_str(a),
                  ", b has shape ", shape_str(b));
    axes[d].size = sa == 1 ? sb : sa;  // a 0-size axis broadcast against 1 stays 0
    axes[d].sa = (ia >= 0 && sa != 1) ? elem_stride(a, ia, op, "a") : 0;
    axes[d].sb = (ib >= 0 && sb != 1) ? elem_stride(b, ib, op, "b") : 0;
    out_shape.push_back(axes[d].size);
  }
  if (!a_vec) out_shape.push_back(m);
  if (!b_vec) out_shape.push_back(n);

  py::array out;
  bool write_back = false;  // compute into a fresh array, then copy into `out`
  py::array result;
  if (out_obj.is_none()) {
    result = py::array(a.dtype(), out_shape);
  } else {
    out = require_array(out_obj, op, "out");
    const std::vector<py::ssize_t> got(out.shape(), out.shape() + out.ndim());
    if (got != out_shape) {
      std::string want = "(";
      for (size_t i = 0; i < out_shape.size(); ++i) want += (i ? ", " : "") + std::to_string(out_shape[i]);
      want += out_shape.size() == 1 ? ",)" : ")";
      value_error(op, ": out has shape ", shape_str(out), ", expected ", want);
    }
    if (float_dtype(out, op, "out") != dt)
      type_error(op, ": out has dtype ", dtype_str(out), " but the inputs have dtype ", dtype_str(a));
    require_writeable(out, op, "out");
    const int on = static_cast<int>(out.ndim());
    const bool unit_last = b_vec || n <= 1 || out.strides(on - 1) == out.itemsize();
    // Like numpy: an out that aliases an input or itself (zero / interleaved strides),
    // or that the kernel cannot address (non-unit last stride), gets an explicit
    // temporary and a copy back.
    const int row_axis = on - (b_vec ? 1 : 2);
    const bool rows_ok = a_vec || m <= 1 || out.strides(row_axis) >= n * out.itemsize();
    write_back = !unit_last || !rows_ok || may_overlap(out, a) || may_overlap(out, b) || may_self_overlap(out);
    for (int d = 0; d < on && !write_back; ++d) write_back = out.strides(d) % out.itemsize() != 0;
    result = write_back ? py::array(a.dtype(), out_shape) : out;
  }

  const int rn = static_cast<int>(result.ndim());
  const int64_t ldc = a_vec ? 0 : elem_stride(result, rn - (b_vec ? 1 : 2), op, "out");
  for (int d = 0; d < nbatch; ++d) axes[d].sc = elem_stride(result, d, op, "out");
  const std::vector<BatchAxis> merged = merge_batch_axes(axes);
  void* c_data = result.mutable_data();
  const bool empty = result.size() == 0;

  if (!empty) {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      const cpu::GemmArgs<T> base = make_args<T>(m, n, k, 1.0, A, B, 0.0, c_data, ldc);
      if (merged.empty()) {
        cpu::gemm(base);
        return;
      }
      // Outer axes by an odometer; the innermost merged axis is one strided batch.
      const BatchAxis& inner = merged.back();
      const size_t outer_n = merged.size() - 1;
      std::vector<int64_t> idx(outer_n, 0);
      for (;;) {
        cpu::GemmArgs<T> g = base;
        for (size_t d = 0; d < outer_n; ++d) {
          g.a += idx[d] * merged[d].sa;
          g.b += idx[d] * merged[d].sb;
          g.c += idx[d] * merged[d].sc;
        }
        cpu::gemm_strided_batched(g, inner.size, inner.sa, inner.sb, inner.sc);
        size_t d = outer_n;
        while (d > 0 && ++idx[d - 1] == merged[d - 1].size) idx[--d] = 0;
        if (d == 0) break;
      }
    });
  }
  if (write_back) {
    out[py::ellipsis()] = result;
    return out;
  }
  return result;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(gemm) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c") = py::none(),
        py::arg("alpha") = py::float_(1.0), py::arg("beta") = py::float_(0.0), py::arg("trans_a") = false,
        py::arg("trans_b") = false,
        R"doc(gemm(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False)

BLAS-style product C = alpha * op(a) @ op(b) + beta * c on 2-D float32/float64 arrays,
where op(x) is x.T when the matching trans flag is set. Transposes and strided views
are read in place. With c=None a new array is returned (beta must then be 0); else c
(shape (m, n), same dtype, writeable, unit stride along its last axis, not sharing
memory with a or b) is updated in place and returned. beta=0 ignores c's contents.)doc");
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        R"doc(matmul(a, b, out=None)

Matrix product with numpy.matmul semantics on float32/float64 arrays: 1-D operands are
promoted and the added axis removed, batch dimensions broadcast, transposed and strided
views are read in place without copies. `out`, if given, must have exactly the result
shape and dtype and be writeable.)doc");
}

}  // namespace dlkern::bind
