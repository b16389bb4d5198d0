"""NumPy-style methods and operators for CUDA device arrays, as one class.

The autograd layer computes on "arrays" and uses NumPy's array methods (``g.sum(axis=0)``,
``a.reshape(n, -1)``, ``x * y``, ``a[:, 1:]``, ``g.astype(dtype)``). ``DeviceArrayMethods``
gives a device array the same surface, written only in terms of its module's kernel
functions (add, sum, take, where, ...) and the array's own views (as_strided, permute),
so it serves the real ``dlkern._C_cuda`` and the host twin the tests use alike. The
kernels are those of the module that defines the array's class.

The host twin's DeviceArray derives from DeviceArrayMethods. A pybind11 class cannot
take a Python base class, so ``install(module)`` gives ``dlkern._C_cuda.DeviceArray``
this class's methods once, when the CUDA namespace is made (see install).
Nothing here copies to the host except ``item()``, ``tolist()``, ``__bool__`` and
``__float__``, which must (as in PyTorch).
"""

import operator
import sys
import types

import numpy as np


def _axes(axis, ndim, op):
    """A sorted tuple of non-negative axes from None, an int or a sequence."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = []
    for a in axis:
        a = operator.index(a)
        if not -ndim <= a < max(ndim, 1):
            raise np.exceptions.AxisError(f"{op}: axis {a} is out of bounds for an array of dimension {ndim}")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {tuple(axis)}")
    return tuple(sorted(out))


def _shape_args(shape):
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        return tuple(int(n) for n in shape[0])
    return tuple(int(n) for n in shape)


def basic_view(x, index):
    """The view x[index] for basic indices (ints, slices, None, Ellipsis), or None when the
    index holds anything else (arrays, lists, bools)."""
    if not isinstance(index, tuple):
        index = (index,)
    for item in index:
        if not (item is None or item is Ellipsis or isinstance(item, slice)
                or (isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)))):
            return None
    specified = sum(1 for item in index if item is not None and item is not Ellipsis)
    if specified > x.ndim:
        raise IndexError(f"too many indices for a DeviceArray of dimension {x.ndim}")
    if sum(1 for item in index if item is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    shape, strides = [], []
    offset = x.offset
    empty = False
    dim = 0
    for item in index:
        if item is None:
            shape.append(1)
            strides.append(0)
        elif item is Ellipsis:
            for _ in range(x.ndim - specified):
                shape.append(x.shape[dim])
                strides.append(x.strides[dim])
                dim += 1
        elif isinstance(item, slice):
            n, st = x.shape[dim], x.strides[dim]
            start, stop, step = item.indices(n)
            length = len(range(start, stop, step))
            if length:
                offset += start * st
            else:
                empty = True
            shape.append(length)
            strides.append(st * step)
            dim += 1
        else:
            n = x.shape[dim]
            i = int(item)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis {dim} with size {n}")
            offset += (i % n) * x.strides[dim]
            dim += 1
    while dim < x.ndim:
        shape.append(x.shape[dim])
        strides.append(x.strides[dim])
        dim += 1
    if empty or x.size == 0:
        offset = x.offset
    return x.as_strided(tuple(shape), tuple(strides), offset)


class _Kernels:
    """A module's functions looked up on use, so a kernel the build lacks fails only when
    called, with NotImplementedError naming it."""

    __slots__ = ("module",)

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        fn = getattr(self.module, name, None)
        if fn is None:
            raise NotImplementedError(f"DeviceArray: op '{name}' is not implemented on device 'cuda' "
                                      f"(no kernel {self.module.__name__}.{name})")
        return fn


_kernels_of = {}  # module name -> _Kernels


def kernels(x):
    """The kernel functions of the module that defines x's array class."""
    name = type(x).__module__
    k = _kernels_of.get(name)
    if k is None:
        k = _kernels_of[name] = _Kernels(sys.modules[name])
    return k


def device_operand(x, like, op):
    """x as an operand of an op on `like`'s device: arrays of like's class and Python
    numbers as they are; a NumPy array or scalar is refused (devices cannot be mixed)."""
    if isinstance(x, (type(like), int, float, bool)):
        return x
    if isinstance(x, np.generic) and x.ndim == 0:
        return x.item()
    raise TypeError(f"cannot combine a {type(x).__name__} (host) with a DeviceArray on cuda:{like.device}; "
                    "devices cannot be mixed in one op, move it to the device first")


