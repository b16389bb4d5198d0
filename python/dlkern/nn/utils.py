"""Helpers: gradient clipping and parameter vectors."""

import numpy as np


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale all gradients so their joint norm is at most max_norm; return the norm."""
    params = [p for p in (parameters if not hasattr(parameters, "grad") else [parameters]) if p.grad is not None]
    if not params:
        return 0.0
    if norm_type == float("inf"):
        total = max(float(np.abs(p.grad.data).max()) for p in params)
    else:
        total = float(sum(float(np.sum(np.abs(p.grad.data) ** norm_type)) for p in params) ** (1.0 / norm_type))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in params:
            p.grad.data *= coef
    return total


def parameters_to_vector(parameters):
    return np.concatenate([p.data.reshape(-1) for p in parameters])
