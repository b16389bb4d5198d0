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


# The tanh GELU runs on the (tokens, 4 * d_model) activations of every transformer MLP:
# its passes run over blocks of this many elements, so the temporaries stay in cache.
_GELU_BLOCK = 1 << 16


def _gelu_tanh_forward(dev, a):
    """-> (y, t) with t = tanh(sqrt(2/pi) (a + k a^3)) and y = 0.5 a (1 + t)."""
    a = dev.contiguous(a)
    y, t = dev.empty(a.shape, a.dtype), dev.empty(a.shape, a.dtype)
    af, yf, tf = a.reshape(-1), y.reshape(-1), t.reshape(-1)
    for i in range(0, af.shape[0], _GELU_BLOCK):
        x, tt, yy = af[i:i + _GELU_BLOCK], tf[i:i + _GELU_BLOCK], yf[i:i + _GELU_BLOCK]
        dev.multiply(x, x, out=tt)
        tt *= _GELU_K * _SQRT_2_OVER_PI
        tt += _SQRT_2_OVER_PI
        tt *= x
        dev.tanh(tt, out=tt)
        dev.add(tt, 1, out=yy)
        yy *= x
        yy *= 0.5
    return y, t


def _gelu_tanh_backward(dev, a, t, g):
    """g * d/da = g (0.5 (1 + t) + a (1 - t^2) 0.5 sqrt(2/pi) (1 + 3k a^2))."""
    a, g = dev.contiguous(a), dev.contiguous(g)
    d = dev.empty(a.shape, a.dtype)
    n = min(_GELU_BLOCK, d.size)
    s, u = dev.empty(n, a.dtype), dev.empty(n, a.dtype)
    af, tf, gf, df = a.reshape(-1), t.reshape(-1), g.reshape(-1), d.reshape(-1)
    for i in range(0, af.shape[0], _GELU_BLOCK):
        x, tt, dd = af[i:i + _GELU_BLOCK], tf[i:i + _GELU_BLOCK], df[i:i + _GELU_BLOCK]
        m = x.shape[0]
        ss, uu = s[:m], u[:m]
        dev.multiply(tt, tt, out=ss)
        ss -= 1
        ss *= x
        dev.multiply(x, x, out=uu)
        uu *= 1.5 * _GELU_K * _SQRT_2_OVER_PI
        uu += 0.5 * _SQRT_2_OVER_PI
        ss *= uu                                 # -a (1 - t^2) * 0.5 sqrt(2/pi) (1 + 3k a^2)
        dev.multiply(tt, 0.5, out=dd)
        dd += 0.5
        dd -= ss
        dd *= gf[i:i + _GELU_BLOCK]
    return d


class Gelu(Function):
    @staticmethod
    def forward(ctx, a, approximate):
        ctx.saved = a
        ctx.approximate = approximate
        if approximate == "tanh":
            y, ctx.t = _gelu_tanh_forward(ctx.device, a)
            return y
        return 0.5 * a * (1 + ctx.device.erf(a * _INV_SQRT_2))

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        a = ctx.saved
        if ctx.approximate == "tanh":
            return _gelu_tanh_backward(dev, a, ctx.t, g), None
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
