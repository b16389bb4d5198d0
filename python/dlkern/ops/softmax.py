"""softmax and log_softmax over any axis, forward and backward.

Numerically stable (the maximum along ``dim`` is subtracted first). A slice along
``dim`` whose entries are all ``-inf`` gives 0 in ``softmax`` and ``-inf`` in
``log_softmax`` (PyTorch would give NaN); a slice holding a NaN gives NaN in every
entry, as in PyTorch and NumPy. Inputs that are not C-contiguous are
copied once, explicitly, here; the kernels then walk any axis in place. ``dim`` is
checked by the binding (an int or NumPy integer in [-ndim, ndim), not bool).
``axis=`` is accepted as a keyword alias of ``dim`` (NumPy's spelling, as torch.softmax).
"""

import numpy as np

from .. import _C

__all__ = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward"]


def _contiguous(a):
    # Only real ndarrays are copied; anything else reaches the binding, which names it.
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def resolve_dim(dim, axis, op, default=-1):
    """``dim``, or ``axis`` given as its keyword alias; naming two different dims is a
    TypeError. (Shared with the Tensor methods, so the rule is written once.)"""
    if axis is None:
        return dim
    if dim is not None and dim != default and dim != axis:
        raise TypeError(f"{op}: got both dim={dim!r} and axis={axis!r}; axis is an alias of dim, give one")
    return axis


def softmax(x, dim=-1, out=None, *, axis=None):
    """exp(x - max) / sum(exp(x - max)) along ``dim`` (float32/float64 array).

    A slice whose entries are all -inf gives 0 (not NaN). ``out``, if given, must be a
    C-contiguous array of x's shape and dtype that shares no memory with x.
    """
    return _C.softmax(_contiguous(x), resolve_dim(dim, axis, "softmax"), out)


def log_softmax(x, dim=-1, out=None, *, axis=None):
    """x - max - log(sum(exp(x - max))) along ``dim``; an all -inf slice gives -inf."""
    return _C.log_softmax(_contiguous(x), resolve_dim(dim, axis, "log_softmax"), out)


def softmax_backward(grad_out, y, dim=-1, out=None, *, axis=None):
    """Gradient of softmax from its output y: dx = y * (grad_out - sum(grad_out * y, dim))."""
    return _C.softmax_backward(_contiguous(grad_out), _contiguous(y), resolve_dim(dim, axis, "softmax_backward"),
                               out)


def log_softmax_backward(grad_out, y, dim=-1, out=None, *, axis=None):
    """Gradient of log_softmax from its output y: dx = grad_out - exp(y) * sum(grad_out, dim)."""
    return _C.log_softmax_backward(_contiguous(grad_out), _contiguous(y),
                                   resolve_dim(dim, axis, "log_softmax_backward"), out)
