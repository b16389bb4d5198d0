"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) as a batch transform with timm's
names and semantics (``timm.data.Mixup``, mode "batch"): one mixing weight per batch,
each sample mixed with its partner in the reversed batch (x.flip(0)), soft targets
lam * smooth(y) + (1 - lam) * smooth(y.flip(0)) for a soft-target cross-entropy.

Differences from timm: the batch may have an odd size (the middle sample is mixed with
itself), x is not modified in place (a new Tensor comes back), the draws come from a
NumPy Generator (`generator=`, default dlkern's seeded one) rather than NumPy's global
state, and only mode="batch" without cutmix_minmax is implemented.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .dataset import _generator_or_default

__all__ = ["Mixup", "one_hot_smoothed", "cutmix_box"]


def one_hot_smoothed(labels, num_classes, smoothing=0.0, dtype=np.float32):
    """(N, num_classes) targets: 1 - smoothing + smoothing / num_classes at the label,
    smoothing / num_classes elsewhere (timm's off/on values)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"Mixup: labels must have shape (N,), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Mixup: label {int(labels.min() if labels.min() < 0 else labels.max())} is out of "
                         f"range for num_classes={num_classes}")
    off = smoothing / num_classes
    out = np.full((labels.shape[0], num_classes), off, dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1.0 - smoothing + off
    return out


def cutmix_box(height, width, lam, rng):
    """The CutMix box (y0, y1, x0, x1) for mixing weight `lam` and the area-corrected
    lambda 1 - box area / (height * width): sides int(side * sqrt(1 - lam)) around a
    uniformly drawn centre (cy, then cx, drawn with rng.integers), clipped to the image."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(rng.integers(0, height))
    cx = int(rng.integers(0, width))
    y0, y1 = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
    x0, x1 = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
    corrected = 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
    return (y0, y1, x0, x1), corrected


def _check_alpha(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Mixup: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_prob(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"Mixup: {name} must be in [0, 1], got {value!r}")
    return float(value)


class Mixup:
    """Callable on a batch (x, y) of inputs and integer labels; returns (mixed x, soft
    targets of shape (N, num_classes) in x's dtype).

    Per call, with probability `prob` (else lam = 1, only label smoothing): CutMix with
    probability `switch_prob` when both alphas are > 0 (else whichever is > 0);
    lam ~ Beta(alpha, alpha). Mixup: lam * x + (1 - lam) * x.flip(0), any x shape.
    CutMix: x (N, C, H, W) with a box of x.flip(0) pasted in; lam becomes the uncovered
    area fraction when `correct_lam` (timm always corrects in this mode).
    Draw order from the generator: random() for prob, random() for the switch (both
    alphas only), beta(alpha, alpha), then for CutMix integers(0, H), integers(0, W).
    """

    def __init__(self, mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5,
                 mode="batch", correct_lam=True, label_smoothing=0.1, num_classes=1000, generator=None):
        self.mixup_alpha = _check_alpha("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = _check_alpha("cutmix_alpha", cutmix_alpha)
        if cutmix_minmax is not None:
            raise NotImplementedError("Mixup: cutmix_minmax is not supported (the box comes from cutmix_alpha)")
        if mode != "batch":
            raise NotImplementedError(f"Mixup: only mode='batch' is supported, got {mode!r}")
        self.mix_prob = _check_prob("prob", prob)
        self.switch_prob = _check_prob("switch_prob", switch_prob)
        self.label_smoothing = _check_prob("label_smoothing", label_smoothing)
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
            raise ValueError(f"Mixup: num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.mixup_enabled = True
        self.generator = generator

    def _rng(self):
        return _generator_or_default(self.generator)

    def _params(self, rng):
        """(lam, use_cutmix) for one batch."""
        if not (self.mixup_enabled and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)):
            return 1.0, False
        if rng.random() >= self.mix_prob:
            return 1.0, False
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < self.switch_prob)
        else:
            use_cutmix = self.cutmix_alpha > 0
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(rng.beta(alpha, alpha)), use_cutmix

    def __call__(self, x, target):
        from ..creation import where
        from ..tensor import Tensor, tensor

        if not isinstance(x, Tensor):
            raise TypeError(f"Mixup: x must be a Tensor, got {type(x).__name__}")
        labels = target.detach().cpu().numpy() if isinstance(target, Tensor) else np.asarray(target)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"Mixup: target must hold integer class labels, got dtype {labels.dtype}")
        if x.ndim < 1 or labels.shape != (x.shape[0],):
            raise ValueError(f"Mixup: x has shape {tuple(x.shape)} but target has shape {labels.shape} "
                             f"(expected ({x.shape[0] if x.ndim else '?'},))")
        rng = self._rng()
        lam, use_cutmix = self._params(rng)
        if use_cutmix and x.ndim != 4:
            raise ValueError(f"Mixup: CutMix needs x of shape (N, C, H, W), got {tuple(x.shape)}")
        if lam < 1.0 and x.shape[0] > 0:
            partner = x.flip(0)
            if use_cutmix:
                h, w = x.shape[-2], x.shape[-1]
                (y0, y1, x0, x1), corrected = cutmix_box(h, w, lam, rng)
                if self.correct_lam:
                    lam = corrected
                box = np.zeros((1, 1, h, w), dtype=bool)
                box[..., y0:y1, x0:x1] = True
                x = where(tensor(box, device=x.device), partner, x)
            else:
                x = x * lam + partner * (1.0 - lam)
        y1 = one_hot_smoothed(labels, self.num_classes, self.label_smoothing, np.float64)
        soft = y1 * lam + y1[::-1] * (1.0 - lam)
        return x, tensor(soft, dtype=x.dtype, device=x.device)
