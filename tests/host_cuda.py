"""A host-memory stand-in for dlkern._C_cuda, for machines without a GPU.

It has the DeviceArray surface of the real module (element strides, views over one
storage, ``numpy()`` as the only way back to the host: ``__array__`` raises, so a NumPy
call on a device array fails loudly as it does on a GPU) and the kernel functions that
the CUDA device namespace calls, with the bindings' names and call shapes, computed with
NumPy and dlkern's CPU ops. The device-neutral Python layer (Tensor.to("cuda"),
Module.to, optimizers, the NumPy-style DeviceArray methods of dlkern.device_array) is
tested against it here and against the real module where a GPU is present.

Transfers are counted (``transfers``), so a test can assert that a training step on the
device never copies to the host.
"""

import builtins
import math

import numpy as np

from dlkern import ops as _ops

transfers = {"to_host": 0, "to_device": 0}
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.bool_))
_FLOATS = _DTYPES[:2]


def _dtype(dtype, op="dtype"):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: unsupported dtype {dtype!r}") from None
    if dt not in _DTYPES:
        raise TypeError(f"{op}: unsupported dtype {dt}; CUDA arrays are float32, float64, int64 or bool")
    return dt


class DeviceArray:
    """A strided array in (simulated) device memory: a view `_a` over a 1-D `_storage`."""

    def __init__(self, storage, view, owner):
        self._storage = storage
        self._a = view
        self._owner = owner

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
        return None if self._owner else self

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
        return self if self.is_contiguous() else self.clone()

    def clone(self):
        return DeviceArray._fresh(self._a)

    def copy_(self, src):
        if not isinstance(src, DeviceArray):
            raise TypeError("copy_: src must be a DeviceArray")
        if src.dtype != self.dtype:
            raise TypeError(f"copy_: src has dtype {src.dtype} but self has dtype {self.dtype}")
        self._a[...] = np.broadcast_to(src._a, self.shape)
        return self

    def _view(self, view):
        return DeviceArray(self._storage, view, False)

    def as_strided(self, shape, strides, offset=None):
        offset = self.offset if offset is None else int(offset)
        shape, strides = tuple(int(n) for n in shape), tuple(int(s) for s in strides)
        if len(shape) != len(strides):
            raise ValueError("as_strided: shape and strides differ in length")
        if any(n < 0 for n in shape):
            raise ValueError("as_strided: negative size")
        if all(n > 0 for n in shape):
            lo = offset + builtins.sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
            hi = offset + builtins.sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
            if lo < 0 or hi >= self._storage.size:
                raise ValueError("as_strided: the view reaches outside the storage")
        else:
            offset = 0
        start = self._storage[offset:] if self._storage.size else self._storage
        view = np.lib.stride_tricks.as_strided(start, shape, tuple(s * self.itemsize for s in strides))
        return self._view(view)

    def permute(self, *dims):
        if len(dims) == 1 and not isinstance(dims[0], int):
            dims = tuple(dims[0])
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dimensions for an array of {self.ndim}")
        return self._view(np.transpose(self._a, dims))

    def transpose(self, dim0, dim1):
        return self._view(np.swapaxes(self._a, dim0, dim1))

    @property
    def T(self):
        return self._view(self._a.T)

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        if not self.is_contiguous():
            raise ValueError("reshape: the array is not contiguous; call contiguous() first")
        return self._view(self._a.reshape(shape))


# ------------------------------------------------------------------ module functions

def is_available():
    return True


def device_count():
    return 1


def synchronize(device=None):
    pass


def from_numpy(array, stream=None, device=None):
    transfers["to_device"] += 1
    return DeviceArray._fresh(np.asarray(array))


def _host(x):
    return x._a if isinstance(x, DeviceArray) else x


def _shape(shape):
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)


def empty(shape, dtype=np.float32, device=None, stream=None):
    return DeviceArray._fresh(np.empty(_shape(shape), _dtype(dtype, "empty")))


def zeros(shape, dtype=np.float32, device=None, stream=None):
    return DeviceArray._fresh(np.zeros(_shape(shape), _dtype(dtype, "zeros")))


def full(shape, value, dtype=np.float32, device=None, stream=None):
    return DeviceArray._fresh(np.full(_shape(shape), value, _dtype(dtype, "full")))


def arange(start, stop=None, step=1, dtype=None, device=None):
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = np.int64 if all(isinstance(v, (int, np.integer)) for v in (start, stop, step)) else np.float32
    return DeviceArray._fresh(np.arange(start, stop, step, dtype=_dtype(dtype, "arange")))


def fill_(x, value):
    x._a[...] = value
    return x


def astype(x, dtype):
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


