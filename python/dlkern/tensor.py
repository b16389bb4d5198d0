"""dlkern.Tensor: an array (numpy.ndarray on CPU) plus autograd state.

``t.data`` is the array itself; ``t.grad`` a Tensor (or None); ``t.grad_fn`` the
Function node that produced it. Operators and methods build the graph through the
Functions in dlkern.functions, so gradients flow through everything here.

In-place updates (``+=``, ``-=``, ``*=``, ``/=``, ``add_``, ``t[i] = v``, ...) change
``t.data`` itself, so every reference to ``t`` sees them (``p -= lr * p.grad`` under
``dlkern.no_grad()`` is the manual SGD step). There are no version counters, so while
grad mode is on they are refused (RuntimeError) on a tensor that requires grad (a leaf,
as PyTorch, or a graph node whose saved values they could corrupt) and with a right side
that requires grad.
"""

import builtins as _builtins
import collections as _collections
import numbers
import operator as _operator

import numpy as np

from . import autograd as _autograd
from .autograd import function as _function_module
from .autograd.engine import backward as _run_backward
from .autograd.grad_mode import GradMode
from .device import CPUDevice, CUDADevice, cpu as _cpu, device as _get_device

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
float16 = np.dtype(np.float16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
long = int64
bool_ = np.dtype(np.bool_)
_FLOAT_KINDS = "f"
_DEFAULT_FLOAT = float32


class _RNG:
    generator = np.random.default_rng()


def manual_seed(seed):
    """Seed dlkern's random generator (randn/rand, init, dropout)."""
    _RNG.generator = np.random.default_rng(int(seed))
    return _RNG.generator


def default_generator():
    return _RNG.generator


def _as_dtype(dtype):
    if dtype is None:
        return None
    if isinstance(dtype, str):
        dtype = {"float": "float32", "double": "float64", "long": "int64", "int": "int32"}.get(dtype, dtype)
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unsupported dtype {dtype!r}") from None


class Tensor:
    """An n-dimensional array with autograd. See the module docstring."""

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "device", "__weakref__")
    __array_ufunc__ = None  # ndarray OP Tensor defers to the Tensor's reflected operator

    def __init__(self, data, dtype=None, device="cpu", requires_grad=False):
        dev = _get_device(device)
        dtype = _as_dtype(dtype)
        if isinstance(data, Tensor):
            data = _host_array(data.data)  # a device tensor is copied through the host
        arr = np.array(data, dtype=dtype, copy=True)
        if dtype is None:
            native = isinstance(data, (np.ndarray, np.generic))
            if arr.dtype.kind == "f" and not native:
                arr = arr.astype(_DEFAULT_FLOAT)  # Python floats -> float32, as PyTorch
            elif arr.dtype.kind in "iu" and not native:
                arr = arr.astype(np.int64)
            elif arr.dtype == object:
                raise TypeError(f"cannot make a tensor from {type(data).__name__} (object array)")
        self.data = dev.from_host(arr)  # the array itself on the CPU
        self.grad = None
        self.grad_fn = None
        self.device = dev
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data, device, requires_grad, grad_fn):
        t = object.__new__(Tensor)
        t.data = data
        t.grad = None
        t.requires_grad = requires_grad
        t.grad_fn = grad_fn
        t.device = device
        return t

    def _wrap_grad(self, array):
        return Tensor._make(array, self.device, False, None)

    # ------------------------------------------------------------------ properties
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        return self.data.ndim

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind not in _FLOAT_KINDS:
            raise RuntimeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("cannot set requires_grad=False on a non-leaf tensor; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    # ------------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's .grad. A non-scalar needs
        `gradient` (the cotangent, shaped like self)."""
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; this tensor has shape "
                    f"{tuple(self.shape)}: pass gradient= (a tensor of that shape)")
            grad = self.device.ones_like(self.data)
        else:
            if isinstance(gradient, Tensor):
                if gradient.device != self.device:
                    raise RuntimeError(f"backward: gradient is on {gradient.device} but the tensor is on {self.device}")
                grad = gradient.data
            else:
                grad = self.device.from_host(np.asarray(gradient, dtype=self.dtype))
            if grad.shape != self.data.shape:
                raise RuntimeError(f"gradient has shape {tuple(grad.shape)} but the tensor has shape {tuple(self.shape)}")
        _run_backward(self, grad, retain_graph)

    def detach(self):
        return Tensor._make(self.data, self.device, False, None)

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def retain_grad(self):
        raise NotImplementedError("retain_grad is not supported; use a hook-free leaf (detach().requires_grad_())")

    # ------------------------------------------------------------------ conversion
    def numpy(self):
        if self.device is not _cpu:
            raise TypeError(f"can't convert a {self.device} tensor to numpy; use .cpu() to copy it to the host first")
        if self.requires_grad:
            raise RuntimeError("can't call numpy() on a tensor that requires grad; use .detach().numpy()")
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"only one-element tensors can be converted to Python scalars (shape {tuple(self.shape)})")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        """NumPy 2's protocol: copy=True always copies; copy=False shares memory or raises
        ValueError when it cannot (a dtype change); None shares memory when it can."""
        if self.device is not _cpu:
            raise TypeError(f"can't convert a {self.device} tensor to a NumPy array implicitly; use .cpu() first")
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            if copy is False:
                raise ValueError(f"Tensor.__array__: converting dtype {self.data.dtype} to {np.dtype(dtype)} needs "
                                 f"a copy, but copy=False was requested")
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else (f"cuda:{device}" if isinstance(device, int) else device))

    def _moved(self, target):
        """self on `target` (a device namespace), differentiable; self when already there."""
        if target is self.device or target == self.device and type(target) is type(self.device):
            return self
        return _ToDevice.apply_to(self, target)

    def to(self, *args, **kwargs):
        """to(device), to(dtype) or to(device, dtype); gradients flow through a dtype cast."""
        target_device, target_dtype = None, kwargs.get("dtype")
        if "device" in kwargs:
            target_device = _get_device(kwargs["device"])
        for a in args:
            if isinstance(a, (str, CPUDevice, CUDADevice)):
                target_device = _get_device(a)
            else:
                target_dtype = a
        out = self
        if target_dtype is not None and _as_dtype(target_dtype) != self.dtype:
            out = _F.Cast.apply(out, _as_dtype(target_dtype))
        if target_device is not None:
            out = out._moved(target_device)
        return out

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)

    def type(self, dtype):
        return self.to(dtype)

    def clone(self):
        return _F.Cast.apply(self, None)

    def contiguous(self):
        return self

    def __repr__(self):
        host = self.data if self.device is _cpu else self.data.numpy()
        body = np.array2string(host, separator=", ", prefix="tensor(")
        extra = "" if self.device is _cpu else f", device='{self.device}'"
        if self.data.dtype != float32 and self.data.dtype != int64:
            extra += f", dtype={self.data.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{type(self.grad_fn).__name__}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ operators
    def __add__(self, other):
        return _F.Add.apply(self, _operand(self, other))

    def __radd__(self, other):
        return _F.Add.apply(_operand(self, other), self)

    def __sub__(self, other):
        return _F.Sub.apply(self, _operand(self, other))

    def __rsub__(self, other):
        return _F.Sub.apply(_operand(self, other), self)

    def __mul__(self, other):
        return _F.Mul.apply(self, _operand(self, other))

    def __rmul__(self, other):
        return _F.Mul.apply(_operand(self, other), self)

    def __truediv__(self, other):
        return _F.Div.apply(self, _operand(self, other))

    def __rtruediv__(self, other):
        return _F.Div.apply(_operand(self, other), self)

    def __pow__(self, other):
        return _F.Pow.apply(self, _operand(self, other))

    def __rpow__(self, other):
        return _F.Pow.apply(_operand(self, other), self)

    def __matmul__(self, other):
        _check_pair("matmul", self, other)
        return _F.MatMul.apply(self, other)

    def __rmatmul__(self, other):
        other = _operand(self, other)
        return _F.MatMul.apply(other, self)

    def __neg__(self):
        return _F.Neg.apply(self)

    def __abs__(self):
        return self.abs()

    def __pos__(self):
        return self

    def _compare(self, other, op):
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise RuntimeError(f"comparison of tensors on different devices: {self.device} and {other.device}")
            other = other.data
        return Tensor._make(op(self.data, other), self.device, False, None)

    def __eq__(self, other):
        return self._compare(other, _operator.eq)

    def __ne__(self, other):
        return self._compare(other, _operator.ne)

    def __lt__(self, other):
        return self._compare(other, _operator.lt)

    def __le__(self, other):
        return self._compare(other, _operator.le)

    def __gt__(self, other):
        return self._compare(other, _operator.gt)

    def __ge__(self, other):
        return self._compare(other, _operator.ge)

    def __invert__(self):
        return Tensor._make(~self.data, self.device, False, None)

    def __and__(self, other):
        return self._compare(other, _operator.and_)

    def __or__(self, other):
        return self._compare(other, _operator.or_)

    # ------------------------------------------------------------------ in place (no grad)
    def _inplace_ok(self):
        # No version counters here: an in-place change to a tensor the graph may have
        # saved would silently corrupt gradients, so it is refused while recording.
        if GradMode.enabled and self.requires_grad:
            if self.grad_fn is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation; "
                                   "wrap the update in dlkern.no_grad()")
            raise RuntimeError("in-place operations on a tensor that is part of the autograd graph are not "
                               "supported; use the out-of-place op (or .detach() first)")

    def __setitem__(self, index, value):
        self._inplace_ok()
        self.data[_index(index)] = value.data if isinstance(value, Tensor) else value

    def zero_(self):
        self._inplace_ok()
        self.data[...] = 0
        return self

    def fill_(self, value):
        self._inplace_ok()
        self.data[...] = value
        return self

    def copy_(self, src):
        self._inplace_ok()
        if self.device is not _cpu:
            src = src._moved(self.device).data if isinstance(src, Tensor) else self.device.from_host(np.asarray(src))
            self.data.copy_(src if src.dtype == self.dtype else src.astype(self.dtype))
            return self
        if isinstance(src, Tensor) and src.device is not _cpu:
            src = src.cpu()
        np.copyto(self.data, src.data if isinstance(src, Tensor) else src, casting="same_kind")
        return self

    def add_(self, other, alpha=1):
        self._inplace_ok()
        other = other.data if isinstance(other, Tensor) else other
        self.data += other * alpha if alpha != 1 else other
        return self

    def sub_(self, other, alpha=1):
        return self.add_(other, -alpha)

    def mul_(self, other):
        self._inplace_ok()
        self.data *= other.data if isinstance(other, Tensor) else other
        return self

    def div_(self, other):
        self._inplace_ok()
        self.data /= other.data if isinstance(other, Tensor) else other
        return self

    # In-place operators (p -= lr * g). They change self.data itself, so every other
    # reference (an optimizer's parameter list, a module attribute) sees the update.
    # Allowed only when nothing is recorded (under no_grad, or on a tensor that does not
    # require grad), like the other in-place methods: see _inplace_ok. The right side
    # broadcasts to self's shape but never changes it; self keeps its dtype.
    def _inplace_binary(self, other, op, symbol):
        self._inplace_ok()
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise RuntimeError(f"{symbol}: tensors on different devices: {self.device} and {other.device}")
            if other.requires_grad and GradMode.enabled:
                # self would have to join the graph; without recording, other's gradient would be lost.
                raise RuntimeError(f"{symbol}: in-place operation with a right side that requires grad is not "
                                   f"supported while grad mode is on; write `x = x {symbol[0]} y` (out of place) "
                                   f"or wrap it in dlkern.no_grad()")
            value = other.data
        elif isinstance(other, (numbers.Number, np.ndarray, np.generic)):
            if isinstance(other, np.ndarray) and self.device is not _cpu:
                raise TypeError(f"{symbol}: cannot combine a numpy.ndarray (cpu) with a tensor on {self.device}")
            value = other
        else:
            return NotImplemented
        shape = tuple(self.data.shape)
        other_shape = tuple(np.shape(value))
        try:
            result_shape = np.broadcast_shapes(shape, other_shape)
        except ValueError:
            result_shape = None
        if result_shape != shape:
            raise RuntimeError(f"{symbol}: output with shape {shape} doesn't match the broadcast shape "
                               f"{result_shape if result_shape is not None else 'of ' + str(other_shape)} "
                               f"(the right side has shape {other_shape})")
        try:
            op(self.data, value)
        except TypeError as exc:  # numpy's UFuncTypeError: e.g. a float result into an int tensor
            raise RuntimeError(f"{symbol}: result of dtype {np.result_type(self.data, value)} can't be cast "
                               f"to the tensor's dtype {self.data.dtype} in place ({exc})") from None
        return self

    def __iadd__(self, other):
        return self._inplace_binary(other, _operator.iadd, "+=")

    def __isub__(self, other):
        return self._inplace_binary(other, _operator.isub, "-=")

    def __imul__(self, other):
        return self._inplace_binary(other, _operator.imul, "*=")

    def __itruediv__(self, other):
        return self._inplace_binary(other, _operator.itruediv, "/=")

    # ------------------------------------------------------------------ indexing and shape
    def __getitem__(self, index):
        return _F.GetItem.apply(self, _index(index))

    def reshape(self, *shape):
        shape = _shape_arg(shape)
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
        dims = tuple(d % self.ndim for d in _shape_arg(dims))
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {self.ndim} dimensions")
        return _F.Permute.apply(self, dims)

    def expand(self, *shape):
        shape = _shape_arg(shape)
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
        return split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return chunk(self, chunks, dim)

    # ------------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False):
        return _F.Sum.apply(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        if self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"mean() needs a floating-point tensor, got {self.dtype}")
        return _F.Mean.apply(self, dim, keepdim)

    def _max_min(self, dim, keepdim, is_min):
        if dim is None or isinstance(dim, tuple):
            return _F.MaxAll.apply(self, dim, keepdim, is_min)
        values = _F.MaxDim.apply(self, dim, keepdim, is_min)
        idx = (self.data.argmin if is_min else self.data.argmax)(axis=dim, keepdims=keepdim)
        return MinMaxResult(values, Tensor._make(idx, self.device, False, None))

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
        return Tensor._make(self.device.asarray(self.data.argmax(axis=dim, keepdims=keepdim)), self.device, False, None)

    def argmin(self, dim=None, keepdim=False):
        return Tensor._make(self.device.asarray(self.data.argmin(axis=dim, keepdims=keepdim)), self.device, False, None)

    # ------------------------------------------------------------------ math
    def exp(self):
        return _F.Exp.apply(self)

    def log(self):
        return _F.Log.apply(self)

    def sqrt(self):
        return _F.Sqrt.apply(self)

    def abs(self):
        return _F.Abs.apply(self)

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        for name, bound in (("min", min), ("max", max)):
            if isinstance(bound, Tensor):
                if bound.device != self.device:
                    raise RuntimeError(f"clamp: {name} is on {bound.device} but the tensor is on {self.device}")
                if bound.dtype != self.dtype:
                    raise TypeError(f"clamp: {name} has dtype {bound.dtype} but the tensor has dtype "
                                    f"{self.dtype}; convert one with .to(dtype)")
        return _F.Clamp.apply(self, min, max)

    clip = clamp

    def tanh(self):
        return _F.Tanh.apply(self)

    def sin(self):
        return _F.Sin.apply(self)

    def cos(self):
        return _F.Cos.apply(self)

    def maximum(self, other):
        _check_pair("maximum", self, other)
        return _F.Maximum.apply(self, other, False)

    def minimum(self, other):
        _check_pair("minimum", self, other)
        return _F.Maximum.apply(self, other, True)

    def masked_fill(self, mask, value):
        """Where `mask` (bool, broadcastable) is true, `value`; elsewhere self."""
        m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
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

    def sigmoid(self):
        return _F.Sigmoid.apply(self)

    def relu(self):
        return _F.Relu.apply(self)

    def gelu(self, approximate="none"):
        return gelu(self, approximate)

    def selu(self):
        return _F.Selu.apply(self)

    def softplus(self, beta=1.0, threshold=20.0):
        return _F.Softplus.apply(self, beta, threshold)

    def silu(self):
        return _F.Silu.apply(self)

    def softmax(self, dim=-1):
        return _F.Softmax.apply(self, dim)

    def log_softmax(self, dim=-1):
        return _F.LogSoftmax.apply(self, dim)

    def matmul(self, other):
        return self.__matmul__(other)

    def pow(self, exponent):
        return self.__pow__(exponent)


# ---------------------------------------------------------------------- helpers

MinMaxResult = _collections.namedtuple("MinMaxResult", ["values", "indices"])

def _operand(t, other):
    """The other operand of a binary op: Tensors are checked against t (dtype, device);
    scalars pass through (NumPy keeps t's precision for Python scalars)."""
    if isinstance(other, Tensor):
        if other.data.dtype != t.data.dtype and other.data.dtype.kind == "f" and t.data.dtype.kind == "f":
            raise TypeError(f"dtype mismatch: {t.data.dtype} and {other.data.dtype}; convert one with .to(dtype)")
        return other
    if isinstance(other, numbers.Number):
        return other
    if isinstance(other, np.ndarray):
        if t.device is not _cpu:
            raise TypeError(f"cannot combine a numpy.ndarray (cpu) with a tensor on {t.device}; "
                            f"make it a tensor on {t.device} first")
        return Tensor._make(other, t.device, False, None)
    if t.device is not _cpu and isinstance(other, t.device.array_type):
        return Tensor._make(other, t.device, False, None)
    raise TypeError(f"unsupported operand type {type(other).__name__} for a Tensor op")


def _check_pair(op, a, b):
    if not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(b).__name__}")
    if a.data.dtype != b.data.dtype:
        raise TypeError(f"{op}: dtype mismatch: {a.data.dtype} and {b.data.dtype}; convert one with .to(dtype)")
    if a.device is not b.device:
        raise RuntimeError(f"{op}: tensors on different devices: {a.device} and {b.device}")


def _index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    try:
        # operator.index, not int(): a float size (2.7) is an error, not silently 2.
        return tuple(_operator.index(n) for n in shape)
    except TypeError:
        raise TypeError(f"sizes must be ints, got {tuple(shape)!r} "
                        f"({', '.join(sorted({type(n).__name__ for n in shape}))})") from None


# ---------------------------------------------------------------------- factories

def tensor(data, dtype=None, device="cpu", requires_grad=False):
    """A new tensor holding a copy of `data` (Python floats -> float32, ints -> int64;
    NumPy arrays keep their dtype)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array):
    """A tensor sharing memory with `array`."""
    return Tensor._make(np.asarray(array), _cpu, False, None)


def _factory(array, device, requires_grad):
    """A tensor on `device` from a host array made by a factory (copied to a GPU)."""
    dev = _get_device(device)
    t = Tensor._make(dev.from_host(array), dev, False, None)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _dt(dtype):
    return _as_dtype(dtype) or _DEFAULT_FLOAT


def zeros(*size, dtype=None, device="cpu", requires_grad=False):
    return _factory(np.zeros(_shape_arg(size), _dt(dtype)), device, requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False):
    return _factory(np.ones(_shape_arg(size), _dt(dtype)), device, requires_grad)


def empty(*size, dtype=None, device="cpu", requires_grad=False):
    return _factory(np.empty(_shape_arg(size), _dt(dtype)), device, requires_grad)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False):
    return _factory(np.full(_shape_arg((size,)) if not isinstance(size, int) else (size,), fill_value,
                            _dt(dtype)), device, requires_grad)


def randn(*size, dtype=None, device="cpu", requires_grad=False, generator=None):
    rng = generator or _RNG.generator
    dt = _dt(dtype)
    arr = rng.standard_normal(_shape_arg(size), dtype=dt if dt in (float32, float64) else float64).astype(dt, copy=False)
    return _factory(arr, device, requires_grad)


def rand(*size, dtype=None, device="cpu", requires_grad=False, generator=None):
    rng = generator or _RNG.generator
    dt = _dt(dtype)
    arr = rng.random(_shape_arg(size), dtype=dt if dt in (float32, float64) else float64).astype(dt, copy=False)
    return _factory(arr, device, requires_grad)


def randint(low, high=None, size=(), dtype=None, device="cpu", generator=None):
    rng = generator or _RNG.generator
    if high is None:
        low, high = 0, low
    return _factory(rng.integers(low, high, size=size).astype(_as_dtype(dtype) or int64), device, False)


def arange(start, end=None, step=1, dtype=None, device="cpu", requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if is_int else _DEFAULT_FLOAT
    return _factory(np.arange(start, end, step, dtype=_as_dtype(dtype)), device, requires_grad)


def _like(fn, t, dtype, requires_grad, *extra):
    dtype = _as_dtype(dtype) or t.dtype
    return _factory(fn(t.shape, *extra, dtype=dtype), t.device, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _factory(np.zeros(t.shape, _as_dtype(dtype) or t.dtype), t.device, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _factory(np.ones(t.shape, _as_dtype(dtype) or t.dtype), t.device, requires_grad)


def empty_like(t, dtype=None, requires_grad=False):
    return _factory(np.empty(t.shape, _as_dtype(dtype) or t.dtype), t.device, requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    return _factory(np.full(t.shape, fill_value, _as_dtype(dtype) or t.dtype), t.device, requires_grad)


def randn_like(t, dtype=None, requires_grad=False):
    return randn(*t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def rand_like(t, dtype=None, requires_grad=False):
    return rand(*t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


# ---------------------------------------------------------------------- free functions

def _tensors(seq, op):
    seq = list(seq)
    if not seq:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    first = seq[0]
    for t in seq:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensors, got {type(t).__name__}")
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: dtype mismatch: {first.dtype} and {t.dtype}")
    return seq


def cat(tensors, dim=0):
    tensors = _tensors(tensors, "cat")
    nd = tensors[0].ndim
    return _F.Cat.apply(dim % nd if nd else dim, *tensors)


concatenate = cat


def stack(tensors, dim=0):
    tensors = _tensors(tensors, "stack")
    return _F.Stack.apply(dim % (tensors[0].ndim + 1), *tensors)


def split(t, split_size_or_sections, dim=0):
    n = t.shape[dim]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ValueError("split: split_size must be positive")
        sizes = [_builtins.min(split_size_or_sections, n - s) for s in range(0, n, split_size_or_sections)]
    else:
        sizes = list(split_size_or_sections)
        if _builtins.sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} do not sum to the size {n} of dim {dim}")
    out, start = [], 0
    prefix = (slice(None),) * (dim % t.ndim)
    for s in sizes:
        out.append(t[prefix + (slice(start, start + s),)])
        start += s
    return tuple(out)


def chunk(t, chunks, dim=0):
    n = t.shape[dim]
    size = -(-n // chunks)
    return split(t, size, dim)


def where(condition, a, b):
    ref = a if isinstance(a, Tensor) else b
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype != b.dtype:
        raise TypeError(f"where: dtype mismatch: {a.dtype} and {b.dtype}")
    if isinstance(condition, Tensor):
        if isinstance(ref, Tensor) and condition.device != ref.device:
            raise RuntimeError(f"where: condition is on {condition.device} but the values are on {ref.device}")
        cond = condition.data
    else:
        cond = np.asarray(condition)
        if isinstance(ref, Tensor):
            cond = ref.device.from_host(cond)
    if isinstance(ref, Tensor):
        return _F.Where.apply(cond, a, b)
    if not isinstance(cond, np.ndarray):
        raise TypeError("where: with a device condition, a or b must be a Tensor")
    return tensor(np.where(cond, a, b))


def _unary(name):
    def fn(t, *args, **kwargs):
        return getattr(t, name)(*args, **kwargs)
    fn.__name__ = name
    fn.__doc__ = f"dlkern.{name}(t, ...) is t.{name}(...)."
    return fn


for _name in ("exp", "log", "sqrt", "abs", "clamp", "tanh", "sin", "cos", "maximum", "minimum", "masked_fill",
              "tril", "triu", "sigmoid", "relu", "selu", "softplus", "silu",
              "sum", "mean", "max", "min", "var", "std", "logsumexp", "argmax", "argmin", "reshape",
              "transpose", "permute", "flatten", "squeeze", "unsqueeze", "softmax", "log_softmax", "amax", "amin"):
    globals()[_name] = _unary(_name)
del _name


def matmul(a, b):
    return a @ b


def gelu(t, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _F.Gelu.apply(t, approximate)


class _Functions:
    """Namespace of all Function classes (filled below)."""


_F = _Functions()

_function_module.Tensor = Tensor

from .functions import elementwise as _fe, reduce as _fr, shape as _fs, linalg as _fl  # noqa: E402
from .functions import activation as _fa, nn as _fn, loss as _floss  # noqa: E402
from .autograd import Function as _Function  # noqa: E402


class Cast(_Function):
    """dtype conversion (or a copy when dtype is None); the gradient is cast back."""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.src = a.dtype
        return a.copy() if dtype is None else a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return g.astype(ctx.src, copy=False), None


for _mod in (_fe, _fr, _fs, _fl, _fa, _fn, _floss):
    for _key, _val in vars(_mod).items():
        if isinstance(_val, type) and issubclass(_val, _Function) and _val is not _Function:
            setattr(_F, _key, _val)
_F.Cast = Cast


class _ToDevice(_Function):
    """A copy to another device; the gradient is copied back. Function.apply makes the
    output on the input's device, so apply_to builds the node itself."""

    @classmethod
    def apply_to(cls, t, target):
        # Through the host (GPU to GPU too: no peer copies yet); from_host is free on the CPU.
        data = target.from_host(_host_array(t.data))
        if t.requires_grad and GradMode.enabled:
            ctx = object.__new__(cls)
            ctx.device, ctx.needs_input_grad, ctx.parents = target, [True], [t]
            ctx.source = t.device
            return Tensor._make(data, target, True, ctx)
        return Tensor._make(data, target, False, None)

    @staticmethod
    def backward(ctx, g):
        return ctx.source.from_host(_host_array(g))


def _host_array(a):
    """a itself when it is a NumPy array, else a host copy of a device array."""
    return a if isinstance(a, np.ndarray) else a.numpy()
del _mod, _key, _val
