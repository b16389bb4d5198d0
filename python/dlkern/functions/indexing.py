"""Indexing and reordering: gather, scatter, scatter_add, index_select, flip, roll,
repeat, diag.

Every op computes through device primitives that both namespaces have (take,
take_along_axis, put_along_axis, add_at, basic views, concatenate, broadcast_to), so
they run on the CPU and on CUDA alike. The arguments arrive checked and normalised by
dlkern.tensor_indexing (dims non-negative, indices int64 and in range, 0-d inputs seen
as 1-D where the op needs an axis)."""

import numpy as np

from ..autograd import Function


def lead_slices(shape, dim):
    """The basic index that cuts an array down to `shape` on every axis but `dim`: gather
    and scatter address only the leading index.shape[d] entries of those axes (PyTorch's
    rule), while NumPy's *_along_axis would broadcast the index over the whole axis."""
    return tuple(slice(None) if d == dim else slice(0, n) for d, n in enumerate(shape))


def fresh_copy(dev, a):
    """A new C-contiguous array equal to `a` (ndarray.copy keeps a transposed layout, and
    the flat views below need C order)."""
    out = dev.empty(a.shape, dtype=a.dtype)
    out[...] = a
    return out


def flat_positions(dev, index, dim, shape):
    """For every element p of `index` (int64, one axis per axis of `shape`), the C-order
    flat position in an array of `shape` of the element p with p[dim] replaced by
    index[p]. One integer array over a flat view is what add_at takes on every device."""
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    lin = index * strides[dim]  # a new array, so the other axes add into it in place
    for d, n in enumerate(index.shape):
        if d != dim and n > 1:
            along = dev.arange(n, dtype=np.int64).reshape(tuple(n if e == d else 1 for e in range(index.ndim)))
            lin += along * strides[d]
    return lin.reshape(-1)


def add_along(dev, out, dim, index, values):
    """out[..., index[p], ...] += values[p] along `dim` (out fresh and C-contiguous),
    repeated indices accumulating."""
    if index.size:
        dev.add_at(out.reshape(-1), flat_positions(dev, index, dim, out.shape), values.reshape(-1))
    return out


def gather_grad(dev, g, dim, index, shape):
    """The gradient of gather: g added back at the gathered positions of zeros(shape)."""
    return add_along(dev, dev.zeros(shape, dtype=g.dtype), dim, index, g)


def scattered_src_grad(dev, g, dim, index, src_shape):
    """The gradient of scatter's src: the output gradient read back where each src element
    went; src elements beyond index's shape were never used (zero)."""
    picked = dev.take_along_axis(g[lead_slices(index.shape, dim)], index, dim)
    if tuple(src_shape) == tuple(index.shape):
        return picked
    out = dev.zeros(src_shape, dtype=g.dtype)
    out[tuple(slice(0, n) for n in index.shape)] = picked
    return out


class Gather(Function):
    """out[p] = a[p with p[dim] -> index[p]] (a and index of one ndim, at least 1)."""

    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim, ctx.index = a.shape, dim, index
        return ctx.device.take_along_axis(a[lead_slices(index.shape, dim)], index, dim)

    @staticmethod
    def backward(ctx, g):
        return gather_grad(ctx.device, g, ctx.dim, ctx.index, ctx.shape), None, None


class Scatter(Function):
    """A copy of a with a[p with p[dim] -> index[p]] = src[p] (src an array or a number)."""

    @staticmethod
    def forward(ctx, a, dim, index, src):
        dev = ctx.device
        is_array = isinstance(src, dev.array_type)
        ctx.dim, ctx.index = dim, index
        ctx.src_shape = src.shape if is_array else None
        out = fresh_copy(dev, a)
        if index.size:
            values = src[tuple(slice(0, n) for n in index.shape)] if is_array else a.dtype.type(src)
            dev.put_along_axis(out[lead_slices(index.shape, dim)], index, values, dim)
        return out

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        need = ctx.needs_input_grad
        ga = gs = None
        if need[0]:  # the overwritten elements get nothing
            ga = fresh_copy(dev, g)
            if ctx.index.size:
                dev.put_along_axis(ga[lead_slices(ctx.index.shape, ctx.dim)], ctx.index, g.dtype.type(0), ctx.dim)
        if need[3]:
            gs = scattered_src_grad(dev, g, ctx.dim, ctx.index, ctx.src_shape)
        return ga, None, None, gs


class ScatterAdd(Function):
    """A copy of a with src[p] added at a[p with p[dim] -> index[p]]; repeats accumulate."""

    @staticmethod
    def forward(ctx, a, dim, index, src):
        ctx.dim, ctx.index, ctx.src_shape = dim, index, src.shape
        used = src[tuple(slice(0, n) for n in index.shape)]
        return add_along(ctx.device, fresh_copy(ctx.device, a), dim, index, used)

    @staticmethod
    def backward(ctx, g):
        gs = scattered_src_grad(ctx.device, g, ctx.dim, ctx.index, ctx.src_shape) if ctx.needs_input_grad[3] else None
        return g, None, None, gs


