// Bindings for matrix products: dlkern._C.gemm (BLAS-style) and dlkern._C.matmul
// (numpy.matmul semantics). Views, transposes and broadcast batch dimensions are passed
// to the kernel as strides, so the inputs are never copied.
#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "bind/common.h"
#include "bind/gemm_args.h"
#include "common/batch_axes.h"
#include "cpu/f16.h"
#include "cpu/gemm.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

struct MatrixOperand {
  const void* data;
  int64_t rs, cs;  // element strides of op(X)
};

template <typename T, typename In = T>
cpu::GemmArgs<T, In> make_args(int64_t m, int64_t n, int64_t k, double alpha, const MatrixOperand& a,
                               const MatrixOperand& b, double beta, void* c, int64_t ldc) {
  cpu::GemmArgs<T, In> g;
  g.m = m, g.n = n, g.k = k;
  g.alpha = static_cast<T>(alpha), g.beta = static_cast<T>(beta);
  g.a = static_cast<const In*>(a.data), g.a_rs = a.rs, g.a_cs = a.cs;
  g.b = static_cast<const In*>(b.data), g.b_rs = b.rs, g.b_cs = b.cs;
  g.c = static_cast<T*>(c), g.ldc = ldc;
  return g;
}

bool is_lowp(DType dt) { return dt == DType::bf16 || dt == DType::f16; }

// One product of 16-bit operands into a float32 C: the bf16 GEMM's best path, or the
// float16 one (both accumulate in float32; gemm_bf16_model says in which order).
void lowp_product(DType in, const cpu::GemmBf16Args& g) {
  if (in == DType::bf16)
    cpu::gemm_bf16(g);
  else
    cpu::gemm_f16(g);
}

// Rows [0, m) of n elements: dst rows at ld_dst (elements) in format `to`, src rows at
// ld_src in `from`. One conversion when both are contiguous, else row by row.
void convert_rows(const void* src, cpu::FloatFormat from, int64_t ld_src, void* dst, cpu::FloatFormat to,
                  int64_t ld_dst, int64_t m, int64_t n) {
  // Only float32 and the 16-bit formats reach here (the accumulator and c).
  const int64_t si = from == cpu::FloatFormat::f32 ? 4 : 2, di = to == cpu::FloatFormat::f32 ? 4 : 2;
  if (ld_src == n && ld_dst == n) {
    cpu::convert(src, from, dst, to, m * n);
    return;
  }
  for (int64_t i = 0; i < m; ++i)
    cpu::convert(static_cast<const char*>(src) + i * ld_src * si, from, static_cast<char*>(dst) + i * ld_dst * di,
                 to, n);
}

// gemm's 16-bit path: c is float32 (the accumulator itself) or the inputs' dtype, in
// which case the product runs on a float32 copy (c widened when beta needs it, so beta
// applies in float32) rounded once into c at the end.
void lowp_gemm(const GemmCall& call, double alpha, double beta, const MatrixOperand& A, const MatrixOperand& B,
               void* c_data, int64_t ldc) {
  const int64_t m = call.m, n = call.n;
  std::unique_ptr<float[]> scratch;  // (new float[]: no zero fill; beta == 0 makes C write-only)
  float* c32 = static_cast<float*>(c_data);
  int64_t ld32 = ldc;
  const bool narrow = call.c_dtype != DType::f32;
  if (narrow) {
    scratch.reset(new float[static_cast<size_t>(m * n)]);
    c32 = scratch.get(), ld32 = n;
    if (beta != 0.0) convert_rows(c_data, format_of(call.c_dtype), ldc, c32, cpu::FloatFormat::f32, n, m, n);
  }
  lowp_product(call.dtype, make_args<float, uint16_t>(m, n, call.k, alpha, A, B, beta, c32, ld32));
  if (narrow) convert_rows(c32, cpu::FloatFormat::f32, n, c_data, format_of(call.c_dtype), ldc, m, n);
}

