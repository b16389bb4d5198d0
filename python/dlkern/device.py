"""Device namespaces: one object per device with the same function names
(``dev.matmul``, ``dev.exp``, ``dev.softmax_forward``, ``dev.conv2d_backward``, ...), so
autograd and nn code call ``ctx.device.<name>`` and never branch on the device.

The CPU namespace maps names to NumPy functions and to the ``dlkern.ops`` kernels
(looked up on first use, so kernels merged later are picked up); a name with no kernel
raises NotImplementedError naming the op and the device. The CUDA namespace
(``device("cuda")``, only when a GPU is present) maps the names that have CUDA kernels
to ``dlkern._C_cuda``, whose arrays are ``DeviceArray``; the rest raise the same way.
"""

import math

import numpy as np


def _sigmoid(x):
    # 0.5 * tanh(x / 2) + 0.5: one transcendental, no overflow for large |x|.
    y = np.tanh(x * 0.5)
    y *= 0.5
    y += 0.5
    return y


# erf: NumPy has none. Two Chebyshev fits, made here once per dtype from math.erf at
# Chebyshev nodes: erf(x) = x P(x^2) for |x| <= 2, and erfc(x) = exp(-x^2)/x Q(1/x) for
# 2 < |x| <= 6.5 (beyond, erf is +-1 in float64). Degrees give ~1e-15 relative error in
# float64 and ~1e-8 absolute in float32 (checked against math.erf in the tests).
_ERF_DEGREES = {np.dtype(np.float64): (18, 14), np.dtype(np.float32): (9, 4)}
_ERF_FAR = 6.5
_ERF_T = 2.2 ** 2
_erf_coeffs = {}


def _fit_erf(dtype):
    cheb = np.polynomial.chebyshev
    nodes = np.cos(np.linspace(0.0, np.pi, 800))
    deg_near, deg_far = _ERF_DEGREES.get(dtype, _ERF_DEGREES[np.dtype(np.float64)])
    t = (nodes + 1.0) * (_ERF_T / 2)                          # x^2 in [0, 2.2^2]: past the
    # switch at |x| = 2, so the fit's larger error at its ends stays unused
    x = np.sqrt(t)
    ratio = np.array([math.erf(v) / v if v > 0 else 2.0 / math.sqrt(math.pi) for v in x])
    near = cheb.chebfit(nodes, ratio, deg_near)
    lo, hi = 1.0 / _ERF_FAR, 0.5
    u = (nodes + 1.0) * 0.5 * (hi - lo) + lo                  # 1/x in [1/6.5, 1/2]
    scaled = np.array([math.erfc(1 / v) * math.exp(1 / v ** 2) / v for v in u])
    far = cheb.chebfit(nodes, scaled, deg_far)
    return near.astype(dtype), far.astype(dtype)


def _clenshaw(t, c):
    b1 = b2 = 0
    t2 = t + t
    for ck in c[:0:-1]:
        b1, b2 = t2 * b1 - b2 + ck, b1
    return t * b1 - b2 + c[0]


def _erf(x):
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in _ERF_DEGREES else np.dtype(np.float64)
    x = x.astype(dtype, copy=False)
    coeffs = _erf_coeffs.get(dtype)
    if coeffs is None:
        coeffs = _erf_coeffs[dtype] = _fit_erf(dtype)
    near, far = coeffs
    one, half = dtype.type(1), dtype.type(0.5)
    y = x * _clenshaw(np.minimum(x * x, 4) * dtype.type(2 / _ERF_T) - one, near)
    big = np.abs(x) > 2
    if big.any():
        xb = x[big]
        a = np.minimum(np.abs(xb), dtype.type(_ERF_FAR))
        lo, hi = dtype.type(1 / _ERF_FAR), dtype.type(0.5)
        s = (one / a - lo) * (dtype.type(2) / (hi - lo)) - one
        erfc = np.exp(-a * a) / a * _clenshaw(s, far)
        erfc = np.where(np.abs(xb) >= _ERF_FAR, 0, erfc)
        y[big] = np.copysign(one - erfc, xb)
    return y


