"""A host-memory stand-in for dlkern._C_cuda, for machines without a GPU.

It has the DeviceArray surface of the real module (element strides, views over one
storage, ``numpy()`` as the only way back to the host: ``__array__`` raises, so a NumPy
call on a device array fails loudly as it does on a GPU) and the kernel functions that
the CUDA device namespace calls, with the bindings' names and call shapes: the bindings'
argument checks and the transfers, with the values computed by NumPy, dlkern.reference
(erf, sigmoid, relu, gemm) and dlkern's CPU ops (the hot kernels, so the twin proves the
Python device layer on the same kernels as the CPU). The device-neutral Python layer
(Tensor.to("cuda"), Module.to, optimizers, the NumPy-style DeviceArray methods of dlkern.device_array) is
tested against it here and against the real module where a GPU is present.

Transfers are counted (``transfers``), so a test can assert that a training step on the
device never copies to the host.
"""

import builtins
import math
import weakref

import numpy as np

from dlkern import _C, ops as _ops
from dlkern import reference
from dlkern.device_array import DeviceArrayMethods

transfers = {"to_host": 0, "to_device": 0}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.bool_))
_FLOATS = _DTYPES[:2]


def _normalize_axis(axis, ndim, op):
    """cuda::normalize_axis: std::out_of_range, i.e. IndexError (not NumPy's AxisError)."""
    if not -ndim <= axis < ndim:
        raise IndexError(f"{op}: axis {axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def _dtype(dtype, op="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: unsupported dtype {dtype!r}") from None
    if dt not in _DTYPES:
        raise TypeError(f"{op}: unsupported dtype {dt}; CUDA arrays are float32, float64, int64 or bool")
    return dt


class _DeviceArrayBinding:
    """A strided array in (simulated) device memory: a view `_a` over a 1-D `_storage`,
    with the surface of the binding's DeviceArray (csrc/bind/cuda_array.cpp)."""

    def __init__(self, storage, view, owner, peers=None):
        self._storage = storage
        self._a = view
        self._owner = owner
        # Every live DeviceArray over this storage (the real arrays share one refcounted
        # storage; `base` says "shared" while any other array can see the memory).
        # (weak references in a list: the Python layer's __eq__ makes DeviceArray unhashable)
        self._peers = [] if peers is None else peers
        self._peers[:] = [r for r in self._peers if r() is not None]
        self._peers.append(weakref.ref(self))

    @classmethod
    def _fresh(cls, values, dtype=None):
        arr = np.array(values, dtype=dtype, copy=True, order="C")
        _dtype(arr.dtype)
        storage = arr.reshape(-1)
        return cls(storage, storage.reshape(arr.shape), True)

    # ---- attributes of the real DeviceArray
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    device = 0

    @property
    def strides(self):
        return tuple(s // self._a.itemsize for s in self._a.strides)

    @property
    def offset(self):
        if self._a.size == 0:
            return 0
        return (self._a.__array_interface__["data"][0] - self._storage.__array_interface__["data"][0]) // self.itemsize

    @property
    def base(self):
        # As the binding: None only when no other live array shares this one's storage
        # (an owner with a live view is shared too).
        return None if builtins.sum(r() is not None for r in self._peers) <= 1 else self

    def is_contiguous(self):
        return self._a.flags.c_contiguous

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of a 0-d DeviceArray")
        return self._a.shape[0]

    def __repr__(self):
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device=cuda:0 [host twin])"

    def __array__(self, *args, **kwargs):
        raise TypeError("DeviceArray on cuda:0 cannot be converted to a NumPy array implicitly "
                        "(that would be a hidden device-to-host copy); call .numpy()")

    def numpy(self):
        transfers["to_host"] += 1
        return np.array(self._a, copy=True, order="C")

    def contiguous(self):
        # The binding returns a new DeviceArray object over the same storage (not self).
        return self._view(self._a) if self.is_contiguous() else self.clone()

    def clone(self):
        return DeviceArray._fresh(self._a)

    def copy_(self, src):
        if not isinstance(src, DeviceArray):
            raise TypeError("copy_: src must be a DeviceArray")
        if src.dtype != self.dtype:  # std::invalid_argument in cuda::copy_into: ValueError
            raise ValueError(f"copy_: dtype {src.dtype} cannot be copied into {self.dtype}")
        try:
            np.broadcast_to(src._a, self.shape)
        except ValueError:
            raise ValueError(f"copy_: source of shape {src.shape} cannot be broadcast to {self.shape}") from None
        self._a[...] = np.broadcast_to(src._a, self.shape).copy()  # overlapping storage: via a temporary
        return self

    def _view(self, view):
        return DeviceArray(self._storage, view, False, self._peers)

    def as_strided(self, shape, strides, offset=None):
        offset = self.offset if offset is None else int(offset)
        shape, strides = _shape(shape, "as_strided", "shape"), _shape(strides, "as_strided", "strides")
        if len(shape) != len(strides):
            raise ValueError("as_strided: shape and strides differ in length")
        if any(n < 0 for n in shape):
            raise ValueError("as_strided: negative size")
        if offset < 0:  # std::out_of_range -> IndexError
            raise IndexError(f"as_strided: negative offset {offset}")
        if all(n > 0 for n in shape):
            lo = offset + builtins.sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
            hi = offset + builtins.sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
            if lo < 0 or hi >= self._storage.size:
                raise IndexError("as_strided: the view reaches outside the storage")
        else:
            offset = 0
        start = self._storage[offset:] if self._storage.size else self._storage
        view = np.lib.stride_tricks.as_strided(start, shape, tuple(s * self.itemsize for s in strides))
        return self._view(view)

    def permute(self, *dims):
        if len(dims) == 1 and not isinstance(dims[0], int):
            dims = dims[0]
        dims = _shape(dims, "permute", "dims")
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dimensions for an array of {self.ndim}")
        dims = tuple(_normalize_axis(d, self.ndim, "permute") for d in dims)
        if len(set(dims)) != len(dims):
            raise ValueError(f"permute: a dimension is repeated in {dims}")
        return self._view(np.transpose(self._a, dims))

    def transpose(self, dim0, dim1):
        for d in (dim0, dim1):  # int64_t arguments: pybind11 takes ints and __index__ objects, not floats
            if isinstance(d, float) or not hasattr(type(d), "__index__"):
                raise TypeError(f"transpose: dims must be ints, got {type(d).__name__}")
        a, b = (_normalize_axis(int(d), self.ndim, "transpose") for d in (dim0, dim1))
        return self._view(np.swapaxes(self._a, a, b))

    @property
    def T(self):
        return self._view(self._a.T)

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = shape[0]
        shape = _shape(shape, "reshape", "shape")
        if not self.is_contiguous():
            raise ValueError("reshape: the array is not contiguous; call contiguous() first")
        return self._view(self._a.reshape(shape))


class DeviceArray(DeviceArrayMethods, _DeviceArrayBinding):
    """The twin's array: the binding's surface plus dlkern's NumPy-style methods, which
    the real module's pybind11 class gets from dlkern.device_array.install instead."""


# ------------------------------------------------------------------ module functions

def is_available():
    return True


def device_count():
    return 1


def synchronize(device=None):
    pass


def from_numpy(array, stream=None, device=None):
    if not isinstance(array, np.ndarray):  # require_array: lists and NumPy scalars are refused
        raise TypeError(f"from_numpy: array must be a numpy.ndarray, got {type(array).__name__}")
    if not array.dtype.isnative:
        raise TypeError(f"from_numpy: unsupported dtype {array.dtype} (not native byte order)")
    _dtype(array.dtype, "from_numpy")
    transfers["to_device"] += 1
    return DeviceArray._fresh(array)


def _host(x):
    return x._a if isinstance(x, DeviceArray) else x


def _shape(shape, op="shape", arg="shape"):
    """As the bindings' to_shape: a Python int or a sequence of Python ints (a numpy.int64
    is not an int to pybind11: TypeError), at most 64 dimensions."""
    if isinstance(shape, int):
        return (int(shape),)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__") or not hasattr(shape, "__len__"):
        raise TypeError(f"{op}: {arg} must be an int or a sequence of ints, got {type(shape).__name__}")
    out = []
    for n in shape:
        if not isinstance(n, int):
            raise TypeError(f"{op}: {arg} must contain only ints, got {type(n).__name__}")
        out.append(int(n))
    if len(out) > 64:
        raise ValueError(f"{op}: {arg} has {len(out)} dimensions (at most 64)")
    return tuple(out)


def empty(shape, dtype=np.float32, device=None, stream=None):
    return DeviceArray._fresh(np.empty(_shape(shape), _dtype(dtype, "empty")))


def zeros(shape, dtype=np.float32, device=None, stream=None):
    return DeviceArray._fresh(np.zeros(_shape(shape), _dtype(dtype, "zeros")))


def _fill_value(value, dtype, op):
    """As the binding's fill_value: a Python number (NumPy scalars too), converted as
    numpy's astype would; TypeError for anything else, ValueError when int64 cannot hold it."""
    v = _number(value, op, "value")
    if v is None:
        raise TypeError(f"{op}: value must be a Python number, got {type(value).__name__}")
    if dtype == np.int64:
        t = math.trunc(v) if isinstance(v, float) and math.isfinite(v) else v
        if isinstance(v, float) and not math.isfinite(v) or not (-2**63 <= t < 2**63):
            raise ValueError(f"{op}: value {v} cannot be converted to int64")
        return t
    return v


def full(shape, value, dtype=np.float32, device=None, stream=None):
    shape, dt = _shape(shape, "full"), _dtype(dtype, "full")
    return DeviceArray._fresh(np.full(shape, _fill_value(value, dt, "full"), dt))


def ones(shape, dtype=np.float32, device=None, stream=None):
    return full(shape, 1, dtype)


def full_like(x, value, dtype=None):
    _require(x, "full_like", "x")
    dt = x.dtype if dtype is None else _dtype(dtype, "full_like")
    return DeviceArray._fresh(np.full(x.shape, _fill_value(value, dt, "full_like"), dt))


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)


