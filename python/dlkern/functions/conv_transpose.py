"""Transposed convolution over 1 or 2 spatial dimensions, on the conv kernels.

conv_transpose(x, w) is the input gradient of conv(., w) taken at grad_out = x, so the
forward is the conv kernel's backward with only dx requested (the kernel reads the
conv input only for dweight, so a zero placeholder of the output's shape stands in for
it), and the backward is, for x, the conv forward of the gradient and, for the weight,
the conv kernel's dweight with the roles of input and grad_out exchanged. No im2col of
our own, no new kernel: every device with the conv kernels runs it.

With output_padding >= stride (allowed while output_padding < dilation) the conv of the
output's size is longer than x by output_padding // stride; x is then extended with
that many zero columns at the end, which contribute nothing."""

from ..autograd import Function
from ..dtypes import float32, is_low_precision


def _pad_end(dev, x, extra):
    """x with extra[i] zeros appended along spatial dimension i (x is (N, C, *spatial))."""
    for i, e in enumerate(extra):
        if e:
            shape = list(x.shape)
            shape[2 + i] = e
            x = dev.concatenate([x, dev.zeros(tuple(shape), dtype=x.dtype)], axis=2 + i)
    return x


class _ConvTranspose(Function):
    """forward(x (N, Cin, *in), weight (Cin, Cout/groups, *k), bias (Cout,) | None, stride,
    padding, dilation, groups, out_shape (N, Cout, *out), extra): extra = output_padding //
    stride per dimension, the zero columns x needs (see the module docstring)."""

    conv_kernel = backward_kernel = None   # the device namespace's names

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, out_shape, extra):
        dev = ctx.device
        xe = dev.contiguous(_pad_end(dev, x, extra))
        placeholder = dev.zeros(out_shape, dtype=x.dtype)
        y, _, _ = getattr(dev, ctx.backward_kernel)(xe, placeholder, weight, stride, padding, dilation, groups,
                                                   need=(True, False, False))
        if bias is not None:
            y += bias.reshape((1, -1) + (1,) * (len(out_shape) - 2))
        ctx.saved = (xe, weight)
        ctx.args = (stride, padding, dilation, groups)
        ctx.in_shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        xe, weight = ctx.saved
        need = ctx.needs_input_grad
        g = dev.contiguous(g)
        dx = dw = db = None
        if need[0]:
            dx = getattr(dev, ctx.conv_kernel)(g, weight, None, *ctx.args)
            if dx.shape != ctx.in_shape:   # drop the appended zero columns' gradient
                dx = dev.contiguous(dx[tuple(slice(0, n) for n in ctx.in_shape)])
        if need[1]:
            dw = getattr(dev, ctx.backward_kernel)(xe, g, weight, *ctx.args, need=(False, True, False))[1]
        if need[2]:
            axes = (0,) + tuple(range(2, g.ndim))
            # (a 16-bit gradient is summed in float32: NumPy would accumulate in 16 bits)
            db = dev.sum(g, axis=axes, dtype=float32).astype(g.dtype) if is_low_precision(g.dtype) \
                else dev.sum(g, axis=axes)
        return dx, dw, db, None, None, None, None, None, None


class ConvTranspose2d(_ConvTranspose):
    conv_kernel, backward_kernel = "conv2d", "conv2d_backward"


class ConvTranspose1d(_ConvTranspose):
    conv_kernel, backward_kernel = "conv1d", "conv1d_backward"
