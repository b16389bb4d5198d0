"""Activations whose NumPy form costs many memory passes: GELU with the tanh
approximation (GPT-2's), forward and backward, in one pass each.

Inputs that are not C-contiguous are copied once, explicitly, here.
"""

import numpy as np

from .. import _C

__all__ = ["gelu_tanh", "gelu_tanh_backward"]


def _contiguous(a):
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def gelu_tanh(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))."""
    return _C.gelu_tanh(_contiguous(x))


def gelu_tanh_backward(grad_out, x):
    """grad_out * d gelu_tanh(x) / dx, recomputed from x (the forward saves nothing)."""
    return _C.gelu_tanh_backward(_contiguous(grad_out), _contiguous(x))
