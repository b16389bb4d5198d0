"""Double backward of the layer ops: softmax / log_softmax, the losses (cross_entropy with
class targets, nll_loss, binary_cross_entropy) and the norms (layer, group, batch).
See double_backward.py for the convention.

The norms and cross_entropy are fused kernels whose backward has no Tensor form of its
own; their backward_graph recomputes the forward as a composition of differentiable
Tensor ops (the same formula as the kernel) and differentiates that with
create_graph (``_via_composite``): the recorded backward then is that composition's.
Only the create_graph path pays for the recomputation."""

from ..autograd import TensorBase
from ..autograd.higher import arg, const
from . import double_backward as _db
from . import elementwise as _el
from . import loss as _loss
from . import nn as _nn
from . import reduce as _red
from . import shape as _sh
from .convert import Cast
from .soft_loss import SoftCrossEntropy

_attach = _db._attach


def _via_composite(ctx, g, fn, args):
    """The gradients of fn(*args) (weighted by g) for each forward argument that
    requires grad, recorded. Those arguments enter fn as fresh aliases (a differentiable
    copy each), so that paths from one input through another are not counted twice."""
    from ..autograd.functional import grad
    alias = list(args)
    wanted = []
    for i, a in enumerate(args):
        if isinstance(a, TensorBase) and ctx.parents[i] is not None:
            alias[i] = Cast.apply(a, None)
            wanted.append(i)
    out = fn(*alias)
    grads = grad(out, [alias[i] for i in wanted], g, create_graph=True, allow_unused=True,
                 materialize_grads=True)
    result = [None] * len(args)
    for i, gi in zip(wanted, grads):
        result[i] = gi
    return tuple(result)


# ---------------------------------------------------------------- softmax


@_attach(_nn.Softmax)
def _softmax(ctx, g):
    x = ctx.parents[0]
    if x.data.ndim == 0:
        return g * 0.0, None
    y = _nn.Softmax.apply(x, ctx.dim)
    return y * (g - _red.Sum.apply(g * y, ctx.dim, True)), None


@_attach(_nn.LogSoftmax)
def _log_softmax(ctx, g):
    x = ctx.parents[0]
    if x.data.ndim == 0:
        return g * 0.0, None
    p = _nn.LogSoftmax.apply(x, ctx.dim).exp()
    return g - p * _red.Sum.apply(g, ctx.dim, True), None


# ---------------------------------------------------------------- losses


@_attach(_loss.CrossEntropy)
def _cross_entropy(ctx, g):
    x, target, _, weight = ctx.saved
    ignore_index, reduction, label_smoothing = ctx.args
    dev = ctx.device
    valid = target != ignore_index
    c = x.shape[1]

    def composite(X):
        # The kernel's definition (reference.cross_entropy_forward): (1 - ls) times
        # nll_loss of log_softmax over dim 1, plus ls / C times the weighted sum of -logp
        # over the classes for each non-ignored target; "mean" divides by the summed
        # target weights.
        logp = _nn.LogSoftmax.apply(X, 1)
        if not label_smoothing:
            return _loss.NLLLoss.apply(logp, target, weight, ignore_index, reduction)
        per = _loss.NLLLoss.apply(logp, target, weight, ignore_index, "none") * (1 - label_smoothing)
        wc = logp if weight is None else logp * const(logp, weight.reshape((1, c) + (1,) * (x.ndim - 2)))
        smooth = _red.Sum.apply(wc, (1,), False) * const(logp, valid.astype(x.dtype) * (-label_smoothing / c))
        per = per + smooth
        if reduction == "none":
            return per
        total = _red.Sum.apply(per, None, False)
        if reduction == "sum":
            return total
        safe = dev.where(valid, target, 0)
        wt = (weight[safe] if weight is not None else dev.ones(target.shape, dtype=x.dtype)) * valid
        return total / float(wt.sum())

    return _via_composite(ctx, g, composite, (ctx.parents[0],))[:1] + (None,) * 5


@_attach(SoftCrossEntropy)
def _soft_cross_entropy(ctx, g):
    # -sum_c w_c t_c log_softmax(x)_c over the class axis, then PyTorch's reduction for
    # probability targets (the mean divides by the number of samples).
    _, wt = ctx.saved
    axis, reduction, count = ctx.axis, ctx.reduction, ctx.count

    def composite(X):
        logp = _nn.LogSoftmax.apply(X, axis)
        per = -_red.Sum.apply(logp * const(logp, wt), (axis,), False)
        if reduction == "none":
            return per
        total = _red.Sum.apply(per, None, False)
        return total if reduction == "sum" else total / float(max(count, 1))

    return _via_composite(ctx, g, composite, (ctx.parents[0],))[:1] + (None,) * 3


