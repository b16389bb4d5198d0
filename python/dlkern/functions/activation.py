"""Activations: tanh, sigmoid, relu, leaky_relu, elu, gelu (exact and tanh), selu,
softplus, silu."""

import math

from ..autograd import Function

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_K = 0.044715


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        y = ctx.device.tanh(a)
        ctx.saved = y
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved
        return g * (1 - y * y)


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        y = ctx.device.sigmoid(a)
        ctx.saved = y
        return y

    @staticmethod
    def backward(ctx, g):
        y = ctx.saved
        return g * y * (1 - y)


class Relu(Function):
    @staticmethod
    def forward(ctx, a):
        y = ctx.device.maximum(a, 0)
        ctx.saved = y
        return y

    @staticmethod
    def backward(ctx, g):
        return g * (ctx.saved > 0)


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, a, slope):
        ctx.saved = a
        ctx.slope = slope
        return ctx.device.where(a > 0, a, a * slope)

    @staticmethod
    def backward(ctx, g):
        return ctx.device.where(ctx.saved > 0, g, g * ctx.slope), None


class Elu(Function):
    @staticmethod
    def forward(ctx, a, alpha):
        dev = ctx.device
        y = dev.where(a > 0, a, alpha * dev.expm1(dev.minimum(a, 0)))
        ctx.saved = (a, y)
        ctx.alpha = alpha
        return y

    @staticmethod
    def backward(ctx, g):
        a, y = ctx.saved
        return ctx.device.where(a > 0, g, g * (y + ctx.alpha)), None


class Gelu(Function):
    @staticmethod
    def forward(ctx, a, approximate):
        dev = ctx.device
        ctx.saved = a
        ctx.approximate = approximate
        if approximate == "tanh":
            # In-place passes: this runs on (tokens, 4 * d_model) activations of every MLP.
            t = a * a
            t *= _GELU_K * _SQRT_2_OVER_PI
            t += _SQRT_2_OVER_PI
            t *= a
            t = dev.tanh(t)                      # tanh(sqrt(2/pi) (a + k a^3))
            ctx.t = t
            y = t + 1
            y *= a
            y *= 0.5
            return y
        return 0.5 * a * (1 + dev.erf(a * _INV_SQRT_2))

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        a = ctx.saved
        if ctx.approximate == "tanh":
            # d/da = 0.5 (1 + t) + a (1 - t^2) * 0.5 sqrt(2/pi) (1 + 3k a^2), in two buffers
            t = ctx.t
            s = t * t
            s -= 1
            s *= a
            d = a * a
            d *= 1.5 * _GELU_K * _SQRT_2_OVER_PI
            d += 0.5 * _SQRT_2_OVER_PI
            s *= d                               # -a (1 - t^2) * 0.5 sqrt(2/pi) (1 + 3k a^2)
            dev.multiply(t, 0.5, out=d)
            d += 0.5
            d -= s
            d *= g
            return d, None
        cdf = 0.5 * (1 + dev.erf(a * _INV_SQRT_2))
        pdf = _INV_SQRT_2PI * dev.exp(-0.5 * a * a)
        return g * (cdf + a * pdf), None


class Selu(Function):
    @staticmethod
    def forward(ctx, a):
        dev = ctx.device
        ctx.saved = a
        return SELU_SCALE * dev.where(a > 0, a, SELU_ALPHA * dev.expm1(dev.minimum(a, 0)))

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        a = ctx.saved
        return g * (SELU_SCALE * dev.where(a > 0, 1, SELU_ALPHA * dev.exp(dev.minimum(a, 0)))), None


class Softplus(Function):
    """log(1 + exp(beta x)) / beta; linear where beta x > threshold (as PyTorch)."""

    @staticmethod
    def forward(ctx, a, beta, threshold):
        dev = ctx.device
        bx = a * beta
        ctx.saved = bx
        ctx.threshold = threshold
        return dev.where(bx > threshold, a, dev.logaddexp(0, bx) / beta).astype(a.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        bx = ctx.saved
        return dev.where(bx > ctx.threshold, g, g * dev.sigmoid(bx)), None, None


class Silu(Function):
    @staticmethod
    def forward(ctx, a):
        s = ctx.device.sigmoid(a)
        ctx.saved = (a, s)
        return a * s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved
        return g * s * (1 + a * (1 - s))
