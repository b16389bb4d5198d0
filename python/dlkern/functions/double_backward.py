"""Double backward: each Function's ``backward_graph(ctx, grad)``, its backward written
with differentiable Tensor ops, used only by the create_graph engine
(autograd/higher.py). The array ``backward`` beside each forward stays the first-order
path, untouched and as fast as before.

They are attached here, family by family, rather than written into each class, so
that the first-order files stay as they were and this path can be read (and checked
against finite differences) in one place. A backward_graph gets ``g`` (a Tensor) and
returns one Tensor or None per forward argument; broadcast gradients are summed back
by the engine. Inputs come from ``arg(ctx, i, array, g)``: the input Tensor itself when
it requires grad (so the recorded backward leads back to it), else a constant.

Rules used throughout: a linear op's backward is again linear, so its backward_graph
calls another linear Function whose own backward_graph calls the first (GetItem <->
IndexAdd); piecewise-constant factors (relu's mask, abs's sign, max's winners) are
constants, as in PyTorch."""

import math

import numpy as np

from ..autograd import Function, TensorBase
from ..autograd.higher import arg, const
from . import activation as _act
from . import elementwise as _el
from . import linalg as _la
from . import reduce as _red
from . import shape as _sh
from .convert import Cast


def _attach(cls):
    """Decorator: the function becomes cls.backward_graph."""
    def put(fn):
        cls.backward_graph = staticmethod(fn)
        return fn
    return put


def _x(ctx, g):
    """The one input of a unary op (it requires grad, or there would be no node)."""
    return ctx.parents[0]


def _mask(g, cond):
    """A boolean array as a constant Tensor of g's dtype."""
    return const(g, cond.astype(g.data.dtype))


class IndexAdd(Function):
    """zeros(shape) with g added at `index` (repeated indices accumulate): GetItem's
    backward, as a Function so that it can be differentiated again."""

    @staticmethod
    def forward(ctx, g, shape, index):
        ctx.index = index
        dev = ctx.device
        out = dev.zeros(shape, dtype=g.dtype)
        if _sh._is_basic(index):
            out[index] = g
        else:
            dev.add_at(out, index, g)
        return out

    @staticmethod
    def backward(ctx, u):
        return ctx.device.asarray(u[ctx.index]), None, None

    @staticmethod
    def backward_graph(ctx, u):
        return _sh.GetItem.apply(u, ctx.index), None, None


# ---------------------------------------------------------------- arithmetic


@_attach(_el.Add)
def _add(ctx, g):
    return g, g


@_attach(_el.Sub)
def _sub(ctx, g):
    return g, (-g if ctx.needs_input_grad[1] else None)


@_attach(_el.Neg)
def _neg(ctx, g):
    return -g


@_attach(_el.Mul)
def _mul(ctx, g):
    a, b = ctx.saved
    need = ctx.needs_input_grad
    return (g * arg(ctx, 1, b, g) if need[0] else None), (g * arg(ctx, 0, a, g) if need[1] else None)


@_attach(_el.Div)
def _div(ctx, g):
    a, b = ctx.saved
    need = ctx.needs_input_grad
    B = arg(ctx, 1, b, g)
    ga = g / B if need[0] else None
    gb = -g * arg(ctx, 0, a, g) / (B * B) if need[1] else None
    return ga, gb


@_attach(_el.Pow)
def _pow(ctx, g):
    a, b, _ = ctx.saved
    need = ctx.needs_input_grad
    A, B = arg(ctx, 0, a, g), arg(ctx, 1, b, g)
    ga = g * B * A ** (B - 1) if need[0] else None
    gb = None
    if need[1]:
        # d(a^b)/db = a^b log a, taken as 0 where a <= 0 (as the first-order backward)
        if not isinstance(A, TensorBase):
            log_a = math.log(A) if A > 0 else 0.0
        else:
            log_a = _el.MaskedFill.apply(A, a <= 0, 1.0).log()
        gb = g * A ** B * log_a
    return ga, gb


@_attach(_el.Exp)
def _exp(ctx, g):
    return g * _x(ctx, g).exp()


@_attach(_el.Log)
def _log(ctx, g):
    return g / _x(ctx, g)


@_attach(_el.Sqrt)
def _sqrt(ctx, g):
    return g / (2 * _x(ctx, g).sqrt())


@_attach(_el.Abs)
def _abs(ctx, g):
    return g * const(g, ctx.device.sign(ctx.saved).astype(g.data.dtype, copy=False))


@_attach(_el.Sin)
def _sin(ctx, g):
    return g * _x(ctx, g).cos()


@_attach(_el.Cos)
def _cos(ctx, g):
    return -g * _x(ctx, g).sin()


@_attach(_el.Erf)
def _erf(ctx, g):
    x = _x(ctx, g)
    return g * (2.0 / math.sqrt(math.pi)) * (-(x * x)).exp()


