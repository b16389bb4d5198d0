"""Double backward of the remaining linear and composite ops: flip, roll, repeat,
index_select, diag, cumsum, embedding, scatter_add, max_unpool2d, rope, the device copy,
conv_transpose, lerp, rms_norm, vector_norm, baddbmm, einsum, interpolation (Resample) and the
max pools by index (max_pool1d, adaptive_max_pool2d) (see double_backward.py for the
convention; LinearMap and the conv gradient Functions are in double_backward_conv.py)."""

import math
import types

import numpy as np

from ..autograd import TensorBase
from ..autograd.higher import arg, const
from . import attention as _att
from . import conv_transpose as _ct
from . import double_backward as _db
from . import einsum as _es
from . import linalg as _la
from . import indexing as _ix
from . import lerp as _lerp
from . import nn as _nn
from . import reduce as _red
from . import resample as _rs
from . import scan as _scan
from . import shape as _sh
from . import vector_norm as _vn
from .convert import ToDevice
from .double_backward_conv import ConvGradWeight, LinearMap
from .double_backward_nn import _via_composite

_attach = _db._attach


@_attach(_ix.Flip)
def _flip(ctx, g):
    return _ix.Flip.apply(g, ctx.dims), None


@_attach(_ix.Roll)
def _roll(ctx, g):
    return _ix.Roll.apply(g, [-s for s in ctx.shifts], ctx.dims), None, None


@_attach(_ix.Repeat)
def _repeat(ctx, g):
    pairs = _sh.Reshape.apply(g, ctx.pairs)
    return _sh.Reshape.apply(_red.Sum.apply(pairs, tuple(range(0, len(ctx.pairs), 2)), False), ctx.shape), None


@_attach(_ix.IndexSelect)
def _index_select(ctx, g):
    if not ctx.shape:
        return g, None, None
    dim, index = ctx.dim, ctx.index
    backward = _ix.IndexSelect.backward

    def run(dev, g):
        return backward(ctx, g)[0]

    def transposed(dev, u):
        return dev.take(u, index, dim)

    return LinearMap.apply(g, run, transposed), None, None


@_attach(_ix.Diag)
def _diag(ctx, g):
    shape, k = ctx.shape, ctx.k
    if len(shape) == 1:
        return _ix.Diag.apply(g, k), None  # the diagonal of the square gradient

    def run(dev, g):
        return _ix.with_diagonal(dev, g, k, shape)

    def transposed(dev, u):
        return _ix.diagonal_of(dev, u, k)

    return LinearMap.apply(g, run, transposed), None


@_attach(_scan.CumSum)
def _cumsum(ctx, g):
    axis, shape = ctx.axis, ctx.shape

    def run(dev, g):
        g1 = g.reshape(1) if g.ndim == 0 else g
        return _scan._reverse_cumsum(dev, g1, axis).reshape(shape)

    def transposed(dev, u):
        u1 = u.reshape(1) if u.ndim == 0 else u
        return dev.cumsum(u1, axis=axis).reshape(shape)

    return LinearMap.apply(g, run, transposed), None


@_attach(_nn.Embedding)
def _embedding(ctx, g):
    # (everything captured here: ctx.saved is freed after this node when the recorded
    # backward does not retain the graph, and `run` may be called at a later order)
    indices, padding_idx, shape = ctx.saved, ctx.padding_idx, ctx.shape

    def run(dev, g):
        dw = dev.zeros(shape, dtype=g.dtype)
        dev.add_at(dw, indices, g)
        if padding_idx is not None:
            dw[padding_idx] = 0
        return dw

    def transposed(dev, u):
        out = u[indices]
        if padding_idx is not None:  # that row never receives a gradient
            out = out * (indices != padding_idx)[..., None]
        return out

    return LinearMap.apply(g, run, transposed), None, None


@_attach(_ix.ScatterAdd)
def _scatter_add(ctx, g):
    src = _src_grad(ctx, g) if ctx.needs_input_grad[3] else None
    return g, None, None, src


def _src_grad(ctx, g):
    """scatter's / scatter_add's src gradient, g gathered at the written positions; its
    transpose is the scatter-add of u there."""
    dim, index, src_shape, out_shape = ctx.dim, ctx.index, ctx.src_shape, g.data.shape

    def run(dev, g):
        return _ix.scattered_src_grad(dev, g, dim, index, src_shape)

    def transposed(dev, u):
        used = u[tuple(slice(0, n) for n in index.shape)]
        return _ix.add_along(dev, dev.zeros(out_shape, dtype=u.dtype), dim, index, used)

    return LinearMap.apply(g, run, transposed)


@_attach(_nn.MaxUnpool2d)
def _max_unpool2d(ctx, g):
    flat, shape, out_shape = ctx.saved, ctx.shape, g.data.shape

    def run(dev, g):
        return g.reshape(-1)[flat].reshape(shape)

    def transposed(dev, u):
        out = dev.zeros((int(np.prod(out_shape)),), dtype=u.dtype)
        dev.put_along_axis(out, flat, u.reshape(-1), 0)
        return out.reshape(out_shape)

    return LinearMap.apply(g, run, transposed), None, None