// The batch loop of matmul: outer merged axes by an odometer, the innermost one handed
// to one_batch(g, count, sa, sb, sc) as a strided batch; no axes: one_batch(base, 1, 0, 0, 0).
template <class Args, class F>
void for_each_batch(const std::vector<BatchAxis>& merged, const Args& base, F&& one_batch) {
  if (merged.empty()) {
    one_batch(base, 1, 0, 0, 0);
    return;
  }
  const BatchAxis& inner = merged.back();
  const size_t outer_n = merged.size() - 1;
  std::vector<int64_t> idx(outer_n, 0);
  for (;;) {
    Args g = base;
    for (size_t d = 0; d < outer_n; ++d) {
      g.a += idx[d] * merged[d].sa;
      g.b += idx[d] * merged[d].sb;
      g.c += idx[d] * merged[d].sc;
    }
    one_batch(g, inner.size, inner.sa, inner.sb, inner.sc);
    size_t d = outer_n;
    while (d > 0 && ++idx[d - 1] == merged[d - 1].size) idx[--d] = 0;
    if (d == 0) break;
  }
}

py::array gemm(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj,
               const py::object& alpha_obj, const py::object& beta_obj, bool trans_a, bool trans_b,
               const py::object& out_dtype) {
  const char* op = "gemm";
  const double alpha = double_arg(alpha_obj, op, "alpha"), beta = double_arg(beta_obj, op, "beta");
  GemmCall call = check_gemm_call(a_obj, b_obj, c_obj, beta, trans_a, trans_b, &out_dtype);
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
    if (is_lowp(call.dtype)) {
      lowp_gemm(call, alpha, beta, A, B, c_data, ldc);
    } else {
      dispatch_float(call.dtype, [&](auto zero) {
        using T = decltype(zero);
        cpu::gemm(make_args<T>(m, n, k, alpha, A, B, beta, c_data, ldc));
      });
    }
  }
  return c;
}

