"""Running and whole products and sums along a dim: cumsum, cumprod, prod.

They compute through ``ctx.device.cumsum`` / ``cumprod`` / ``prod``: NumPy's on the CPU;
the CUDA module has no scan or product primitive, so there the namespace refuses them
with NotImplementedError naming the op and 'cuda'.

Integer and bool inputs accumulate in int64, as PyTorch (and NumPy on 64-bit Linux)."""

import numpy as np

from ..autograd import Function


def _acc_dtype(dtype):
    """The result dtype: int64 for bool and integer inputs, the input's own otherwise."""
    return np.dtype(np.int64) if dtype.kind in "biu" else None


def _reverse(a, axis):
    """a reversed along axis (a view)."""
    index = [slice(None)] * a.ndim
    index[axis] = slice(None, None, -1)
    return a[tuple(index)]


def _reverse_cumsum(dev, a, axis):
    """out[k] = sum over i >= k of a[i], along axis."""
    return _reverse(dev.cumsum(_reverse(a, axis), axis=axis), axis)


class CumSum(Function):
    """Running sum along `axis` (a normalised int; a 0-d input is read as shape (1,))."""

    @staticmethod
    def forward(ctx, a, axis):
        ctx.axis, ctx.shape = axis, a.shape
        flat = a.reshape(1) if a.ndim == 0 else a
        y = ctx.device.cumsum(flat, axis=axis, dtype=_acc_dtype(a.dtype))
        return y.reshape(a.shape)

    @staticmethod
    def backward(ctx, g):
        g1 = g.reshape(1) if g.ndim == 0 else g
        return _reverse_cumsum(ctx.device, g1, ctx.axis).reshape(ctx.shape), None


class CumProd(Function):
    """Running product along `axis`. Its gradient stays exact with zeros in the input:
    before the first zero of a lane, d y_i / d x_k = y_i / x_k; at the first zero z,
    sum over i >= z of g_i * (the running product with x_z taken as 1); after it, 0
    (every later running product holds x_z = 0 besides x_k)."""

    @staticmethod
    def forward(ctx, a, axis):
        dev = ctx.device
        flat = a.reshape(1) if a.ndim == 0 else a
        y = dev.cumprod(flat, axis=axis, dtype=_acc_dtype(a.dtype))
        ctx.saved = (flat, y)
        ctx.axis, ctx.shape = axis, a.shape
        return y.reshape(a.shape)

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved
        dev, axis = ctx.device, ctx.axis
        g = g.reshape(x.shape)
        n = x.shape[axis]
        if x.size == 0:
            return dev.zeros(ctx.shape, dtype=g.dtype), None
        zero = x == 0
        if not zero.any():
            return (_reverse_cumsum(dev, g * y, axis) / x).reshape(ctx.shape), None
        has_zero = zero.any(axis=axis, keepdims=True)
        first = dev.argmax(zero, axis=axis, keepdims=True)  # first zero of a lane (0 when none)
        position = dev.arange(n).reshape([n if d == axis else 1 for d in range(x.ndim)])
        before = (position < first) | ~has_zero
        one = x.dtype.type(1)
        grad = dev.where(before, _reverse_cumsum(dev, g * y, axis) / dev.where(before, x, one), 0).astype(g.dtype)
        # at the first zero: the running products with that zero replaced by 1
        x1 = x.copy()
        dev.put_along_axis(x1, first, one, axis=axis)
        tail = dev.where(position >= first, g * dev.cumprod(x1, axis=axis), 0).sum(axis=axis, keepdims=True)
        at_zero = dev.where(has_zero, tail, dev.take_along_axis(grad, first, axis=axis)).astype(g.dtype)
        dev.put_along_axis(grad, first, at_zero, axis=axis)
        return grad.reshape(ctx.shape), None


class Prod(Function):
    """Product along `axis` (an int), or over every element (axis None). The gradient of
    x_k is g times the product of the others, made of the exclusive running products
    before and after k, so one zero or several give the exact result without dividing."""

    @staticmethod
    def forward(ctx, a, axis, keepdim):
        dev = ctx.device
        ctx.saved = a
        ctx.axis, ctx.keepdim = axis, keepdim
        flat = a.reshape(1) if a.ndim == 0 else a
        y = dev.asarray(dev.prod(flat, axis=axis, keepdims=keepdim, dtype=_acc_dtype(a.dtype)))
        return y.reshape(()) if a.ndim == 0 else y

    @staticmethod
    def backward(ctx, g):
        a = ctx.saved
        dev = ctx.device
        if ctx.axis is None:
            x, axis = a.reshape(-1), 0
            g = g.reshape(1)
        else:
            x, axis = (a.reshape(1) if a.ndim == 0 else a), ctx.axis
            if not ctx.keepdim and a.ndim:
                g = dev.expand_dims(g, axis)
            g = g.reshape([1 if d == axis else n for d, n in enumerate(x.shape)])
        if x.shape[axis] == 0:
            return dev.zeros(a.shape, dtype=g.dtype), None, None
        ones = dev.ones([1 if d == axis else n for d, n in enumerate(x.shape)], dtype=x.dtype)
        head = [slice(None)] * x.ndim
        head[axis] = slice(None, -1)
        tail = [slice(None)] * x.ndim
        tail[axis] = slice(1, None)
        # before[k] = x_0 ... x_{k-1}; after[k] = x_{k+1} ... x_{n-1}
        before = dev.cumprod(dev.concatenate([ones, x[tuple(head)]], axis=axis), axis=axis)
        after = _reverse(dev.cumprod(_reverse(dev.concatenate([x[tuple(tail)], ones], axis=axis), axis), axis=axis),
                         axis)
        return (g * before * after).reshape(a.shape), None, None
