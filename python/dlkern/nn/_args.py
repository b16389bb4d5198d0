"""Argument checks shared by dlkern.nn.functional and the functional modules beside it
(functional_resample), so they import these instead of each other."""

import numbers

from ..autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from ..tensor import Tensor


def _same_dtype(op, *tensors):
    first = None  # one pass, no list: linear runs this on every projection of a decode step
    for t in tensors:
        if isinstance(t, Tensor):
            if first is None:
                first = t.data.dtype
            elif t.data.dtype != first and not _autocast_mixed():
                raise TypeError(f"{op}: dtype mismatch: {first} and {t.data.dtype}")


def _int_arg(value, op, name):
    """`value` as an int: ints and NumPy integers pass; bools and floats are a TypeError
    (as PyTorch), never silently truncated."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)