class CPUDevice:
    """The CPU: arrays are numpy.ndarray."""

    type = "cpu"
    index = None
    array_type = np.ndarray

    # elementwise and array primitives from NumPy
    add = staticmethod(np.add)
    subtract = staticmethod(np.subtract)
    multiply = staticmethod(np.multiply)
    divide = staticmethod(np.divide)
    negative = staticmethod(np.negative)
    power = staticmethod(np.power)
    exp = staticmethod(np.exp)
    expm1 = staticmethod(np.expm1)
    log = staticmethod(np.log)
    log1p = staticmethod(np.log1p)
    sqrt = staticmethod(np.sqrt)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    tanh = staticmethod(np.tanh)
    sin = staticmethod(np.sin)
    cos = staticmethod(np.cos)
    tril = staticmethod(np.tril)
    triu = staticmethod(np.triu)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    clip = staticmethod(np.clip)
    where = staticmethod(np.where)
    logaddexp = staticmethod(np.logaddexp)
    sigmoid = staticmethod(_sigmoid)
    erf = staticmethod(_erf)
    sum = staticmethod(np.sum)
    mean = staticmethod(np.mean)
    amax = staticmethod(np.amax)
    amin = staticmethod(np.amin)
    argmax = staticmethod(np.argmax)
    argmin = staticmethod(np.argmin)
    var = staticmethod(np.var)
    concatenate = staticmethod(np.concatenate)
    stack = staticmethod(np.stack)
    broadcast_to = staticmethod(np.broadcast_to)
    expand_dims = staticmethod(np.expand_dims)
    take_along_axis = staticmethod(np.take_along_axis)
    put_along_axis = staticmethod(np.put_along_axis)
    add_at = staticmethod(np.add.at)
    zeros = staticmethod(np.zeros)
    ones = staticmethod(np.ones)
    empty = staticmethod(np.empty)
    full = staticmethod(np.full)
    zeros_like = staticmethod(np.zeros_like)
    ones_like = staticmethod(np.ones_like)
    asarray = staticmethod(np.asarray)
    contiguous = staticmethod(np.ascontiguousarray)
    arange = staticmethod(np.arange)

    def fused(self, name):
        """A fused optimizer kernel (adam_step, sgd_step): none on the CPU, whose NumPy
        updates run in place already."""
        return None

    def uniform(self, shape):
        """Uniform [0, 1) samples (float64) from dlkern's generator (dlkern.manual_seed)."""
        from .tensor import _RNG
        return _RNG.generator.random(shape)

    def from_host(self, array):
        """The host array itself (no copy): the CPU's arrays already live on the host."""
        return np.asarray(array)

    # ---- used by nn/models/train: operands made on the host, read back on the host
    def to_device(self, x):
        """x (a host array or sequence) as an array of this device: NumPy's own, as is."""
        return np.asarray(x)

    def to_host(self, x):
        """x as a NumPy array (no copy here)."""
        return np.asarray(x)

    def host_bounds(self, x):
        """(min, max) of array x when reading them costs no device synchronisation (always
        on the CPU), None for an empty x."""
        return (x.min(), x.max()) if x.size else None
    # ---- end of the block used by nn/models/train

    def __getattr__(self, name):
        # Kernels: dlkern.ops.<name>, looked up lazily and cached on the instance.
        if name.startswith("__"):
            raise AttributeError(name)
        from . import ops
        fn = getattr(ops, name, None)
        if fn is None:
            raise NotImplementedError(
                f"op '{name}' is not implemented on device 'cpu' (no kernel dlkern.ops.{name})")
        setattr(self, name, fn)
        return fn

    def __repr__(self):
        return "device(type='cpu')"

    def __str__(self):
        return "cpu"

    def __eq__(self, other):
        if isinstance(other, str):
            return other == "cpu"
        return other is self

    def __hash__(self):
        return hash("cpu")

    def __reduce__(self):
        # pickle/deepcopy by reference: there is one CPU namespace, compared by identity
        return "cpu"


