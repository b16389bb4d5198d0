"""The CPU device namespace: arrays are numpy.ndarray; elementwise math and array
primitives are NumPy's, kernels are dlkern.ops' (see dlkern.devices)."""

import numpy as np

from .. import ops
from ..dtypes import bfloat16, float16, is_floating, is_low_precision
from ..generator import RNG


def _contiguous(x):
    # x itself when C-contiguous, else a C-contiguous copy; unlike np.ascontiguousarray,
    # a 0-d array stays 0-d.
    return np.asarray(x, order="C")


def _sigmoid(x):
    # From e = exp(-|x|), which never overflows: 1 / (1 + e) for x >= 0, e / (1 + e) below,
    # so a large negative x keeps its small (down to subnormal) value, as PyTorch; the
    # shorter 0.5 * tanh(x / 2) + 0.5 rounds everything under float32's 2^-25 to 0.
    e = np.exp(-np.abs(x))
    return np.asarray(np.where(x < 0, e, 1) / (1 + e))


# The bits of the smallest positive NaN of each 16-bit float: above it (sign bit clear) is
# NaN, as int16 (sign bit set) every negative value and -0.
_NAN_BITS = {bfloat16: 0x7F80, float16: 0x7C00}


def _relu(x):
    """max(x, 0), NaN kept. A 16-bit array is done on its bits (ml_dtypes' ufunc loops
    convert every element to float32 and back, ~10x slower): a value whose int16 is > 0 is
    positive, and a NaN of either sign is kept."""
    if not is_low_precision(x.dtype):
        return np.maximum(x, 0)
    bits = x.view(np.int16)
    keep = (bits > 0) | ((bits & 0x7FFF) > _NAN_BITS[x.dtype])
    return (bits * keep).view(x.dtype)  # (int16 times bool: ~30x faster than np.where here)


def _relu_backward(g, y):
    """g where relu's output y > 0, else 0 (as g * (y > 0); a NaN y passes no gradient).
    On 16-bit arrays through the bits, as _relu."""
    if not is_low_precision(y.dtype):
        return g * (y > 0)
    bits = y.view(np.int16)
    passes = (bits > 0) & (bits <= _NAN_BITS[y.dtype])
    return (g.view(np.int16) * passes).view(g.dtype)


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
    relu = staticmethod(_relu)
    relu_backward = staticmethod(_relu_backward)
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
    contiguous = staticmethod(_contiguous)
    arange = staticmethod(np.arange)
    # --- math breadth (issue 13): scans, products and einsum (no CUDA primitive has them)
    cumsum = staticmethod(np.cumsum)
    cumprod = staticmethod(np.cumprod)
    prod = staticmethod(np.prod)
    einsum = staticmethod(np.einsum)
    # --- end math breadth
    # ---- issue 13: gathers along one axis (interpolation, index_select: as the CUDA module's
    # take) and argsort (no CUDA primitive, so sort/argsort/topk stay CPU-only)
    take = staticmethod(np.take)
    argsort = staticmethod(np.argsort)

    @staticmethod
    def cast(x, dtype):
        """x converted to dtype (x itself when it has it already). Casts to and from the
        16-bit floats go through dlkern.ops.convert: ml_dtypes' own bfloat16 astype is a
        scalar loop, ~10x slower; the results are the same bits."""
        if x.dtype == dtype:
            return x
        if (is_low_precision(dtype) or is_low_precision(x.dtype)) and is_floating(dtype) and is_floating(x.dtype):
            return ops.convert(x, dtype)
        return x.astype(dtype)

    # --- fused optimizer steps (issue 16) ---------------------------------------
    def fused(self, name):
        """The fused optimizer kernel `name` (dlkern.ops.adam_step, sgd_step): one pass over
        a parameter and its state instead of the NumPy composition's dozen; None for
        another name."""
        return getattr(ops, name, None) if name in ("adam_step", "sgd_step") else None
    # --- end fused optimizer steps ---------------------------------------------

    def uniform(self, shape):
        """Uniform [0, 1) samples (float64) from dlkern's generator (dlkern.manual_seed)."""
        return RNG.generator.random(shape)

    def from_host(self, array):
        """The host array itself (no copy): the CPU's arrays already live on the host."""
        return np.asarray(array)

    # Operands nn/models/train make on the host and read back on the host.
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

    def __getattr__(self, name):
        # Any other name is a kernel: dlkern.ops.<name>, looked up on first use, so kernels
        # added to dlkern.ops need no line here. It is kept in the instance's namespace: a
        # lookup that reaches __getattr__ costs ~1.5 us (a failed lookup), once per op call.
        if name.startswith("__"):
            raise AttributeError(name)
        fn = getattr(ops, name, None)
        if fn is None:
            raise NotImplementedError(
                f"op '{name}' is not implemented on device 'cpu' (no kernel dlkern.ops.{name})")
        self.__dict__[name] = fn
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
