"""Activations: tanh, sigmoid, relu, leaky_relu, elu, gelu (exact and tanh), selu,
softplus, silu."""


from ..autograd import Function
from .elementwise import unary

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# Tanh and sigmoid: their gradients need only the output.
Tanh = unary("Tanh", "tanh", lambda dev, g, y: g * (1 - y * y), keep="output")
Sigmoid = unary("Sigmoid", "sigmoid", lambda dev, g, y: g * y * (1 - y), keep="output")


class Relu(Function):
    @staticmethod
    def forward(ctx, a):
        y = ctx.device.relu(a)
        ctx.saved = y
        return y

    @staticmethod
    def backward(ctx, g):
        return ctx.device.relu_backward(g, ctx.saved)


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
    """approximate="tanh" and "none" (exact, via erf) are fused kernel pairs
    (dlkern.ops.gelu_tanh, dlkern.ops.gelu_erf: one pass each way, the backward recomputes
    from the input)."""

    @staticmethod
    def forward(ctx, a, approximate):
        ctx.saved = (a, approximate)  # (no new ctx attribute: no __dict__ per call)
        if approximate == "tanh":
            return ctx.device.gelu_tanh(a)
        return ctx.device.gelu_erf(a)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        a, approximate = ctx.saved
        if approximate == "tanh":
            return dev.gelu_tanh_backward(g, a), None
        return dev.gelu_erf_backward(g, a), None


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
        ctx.beta = beta  # (for the double backward)
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