def promote(array_type, a, b):
    """a, b (arrays of array_type or numbers) cast to NumPy's result dtype (the kernels
    take one dtype): bool and int64 arrays meet float arrays or float scalars as floats,
    as on the CPU."""
    a_is_array, b_is_array = isinstance(a, array_type), isinstance(b, array_type)
    if a_is_array and b_is_array:
        if a.dtype != b.dtype:
            rt = np.result_type(a.dtype, b.dtype)
            M = kernels(a)
            a = a if a.dtype == rt else M.astype(a, rt)
            b = b if b.dtype == rt else M.astype(b, rt)
        return a, b
    arr, scalar = (a, b) if a_is_array else (b, a)
    if arr.dtype.kind == "b" and not isinstance(scalar, bool):
        arr = kernels(arr).astype(arr, np.int64 if isinstance(scalar, int) else np.float64)
    elif arr.dtype.kind == "i" and isinstance(scalar, float):
        arr = kernels(arr).astype(arr, np.float64)
    return (arr, scalar) if a_is_array else (scalar, arr)


def _binary(name, a, b):
    """kernel `name` on two operands, one of them an array: promoted as NumPy would, and
    true division of bool/int64 through float64 (the CUDA divide kernel is float-only)."""
    array = a if isinstance(b, (int, float, bool)) else b
    array_type = type(array)
    a, b = promote(array_type, a, b)
    M = kernels(array)
    if name == "divide":
        a, b = (M.astype(v, np.float64) if isinstance(v, array_type) and v.dtype.kind in "bi" else v
                for v in (a, b))
    return getattr(M, name)(a, b)


def _reduce(name, x, axis, keepdims):
    """Reduction `name` over any set of axes (the kernels reduce one axis or all, in float)."""
    M = kernels(x)
    fn = getattr(M, name)
    integral = x.dtype.kind in "biu"
    if integral:  # counts and int maxima through float64: exact up to 2^53
        x = M.astype(x, np.float64)
    if axis is None:
        out = fn(x, None, False)
        out = out.reshape((1,) * x.ndim) if keepdims else out
    else:
        out = x
        for a in reversed(_axes(axis, x.ndim, name)):
            out = fn(out, a, keepdims)
    return M.astype(out, np.int64) if integral and name != "mean" else out


def _nonzero(x):
    # not_equal(x, 0) on a bool array is refused by _C_cuda (a bool array compares with
    # Python bools only), and x != False is x itself.
    return x if x.dtype == np.bool_ else kernels(x).not_equal(x, 0)


def _to_device_index(index, like):
    if isinstance(index, type(like)):
        idx = index
    else:
        arr = np.asarray(index)
        if arr.dtype == np.bool_:
            raise NotImplementedError("DeviceArray indexing: boolean masks are not supported on CUDA; use where()")
        if arr.dtype.kind not in "iu":
            raise IndexError(f"DeviceArray indexing: indices must be integers, got {arr.dtype}")
        idx = kernels(like).from_numpy(arr.astype(np.int64), device=like.device)
    if idx.dtype == np.bool_:
        raise NotImplementedError("DeviceArray indexing: boolean masks are not supported on CUDA; use where()")
    return idx if idx.dtype == np.int64 else kernels(like).astype(idx, np.int64)


def leading_arrays(x, index):
    """(x viewed as (n0*...*nk-1, rest...), linear int64 index) for an index of k
    integer arrays of one shape over the leading k axes (NumPy's x[i, j] pairing), or
    None for any other index. Negative indices wrap, as in NumPy."""
    if not isinstance(index, tuple) or len(index) < 2:
        return None
    arrays = [i for i in index if not (isinstance(i, slice) and i == slice(None))]
    k = len(arrays)
    if k < 2 or any(isinstance(i, slice) for i in index[:k]) or k > x.ndim:
        return None
    idx = [_to_device_index(i, x) for i in index[:k]]
    if any(i.shape != idx[0].shape for i in idx):
        raise NotImplementedError("DeviceArray indexing: integer index arrays must share one shape on CUDA")
    M = kernels(x)
    lin = None
    for d, i in enumerate(idx):
        i = M.where(M.less(i, 0), M.add(i, x.shape[d]), i)
        lin = i if lin is None else M.add(M.multiply(lin, x.shape[d]), i)
    flat = DeviceArrayMethods.reshape(x, (int(np.prod(x.shape[:k])),) + tuple(x.shape[k:]))
    return flat, lin


def _advanced(x, index):
    """(axis, int64 index array) for an index with one integer array and full slices."""
    items = index if isinstance(index, tuple) else (index,)
    axis, array = None, None
    for i, item in enumerate(items):
        if isinstance(item, slice) and item == slice(None):
            continue
        if axis is not None or isinstance(item, (slice, type(None), type(Ellipsis), int, np.integer)):
            raise NotImplementedError(
                f"DeviceArray indexing: only basic indices or one integer array beside full slices are "
                f"supported on CUDA, got {index!r}")
        axis, array = i, item
    return axis, _to_device_index(array, x)


