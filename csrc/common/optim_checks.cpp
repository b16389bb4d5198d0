#include "common/optim_checks.h"

#include <cmath>
#include <initializer_list>
#include <utility>

#include "common/errors.h"

namespace dlkern {
namespace {

void require_finite(const char* op, std::initializer_list<std::pair<const char*, double>> values) {
  for (const auto& [name, value] : values)
    if (!std::isfinite(value)) throw_value_error(op, ": ", name, " must be finite, got ", value);
}

}  // namespace

AdamFactors adam_factors(const char* op, bool has_max_buffer, int64_t step, double lr, double beta1, double beta2,
                         double eps, double weight_decay, bool decoupled, bool amsgrad, bool maximize) {
  if (amsgrad && !has_max_buffer) throw_value_error(op, ": amsgrad=True needs max_exp_avg_sq");
  if (step < 1) throw_value_error(op, ": step counts from 1, got ", step);
  require_finite(op, {{"lr", lr}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}, {"weight_decay", weight_decay}});
  AdamFactors f{};
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
  return f;
}

SgdFactors sgd_factors(const char* op, bool has_buffer, double lr, double momentum, double dampening,
                       double weight_decay, bool nesterov, bool maximize, bool first) {
  if (momentum != 0.0 && !has_buffer) throw_value_error(op, ": momentum != 0 needs momentum_buffer");
  require_finite(op, {{"lr", lr}, {"momentum", momentum}, {"dampening", dampening}, {"weight_decay", weight_decay}});
  SgdFactors f{};
  f.l2 = weight_decay;
  f.momentum = momentum;
  f.one_minus_dampening = 1.0 - dampening;
  f.neg_lr = -lr;
  f.nesterov = nesterov;
  f.maximize = maximize;
  f.first = first;
  return f;
}

}  // namespace dlkern
