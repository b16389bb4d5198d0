"""Arithmetic: + - * / ** and unary math (exp, log, sqrt, abs, sin, cos, erf, clamp)."""

import math
import numbers

from ..autograd import Function


def unary(name, kernel, grad, keep="input"):
    """A one-input op as a row: forward runs the device kernel ``kernel`` and keeps its
    input or its output (``keep``); backward is ``grad(device, g, kept)``."""
    keep_output = keep == "output"

    def forward(ctx, a):
        y = getattr(ctx.device, kernel)(a)
        ctx.saved = y if keep_output else a
        return y

    def backward(ctx, g):
        return grad(ctx.device, g, ctx.saved)

    return type(name, (Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward),
                                    "__module__": __name__, "__qualname__": name,
                                    "__doc__": f"{name}: the {kernel} kernel; gradient from its {keep}."})


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, g):
        return g, g


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, g):
        return g, (-g if ctx.needs_input_grad[1] else None)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.saved = (a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        need = ctx.needs_input_grad
        return (g * b if need[0] else None), (g * a if need[1] else None)


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.saved = (a, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        need = ctx.needs_input_grad
        ga = g / b if need[0] else None
        gb = -g * a / (b * b) if need[1] else None
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    """a ** b, either operand a tensor or a scalar."""

    @staticmethod
    def forward(ctx, a, b):
        y = ctx.device.power(a, b)
        ctx.saved = (a, b, y)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b, y = ctx.saved
        dev = ctx.device
        need = ctx.needs_input_grad
        ga = gb = None
        if need[0]:
            ga = g * b * dev.power(a, b - 1)
        if need[1]:
            # d(a^b)/db = a^b log a; taken as 0 where a <= 0 (log undefined there).
            gb = g * y * dev.log(dev.where(a > 0, a, 1))
        return ga, gb


# The unary math ops, one row each: (name, kernel, gradient, what the gradient needs).
Exp = unary("Exp", "exp", lambda dev, g, y: g * y, keep="output")
Log = unary("Log", "log", lambda dev, g, a: g / a)
Sqrt = unary("Sqrt", "sqrt", lambda dev, g, y: g / (2 * y), keep="output")
Abs = unary("Abs", "abs", lambda dev, g, a: g * dev.sign(a))
Sin = unary("Sin", "sin", lambda dev, g, a: g * dev.cos(a))
Cos = unary("Cos", "cos", lambda dev, g, a: -g * dev.sin(a))
# d erf / dx = 2 / sqrt(pi) exp(-x^2); the forward is the erf kernel (dlkern.ops.erf on the
# CPU, the CUDA module's erf primitive on CUDA).
Erf = unary("Erf", "erf", lambda dev, g, a: g * (2.0 / math.sqrt(math.pi)) * dev.exp(-(a * a)))


class Clamp(Function):
    """min(max(x, lo), hi); lo and hi are scalars, arrays or None (from Tensors: then they
    get gradients too). PyTorch's subgradients: x gets the gradient where lo <= x <= hi
    (boundaries included); lo where x < lo (and lo < hi when both are given); hi where
    x > hi, or everywhere lo > hi (the result is hi there)."""

    @staticmethod
    def forward(ctx, a, lo, hi):
        ctx.saved = (a, lo, hi)
        dev = ctx.device
        if isinstance(lo, (numbers.Number, type(None))) and isinstance(hi, (numbers.Number, type(None))):
            return dev.clip(a, lo, hi)
        # Array bounds (the CUDA clip kernel takes numbers only): max with lo, then min with hi.
        y = a if lo is None else dev.maximum(a, lo)
        return y if hi is None else dev.minimum(y, hi)

    @staticmethod
    def backward(ctx, g):
        a, lo, hi = ctx.saved
        dev = ctx.device
        need = ctx.needs_input_grad
        zero = g.dtype.type(0)
        mask = True
        if lo is not None:
            mask = a >= lo
        if hi is not None:
            mask = mask & (a <= hi)
        ga = dev.where(mask, g, zero).astype(g.dtype, copy=False)
        glo = ghi = None
        if need[1]:
            pick = a < lo
            if hi is not None:
                pick = pick & (lo < hi)
            glo = dev.where(pick, g, zero).astype(g.dtype, copy=False)
        if need[2]:
            pick = a > hi
            if lo is not None:
                pick = pick | (hi < lo)
            ghi = dev.where(pick, g, zero).astype(g.dtype, copy=False)
        return ga, glo, ghi


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.saved = cond
        return ctx.device.where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        cond = ctx.saved
        need = ctx.needs_input_grad
        dev = ctx.device
        zero = g.dtype.type(0)
        ga = dev.where(cond, g, zero) if need[1] else None
        gb = dev.where(cond, zero, g) if need[2] else None
        return None, ga, gb


class Maximum(Function):
    """Elementwise max/min of two tensors; ties send the gradient half to each (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b, is_min):
        dev = ctx.device
        ctx.saved = (a, b)
        ctx.is_min = is_min
        return dev.minimum(a, b) if is_min else dev.maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        dev = ctx.device
        first = (a < b) if ctx.is_min else (a > b)
        tie = a == b
        wa = first + 0.5 * tie
        need = ctx.needs_input_grad
        ga = g * wa if need[0] else None
        gb = g * (1 - wa) if need[1] else None
        return (ga.astype(g.dtype, copy=False) if ga is not None else None,
                gb.astype(g.dtype, copy=False) if gb is not None else None, None)


class MaskedFill(Function):
    """a with `value` where mask is true (mask broadcasts, the result may be larger than
    a). value is a number or a 0-d array (from a 0-d tensor, which then gets the sum of
    the gradient over the filled positions)."""

    @staticmethod
    def forward(ctx, a, mask, value):
        ctx.saved = mask
        if isinstance(value, ctx.device.array_type):
            ctx.value_dtype = value.dtype
            value = value.astype(a.dtype, copy=False)
        else:
            value = a.dtype.type(value)
        return ctx.device.where(mask, value, a)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        zero = g.dtype.type(0)
        need = ctx.needs_input_grad
        ga = dev.where(ctx.saved, zero, g) if need[0] else None
        gv = dev.asarray(dev.where(ctx.saved, g, zero).sum()).astype(ctx.value_dtype, copy=False) if need[2] else None
        return ga, None, gv
