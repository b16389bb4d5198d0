"""Activations whose NumPy form costs many memory passes, one fused pass each way.

For every row of the list in csrc/cpu/activation.h (exported as ``_C.ACTIVATIONS``) there
are ``<name>(x)`` and ``<name>_backward(grad_out, x)`` (the backward recomputes from x; the
forward saves nothing). Today: ``gelu_tanh`` (GPT-2's tanh approximation) and ``gelu_erf``
(the exact GELU, 0.5 x (1 + erf(x / sqrt 2))).

Inputs that are not C-contiguous are copied once, explicitly, here.

The forward-only elementwise kernels (``_C.UNARY_KERNELS``; today ``erf``) are the compiled
functions themselves: ``erf(x, out=None)``, the signature of the CUDA module's primitive.
"""

import numpy as np

from .. import _C

__all__ = [*(n for name in _C.ACTIVATIONS for n in (name, f"{name}_backward")), *_C.UNARY_KERNELS]


def _contiguous(a):
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def _forward(kernel):
    def forward(x):
        return kernel(_contiguous(x))
    forward.__name__ = forward.__qualname__ = kernel.__name__
    forward.__doc__ = kernel.__doc__
    return forward


def _backward(kernel):
    def backward(grad_out, x):
        return kernel(_contiguous(grad_out), _contiguous(x))
    backward.__name__ = backward.__qualname__ = kernel.__name__
    backward.__doc__ = kernel.__doc__
    return backward


# name -> the wrapper, made once; module attributes through __getattr__ (PEP 562), so the
# list in C++ is the only place an activation is named.
_WRAPPERS = {}
for _name in _C.ACTIVATIONS:
    _WRAPPERS[_name] = _forward(getattr(_C, _name))
    _WRAPPERS[f"{_name}_backward"] = _backward(getattr(_C, f"{_name}_backward"))
for _name in _C.UNARY_KERNELS:  # strided x and out are handled in C++
    _WRAPPERS[_name] = getattr(_C, _name)
del _name


def __getattr__(name):
    try:
        return _WRAPPERS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted([*globals(), *_WRAPPERS])