def arange(start, stop=None, step=1, dtype=None, device=None, stream=None):
    if stop is None:
        start, stop = 0, start
    vals = []
    for v, arg in ((start, "start"), (stop, "stop"), (step, "step")):
        n = _number(v, "arange", arg)
        if n is None:
            raise TypeError(f"arange: {arg} must be a Python number, got {type(v).__name__}")
        if not isinstance(n, float) and not (-2**63 <= n < 2**63):
            raise ValueError(f"arange: {arg} does not fit in int64")
        vals.append(n)
    any_float = builtins.any(isinstance(v, float) for v in vals)
    dt = (np.dtype(np.float32) if any_float else np.dtype(np.int64)) if dtype is None else _dtype(dtype, "arange")
    if dt == np.bool_:
        raise TypeError("arange: dtype bool is not supported (use int64 and compare)")
    if dt == np.int64 and any_float:
        raise TypeError("arange: float start/stop/step with dtype int64; pass ints or a float dtype")
    if vals[2] == 0:
        raise ValueError("arange: step must not be zero")
    return DeviceArray._fresh(np.arange(*vals, dtype=dt))


def fill_(x, value):
    _require(x, "fill_", "x")
    x._a[...] = _fill_value(value, x.dtype, "fill_")
    return x


def astype(x, dtype):
    _require(x, "astype", "x")
    return DeviceArray._fresh(x._a.astype(_dtype(dtype, "astype")))


