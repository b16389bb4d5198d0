"""Views and data movement: reshape, transpose/permute, expand, squeeze/unsqueeze,
indexing (basic and integer-array), cat, stack."""

from ..autograd import Function


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError as exc:  # (NumPy's message names no op; -1 beside a 0 is ambiguous)
            raise ValueError(f"reshape: cannot reshape a tensor of shape {tuple(a.shape)} into {tuple(shape)} "
                             f"({exc})") from None

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.shape), None


class Permute(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, g):
        inverse = [0] * len(ctx.axes)
        for i, ax in enumerate(ctx.axes):
            inverse[ax] = i
        return g.transpose(inverse), None


class Transpose(Function):
    @staticmethod
    def forward(ctx, a, d0, d1):
        ctx.dims = (d0, d1)
        return a.swapaxes(d0, d1)

    @staticmethod
    def backward(ctx, g):
        return g.swapaxes(*ctx.dims), None, None


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        return ctx.device.broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return g, None  # the engine sums the broadcast axes back to the input's shape


def _is_basic(index):
    if isinstance(index, tuple):
        return all(_is_basic(i) for i in index)
    return index is None or index is Ellipsis or isinstance(index, (int, slice))


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.index, ctx.dtype = a.shape, index, a.dtype
        return ctx.device.asarray(a[index])

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        out = dev.zeros(ctx.shape, dtype=g.dtype)
        if _is_basic(ctx.index):
            out[ctx.index] = g
        else:
            dev.add_at(out, ctx.index, g)  # repeated indices accumulate
        return out, None


class Cat(Function):
    """Concatenation along dim. A 1-D array of size 0 among arrays of more dims is skipped
    (PyTorch's legacy rule; creation.cat checks the rest); its gradient is empty."""

    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        nd = max(a.ndim for a in arrays)
        ctx.sizes = [None if a.ndim == 1 and a.shape[0] == 0 and nd > 1 else a.shape[dim] for a in arrays]
        return ctx.device.concatenate([a for a, n in zip(arrays, ctx.sizes) if n is not None], axis=dim)

    @staticmethod
    def backward(ctx, g):
        out = [None]
        start = 0
        index = [slice(None)] * g.ndim
        for size, need in zip(ctx.sizes, ctx.needs_input_grad[1:]):
            if size is None:
                out.append(ctx.device.zeros((0,), dtype=g.dtype) if need else None)
            elif need:
                index[ctx.dim] = slice(start, start + size)
                out.append(g[tuple(index)])
            else:
                out.append(None)
            start += size or 0
        return tuple(out)


class Stack(Function):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        return ctx.device.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        index = [slice(None)] * g.ndim
        out = [None]
        for i, need in enumerate(ctx.needs_input_grad[1:]):
            index[ctx.dim] = i
            out.append(g[tuple(index)] if need else None)
        return tuple(out)