@_attach(_el.Clamp)
def _clamp(ctx, g):
    # The first-order masks, as constants: the gradient is g routed by them.
    a, lo, hi = ctx.saved
    need = ctx.needs_input_grad
    mask = np.ones(a.shape, bool) if lo is None else a >= lo
    if hi is not None:
        mask = mask & (a <= hi)
    ga = g * _mask(g, ctx.device.asarray(mask)) if need[0] else None
    glo = ghi = None
    if need[1]:
        pick = (a < lo) & (lo < hi) if hi is not None else a < lo
        glo = g * _mask(g, ctx.device.asarray(pick))
    if need[2]:
        pick = (a > hi) | (hi < lo) if lo is not None else a > hi
        ghi = g * _mask(g, ctx.device.asarray(pick))
    return ga, glo, ghi


@_attach(_el.Where)
def _where(ctx, g):
    cond = ctx.device.asarray(ctx.saved)
    need = ctx.needs_input_grad
    ga = g * _mask(g, cond) if need[1] else None
    gb = g * _mask(g, ~cond) if need[2] else None
    return None, ga, gb


@_attach(_el.Maximum)
def _maximum(ctx, g):
    a, b = ctx.saved
    wa = ((a < b) if ctx.is_min else (a > b)) + 0.5 * (a == b)
    need = ctx.needs_input_grad
    ga = g * _mask(g, wa) if need[0] else None
    gb = g * _mask(g, 1 - wa) if need[1] else None
    return ga, gb, None


@_attach(_el.MaskedFill)
def _masked_fill(ctx, g):
    need = ctx.needs_input_grad
    filled = _mask(g, ctx.device.asarray(ctx.saved) & np.ones(g.data.shape, bool))
    ga = g * (1 - filled) if need[0] else None
    gv = (g * filled).sum().to(ctx.value_dtype) if need[2] else None
    return ga, None, gv


# ---------------------------------------------------------------- activations


@_attach(_act.Tanh)
def _tanh(ctx, g):
    t = _x(ctx, g).tanh()
    return g * (1 - t * t)


@_attach(_act.Sigmoid)
def _sigmoid(ctx, g):
    s = _x(ctx, g).sigmoid()
    return g * s * (1 - s)


@_attach(_act.Relu)
def _relu(ctx, g):
    return g * _mask(g, ctx.saved > 0)


@_attach(_act.LeakyRelu)
def _leaky_relu(ctx, g):
    a = ctx.saved
    return g * const(g, ctx.device.where(a > 0, 1, ctx.slope).astype(g.data.dtype)), None


@_attach(_act.Elu)
def _elu(ctx, g):
    a, _ = ctx.saved
    pos = _mask(g, a > 0)
    x = _x(ctx, g)
    return g * (pos + (1 - pos) * ctx.alpha * _el.Clamp.apply(x, None, 0.0).exp()), None


@_attach(_act.Selu)
def _selu(ctx, g):
    pos = _mask(g, ctx.saved > 0)
    neg = _act.SELU_ALPHA * _el.Clamp.apply(_x(ctx, g), None, 0.0).exp()
    return g * (_act.SELU_SCALE * (pos + (1 - pos) * neg)), None


@_attach(_act.Gelu)
def _gelu(ctx, g):
    _, approximate = ctx.saved
    x = _x(ctx, g)
    if approximate == "tanh":
        k = math.sqrt(2.0 / math.pi)
        t = (k * (x + 0.044715 * x * x * x)).tanh()
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (k * (1 + 3 * 0.044715 * x * x))
    else:
        cdf = 0.5 * (1 + _el.Erf.apply(x * (1 / math.sqrt(2.0))))
        d = cdf + x * (-0.5 * x * x).exp() * (1 / math.sqrt(2 * math.pi))
    return g * d, None


@_attach(_act.Softplus)
def _softplus(ctx, g):
    linear = _mask(g, ctx.saved > ctx.threshold)
    return g * (linear + (1 - linear) * (_x(ctx, g) * ctx.beta).sigmoid()), None, None


@_attach(_act.Silu)
def _silu(ctx, g):
    x = _x(ctx, g)
    s = x.sigmoid()
    return g * s * (1 + x * (1 - s))


# ---------------------------------------------------------------- shape


@_attach(_sh.Reshape)
def _reshape(ctx, g):
    return _sh.Reshape.apply(g, ctx.shape), None


@_attach(_sh.Permute)
def _permute(ctx, g):
    inverse = [0] * len(ctx.axes)
    for i, ax in enumerate(ctx.axes):
        inverse[ax] = i
    return _sh.Permute.apply(g, tuple(inverse)), None


@_attach(_sh.Transpose)
def _transpose(ctx, g):
    return _sh.Transpose.apply(g, *ctx.dims), None, None


@_attach(_sh.Expand)
def _expand(ctx, g):
    return g, None


@_attach(_sh.GetItem)
def _getitem(ctx, g):
    return IndexAdd.apply(g, ctx.shape, ctx.index), None