def _require(x, op, arg):
    if not isinstance(x, DeviceArray):
        raise TypeError(f"{op}: {arg} must be a DeviceArray, got {type(x).__name__}")
    return x


def _finish(op, result, out, dtype):
    result = np.asarray(result)
    if out is None:
        return DeviceArray._fresh(result, dtype)
    _require(out, op, "out")
    if out.shape != result.shape:
        raise ValueError(f"{op}: out has shape {out.shape} but the result has shape {result.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{op}: out has dtype {out.dtype} but the result has dtype {dtype}")
    out._a[...] = result
    return out


def _unary(name, fn, floats_only=True):
    def op(x, out=None):
        _require(x, name, "x")
        if floats_only and x.dtype not in _FLOATS:
            raise TypeError(f"{name}: x has dtype {x.dtype}; supported: float32, float64")
        with np.errstate(all="ignore"):
            return _finish(name, fn(x._a), out, x.dtype)
    op.__name__ = name
    return op


def _number(v, op, arg):
    """A Python number (NumPy scalars as their .item()) as the bindings' parse_operand sees
    it, or None for anything else."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (bool, int, float)):
        return v
    return None


def _check_number(op, dtype, v, arg="b"):
    """common_dtype's rules for a number against an array dtype."""
    if dtype == np.int64 and isinstance(v, float):
        raise TypeError(f"{op}: {arg} is a Python float but the array has dtype int64; cast the array first")
    if dtype == np.int64 and not isinstance(v, float) and not (-2**63 <= v < 2**63):
        raise ValueError(f"{op}: {arg} = {v} does not fit in int64")
    if dtype == np.bool_ and not isinstance(v, bool):
        raise TypeError(f"{op}: {arg} is a Python number but the array has dtype bool; pass True or False")


