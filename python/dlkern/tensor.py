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

Around the class: dlkern.tensor_methods (its methods that only build Functions),
dlkern.creation (factories, cat/stack/split/where), dlkern.random (rand/randn/randint),
dlkern.generator (the RNG), dlkern.dtypes, dlkern.tensor_functions (dlkern.exp(t), ...).
"""

import numbers
import operator as _operator

import numpy as np

from . import functions as _F
from .autograd import hooks as _autograd_hooks
from .autograd.engine import backward as _run_backward
from .autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from .autograd import higher as _higher
from .autograd.grad_mode import GradMode
from .devices import CPUDevice, CUDADevice, cpu as _cpu, device as _get_device
from .dtypes import DEFAULT_FLOAT, as_dtype, bfloat16, is_floating, float32, float64, int64
from .tensor_methods import TensorMethods, check_pair, index_arg


def _comparison(op):
    """A Tensor comparison or logical operator: `op` on the arrays, giving a tensor
    without grad (Tensor._compare)."""

    def method(self, other):
        return self._compare(other, op)

    return method


def _operators(fn):
    """The operator methods of Function `fn`: (t op other, other op t), other checked
    against t by _operand."""

    def forward(self, other):
        return fn.apply(self, _operand(self, other))

    def reflected(self, other):
        return fn.apply(_operand(self, other), self)

    return forward, reflected


class Tensor(TensorMethods):
    """An n-dimensional array with autograd. See the module docstring; the methods that
    only build Functions (shape, reductions, math) are in dlkern.tensor_methods."""

    # _hooks: a leaf's hook record (autograd/hooks.py), set only by register_hook &c.; _make
    # leaves it unset, so it costs a tensor without hooks nothing.
    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "device", "_hooks", "__weakref__")
    __array_ufunc__ = None  # ndarray OP Tensor defers to the Tensor's reflected operator

    def __init__(self, data, dtype=None, device="cpu", requires_grad=False):
        dev = _get_device(device)
        dtype = as_dtype(dtype)
        if isinstance(data, Tensor):
            data = _F.host_array(data.data)  # a device tensor is copied through the host
        arr = np.array(data, dtype=dtype, copy=True)
        if dtype is None:
            native = isinstance(data, (np.ndarray, np.generic))
            if arr.dtype.kind == "f" and not native:
                arr = arr.astype(DEFAULT_FLOAT)  # Python floats -> float32, as PyTorch
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

    @staticmethod
    def _from_host(array, device, requires_grad):
        """A tensor on `device` from a host array made by a factory (copied to a GPU)."""
        dev = _get_device(device)
        t = Tensor._make(dev.from_host(array), dev, False, None)
        if requires_grad:
            t.requires_grad_(True)
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
        if requires_grad and not is_floating(self.data.dtype):
            raise RuntimeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("cannot set requires_grad=False on a non-leaf tensor; use .detach()")
        self.requires_grad = bool(requires_grad)
        return self

    # ------------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's .grad. A non-scalar needs
        `gradient` (the cotangent, shaped like self). With create_graph the backward is
        recorded (the .grad tensors carry a graph; retain_graph then defaults to True)."""
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
        if create_graph:
            _higher.backward(self, gradient if isinstance(gradient, Tensor) else grad,
                             True if retain_graph is None else retain_graph)
            return
        _run_backward(self, grad, retain_graph)

    def detach(self):
        return Tensor._make(self.data, self.device, False, None)

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    # Hooks: autograd/hooks.py keeps them on the grad_fn node or in the _hooks slot.
    def register_hook(self, hook):
        """hook(grad) -> None or a replacement gradient, run each time the gradient with
        respect to self is computed (a leaf's: the total, before it is added to .grad).
        Returns a handle whose .remove() unregisters it."""
        return _autograd_hooks.register_hook(self, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor), run on a leaf right after its .grad has been accumulated."""
        return _autograd_hooks.register_post_accumulate_grad_hook(self, hook)

    def retain_grad(self):
        """Keep (accumulate) .grad on a non-leaf during backward; a no-op on a leaf."""
        _autograd_hooks.retain_grad(self)

    @property
    def retains_grad(self):
        return _autograd_hooks.retains_grad(self)

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

    # ---------------------------------------------------------------- DLPack (interop)
    # torch.from_dlpack(t), torch.as_tensor(t) and np.from_dlpack(t) share t's memory
    # through these two methods; dlkern.from_dlpack (dlkern.interop) is the way back.
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Export the tensor as a DLPack capsule (NumPy's exporter for CPU arrays), sharing
        memory unless copy=True. As PyTorch, a tensor that requires grad is refused
        (BufferError): the consumer could change it behind autograd's back."""
        if self.requires_grad:
            raise BufferError("Tensor.__dlpack__: can't export tensors that require gradient, use tensor.detach()")
        if self.device is not _cpu:
            raise BufferError(f"Tensor.__dlpack__: exporting a {self.device} tensor is not supported; "
                              f"copy it to the host with .cpu() first")
        array = self.data
        if any(s < 0 for s in array.strides):
            # A flipped view: DLPack allows negative strides but PyTorch aborts the whole
            # process on one, so no such capsule leaves here.
            if not copy:
                raise BufferError("Tensor.__dlpack__: a view with negative strides (a flipped view) can't be "
                                  "shared; export t.clone(), or pass copy=True")
            array = np.ascontiguousarray(array)
        # Only the keywords given: NumPy before 2.1 accepts `stream` alone, and consumers
        # (torch.from_dlpack) retry without the others on a TypeError.
        kwargs = {k: v for k, v in (("max_version", max_version), ("dl_device", dl_device), ("copy", copy))
                  if v is not None}
        return array.__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self):
        """(device type, index) as DLPack numbers: (1, 0) for the CPU, (2, index) for CUDA."""
        if self.device is _cpu:
            return self.data.__dlpack_device__()
        return (2, self.device.index)

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
        return _F.ToDevice.apply_to(self, target)

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
        if target_dtype is not None and as_dtype(target_dtype) != self.dtype:
            target_dtype = as_dtype(target_dtype)
            if is_floating(target_dtype):
                out = _F.Cast.apply(out, target_dtype)
            else:  # integer and bool results carry no gradient (as PyTorch): a plain cast
                out = Tensor._make(self.data.astype(target_dtype), self.device, False, None)
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
        if host.dtype == bfloat16:  # NumPy prints bfloat16 like an integer where it can
            host = host.astype(float32)
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
    __add__, __radd__ = _operators(_F.Add)
    __sub__, __rsub__ = _operators(_F.Sub)
    __mul__, __rmul__ = _operators(_F.Mul)
    __truediv__, __rtruediv__ = _operators(_F.Div)
    __pow__, __rpow__ = _operators(_F.Pow)

    def __matmul__(self, other):
        check_pair("matmul", self, other)
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

    __eq__ = _comparison(_operator.eq)
    __ne__ = _comparison(_operator.ne)
    __lt__ = _comparison(_operator.lt)
    __le__ = _comparison(_operator.le)
    __gt__ = _comparison(_operator.gt)
    __ge__ = _comparison(_operator.ge)

    def __invert__(self):
        return Tensor._make(~self.data, self.device, False, None)

    __and__ = _comparison(_operator.and_)
    __or__ = _comparison(_operator.or_)

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
        self.data[index_arg(index)] = value.data if isinstance(value, Tensor) else value

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


def _operand(t, other):
    """The other operand of a binary op: Tensors are checked against t (dtype, device);
    scalars pass through (NumPy keeps t's precision for Python scalars)."""
    if isinstance(other, Tensor):
        if (other.data.dtype != t.data.dtype and is_floating(other.data.dtype) and is_floating(t.data.dtype)
                and not _autocast_mixed()):  # (under autocast the op promotes)
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


def tensor(data, dtype=None, device="cpu", requires_grad=False):
    """A new tensor holding a copy of `data` (Python floats -> float32, ints -> int64;
    NumPy arrays keep their dtype)."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def from_numpy(array):
    """A tensor sharing memory with `array`."""
    return Tensor._make(np.asarray(array), _cpu, False, None)
