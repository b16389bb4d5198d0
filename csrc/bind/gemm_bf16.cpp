// Test hooks of the bf16 kernels (cpu/bf16.h): conversions, the GEMM on every path and
// its scalar model, over uint16 arrays that hold bf16 bits. The underscores keep them
// out of the public kernel list (bind/kernels.h) until Tensors have a bf16 dtype.
#include <vector>

#include "bind/common.h"
#include "cpu/bf16.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

py::array require_dtype(const py::object& obj, const char* op, const char* arg, const py::dtype& want) {
  py::array a = require_array(obj, op, arg);
  if (!a.dtype().is(want) && !a.dtype().equal(want))
    type_error(op, ": ", arg, " must have dtype ", std::string(py::str(want)), ", got ", dtype_str(a));
  return a;
}

py::array from_f32(const py::object& x_obj) {
  const char* op = "_bf16_from_f32";
  py::array x = require_dtype(x_obj, op, "x", py::dtype::of<float>());
  auto xc = py::array_t<float, py::array::c_style>::ensure(x);
  py::array_t<uint16_t> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const float* src = xc.data();
  uint16_t* dst = out.mutable_data();
  const int64_t n = x.size();
  py::gil_scoped_release nogil;
  cpu::bf16_from_f32(src, dst, n);
  return out;
}

py::array to_f32(const py::object& x_obj) {
  const char* op = "_bf16_to_f32";
  py::array x = require_dtype(x_obj, op, "x", py::dtype::of<uint16_t>());
  auto xc = py::array_t<uint16_t, py::array::c_style>::ensure(x);
  py::array_t<float> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const uint16_t* src = xc.data();
  float* dst = out.mutable_data();
  const int64_t n = x.size();
  py::gil_scoped_release nogil;
  cpu::bf16_to_f32(src, dst, n);
  return out;
}

// One operand's view: (rows, cols) of op(x) and its element strides.
struct Operand {
  int64_t rows, cols, rs, cs;
  const uint16_t* data;
};

Operand operand(const py::array& x, bool trans, const char* op, const char* arg) {
  if (x.ndim() != 2) value_error(op, ": ", arg, " must be 2-D, got shape ", shape_str(x));
  const int64_t s0 = x.size() ? elem_stride(x, 0, op, arg) : 0, s1 = x.size() ? elem_stride(x, 1, op, arg) : 0;
  Operand o{trans ? x.shape(1) : x.shape(0), trans ? x.shape(0) : x.shape(1), trans ? s1 : s0, trans ? s0 : s1,
            static_cast<const uint16_t*>(x.data())};
  return o;
}

py::array product(const char* op, const py::object& a_obj, const py::object& b_obj, const py::object& c_obj,
                  const py::object& alpha_obj, const py::object& beta_obj, bool trans_a, bool trans_b,
                  int mode /* 0 best, 1 fallback, 2 dpbf16, 3 model, 4 model without flush */) {
  const double alpha = double_arg(alpha_obj, op, "alpha"), beta = double_arg(beta_obj, op, "beta");
  py::array a = require_dtype(a_obj, op, "a", py::dtype::of<uint16_t>());
  py::array b = require_dtype(b_obj, op, "b", py::dtype::of<uint16_t>());
  const Operand A = operand(a, trans_a, op, "a"), B = operand(b, trans_b, op, "b");
  if (A.cols != B.rows) value_error(op, ": op(a) has ", A.cols, " columns but op(b) has ", B.rows, " rows");
  const int64_t m = A.rows, n = B.cols;
  py::array c;
  if (c_obj.is_none()) {
    if (beta != 0.0) value_error(op, ": beta=", beta, " needs a c to scale");
    c = py::array_t<float>(std::vector<py::ssize_t>{m, n});
  } else {
    c = require_dtype(c_obj, op, "c", py::dtype::of<float>());
    if (c.ndim() != 2 || c.shape(0) != m || c.shape(1) != n)
      value_error(op, ": c has shape ", shape_str(c), ", expected (", m, ", ", n, ")");
    require_writeable(c, op, "c");
  }
  if (m == 0 || n == 0) return c;
  if (n > 1 && elem_stride(c, 1, op, "c") != 1) value_error(op, ": c must have unit stride along its last axis");
  cpu::GemmBf16Args g;
  g.m = m, g.n = n, g.k = A.cols, g.alpha = float(alpha), g.beta = float(beta);
  g.a = A.data, g.a_rs = A.rs, g.a_cs = A.cs, g.b = B.data, g.b_rs = B.rs, g.b_cs = B.cs;
  g.c = static_cast<float*>(c.mutable_data()), g.ldc = elem_stride(c, 0, op, "c");
  if (m > 1 && g.ldc < n && -g.ldc < n) value_error(op, ": the rows of c overlap");
  py::gil_scoped_release nogil;
  try {
    if (mode >= 3)
      cpu::gemm_bf16_model(g, mode == 3);
    else
      cpu::gemm_bf16(g, mode == 0 ? cpu::Bf16Path::best : mode == 1 ? cpu::Bf16Path::fallback : cpu::Bf16Path::dpbf16);
  } catch (const std::runtime_error& e) {
    py::gil_scoped_acquire gil;
    throw py::value_error(cat(op, ": ", e.what()));
  }
  return c;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(gemm_bf16) {
  m.def("_bf16_from_f32", &from_f32, py::arg("x"),
        "Test hook: float32 array -> uint16 array of its bf16 bits, round-to-nearest-even.");
  m.def("_bf16_to_f32", &to_f32, py::arg("x"), "Test hook: uint16 array of bf16 bits -> float32 (exact).");
  m.def("_bf16_has_dpbf16", &cpu::gemm_bf16_has_dpbf16,
        "Test hook: whether the vdpbf16ps GEMM path can run here (avx512 ISA on a CPU with AVX-512 BF16).");
  m.def(
      "_gemm_bf16",
      [](const py::object& a, const py::object& b, const py::object& c, const py::object& alpha,
         const py::object& beta, bool trans_a, bool trans_b, const std::string& path) {
        const char* op = "_gemm_bf16";
        int mode = 0;
        if (path == "fallback")
          mode = 1;
        else if (path == "dpbf16")
          mode = 2;
        else if (path == "model")
          mode = 3;
        else if (path == "model_noflush")
          mode = 4;
        else if (path != "best")
          value_error(op, ": path must be 'best', 'fallback', 'dpbf16', 'model' or 'model_noflush', got '", path,
                      "'");
        return product(op, a, b, c, alpha, beta, trans_a, trans_b, mode);
      },
      py::arg("a"), py::arg("b"), py::arg("c") = py::none(), py::arg("alpha") = py::float_(1.0),
      py::arg("beta") = py::float_(0.0), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("path") = "best",
      R"doc(_gemm_bf16(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, path='best')

Test hook: C (float32) = alpha * op(a) @ op(b) + beta * c with a, b uint16 arrays of bf16
bits (any strides). path: 'best' (the active ISA's), 'fallback' (float32 micro-kernel on
converted panels), 'dpbf16' (vdpbf16ps; ValueError where it cannot run), 'model' (the
scalar model of vdpbf16ps, DAZ/FTZ), 'model_noflush' (the model without DAZ/FTZ).)doc");
}

}  // namespace dlkern::bind