def _scalar_operand(name, a, b, int_vs_float_ok=False):
    """(dtype, host a, host b): one dtype for both array operands, numbers checked as
    common_dtype does (int64: int numbers only unless int_vs_float_ok, the comparisons;
    bool: Python bools only) and cast to it."""
    vals = []
    for v, arg in ((a, "a"), (b, "b")):
        if isinstance(v, DeviceArray):
            vals.append(v)
            continue
        n = _number(v, name, arg)
        if n is None:
            raise TypeError(f"{name}: {arg} must be a dlkern._C_cuda.DeviceArray or a Python number, "
                            f"got {type(v).__name__}")
        vals.append(n)
    arrays = [v for v in vals if isinstance(v, DeviceArray)]
    if not arrays:
        raise TypeError(f"{name}: at least one operand must be a DeviceArray")
    dtype = arrays[0].dtype
    for v in arrays[1:]:
        if v.dtype != dtype:
            raise TypeError(f"{name}: dtype mismatch: {dtype} and {v.dtype}")
    for v, arg in zip(vals, ("a", "b")):
        if not isinstance(v, DeviceArray):
            if int_vs_float_ok and dtype == np.int64 and isinstance(v, float):
                continue
            _check_number(name, dtype, v, arg)
    shapes = [v.shape for v in arrays]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{name}: shapes {shapes} do not broadcast") from None
    conv = lambda v: v._a if isinstance(v, DeviceArray) else (  # noqa: E731
        v if isinstance(v, float) and dtype == np.int64 else dtype.type(v))
    return dtype, conv(vals[0]), conv(vals[1])


_INT64_ARITHMETIC = ("add", "subtract", "multiply", "maximum", "minimum")  # as the CUDA kernels


_LOGICAL = ("logical_and", "logical_or")


def _binary(name, fn, result_bool=False):
    def op(a, b, out=None):
        if name in _LOGICAL:  # require_bool: every array operand bool (numbers: Python bools)
            for v, arg in ((a, "a"), (b, "b")):
                if isinstance(v, DeviceArray) and v.dtype != np.bool_:
                    raise TypeError(f"{name}: {arg} has dtype {v.dtype}; CUDA {name} takes bool arrays")
        dtype, ha, hb = _scalar_operand(name, a, b, int_vs_float_ok=result_bool and name not in _LOGICAL)
        if dtype == np.bool_ and not result_bool:
            raise TypeError(f"{name}: bool arrays do not support arithmetic")
        if dtype == np.int64 and not result_bool and name not in _INT64_ARITHMETIC:
            raise TypeError(f"{name}: int64 arrays are not supported; cast to a float dtype first")
        with np.errstate(all="ignore"):
            r = fn(ha, hb)
        return _finish(name, r, out, np.dtype(np.bool_) if result_bool else dtype)
    op.__name__ = name
    return op


for _name, _fn in {"negative": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
                   "tanh": np.tanh, "sigmoid": reference.sigmoid, "relu": reference.relu,
                   "sin": np.sin, "cos": np.cos, "sign": np.sign, "log1p": np.log1p, "expm1": np.expm1,
                   "erf": reference.erf, "square": np.square, "reciprocal": np.reciprocal}.items():
    globals()[_name] = _unary(_name, _fn)
for _name, _fn in {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
                   "maximum": np.maximum, "minimum": np.minimum, "power": np.power,
                   "logaddexp": np.logaddexp}.items():
    globals()[_name] = _binary(_name, _fn)
for _name, _fn in {"greater": np.greater, "greater_equal": np.greater_equal, "less": np.less,
                   "less_equal": np.less_equal, "equal": np.equal, "not_equal": np.not_equal,
                   "logical_and": np.logical_and, "logical_or": np.logical_or}.items():
    globals()[_name] = _binary(_name, _fn, result_bool=True)
del _name, _fn
neg, sub, mul, div, pow = negative, subtract, multiply, divide, power  # noqa: A001 (the bindings' aliases)


def logical_not(x, out=None):
    _require(x, "logical_not", "x")
    if x.dtype != np.bool_:
        raise TypeError("logical_not: x must be bool")
    return _finish("logical_not", np.logical_not(x._a), out, x.dtype)


def where(cond, a, b, out=None):
    _require(cond, "where", "cond")
    if cond.dtype != np.bool_:
        raise TypeError(f"where: cond must be a bool array, got {cond.dtype}")
    dtype, ha, hb = _scalar_operand("where", a, b)
    return _finish("where", np.where(cond._a, ha, hb), out, dtype)


def clip(x, lo, hi, out=None):  # lo and hi have no defaults in the binding
    _require(x, "clip", "x")
    if x.dtype == np.bool_:
        raise TypeError("clip: x has dtype bool; CUDA clip supports float32, float64 and int64")
    for v, arg in ((lo, "lo"), (hi, "hi")):
        if v is None:
            continue
        n = _number(v, "clip", arg)
        if n is None:
            raise TypeError(f"clip: {arg} must be a Python number, got {type(v).__name__}")
        _check_number("clip", x.dtype, n, arg)
    r = x._a
    if hi is not None:
        r = np.minimum(r, x.dtype.type(hi))
    if lo is not None:
        r = np.maximum(r, x.dtype.type(lo))
    return _finish("clip", r, out, x.dtype)


