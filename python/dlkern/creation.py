"""Making tensors: from data, filled factories, *_like, and joining/splitting/selecting
(cat, stack, split, chunk, where). Random tensors are in dlkern.random."""

import numbers

import numpy as np

from . import functions as _F
from .autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from .dtypes import DEFAULT_FLOAT, as_dtype, float_or_default, int64
from .tensor import Tensor, from_numpy, tensor  # noqa: F401  (defined with the class; they make tensors too)
from .tensor_methods import shape_arg

_from_host = Tensor._from_host


def zeros(*size, dtype=None, device="cpu", requires_grad=False):
    return _from_host(np.zeros(shape_arg(size), float_or_default(dtype)), device, requires_grad)


def ones(*size, dtype=None, device="cpu", requires_grad=False):
    return _from_host(np.ones(shape_arg(size), float_or_default(dtype)), device, requires_grad)


def empty(*size, dtype=None, device="cpu", requires_grad=False):
    return _from_host(np.empty(shape_arg(size), float_or_default(dtype)), device, requires_grad)


def full(size, fill_value, dtype=None, device="cpu", requires_grad=False):
    return _from_host(np.full(shape_arg((size,)) if not isinstance(size, int) else (size,), fill_value,
                              float_or_default(dtype)), device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device="cpu", requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = int64 if is_int else DEFAULT_FLOAT
    return _from_host(np.arange(start, end, step, dtype=as_dtype(dtype)), device, requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _from_host(np.zeros(t.shape, as_dtype(dtype) or t.dtype), t.device, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _from_host(np.ones(t.shape, as_dtype(dtype) or t.dtype), t.device, requires_grad)


def empty_like(t, dtype=None, requires_grad=False):
    return _from_host(np.empty(t.shape, as_dtype(dtype) or t.dtype), t.device, requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    return _from_host(np.full(t.shape, fill_value, as_dtype(dtype) or t.dtype), t.device, requires_grad)


def _tensors(seq, op):
    seq = list(seq)
    if not seq:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    first = seq[0]
    for t in seq:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensors, got {type(t).__name__}")
        if t.dtype != first.dtype and not _autocast_mixed():
            raise TypeError(f"{op}: dtype mismatch: {first.dtype} and {t.dtype}")
    return seq


def _legacy_empty(t):
    return t.ndim == 1 and t.shape[0] == 0


def cat(tensors, dim=0):
    """Join tensors along an existing dim. As PyTorch, a 1-D tensor of size 0 may join
    tensors of any shape (it is skipped; its gradient is empty); the others must have the
    same number of dims and the same sizes except along dim."""
    tensors = _tensors(tensors, "cat")
    shaped = [t for t in tensors if not _legacy_empty(t)] or tensors[:1]
    first = shaped[0]
    nd = first.ndim
    if nd == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated")
    if not -nd <= dim < nd:
        raise IndexError(f"cat: dim {dim} is out of range for tensors with {nd} dims (expected [{-nd}, {nd - 1}])")
    dim %= nd
    for i, t in enumerate(tensors):
        if _legacy_empty(t) and t is not first:
            continue
        if t.ndim != nd or any(a != b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != dim):
            raise ValueError(f"cat: tensor {i} has shape {tuple(t.shape)} but tensors must match "
                             f"{tuple(first.shape)} except in dim {dim}")
    return _F.Cat.apply(dim, *tensors)


concatenate = cat


def stack(tensors, dim=0):
    tensors = _tensors(tensors, "stack")
    return _F.Stack.apply(dim % (tensors[0].ndim + 1), *tensors)


def split(t, split_size_or_sections, dim=0):
    return t.split(split_size_or_sections, dim)


def chunk(t, chunks, dim=0):
    return t.chunk(chunks, dim)


def where(condition, a, b):
    ref = a if isinstance(a, Tensor) else b
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype != b.dtype and not _autocast_mixed():
        raise TypeError(f"where: dtype mismatch: {a.dtype} and {b.dtype}")
    if isinstance(condition, Tensor):
        if isinstance(ref, Tensor) and condition.device != ref.device:
            raise RuntimeError(f"where: condition is on {condition.device} but the values are on {ref.device}")
        cond = condition.data
    else:
        cond = np.asarray(condition)
        if isinstance(ref, Tensor):
            cond = ref.device.from_host(cond)
    if isinstance(ref, Tensor):
        return _F.Where.apply(cond, a, b)
    if not isinstance(cond, np.ndarray):
        raise TypeError("where: with a device condition, a or b must be a Tensor")
    return tensor(np.where(cond, a, b))
