"""Layer ops on the dlkern kernels: softmax, convolution, pooling, normalisation, and
embedding. Each forward calls the kernel's ``*_forward`` (which returns what the
backward needs) and each backward its ``*_backward`` (see the ops contract)."""

from ..autograd import Function


class _Softmax(Function):
    """Softmax and log-softmax over ``dim``: the backward needs only the output."""

    forward_kernel = backward_kernel = None   # the device namespace's names

    @staticmethod
    def forward(ctx, x, dim):
        if x.ndim == 0:  # one element (dim 0 or -1, checked by the kernel): as a (1,) array,
            # since the CUDA kernels take arrays of at least one dim
            return getattr(ctx.device, ctx.forward_kernel)(x.reshape(1), dim).reshape(())
        y = getattr(ctx.device, ctx.forward_kernel)(x, dim)
        ctx.saved = y
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        if g.ndim == 0:  # d softmax / dx = 0 and d log_softmax / dx = 0 for one element
            return ctx.device.zeros_like(g), None
        grad = getattr(ctx.device, ctx.backward_kernel)
        return grad(ctx.device.contiguous(g), ctx.saved, ctx.dim), None


class Softmax(_Softmax):
    forward_kernel, backward_kernel = "softmax", "softmax_backward"


class LogSoftmax(_Softmax):
    forward_kernel, backward_kernel = "log_softmax", "log_softmax_backward"


class _Conv(Function):
    """Convolution over 1 or 2 spatial dimensions."""

    forward_kernel = backward_kernel = None   # the device namespace's names

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.saved = (x, weight)
        ctx.args = (stride, padding, dilation, groups)
        return getattr(ctx.device, ctx.forward_kernel)(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        need = ctx.needs_input_grad
        dx, dw, db = getattr(ctx.device, ctx.backward_kernel)(ctx.device.contiguous(g), x, weight, *ctx.args,
                                                              need=(need[0], need[1], need[2]))
        return dx, dw, db, None, None, None, None


class Conv2d(_Conv):
    forward_kernel, backward_kernel = "conv2d", "conv2d_backward"


class Conv1d(_Conv):
    forward_kernel, backward_kernel = "conv1d", "conv1d_backward"


class MaxPool2d(Function):
    """Max pooling; the int64 indices of the maxima are appended to `indices_out` (a list)
    when one is given, as a Function returns one array (return_indices=True)."""

    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode, indices_out=None):
        y, indices = ctx.device.max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
        ctx.saved = indices
        ctx.shape = x.shape
        if indices_out is not None:
            indices_out.append(indices)
        return y

    @staticmethod
    def backward(ctx, g):
        dx = ctx.device.max_pool2d_backward(ctx.device.contiguous(g), ctx.saved, ctx.shape)
        return dx, None, None, None, None, None, None


class MaxUnpool2d(Function):
    """The inverse of max pooling: x (N, C, H, W) written into zeros (N, C, oh, ow) at the
    flat positions `indices` (int64, x's shape, checked in range by the caller) of each
    plane; the backward gathers the gradient back from those positions. A position named
    twice holds the last value written (as PyTorch's CPU kernel)."""

    @staticmethod
    def forward(ctx, x, indices, output_hw):
        dev = ctx.device
        n, c, h, w = x.shape
        plane = output_hw[0] * output_hw[1]
        # one flat index into the whole output: plane offset + position in the plane
        offsets = dev.arange(n * c, dtype=indices.dtype).reshape(n * c, 1) * plane
        flat = (indices.reshape(n * c, h * w) + offsets).reshape(-1)
        out = dev.zeros((n * c * plane,), dtype=x.dtype)
        dev.put_along_axis(out, flat, x.reshape(-1), 0)
        ctx.saved = flat
        ctx.shape = x.shape
        return out.reshape((n, c) + tuple(output_hw))

    @staticmethod
    def backward(ctx, g):
        return g.reshape(-1)[ctx.saved].reshape(ctx.shape), None, None


class AvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        ctx.shape = x.shape
        ctx.args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return ctx.device.avg_pool2d(x, *ctx.args)

    @staticmethod
    def backward(ctx, g):
        dx = ctx.device.avg_pool2d_backward(ctx.device.contiguous(g), ctx.shape, *ctx.args)
        return (dx,) + (None,) * 6


class AdaptiveAvgPool2d(Function):
    @staticmethod
    def forward(ctx, x, output_size):
        ctx.shape = x.shape
        return ctx.device.adaptive_avg_pool2d(x, output_size)

    @staticmethod
    def backward(ctx, g):
        return ctx.device.adaptive_avg_pool2d_backward(ctx.device.contiguous(g), ctx.shape), None


class _MeanRstdNorm(Function):
    """Layer and group norm: ``arg`` (the normalized shape or the group count) is passed
    through to both kernels; the backward needs the input, weight, mean and rstd."""

    forward_kernel = backward_kernel = None   # the device namespace's names

    @staticmethod
    def forward(ctx, x, arg, weight, bias, eps):
        y, mean, rstd = getattr(ctx.device, ctx.forward_kernel)(x, arg, weight, bias, eps)
        # (everything in saved: a new ctx attribute would give each call a __dict__)
        ctx.saved = (x, weight, mean, rstd, arg, eps)  # (eps: for the double backward)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd, arg, _ = ctx.saved
        dx, dw, db = getattr(ctx.device, ctx.backward_kernel)(ctx.device.contiguous(g), x, arg, weight, mean, rstd)
        return dx, None, dw, db, None


class LayerNorm(_MeanRstdNorm):
    forward_kernel, backward_kernel = "layer_norm_forward", "layer_norm_backward"


class RMSNorm(Function):
    @staticmethod
    def forward(ctx, x, normalized_shape, weight, eps):
        y, rstd = ctx.device.rms_norm_forward(x, normalized_shape, weight, eps)
        ctx.saved = (x, weight, rstd, normalized_shape, eps)  # (eps: for the double backward)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, rstd, normalized_shape, _ = ctx.saved
        dx, dw = ctx.device.rms_norm_backward(ctx.device.contiguous(g), x, normalized_shape, weight, rstd)
        return dx, None, dw, None


class GroupNorm(_MeanRstdNorm):
    forward_kernel, backward_kernel = "group_norm_forward", "group_norm_backward"


class BatchNorm(Function):
    """Training: batch statistics, running statistics updated in place by the kernel."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, training, momentum, eps):
        y, mean, rstd = ctx.device.batch_norm_forward(x, running_mean, running_var, weight, bias,
                                                      training, momentum, eps)
        ctx.saved = (x, weight, mean, rstd)
        ctx.training = training
        ctx.eps = eps  # (for the double backward)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd = ctx.saved
        dx, dw, db = ctx.device.batch_norm_backward(ctx.device.contiguous(g), x, weight, mean, rstd,
                                                    ctx.training)
        return dx, None, None, dw, db, None, None, None


class Embedding(Function):
    @staticmethod
    def forward(ctx, weight, indices, padding_idx):
        ctx.saved = indices
        ctx.shape = weight.shape
        ctx.padding_idx = padding_idx
        return weight[indices]

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        indices = ctx.saved
        dw = dev.zeros(ctx.shape, dtype=g.dtype)
        dev.add_at(dw, indices, g)
        if ctx.padding_idx is not None:
            dw[ctx.padding_idx] = 0
        return dw, None, None