def _reduction(name, fn):
    def op(x, axis=None, keepdims=False):
        _require(x, name, "x")
        if x.dtype not in _FLOATS:  # as the CUDA reduction kernels
            raise TypeError(f"{name}: x has dtype {x.dtype}; supported: float32, float64")
        if axis is not None and not isinstance(axis, int):  # py::int_: a numpy.int64 axis is refused
            raise TypeError(f"{name}: axis must be an int or None, got {type(axis).__name__}")
        if axis is not None and x.ndim == 0:
            raise ValueError(f"{name}: axis {axis} given for a 0-d array")
        if axis is not None:
            axis = _normalize_axis(axis, x.ndim, name)
        if x.size == 0 and name in ("amax", "amin"):
            raise ValueError(f"{name}: zero-size reduction has no identity")
        return DeviceArray._fresh(fn(x._a, axis=axis, keepdims=keepdims), x.dtype)
    op.__name__ = name
    return op


sum = _reduction("sum", np.sum)  # noqa: A001
mean = _reduction("mean", np.mean)
amax = _reduction("amax", np.amax)
amin = _reduction("amin", np.amin)


def _arg(name, fn):
    def op(x, axis=None, keepdims=False):
        _require(x, name, "x")
        if x.dtype == np.bool_:
            raise TypeError(f"{name}: x has dtype bool")
        if axis is not None:
            _int_axis(axis, name, x.ndim)
        return DeviceArray._fresh(fn(x._a, axis=axis, keepdims=keepdims), np.int64)
    op.__name__ = name
    return op


argmax = _arg("argmax", np.argmax)
argmin = _arg("argmin", np.argmin)


def _indices(indices, op):
    _require(indices, op, "indices")
    if indices.dtype != np.int64:
        raise TypeError(f"{op}: indices must be int64, got {indices.dtype}")
    return indices._a


def _int_axis(axis, op, ndim):
    """The bindings' int_axis: anything with __index__ but bool; IndexError out of range."""
    if isinstance(axis, (bool, np.bool_)) or not hasattr(type(axis), "__index__"):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}")
    a = axis.__index__()
    if not -ndim <= a < ndim:
        raise IndexError(f"{op}: axis {a} is out of bounds for an array of dimension {ndim}")
    return a


def _values(values, x, space, op):
    """parse_values: a Python int/float (not a NumPy scalar), or a DeviceArray of x's dtype
    that broadcasts to the index space (one way: values never broadcast the space up)."""
    if isinstance(values, (int, float)):
        return values
    _require(values, op, "values")
    if values.dtype != x.dtype:
        raise TypeError(f"{op}: values has dtype {values.dtype} but x has dtype {x.dtype}; cast one first")
    try:
        b = np.broadcast_shapes(values.shape, tuple(space))
    except ValueError:
        b = None
    if b != tuple(space):
        raise ValueError(f"{op}: values of shape {values.shape} cannot be broadcast to {tuple(space)}, "
                         "the shape the indices select")
    return values._a


def take(x, indices, axis=0):
    _require(x, "take", "x")
    idx = _indices(indices, "take")
    if axis is not None:
        axis = _int_axis(axis, "take", x.ndim)
    return DeviceArray._fresh(np.take(x._a, idx, axis=axis))


def take_along_axis(x, indices, axis):
    _require(x, "take_along_axis", "x")
    idx = _indices(indices, "take_along_axis")
    if axis is None:
        raise TypeError("take_along_axis: axis=None (the flattened array) is not supported on CUDA")
    axis = _int_axis(axis, "take_along_axis", x.ndim)
    return DeviceArray._fresh(np.take_along_axis(x._a, idx, axis))


def put_along_axis(x, indices, values, axis):
    _require(x, "put_along_axis", "x")
    idx = _indices(indices, "put_along_axis")
    if axis is None:
        raise TypeError("put_along_axis: axis=None (the flattened array) is not supported on CUDA")
    axis = _int_axis(axis, "put_along_axis", x.ndim)
    if idx.ndim != x.ndim:
        raise ValueError(f"put_along_axis: indices has {idx.ndim} dims but x has {x.ndim}")
    space = np.broadcast_shapes(tuple(1 if d == axis else n for d, n in enumerate(x.shape)),
                                tuple(1 if d == axis else n for d, n in enumerate(idx.shape)))
    space = tuple(idx.shape[d] if d == axis else n for d, n in enumerate(space))
    np.put_along_axis(x._a, idx, _values(values, x, space, "put_along_axis"), axis)


