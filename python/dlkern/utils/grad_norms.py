"""Gradient health (section 3.3 of the notes): the norm of each parameter's gradient,
to watch gradients vanish or explode while a model (an RNN above all) trains.

``grad_norms(model)`` gives one entry per parameter that has a gradient;
``total_grad_norm`` combines them (or a model's gradients) into the one number
``clip_grad_norm_`` compares with max_norm. The total is a separate function rather
than an extra dict entry, so no key of the dict can collide with a parameter name.
"""

from __future__ import annotations

import numpy as np

from ..optim.clip import _norms, _vector_norm
from ..optim.optimizer import grad_array

__all__ = ["grad_norms", "total_grad_norm", "largest_grad_norm", "format_grad_norms"]


def grad_norms(model, norm_type=2.0) -> dict:
    """{parameter name: norm of order norm_type of its .grad} as Python floats, in
    named_parameters order; parameters whose .grad is None are left out (shared
    parameters appear once, under their first name). Norms are reduced in float64 where
    the gradients live (one copy to the host for all of them); inf/-inf/0 norms as
    torch.linalg.vector_norm. A NaN or Inf gradient gives a NaN or Inf norm."""
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"grad_norms: model must be an nn.Module, got {type(model).__name__}")
    norm_type = float(norm_type)
    named = [(name, grad_array(p)) for name, p in model.named_parameters()]
    named = [(name, g) for name, g in named if g is not None]
    if not named:
        return {}
    return dict(zip((name for name, _ in named), _norms([g for _, g in named], norm_type)))


def total_grad_norm(model_or_norms, norm_type=2.0) -> float:
    """The norm of order norm_type of all gradients together, i.e. of the per-parameter
    norms (the value clip_grad_norm_ returns before it scales). Takes a model or the dict
    grad_norms returned (with the same norm_type); 0.0 when no parameter has a gradient."""
    norm_type = float(norm_type)
    norms = model_or_norms if isinstance(model_or_norms, dict) else grad_norms(model_or_norms, norm_type)
    return _vector_norm(np.array(list(norms.values()), dtype=np.float64), norm_type)


def largest_grad_norm(norms: dict):
    """(name, norm) of the largest entry of a grad_norms dict (a NaN counts as largest,
    so a broken gradient is the one reported); (None, 0.0) when it is empty."""
    if not norms:
        return None, 0.0
    name = max(norms, key=lambda k: float("inf") if np.isnan(norms[k]) else norms[k])
    return name, norms[name]


def format_grad_norms(norms: dict, norm_type=2.0) -> str:
    """One log fragment for a grad_norms dict: 'grad norm TOTAL (max NAME VALUE)'."""
    name, value = largest_grad_norm(norms)
    return f"grad norm {total_grad_norm(norms, norm_type):.3e} (max {name} {value:.3e})"
