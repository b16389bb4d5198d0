// dlkern._C_cuda fused optimizer steps on DeviceArrays, in place:
//   adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
//             weight_decay, decoupled_weight_decay, amsgrad, maximize)
//   sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
//            maximize, first)
// The optimizers in python/dlkern/optim call them when a parameter lives on a CUDA device
// and every array is contiguous (else they compose elementwise ops). All arrays: one
// float dtype, one shape, one device, contiguous; checked before any device work. The
// scalar checks and factors are common/optim_checks.h's, shared with the CPU binding.
#include "bind/cuda_common.h"
#include "bind/optim_defs.h"
#include "common/optim_checks.h"
#include "cuda/check.h"
#include "cuda/optim.h"

namespace dlkern::bind {
namespace {

// arg as a contiguous array matching param (dtype, shape, device).
DeviceArray& state_like(const py::handle& obj, const DeviceArray& param, const char* op, const char* arg) {
  require_float_device_array(obj, op, arg);
  DeviceArray& a = require_device_array(obj, op, arg);
  require_match(a, arg, param.dtype, param.shape, param.device, {"param has", "param has", "param is"}, op);
  if (!a.is_contiguous()) value_error(op, ": ", arg, " must be contiguous");
  return a;
}

DeviceArray& param_array(const py::handle& obj, const char* op) {
  require_float_device_array(obj, op, "param");
  DeviceArray& p = require_device_array(obj, op, "param");
  if (!p.is_contiguous()) value_error(op, ": param must be contiguous");
  return p;
}

void adam_step(const py::object& param_obj, const py::object& grad_obj, const py::object& m_obj,
               const py::object& v_obj, const py::object& vmax_obj, int64_t step, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
  const char* op = "adam_step";
  DeviceArray& p = param_array(param_obj, op);
  const DeviceArray& g = state_like(grad_obj, p, op, "grad");
  DeviceArray& m = state_like(m_obj, p, op, "exp_avg");
  DeviceArray& v = state_like(v_obj, p, op, "exp_avg_sq");
  const AdamFactors f = adam_factors(op, !vmax_obj.is_none(), step, lr, beta1, beta2, eps, weight_decay, decoupled,
                                     amsgrad, maximize);
  DeviceArray* vmax = amsgrad ? &state_like(vmax_obj, p, op, "max_exp_avg_sq") : nullptr;
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(p.device, op);
  wait_for_inputs(p.stream, {&g, &m, &v, vmax}, op);
  dispatch_cuda_float(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    cuda::adam_step<T>(static_cast<T*>(p.data()), static_cast<const T*>(g.data()), static_cast<T*>(m.data()),
                       static_cast<T*>(v.data()), vmax ? static_cast<T*>(vmax->data()) : nullptr, p.numel(), f,
                       p.stream, op);
  });
  // Arrays from other streams were used on p.stream: order their streams after this
  // step, so the caching allocator cannot reuse their blocks there while it still runs.
  release_after(p.stream, {&g, &m, &v, vmax}, op);
}

void sgd_step(const py::object& param_obj, const py::object& grad_obj, const py::object& buf_obj, double lr,
              double momentum, double dampening, double weight_decay, bool nesterov, bool maximize, bool first) {
  const char* op = "sgd_step";
  DeviceArray& p = param_array(param_obj, op);
  const DeviceArray& g = state_like(grad_obj, p, op, "grad");
  const SgdFactors f = sgd_factors(op, !buf_obj.is_none(), lr, momentum, dampening, weight_decay, nesterov, maximize,
                                   first);
  DeviceArray* buf = momentum != 0.0 ? &state_like(buf_obj, p, op, "momentum_buffer") : nullptr;
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(p.device, op);
  wait_for_inputs(p.stream, {&g, buf}, op);
  dispatch_cuda_float(p.dtype, [&](auto zero) {
    using T = decltype(zero);
    cuda::sgd_step<T>(static_cast<T*>(p.data()), static_cast<const T*>(g.data()),
                      buf ? static_cast<T*>(buf->data()) : nullptr, p.numel(), f, p.stream, op);
  });
  release_after(p.stream, {&g, buf}, op);  // as in adam_step
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_optim) {
  def_optim_steps(m, &adam_step, &sgd_step);
}

}  // namespace dlkern::bind