def add_at(x, indices, values):
    _require(x, "add_at", "x")
    idx = _indices(indices, "add_at")
    if x.ndim == 0:
        raise ValueError("add_at: x is 0-d; add_at indexes axis 0 of x")
    np.add.at(x._a, idx, _values(values, x, idx.shape + x.shape[1:], "add_at"))


try:  # the GPU generator's own host twin, when the CUDA module is built: bit-exact with the device
    from dlkern._C_cuda import _rand_host, _randn_host
except ImportError:
    _rand_host = _randn_host = None


def _random_args(op, shape, seed, dtype):
    shape = _shape(shape, op)
    if builtins.any(n < 0 for n in shape):
        raise ValueError(f"{op}: negative dimension in shape {shape}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"{op}: seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"{op}: seed must be in [0, 2**64), got {seed}")
    if _dtype(dtype, op) == np.int64:
        raise TypeError(f"{op}: dtype int64 is not supported (float32 or float64)")


def rand(shape, seed, dtype=np.float32, device=None, stream=None):
    _random_args("rand", shape, seed, dtype)
    if _rand_host is not None:
        return DeviceArray._fresh(_rand_host(_shape(shape), seed, np.dtype(dtype).name))
    return DeviceArray._fresh(np.random.default_rng(int(seed)).random(_shape(shape)).astype(_dtype(dtype, "rand")))


def randn(shape, seed, dtype=np.float32, device=None, stream=None):
    _random_args("randn", shape, seed, dtype)
    if _randn_host is not None:
        return DeviceArray._fresh(_randn_host(_shape(shape), seed, np.dtype(dtype).name))
    return DeviceArray._fresh(np.random.default_rng(int(seed)).standard_normal(_shape(shape)).astype(_dtype(dtype)))


def _float_pair(op, a, b):
    for v, arg in ((a, "a"), (b, "b")):
        _require(v, op, arg)
        if v.dtype not in _FLOATS:
            raise TypeError(f"{op}: {arg} has dtype {v.dtype}; CUDA {op} supports float32 and float64")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: a has dtype {a.dtype} but b has dtype {b.dtype}; both must be the same float type")


def matmul(a, b, out=None, allow_tf32=None):
    _float_pair("matmul", a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: 0-d operand; matmul needs at least 1 dimension (use * for scalars)")
    try:
        r = np.matmul(a._a, b._a)
    except ValueError as e:
        raise ValueError(f"matmul: {e}") from None
    return _finish("matmul", r, out, a.dtype)


def gemm(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, allow_tf32=None):
    """csrc/bind/cuda_matmul.cpp gemm_device_arrays: c = alpha op(a) op(b) + beta c; returns
    c's own object when given, else a new array."""
    op = "gemm"
    _float_pair(op, a, b)
    for v, arg in ((a, "a"), (b, "b")):
        if v.ndim != 2:
            raise ValueError(f"{op}: {arg} must be 2-D, got shape {v.shape}")
    m, k = a.shape[::-1] if trans_a else a.shape
    kb, n = b.shape[::-1] if trans_b else b.shape
    if k != kb:
        raise ValueError(f"{op}: inner dimensions differ: op(a) is ({m}, {k}), op(b) is ({kb}, {n})")
    if c is None:
        if beta != 0.0:
            raise ValueError(f"{op}: beta={beta} needs an input c, but c is None")
    else:
        _require(c, op, "c")
        if c.shape != (m, n):
            raise ValueError(f"{op}: c has shape {c.shape}, expected ({m}, {n})")
        if c.dtype != a.dtype:
            raise TypeError(f"{op}: c has dtype {c.dtype} but a and b have dtype {a.dtype}")
        if n > 1 and c.strides[1] != 1:
            raise ValueError(f"{op}: c must have unit stride along its last axis (got {c.strides[1]} elements)")
        if m > 1 and c.strides[0] < max(n, 1):
            raise ValueError(f"{op}: the rows of c overlap or run backwards (row stride {c.strides[0]})")
        if c._storage is a._storage or c._storage is b._storage:
            raise ValueError(f"{op}: c shares memory with an input; pass a separate output array")
    # beta = 0 ignores c's contents (NaN included), as the kernel
    r = reference.gemm(a._a, b._a, c._a.astype(np.float64) if c is not None and beta != 0.0 else None, alpha, beta,
                       trans_a, trans_b)
    if c is None:
        return DeviceArray._fresh(r, a.dtype)
    c._a[...] = r
    return c


def _wrap(value):
    if isinstance(value, np.ndarray):
        return DeviceArray._fresh(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _unwrap(value):
    if isinstance(value, DeviceArray):
        return value._a
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v) for v in value)
    if isinstance(value, np.ndarray):
        raise TypeError("a numpy.ndarray was passed to a CUDA kernel (host twin)")
    return value


