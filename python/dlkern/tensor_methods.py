"""The differentiable methods of dlkern.Tensor that only build Functions: indexing and
shape, reductions, and math (dlkern.tensor.Tensor derives from TensorMethods). They
hold no state of their own; the argument helpers here are shared with dlkern.creation."""

import collections
import numbers
import operator

import numpy as np

from . import functions as _F
from . import linalg as _linalg
from .autograd import TensorBase
from .autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from .dtypes import as_dtype, bfloat16 as _BFLOAT16, is_floating, is_low_precision
from .functions.reduce import _axes
from .tensor_indexing import IndexingMethods  # gather, scatter, sort, flip, ..., masked_fill
from .ops.softmax import resolve_dim
from .dtypes import float32 as _FLOAT32

MinMaxResult = collections.namedtuple("MinMaxResult", ["values", "indices"])


def check_pair(op, a, b):
    """The two tensors of a binary op that takes no scalars: same dtype, same device."""
    if not isinstance(b, TensorBase):
        raise TypeError(f"{op}: expected a Tensor, got {type(b).__name__}")
    if a.data.dtype != b.data.dtype and not _autocast_mixed():  # (autocast casts them)
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
        # (an empty list selects nothing: int64, not NumPy's float64 for [])
        return np.asarray(index) if index else np.zeros(0, np.int64)
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