class IndexSelect(Function):
    """a's entries index[0], index[1], ... along dim (index 1-D int64; a 0-d a is seen as
    1-D and the result is 0-d again)."""

    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim, ctx.index = a.shape, dim, index
        if a.ndim == 0:
            return ctx.device.take(a.reshape(1), index, 0).reshape(())
        return ctx.device.take(a, index, dim)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        if not ctx.shape:  # the one element of a 0-d a, selected once
            return g, None, None
        out = dev.zeros(ctx.shape, dtype=g.dtype)
        if ctx.index.size:
            # add_at indexes axis 0 on every device: swap dim to the front (views).
            dev.add_at(out.swapaxes(0, ctx.dim), ctx.index, g.swapaxes(0, ctx.dim))
        return out, None, None


def flipped(a, dims):
    """A new array: a reversed along each axis in dims."""
    return a[tuple(slice(None, None, -1) if d in dims else slice(None) for d in range(a.ndim))].copy()


class Flip(Function):
    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        return flipped(a, dims)

    @staticmethod
    def backward(ctx, g):
        return flipped(g, ctx.dims), None


def rolled(dev, a, shifts, dims):
    """A new array: a rolled by shifts[i] along dims[i] (two slices concatenated)."""
    out = a
    for s, d in zip(shifts, dims):
        n = out.shape[d]
        s = s % n if n else 0
        if s:
            head = tuple(slice(n - s, None) if e == d else slice(None) for e in range(out.ndim))
            tail = tuple(slice(0, n - s) if e == d else slice(None) for e in range(out.ndim))
            out = dev.concatenate([out[head], out[tail]], axis=d)
    return a.copy() if out is a else out


class Roll(Function):
    @staticmethod
    def forward(ctx, a, shifts, dims):
        ctx.shifts, ctx.dims = shifts, dims
        return rolled(ctx.device, a, shifts, dims)

    @staticmethod
    def backward(ctx, g):
        return rolled(ctx.device, g, [-s for s in ctx.shifts], ctx.dims), None, None


class Repeat(Function):
    """Tensor.repeat: a (with leading axes of size 1 added up to len(sizes)) tiled
    sizes[i] times along axis i. Each axis n becomes the pair (r, n), broadcast, then
    merged, so the gradient is a sum over the r axes."""

    @staticmethod
    def forward(ctx, a, sizes):
        shape = (1,) * (len(sizes) - a.ndim) + tuple(a.shape)
        pairs = []
        for r, n in zip(sizes, shape):
            pairs += [r, n]
        ctx.shape, ctx.pairs = a.shape, tuple(pairs)
        spread = a.reshape(tuple(v for n in shape for v in (1, n)))
        out = ctx.device.broadcast_to(spread, ctx.pairs).copy()
        return out.reshape(tuple(r * n for r, n in zip(sizes, shape)))

    @staticmethod
    def backward(ctx, g):
        summed = g.reshape(ctx.pairs).sum(axis=tuple(range(0, len(ctx.pairs), 2)))
        return summed.reshape(ctx.shape), None


def diagonal_slice(shape, k):
    """(length, the basic slice of a C-order flat view of a 2-D array of `shape` that
    holds its diagonal k)."""
    rows, cols = shape
    length = max(0, min(rows, cols - k) if k >= 0 else min(rows + k, cols))
    start = k if k >= 0 else -k * cols
    stop = start + (length - 1) * (cols + 1) + 1 if length else start
    return length, slice(start, stop, cols + 1)


def diagonal_of(dev, a, k):
    length, sl = diagonal_slice(a.shape, k)
    if not length:
        return dev.zeros((0,), dtype=a.dtype)
    return a.reshape(-1)[sl].copy()


def with_diagonal(dev, values, k, shape):
    """zeros(shape) with diagonal k set to values."""
    out = dev.zeros(shape, dtype=values.dtype)
    length, sl = diagonal_slice(shape, k)
    if length:
        out.reshape(-1)[sl] = values
    return out


class Diag(Function):
    """torch.diag: a 1-D a -> the square matrix with a on diagonal k; a 2-D a -> its
    diagonal k (a copy)."""

    @staticmethod
    def forward(ctx, a, k):
        ctx.shape, ctx.k = a.shape, k
        if a.ndim == 1:
            m = a.shape[0] + abs(k)
            return with_diagonal(ctx.device, a, k, (m, m))
        return diagonal_of(ctx.device, a, k)

    @staticmethod
    def backward(ctx, g):
        if len(ctx.shape) == 1:
            return diagonal_of(ctx.device, g, ctx.k), None
        return with_diagonal(ctx.device, g, ctx.k, ctx.shape), None
