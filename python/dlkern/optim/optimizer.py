"""Optimizer: the base class of dlkern.optim, shaped like torch.optim.Optimizer.

A parameter is any object with ``.data`` (a floating-point ndarray, updated in
place) and ``.grad`` (None, an ndarray, or an object whose ``.data`` is one).
Per-parameter state lives in ``opt.state[param]``; ``state_dict()`` flattens it to
PyTorch's layout ``{"state": {index: {...}}, "param_groups": [{..., "params": [index]}]}``
with the arrays copied.

The step loop lives here once (groups, parameters, skipping those without a gradient,
state creation and the step count); a subclass gives its update rule: ``_init_state``
(the buffers its options need) and ``_update`` (one step on arrays), which calls the
rule's function on arrays (``_sgd_update``, ``_adam_update``, ...), written with ``out=``
operations of the arrays' device namespace on the parameter, its state buffers and
preallocated scratch buffers, so a step allocates nothing per parameter after the first.
"""

import copy
import numbers

import numpy as np

from .. import autograd as _autograd
from ..device import array_namespace


class _Required:
    """Marks a hyper-parameter without a default (every group must give it)."""

    def __repr__(self):
        return "<required parameter>"


required = _Required()


def _is_array(x):
    """Whether x is an array of some device (NumPy's or a device array type)."""
    try:
        array_namespace(x)
    except TypeError:
        return False
    return True


def grad_array(param):
    """The gradient of `param` as an array, or None."""
    g = param.grad
    if g is None or _is_array(g) or not hasattr(g, "data"):
        return g
    return g.data


def is_param_like(obj):
    """Whether obj is one parameter (an object with .data) rather than a collection of them."""
    return hasattr(obj, "data") and not isinstance(obj, dict) and not _is_array(obj)


def check_nonnegative(name, value):
    if not isinstance(value, numbers.Real) or not value >= 0.0:
        raise ValueError(f"Invalid {name} value: {value!r} (must be a number >= 0)")


def check_betas(betas):
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"Invalid betas: {betas!r} (expected a pair (beta1, beta2))") from None
    for i, b in enumerate((b1, b2)):
        if not isinstance(b, numbers.Real) or not 0.0 <= b < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {b!r} (betas must lie in [0, 1))")


# How an error message names an option (the others by their key).
_OPTION_NAMES = {"lr": "learning rate", "eps": "epsilon"}


def check_options(group, keys):
    """Check `group`'s options `keys` in order: "betas" a pair in [0, 1), any other a number >= 0."""
    for key in keys:
        if key == "betas":
            check_betas(group[key])
        else:
            check_nonnegative(_OPTION_NAMES.get(key, key), group[key])


def add_zero_buffers(state, data, names):
    """Give `state` a zero buffer like `data` for each of `names` it lacks."""
    xp = array_namespace(data)
    for name in names:
        if name not in state:
            state[name] = xp.zeros_like(data)


