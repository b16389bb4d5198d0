"""dlkern.exp(t), dlkern.sum(t, dim), ...: the free-function form of Tensor methods.

Each is ``t.<name>(...)``, so the method is the one place an op is written; this module
only gives them NumPy/PyTorch's free-function spelling."""

from .tensor import gelu  # noqa: F401  (defined there for modules importing it from dlkern.tensor)


def exp(t):
    return t.exp()


def log(t):
    return t.log()


def sqrt(t):
    return t.sqrt()


def abs(t):
    return t.abs()


def clamp(t, min=None, max=None):
    return t.clamp(min, max)


def tanh(t):
    return t.tanh()


def sin(t):
    return t.sin()


def cos(t):
    return t.cos()


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


def sigmoid(t):
    return t.sigmoid()


def relu(t):
    return t.relu()


def selu(t):
    return t.selu()


def softplus(t, beta=1.0, threshold=20.0):
    return t.softplus(beta, threshold)


def silu(t):
    return t.silu()


def sum(t, dim=None, keepdim=False):
    return t.sum(dim, keepdim)


def mean(t, dim=None, keepdim=False):
    return t.mean(dim, keepdim)


def max(t, dim=None, keepdim=False):
    return t.max(dim, keepdim)


def min(t, dim=None, keepdim=False):
    return t.min(dim, keepdim)


def var(t, dim=None, unbiased=True, keepdim=False, correction=None):
    return t.var(dim, unbiased, keepdim, correction)


def std(t, dim=None, unbiased=True, keepdim=False, correction=None):
    return t.std(dim, unbiased, keepdim, correction)


def logsumexp(t, dim, keepdim=False):
    return t.logsumexp(dim, keepdim)


def argmax(t, dim=None, keepdim=False):
    return t.argmax(dim, keepdim)


def argmin(t, dim=None, keepdim=False):
    return t.argmin(dim, keepdim)


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


def amax(t, dim=None, keepdim=False):
    return t.amax(dim, keepdim)


def amin(t, dim=None, keepdim=False):
    return t.amin(dim, keepdim)


def matmul(a, b):
    return a @ b