class TensorMethods(IndexingMethods):
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
        if self.ndim == 0:  # PyTorch: dims 0 and -1 name a 0-d tensor's one "dimension"
            _axes((dim0, dim1), 0)
            return _F.Reshape.apply(self, ())
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
        if not is_floating(self.data.dtype):
            raise TypeError(f"mean() needs a floating-point tensor, got {self.dtype}")
        return _F.Mean.apply(self, dim, keepdim)

    def _max_min(self, dim, keepdim, is_min):
        if dim is None or isinstance(dim, tuple):
            return _F.MaxAll.apply(self, dim, keepdim, is_min)
        values = _F.MaxDim.apply(self, dim, keepdim, is_min)
        return MinMaxResult(values, self._arg_index(dim, keepdim, is_min))

    def _arg_index(self, dim, keepdim, is_min):
        """argmin/argmax along dim (None: of the flattened tensor) as an int64 tensor."""
        if self.ndim == 0 and dim is not None:
            _axes(dim, 0)  # 0 or -1, as PyTorch; the one element is index 0
            idx = self.device.zeros((), dtype=np.int64)
        else:
            if self.data.size == 0 and (dim is None or self.shape[dim] == 0):
                raise IndexError(f"{'argmin' if is_min else 'argmax'}(): expected a reduction dim with non-zero "
                                 f"size, got shape {tuple(self.shape)} and dim={dim}")
            idx = (self.data.argmin if is_min else self.data.argmax)(axis=dim, keepdims=keepdim)
        return self._make(self.device.asarray(idx), self.device, False, None)

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
        return self._arg_index(dim, keepdim, False)

    def argmin(self, dim=None, keepdim=False):
        return self._arg_index(dim, keepdim, True)

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
        tensor gives float32; float16 and bfloat16 are computed in float32 and rounded back."""
        if is_low_precision(self.dtype) or not is_floating(self.data.dtype):
            y = self.to(_FLOAT32).erf()
            return y.to(self.dtype) if is_low_precision(self.dtype) else y
        return _F.Erf.apply(self)
    # ---- end erf

    def maximum(self, other):
        check_pair("maximum", self, other)
        return _F.Maximum.apply(self, other, False)

    def minimum(self, other):
        check_pair("minimum", self, other)
        return _F.Maximum.apply(self, other, True)

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

    def softmax(self, dim=-1, *, axis=None):
        """softmax along dim (``axis=`` is its keyword alias, as torch.softmax)."""
        return _F.Softmax.apply(self, resolve_dim(dim, axis, "softmax"))

    def log_softmax(self, dim=-1, *, axis=None):
        return _F.LogSoftmax.apply(self, resolve_dim(dim, axis, "log_softmax"))

    def matmul(self, other):
        return self.__matmul__(other)

    def pow(self, exponent):
        return self.__pow__(exponent)

    # ------------------------------------------------------------------ math breadth (issue 13)
    # scans and products, norms, batched and outer products, any/all, lerp, add/sub with
    # alpha, dtype conversions. (Kept last in the class: `int` and `bool` are method names.)
    def add(self, other, *, alpha=1):
        """self + alpha * other; the gradient of other is alpha times the incoming one."""
        return self + scaled_operand("add", self, other, alpha)

    def sub(self, other, *, alpha=1):
        """self - alpha * other."""
        return self - scaled_operand("sub", self, other, alpha)

    def cumsum(self, dim, *, dtype=None):
        x = self if dtype is None else self.to(as_dtype(dtype))
        return _F.CumSum.apply(x, _one_dim(dim, x.ndim, "cumsum"))

    def cumprod(self, dim, *, dtype=None):
        x = self if dtype is None else self.to(as_dtype(dtype))
        return _F.CumProd.apply(x, _one_dim(dim, x.ndim, "cumprod"))

    def prod(self, dim=None, keepdim=False, *, dtype=None):
        """The product of all elements (dim None) or along one dim."""
        x = self if dtype is None else self.to(as_dtype(dtype))
        return _F.Prod.apply(x, None if dim is None else _one_dim(dim, x.ndim, "prod"), bool(keepdim))

    def norm(self, p="fro", dim=None, keepdim=False, dtype=None):
        """The vector p-norm over dim (all elements by default); 'fro' is the 2-norm over
        at most 2 dims, as torch.norm. The nuclear norm ('nuc') is not supported."""
        if p is None:
            p = "fro"
        if isinstance(p, str):
            if p == "nuc":
                raise NotImplementedError("norm: p='nuc' (the nuclear norm, which needs an SVD) is not supported")
            if p != "fro":
                raise RuntimeError(f"norm: order {p!r} is not supported; use 'fro' or a number")
            if dim is not None and not isinstance(dim, int) and len(dim) > 2:
                raise RuntimeError(f"norm: p='fro' reduces at most 2 dims, got dim={tuple(dim)}")
            p = 2
        return _linalg.vector_norm(self, p, dim, keepdim, dtype=dtype)

    def bmm(self, mat2):
        """Batched matrix product of (b, n, m) and (b, m, p) tensors (no broadcasting)."""
        _check_batches("bmm", self, mat2)
        return _F.MatMul.apply(self, mat2)

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
        """beta * self + alpha * (batch1 @ batch2); self broadcasts to the (b, n, p)
        result; with beta == 0 self is not read (its NaN/Inf are not propagated)."""
        _check_batches("baddbmm", batch1, batch2)
        check_pair("baddbmm", batch1, self)
        shape = (batch1.shape[0], batch1.shape[1], batch2.shape[2])
        try:
            fits = np.broadcast_shapes(tuple(self.shape), shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise RuntimeError(f"baddbmm: input of shape {tuple(self.shape)} does not broadcast to the result's "
                               f"shape {shape}")
        for name, v in (("beta", beta), ("alpha", alpha)):
            if not isinstance(v, numbers.Number):
                raise TypeError(f"baddbmm: {name} must be a number, got {type(v).__name__}")
        return _F.BaddBmm.apply(self, batch1, batch2, beta, alpha)

    def outer(self, vec2):
        """The outer product of two 1-D tensors: (n,) x (m,) -> (n, m)."""
        for name, t in (("self", self), ("vec2", vec2)):
            if not isinstance(t, TensorBase):
                raise TypeError(f"outer: {name} must be a Tensor, got {type(t).__name__}")
            if t.ndim != 1:
                raise RuntimeError(f"outer: Expected 1-D argument {name}, but got {t.ndim}-D")
        return self.reshape(-1, 1) * vec2.reshape(1, -1)

    def _any_all(self, dim, keepdim, name):
        axes = None if dim is None or self.ndim == 0 else _axes(dim, self.ndim)
        if dim is not None and self.ndim == 0:
            for d in (dim if isinstance(dim, (tuple, list)) else (dim,)):
                _one_dim(d, 0, name)  # only 0 and -1 name the one dim of a 0-d tensor
        if self.data.size == 0:
            # nothing to reduce: the identity (any False, all True) in the result's shape (the
            # CUDA max/min reductions refuse zero-size input)
            shape = getattr(np.empty(self.shape, bool), name)(axis=axes, keepdims=bool(keepdim)).shape
            out = self.device.full(shape, name == "all", dtype=np.bool_)
        else:
            out = self.device.asarray(getattr(self.data, name)(axis=axes, keepdims=bool(keepdim)))
        return self._make(out, self.device, False, None)

    def any(self, dim=None, keepdim=False):
        """Whether any element (along dim, an int or a tuple) is nonzero: bool, no grad."""
        return self._any_all(dim, keepdim, "any")

    def all(self, dim=None, keepdim=False):
        """Whether every element (along dim) is nonzero: bool, no grad."""
        return self._any_all(dim, keepdim, "all")

    def lerp(self, end, weight):
        """self + weight * (end - self); weight a number or a tensor; all three broadcast."""
        if not is_floating(self.dtype):
            raise NotImplementedError(f"lerp: not implemented for dtype {self.dtype}; it needs floating point")
        check_pair("lerp", self, end)
        if isinstance(weight, TensorBase):
            check_pair("lerp", self, weight)
        elif isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(f"lerp: weight must be a number or a Tensor, got {type(weight).__name__}")
        return _F.Lerp.apply(self, end, weight)

    def half(self):
        return self.to(np.float16)

    def bfloat16(self):
        return self.to(_BFLOAT16)

    def is_floating_point(self):
        """Whether the dtype is a floating-point one (bfloat16 included), as torch's."""
        return is_floating(self.dtype)

    def int(self):
        return self.to(np.dtype(np.int32))

    def short(self):
        return self.to(np.dtype(np.int16))

    def byte(self):
        return self.to(np.dtype(np.uint8))

    def bool(self):
        return self.to(np.dtype(np.bool_))


