"""dlkern's dtypes: NumPy dtypes under PyTorch's names, and the dtype argument rules.

float32 is the default for Python floats (as PyTorch); a dtype may be given as a NumPy
dtype, a type or a name, PyTorch's short names included ("float", "double", "long", "int",
"half"). bfloat16 is ml_dtypes' NumPy dtype: its arrays are plain ndarrays, but NumPy
files it under kind 'V', so "is this floating point?" is `is_floating`, never a kind test.
"""

import ml_dtypes
import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
float16 = np.dtype(np.float16)
half = float16
bfloat16 = np.dtype(ml_dtypes.bfloat16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
long = int64
bool_ = np.dtype(np.bool_)

DEFAULT_FLOAT = float32
# The 16-bit floats: stored in 16 bits, computed with float32 accumulation (their kernels
# convert, or autocast gives their ops float32 where PyTorch's policy does).
LOW_PRECISION = (bfloat16, float16)

_ALIASES = {"float": "float32", "double": "float64", "long": "int64", "int": "int32", "half": "float16",
            "bfloat16": bfloat16}


def is_floating(dtype):
    """Whether dtype is a floating-point dtype (one that can require gradients): NumPy's
    kind 'f', and bfloat16."""
    return dtype.kind == "f" or dtype == bfloat16


def is_low_precision(dtype):
    """Whether dtype is bfloat16 or float16."""
    return dtype == bfloat16 or dtype == float16


def as_dtype(dtype):
    """np.dtype(dtype), with PyTorch's short names; None stays None."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        dtype = _ALIASES.get(dtype, dtype)
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unsupported dtype {dtype!r}") from None


def float_or_default(dtype):
    """The dtype of a factory's result: `dtype`, or float32 when none is given."""
    return as_dtype(dtype) or DEFAULT_FLOAT


def summed(a, axis=None, keepdims=False, method="sum"):
    """a.sum (or a.mean with method="mean") over axis, accumulated as PyTorch does: a
    bfloat16/float16 array in float32, its result rounded once (NumPy would accumulate a
    bfloat16 sum in bfloat16, which stops growing at 256 for a sum of ones)."""
    if is_low_precision(a.dtype):
        return getattr(a, method)(axis=axis, keepdims=keepdims, dtype=float32).astype(a.dtype)
    return getattr(a, method)(axis=axis, keepdims=keepdims)

