"""Cross-entropy with class-probability targets (mixup / CutMix / distillation) as one
Function: the log-softmax kernel forward and its backward kernel (from the saved
log-probabilities), instead of a chain of log_softmax, mul, sum and mean nodes each
holding its own (N, C) array.

The compiled fused cross-entropy kernel (ops.cross_entropy_forward) takes class
indices only; probability targets would need a new C++ kernel, so this path uses the
log_softmax kernel and array math on the device."""

from ..autograd import Function


class SoftCrossEntropy(Function):
    """x (N, C, d1, ...) or (C,) logits; target the same shape (an array, no gradient),
    already label-smoothed; weight a (C,) array or None. Losses -sum_c w_c t_c
    log_softmax(x)_c, reduced as PyTorch does for probability targets (the mean divides
    by the number of samples, not by the weights)."""

    @staticmethod
    def forward(ctx, x, target, weight, reduction):
        dev = ctx.device
        axis = 0 if x.ndim == 1 else 1
        logp = dev.log_softmax(dev.contiguous(x), axis)
        wt = target
        if weight is not None:
            wt = target * weight.reshape((-1,) + (1,) * (x.ndim - 1 - axis))
        per = -(logp * wt).sum(axis=axis)
        ctx.saved = (logp, wt)
        ctx.axis, ctx.reduction, ctx.count = axis, reduction, per.size
        if reduction == "none":
            return per
        total = per.sum()
        if reduction == "sum":
            return dev.asarray(total)
        # the mean of no samples is NaN (as PyTorch), without NumPy's 0/0 warning
        return dev.asarray(total / ctx.count) if ctx.count else dev.full((), float("nan"), dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        # dL/dx = softmax(x) sum_c(w t) - w t: the log_softmax backward kernel of the
        # cotangent -w t (times the loss's cotangent), one pass over the saved logp
        dev = ctx.device
        logp, wt = ctx.saved
        axis = ctx.axis
        if ctx.reduction == "none":
            dx = dev.log_softmax_backward(dev.contiguous(-wt * dev.expand_dims(g, axis)), logp, axis)
        else:
            if ctx.reduction == "mean":
                g = g / max(ctx.count, 1)  # no samples: dx is empty anyway
            dx = dev.log_softmax_backward(dev.contiguous(-wt), logp, axis) * g
        return dx, None, None, None
