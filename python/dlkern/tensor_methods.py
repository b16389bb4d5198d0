"""The differentiable methods of dlkern.Tensor that only build Functions: indexing and
shape, reductions, and math (dlkern.tensor.Tensor derives from TensorMethods). They
hold no state of their own; the argument helpers here are shared with dlkern.creation."""

import collections
import operator

import numpy as np

from . import functions as _F
from .autograd import TensorBase
from .dtypes import FLOAT_KINDS
from .dtypes import float16 as _FLOAT16, float32 as _FLOAT32

MinMaxResult = collections.namedtuple("MinMaxResult", ["values", "indices"])


def check_pair(op, a, b):
    """The two tensors of a binary op that takes no scalars: same dtype, same device."""
    if not isinstance(b, TensorBase):
        raise TypeError(f"{op}: expected a Tensor, got {type(b).__name__}")
    if a.data.dtype != b.data.dtype:
        raise TypeError(f"{op}: dtype mismatch: {a.data.dtype} and {b.data.dtype}; convert one with .to(dtype)")
    if a.device is not b.device:
        raise RuntimeError(f"{op}: tensors on different devices: {a.device} and {b.device}")


def _unary_method(fn, name):
    """The Tensor method ``name`` that takes no arguments and applies Function ``fn``."""

    def method(self):
        return fn.apply(self)

    method.__name__ = name
    method.__qualname__ = f"TensorMethods.{name}"
    method.__doc__ = f"{fn.__name__} of the tensor (differentiable)."
    return method


