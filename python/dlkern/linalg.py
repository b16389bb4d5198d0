"""dlkern.linalg: torch.linalg's vector norm (Tensor.norm and dlkern.norm reach it too)."""

import math
import numbers

from . import functions as _F
from .autograd import TensorBase
from .dtypes import as_dtype
from .functions.reduce import _axes

__all__ = ["vector_norm"]


def _norm_axes(dim, ndim):
    """The dims reduced: every dim for None or (), else dim checked as reductions check it."""
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(ndim))
    axes = _axes(dim, ndim)
    for a in axes:
        if axes.count(a) > 1:
            raise RuntimeError(f"linalg.vector_norm: dim {a} appears multiple times in the list of dims")
    return axes if ndim else ()


def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """(sum |x|^ord)^(1/ord) over `dim` (None or (): all elements); ord may be any
    number: 0 counts nonzeros, inf / -inf take the max / min of |x|. `dtype` casts x
    first. x must be floating point. As torch.linalg.vector_norm."""
    if not isinstance(x, TensorBase):
        raise TypeError(f"linalg.vector_norm: x must be a Tensor, got {type(x).__name__}")
    if isinstance(ord, bool) or not isinstance(ord, numbers.Real):
        raise TypeError(f"linalg.vector_norm: ord must be a number, got {type(ord).__name__}")
    if dtype is not None:
        dtype = as_dtype(dtype)
        if dtype.kind != "f":
            raise RuntimeError(f"linalg.vector_norm: dtype must be floating point, got {dtype}")
        x = x.to(dtype)
    if x.dtype.kind != "f":
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point tensor as input. Got {x.dtype}")
    axes = _norm_axes(dim, x.ndim)
    ord = float(ord)
    if ord < 0 or math.isinf(ord):  # max/min and negative powers have no value over nothing
        for a in axes:
            if x.shape[a] == 0:
                where = f"the dimension {a}" if dim is not None else "an empty tensor"
                raise RuntimeError(f"linalg.vector_norm cannot compute the {ord:g} norm on {where} because it is "
                                   "empty and the operation does not have an identity")
    return _F.VectorNorm.apply(x, ord, axes, bool(keepdim))
