"""dlkern's dtypes: NumPy dtypes under PyTorch's names, and the dtype argument rules.

float32 is the default for Python floats (as PyTorch); a dtype may be given as a NumPy
dtype, a type or a name, PyTorch's short names included ("float", "double", "long", "int").
"""

import numpy as np

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
float16 = np.dtype(np.float16)
int32 = np.dtype(np.int32)
int64 = np.dtype(np.int64)
long = int64
bool_ = np.dtype(np.bool_)

FLOAT_KINDS = "f"        # dtype.kind of the dtypes that can require gradients
DEFAULT_FLOAT = float32

_ALIASES = {"float": "float32", "double": "float64", "long": "int64", "int": "int32"}


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
