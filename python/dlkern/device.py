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
    """A CUDA device: arrays are dlkern._C_cuda.DeviceArray, and the names below map to
    the _C_cuda kernels. A name with no CUDA kernel yet raises NotImplementedError
    naming the op and 'cuda'. Inputs must already live on this device."""

    type = "cuda"

    # namespace name -> dlkern._C_cuda function taking and returning DeviceArrays
    _KERNELS = {
        "add": "add", "subtract": "subtract", "multiply": "multiply", "divide": "divide",
        "negative": "negative", "power": "power", "maximum": "maximum", "minimum": "minimum",
        "exp": "exp", "log": "log", "sqrt": "sqrt", "abs": "abs", "tanh": "tanh",
        "sigmoid": "sigmoid", "relu": "relu",
        "sum": "sum", "mean": "mean", "amax": "amax", "amin": "amin",
        "softmax": "softmax", "log_softmax": "log_softmax", "softmax_backward": "softmax_backward",
        "log_softmax_backward": "log_softmax_backward",
        "layer_norm_forward": "layer_norm_forward", "layer_norm_backward": "layer_norm_backward",
        "rms_norm_forward": "rms_norm_forward", "rms_norm_backward": "rms_norm_backward",
        "matmul": "matmul", "gemm": "gemm",
        "cross_entropy_forward": "cross_entropy_forward", "cross_entropy_backward": "cross_entropy_backward",
        "rope": "rope", "rope_backward": "rope_backward", "kv_cache_append": "kv_cache_append",
        "decode_attention": "decode_attention",
    }

    def __init__(self, index=0):
        self.index = int(index)

    @property
    def array_type(self):
        return _cuda_module().DeviceArray

    def _check_same_device(self, name, args):
        for a in args:
            dev = getattr(a, "device", None)
            if isinstance(a, np.ndarray):
                raise TypeError(f"{name} on {self}: got a numpy.ndarray (cpu); devices cannot be "
                                f"mixed in one op, move it with .to('{self}') first")
            if isinstance(dev, int) and dev != self.index:
                raise ValueError(f"{name} on {self}: an operand is on cuda:{dev}; devices cannot be "
                                 "mixed in one op")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        kernel = self._KERNELS.get(name)
        module = _cuda_module()
        fn = getattr(module, kernel, None) if kernel and module is not None else None
        if fn is None:
            raise NotImplementedError(
                f"op '{name}' is not implemented on device 'cuda' (no kernel dlkern._C_cuda.{name})")

        def op(*args, **kwargs):
            self._check_same_device(name, args)
            return fn(*args, **kwargs)

        op.__name__ = name
        setattr(self, name, op)
        return op

    def zeros(self, shape, dtype=np.float32):
        return _cuda_module().zeros(shape, dtype, device=self.index)

    def empty(self, shape, dtype=np.float32):
        return _cuda_module().empty(shape, dtype, device=self.index)

    def asarray(self, x):
        """A DeviceArray on this device from a DeviceArray (as is) or anything NumPy takes."""
        module = _cuda_module()
        if isinstance(x, module.DeviceArray):
            self._check_same_device("asarray", (x,))
            return x
        return module.from_numpy(np.asarray(x), device=self.index)

    def contiguous(self, x):
        self._check_same_device("contiguous", (x,))
        return x.contiguous()

    def __repr__(self):
        return f"device(type='cuda', index={self.index})"

    def __str__(self):
        return f"cuda:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            return other in (str(self), "cuda") if self.index == 0 else other == str(self)
        return isinstance(other, CUDADevice) and other.index == self.index

    def __hash__(self):
        return hash(("cuda", self.index))

    def __reduce__(self):
        return (device, (str(self),))


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
