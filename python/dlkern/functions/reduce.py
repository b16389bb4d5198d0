"""Reductions with dim/keepdim: sum, mean, max, min, var, logsumexp."""

from ..autograd import Function
from ..dtypes import summed


def _axes(dim, ndim):
    """The reduced axes of `dim` (None = all). A 0-d tensor takes dim 0 or -1, as PyTorch,
    and reduces over no axis (its one element)."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, int):
        dim = (dim,)
    out = []
    span = max(ndim, 1)
    for d in dim:
        if not -span <= d < span:
            raise IndexError(f"dimension out of range (expected to be in range of [{-span}, {span - 1}], "
                             f"but got {d})")
        if ndim:
            out.append(d % ndim)
    return tuple(out)


def _unreduced(ctx, g):
    """g with the reduced axes (ctx.axes) put back as size 1 where the forward dropped them."""
    if not ctx.keepdim and ctx.axes:
        return ctx.device.expand_dims(g, ctx.axes)
    return g


def _expand_back(dev, g, shape, axes, keepdim):
    """Broadcast a reduced gradient back to the input's shape."""
    if not keepdim and axes:
        g = dev.expand_dims(g, axes)
    return dev.broadcast_to(g, shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        axes = _axes(dim, a.ndim)
        ctx.shape, ctx.axes, ctx.keepdim = a.shape, axes, keepdim
        return ctx.device.asarray(summed(a, axes, keepdim))

    @staticmethod
    def backward(ctx, g):
        return _expand_back(ctx.device, g, ctx.shape, ctx.axes, ctx.keepdim), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        axes = _axes(dim, a.ndim)
        ctx.shape, ctx.axes, ctx.keepdim = a.shape, axes, keepdim
        count = 1
        for ax in axes:
            count *= a.shape[ax]
        ctx.count = count
        return ctx.device.asarray(summed(a, axes, keepdim, "mean"))

    @staticmethod
    def backward(ctx, g):
        return _expand_back(ctx.device, g / ctx.count, ctx.shape, ctx.axes, ctx.keepdim), None, None


class MaxAll(Function):
    """max/min over all elements (or a tuple of dims); ties share the gradient equally."""

    @staticmethod
    def forward(ctx, a, dim, keepdim, is_min):
        dev = ctx.device
        axes = _axes(dim, a.ndim)
        if a.size == 0:  # as PyTorch: an error only where a reduced dim is empty
            name = "amin" if is_min else "amax"
            if dim is None:
                raise RuntimeError(f"{name}(): expected a reduction dim to be specified for an empty tensor "
                                   f"(shape {a.shape})")
            for ax in axes:
                if a.shape[ax] == 0:
                    raise IndexError(f"{name}(): expected reduction dim {ax} to have non-zero size "
                                     f"(shape {a.shape})")
        y = (dev.amin if is_min else dev.amax)(a, axis=axes, keepdims=True)
        ctx.saved = (a, y)
        ctx.axes, ctx.keepdim = axes, keepdim
        return dev.asarray(y if keepdim else y.reshape([n for i, n in enumerate(a.shape) if i not in axes]))

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved
        dev = ctx.device
        mask = (a == y)
        count = mask.sum(axis=ctx.axes, keepdims=True)
        if not ctx.keepdim:
            g = dev.expand_dims(g, ctx.axes)
        return mask * (g / count), None, None, None


class MaxDim(Function):
    """max/min along one dim; the gradient goes to the index returned (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, dim, keepdim, is_min):
        dev = ctx.device
        axes = _axes(dim, a.ndim)
        if not axes:  # a 0-d tensor: its one element, index 0
            ctx.saved, ctx.axis = None, None
            return a.copy()
        (axis,) = axes
        if a.shape[axis] == 0:
            raise IndexError(f"max()/min() along dim {dim} of size 0")
        idx = (dev.argmin if is_min else dev.argmax)(a, axis=axis, keepdims=True)
        y = dev.take_along_axis(a, idx, axis=axis)
        ctx.saved = idx
        ctx.shape, ctx.axis, ctx.keepdim = a.shape, axis, keepdim
        ctx.indices = idx if keepdim else idx.squeeze(axis)
        return y if keepdim else y.squeeze(axis)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        idx = ctx.saved
        if ctx.axis is None:
            return g, None, None, None
        if not ctx.keepdim:
            g = dev.expand_dims(g, ctx.axis)
        out = dev.zeros(ctx.shape, dtype=g.dtype)
        dev.put_along_axis(out, idx, g, axis=ctx.axis)
        return out, None, None, None


class Var(Function):
    @staticmethod
    def forward(ctx, a, dim, correction, keepdim):
        dev = ctx.device
        axes = _axes(dim, a.ndim)
        count = 1
        for ax in axes:
            count *= a.shape[ax]
        mean = a.mean(axis=axes, keepdims=True)
        ctx.saved = (a, mean)
        ctx.axes, ctx.keepdim, ctx.denom = axes, keepdim, max(count - correction, 0)
        return dev.asarray(dev.var(a, axis=axes, ddof=correction, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        a, mean = ctx.saved
        g = _unreduced(ctx, g)
        # (no degrees of freedom left: PyTorch's gradient is NaN, from inf * 0)
        scale = 2.0 / ctx.denom if ctx.denom else float("inf")
        return g * scale * (a - mean), None, None, None


class LogSumExp(Function):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        dev = ctx.device
        axes = _axes(dim, a.ndim)
        if a.size == 0:  # log(sum of no terms) = -inf, as PyTorch (amax has no identity)
            lse = dev.full(tuple(1 if i in axes else n for i, n in enumerate(a.shape)), float("-inf"), dtype=a.dtype)
            ctx.saved = (a, lse)
            ctx.axes, ctx.keepdim = axes, keepdim
            return lse if keepdim else lse.reshape([n for i, n in enumerate(a.shape) if i not in axes])
        m = dev.amax(a, axis=axes, keepdims=True)
        m = dev.where(dev.abs(m) == float("inf"), 0, m).astype(a.dtype, copy=False)
        lse = dev.log(dev.exp(a - m).sum(axis=axes, keepdims=True)) + m
        ctx.saved = (a, lse)
        ctx.axes, ctx.keepdim = axes, keepdim
        return lse if keepdim else lse.reshape([n for i, n in enumerate(a.shape) if i not in axes])

    @staticmethod
    def backward(ctx, g):
        a, lse = ctx.saved
        g = _unreduced(ctx, g)
        return g * ctx.device.exp(a - lse), None, None
