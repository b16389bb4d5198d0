// Test-only bindings of the packed-B GEMM (cpu/gemm.h: gemm_pack_b, gemm_packed), so
// tests and benchmarks reach the C++ entry points the RNN layer loop calls. The
// underscore keeps them out of the public kernel list (bind/kernels.h): no dlkern.ops
// wrapper and no CUDA twin.
#include <memory>
#include <vector>

#include "bind/common.h"
#include "common/cpu_features.h"
#include "cpu/gemm.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

struct PyPackedB {
  DType dtype = DType::f32;
  cpu::PackedB<float> f32;
  cpu::PackedB<double> f64;

  int64_t k() const { return dtype == DType::f32 ? f32.k() : f64.k(); }
  int64_t n() const { return dtype == DType::f32 ? f32.n() : f64.n(); }
  Isa isa() const { return dtype == DType::f32 ? f32.isa() : f64.isa(); }
};

std::unique_ptr<PyPackedB> pack_b(const py::object& b_obj, bool trans_b) {
  const char* op = "_gemm_pack_b";
  py::array b = require_array(b_obj, op, "b");
  auto out = std::make_unique<PyPackedB>();
  out->dtype = float_dtype(b, op, "b");
  if (b.ndim() != 2) value_error(op, ": b must be 2-D, got shape ", shape_str(b));
  const int64_t s0 = b.size() ? elem_stride(b, 0, op, "b") : 0, s1 = b.size() ? elem_stride(b, 1, op, "b") : 0;
  const int64_t k = trans_b ? b.shape(1) : b.shape(0), n = trans_b ? b.shape(0) : b.shape(1);
  const int64_t rs = trans_b ? s1 : s0, cs = trans_b ? s0 : s1;
  const void* data = b.data();
  py::gil_scoped_release nogil;
  if (out->dtype == DType::f32)
    out->f32 = cpu::gemm_pack_b(static_cast<const float*>(data), rs, cs, k, n);
  else
    out->f64 = cpu::gemm_pack_b(static_cast<const double*>(data), rs, cs, k, n);
  return out;
}

py::array packed_product(const py::object& a_obj, const PyPackedB& pb, const py::object& c_obj,
                         const py::object& alpha_obj, const py::object& beta_obj, bool trans_a) {
  const char* op = "_gemm_packed";
  const double alpha = double_arg(alpha_obj, op, "alpha"), beta = double_arg(beta_obj, op, "beta");
  py::array a = require_array(a_obj, op, "a");
  if (float_dtype(a, op, "a") != pb.dtype)
    type_error(op, ": a has dtype ", dtype_str(a), " but b was packed from another float type");
  if (a.ndim() != 2) value_error(op, ": a must be 2-D, got shape ", shape_str(a));
  const int64_t m = trans_a ? a.shape(1) : a.shape(0), k = trans_a ? a.shape(0) : a.shape(1), n = pb.n();
  if (k != pb.k()) value_error(op, ": op(a) has ", k, " columns but the packed b has ", pb.k(), " rows");
  py::array c;
  if (c_obj.is_none()) {
    if (beta != 0.0) value_error(op, ": beta=", beta, " needs a c to scale");
    c = py::array(a.dtype(), std::vector<py::ssize_t>{m, n});
  } else {
    c = require_array(c_obj, op, "c");
    if (float_dtype(c, op, "c") != pb.dtype) type_error(op, ": c has dtype ", dtype_str(c), ", not a's");
    if (c.ndim() != 2 || c.shape(0) != m || c.shape(1) != n)
      value_error(op, ": c has shape ", shape_str(c), ", expected (", m, ", ", n, ")");
    require_writeable(c, op, "c");
    if (may_overlap(c, a)) value_error(op, ": c shares memory with a");
  }
  if (m == 0 || n == 0) return c;
  const int64_t as0 = a.size() ? elem_stride(a, 0, op, "a") : 0, as1 = a.size() ? elem_stride(a, 1, op, "a") : 0;
  if (n > 1 && elem_stride(c, 1, op, "c") != 1) value_error(op, ": c must have unit stride along its last axis");
  const int64_t ldc = elem_stride(c, 0, op, "c");
  if (m > 1 && ldc < n && -ldc < n) value_error(op, ": the rows of c overlap");
  const int64_t a_rs = trans_a ? as1 : as0, a_cs = trans_a ? as0 : as1;
  const void* ad = a.data();
  void* cd = c.mutable_data();
  {
    py::gil_scoped_release nogil;
    if (pb.dtype == DType::f32)
      cpu::gemm_packed<float>(m, float(alpha), static_cast<const float*>(ad), a_rs, a_cs, pb.f32, float(beta),
                              static_cast<float*>(cd), ldc);
    else
      cpu::gemm_packed<double>(m, alpha, static_cast<const double*>(ad), a_rs, a_cs, pb.f64, beta,
                               static_cast<double*>(cd), ldc);
  }
  return c;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(gemm_packed) {
  py::class_<PyPackedB>(m, "_PackedB", "A (k, n) operand packed once by _gemm_pack_b (cpu/gemm.h's PackedB).")
      .def_property_readonly("k", &PyPackedB::k)
      .def_property_readonly("n", &PyPackedB::n)
      .def_property_readonly("isa", [](const PyPackedB& p) { return std::string(isa_name(p.isa())); });
  m.def("_gemm_pack_b", &pack_b, py::arg("b"), py::arg("trans_b") = false,
        R"doc(_gemm_pack_b(b, trans_b=False)

Test hook: packs op(b) (b.T when trans_b) of a 2-D float32/float64 array for the active
ISA, for _gemm_packed.)doc");
  m.def("_gemm_packed", &packed_product, py::arg("a"), py::arg("b"), py::arg("c") = py::none(),
        py::arg("alpha") = py::float_(1.0), py::arg("beta") = py::float_(0.0), py::arg("trans_a") = false,
        R"doc(_gemm_packed(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False)

Test hook: C = alpha * op(a) @ b + beta * c against a _PackedB, as gemm.)doc");
}

}  // namespace dlkern::bind