@_attach(_loss.NLLLoss)
def _nll_loss(ctx, g):
    # Linear in the input: the gradient is g spread onto the picked entries with
    # constant coefficients (-w, over the total weight for "mean").
    dev = ctx.device
    safe_t, w = ctx.saved
    n = w.shape[0]
    coef = dev.zeros(ctx.x2shape, dtype=w.dtype)
    coef[dev.arange(n), safe_t] = -w / ctx.total if ctx.reduction == "mean" else -w
    if ctx.reduction == "none":
        dx2 = const(g, coef) * _sh.Reshape.apply(g, (n, 1))
    else:
        dx2 = const(g, coef) * g
    shape = ctx.shape
    if len(shape) <= 2:
        dx = _sh.Reshape.apply(dx2, shape)
    else:
        moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
        inverse = (0, len(shape) - 1) + tuple(range(1, len(shape) - 1))
        dx = _sh.Permute.apply(_sh.Reshape.apply(dx2, moved), inverse)
    return dx, None, None, None, None


@_attach(_loss.BinaryCrossEntropy)
def _binary_cross_entropy(ctx, g):
    p, y, weight = ctx.saved
    need = ctx.needs_input_grad
    P, Y = arg(ctx, 0, p, g), arg(ctx, 1, y, g)
    w = None if weight is None else const(g, weight)
    dp = dy = None
    if need[0]:
        dp = g * (P - Y) / _el.Clamp.apply(P * (1 - P), 1e-12, None)
        if w is not None:
            dp = dp * w
    if need[1]:
        dy = g * (_el.Clamp.apply((1 - P).log(), -100.0, None) - _el.Clamp.apply(P.log(), -100.0, None))
        if w is not None:
            dy = dy * w
    return dp, dy, None


# ---------------------------------------------------------------- norms


def _normalize(x, axes, eps):
    """(x - mean) / sqrt(biased var + eps) over `axes`, differentiable."""
    centred = x - _red.Mean.apply(x, axes, True)
    var = _red.Mean.apply(centred * centred, axes, True)
    return centred / (var + eps).sqrt()


def _affine(y, weight, bias, shape):
    if weight is not None:
        y = y * (_sh.Reshape.apply(weight, shape) if isinstance(weight, TensorBase) else const(y, weight.reshape(shape)))
    if isinstance(bias, TensorBase):
        y = y + _sh.Reshape.apply(bias, shape)
    return y


def _bias(ctx, i):
    # A constant bias changes no derivative, so only a bias that requires grad enters.
    return ctx.parents[i]


@_attach(_nn.LayerNorm)
def _layer_norm(ctx, g):
    x, weight, _, _, normalized_shape, eps = ctx.saved
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    shape = tuple(normalized_shape)

    def composite(X, _shape, W, B, _eps):
        return _affine(_normalize(X, axes, eps), W, B, shape)

    W = arg(ctx, 2, weight, g) if weight is not None else None
    return _via_composite(ctx, g, composite, (ctx.parents[0], None, W, _bias(ctx, 3), None))


@_attach(_nn.GroupNorm)
def _group_norm(ctx, g):
    x, weight, _, _, groups, eps = ctx.saved
    n, c = x.shape[0], x.shape[1]
    grouped = (n, groups, -1)
    shape = (1, c) + (1,) * (x.ndim - 2)

    def composite(X, _groups, W, B, _eps):
        y = _sh.Reshape.apply(_normalize(_sh.Reshape.apply(X, grouped), (2,), eps), x.shape)
        return _affine(y, W, B, shape)

    W = arg(ctx, 2, weight, g) if weight is not None else None
    return _via_composite(ctx, g, composite, (ctx.parents[0], None, W, _bias(ctx, 3), None))


@_attach(_nn.BatchNorm)
def _batch_norm(ctx, g):
    x, weight, mean, rstd = ctx.saved
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    eps = ctx.eps

    def composite(X, _rm, _rv, W, B, *_):
        if ctx.training:
            y = _normalize(X, axes, eps)
        else:  # the running statistics: constants
            y = (X - const(X, mean.reshape(shape))) * const(X, rstd.reshape(shape))
        return _affine(y, W, B, shape)

    W = arg(ctx, 3, weight, g) if weight is not None else None
    return _via_composite(ctx, g, composite, (ctx.parents[0], None, None, W, _bias(ctx, 4), None, None, None))