_INT64_ARGS = {"cross_entropy_forward": {"target"}, "cross_entropy_backward": {"target"},
               "max_pool2d_backward": {"indices"}}  # the only non-float array arguments


def _cuda_checks(name, bound):
    """The CUDA bindings' refusals beyond the CPU ops' (csrc/bind/cuda_*.cpp)."""
    for arg, v in bound.items():
        if isinstance(v, DeviceArray) and v.dtype not in _FLOATS and arg not in _INT64_ARGS.get(name, ()):
            raise TypeError(f"{name}: {arg} has dtype {v.dtype}; expected float32 or float64")
    floats = [(arg, v) for arg, v in bound.items() if isinstance(v, DeviceArray) and v.dtype in _FLOATS
              and arg != "attn_mask"]
    for arg, v in floats[1:]:  # require_like / same-dtype checks of every binding
        if v.dtype != floats[0][1].dtype:
            raise TypeError(f"{name}: {arg} has dtype {v.dtype} but {floats[0][0]} has dtype {floats[0][1].dtype}")
    if "normalized_shape" in bound:  # to_shape (Python ints), and at least one dimension
        if not _shape(bound["normalized_shape"], name, "normalized_shape"):
            raise ValueError(f"{name}: normalized_shape () must match the trailing dimensions of x")
    if name in ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward"):
        a = bound.get("x", bound.get("grad_out"))
        if isinstance(a, DeviceArray) and a.ndim == 0:
            raise ValueError(f"{name}: expected an array with at least one dimension, got a 0-d array")
    if name in ("attention_forward", "attention_backward", "decode_attention"):
        q = bound.get("q")
        k = bound.get("k", bound.get("k_cache"))
        v = bound.get("v", bound.get("v_cache"))
        limit = 256 if name == "decode_attention" else 128  # kDecodeMaxHeadDim, kFlashMaxHeadDim
        for arr, what in ((q, "D"), (v, "Dv")):
            if isinstance(arr, DeviceArray) and arr.ndim == 4 and arr.shape[3] > limit:
                raise ValueError(f"{name}: CUDA {name} supports head dims up to {limit} (got {what}={arr.shape[3]})")
        for arr, arg in ((k, "k"), (v, "v")):
            if isinstance(q, DeviceArray) and isinstance(arr, DeviceArray) and arr.dtype != q.dtype:
                raise TypeError(f"{name}: {arg} has dtype {arr.dtype} but q has dtype {q.dtype}")
        mask = bound.get("attn_mask")
        if mask is not None:
            _require(mask, name, "attn_mask")
            if isinstance(q, DeviceArray) and mask.dtype != q.dtype:
                raise TypeError(f"{name}: attn_mask has dtype {mask.dtype}; on CUDA it must be a float mask of "
                                f"q's dtype {q.dtype} (0 to attend, -inf to mask out)")
    if name == "kv_cache_append":
        cache, new = bound.get("cache"), bound.get("new")
        if isinstance(cache, DeviceArray) and isinstance(new, DeviceArray) and cache._storage is new._storage:
            raise ValueError("kv_cache_append: new shares memory with cache; pass a separate array")
    for arg, v in bound.items():  # every array argument of a CUDA kernel is a DeviceArray
        if isinstance(v, np.ndarray):
            raise TypeError(f"{name}: {arg} must be a dlkern._C_cuda.DeviceArray, got numpy.ndarray")


