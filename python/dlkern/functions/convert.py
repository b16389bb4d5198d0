"""Conversions: a dtype cast (or copy) and a copy to another device, each differentiable."""

import numpy as np

from ..autograd import Function
from ..autograd.grad_mode import GradMode


class Cast(Function):
    """dtype conversion (or a copy when dtype is None); the gradient is cast back."""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.src = a.dtype
        return a.copy() if dtype is None else ctx.device.cast(a, dtype)

    @staticmethod
    def backward(ctx, g):
        return ctx.device.cast(g, ctx.src), None


class ToDevice(Function):
    """A copy to another device; the gradient is copied back. Function.apply makes the
    output on the input's device, so apply_to builds the node itself."""

    @classmethod
    def apply_to(cls, t, target):
        # Through the host (GPU to GPU too: no peer copies yet); from_host is free on the CPU.
        data = target.from_host(host_array(t.data))
        if t.requires_grad and GradMode.enabled:
            ctx = object.__new__(cls)
            ctx.device, ctx.needs_input_grad, ctx.parents = target, [True], [t]
            ctx.source = t.device
            return t._make(data, target, True, ctx)
        return t._make(data, target, False, None)

    @staticmethod
    def backward(ctx, g):
        return ctx.source.from_host(host_array(g))


def host_array(a):
    """a itself when it is a NumPy array, else a host copy of a device array."""
    return a if isinstance(a, np.ndarray) else a.numpy()