cpu = CPUDevice()


def _cuda_module():
    """dlkern._C_cuda, or None when dlkern was built without CUDA."""
    try:
        from . import _C_cuda
    except ImportError:
        return None
    return _C_cuda


def _cuda_unavailable_reason():
    module = _cuda_module()
    if module is None:
        return "dlkern was built without CUDA support (dlkern._C_cuda is missing; rebuild with DLKERN_CUDA=ON)"
    try:
        if not module.is_available():
            return "dlkern._C_cuda is built but no CUDA device is available"
    except Exception as exc:
        return f"dlkern._C_cuda cannot query devices: {exc}"
    return None


class CUDADevice:
    """A CUDA device: arrays are ``DeviceArray`` of ``module`` (dlkern._C_cuda, or a
    stand-in with the same functions in tests), with NumPy's array methods installed by
    dlkern.device_array. Kernel names map 1:1 to the module's functions; the array
    helpers below (broadcast_to, concatenate, tril, ...) are views and copies built on
    them. A name with no CUDA kernel raises NotImplementedError naming the op and
    'cuda'. Every operand must already live on this device."""

    type = "cuda"

    # Names that are the module's functions under the same name (checked for mixing).
    _KERNELS = frozenset((
        "add", "subtract", "multiply", "divide", "negative", "power", "maximum", "minimum", "logaddexp",
        "exp", "expm1", "log", "log1p", "sqrt", "abs", "sign", "tanh", "sin", "cos", "erf", "sigmoid", "relu",
        "square", "reciprocal", "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
        "logical_not", "logical_and", "logical_or", "clip",
        "argmax", "argmin",
        "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
        "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
        "matmul", "gemm", "cross_entropy_forward", "cross_entropy_backward",
        "rope", "rope_backward", "kv_cache_append",
        "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "causal_conv1d", "causal_conv1d_backward",
        "max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d",
        "avg_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
        "gelu_tanh", "gelu_tanh_backward", "take", "take_along_axis", "put_along_axis",
    ))

    # Binary elementwise names whose operands are promoted to one dtype as NumPy does.
    _PROMOTING = frozenset(("add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "logaddexp",
                            "greater", "greater_equal", "less", "less_equal", "equal", "not_equal"))

    def __init__(self, index=0, module=None):
        self.index = int(index)
        self.module = module if module is not None else _cuda_module()
        from .device_array import install
        install(self.module)
        # Arrays of a stand-in module (tests) find their namespace here; the real
        # module's arrays map to the cached dlkern.device("cuda:N") instead.
        _namespace_of_array.setdefault((self.module.DeviceArray, self.index), self)

    @property
    def array_type(self):
        return self.module.DeviceArray

    def _check_same_device(self, name, args):
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"{name} on {self}: got a numpy.ndarray (cpu); devices cannot be "
                                f"mixed in one op, move it with .to('{self}') first")
            if isinstance(a, (tuple, list)):
                self._check_same_device(name, a)
                continue
            dev = getattr(a, "device", None)
            if isinstance(dev, int) and dev != self.index:
                raise ValueError(f"{name} on {self}: an operand is on cuda:{dev}; devices cannot be "
                                 "mixed in one op")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        fn = getattr(self.module, name, None) if name in self._KERNELS else None
        if fn is None:
            raise NotImplementedError(
                f"op '{name}' is not implemented on device 'cuda' (no kernel dlkern._C_cuda.{name})")

        promote = name in self._PROMOTING

        def op(*args, **kwargs):
            self._check_same_device(name, args)
            args = tuple(a.item() if isinstance(a, np.generic) else a for a in args)
            if promote and len(args) == 2:
                args = self.module.DeviceArray._promote(*args)
            return fn(*args, **kwargs)

        op.__name__ = name
        setattr(self, name, op)
        return op

    # ---- creation
    def _dtype(self, dtype, default=np.float32):
        return np.dtype(default if dtype is None else dtype)

    def zeros(self, shape, dtype=None):
        return self.module.zeros(_shape_tuple(shape), self._dtype(dtype), device=self.index)

    def empty(self, shape, dtype=None):
        return self.module.empty(_shape_tuple(shape), self._dtype(dtype), device=self.index)

    def full(self, shape, value, dtype=None):
        return self.module.full(_shape_tuple(shape), value, self._dtype(dtype), device=self.index)

    def ones(self, shape, dtype=None):
        return self.full(shape, 1, dtype)

    def zeros_like(self, x, dtype=None):
        return self.zeros(x.shape, dtype or x.dtype)

    def ones_like(self, x, dtype=None):
        return self.full(x.shape, 1, dtype or x.dtype)

    def arange(self, start, stop=None, step=1, dtype=None):
        return self.module.arange(start, stop, step, dtype=dtype, device=self.index)

    def asarray(self, x, dtype=None):
        """A DeviceArray on this device from a DeviceArray (as is), a Python number or a
        0-d NumPy scalar (results of host-side math). A NumPy array is refused: moving
        data between devices is Tensor.to's job, never an implicit side effect."""
        module = self.module
        if isinstance(x, module.DeviceArray):
            self._check_same_device("asarray", (x,))
        elif isinstance(x, (int, float, bool, np.generic)):
            x = self.full((), x.item() if isinstance(x, np.generic) else x,
                          dtype or (x.dtype if isinstance(x, np.generic) else np.float32))
        else:
            self._check_same_device("asarray", (x,))
            raise TypeError(f"asarray on {self}: cannot make a device array from {type(x).__name__}")
        if dtype is not None and np.dtype(dtype) != x.dtype:
            x = module.astype(x, dtype)
        return x

    def fused(self, name):
        """The module's fused optimizer kernel `name` (adam_step, sgd_step), or None."""
        return getattr(self.module, name, None)

    def uniform(self, shape, dtype=np.float32):
        """Uniform [0, 1) samples made on the device from a counter-based generator whose
        seed is drawn from dlkern's generator, so dlkern.manual_seed governs them too."""
        from .tensor import _RNG
        seed = int(_RNG.generator.integers(0, 2 ** 63 - 1))
        return self.module.rand(_shape_tuple(shape), seed, dtype, device=self.index)

    def from_host(self, array):
        """Copy a NumPy array to this device (the one explicit host-to-device path)."""
        return self.module.from_numpy(np.ascontiguousarray(array), device=self.index)

    def contiguous(self, x):
        self._check_same_device("contiguous", (x,))
        return x.contiguous()

    # ---- used by nn/models/train: operands made on the host, read back on the host
    def to_device(self, x):
        """x as an array of this device: a DeviceArray of it as is, host data copied (the
        explicit host-to-device path for operands nn makes on the host: indices, masks)."""
        if isinstance(x, self.module.DeviceArray):
            self._check_same_device("to_device", (x,))
            return x
        return self.from_host(np.asarray(x))

    def to_host(self, x):
        """A NumPy copy of device array x (a synchronisation with the device)."""
        return x.numpy()

    def host_bounds(self, x):
        """None: reading a device array's min and max would synchronise with the device;
        the kernels that index with x check its bounds themselves."""
        return None
    # ---- end of the block used by nn/models/train

    # ---- views and copies built on the module's primitives
    def broadcast_to(self, x, shape):
        shape = _shape_tuple(shape)
        lead = len(shape) - x.ndim
        if lead < 0:
            raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
        strides = [0] * lead
        for n, m, s in zip(x.shape, shape[lead:], x.strides):
            if n != m and n != 1:
                raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {shape}")
            strides.append(s if n == m else 0)
        return x.as_strided(shape, tuple(strides))

    def expand_dims(self, x, axis):
        axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
        ndim = x.ndim + len(axes)
        axes = sorted(a % ndim for a in axes)
        shape, strides = list(x.shape), list(x.strides)
        for a in axes:
            shape.insert(a, 1)
            strides.insert(a, 0)
        return x.as_strided(tuple(shape), tuple(strides))

    def concatenate(self, arrays, axis=0):
        arrays = list(arrays)
        self._check_same_device("concatenate", arrays)
        first = arrays[0]
        axis = axis % first.ndim
        shape = list(first.shape)
        shape[axis] = sum(a.shape[axis] for a in arrays)
        out = self.empty(shape, first.dtype)
        start = 0
        index = [slice(None)] * first.ndim
        for a in arrays:
            index[axis] = slice(start, start + a.shape[axis])
            out[tuple(index)] = a
            start += a.shape[axis]
        return out

    def stack(self, arrays, axis=0):
        arrays = list(arrays)
        return self.concatenate([self.expand_dims(a, axis) for a in arrays], axis=axis % (arrays[0].ndim + 1))

    def where(self, cond, a, b):
        self._check_same_device("where", (cond, a, b))
        scalar = lambda v: v.item() if isinstance(v, np.generic) else v  # noqa: E731
        if isinstance(cond, self.module.DeviceArray) and cond.dtype != np.bool_:
            cond = self.module.not_equal(cond, 0)
        a, b = scalar(a), scalar(b)
        if isinstance(a, self.module.DeviceArray) or isinstance(b, self.module.DeviceArray):
            # one dtype for both branches, as NumPy's result type (the kernel refuses mixed
            # dtypes, a float with an int64 array and a non-bool number with a bool array)
            a, b = self.module.DeviceArray._promote(a, b)
        return self.module.where(cond, a, b)

    def var(self, x, axis=None, ddof=0, keepdims=False):
        return x.var(axis=axis, ddof=ddof, keepdims=keepdims)

    def sum(self, x, axis=None, keepdims=False):
        return x.sum(axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return x.mean(axis=axis, keepdims=keepdims)

    # ---- attention: the CUDA kernels take additive float masks; a bool mask (True =
    # attend) becomes 0 / -inf here, so nn code passes either kind on every device.
    def _float_mask(self, mask, dtype):
        if mask is None or mask.dtype != np.bool_:
            return mask
        return self.module.where(mask, self.full((), 0.0, dtype), -np.inf)

    def attention_forward(self, q, k, v, attn_mask=None, *args, **kwargs):
        self._check_same_device("attention_forward", (q, k, v, attn_mask))
        return self.module.attention_forward(q, k, v, self._float_mask(attn_mask, q.dtype), *args, **kwargs)

    def attention_backward(self, grad_out, q, k, v, out, lse, attn_mask=None, *args, **kwargs):
        self._check_same_device("attention_backward", (grad_out, q, k, v, out, lse, attn_mask))
        return self.module.attention_backward(grad_out, q, k, v, out, lse, self._float_mask(attn_mask, q.dtype),
                                              *args, **kwargs)

    def decode_attention(self, q, k_cache, v_cache, length, attn_mask=None, scale=None):
        self._check_same_device("decode_attention", (q, k_cache, v_cache, attn_mask))
        return self.module.decode_attention(q, k_cache, v_cache, length, self._float_mask(attn_mask, q.dtype), scale)

    def amax(self, x, axis=None, keepdims=False):
        return x.max(axis=axis, keepdims=keepdims)

    def amin(self, x, axis=None, keepdims=False):
        return x.min(axis=axis, keepdims=keepdims)

    def _triangle(self, x, k, lower):
        rows, cols = x.shape[-2], x.shape[-1]
        i = self.arange(rows).reshape(rows, 1)
        j = self.arange(cols)
        keep = self.module.greater_equal(i + k, j) if lower else self.module.less_equal(i + k, j)
        return self.module.where(keep, x, False if x.dtype == np.bool_ else 0)  # bool x: a bool zero

    def tril(self, x, k=0):
        return self._triangle(x, k, True)

    def triu(self, x, k=0):
        return self._triangle(x, k, False)

    def add_at(self, x, index, values):
        """numpy.add.at(x, index, values) for basic indices (no repeats: a view +=) or one
        integer array over axis 0 (repeats accumulate)."""
        from .device_array import basic_view
        self._check_same_device("add_at", (x, values))
        view = basic_view(x, index)
        if view is not None:
            view += values
            return
        if isinstance(index, tuple) and len(index) == 1:
            index = index[0]
        if isinstance(index, tuple):
            pairs = x._leading_arrays(x, index) if x.is_contiguous() else None
            if pairs is None:
                raise NotImplementedError("add_at on cuda: only basic indices, one integer index array, or integer "
                                          "arrays over the leading axes of a contiguous array are supported")
            flat, lin = pairs
            self.module.add_at(flat, lin, values)
            return
        if not isinstance(index, self.module.DeviceArray):
            index = self.from_host(np.asarray(index, dtype=np.int64))
        self.module.add_at(x, index, values)

    def __repr__(self):
        return f"device(type='cuda', index={self.index})"

    def __str__(self):
        return f"cuda:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            return other in (str(self), "cuda") if self.index == 0 else other == str(self)
        return isinstance(other, CUDADevice) and other.index == self.index and other.module is self.module

    def __hash__(self):
        return hash(("cuda", self.index))

    def __reduce__(self):
        return (device, (str(self),))


_namespace_of_array = {}


def array_namespace(x):
    """The device namespace that computes on array x (cpu for NumPy arrays; for a
    dlkern._C_cuda array the same object dlkern.device("cuda:N") returns)."""
    if isinstance(x, np.ndarray):
        return cpu
    module = _cuda_module()
    if module is not None and type(x) is module.DeviceArray:
        return device(f"cuda:{x.device}")
    dev = _namespace_of_array.get((type(x), getattr(x, "device", None)))
    if dev is None:
        raise TypeError(f"no device namespace computes on {type(x).__name__} arrays")
    return dev


def _shape_tuple(shape):
    if isinstance(shape, (int, np.integer)):
        return (int(shape),)
    return tuple(int(n) for n in shape)


_cuda_devices = {}


def _cuda_index(spec):
    _, _, index = spec.partition(":")
    if not index.strip():
        return 0
    try:
        value = int(index)
    except ValueError:
        raise ValueError(f"bad CUDA device {spec!r}; expected 'cuda' or 'cuda:<index>'") from None
    if value < 0:
        raise ValueError(f"bad CUDA device {spec!r}: negative index")
    return value


def device(spec="cpu"):
    """The device namespace for "cpu", "cuda" or "cuda:<index>" (or a device object).
    "cuda" raises RuntimeError saying why when CUDA is not built or no GPU is present."""
    if isinstance(spec, (CPUDevice, CUDADevice)):
        return spec
    if spec is None:
        return cpu
    if not isinstance(spec, str):
        spec_type = getattr(spec, "type", None)
        if spec_type is None:
            raise TypeError(f"device must be a string like 'cpu' or a device, got {type(spec).__name__}")
        spec = str(spec)
    kind = spec.split(":")[0].strip().lower()
    if kind == "cpu":
        return cpu
    if kind == "cuda":
        index = _cuda_index(spec)
        reason = _cuda_unavailable_reason()
        if reason:
            raise RuntimeError(f"device '{spec}' requested but {reason}")
        count = _cuda_module().device_count()
        if index >= count:
            raise RuntimeError(f"device '{spec}' requested but only {count} CUDA device(s) are visible")
        dev = _cuda_devices.get(index)
        if dev is None:
            dev = _cuda_devices[index] = CUDADevice(index)
        return dev
    raise ValueError(f"unknown device {spec!r}; expected 'cpu' or 'cuda'")