def _host_kernel(name):
    import inspect

    cpu = getattr(_ops, name)
    try:
        sig = inspect.signature(cpu)
    except (TypeError, ValueError):
        sig = None

    def op(*args, **kwargs):
        out = kwargs.pop("out", None)
        if sig is not None:
            bound = sig.bind(*args, **kwargs).arguments  # TypeError on a wrong keyword, as pybind11
            _cuda_checks(name, bound)
        result = cpu(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        if out is not None:
            _require(out, name, "out")
            r = np.asarray(result)
            if out.dtype != r.dtype:
                raise TypeError(f"{name}: out has dtype {out.dtype} but the result has dtype {r.dtype}")
            if out.shape != r.shape:
                raise ValueError(f"{name}: out has shape {out.shape}, expected {r.shape}")
            out._a[...] = result
            return out
        return _wrap(result)
    op.__name__ = name
    return op


# The hot ops: same names and arguments as the CPU ops (the bindings' contract).
for _name in ("softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
              "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
              "cross_entropy_forward", "cross_entropy_backward", "rope", "rope_backward",
              "kv_cache_append", "decode_attention", "attention_forward", "attention_backward",
              "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "causal_conv1d", "causal_conv1d_backward",
              "max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d",
              "avg_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
              "gelu_tanh", "gelu_tanh_backward"):
    globals()[_name] = _host_kernel(_name)
del _name


def _optim_args(op, param, named, scalars, step=None):
    """csrc/bind/cuda_optim.cpp: float param and state of param's dtype and shape, all
    contiguous; finite rates; step an int >= 1."""
    _require(param, op, "param")
    if param.dtype not in _FLOATS:
        raise TypeError(f"{op}: param has dtype {param.dtype}; expected float32 or float64")
    if not param.is_contiguous():
        raise ValueError(f"{op}: param must be contiguous")
    for arg, a in named:
        _require(a, op, arg)
        if a.dtype not in _FLOATS:
            raise TypeError(f"{op}: {arg} has dtype {a.dtype}; expected float32 or float64")
        if a.dtype != param.dtype:
            raise TypeError(f"{op}: {arg} has dtype {a.dtype} but param has dtype {param.dtype}")
        if a.shape != param.shape:
            raise ValueError(f"{op}: {arg} has shape {a.shape} but param has shape {param.shape}")
        if not a.is_contiguous():
            raise ValueError(f"{op}: {arg} must be contiguous")
    if step is not None:
        if isinstance(step, float) or not hasattr(type(step), "__index__"):
            raise TypeError(f"{op}: step must be an int, got {type(step).__name__}")
        if step < 1:
            raise ValueError(f"{op}: step counts from 1, got {step}")
    for k, v in scalars.items():
        if not math.isfinite(v):
            raise ValueError(f"{op}: {k} must be finite, got {v}")


# Fused optimizer steps: the kernels' arithmetic (csrc/cuda/optim.cu), element by element
# in T with the factors rounded to T once.
def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay,
              decoupled_weight_decay, amsgrad, maximize):
    if amsgrad and max_exp_avg_sq is None:
        raise ValueError("adam_step: amsgrad=True needs max_exp_avg_sq")
    _optim_args("adam_step", param, [("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)]
                + ([("max_exp_avg_sq", max_exp_avg_sq)] if amsgrad else []),
                dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay), step)
    T = param.dtype.type
    p, g = param._a, grad._a
    if decoupled_weight_decay and weight_decay != 0:
        p *= T(1.0 - lr * weight_decay)
    g = -g if maximize else g.copy()
    if not decoupled_weight_decay and weight_decay != 0:
        g = p * T(weight_decay) + g
    m = exp_avg._a * T(beta1) + g * T(1.0 - beta1)
    v = exp_avg_sq._a * T(beta2) + (g * g) * T(1.0 - beta2)
    exp_avg._a[...] = m
    exp_avg_sq._a[...] = v
    if amsgrad:
        v = np.maximum(max_exp_avg_sq._a, v)
        max_exp_avg_sq._a[...] = v
    denom = np.sqrt(v) / T(math.sqrt(1.0 - beta2 ** step)) + T(eps)
    p += (m / denom) * T(-lr / (1.0 - beta1 ** step))


def sgd_step(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    if momentum != 0 and momentum_buffer is None:
        raise ValueError("sgd_step: momentum != 0 needs momentum_buffer")
    _optim_args("sgd_step", param, [("grad", grad)] + ([("momentum_buffer", momentum_buffer)] if momentum != 0 else []),
                dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay))
    T = param.dtype.type
    p = param._a
    g = -grad._a if maximize else grad._a.copy()
    if weight_decay != 0:
        g = p * T(weight_decay) + g
    if momentum != 0:
        b = g.copy() if first else momentum_buffer._a * T(momentum) + g * T(1.0 - dampening)
        momentum_buffer._a[...] = b
        g = g + b * T(momentum) if nesterov else b
    p += g * T(-lr)



# The kernels this stand-in defines, in dlkern._C_cuda's order (csrc/bind/kernels.h): a
# device namespace maps a name to the module exactly when it is in KERNELS.
KERNELS = tuple(name for name in _C.KERNEL_NAMES if callable(globals().get(name)))
