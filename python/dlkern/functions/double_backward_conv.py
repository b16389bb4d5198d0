"""Double backward of convolution, pooling, gather and attention (see double_backward.py
for the convention).

Convolution is bilinear in (x, w), so its two gradients are again bilinear and need no
new kernel: with dx = Jx(w)^T g and dw = Jw(x)^T g,
  d<dx, u>/dg = conv(u, w)        d<dx, u>/dw = the weight gradient at input u,
  d<dw, u>/dg = conv(x, u)        d<dw, u>/dx = the input gradient at weight u,
all four being the forward and backward kernels already there (ConvGradInput and
ConvGradWeight below, differentiable to any order).

Pooling and gather are linear in their input (max pooling and gather with constant
indices), so their backward is a linear map whose transpose is again known:
``LinearMap(g, run, transposed)`` holds such a pair and swaps it at each order."""

from ..autograd import Function
from ..autograd.higher import arg, const
from . import attention as _att
from . import double_backward as _db
from . import indexing as _ix
from . import nn as _nn
from . import reduce as _red
from . import shape as _sh

_attach = _db._attach


class LinearMap(Function):
    """run(device, g) for a linear `run` whose vector-Jacobian product is
    transposed(device, u): the backward is the swapped pair, at every order."""

    @staticmethod
    def forward(ctx, g, run, transposed):
        ctx.pair = (run, transposed)
        return run(ctx.device, g)

    @staticmethod
    def backward(ctx, u):
        return ctx.pair[1](ctx.device, u), None, None

    @staticmethod
    def backward_graph(ctx, u):
        return LinearMap.apply(u, ctx.pair[1], ctx.pair[0]), None, None


# ---------------------------------------------------------------- convolution


def _conv_kernels(cls, dev):
    return getattr(dev, cls.forward_kernel), getattr(dev, cls.backward_kernel)


class ConvGradInput(Function):
    """dx of conv `cls` for output gradient g and weight w (x_like: an array of x's
    shape and dtype, which the kernel reads only for its shape here)."""

    @staticmethod
    def forward(ctx, g, w, x_like, cls, args):
        ctx.saved = (g, w, x_like)
        ctx.cls, ctx.args = cls, args
        _, bwd = _conv_kernels(cls, ctx.device)
        return bwd(ctx.device.contiguous(g), x_like, w, *args, need=(True, False, False))[0]

    @staticmethod
    def backward(ctx, u):
        g, w, _ = ctx.saved
        dev = ctx.device
        fwd, bwd = _conv_kernels(ctx.cls, dev)
        need = ctx.needs_input_grad
        dg = fwd(dev.contiguous(u), w, None, *ctx.args) if need[0] else None
        dw = bwd(dev.contiguous(g), dev.contiguous(u), w, *ctx.args, need=(False, True, False))[1] if need[1] else None
        return dg, dw, None, None, None

    @staticmethod
    def backward_graph(ctx, u):
        g, w, x_like = ctx.saved
        need = ctx.needs_input_grad
        dg = ctx.cls.apply(u, arg(ctx, 1, w, u), None, *ctx.args) if need[0] else None
        dw = ConvGradWeight.apply(arg(ctx, 0, g, u), u, w, ctx.cls, ctx.args) if need[1] else None
        return dg, dw, None, None, None


class ConvGradWeight(Function):
    """dw of conv `cls` for output gradient g and input x (w_like: an array of w's shape)."""

    @staticmethod
    def forward(ctx, g, x, w_like, cls, args):
        ctx.saved = (g, x, w_like)
        ctx.cls, ctx.args = cls, args
        _, bwd = _conv_kernels(cls, ctx.device)
        return bwd(ctx.device.contiguous(g), ctx.device.contiguous(x), w_like, *args, need=(False, True, False))[1]

    @staticmethod
    def backward(ctx, u):
        g, x, _ = ctx.saved
        dev = ctx.device
        fwd, bwd = _conv_kernels(ctx.cls, dev)
        need = ctx.needs_input_grad
        dg = fwd(dev.contiguous(x), dev.contiguous(u), None, *ctx.args) if need[0] else None
        dx = bwd(dev.contiguous(g), x, dev.contiguous(u), *ctx.args, need=(True, False, False))[0] if need[1] else None
        return dg, dx, None, None, None

    @staticmethod
    def backward_graph(ctx, u):
        g, x, w_like = ctx.saved
        need = ctx.needs_input_grad
        dg = ctx.cls.apply(arg(ctx, 1, x, u), u, None, *ctx.args) if need[0] else None
        dx = ConvGradInput.apply(arg(ctx, 0, g, u), u, x, ctx.cls, ctx.args) if need[1] else None
        return dg, dx, None, None, None


def _conv(ctx, g):
    x, w = ctx.saved
    cls = type(ctx)
    need = ctx.needs_input_grad
    dx = ConvGradInput.apply(g, arg(ctx, 1, w, g), x, cls, ctx.args) if need[0] else None
    dw = ConvGradWeight.apply(g, arg(ctx, 0, x, g), w, cls, ctx.args) if need[1] else None
    db = _red.Sum.apply(g, (0,) + tuple(range(2, g.data.ndim)), False) if need[2] else None
    return dx, dw, db, None, None, None, None


_nn.Conv2d.backward_graph = staticmethod(_conv)
_nn.Conv1d.backward_graph = staticmethod(_conv)


# ---------------------------------------------------------------- pooling, gather