@_attach(_att.Rope)
def _rope(ctx, g):
    args = ctx.args

    def run(dev, g):
        return dev.rope_backward(dev.contiguous(g), *args)

    def transposed(dev, u):
        return dev.rope(dev.contiguous(u), *args)

    return LinearMap.apply(g, run, transposed), None, None


@_attach(ToDevice)
def _to_device(ctx, g):
    return ToDevice.apply_to(g, ctx.source)


_CONV_OF = {_ct.ConvTranspose2d: _nn.Conv2d, _ct.ConvTranspose1d: _nn.Conv1d}


def _conv_transpose(ctx, g):
    # y = the conv input gradient of x: dx = conv(g, w), dw = the conv weight gradient
    # with x in the output gradient's role (module docstring of conv_transpose.py).
    xe, weight = ctx.saved
    if tuple(xe.shape) != tuple(ctx.in_shape):  # zero columns appended (output_padding >= stride)
        from ..autograd.higher import _fallback
        return _fallback(ctx, g)
    conv = _CONV_OF[type(ctx)]
    need = ctx.needs_input_grad
    dx = conv.apply(g, arg(ctx, 1, weight, g), None, *ctx.args) if need[0] else None
    dw = ConvGradWeight.apply(arg(ctx, 0, xe, g), g, weight, conv, ctx.args) if need[1] else None
    db = _red.Sum.apply(g, (0,) + tuple(range(2, g.data.ndim)), False) if need[2] else None
    return (dx, dw, db) + (None,) * 6


_ct.ConvTranspose2d.backward_graph = staticmethod(_conv_transpose)
_ct.ConvTranspose1d.backward_graph = staticmethod(_conv_transpose)


@_attach(_lerp.Lerp)
def _lerp_graph(ctx, g):
    diff, w = ctx.saved
    need = ctx.needs_input_grad
    W = arg(ctx, 2, w, g)
    gd = None
    if need[2]:
        A, B = ctx.parents[0], ctx.parents[1]
        if A is None and B is None:
            gd = g * const(g, diff)
        elif A is None:
            gd = g * (B - const(g, B.data - diff))
        elif B is None:
            gd = g * (const(g, A.data + diff) - A)
        else:
            gd = g * (B - A)
    return (g * (1 - W) if need[0] else None), (g * W if need[1] else None), gd


@_attach(_nn.RMSNorm)
def _rms_norm(ctx, g):
    x, weight, _, normalized_shape, eps = ctx.saved
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps  # the kernel's default, as PyTorch

    def composite(X, _shape, W, _eps):
        y = X / (_red.Mean.apply(X * X, axes, True) + eps).sqrt()
        if W is not None:
            y = y * (W if isinstance(W, TensorBase) else const(y, W))
        return y

    W = arg(ctx, 2, weight, g) if weight is not None else None
    return _via_composite(ctx, g, composite, (ctx.parents[0], None, W, None))


@_attach(_vn.VectorNorm)
def _vector_norm(ctx, g):
    p, axes, keepdim = ctx.ord, ctx.axes, ctx.keepdim
    if p == 0:
        return None, None, None, None
    if p not in (1, math.inf, -math.inf) and (ctx.saved[1] == 0).any():
        # A zero norm: the first-order backward's subgradient 0 has no smooth composite
        # (which would give 0/0 = NaN): first order only there.
        from ..autograd.higher import _fallback
        return _fallback(ctx, g)

    def composite(X, *_):
        a = X.abs()
        if math.isinf(p):
            return _red.MaxAll.apply(a, axes, keepdim, p < 0)
        if p == 1:
            return _red.Sum.apply(a, axes, keepdim)
        if p == 2:
            return _red.Sum.apply(X * X, axes, keepdim).sqrt()
        return _red.Sum.apply(a ** p, axes, keepdim) ** (1.0 / p)

    return _via_composite(ctx, g, composite, (ctx.parents[0], None, None, None))



@_attach(_es.BaddBmm)
def _baddbmm(ctx, g):
    a, b = ctx.saved
    need = ctx.needs_input_grad
    beta, alpha = ctx.beta, ctx.alpha
    gc = (g if beta == 1 else g * beta) if need[0] else None
    ga = gb = None
    if need[1]:
        ga = _la.MatMul.apply(g, _db._mT(arg(ctx, 2, b, g)))
        ga = ga if alpha == 1 else ga * alpha
    if need[2]:
        gb = _la.MatMul.apply(_db._mT(arg(ctx, 1, a, g)), g)
        gb = gb if alpha == 1 else gb * alpha
    return gc, ga, gb, None, None


