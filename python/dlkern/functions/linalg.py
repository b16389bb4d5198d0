"""Matrix products on the dlkern GEMM kernels: transposes are passed as strides or
flags, never copied."""

from ..autograd import Function
from ..dtypes import float32, is_low_precision


class MatMul(Function):
    """numpy.matmul semantics (1-D operands promoted, batch axes broadcast)."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.saved = (a, b)
        return ctx.device.matmul(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        dev = ctx.device
        need = ctx.needs_input_grad
        if a.ndim == 2 and b.ndim == 2:
            ga = dev.gemm(g, b, trans_b=True) if need[0] else None
            gb = dev.gemm(a, g, trans_a=True) if need[1] else None
            return ga, gb
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if b.ndim == 1:
            g2 = g2[..., None]
        if a.ndim == 1:
            g2 = g2[..., None, :]
        ga = gb = None
        if need[0]:
            ga = dev.matmul(g2, b2.swapaxes(-1, -2))
            if a.ndim == 1:
                ga = ga[..., 0, :]
        if need[1]:
            gb = dev.matmul(a2.swapaxes(-1, -2), g2)
            if b.ndim == 1:
                gb = gb[..., :, 0]
        return ga, gb  # broadcast batch axes are summed back by the engine


class Linear(Function):
    """y = x @ weight.T + bias, x (..., in), weight (out, in), bias (out,) or None."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        dev = ctx.device
        x2 = x if x.ndim == 2 else x.reshape(-1, x.shape[-1])
        y = dev.gemm(x2, weight, trans_b=True)
        if bias is not None:
            y += bias
        ctx.saved = (x2, weight, x.shape)  # (in saved: a new attribute would give ctx a __dict__)
        if x.ndim != 2:
            y = y.reshape(x.shape[:-1] + (weight.shape[0],))
        return y

    @staticmethod
    def backward(ctx, g):
        x2, weight, shape = ctx.saved
        dev = ctx.device
        need = ctx.needs_input_grad
        g2 = g if g.ndim == 2 else g.reshape(-1, g.shape[-1])
        gx = gw = gb = None
        if need[0]:
            gx = dev.gemm(g2, weight)
            if len(shape) != 2:
                gx = gx.reshape(shape)
        if need[1]:
            gw = dev.gemm(g2, x2, trans_a=True)
        if need[2]:
            gb = g2.sum(axis=0)
            if is_low_precision(g2.dtype):  # (NumPy would accumulate a 16-bit sum in 16 bits)
                gb = g2.sum(axis=0, dtype=float32).astype(g2.dtype)
        return gx, gw, gb
