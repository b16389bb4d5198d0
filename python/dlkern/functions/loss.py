"""Losses that need their own backward: cross_entropy (the fused kernel), nll_loss and
binary_cross_entropy. The others are compositions in dlkern.nn.functional."""

import numpy as np

from ..autograd import Function


class CrossEntropy(Function):
    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction, label_smoothing):
        loss, lse = ctx.device.cross_entropy_forward(x, target, weight, ignore_index, reduction, label_smoothing)
        ctx.saved = (x, target, lse, weight)
        ctx.args = (ignore_index, reduction, label_smoothing)
        return loss

    @staticmethod
    def backward(ctx, g):
        x, target, lse, weight = ctx.saved
        dx = ctx.device.cross_entropy_backward(ctx.device.contiguous(g), x, target, lse, weight, *ctx.args)
        return dx, None, None, None, None, None


def _class_axis_last(dev, a):
    """(N, C, d1, ..., dk) -> (N*d1*...*dk, C), rows in the order of target.reshape(-1)
    (N, d1, ..., dk); (N, C) unchanged; (C,) -> (1, C). The class axis moves to the end
    with the others kept in order: a swap of axes 1 and -1 would reverse d1..dk."""
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 2:
        return a
    order = (0,) + tuple(range(2, a.ndim)) + (1,)
    return dev.contiguous(dev.asarray(a).transpose(order)).reshape(-1, a.shape[1])


class NLLLoss(Function):
    """-weight[t] * x[n, t] averaged over the weights of non-ignored targets (as PyTorch)."""

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction):
        dev = ctx.device
        x2 = _class_axis_last(dev, x)
        t = target.reshape(-1)
        n, c = x2.shape
        if t.shape[0] != n:
            raise ValueError(f"nll_loss: input has shape {x.shape} but target has shape {target.shape}")
        valid = t != ignore_index
        bad = valid & ((t < 0) | (t >= c))
        if bad.any():
            raise ValueError(f"nll_loss: target value {int(t[bad][0])} is out of range for {c} classes")
        safe_t = dev.where(valid, t, 0)
        w = (weight[safe_t] if weight is not None else dev.ones(n, dtype=x.dtype)) * valid
        w = w.astype(x.dtype, copy=False)
        picked = x2[dev.arange(n), safe_t]
        losses = -w * picked
        ctx.saved = (safe_t, w)
        ctx.shape, ctx.x2shape, ctx.reduction = x.shape, x2.shape, reduction
        if reduction == "none":
            return losses.reshape(target.shape)
        if reduction == "sum":
            return dev.asarray(losses.sum())
        total = w.sum()
        ctx.total = total
        return dev.asarray(losses.sum() / total)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        safe_t, w = ctx.saved
        n = w.shape[0]
        if ctx.reduction == "none":
            coef = -w * g.reshape(-1)
        elif ctx.reduction == "sum":
            coef = -w * g
        else:
            coef = -w * (g / ctx.total)
        dx2 = dev.zeros(ctx.x2shape, dtype=w.dtype)
        dx2[dev.arange(n), safe_t] = coef
        shape = ctx.shape
        if len(shape) == 1:
            dx = dx2[0]
        elif len(shape) == 2:
            dx = dx2
        else:
            moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
            inverse = (0, len(shape) - 1) + tuple(range(1, len(shape) - 1))  # (N, d.., C) -> (N, C, d..)
            dx = dx2.reshape(moved).transpose(inverse)
        return dx, None, None, None, None


class BinaryCrossEntropy(Function):
    """-(y log p + (1 - y) log(1 - p)), logs clamped at -100 as PyTorch."""

    @staticmethod
    def forward(ctx, p, y, weight):
        dev = ctx.device
        if ((p < 0) | (p > 1)).any():
            raise ValueError("binary_cross_entropy: input values must lie in [0, 1]")
        with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100 as PyTorch
            logp = dev.maximum(dev.log(p), -100)
            log1mp = dev.maximum(dev.log1p(-p), -100)
        loss = -(y * logp + (1 - y) * log1mp)
        if weight is not None:
            loss = loss * weight
        ctx.saved = (p, y, weight)
        return loss

    @staticmethod
    def backward(ctx, g):
        p, y, weight = ctx.saved
        eps = 1e-12
        denom = ctx.device.maximum(p * (1 - p), eps)
        dp = g * (p - y) / denom
        if weight is not None:
            dp = dp * weight
        need = ctx.needs_input_grad
        dy = None
        if need[1]:
            with np.errstate(divide="ignore"):
                dy = g * (ctx.device.maximum(ctx.device.log1p(-p), -100) - ctx.device.maximum(ctx.device.log(p), -100))
            if weight is not None:
                dy = dy * weight
        return dp, dy, None