def _erf(a):
    return np.vectorize(math.erf, otypes=[a.dtype])(a) if a.size else a.copy()


def _scalar_operand(name, a, b):
    """(dtype, host a, host b): one dtype for both array operands, scalars cast to it."""
    arrays = [v for v in (a, b) if isinstance(v, DeviceArray)]
    if not arrays:
        raise TypeError(f"{name}: at least one operand must be a DeviceArray")
    dtype = arrays[0].dtype
    for v in arrays[1:]:
        if v.dtype != dtype:
            raise TypeError(f"{name}: dtype mismatch: {dtype} and {v.dtype}")
    for v in (a, b):
        if not isinstance(v, (DeviceArray, int, float, bool, np.number)):
            raise TypeError(f"{name}: operands must be DeviceArrays or Python numbers, got {type(v).__name__}")
        if not isinstance(v, DeviceArray) and dtype == np.int64 and isinstance(v, float):
            raise TypeError(f"{name}: a float scalar with an int64 array")
    conv = lambda v: v._a if isinstance(v, DeviceArray) else dtype.type(v)  # noqa: E731
    return dtype, conv(a), conv(b)


_INT64_ARITHMETIC = ("add", "subtract", "multiply", "maximum", "minimum")  # as the CUDA kernels


def _binary(name, fn, result_bool=False):
    def op(a, b, out=None):
        dtype, ha, hb = _scalar_operand(name, a, b)
        if dtype == np.bool_ and not result_bool and name not in ("logical_and", "logical_or"):
            raise TypeError(f"{name}: bool arrays do not support arithmetic")
        if dtype == np.int64 and not result_bool and name not in _INT64_ARITHMETIC:
            raise TypeError(f"{name}: int64 arrays are not supported; cast to a float dtype first")
        with np.errstate(all="ignore"):
            r = fn(ha, hb)
        return _finish(name, r, out, np.dtype(np.bool_) if result_bool else dtype)
    op.__name__ = name
    return op


for _name, _fn in {"negative": np.negative, "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs,
                   "tanh": np.tanh, "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "relu": lambda a: np.maximum(a, 0),
                   "sin": np.sin, "cos": np.cos, "sign": np.sign, "log1p": np.log1p, "expm1": np.expm1,
                   "erf": _erf, "square": np.square, "reciprocal": np.reciprocal}.items():
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


def clip(x, lo=None, hi=None, out=None):
    _require(x, "clip", "x")
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
        if axis is not None and not isinstance(axis, (int, np.integer)):
            raise TypeError(f"{name}: axis must be an int or None")
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


def take(x, indices, axis=0):
    return DeviceArray._fresh(np.take(x._a, _indices(indices, "take"), axis=axis))


def take_along_axis(x, indices, axis):
    return DeviceArray._fresh(np.take_along_axis(x._a, _indices(indices, "take_along_axis"), axis))


def put_along_axis(x, indices, values, axis):
    np.put_along_axis(x._a, _indices(indices, "put_along_axis"), _host(values), axis)


def add_at(x, indices, values):
    np.add.at(x._a, _indices(indices, "add_at"), _host(values))


try:  # the GPU generator's own host twin, when the CUDA module is built: bit-exact with the device
    from dlkern._C_cuda import _rand_host, _randn_host
except ImportError:
    _rand_host = _randn_host = None


def rand(shape, seed, dtype=np.float32, device=None, stream=None):
    if _rand_host is not None:
        return DeviceArray._fresh(_rand_host(_shape(shape), seed, np.dtype(dtype).name))
    return DeviceArray._fresh(np.random.default_rng(int(seed)).random(_shape(shape)).astype(_dtype(dtype, "rand")))


def randn(shape, seed, dtype=np.float32, device=None, stream=None):
    if _randn_host is not None:
        return DeviceArray._fresh(_randn_host(_shape(shape), seed, np.dtype(dtype).name))
    return DeviceArray._fresh(np.random.default_rng(int(seed)).standard_normal(_shape(shape)).astype(_dtype(dtype)))


def matmul(a, b, out=None):
    _require(a, "matmul", "a")
    _require(b, "matmul", "b")
    return _finish("matmul", _ops.matmul(a._a, b._a), out, a.dtype)


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


def _host_kernel(name):
    cpu = getattr(_ops, name)

    def op(*args, **kwargs):
        out = kwargs.pop("out", None)
        result = cpu(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        if out is not None:
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
              "gelu_tanh", "gelu_tanh_backward", "gemm"):
    globals()[_name] = _host_kernel(_name)
del _name


# Fused optimizer steps: the kernels' arithmetic (csrc/cuda/optim.cu), element by element
# in T with the factors rounded to T once.
def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay,
              decoupled_weight_decay, amsgrad, maximize):
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

