"""dlkern.exp(t), dlkern.sum(t, dim), ...: the free-function form of Tensor methods.

Each is ``t.<name>(...)``, so the method is the one place an op is written; this module
only gives them NumPy/PyTorch's free-function spelling."""


def gelu(t, approximate="none"):
    """dlkern.gelu(t, approximate="none"|"tanh"): t.gelu(approximate)."""
    return t.gelu(approximate)


def _unary(name):
    """dlkern.<name>(t): t.<name>()."""

    def function(t):
        return getattr(t, name)()

    function.__name__ = function.__qualname__ = name
    return function


def _reduction(name):
    """dlkern.<name>(t, dim=None, keepdim=False): t.<name>(dim, keepdim)."""

    def function(t, dim=None, keepdim=False):
        return getattr(t, name)(dim, keepdim)

    function.__name__ = function.__qualname__ = name
    return function


# The no-argument methods and the (dim, keepdim) reductions, one row each.
exp = _unary("exp")
log = _unary("log")
sqrt = _unary("sqrt")
abs = _unary("abs")
tanh = _unary("tanh")
sin = _unary("sin")
cos = _unary("cos")
erf = _unary("erf")
sigmoid = _unary("sigmoid")
relu = _unary("relu")
selu = _unary("selu")
silu = _unary("silu")
sum = _reduction("sum")
mean = _reduction("mean")
max = _reduction("max")
min = _reduction("min")
argmax = _reduction("argmax")
argmin = _reduction("argmin")
amax = _reduction("amax")
amin = _reduction("amin")


def clamp(t, min=None, max=None):
    return t.clamp(min, max)


def maximum(t, other):
    return t.maximum(other)


def minimum(t, other):
    return t.minimum(other)


def masked_fill(t, mask, value):
    return t.masked_fill(mask, value)


def tril(t, diagonal=0):
    return t.tril(diagonal)


def triu(t, diagonal=0):
    return t.triu(diagonal)


def softplus(t, beta=1.0, threshold=20.0):
    return t.softplus(beta, threshold)


def var(t, dim=None, unbiased=True, keepdim=False, correction=None):
    return t.var(dim, unbiased, keepdim, correction)


def std(t, dim=None, unbiased=True, keepdim=False, correction=None):
    return t.std(dim, unbiased, keepdim, correction)


def logsumexp(t, dim, keepdim=False):
    return t.logsumexp(dim, keepdim)


def reshape(t, *shape):
    return t.reshape(*shape)


def transpose(t, dim0, dim1):
    return t.transpose(dim0, dim1)


def permute(t, *dims):
    return t.permute(*dims)


def flatten(t, start_dim=0, end_dim=-1):
    return t.flatten(start_dim, end_dim)


def squeeze(t, dim=None):
    return t.squeeze(dim)


def unsqueeze(t, dim):
    return t.unsqueeze(dim)


def softmax(t, dim=-1):
    return t.softmax(dim)


def log_softmax(t, dim=-1):
    return t.log_softmax(dim)


def matmul(a, b):
    return a @ b
