"""softmax and log_softmax over any axis, forward and backward.

Numerically stable (the maximum along ``dim`` is subtracted first). A slice along
``dim`` whose entries are all ``-inf`` gives 0 in ``softmax`` and ``-inf`` in
``log_softmax`` (PyTorch would give NaN); a slice holding a NaN gives NaN in every
entry, as in PyTorch and NumPy. Inputs that are not C-contiguous are
copied once, explicitly, here; the kernels then walk any axis in place. ``dim`` is
checked by the binding (an int or NumPy integer in [-ndim, ndim), not bool).
"""

import numpy as np

from .. import _C

__all__ = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward"]


def _contiguous(a):
    # Only real ndarrays are copied; anything else reaches the binding, which names it.
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def softmax(x, dim=-1, out=None):
    """exp(x - max) / sum(exp(x - max)) along ``dim`` (float32/float64 array).

    A slice whose entries are all -inf gives 0 (not NaN). ``out``, if given, must be a
    C-contiguous array of x's shape and dtype that shares no memory with x.
    """
    return _C.softmax(_contiguous(x), dim, out)


def log_softmax(x, dim=-1, out=None):
    """x - max - log(sum(exp(x - max))) along ``dim``; an all -inf slice gives -inf."""
    return _C.log_softmax(_contiguous(x), dim, out)


def softmax_backward(grad_out, y, dim=-1, out=None):
    """Gradient of softmax from its output y: dx = y * (grad_out - sum(grad_out * y, dim))."""
    return _C.softmax_backward(_contiguous(grad_out), _contiguous(y), dim, out)


def log_softmax_backward(grad_out, y, dim=-1, out=None):
    """Gradient of log_softmax from its output y: dx = grad_out - exp(y) * sum(grad_out, dim)."""
    return _C.log_softmax_backward(_contiguous(grad_out), _contiguous(y), dim, out)
