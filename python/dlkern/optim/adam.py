"""Adam (L2 weight decay, or decoupled as in AdamW; amsgrad) with PyTorch's rule and defaults."""

import math

from ..device import array_namespace
from .optimizer import Optimizer, add_zero_buffers, effective_grad, fused_step, update_moments


def _adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps,
                 weight_decay, decoupled_weight_decay, amsgrad, maximize, work):
    """One Adam/AdamW step on arrays, in place; `step` counts from 1.
    max_exp_avg_sq is used only with amsgrad."""
    xp = array_namespace(param)
    fused = fused_step(xp, "adam_step", param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else None)
    if fused is not None:
        fused(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else None, step=step, lr=lr, beta1=beta1,
              beta2=beta2, eps=eps, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
              amsgrad=amsgrad, maximize=maximize)
        return
    w0, w1 = work() if callable(work) else work  # made only when the fused kernel is not used
    g = effective_grad(param, grad, weight_decay, maximize, w0, lr, decoupled_weight_decay)
    update_moments(xp, g, exp_avg, exp_avg_sq, beta1, beta2, w1)
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2_sqrt = math.sqrt(1.0 - beta2 ** step)
    if amsgrad:
        xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        xp.sqrt(max_exp_avg_sq, out=w1)
    else:
        xp.sqrt(exp_avg_sq, out=w1)
    xp.divide(w1, bias_correction2_sqrt, out=w1)
    xp.add(w1, eps, out=w1)
    xp.divide(exp_avg, w1, out=w1)
    xp.multiply(w1, -lr / bias_correction1, out=w1)
    xp.add(param, w1, out=param)


class Adam(Optimizer):
    """m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2 (amsgrad: v_max <- max(v_max, v));
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    weight_decay adds weight_decay * p to g (L2), or with decoupled_weight_decay=True
    scales p by (1 - lr * weight_decay) first (AdamW)."""

    _checked_options = ("lr", "eps", "betas", "weight_decay")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas, eps=eps,
                        weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _init_state(self, state, data, group):
        amsgrad = ("max_exp_avg_sq",) if group["amsgrad"] else ()
        add_zero_buffers(state, data, ("exp_avg", "exp_avg_sq") + amsgrad)

    def _update(self, param, grad, state, group, work):
        beta1, beta2 = group["betas"]
        _adam_update(param, grad, state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq"),
                     step=state["step"], lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                     weight_decay=group["weight_decay"], decoupled_weight_decay=group["decoupled_weight_decay"],
                     amsgrad=group["amsgrad"], maximize=group["maximize"], work=work)


class AdamW(Adam):
    """Adam with decoupled weight decay: p <- p * (1 - lr * weight_decay) before the
    Adam step (default weight_decay 1e-2)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
