"""Ops on NumPy arrays, no autograd: each is one call into the compiled kernels.

Arrays cross into C++ without copies; float32 is the fast path and float64 works
everywhere. Bad arguments raise TypeError/ValueError naming the op and argument.
One module per op family; each lists its public names in ``__all__``, which are
re-exported here (``dlkern.ops.matmul``, ``dlkern.ops.softmax``, ...).
"""

import importlib as _importlib

_FAMILIES = ("matmul", "conv", "pool", "softmax", "norm", "loss", "attention", "activation")

__all__ = []
for _family in _FAMILIES:
    _module = _importlib.import_module(f"{__name__}.{_family}")
    for _name in _module.__all__:
        globals()[_name] = getattr(_module, _name)
    __all__ += list(_module.__all__)
del _family, _module, _name
