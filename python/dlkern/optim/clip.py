"""Gradient clipping with torch.nn.utils semantics (re-exported by dlkern.nn.utils)."""

import numpy as np

from ..device import array_namespace
from ..tensor import Tensor
from .optimizer import grad_array, is_param_like


def _grads(parameters):
    if is_param_like(parameters):
        parameters = [parameters]
    return [g for g in (grad_array(p) for p in parameters) if g is not None]


def _vector_norm(x, norm_type):
    """The norm of order norm_type of x flattened (inf, -inf and 0 as torch.linalg.vector_norm)."""
    a = np.abs(x.astype(np.float64, copy=False)).ravel()
    if norm_type == float("inf"):
        return float(a.max()) if a.size else 0.0
    if norm_type == float("-inf"):
        return float(a.min()) if a.size else float("inf")
    if norm_type == 0:
        return float(np.count_nonzero(a))
    if norm_type == 2:
        return float(np.sqrt(np.dot(a, a)))
    if norm_type == 1:
        return float(a.sum())
    return float(np.sum(a ** norm_type) ** (1.0 / norm_type))


def _norms(grads, norm_type):
    """The norm of each gradient: reduced where it lives (in float64), then brought to the
    host in one copy (one synchronisation on a GPU)."""
    dev = array_namespace(grads[0])
    parts, empty = [], []
    for g in grads:
        if g.size == 0:
            empty.append(True)
            continue
        empty.append(False)
        a = abs(g.astype(np.float64))
        if norm_type == float("inf"):
            r = a.max()
        elif norm_type == float("-inf"):
            r = a.min()
        elif norm_type == 0:
            r = (a != 0).astype(np.float64).sum()
        elif norm_type == 1:
            r = a.sum()
        elif norm_type == 2:
            r = (a * a).sum()
        else:
            r = (a ** norm_type).sum()
        parts.append(r.reshape(1))
    host = iter(dev.to_host(dev.concatenate(parts)).tolist() if parts else [])
    norms = []
    for is_empty in empty:
        if is_empty:
            norms.append(_vector_norm(np.zeros(0), norm_type))
            continue
        r = next(host)
        if norm_type not in (float("inf"), float("-inf"), 0, 1):
            r = float(r ** (1.0 / norm_type))
        norms.append(r)
    return norms


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale every gradient in place by min(1, max_norm / (total_norm + 1e-6)), where
    total_norm is the norm of order norm_type of all gradients together (the norm of
    the per-parameter norms, as PyTorch). Returns total_norm as a 0-d dlkern Tensor.
    Parameters without a gradient are skipped."""
    grads = _grads(parameters)
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not grads:
        return Tensor(np.float32(0.0))
    dtype = np.result_type(*(g.dtype for g in grads))
    norms = _norms(grads, norm_type)
    total = _vector_norm(np.array(norms), norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot "
            f"be clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            f"`error_if_nonfinite=False`")
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = max_norm / (total + 1e-6)
    coef = min(coef, 1.0) if not np.isnan(coef) else coef
    with np.errstate(invalid="ignore"):  # inf * 0 -> nan, as PyTorch
        for g in grads:
            g *= float(coef)
    return Tensor(np.asarray(total, dtype=dtype), device=array_namespace(grads[0]))


def clip_grad_value_(parameters, clip_value):
    """Clamp every gradient in place to [-clip_value, clip_value]."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        array_namespace(g).clip(g, -clip_value, clip_value, out=g)