def _contiguous_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def _reshaped(shape, size, old_shape):
    """shape with its -1 filled in for an array of `size` elements (ValueError as the
    binding's reshape when it cannot hold them)."""
    if sum(1 for n in shape if n == -1) > 1:
        raise ValueError("reshape: only one dimension can be -1")
    if any(n < -1 for n in shape):
        raise ValueError(f"reshape: negative size in shape {shape}")
    known = int(np.prod([n for n in shape if n != -1]))
    if -1 in shape and known > 0 and size % known == 0:
        shape = tuple(size // known if n == -1 else n for n in shape)
    if -1 in shape or int(np.prod(shape)) != size:
        raise ValueError(f"reshape: cannot reshape an array of shape {tuple(old_shape)} ({size} elements) "
                         f"into {shape}")
    return shape


def _operators(name):
    """The operator methods for the binary kernel `name`: (a op other, other op a), the
    other operand moved onto a's device first."""

    def forward(self, other):
        return _binary(name, self, device_operand(other, self, name))

    def reflected(self, other):
        return _binary(name, device_operand(other, self, name), self)

    return forward, reflected


class DeviceArrayMethods:
    """NumPy's array methods and operators for a device array class that has the
    binding's surface (shape, strides, dtype, device, offset, size, ndim, as_strided,
    permute, contiguous, clone, copy_, numpy, is_contiguous) and whose module has the
    kernels (add, sum, take, where, astype, fill_, ...)."""

    __slots__ = ()
    __hash__ = None  # == is elementwise, as for ndarray

    # ---- operators: NumPy's dtype promotion, no host arrays
    __add__, __radd__ = _operators("add")
    __sub__, __rsub__ = _operators("subtract")
    __mul__, __rmul__ = _operators("multiply")
    __truediv__, __rtruediv__ = _operators("divide")
    __pow__, __rpow__ = _operators("power")
    __gt__ = _operators("greater")[0]
    __ge__ = _operators("greater_equal")[0]
    __lt__ = _operators("less")[0]
    __le__ = _operators("less_equal")[0]
    __eq__ = _operators("equal")[0]
    __ne__ = _operators("not_equal")[0]
    # __rand__: `True & a` (NumPy takes it; Clamp.backward starts from mask = True)
    __and__, __rand__ = _operators("logical_and")
    __or__, __ror__ = _operators("logical_or")

    def _inplace(self, name, other):
        other = device_operand(other, self, name)
        M = kernels(self)
        if isinstance(other, type(self)) and other.dtype != self.dtype:
            other = M.astype(other, self.dtype)  # NumPy's same_kind casting into self
        getattr(M, name)(self, other, out=self)
        return self

    def __iadd__(self, other):
        return self._inplace("add", other)

    def __isub__(self, other):
        return self._inplace("subtract", other)

    def __imul__(self, other):
        return self._inplace("multiply", other)

    def __itruediv__(self, other):
        return self._inplace("divide", other)

    def __ipow__(self, other):
        return self._inplace("power", other)

    def __neg__(self):
        return kernels(self).negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return kernels(self).abs(self)

    def __invert__(self):
        return kernels(self).logical_not(self)

    def __matmul__(self, other):
        return kernels(self).matmul(self, other)

    # ---- reductions over any set of axes
    def sum(self, axis=None, dtype=None, keepdims=False):
        if dtype is None and self.dtype.kind == "b":
            dtype = np.int64  # NumPy counts bools
        x = self if dtype is None or np.dtype(dtype) == self.dtype else kernels(self).astype(self, dtype)
        return _reduce("sum", x, axis, keepdims)

    def mean(self, axis=None, dtype=None, keepdims=False):
        if dtype is None and self.dtype.kind in "bi":
            dtype = np.float64
        M = kernels(self)
        x = self if dtype is None or np.dtype(dtype) == self.dtype else M.astype(self, dtype)
        if axis is None or isinstance(axis, (int, np.integer)):
            return _reduce("mean", x, axis, keepdims)
        axes = _axes(axis, x.ndim, "mean")
        count = int(np.prod([x.shape[a] for a in axes]))
        return M.divide(_reduce("sum", x, axes, keepdims), float(count))

    def var(self, axis=None, dtype=None, ddof=0, keepdims=False):
        m = DeviceArrayMethods.mean(self, axis, dtype, keepdims=True)
        d = self - m
        axes = _axes(axis, self.ndim, "var")
        count = int(np.prod([self.shape[a] for a in axes]))
        return kernels(self).divide(_reduce("sum", d * d, axes, keepdims), float(max(count - ddof, 0)))

    def max(self, axis=None, keepdims=False):
        return _reduce("amax", self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _reduce("amin", self, axis, keepdims)

    def any(self, axis=None, keepdims=False):
        return _reduce("amax", _nonzero(self), axis, keepdims) > 0

    def all(self, axis=None, keepdims=False):
        return _reduce("amin", _nonzero(self), axis, keepdims) > 0

    def argmax(self, axis=None, keepdims=False):
        return kernels(self).argmax(self, axis, keepdims)

    def argmin(self, axis=None, keepdims=False):
        return kernels(self).argmin(self, axis, keepdims)

    # ---- dtype and copies
    def astype(self, dtype, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self.clone() if copy else self
        return kernels(self).astype(self, dtype)

    def copy(self):
        return self.clone()

    def fill(self, value):  # ndarray.fill: in place, returns None
        kernels(self).fill_(self, value)

    # ---- shape: NumPy semantics (a copy when a view is impossible)
    def reshape(self, *shape):
        x = self if self.is_contiguous() else self.contiguous()
        shape = _reshaped(_shape_args(shape), x.size, x.shape)
        return x.as_strided(shape, _contiguous_strides(shape), x.offset)

    def transpose(self, *axes):
        if not axes:
            axes = tuple(reversed(range(self.ndim)))
        elif len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = tuple(axes[0])
        # the native permute takes Python ints only (a numpy.int64 is refused by pybind11)
        return self.permute(*(operator.index(a) for a in axes))

    def swapaxes(self, a, b):
        dims = list(range(self.ndim))
        a, b = operator.index(a) % self.ndim, operator.index(b) % self.ndim
        dims[a], dims[b] = dims[b], dims[a]
        return self.permute(*dims)

    def squeeze(self, axis=None):
        if axis is None:
            keep = [i for i, n in enumerate(self.shape) if n != 1]
        else:
            axes = _axes(axis, self.ndim, "squeeze")
            for a in axes:
                if self.shape[a] != 1:
                    raise ValueError("squeeze: cannot select an axis to squeeze out which has size not equal to one")
            keep = [i for i in range(self.ndim) if i not in axes]
        return self.as_strided(tuple(self.shape[i] for i in keep), tuple(self.strides[i] for i in keep))

    def ravel(self):
        return DeviceArrayMethods.reshape(self, -1)

    def flatten(self):
        return DeviceArrayMethods.reshape(self.clone(), -1)

    @property
    def T(self):
        return DeviceArrayMethods.transpose(self)

    @property
    def flags(self):
        return types.SimpleNamespace(writeable=True, c_contiguous=self.is_contiguous())

    # ---- indexing
    def __getitem__(self, index):
        view = basic_view(self, index)
        if view is not None:
            return view
        pairs = leading_arrays(self, index)
        if pairs is not None:
            flat, lin = pairs
            return kernels(self).take(flat, lin, 0)
        axis, idx = _advanced(self, index)
        return kernels(self).take(self, idx, axis)

    def __setitem__(self, index, value):
        M = kernels(self)
        view = basic_view(self, index)
        if view is None:
            pairs = leading_arrays(self, index) if self.is_contiguous() else None
            if pairs is None or pairs[0].ndim != 1:
                raise NotImplementedError("DeviceArray assignment: only basic indices, or integer arrays over "
                                          "every axis of a contiguous array, are supported on CUDA")
            flat, lin = pairs
            if not isinstance(value, type(self)):
                value = M.full(lin.shape, device_operand(value, self, "setitem"), self.dtype, device=self.device)
            M.put_along_axis(flat, lin, value if value.dtype == self.dtype else M.astype(value, self.dtype), 0)
            return
        if isinstance(value, type(self)):
            view.copy_(value)
        else:
            M.fill_(view, device_operand(value, self, "setitem"))

    # ---- explicit transfers to the host
    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.numpy().reshape(-1)[0].item()

    def tolist(self):
        return self.numpy().tolist()

    def __bool__(self):
        return bool(DeviceArrayMethods.item(self))

    def __float__(self):
        return float(DeviceArrayMethods.item(self))

    def __int__(self):
        return int(DeviceArrayMethods.item(self))


def install(module):
    """Make module.DeviceArray have DeviceArrayMethods' methods. A class that derives
    from it (the host twin) has them already. A pybind11 class (dlkern._C_cuda) cannot
    take a Python base class (pybind11 has no such option), so it gets them here, once:
    the one place this module sets attributes on another class."""
    cls = module.DeviceArray
    if issubclass(cls, DeviceArrayMethods) or cls.__dict__.get("_numpy_api_installed"):
        return
    for name, value in vars(DeviceArrayMethods).items():
        if name not in ("__module__", "__qualname__", "__doc__", "__slots__", "__dict__", "__weakref__"):
            setattr(cls, name, value)
    cls._numpy_api_installed = True
