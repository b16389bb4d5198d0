"""Adagrad (PyTorch's rule, with lr_decay and an initial accumulator value)."""

from ..device import array_namespace
from .optimizer import Optimizer, effective_grad


def _adagrad_update(param, grad, state_sum, *, step, lr, lr_decay, weight_decay, eps, maximize, work):
    """One Adagrad step on arrays, in place; `step` counts from 1."""
    xp = array_namespace(param)
    w0, w1 = work
    g = effective_grad(param, grad, weight_decay, maximize, w0)
    clr = lr / (1.0 + (step - 1) * lr_decay)
    xp.multiply(g, g, out=w1)
    xp.add(state_sum, w1, out=state_sum)
    xp.sqrt(state_sum, out=w1)
    xp.add(w1, eps, out=w1)
    xp.divide(g, w1, out=w1)
    xp.multiply(w1, -clr, out=w1)
    xp.add(param, w1, out=param)


class Adagrad(Optimizer):
    """sum <- sum + g^2;  p <- p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)."""

    _checked_options = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                 eps=1e-10, *, maximize=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)
        self._check_group(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        # Like PyTorch, the accumulators exist from construction (so state_dict shows them).
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            if p not in self.state:
                self.state[p] = {"step": 0}
                self._init_state(self.state[p], p.data, group)

    def _init_state(self, state, data, group):
        if "sum" not in state:
            state["sum"] = array_namespace(data).full(data.shape, group["initial_accumulator_value"], data.dtype)

    def _update(self, param, grad, state, group, work):
        _adagrad_update(param, grad, state["sum"], step=state["step"], lr=group["lr"], lr_decay=group["lr_decay"],
                        weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
                        work=work())