@_attach(_sh.Cat)
def _cat(ctx, g):
    out = [None]
    start = 0
    index = [slice(None)] * g.data.ndim
    for size, need in zip(ctx.sizes, ctx.needs_input_grad[1:]):
        if size is None or not need:
            out.append(const(g, ctx.device.zeros((0,), dtype=g.data.dtype)) if need else None)
        else:
            index[ctx.dim] = slice(start, start + size)
            out.append(_sh.GetItem.apply(g, tuple(index)))
        start += size or 0
    return tuple(out)


@_attach(_sh.Stack)
def _stack(ctx, g):
    index = [slice(None)] * g.data.ndim
    out = [None]
    for i, need in enumerate(ctx.needs_input_grad[1:]):
        index[ctx.dim] = i
        out.append(_sh.GetItem.apply(g, tuple(index)) if need else None)
    return tuple(out)


@_attach(Cast)
def _cast(ctx, g):
    return (g if g.data.dtype == ctx.src else Cast.apply(g, ctx.src)), None


# ---------------------------------------------------------------- reductions


def _unreduced(ctx, g):
    """g with the reduced axes back as size 1 (as reduce._unreduced, on a Tensor)."""
    if ctx.keepdim or not ctx.axes:
        return g
    shape = list(g.data.shape)
    for ax in sorted(ctx.axes):
        shape.insert(ax, 1)
    return _sh.Reshape.apply(g, tuple(shape))


@_attach(_red.Sum)
def _sum(ctx, g):
    return _sh.Expand.apply(_unreduced(ctx, g), ctx.shape), None, None


@_attach(_red.Mean)
def _mean(ctx, g):
    return _sh.Expand.apply(_unreduced(ctx, g / ctx.count), ctx.shape), None, None


@_attach(_red.MaxAll)
def _max_all(ctx, g):
    a, y = ctx.saved
    mask = a == y
    weight = mask / mask.sum(axis=ctx.axes, keepdims=True)
    return _unreduced(ctx, g) * const(g, weight.astype(g.data.dtype)), None, None, None


@_attach(_red.MaxDim)
def _max_dim(ctx, g):
    if ctx.axis is None:
        return g, None, None, None
    dev = ctx.device
    onehot = dev.zeros(ctx.shape, dtype=g.data.dtype)
    dev.put_along_axis(onehot, ctx.saved, 1, axis=ctx.axis)
    gu = g if ctx.keepdim else _sh.Reshape.apply(g, ctx.saved.shape)
    return gu * const(g, onehot), None, None, None


@_attach(_red.Var)
def _var(ctx, g):
    x = _x(ctx, g)
    scale = 2.0 / ctx.denom if ctx.denom else float("inf")
    centred = x - _red.Mean.apply(x, ctx.axes, True)
    return _unreduced(ctx, g) * scale * centred, None, None, None


@_attach(_red.LogSumExp)
def _logsumexp(ctx, g):
    x = _x(ctx, g)
    return _unreduced(ctx, g) * (x - _red.LogSumExp.apply(x, ctx.axes, True)).exp(), None, None


# ---------------------------------------------------------------- matrix products


def _mT(t):
    return _sh.Transpose.apply(t, t.data.ndim - 2, t.data.ndim - 1)


@_attach(_la.MatMul)
def _matmul(ctx, g):
    # As the first-order backward: 1-D operands promoted, broadcast batch axes summed
    # back by the engine.
    a, b = ctx.saved
    need = ctx.needs_input_grad
    A, B = arg(ctx, 0, a, g), arg(ctx, 1, b, g)
    A2 = _sh.GetItem.apply(A, (None, slice(None))) if a.ndim == 1 else A
    B2 = _sh.GetItem.apply(B, (slice(None), None)) if b.ndim == 1 else B
    g2 = g
    if b.ndim == 1:
        g2 = _sh.GetItem.apply(g2, (Ellipsis, None))
    if a.ndim == 1:
        g2 = _sh.GetItem.apply(g2, (Ellipsis, None, slice(None)))
    ga = gb = None
    if need[0]:
        ga = _la.MatMul.apply(g2, _mT(B2))
        if a.ndim == 1:
            ga = _sh.GetItem.apply(ga, (Ellipsis, 0, slice(None)))
    if need[1]:
        gb = _la.MatMul.apply(_mT(A2), g2)
        if b.ndim == 1:
            gb = _sh.GetItem.apply(gb, (Ellipsis, slice(None), 0))
    return ga, gb


@_attach(_la.Linear)
def _linear(ctx, g):
    x2, weight, shape = ctx.saved
    need = ctx.needs_input_grad
    W = arg(ctx, 1, weight, g)
    g2 = g if g.data.ndim == 2 else _sh.Reshape.apply(g, (-1, g.data.shape[-1]))
    gx = gw = gb = None
    if need[0]:
        gx = _la.MatMul.apply(g2, W)
        if len(shape) != 2:
            gx = _sh.Reshape.apply(gx, shape)
    if need[1]:
        X = arg(ctx, 0, x2, g)
        X2 = X if X.data.ndim == 2 else _sh.Reshape.apply(X, x2.shape)
        gw = _la.MatMul.apply(_mT(g2), X2)
    if need[2]:
        gb = g2.sum(dim=0)
    return gx, gw, gb
