"""Weighted gathers along one axis (interpolation) and max pooling by given indices.

Resample applies an AxisPlan along one axis: a weighted gather of one tap (nearest
interpolation) or two (linear), whose gradient is planned as gathers too.
MaxByIndex is a max pooling whose output and flat per-plane indices were computed
before (max_pool1d, adaptive_max_pool2d): its gradient is the max-pool kernel's."""

import numpy as np

from ..autograd import Function


# An input position read by more than this many output positions (extreme upsampling)
# takes its gradient by a scatter-add instead of one gather per reader.
_MAX_READERS = 32


class AxisPlan:
    """out[d] = sum over taps t of w_t[d] * x[i_t[d]] along one axis (one tap: a plain
    gather, as nearest interpolation; two: linear), planned on the host once.

    The gradient is the transpose, dx[j] = sum of w * g[d] over the (d, w) reading j. It
    is computed as gathers too: pass k takes, for every j, its k-th reader, so there is no
    scatter (NumPy's add.at is slow, and every device gathers along an axis)."""

    def __init__(self, indices, weights, in_size):
        self.indices, self.weights, self.in_size = indices, weights, in_size
        n_out = indices[0].size
        src = np.concatenate(indices)
        order = np.argsort(src, kind="stable")
        counts = np.bincount(src, minlength=in_size)
        self.passes = None
        if n_out and counts.max() <= _MAX_READERS:
            starts = np.searchsorted(src[order], np.arange(in_size))
            reader = np.tile(np.arange(n_out), len(indices))[order]
            weight = None if weights is None else np.concatenate(weights)[order]
            self.passes = []
            for k in range(int(counts.max())):
                at = np.minimum(starts + k, src.size - 1)
                has = counts > k
                w = None if weight is None else np.where(has, weight[at], 0).astype(weight.dtype)
                self.passes.append((reader[at], w, None if has.all() else has))


def _along(dev, v, axis, ndim):
    """Host 1-D array v on the device, shaped to broadcast along axis of an ndim array."""
    return dev.to_device(v.reshape((-1,) + (1,) * (ndim - axis - 1)))


class Resample(Function):
    """forward(x, plan, axis): plan (an AxisPlan) applied along axis of x."""

    @staticmethod
    def forward(ctx, x, plan, axis):
        dev = ctx.device
        ctx.plan, ctx.axis, ctx.shape = plan, axis, x.shape
        out = None
        for t, index in enumerate(plan.indices):
            term = dev.take(x, dev.to_device(index), axis)
            if plan.weights is not None:
                term *= _along(dev, plan.weights[t], axis, x.ndim)
            if out is None:
                out = term
            else:
                out += term
        return out

    @staticmethod
    def backward(ctx, g):
        dev, axis, plan = ctx.device, ctx.axis, ctx.plan
        g = dev.contiguous(g)
        if plan.passes is None:
            return _scatter_add(dev, g, plan, axis, ctx.shape), None, None
        dx = None
        for reader, weight, has in plan.passes:
            term = dev.take(g, dev.to_device(reader), axis)
            if weight is not None:
                term *= _along(dev, weight, axis, g.ndim)
            if has is not None:   # positions with fewer readers take nothing (not 0 * g: NaN, inf)
                term = dev.where(_along(dev, has, axis, g.ndim), term, dev.zeros((), dtype=g.dtype))
            if dx is None:
                dx = term
            else:
                dx += term
        if dx is None:   # nothing read x (an empty output)
            dx = dev.zeros(ctx.shape, dtype=g.dtype)
        return dev.contiguous(dx), None, None


def _scatter_add(dev, g, plan, axis, shape):
    """dx by add_at over the leading axis (the advanced-index form every device's add_at
    takes): the axis is moved to the front and back."""
    front = dev.contiguous(g.swapaxes(0, axis))
    size = list(front.shape)
    size[0] = shape[axis]
    out = dev.zeros(tuple(size), dtype=g.dtype)
    for t, index in enumerate(plan.indices):
        part = front if plan.weights is None else front * _along(dev, plan.weights[t], 0, front.ndim)
        dev.add_at(out, dev.to_device(index), part)
    return dev.contiguous(out.swapaxes(0, axis))


class MaxByIndex(Function):
    """forward(x, y, indices): returns y, the max pooling of x (N, C, H, W) or (C, H, W)
    whose maxima sit at flat positions ``indices`` (h * W + w) of each plane."""

    @staticmethod
    def forward(ctx, x, y, indices):
        ctx.saved = indices
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.device.max_pool2d_backward(ctx.device.contiguous(g), ctx.saved, ctx.shape), None, None
