"""RMSprop (PyTorch's rule: optional momentum and centered variant)."""

from ..device import array_namespace
from .optimizer import Optimizer, add_zero_buffers, effective_grad


def _rmsprop_update(param, grad, square_avg, grad_avg, momentum_buffer, *, lr, alpha, eps, weight_decay,
                    momentum, centered, maximize, work):
    """One RMSprop step on arrays, in place. grad_avg is used when centered,
    momentum_buffer when momentum > 0 (otherwise they may be None)."""
    xp = array_namespace(param)
    w0, w1 = work
    g = effective_grad(param, grad, weight_decay, maximize, w0)
    xp.multiply(square_avg, alpha, out=square_avg)
    xp.multiply(g, g, out=w1)
    xp.multiply(w1, 1.0 - alpha, out=w1)
    xp.add(square_avg, w1, out=square_avg)
    if centered:
        xp.multiply(grad_avg, alpha, out=grad_avg)
        xp.multiply(g, 1.0 - alpha, out=w1)
        xp.add(grad_avg, w1, out=grad_avg)
        xp.multiply(grad_avg, grad_avg, out=w1)
        xp.subtract(square_avg, w1, out=w1)
        xp.sqrt(w1, out=w1)
    else:
        xp.sqrt(square_avg, out=w1)
    xp.add(w1, eps, out=w1)
    xp.divide(g, w1, out=w1)
    if momentum > 0:
        xp.multiply(momentum_buffer, momentum, out=momentum_buffer)
        xp.add(momentum_buffer, w1, out=momentum_buffer)
        xp.multiply(momentum_buffer, -lr, out=w1)
    else:
        xp.multiply(w1, -lr, out=w1)
    xp.add(param, w1, out=param)


class RMSprop(Optimizer):
    """v <- alpha * v + (1 - alpha) * g^2; centered: a <- alpha * a + (1 - alpha) * g and
    v~ = v - a^2; d = g / (sqrt(v~) + eps); momentum: b <- momentum * b + d, p <- p - lr * b,
    else p <- p - lr * d."""

    _checked_options = ("lr", "eps", "momentum", "weight_decay", "alpha")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 *, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _init_state(self, state, data, group):
        # options turned on after the first step (e.g. by a scheduler) get fresh buffers
        add_zero_buffers(state, data, ("square_avg",) + (("momentum_buffer",) if group["momentum"] > 0 else ())
                         + (("grad_avg",) if group["centered"] else ()))

    def _update(self, param, grad, state, group, work):
        _rmsprop_update(param, grad, state["square_avg"], state.get("grad_avg"), state.get("momentum_buffer"),
                        lr=group["lr"], alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                        momentum=group["momentum"], centered=group["centered"], maximize=group["maximize"],
                        work=work())
