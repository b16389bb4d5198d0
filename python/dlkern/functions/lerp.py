"""Linear interpolation start + weight * (end - start), on every device."""

import numbers

from ..autograd import Function


class Lerp(Function):
    """lerp(start, end, weight), weight a number or an array; the three broadcast. As
    PyTorch, |weight| >= 0.5 is computed from the end (end - (end - start) * (1 - weight)),
    so weight 1 gives end exactly. Gradients: (1 - weight) g, weight g, (end - start) g."""

    @staticmethod
    def forward(ctx, a, b, w):
        dev = ctx.device
        diff = b - a
        ctx.saved = (diff, w)
        if isinstance(w, numbers.Number):
            return a + w * diff if abs(w) < 0.5 else b - diff * (1 - w)
        return dev.where(dev.abs(w) < 0.5, a + w * diff, b - diff * (1 - w))

    @staticmethod
    def backward(ctx, g):
        diff, w = ctx.saved
        need = ctx.needs_input_grad
        return ((g * (1 - w)) if need[0] else None, (g * w) if need[1] else None,
                (g * diff) if need[2] else None)
