"""Layer ops on the dlkern kernels: softmax, convolution, pooling, normalisation, and
embedding. Each forward calls the kernel's ``*_forward`` (which returns what the
backward needs) and each backward its ``*_backward`` (see the ops contract)."""

from ..autograd import Function


class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        y = ctx.device.softmax(x, dim)
        ctx.saved = y
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.device.softmax_backward(ctx.device.contiguous(g), ctx.saved, ctx.dim), None


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        y = ctx.device.log_softmax(x, dim)
        ctx.saved = y
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.device.log_softmax_backward(ctx.device.contiguous(g), ctx.saved, ctx.dim), None


class Conv2d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.saved = (x, weight)
        ctx.args = (stride, padding, dilation, groups)
        return ctx.device.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        need = ctx.needs_input_grad
        dx, dw, db = ctx.device.conv2d_backward(ctx.device.contiguous(g), x, weight, *ctx.args,
                                                need=(need[0], need[1], need[2]))
        return dx, dw, db, None, None, None, None


class Conv1d(Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.saved = (x, weight)
        ctx.args = (stride, padding, dilation, groups)
        return ctx.device.conv1d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved
        need = ctx.needs_input_grad
        dx, dw, db = ctx.device.conv1d_backward(ctx.device.contiguous(g), x, weight, *ctx.args,
                                                need=(need[0], need[1], need[2]))
        return dx, dw, db, None, None, None, None


class MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
        y, indices = ctx.device.max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
        ctx.saved = indices
        ctx.shape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        dx = ctx.device.max_pool2d_backward(ctx.device.contiguous(g), ctx.saved, ctx.shape)
        return dx, None, None, None, None, None


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


class LayerNorm(Function):
    @staticmethod
    def forward(ctx, x, normalized_shape, weight, bias, eps):
        y, mean, rstd = ctx.device.layer_norm_forward(x, normalized_shape, weight, bias, eps)
        # (everything in saved: a new ctx attribute would give each call a __dict__)
        ctx.saved = (x, weight, mean, rstd, normalized_shape)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd, normalized_shape = ctx.saved
        dx, dw, db = ctx.device.layer_norm_backward(ctx.device.contiguous(g), x, normalized_shape,
                                                    weight, mean, rstd)
        return dx, None, dw, db, None


class RMSNorm(Function):
    @staticmethod
    def forward(ctx, x, normalized_shape, weight, eps):
        y, rstd = ctx.device.rms_norm_forward(x, normalized_shape, weight, eps)
        ctx.saved = (x, weight, rstd, normalized_shape)
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, rstd, normalized_shape = ctx.saved
        dx, dw = ctx.device.rms_norm_backward(ctx.device.contiguous(g), x, normalized_shape, weight, rstd)
        return dx, None, dw, None


class GroupNorm(Function):
    @staticmethod
    def forward(ctx, x, num_groups, weight, bias, eps):
        y, mean, rstd = ctx.device.group_norm_forward(x, num_groups, weight, bias, eps)
        ctx.saved = (x, weight, mean, rstd)
        ctx.num_groups = num_groups
        return y

    @staticmethod
    def backward(ctx, g):
        x, weight, mean, rstd = ctx.saved
        dx, dw, db = ctx.device.group_norm_backward(ctx.device.contiguous(g), x, ctx.num_groups,
                                                    weight, mean, rstd)
        return dx, None, dw, db, None


class BatchNorm(Function):
    """Training: batch statistics, running statistics updated in place by the kernel."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, training, momentum, eps):
        y, mean, rstd = ctx.device.batch_norm_forward(x, running_mean, running_var, weight, bias,
                                                      training, momentum, eps)
        ctx.saved = (x, weight, mean, rstd)
        ctx.training = training
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
