"""bfloat16 and float16 for the kernels that compute in float32 only.

A kernel without a 16-bit path (softmax, the norms, cross-entropy, conv, attention, the
activations, ...) takes 16-bit arrays through `float32_inside`: the 16-bit operands are
widened to float32 (exact), the float32 kernel runs, and its floating outputs are
rounded back (round-to-nearest-even) to the operands' 16-bit dtype, which is PyTorch's
contract for these ops (bf16 in and out, float32 inside). The saved state a `*_forward`
returns beside its output (norm statistics, the attention log-sum-exp) stays float32, as
PyTorch keeps it, so the backward reads it unrounded.

The wrapper tries the kernel first: a float32/float64 call pays one Python frame and no
dtype inspection; only a call the binding refuses with TypeError is looked at again.
"""

import functools

import numpy as np

from .. import _C
from ..dtypes import float32, is_low_precision


def to_float32(a):
    """A bfloat16 or float16 array widened to float32 (exact)."""
    return _C.convert(a, float32)


def from_float32(a, dtype):
    """A float32 array rounded to `dtype` (bfloat16 or float16), round-to-nearest-even."""
    return _C.convert(a, dtype)


def _low_precision_of(values):
    # The 16-bit dtype among the array arguments (lists and tuples of arrays included, as
    # the recurrent kernels' weights), None when there is none.
    for v in values:
        if isinstance(v, np.ndarray) and is_low_precision(v.dtype):
            return v.dtype
        if isinstance(v, (list, tuple)):
            found = _low_precision_of(v)
            if found is not None:
                return found
    return None


def _widen(v, widened):
    # v with its 16-bit arrays widened; each (original, float32 copy) pair goes to `widened`.
    if isinstance(v, np.ndarray) and is_low_precision(v.dtype):
        wide = to_float32(v)
        widened.append((v, wide))
        return wide
    if isinstance(v, (list, tuple)):
        return type(v)(_widen(x, widened) for x in v)
    return v


def _narrow(v, dtype):
    if isinstance(v, np.ndarray) and v.dtype == float32:
        return from_float32(v, dtype)
    return v


def float32_inside(fn, name, writes_arguments=False, results=1):
    """`fn` that also takes bfloat16/float16 arrays, computing them in float32 (see the
    module docstring). An `out=` of a 16-bit dtype receives the rounded result. For a
    kernel that `writes_arguments` in place (running statistics, recurrent states), every
    writeable 16-bit argument gets its float32 copy's values back, rounded. A `*_forward`
    returns its `results` leading outputs in 16 bits and the saved state after them in
    float32."""
    saves_state = name.endswith("_forward")

    @functools.wraps(fn)
    def op(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TypeError:
            dtype = _low_precision_of((*args, *kwargs.values()))
            if dtype is None:
                raise
        out = kwargs.pop("out", None)
        if out is not None and not (isinstance(out, np.ndarray) and out.dtype == dtype):
            raise TypeError(f"{name}: out has dtype {getattr(out, 'dtype', type(out).__name__)} but the "
                            f"inputs have dtype {dtype}")
        widened = []
        result = fn(*[_widen(a, widened) for a in args], **{k: _widen(v, widened) for k, v in kwargs.items()})
        if writes_arguments:
            for original, wide in widened:
                if original.flags.writeable:
                    _C.convert(wide, original.dtype, out=original)
        if isinstance(result, tuple):
            kept = results if saves_state else len(result)
            result = tuple(_narrow(r, dtype) if i < kept else r for i, r in enumerate(result))
        else:
            result = _narrow(result, dtype)
        if out is not None:
            out[...] = result
            return out
        return result

    return op
