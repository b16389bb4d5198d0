"""Parameter: a Tensor that a Module registers as learnable."""

import numpy as np

from ..device import cpu
from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor registered by Module.__setattr__; requires grad by default.
    Shares memory with `data` (an array or Tensor)."""

    __slots__ = ()

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty(0, np.float32)
        array = data.data if isinstance(data, Tensor) else np.asarray(data)
        if array.dtype.kind != "f" and requires_grad:
            raise TypeError(f"Parameter: only floating-point data can require grad, got {array.dtype}")
        self.data = array
        self.grad = None
        self.grad_fn = None
        self.device = data.device if isinstance(data, Tensor) else cpu
        self.requires_grad = bool(requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + Tensor.__repr__(self)