def scaled_operand(op, t, other, alpha):
    """alpha * other for t.add/sub(other, alpha=...), with PyTorch's checks of alpha."""
    if not isinstance(alpha, numbers.Number):
        raise TypeError(f"{op}: alpha must be a number, got {type(alpha).__name__}")
    if isinstance(alpha, bool) and t.dtype.kind != "b":
        raise RuntimeError(f"{op}: Boolean alpha only supported for Boolean results.")
    if t.dtype.kind in "biu" and isinstance(alpha, float):
        raise RuntimeError(f"{op}: For integral input tensors, argument alpha must not be a floating point number.")
    return other if alpha == 1 else other * alpha


def _one_dim(dim, ndim, op):
    """One dim of a scan or product, normalised (a 0-d tensor has dims 0 and -1)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return int(dim) % n


def _check_batches(op, a, b):
    """The batch1, batch2 of bmm/baddbmm: tensors of one dtype, 3-D, (b, n, m) and (b, m, p)."""
    check_pair(op, a, b)
    for name, t in (("batch1", a), ("batch2", b)):
        if t.ndim != 3:
            raise RuntimeError(f"{op}: {name} must be a 3D tensor, got {t.ndim}-D")
    if b.shape[:2] != (a.shape[0], a.shape[2]):
        raise RuntimeError(f"{op}: Expected size for first two dimensions of batch2 tensor to be: "
                           f"[{a.shape[0]}, {a.shape[2]}] but got: [{b.shape[0]}, {b.shape[1]}].")
# --- end math breadth