def index_arg(index):
    """An index with tensors replaced by their arrays (lists as NumPy arrays)."""
    if isinstance(index, TensorBase):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, TensorBase) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def shape_arg(shape):
    """A shape given as sizes (f(2, 3)) or as one sequence (f((2, 3))), as a tuple of ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    try:
        # operator.index, not int(): a float size (2.7) is an error, not silently 2.
        return tuple(operator.index(n) for n in shape)
    except TypeError:
        raise TypeError(f"sizes must be ints, got {tuple(shape)!r} "
                        f"({', '.join(sorted({type(n).__name__ for n in shape}))})") from None


class TensorMethods(TensorBase):
    """Methods of dlkern.Tensor built on Functions alone; see dlkern.tensor."""

    __slots__ = ()

    # ------------------------------------------------------------------ indexing and shape
    def __getitem__(self, index):
        return _F.GetItem.apply(self, index_arg(index))

    def reshape(self, *shape):
        shape = shape_arg(shape)
        return _F.Reshape.apply(self, shape)

    def view(self, *shape):
        return self.reshape(*shape)

    def flatten(self, start_dim=0, end_dim=-1):
        nd = self.ndim
        if nd == 0:
            return self.reshape(1)
        s, e = start_dim % nd, end_dim % nd
        if s > e:
            raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
        shape = self.shape
        n = 1
        for d in shape[s:e + 1]:
            n *= d
        return _F.Reshape.apply(self, shape[:s] + (n,) + shape[e + 1:])

    def transpose(self, dim0, dim1):
        return _F.Transpose.apply(self, dim0, dim1)

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dimensions, got {self.ndim}")
        return self if self.ndim < 2 else self.transpose(0, 1)

    def permute(self, *dims):
        dims = tuple(d % self.ndim for d in shape_arg(dims))
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {self.ndim} dimensions")
        return _F.Permute.apply(self, dims)

    def expand(self, *shape):
        shape = shape_arg(shape)
        lead = len(shape) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: shape {shape} has fewer dimensions than the tensor {tuple(self.shape)}")
        full = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
        return _F.Expand.apply(self, full)

    def expand_as(self, other):
        return self.expand(*other.shape)

    def squeeze(self, dim=None):
        if dim is None:
            shape = tuple(n for n in self.shape if n != 1)
        else:
            dims = {d % self.ndim for d in ((dim,) if isinstance(dim, int) else dim)} if self.ndim else set()
            shape = tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1))
        return _F.Reshape.apply(self, shape)

    def unsqueeze(self, dim):
        nd = self.ndim + 1
        if not -nd <= dim < nd:
            raise IndexError(f"unsqueeze: dim {dim} out of range for a result with {nd} dimensions")
        dim %= nd
        shape = self.shape[:dim] + (1,) + self.shape[dim:]
        return _F.Reshape.apply(self, shape)

    def split(self, split_size_or_sections, dim=0):
        n = self.shape[dim]
        if isinstance(split_size_or_sections, int):
            if split_size_or_sections <= 0:
                raise ValueError("split: split_size must be positive")
            sizes = [min(split_size_or_sections, n - s) for s in range(0, n, split_size_or_sections)]
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != n:
                raise ValueError(f"split: sections {sizes} do not sum to the size {n} of dim {dim}")
        out, start = [], 0
        prefix = (slice(None),) * (dim % self.ndim)
        for s in sizes:
            out.append(self[prefix + (slice(start, start + s),)])
            start += s
        return tuple(out)

    def chunk(self, chunks, dim=0):
        n = self.shape[dim]
        size = -(-n // chunks)
        return self.split(size, dim)

    # ------------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False):
        return _F.Sum.apply(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        if self.data.dtype.kind not in FLOAT_KINDS:
            raise TypeError(f"mean() needs a floating-point tensor, got {self.dtype}")
        return _F.Mean.apply(self, dim, keepdim)

    def _max_min(self, dim, keepdim, is_min):
        if dim is None or isinstance(dim, tuple):
            return _F.MaxAll.apply(self, dim, keepdim, is_min)
        values = _F.MaxDim.apply(self, dim, keepdim, is_min)
        idx = (self.data.argmin if is_min else self.data.argmax)(axis=dim, keepdims=keepdim)
        return MinMaxResult(values, self._make(idx, self.device, False, None))

    def max(self, dim=None, keepdim=False):
        """max() -> the largest element; max(dim) -> (values, indices)."""
        return self._max_min(dim, keepdim, False)

    def min(self, dim=None, keepdim=False):
        return self._max_min(dim, keepdim, True)

    def amax(self, dim=None, keepdim=False):
        return _F.MaxAll.apply(self, dim, keepdim, False)

    def amin(self, dim=None, keepdim=False):
        return _F.MaxAll.apply(self, dim, keepdim, True)

    def var(self, dim=None, unbiased=True, keepdim=False, correction=None):
        if correction is None:
            correction = 1 if unbiased else 0
        return _F.Var.apply(self, dim, correction, keepdim)

    def std(self, dim=None, unbiased=True, keepdim=False, correction=None):
        return self.var(dim, unbiased, keepdim, correction).sqrt()

    def logsumexp(self, dim, keepdim=False):
        return _F.LogSumExp.apply(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return self._make(self.device.asarray(self.data.argmax(axis=dim, keepdims=keepdim)), self.device, False, None)

    def argmin(self, dim=None, keepdim=False):
        return self._make(self.device.asarray(self.data.argmin(axis=dim, keepdims=keepdim)), self.device, False, None)

    # ------------------------------------------------------------------ math
    exp = _unary_method(_F.Exp, "exp")
    log = _unary_method(_F.Log, "log")
    sqrt = _unary_method(_F.Sqrt, "sqrt")
    abs = _unary_method(_F.Abs, "abs")

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        for name, bound in (("min", min), ("max", max)):
            if isinstance(bound, TensorBase):
                if bound.device != self.device:
                    raise RuntimeError(f"clamp: {name} is on {bound.device} but the tensor is on {self.device}")
                if bound.dtype != self.dtype:
                    raise TypeError(f"clamp: {name} has dtype {bound.dtype} but the tensor has dtype "
                                    f"{self.dtype}; convert one with .to(dtype)")
        return _F.Clamp.apply(self, min, max)

    clip = clamp

    tanh = _unary_method(_F.Tanh, "tanh")
    sin = _unary_method(_F.Sin, "sin")
    cos = _unary_method(_F.Cos, "cos")

    # ---- erf (issue 13)
    def erf(self):
        """The error function, elementwise (differentiable). As torch.erf, an integer or bool
        tensor gives float32; float16 is computed in float32 and rounded back."""
        if self.dtype == _FLOAT16 or self.data.dtype.kind not in FLOAT_KINDS:
            y = self.to(_FLOAT32).erf()
            return y.to(_FLOAT16) if self.dtype == _FLOAT16 else y
        return _F.Erf.apply(self)
    # ---- end erf

    def maximum(self, other):
        check_pair("maximum", self, other)
        return _F.Maximum.apply(self, other, False)

    def minimum(self, other):
        check_pair("minimum", self, other)
        return _F.Maximum.apply(self, other, True)

    def masked_fill(self, mask, value):
        """Where `mask` (bool, broadcastable) is true, `value`; elsewhere self."""
        m = mask.data if isinstance(mask, TensorBase) else np.asarray(mask)
        if isinstance(m, np.ndarray):
            m = self.device.from_host(m)
        if m.dtype != np.bool_:
            raise TypeError(f"masked_fill: mask must be bool, got {m.dtype}")
        return _F.MaskedFill.apply(self, m, value)

    def tril(self, diagonal=0):
        return _F.MaskedFill.apply(self, self._triangle_mask(diagonal + 1, lower=False), 0)

    def triu(self, diagonal=0):
        return _F.MaskedFill.apply(self, self._triangle_mask(diagonal - 1, lower=True), 0)

    def _triangle_mask(self, diagonal, lower):
        """The bool (rows, cols) mask of the elements on or below (lower) / above the diagonal."""
        rows, cols = self.shape[-2:]
        ones = np.ones((rows, cols), bool)
        mask = np.tril(ones, diagonal) if lower else np.triu(ones, diagonal)
        return self.device.from_host(mask)

    sigmoid = _unary_method(_F.Sigmoid, "sigmoid")
    relu = _unary_method(_F.Relu, "relu")

    def gelu(self, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return _F.Gelu.apply(self, approximate)

    selu = _unary_method(_F.Selu, "selu")

    def softplus(self, beta=1.0, threshold=20.0):
        return _F.Softplus.apply(self, beta, threshold)

    silu = _unary_method(_F.Silu, "silu")

    def softmax(self, dim=-1):
        return _F.Softmax.apply(self, dim)

    def log_softmax(self, dim=-1):
        return _F.LogSoftmax.apply(self, dim)

    def matmul(self, other):
        return self.__matmul__(other)

    def pow(self, exponent):
        return self.__pow__(exponent)
