// dlkern._C fused optimizer steps on NumPy arrays, in place, with the signatures of
// dlkern._C_cuda's (bind/cuda_optim.cpp; tests/test_kernel_names.py compares them):
//   adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps,
//             weight_decay, decoupled_weight_decay, amsgrad, maximize)
//   sgd_step(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov,
//            maximize, first)
// All arrays: one float dtype (float32 or float64), one shape, C-contiguous; those written
// writeable. An array may be another argument itself (each element is read before it is
// written) but may not overlap one partly. The scalar checks and factors are
// common/optim_checks.h's, shared with the CUDA binding.
#include <vector>

#include "bind/common.h"
#include "bind/optim_defs.h"
#include "common/optim_checks.h"
#include "cpu/optim.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

struct Operand {
  const char* name;
  py::array a;
};

// obj as a C-contiguous float array; written (write=true) ones must be writeable.
py::array operand(const py::handle& obj, const char* op, const char* arg, bool write) {
  py::array a = require_array(obj, op, arg);
  float_dtype(a, op, arg);
  if (!(a.flags() & py::array::c_style)) value_error(op, ": ", arg, " must be contiguous");
  if (write) require_writeable(a, op, arg);
  return a;
}

// Every operand has param's dtype and shape, and no two overlap unless they are the same.
void require_like_param(const char* op, const std::vector<Operand>& ops) {
  const py::array& p = ops[0].a;
  const std::vector<py::ssize_t> ps(p.shape(), p.shape() + p.ndim());
  for (size_t i = 1; i < ops.size(); ++i) {
    const py::array& a = ops[i].a;
    if (!a.dtype().is(p.dtype()))
      type_error(op, ": ", ops[i].name, " has dtype ", dtype_str(a), " but param has dtype ", dtype_str(p));
    if (std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()) != ps)
      value_error(op, ": ", ops[i].name, " has shape ", shape_str(a), " but param has shape ", shape_str(p));
  }
  for (size_t i = 0; i < ops.size(); ++i)
    for (size_t j = i + 1; j < ops.size(); ++j)
      if (ops[i].a.data() != ops[j].a.data() && may_overlap(ops[i].a, ops[j].a))
        value_error(op, ": ", ops[j].name, " overlaps ", ops[i].name, " in memory");
}

// The checks every operand shares, then kernel(at, n) with the GIL released, where at(i)
// is operand i's data as T* (nullptr past the operands given: the optional buffer).
template <class Kernel>
void run(const char* op, const std::vector<Operand>& ops, Kernel&& kernel) {
  require_like_param(op, ops);
  const DType dt = float_dtype(ops[0].a, op, "param");
  const int64_t n = ops[0].a.size();
  std::vector<void*> data;
  for (const Operand& o : ops) data.push_back(const_cast<void*>(o.a.data()));
  py::gil_scoped_release nogil;
  dispatch_float(dt, [&](auto zero) {
    using T = decltype(zero);
    kernel([&](size_t i) { return i < data.size() ? static_cast<T*>(data[i]) : nullptr; }, n);
  });
}

void adam_step(const py::object& param_obj, const py::object& grad_obj, const py::object& m_obj,
               const py::object& v_obj, const py::object& vmax_obj, int64_t step, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
  const char* op = "adam_step";
  std::vector<Operand> ops{{"param", operand(param_obj, op, "param", true)},
                           {"grad", operand(grad_obj, op, "grad", false)},
                           {"exp_avg", operand(m_obj, op, "exp_avg", true)},
                           {"exp_avg_sq", operand(v_obj, op, "exp_avg_sq", true)}};
  const AdamFactors f = adam_factors(op, !vmax_obj.is_none(), step, lr, beta1, beta2, eps, weight_decay, decoupled,
                                     amsgrad, maximize);
  if (amsgrad) ops.push_back({"max_exp_avg_sq", operand(vmax_obj, op, "max_exp_avg_sq", true)});
  run(op, ops, [&](auto at, int64_t n) { cpu::adam_step(at(0), at(1), at(2), at(3), at(4), n, f); });
}

void sgd_step(const py::object& param_obj, const py::object& grad_obj, const py::object& buf_obj, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov, bool maximize, bool first) {
  const char* op = "sgd_step";
  std::vector<Operand> ops{{"param", operand(param_obj, op, "param", true)},
                           {"grad", operand(grad_obj, op, "grad", false)}};
  const SgdFactors f = sgd_factors(op, !buf_obj.is_none(), lr, momentum, dampening, weight_decay, nesterov, maximize,
                                   first);
  if (momentum != 0.0) ops.push_back({"momentum_buffer", operand(buf_obj, op, "momentum_buffer", true)});
  run(op, ops, [&](auto at, int64_t n) { cpu::sgd_step(at(0), at(1), at(2), n, f); });
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(optim) {
  def_optim_steps(m, &adam_step, &sgd_step);
}

}  // namespace dlkern::bind
