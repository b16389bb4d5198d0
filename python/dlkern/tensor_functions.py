"""dlkern.exp(t), dlkern.sum(t, dim), ...: the free-function form of Tensor methods.

Each is ``t.<name>(...)``, so the method is the one place an op is written; this module
only gives them NumPy/PyTorch's free-function spelling."""

from . import functions as _F
from .autograd import TensorBase
from .autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from .tensor_methods import scaled_operand


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


def softmax(t, dim=-1, *, axis=None):
    return t.softmax(dim, axis=axis)


def log_softmax(t, dim=-1, *, axis=None):
    return t.log_softmax(dim, axis=axis)


def matmul(a, b):
    return a @ b


# --- math breadth (issue 13): scans and products, norms, contractions, any/all, lerp, add/sub alpha
def add(input, other, *, alpha=1):
    """input + alpha * other (either may be a number, not both)."""
    if isinstance(input, TensorBase):
        return input.add(other, alpha=alpha)
    if not isinstance(other, TensorBase):
        raise TypeError(f"add: expected a Tensor, got {type(input).__name__} and {type(other).__name__}")
    return input + scaled_operand("add", other, other, alpha)


def sub(input, other, *, alpha=1):
    """input - alpha * other (either may be a number, not both)."""
    if isinstance(input, TensorBase):
        return input.sub(other, alpha=alpha)
    if not isinstance(other, TensorBase):
        raise TypeError(f"sub: expected a Tensor, got {type(input).__name__} and {type(other).__name__}")
    return input - scaled_operand("sub", other, other, alpha)


def cumsum(input, dim, *, dtype=None):
    return input.cumsum(dim, dtype=dtype)


def cumprod(input, dim, *, dtype=None):
    return input.cumprod(dim, dtype=dtype)


def prod(input, dim=None, keepdim=False, *, dtype=None):
    return input.prod(dim, keepdim, dtype=dtype)


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    return input.norm(p, dim, keepdim, dtype=dtype)


def einsum(equation, *operands):
    """Einstein summation as torch.einsum: einsum("ij,jk->ik", a, b) or with the operands
    as one list. Implicit and explicit output, '...', repeated letters (diagonals),
    size-1 broadcasting; NumPy's contraction order; gradients for every operand."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for k, t in enumerate(operands):
        if not isinstance(t, TensorBase):
            raise TypeError(f"einsum(): operand {k} must be a Tensor, got {type(t).__name__}")
        if t.dtype != operands[0].dtype and not _autocast_mixed():
            raise TypeError(f"einsum(): operands must share one dtype: operand 0 is {operands[0].dtype}, operand "
                            f"{k} is {t.dtype}; convert one with .to(dtype)")
    terms, out, _ = _F.einsum_spec(equation, [t.shape for t in operands])
    return _F.Einsum.apply((terms, out), *operands)


def bmm(input, mat2):
    return input.bmm(mat2)


def baddbmm(input, batch1, batch2, *, beta=1, alpha=1):
    return input.baddbmm(batch1, batch2, beta=beta, alpha=alpha)


def outer(input, vec2):
    return input.outer(vec2)


any = _reduction("any")
all = _reduction("all")


def lerp(input, end, weight):
    return input.lerp(end, weight)
# --- end math breadth


# ---- indexing and reordering (torch.<name> spellings of the methods in tensor_indexing.py)
def gather(input, dim, index, *, sparse_grad=False):
    return input.gather(dim, index, sparse_grad=sparse_grad)


def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    return input.scatter(dim, index, src, value, reduce=reduce)


def scatter_add(input, dim, index, src):
    return input.scatter_add(dim, index, src)


def index_select(input, dim, index):
    return input.index_select(dim, index)


def sort(input, dim=-1, descending=False, *, stable=False):
    return input.sort(dim, descending, stable=stable)


def argsort(input, dim=-1, descending=False, stable=False):
    return input.argsort(dim, descending, stable)


def topk(input, k, dim=-1, largest=True, sorted=True):
    return input.topk(k, dim, largest, sorted)


def flip(input, dims):
    return input.flip(dims)


def roll(input, shifts, dims=None):
    return input.roll(shifts, dims)


def tile(input, dims):
    return input.tile(dims)


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    return input.repeat_interleave(repeats, dim, output_size=output_size)


def diag(input, diagonal=0):
    return input.diag(diagonal)
# ---- end indexing and reordering
