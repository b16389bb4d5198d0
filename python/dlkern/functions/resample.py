"""Gathers with scatter-add gradients, for interpolation and index-returning pooling.

TakeAxis picks entries of one axis by an integer index (repeats allowed): nearest and
linear interpolation are one or two of these per spatial axis plus elementwise weights.
MaxByIndex is a max pooling whose output and flat per-plane indices were computed
before (max_pool1d, adaptive_max_pool2d): its gradient is the max-pool kernel's."""

from ..autograd import Function


class TakeAxis(Function):
    @staticmethod
    def forward(ctx, x, index, axis):
        ctx.shape, ctx.index, ctx.axis = x.shape, index, axis
        return ctx.device.contiguous(x[(slice(None),) * axis + (index,)])

    @staticmethod
    def backward(ctx, g):
        dev, axis = ctx.device, ctx.axis
        # The scatter-add runs over the leading axis (the only advanced-index form every
        # device's add_at takes): the axis is moved to the front and back.
        front = dev.contiguous(g.swapaxes(0, axis))
        shape = list(front.shape)
        shape[0] = ctx.shape[axis]
        out = dev.zeros(tuple(shape), dtype=g.dtype)
        dev.add_at(out, ctx.index, front)
        return dev.contiguous(out.swapaxes(0, axis)), None, None


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