@_attach(_nn.MaxPool2d)
def _max_pool2d(ctx, g):
    # dx scatters g to the argmax positions (constants); its transpose gathers there.
    indices, shape = ctx.saved, ctx.shape
    n, c = shape[0], shape[1]

    def run(dev, g):
        return dev.max_pool2d_backward(dev.contiguous(g), indices, shape)

    def transposed(dev, u):
        plane = dev.contiguous(u).reshape(n, c, -1)
        return dev.take_along_axis(plane, indices.reshape(n, c, -1), 2).reshape(indices.shape)

    return (LinearMap.apply(g, run, transposed),) + (None,) * 6


@_attach(_nn.AvgPool2d)
def _avg_pool2d(ctx, g):
    # Linear: the backward's transpose is the forward itself.
    shape, args = ctx.shape, ctx.args

    def run(dev, g):
        return dev.avg_pool2d_backward(dev.contiguous(g), shape, *args)

    def transposed(dev, u):
        return dev.avg_pool2d(dev.contiguous(u), *args)

    return (LinearMap.apply(g, run, transposed),) + (None,) * 6


@_attach(_nn.AdaptiveAvgPool2d)
def _adaptive_avg_pool2d(ctx, g):
    shape, out_hw = ctx.shape, tuple(g.data.shape[-2:])

    def run(dev, g):
        return dev.adaptive_avg_pool2d_backward(dev.contiguous(g), shape)

    def transposed(dev, u):
        return dev.adaptive_avg_pool2d(dev.contiguous(u), out_hw)

    return LinearMap.apply(g, run, transposed), None


@_attach(_ix.Gather)
def _gather(ctx, g):
    dim, index, shape = ctx.dim, ctx.index, ctx.shape

    def run(dev, g):
        return _ix.gather_grad(dev, g, dim, index, shape)

    def transposed(dev, u):
        return dev.take_along_axis(u[_ix.lead_slices(index.shape, dim)], index, dim)

    return LinearMap.apply(g, run, transposed), None, None


# ---------------------------------------------------------------- attention


@_attach(_att.ScaledDotProductAttention)
def _sdpa(ctx, g):
    q, k, v, _, _ = ctx.saved
    attn_mask, is_causal, scale, dropout_p, _ = ctx.args
    if dropout_p:
        # The kernel's dropout pattern has no Tensor form: first order only.
        from ..autograd.higher import _fallback
        return _fallback(ctx, g)
    hq, hkv = q.shape[1], k.shape[1]
    tq, tk = q.shape[2], k.shape[2]
    s = (q.shape[-1] ** -0.5) if scale is None else scale
    dev = ctx.device
    bias = None
    if attn_mask is not None:
        bias = attn_mask if attn_mask.dtype != bool else dev.where(attn_mask, 0.0, float("-inf")).astype(q.dtype)
    if is_causal:  # top-left aligned, as the kernel and PyTorch
        causal = dev.where(dev.tril(dev.ones((tq, tk), dtype=bool)), 0.0, float("-inf")).astype(q.dtype)
        bias = causal if bias is None else bias + causal

    def heads(t):  # grouped-query attention: each key/value head serves hq // hkv query heads
        if hq == hkv:
            return t
        b, _, n, d = t.data.shape
        t = _sh.Expand.apply(_sh.Reshape.apply(t, (b, hkv, 1, n, d)), (b, hkv, hq // hkv, n, d))
        return _sh.Reshape.apply(t, (b, hq, n, d))

    def composite(Q, K, V, *_):
        from .linalg import MatMul
        scores = MatMul.apply(Q, _sh.Transpose.apply(heads(K), 2, 3)) * s
        if bias is not None:
            scores = scores + const(scores, bias)
        return MatMul.apply(_nn.Softmax.apply(scores, 3), heads(V))

    args = (arg(ctx, 0, q, g), arg(ctx, 1, k, g), arg(ctx, 2, v, g)) + (None,) * 5
    from .double_backward_nn import _via_composite
    return _via_composite(ctx, g, composite, args)


@_attach(_att.MultiHeadAttention)
def _multi_head_attention(ctx, g):
    # Recomputed from the projections as Tensor ops: the head split, RoPE (a LinearMap
    # at higher orders), ScaledDotProductAttention (whose own backward_graph is above)
    # and the merge. The forward kept only the split heads, so an unpacked projection
    # that needs no gradient cannot be rebuilt: first order only then, as with dropout.
    qh, kh, _, _, _ = ctx.saved
    heads, kv = qh.shape[1], kh.shape[1]
    attn_mask, is_causal, scale, dropout_p, seed = ctx.args
    offset, base = ctx.rope
    parents = ctx.parents
    if dropout_p or (not ctx.packed and any(p is None for p in parents[:3])):
        from ..autograd.higher import _fallback
        return _fallback(ctx, g)

    def split(t, n):
        b, tt = t.data.shape[0], t.data.shape[1]
        return _sh.Permute.apply(_sh.Reshape.apply(t, (b, tt, n, -1)), (0, 2, 1, 3))

    def composite(Q, K, V, *_):
        if ctx.packed:
            x = split(Q, heads + 2 * kv)
            q, k, v = (_sh.GetItem.apply(x, (slice(None), slice(lo, hi)))
                       for lo, hi in ((0, heads), (heads, heads + kv), (heads + kv, heads + 2 * kv)))
        else:
            q, k, v = split(Q, heads), split(K, kv), split(V, kv)
        if offset is not None:
            q, k = _att.Rope.apply(q, offset, base), _att.Rope.apply(k, offset, base)
        out = _att.ScaledDotProductAttention.apply(q, k, v, attn_mask, is_causal, scale, dropout_p, seed)
        b, tq = out.data.shape[0], out.data.shape[2]
        return _sh.Reshape.apply(_sh.Permute.apply(out, (0, 2, 1, 3)), (b, tq, -1))

    from .double_backward_nn import _via_composite
    return _via_composite(ctx, g, composite, tuple(parents[:3]) + (None,) * 9)
