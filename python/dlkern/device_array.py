"""NumPy-style methods and operators for CUDA device arrays.

The autograd layer computes on "arrays" and uses NumPy's array methods (``g.sum(axis=0)``,
``a.reshape(n, -1)``, ``x * y``, ``a[:, 1:]``, ``g.astype(dtype)``). ``install(module)``
gives ``module.DeviceArray`` the same surface, written only in terms of the module's
kernel functions (add, sum, take, where, ...) and its views (as_strided, permute), so it
serves the real ``dlkern._C_cuda`` and the host twin the tests use without a GPU alike.
Nothing here copies to the host except ``item()``, ``tolist()``, ``__bool__`` and
``__float__``, which must (as in PyTorch).
"""

import operator
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


def install(module):
    """Give module.DeviceArray NumPy's array methods and operators (once)."""
    cls = module.DeviceArray
    if getattr(cls, "_numpy_api_installed", False):
        return

    class Kernels:
        """module's functions looked up on use, so a kernel the build lacks fails only
        when called, with NotImplementedError naming it."""

        def __getattr__(self, name):
            fn = getattr(module, name, None)
            if fn is None:
                raise NotImplementedError(f"DeviceArray: op '{name}' is not implemented on device 'cuda' "
                                          f"(no kernel {module.__name__}.{name})")
            return fn

    M = Kernels()
    native_reshape = cls.reshape

    def device_operand(x, like, op):
        """x as an operand of an op on `like`'s device: DeviceArrays and Python numbers as
        they are; a NumPy array or scalar is refused (devices cannot be mixed)."""
        if isinstance(x, (cls, int, float, bool)):
            return x
        if isinstance(x, np.generic) and x.ndim == 0:
            return x.item()
        raise TypeError(f"cannot combine a {type(x).__name__} (host) with a DeviceArray on cuda:{like.device}; "
                        "devices cannot be mixed in one op, move it to the device first")

    def promote(a, b):
        """a, b cast to NumPy's result dtype (the kernels take one dtype): bool and int64
        arrays meet float arrays or float scalars as floats, as on the CPU."""
        if isinstance(a, cls) and isinstance(b, cls):
            if a.dtype != b.dtype:
                rt = np.result_type(a.dtype, b.dtype)
                a = a if a.dtype == rt else M.astype(a, rt)
                b = b if b.dtype == rt else M.astype(b, rt)
            return a, b
        arr, scalar = (a, b) if isinstance(a, cls) else (b, a)
        if arr.dtype.kind == "b" and not isinstance(scalar, bool):
            arr = M.astype(arr, np.int64 if isinstance(scalar, int) else np.float64)
        elif arr.dtype.kind == "i" and isinstance(scalar, float):
            arr = M.astype(arr, np.float64)
        return (arr, scalar) if isinstance(a, cls) else (scalar, arr)

    def true_divide_operands(a, b):
        """NumPy's true division of bool/int64 gives float64; the CUDA divide kernel is
        float-only, so such operands go through float64 first."""
        return tuple(M.astype(v, np.float64) if isinstance(v, cls) and v.dtype.kind in "bi" else v
                     for v in (a, b))

    def binary(name, reflected=False):
        fix = true_divide_operands if name == "divide" else (lambda a, b: (a, b))
        if reflected:
            def method(self, other):
                return getattr(M, name)(*fix(*promote(device_operand(other, self, name), self)))
        else:
            def method(self, other):
                return getattr(M, name)(*fix(*promote(self, device_operand(other, self, name))))
        return method

    cls._promote = staticmethod(promote)

    def inplace(name):
        def method(self, other):
            other = device_operand(other, self, name)
            if isinstance(other, cls) and other.dtype != self.dtype:
                other = M.astype(other, self.dtype)  # NumPy's same_kind casting into self
            getattr(M, name)(self, other, out=self)
            return self
        return method

    for dunder, name in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "divide"),
                         ("pow", "power")):
        setattr(cls, f"__{dunder}__", binary(name))
        setattr(cls, f"__r{dunder}__", binary(name, reflected=True))
        setattr(cls, f"__i{dunder}__", inplace(name))
    for dunder, name in (("gt", "greater"), ("ge", "greater_equal"), ("lt", "less"), ("le", "less_equal"),
                         ("eq", "equal"), ("ne", "not_equal"), ("and", "logical_and"), ("or", "logical_or")):
        setattr(cls, f"__{dunder}__", binary(name))
    # `True & a` / `False | a` (NumPy takes them; Clamp.backward starts from mask = True)
    cls.__rand__ = binary("logical_and", reflected=True)
    cls.__ror__ = binary("logical_or", reflected=True)
    cls.__hash__ = None  # == is elementwise, as for ndarray
    cls.__neg__ = lambda self: M.negative(self)
    cls.__pos__ = lambda self: self
    cls.__abs__ = lambda self: M.abs(self)
    cls.__invert__ = lambda self: M.logical_not(self)
    cls.__matmul__ = lambda self, other: M.matmul(self, other)

    # ---- reductions over any set of axes (the kernels reduce one axis or all, in float)
    def reduce(name, x, axis, keepdims):
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

    def sum_(self, axis=None, dtype=None, keepdims=False):
        if dtype is None and self.dtype.kind == "b":
            dtype = np.int64  # NumPy counts bools
        x = self if dtype is None or np.dtype(dtype) == self.dtype else M.astype(self, dtype)
        return reduce("sum", x, axis, keepdims)

    def mean(self, axis=None, dtype=None, keepdims=False):
        if dtype is None and self.dtype.kind in "bi":
            dtype = np.float64
        x = self if dtype is None or np.dtype(dtype) == self.dtype else M.astype(self, dtype)
        if axis is None or isinstance(axis, (int, np.integer)):
            return reduce("mean", x, axis, keepdims)
        axes = _axes(axis, x.ndim, "mean")
        count = int(np.prod([x.shape[a] for a in axes]))
        return M.divide(reduce("sum", x, axes, keepdims), float(count))

    def var(self, axis=None, dtype=None, ddof=0, keepdims=False):
        m = mean(self, axis, dtype, keepdims=True)
        d = self - m
        axes = _axes(axis, self.ndim, "var")
        count = int(np.prod([self.shape[a] for a in axes]))
        return M.divide(reduce("sum", d * d, axes, keepdims), float(max(count - ddof, 0)))

    cls.sum = sum_
    cls.mean = mean
    cls.var = var
    cls.max = lambda self, axis=None, keepdims=False: reduce("amax", self, axis, keepdims)
    cls.min = lambda self, axis=None, keepdims=False: reduce("amin", self, axis, keepdims)
    # not_equal(x, 0) on a bool array is refused by _C_cuda (a bool array compares with
    # Python bools only), and x != False is x itself.
    nonzero = lambda x: x if x.dtype == np.bool_ else M.not_equal(x, 0)  # noqa: E731
    cls.any = lambda self, axis=None, keepdims=False: reduce("amax", nonzero(self), axis, keepdims) > 0
    cls.all = lambda self, axis=None, keepdims=False: reduce("amin", nonzero(self), axis, keepdims) > 0
    cls.argmax = lambda self, axis=None, keepdims=False: M.argmax(self, axis, keepdims)
    cls.argmin = lambda self, axis=None, keepdims=False: M.argmin(self, axis, keepdims)

    # ---- dtype and copies
    def astype(self, dtype, copy=True):
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self.clone() if copy else self
        return M.astype(self, dtype)

    cls.astype = astype
    cls.copy = lambda self: self.clone()

    def fill(self, value):  # ndarray.fill: in place, returns None
        M.fill_(self, value)

    cls.fill = fill

    # ---- shape: NumPy semantics (a copy when a view is impossible)
    def reshape(self, *shape):
        shape = _shape_args(shape)
        return native_reshape(self if self.is_contiguous() else self.contiguous(), shape)

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
                    raise ValueError(f"squeeze: cannot select an axis to squeeze out which has size not equal to one")
            keep = [i for i in range(self.ndim) if i not in axes]
        return self.as_strided(tuple(self.shape[i] for i in keep), tuple(self.strides[i] for i in keep))

    cls.reshape = reshape
    cls.transpose = transpose
    cls.swapaxes = swapaxes
    cls.squeeze = squeeze
    cls.ravel = lambda self: reshape(self, -1)
    cls.flatten = lambda self: reshape(self.clone(), -1)
    cls.T = property(lambda self: transpose(self))
    cls.flags = property(lambda self: types.SimpleNamespace(writeable=True, c_contiguous=self.is_contiguous()))

    # ---- indexing
    def to_device_index(index, like):
        if isinstance(index, cls):
            idx = index
        else:
            arr = np.asarray(index)
            if arr.dtype == np.bool_:
                raise NotImplementedError("DeviceArray indexing: boolean masks are not supported on CUDA; "
                                          "use where()")
            if arr.dtype.kind not in "iu":
                raise IndexError(f"DeviceArray indexing: indices must be integers, got {arr.dtype}")
            idx = M.from_numpy(arr.astype(np.int64), device=like.device)
        if idx.dtype == np.bool_:
            raise NotImplementedError("DeviceArray indexing: boolean masks are not supported on CUDA; use where()")
        return idx if idx.dtype == np.int64 else M.astype(idx, np.int64)

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
        idx = [to_device_index(i, x) for i in index[:k]]
        if any(i.shape != idx[0].shape for i in idx):
            raise NotImplementedError("DeviceArray indexing: integer index arrays must share one shape on CUDA")
        lin = None
        for d, i in enumerate(idx):
            i = M.where(M.less(i, 0), M.add(i, x.shape[d]), i)
            lin = i if lin is None else M.add(M.multiply(lin, x.shape[d]), i)
        rest = x.shape[k:]
        flat = reshape(x, (int(np.prod(x.shape[:k])),) + tuple(rest))
        return flat, lin

    cls._leading_arrays = staticmethod(leading_arrays)

    def advanced(x, index):
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
        return axis, to_device_index(array, x)

    def getitem(self, index):
        view = basic_view(self, index)
        if view is not None:
            return view
        pairs = leading_arrays(self, index)
        if pairs is not None:
            flat, lin = pairs
            return M.take(flat, lin, 0)
        axis, idx = advanced(self, index)
        return M.take(self, idx, axis)

    def setitem(self, index, value):
        view = basic_view(self, index)
        if view is None:
            pairs = leading_arrays(self, index) if self.is_contiguous() else None
            if pairs is None or pairs[0].ndim != 1:
                raise NotImplementedError("DeviceArray assignment: only basic indices, or integer arrays over "
                                          "every axis of a contiguous array, are supported on CUDA")
            flat, lin = pairs
            if not isinstance(value, cls):
                value = M.full(lin.shape, device_operand(value, self, "setitem"), self.dtype, device=self.device)
            M.put_along_axis(flat, lin, value if value.dtype == self.dtype else M.astype(value, self.dtype), 0)
            return
        if isinstance(value, cls):
            view.copy_(value)
        else:
            M.fill_(view, device_operand(value, self, "setitem"))

    cls.__getitem__ = getitem
    cls.__setitem__ = setitem

    # ---- explicit transfers to the host
    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.numpy().reshape(-1)[0].item()

    cls.item = item
    cls.tolist = lambda self: self.numpy().tolist()
    cls.__bool__ = lambda self: bool(item(self))
    cls.__float__ = lambda self: float(item(self))
    cls.__int__ = lambda self: int(item(self))
    cls._numpy_api_installed = True
