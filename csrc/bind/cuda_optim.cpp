// dlkern._C_cuda fused optimizer steps on DeviceArrays, in place:
//   adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps,
//             weight_decay, decoupled_weight_decay, amsgrad, maximize)
//   sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
//            maximize, first)
// The optimizers in python/dlkern/optim call them when a parameter lives on a CUDA device
// and every array is contiguous (else they compose elementwise ops). All arrays: one
// float dtype, one shape, one device, contiguous; checked before any device work.
#include <cmath>

#include "bind/cuda_common.h"
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

void check_rate(const char* op, const char* name, double value) {
  if (!std::isfinite(value)) value_error(op, ": ", name, " must be finite, got ", value);
}

void adam_step(const py::object& param_obj, const py::object& grad_obj, const py::object& m_obj,
               const py::object& v_obj, const py::object& vmax_obj, int64_t step, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
  const char* op = "adam_step";
  DeviceArray& p = param_array(param_obj, op);
  const DeviceArray& g = state_like(grad_obj, p, op, "grad");
  DeviceArray& m = state_like(m_obj, p, op, "exp_avg");
  DeviceArray& v = state_like(v_obj, p, op, "exp_avg_sq");
  DeviceArray* vmax = nullptr;
  if (amsgrad) {
    if (vmax_obj.is_none()) value_error(op, ": amsgrad=True needs max_exp_avg_sq");
    vmax = &state_like(vmax_obj, p, op, "max_exp_avg_sq");
  }
  if (step < 1) value_error(op, ": step counts from 1, got ", step);
  for (const auto& [name, value] : {std::pair{"lr", lr}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps},
                                    {"weight_decay", weight_decay}})
    check_rate(op, name, value);
  cuda::AdamFactors f{};
  f.decay = decoupled && weight_decay != 0.0 ? 1.0 - lr * weight_decay : 1.0;
  f.l2 = decoupled ? 0.0 : weight_decay;
  f.beta1 = beta1;
  f.one_minus_beta1 = 1.0 - beta1;
  f.beta2 = beta2;
  f.one_minus_beta2 = 1.0 - beta2;
  f.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, double(step)));
  f.eps = eps;
  f.step_size = -lr / (1.0 - std::pow(beta1, double(step)));
  f.amsgrad = amsgrad;
  f.maximize = maximize;
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
  DeviceArray* buf = nullptr;
  if (momentum != 0.0) {
    if (buf_obj.is_none()) value_error(op, ": momentum != 0 needs momentum_buffer");
    buf = &state_like(buf_obj, p, op, "momentum_buffer");
  }
  for (const auto& [name, value] : {std::pair{"lr", lr}, {"momentum", momentum}, {"dampening", dampening},
                                    {"weight_decay", weight_decay}})
    check_rate(op, name, value);
  cuda::SgdFactors f{};
  f.l2 = weight_decay;
  f.momentum = momentum;
  f.one_minus_dampening = 1.0 - dampening;
  f.neg_lr = -lr;
  f.nesterov = nesterov;
  f.maximize = maximize;
  f.first = first;
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
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("max_exp_avg_sq"), py::kw_only(), py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"),
        py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled_weight_decay"), py::arg("amsgrad"),
        py::arg("maximize"),
        "One Adam/AdamW step in place (dlkern.optim.Adam's rule), one fused pass over contiguous arrays.");
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("momentum_buffer"), py::kw_only(),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"), py::arg("first"),
        "One SGD step in place (dlkern.optim.SGD's rule); first=True sets the momentum buffer to the gradient.");
}

}  // namespace dlkern::bind