py::array matmul(const py::object& a_obj, const py::object& b_obj, const py::object& out_obj,
                 const py::object& out_dtype) {
  const char* op = "matmul";
  py::array a = require_array(a_obj, op, "a");
  py::array b = require_array(b_obj, op, "b");
  if (a.ndim() == 0) value_error(op, ": a is 0-d; matmul needs at least 1 dimension (use * for scalars)");
  if (b.ndim() == 0) value_error(op, ": b is 0-d; matmul needs at least 1 dimension (use * for scalars)");
  const DType dt = any_float_dtype(a, op, "a");
  if (any_float_dtype(b, op, "b") != dt)
    type_error(op, ": a has dtype ", dtype_str(a), " but b has dtype ", dtype_str(b),
               "; both must be the same float type");
  const DType odt = product_dtype(dt, out_dtype, op);
  const py::dtype out_np = numpy_dtype(odt);

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
    result = py::array(out_np, out_shape);
  } else {
    out = require_array(out_obj, op, "out");
    const std::vector<py::ssize_t> got(out.shape(), out.shape() + out.ndim());
    if (got != out_shape) {
      std::string want = "(";
      for (size_t i = 0; i < out_shape.size(); ++i) want += (i ? ", " : "") + std::to_string(out_shape[i]);
      want += out_shape.size() == 1 ? ",)" : ")";
      value_error(op, ": out has shape ", shape_str(out), ", expected ", want);
    }
    if (any_float_dtype(out, op, "out") != odt) {
      if (odt == dt) type_error(op, ": out has dtype ", dtype_str(out), " but the inputs have dtype ", dtype_str(a));
      type_error(op, ": out has dtype ", dtype_str(out), " but out_dtype is ", dtype_name(odt));
    }
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
    result = write_back ? py::array(out_np, out_shape) : out;
  }

  // A 16-bit result is accumulated in a float32 array and rounded once into result.
  const bool narrow = is_lowp(odt);
  const py::array acc = narrow ? py::array(py::dtype::of<float>(), out_shape) : result;
  if (narrow && !(result.flags() & py::array::c_style)) {  // the rounding pass writes contiguous rows
    result = py::array(out_np, out_shape);
    write_back = true;
  }
  const int rn = static_cast<int>(acc.ndim());
  const int64_t ldc = a_vec ? 0 : elem_stride(acc, rn - (b_vec ? 1 : 2), op, "out");
  for (int d = 0; d < nbatch; ++d) axes[d].sc = elem_stride(acc, d, op, "out");
  const std::vector<BatchAxis> merged = merge_batch_axes(axes);
  void* c_data = py::array(acc).mutable_data();
  const bool empty = result.size() == 0;
  void* r_data = result.mutable_data();

  if (!empty) {
    py::gil_scoped_release nogil;
    if (is_lowp(dt)) {
      const cpu::GemmBf16Args base = make_args<float, uint16_t>(m, n, k, 1.0, A, B, 0.0, c_data, ldc);
      for_each_batch(merged, base, [&](const cpu::GemmBf16Args& g, int64_t count, int64_t sa, int64_t sb,
                                       int64_t sc) {
        for (int64_t i = 0; i < count; ++i) {
          cpu::GemmBf16Args gi = g;
          gi.a += i * sa, gi.b += i * sb, gi.c += i * sc;
          lowp_product(dt, gi);
        }
      });
      // The one rounding of the float32 accumulator (both arrays C-contiguous).
      if (narrow) cpu::convert(acc.data(), cpu::FloatFormat::f32, r_data, format_of(odt), result.size());
    } else {
      dispatch_float(dt, [&](auto zero) {
        using T = decltype(zero);
        const cpu::GemmArgs<T> base = make_args<T>(m, n, k, 1.0, A, B, 0.0, c_data, ldc);
        for_each_batch(merged, base, [](const cpu::GemmArgs<T>& g, int64_t count, int64_t sa, int64_t sb,
                                        int64_t sc) {
          if (count == 1 && sa == 0 && sb == 0 && sc == 0)
            cpu::gemm(g);
          else
            cpu::gemm_strided_batched(g, count, sa, sb, sc);
        });
      });
    }
  }
  if (write_back) {
    out[py::ellipsis()] = result;
    return out;
  }
  return result;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(gemm) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c") = py::none(),
        py::arg("alpha") = py::float_(1.0), py::arg("beta") = py::float_(0.0), py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("out_dtype") = py::none(),
        R"doc(gemm(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, out_dtype=None)

BLAS-style product C = alpha * op(a) @ op(b) + beta * c on 2-D float32/float64 arrays,
where op(x) is x.T when the matching trans flag is set. Transposes and strided views
are read in place. With c=None a new array is returned (beta must then be 0); else c
(shape (m, n), same dtype, writeable, unit stride along its last axis, not sharing
memory with a or b) is updated in place and returned. beta=0 ignores c's contents.
bfloat16/float16 a and b (both the same) accumulate in float32; the result (c=None) has
out_dtype (None: the inputs' dtype, rounded once to nearest even; float32 keeps the
accumulator); a given c decides instead (float32 or the inputs' dtype; beta applies in
float32).)doc");
  m.def("matmul", &matmul, py::arg("a"), py::arg("b"), py::arg("out") = py::none(),
        py::arg("out_dtype") = py::none(),
        R"doc(matmul(a, b, out=None, out_dtype=None)

Matrix product with numpy.matmul semantics on float32/float64 arrays: 1-D operands are
promoted and the added axis removed, batch dimensions broadcast, transposed and strided
views are read in place without copies. `out`, if given, must have exactly the result
shape and dtype and be writeable. bfloat16/float16 inputs (both the same) accumulate
in float32 and return out_dtype (None: the inputs' dtype, one round-to-nearest-even of
the float32 result; float32: the accumulator itself).)doc");
}

}  // namespace dlkern::bind
