"""SGD with momentum, dampening, Nesterov momentum and L2 weight decay (PyTorch's rule)."""

from ..device import array_namespace
from .optimizer import Optimizer, effective_grad, fused_step


def _sgd_update(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov, maximize, work):
    """One SGD step on arrays, in place. Returns the momentum buffer (created from
    the first gradient, as PyTorch does; None without momentum)."""
    xp = array_namespace(param)
    fused = fused_step(xp, "sgd_step", param, grad, momentum_buffer)
    if fused is not None:
        first = momentum != 0 and momentum_buffer is None
        if first:
            momentum_buffer = xp.empty(param.shape, param.dtype)
        fused(param, grad, momentum_buffer, lr=lr, momentum=momentum, dampening=dampening,
              weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, first=first)
        return momentum_buffer
    w0, w1 = work() if callable(work) else work  # made only when the fused kernel is not used
    g = effective_grad(param, grad, weight_decay, maximize, w0)
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = g.copy()
        else:
            xp.multiply(momentum_buffer, momentum, out=momentum_buffer)
            xp.multiply(g, 1.0 - dampening, out=w1)
            xp.add(momentum_buffer, w1, out=momentum_buffer)
        if nesterov:
            xp.multiply(momentum_buffer, momentum, out=w1)
            xp.add(g, w1, out=w1)
            g = w1
        else:
            g = momentum_buffer
    xp.multiply(g, -lr, out=w1)
    xp.add(param, w1, out=param)
    return momentum_buffer


class SGD(Optimizer):
    """p <- p - lr * d, where d is the gradient (+ weight_decay * p), or with
    momentum the buffer b <- momentum * b + (1 - dampening) * g (b = g on the first
    step), and with Nesterov d = g + momentum * b."""

    _counts_steps = False
    _checked_options = ("lr", "momentum", "weight_decay")

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"Nesterov momentum requires a momentum > 0 and zero dampening "
                             f"(got momentum={group['momentum']}, dampening={group['dampening']})")

    def _keeps_state(self, group):
        return group["momentum"] != 0  # the momentum buffer is SGD's only state

    def _update(self, param, grad, state, group, work):
        state["momentum_buffer"] = _sgd_update(
            param, grad, state.get("momentum_buffer"), lr=group["lr"], momentum=group["momentum"],
            dampening=group["dampening"], weight_decay=group["weight_decay"], nesterov=group["nesterov"],
            maximize=group["maximize"], work=work)