@_attach(_es.Einsum)
def _einsum(ctx, g):
    # As _operand_grad: operand i's gradient is the einsum of g with the other operands
    # into i's letters, summed where a size 1 broadcast and expanded along letters only
    # i has. A repeated letter (a diagonal) has no Tensor form here: first order only.
    terms, out = ctx.spec
    ops = ctx.saved
    if any(len(set(t)) != len(t) for t in terms):
        from ..autograd.higher import _fallback
        return _fallback(ctx, g)
    tensors = [arg(ctx, i + 1, x, g) for i, x in enumerate(ops)]
    result = [None]
    for i, (term, x) in enumerate(zip(terms, ops)):
        if not ctx.needs_input_grad[i + 1]:
            result.append(None)
            continue
        size = dict(zip(term, x.shape))
        others = [t for j, t in enumerate(terms) if j != i]
        reach = set(out).union(*others)
        keep = [c for c in term if c in reach]
        gx = _es.Einsum.apply(((out,) + tuple(others), "".join(keep)), g,
                              *(t for j, t in enumerate(tensors) if j != i))
        summed = tuple(a for a, c in enumerate(keep) if size[c] == 1 and gx.data.shape[a] != 1)
        if summed:
            gx = _red.Sum.apply(gx, summed, True)
        if len(keep) != len(term):
            gx = _sh.Reshape.apply(gx, tuple(gx.data.shape[keep.index(c)] if c in reach else 1 for c in term))
        result.append(_sh.Expand.apply(gx, tuple(size[c] for c in term)))
    return tuple(result)


@_attach(_rs.Resample)
def _resample(ctx, g):
    # Linear (interpolation weights and indices are constants): the backward's transpose
    # is the forward, run on a scratch ctx (it only records the plan there).
    plan, axis = ctx.plan, ctx.axis

    def run(dev, g):
        return _rs.Resample.backward(ctx, g)[0]  # (reads ctx.plan/axis/shape, never freed)

    def transposed(dev, u):
        return _rs.Resample.forward(types.SimpleNamespace(device=dev), u, plan, axis)

    return LinearMap.apply(g, run, transposed), None, None


@_attach(_rs.MaxByIndex)
def _max_by_index(ctx, g):
    indices, shape = ctx.saved, ctx.shape
    lead = shape[:-2]

    def run(dev, g):
        return dev.max_pool2d_backward(dev.contiguous(g), indices, shape)

    def transposed(dev, u):
        plane = dev.contiguous(u).reshape(lead + (-1,))
        flat = indices.reshape(lead + (-1,))
        return dev.take_along_axis(plane, flat, len(lead)).reshape(indices.shape)

    return LinearMap.apply(g, run, transposed), None, None


@_attach(_ix.Scatter)
def _scatter(ctx, g):
    # Both gradients are linear in g: a's is g with the overwritten positions zeroed (a
    # constant mask), src's reads g at the written positions (scatter_add's map).
    dev, dim, index = ctx.device, ctx.dim, ctx.index
    need = ctx.needs_input_grad
    ga = gs = None
    if need[0]:
        keep = dev.ones(g.data.shape, dtype=g.data.dtype)
        if index.size:
            dev.put_along_axis(keep[_ix.lead_slices(index.shape, dim)], index, keep.dtype.type(0), dim)
        ga = g * const(g, keep)
    if need[3]:
        gs = _src_grad(ctx, g)
    return ga, None, None, gs


def _log_abs_form(ctx, g, reduce_log):
    """Prod and CumProd away from zeros: y = sign * exp(reduce(log |x|)), the signs a
    constant (the same product of the signs). With a zero in the input the first-order
    backward's exact exclusive products have no smooth Tensor form here: first order only."""
    x = ctx.parents[0]
    dev = ctx.device
    a = x.data
    if a.dtype.kind != "f" or not bool((a != 0).all()):
        from ..autograd.higher import _fallback
        return _fallback(ctx, g)
    sign = dev.sign(a)

    def composite(X, *_):
        return const(X, reduce_log(dev, sign, None)) * reduce_log(dev, None, X.abs().log()).exp()

    return _via_composite(ctx, g, composite, (x,) + (None,) * (len(ctx.parents) - 1))


@_attach(_scan.Prod)
def _prod(ctx, g):
    axis, keepdim = ctx.axis, ctx.keepdim

    def reduce_log(dev, sign, logs):
        if sign is not None:  # the product of the signs, shaped as the result
            flat = sign.reshape(1) if sign.ndim == 0 else sign
            out = dev.asarray(dev.prod(flat, axis=axis, keepdims=keepdim))
            return out.reshape(()) if sign.ndim == 0 else out
        if logs.data.ndim == 0:
            return logs
        return _red.Sum.apply(logs, axis, keepdim if axis is not None else False)

    return _log_abs_form(ctx, g, reduce_log)


@_attach(_scan.CumProd)
def _cumprod(ctx, g):
    axis, shape = ctx.axis, ctx.shape

    def reduce_log(dev, sign, logs):
        if sign is not None:
            flat = sign.reshape(1) if sign.ndim == 0 else sign
            return dev.cumprod(flat, axis=axis).reshape(shape)
        return _scan.CumSum.apply(logs, axis)

    return _log_abs_form(ctx, g, reduce_log)
