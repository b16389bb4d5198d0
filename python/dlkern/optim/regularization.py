"""L1 and L2 penalties on parameters as differentiable Tensors (add them to a loss).

l2_penalty is the plain sum of squares, so ``loss + 0.5 * wd * l2_penalty(params)``
has the same gradient as SGD/Adam's ``weight_decay=wd``.
"""

from ..tensor import Tensor, tensor


def _params(parameters):
    if isinstance(parameters, Tensor):
        return [parameters]
    params = list(parameters)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"penalties need dlkern Tensors (to differentiate), got {type(p).__name__}")
    return params


def l1_penalty(parameters):
    """sum over parameters of sum(|p|)."""
    total = None
    for p in _params(parameters):
        term = p.abs().sum()
        total = term if total is None else total + term
    return tensor(0.0) if total is None else total


def l2_penalty(parameters):
    """sum over parameters of sum(p ** 2)."""
    total = None
    for p in _params(parameters):
        term = (p * p).sum()
        total = term if total is None else total + term
    return tensor(0.0) if total is None else total
