"""Fused losses: cross-entropy (log-softmax + NLL), forward and backward.

PyTorch's semantics (``torch.nn.functional.cross_entropy`` with class-index targets):
``input`` (N, C) or (N, C, d1, ...) or unbatched (C,); ``target`` integer class
indices of shape (N,) / (N, d1, ...) / (); samples whose target equals
``ignore_index`` contribute nothing. With ``label_smoothing`` eps the target
distribution is (1 - eps) * one_hot + eps / C, class weights applying to both parts.
``reduction="mean"`` divides by the sum of ``weight[target]`` over the non-ignored
samples (their count without weights); NaN when there are none, as PyTorch.

The forward saves the per-sample log-sum-exp (``lse``); the backward needs only the
logits, the targets and ``lse`` and never builds a one-hot or a softmax array.
Targets of another integer dtype are converted to int64 explicitly (a copy);
non-contiguous arrays are copied once, explicitly, here.
"""

import numpy as np

from .. import _C

__all__ = ["cross_entropy", "cross_entropy_forward", "cross_entropy_backward"]



def _contiguous(a):
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def _target(op, target):
    if isinstance(target, np.ndarray) and target.dtype.kind in "iu" and target.dtype != np.int64:
        if target.dtype.kind == "u" and target.size and target.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{op}: target value {target.max()} does not fit in int64")
        target = target.astype(np.int64)
    return _contiguous(target)


def _unbatched(input, target):
    """(C,) input with a 0-d target is one sample: PyTorch's unbatched form."""
    return isinstance(input, np.ndarray) and input.ndim == 1 and isinstance(target, np.ndarray) and target.ndim == 0


def cross_entropy_forward(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Returns (loss, lse): loss as in ``cross_entropy``; lse the per-sample log-sum-exp
    over the classes, shape (N,) / (N, d1, ...) (() for an unbatched input)."""
    target = _target("cross_entropy", target)
    unbatched = _unbatched(input, target)
    if unbatched:
        input, target = input.reshape(1, -1), target.reshape(1)
    loss, lse = _C.cross_entropy_forward(_contiguous(input), target, _contiguous(weight), ignore_index, reduction,
                                         label_smoothing)
    if unbatched:
        loss, lse = loss.reshape(()), lse.reshape(())
    return loss, lse


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits ``input`` and class indices ``target``: a 0-d array
    for reduction "mean"/"sum", per-sample losses for "none"."""
    return cross_entropy_forward(input, target, weight, ignore_index, reduction, label_smoothing)[0]


def cross_entropy_backward(grad_loss, input, target, lse, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, out=None):
    """Gradient of ``cross_entropy`` with respect to ``input``, from the logits, the
    targets and the forward's ``lse``. ``grad_loss`` is the loss's cotangent (one value
    for "mean"/"sum", per-sample for "none"). ``out`` (input's shape and dtype,
    C-contiguous) receives the result if given."""
    op = "cross_entropy_backward"
    target = _target(op, target)
    if isinstance(grad_loss, (int, float)) and not isinstance(grad_loss, bool) and isinstance(input, np.ndarray):
        grad_loss = np.asarray(grad_loss, dtype=input.dtype)  # a Python number takes input's dtype
    elif isinstance(grad_loss, np.generic):
        grad_loss = np.asarray(grad_loss)  # a NumPy scalar keeps its own dtype
    unbatched = _unbatched(input, target)
    shape = None
    if unbatched:
        shape = input.shape
        input, target = input.reshape(1, -1), target.reshape(1)
        if isinstance(lse, np.ndarray) and lse.ndim == 0:
            lse = lse.reshape(1)
        if isinstance(grad_loss, np.ndarray) and grad_loss.ndim == 0:
            grad_loss = grad_loss.reshape(1)
        if isinstance(out, np.ndarray):
            if out.shape != shape:
                raise ValueError(f"{op}: out must have the input's shape {shape}, got {out.shape}")
            out = out.reshape(1, -1)
    dx = _C.cross_entropy_backward(_contiguous(grad_loss), _contiguous(input), target, _contiguous(lse),
                                   _contiguous(weight), ignore_index, reduction, label_smoothing, out)
    return dx.reshape(shape) if unbatched else dx
