"""RAdam: Adam with a rectified adaptive term (PyTorch's rule and defaults)."""

import math

from ..device import array_namespace
from .optimizer import Optimizer, add_zero_buffers, effective_grad, update_moments


def _radam_update(param, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay,
                  decoupled_weight_decay, maximize, work):
    """One RAdam step on arrays, in place; `step` counts from 1."""
    xp = array_namespace(param)
    w0, w1 = work
    g = effective_grad(param, grad, weight_decay, maximize, w0, lr, decoupled_weight_decay)
    update_moments(xp, g, exp_avg, exp_avg_sq, beta1, beta2, w1)
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2 = 1.0 - beta2 ** step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * (beta2 ** step) / bias_correction2
    if rho_t > 5.0:
        # variance is tractable: rectified adaptive step
        rect = math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        xp.sqrt(exp_avg_sq, out=w1)
        xp.add(w1, eps, out=w1)
        xp.divide(exp_avg, w1, out=w1)
        xp.multiply(w1, -lr * rect * math.sqrt(bias_correction2) / bias_correction1, out=w1)
    else:
        # early steps: un-adapted momentum SGD on the bias-corrected first moment
        xp.multiply(exp_avg, -lr / bias_correction1, out=w1)
    xp.add(param, w1, out=param)


class RAdam(Optimizer):
    """m, v as in Adam; rho_inf = 2 / (1 - b2) - 1, rho_t = rho_inf - 2 t b2^t / (1 - b2^t).
    If rho_t > 5: p <- p - lr * m^ * r_t * sqrt(1 - b2^t) / (sqrt(v) + eps) with
    r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)),
    else p <- p - lr * m^, where m^ = m / (1 - b1^t). weight_decay is L2, or decoupled
    (p scaled by 1 - lr * weight_decay) with decoupled_weight_decay=True."""

    _checked_options = ("lr", "eps", "betas", "weight_decay")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, maximize=False):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                        weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
                        maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _init_state(self, state, data, group):
        add_zero_buffers(state, data, ("exp_avg", "exp_avg_sq"))

    def _update(self, param, grad, state, group, work):
        beta1, beta2 = group["betas"]
        _radam_update(param, grad, state["exp_avg"], state["exp_avg_sq"], step=state["step"], lr=group["lr"],
                      beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                      decoupled_weight_decay=group["decoupled_weight_decay"], maximize=group["maximize"],
                      work=work())