class Optimizer:
    """Base class. Subclasses set ``defaults`` through ``__init__``, check a group's
    options in ``_check_group`` and give their update rule in ``_init_state`` and
    ``_update``; ``step`` is the same loop for all of them."""

    # state["step"] counts the updates of a parameter from 1 (SGD keeps none, as PyTorch)
    _counts_steps = True
    # the options that _check_group checks with check_options, in order
    _checked_options = ()

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        self._scratch = {}  # dtype -> [flat work array, ...]; never part of state_dict
        if is_param_like(params):
            raise TypeError(
                f"params argument given to the optimizer should be an iterable of parameters or dicts, "
                f"but got {type(params).__name__}")
        if isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of a set changes between runs; use a list")
        param_groups = list(params)
        if not param_groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def _check_group(self, group):
        """Raise ValueError naming any invalid option of `group`: those in
        ``_checked_options`` (a subclass extends this for other rules)."""
        check_options(group, self._checked_options)

    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with "params" and optional per-group
        options; missing options take the optimizer's defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError("a parameter group needs a 'params' entry")
        params = group["params"]
        if is_param_like(params):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of a set changes between runs; use a list")
        else:
            params = list(params)
        # named parameters, e.g. model.named_parameters(): keep the names beside the params
        names = [p[0] for p in params if isinstance(p, tuple)]
        if names:
            if len(names) != len(params) or not all(len(p) == 2 for p in params):
                raise ValueError("all optimizer params should be with/without names; some param names are missing")
            params = [p[1] for p in params]
            group["param_names"] = names
        if self.param_groups and ("param_names" in group) != ("param_names" in self.param_groups[0]):
            raise ValueError("all optimizer param groups should be with/without names")
        for p in params:
            if not is_param_like(p) or not hasattr(p.data, "dtype"):
                raise TypeError(f"optimizer can only optimize objects whose .data is an array, "
                                f"but one of the params is {type(p).__name__}")
            if p.data.dtype.kind != "f":
                raise TypeError(f"optimizer can only optimize floating-point parameters, got dtype {p.data.dtype}")
            if not getattr(p, "is_leaf", True):
                raise ValueError("can't optimize a non-leaf Tensor")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains duplicate parameters")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            group.setdefault(name, default)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self._check_group(group)
        self.param_groups.append(group)

    # ------------------------------------------------------------------ grads
    def zero_grad(self, set_to_none=True):
        """Reset gradients: to None (default) or to zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    grad_array(p).fill(0)

    # ------------------------------------------------------------------ step
    def _keeps_state(self, group):
        """Whether parameters of `group` have state worth keeping (subclass hook)."""
        return True

    def _init_state(self, state, data, group):
        """Add to `state` the buffers `group`'s options need and it lacks: on a parameter's
        first step, and when an option is turned on later (by a scheduler or the user)."""

    def _update(self, param, grad, state, group, work):
        """One step of the rule on arrays, in place: param (the parameter's data), grad, the
        parameter's state and group; work() returns two scratch arrays shaped like param."""
        raise NotImplementedError

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss
        (closure re-evaluates the model with gradients on) or None."""
        loss = self._call_closure(closure)
        for group in self.param_groups:
            keep = self._keeps_state(group)
            for p in group["params"]:
                grad = grad_array(p)
                if grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = {}
                    if keep:
                        self.state[p] = state
                if self._counts_steps:
                    state["step"] = state.get("step", 0) + 1
                self._init_state(state, p.data, group)
                self._update(p.data, grad, state, group, lambda p=p: self._scratch_buffers(p, 2))
        return loss

    def _call_closure(self, closure):
        if closure is None:
            return None
        with _autograd.enable_grad():
            return closure()

    def _scratch_buffers(self, p, count):
        """`count` work arrays shaped like p: views into flat buffers shared by all
        parameters of a dtype and grown to the largest one, so a step allocates no
        array data and the workspace costs `count` copies of the largest parameter."""
        data = p.data
        dev = array_namespace(data)
        bufs = self._scratch.setdefault((data.dtype, dev), [])
        while len(bufs) < count:
            bufs.append(dev.empty((0,), data.dtype))
        views = []
        for i in range(count):
            if bufs[i].size < data.size:
                bufs[i] = dev.empty((data.size,), data.dtype)
            views.append(bufs[i][:data.size].reshape(data.shape))
        return views

    # ------------------------------------------------------------------ state dict
    def state_dict(self):
        """PyTorch layout; arrays are copies, so later steps don't change it."""
        index_of = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = []
            for p in group["params"]:
                index_of.setdefault(id(p), len(index_of))
                packed["params"].append(index_of[id(p)])
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index_of[id(p)]] = {k: _host_copy(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and state saved by ``state_dict()`` (arrays are copied and
        cast to each parameter's dtype)."""
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("optimizer state_dict must be a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups "
                             f"({len(saved_groups)}) than the optimizer ({len(self.param_groups)})")
        for i, (g, s) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(f"loaded state dict contains a parameter group {i} with {len(s['params'])} "
                                 f"parameters, but the optimizer's group has {len(g['params'])}")
        param_of = {}
        for g, s in zip(self.param_groups, saved_groups):
            for p, idx in zip(g["params"], s["params"]):
                param_of[int(idx)] = p
        new_state = {}
        for key, values in state_dict["state"].items():
            idx = int(key)
            if idx not in param_of:
                raise ValueError(f"loaded state dict has state for parameter index {idx}, "
                                 f"which no parameter group lists")
            p = param_of[idx]
            restored = {}
            for name, value in values.items():
                if _is_array(value):
                    if value.ndim and value.shape != p.data.shape:
                        raise ValueError(f"loaded state '{name}' for parameter {idx} has shape {value.shape}, "
                                         f"but the parameter has shape {p.data.shape}")
                    value = value.astype(p.data.dtype if value.dtype.kind == "f" else value.dtype, copy=True)
                    value = array_namespace(p.data).to_device(value)
                else:
                    value = copy.deepcopy(value)
                restored[name] = value
            new_state[p] = restored
        new_groups = []
        for g, s in zip(self.param_groups, saved_groups):
            group = {k: copy.deepcopy(v) for k, v in s.items() if k != "params"}
            group["params"] = g["params"]
            if "param_names" in g and "param_names" not in group:
                group["param_names"] = g["param_names"]
            new_groups.append(group)
        for group in new_groups:
            self._check_group(group)
        self.state = new_state
        self.param_groups = new_groups

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(group):
                if k != "params":
                    lines.append(f"    {k}: {group[k]}")
        lines.append(")")
        return "\n".join(lines)


def _host_copy(value):
    """A state value for state_dict: arrays as NumPy copies (device arrays copied to
    the host, so a checkpoint loads anywhere), the rest deep-copied."""
    if _is_array(value):
        return np.array(array_namespace(value).to_host(value))
    return copy.deepcopy(value)


_FUSED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def fused_step(xp, name, *arrays):
    """The device's fused optimizer kernel `name` (one pass per parameter instead of a
    dozen elementwise passes or launches), when it has one and every array given is
    C-contiguous, float32 or float64, and of the first one's dtype and shape (the
    kernels' contract); else None and the caller composes elementwise ops (which also
    take 16-bit and mixed-dtype parameters)."""
    fn = xp.fused(name)
    if fn is None:
        return None
    first = arrays[0]
    if first.dtype not in _FUSED_DTYPES:
        return None
    for a in arrays:  # NumPy arrays and device arrays both have .flags.c_contiguous
        if a is not None and (not a.flags.c_contiguous or a.dtype != first.dtype or a.shape != first.shape):
            return None
    return fn


def update_moments(xp, g, exp_avg, exp_avg_sq, beta1, beta2, work):
    """Adam's moment estimates in place: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2
    (`work`: a scratch array shaped like g; xp: the arrays' device namespace)."""
    xp.multiply(exp_avg, beta1, out=exp_avg)
    xp.multiply(g, 1.0 - beta1, out=work)
    xp.add(exp_avg, work, out=exp_avg)
    xp.multiply(exp_avg_sq, beta2, out=exp_avg_sq)
    xp.multiply(g, g, out=work)
    xp.multiply(work, 1.0 - beta2, out=work)
    xp.add(exp_avg_sq, work, out=exp_avg_sq)


def effective_grad(param, grad, weight_decay, maximize, out, lr=0.0, decoupled=False):
    """The gradient the update uses: -grad if maximizing, plus weight_decay*param
    (L2 coupled into the gradient). With `decoupled` (AdamW) the decay scales param by
    1 - lr * weight_decay in place instead and the gradient is left undecayed. Returns
    `grad` itself when nothing applies, otherwise `out` holding the result; `grad` is
    never modified."""
    xp = array_namespace(param)
    if weight_decay != 0 and decoupled:
        xp.multiply(param, 1.0 - lr * weight_decay, out=param)
        weight_decay = 0.0
    if weight_decay != 0:
        xp.multiply(param, weight_decay, out=out)
        (xp.subtract if maximize else xp.add)(out, grad, out=out)
        return out
    if maximize:
        xp.negative(grad, out=out)
        return out
    return grad
