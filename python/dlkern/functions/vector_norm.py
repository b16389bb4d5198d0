"""The vector p-norm over some dims (dlkern.linalg.vector_norm, Tensor.norm), on the
device's elementwise math and reductions, so it runs on every device."""

import math

import numpy as np

from ..autograd import Function


class VectorNorm(Function):
    """(sum |x|^ord)^(1/ord) over `axes` (a tuple of normalised dims); ord 0 counts the
    nonzeros, +-inf is the max/min of |x|. Subgradients as PyTorch: 0 where the norm is 0
    (2-norm and p > 1), sign(x) for ord 1, ties of the +-inf norm share the gradient."""

    @staticmethod
    def forward(ctx, x, ord, axes, keepdim):
        dev = ctx.device
        ax = dev.abs(x)
        if x.size == 0:
            # the dims reduced are not empty (vector_norm refused that for +-inf and ord < 0), so
            # either the result is empty or sums over nothing: zeros (CUDA max/min refuse size 0)
            y = dev.zeros([1 if i in axes else n for i, n in enumerate(x.shape)], dtype=x.dtype)
        elif ord == math.inf:
            y = dev.amax(ax, axis=axes, keepdims=True)
        elif ord == -math.inf:
            y = dev.amin(ax, axis=axes, keepdims=True)
        elif ord == 0:
            y = (x != 0).sum(axis=axes, keepdims=True).astype(x.dtype)
        elif ord == 1:
            y = ax.sum(axis=axes, keepdims=True)
        elif ord == 2:
            y = dev.sqrt((x * x).sum(axis=axes, keepdims=True))
        else:
            with np.errstate(divide="ignore"):  # ord < 0: 0 ** ord = inf is meant (the norm is then 0)
                y = dev.power(dev.power(ax, ord).sum(axis=axes, keepdims=True), 1.0 / ord)
        y = dev.asarray(y)
        ctx.saved = (x, y)
        ctx.ord = ord
        ctx.axes, ctx.keepdim = axes, keepdim
        return y if keepdim else y.reshape([n for i, n in enumerate(x.shape) if i not in axes])

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved
        dev, p = ctx.device, ctx.ord
        if not ctx.keepdim:
            g = g.reshape(y.shape)
        zero = x.dtype.type(0)
        if p == 0:  # piecewise constant: no gradient at all (x.grad stays None), as PyTorch
            return None, None, None, None
        if p == 1:
            return g * dev.sign(x), None, None, None
        if p == 2:
            scale = dev.where(y == 0, zero, g / dev.where(y == 0, x.dtype.type(1), y))
            return x * scale, None, None, None
        if math.isinf(p):
            ax = dev.abs(x)
            hit = (ax == y) | (ax != ax)  # a NaN counts as the extremum, as PyTorch
            share = g / hit.sum(axis=ctx.axes, keepdims=True).astype(g.dtype)
            return dev.sign(x) * dev.where(hit, share, zero), None, None, None
        ax = dev.abs(x)
        if p < 1:
            # |x|^(p-1) is infinite at x == 0, where PyTorch takes 0
            part = dev.where(x == 0, zero, dev.power(dev.where(x == 0, x.dtype.type(1), ax), p - 1))
            return dev.sign(x) * part * (g * dev.power(y, 1 - p)), None, None, None
        scale = dev.where(y == 0, zero, g / dev.power(dev.where(y == 0, x.dtype.type(1), y), p - 1))
        return dev.sign(x) * dev.power(ax, p - 1) * scale, None, None, None
