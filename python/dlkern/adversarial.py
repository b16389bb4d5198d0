"""Adversarial examples: FGSM and PGD (L-inf and L2), for attacks and adversarial training.

Both attacks take the input gradient with ``dlkern.autograd.grad``, so the parameters'
``.grad`` are never touched, and they call the model in whatever train/eval mode it is
in (the caller chooses; Madry-style training attacks the model as it trains). The
result is a detached Tensor inside the eps ball around ``x`` and inside ``clamp``.

``clamp=(lo, hi)`` is the valid input range (default (0, 1), images scaled to [0, 1]);
``None`` leaves the range free. Data standardised as (x - mean) / std has the range
((0 - mean) / std, (1 - mean) / std) and an eps of e pixel-range units is e / std.
"""

from __future__ import annotations

import math
import numbers

from . import nn
from .autograd import functional as _autograd
from .autograd import no_grad
from .random import rand, randn

__all__ = ["fgsm", "pgd"]

NORMS = ("linf", "l2")


def _check_eps(op, eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{op}: eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _check_clamp(op, clamp):
    if clamp is None:
        return None
    try:
        lo, hi = clamp
    except (TypeError, ValueError):
        raise ValueError(f"{op}: clamp must be None or a pair (min, max), got {clamp!r}") from None
    lo, hi = float(lo), float(hi)
    if not lo <= hi:  # also catches NaN
        raise ValueError(f"{op}: clamp must have min <= max, got {clamp!r}")
    return lo, hi


def _input_grad(model, x, y, loss_fn):
    """d loss(model(x), y) / dx, with no parameter's .grad touched."""
    x = x.detach().requires_grad_(True)
    loss = loss_fn(model(x), y)
    return _autograd.grad(loss, [x])[0]


def _sign(g):
    # no Tensor.sign yet: (g > 0) - (g < 0) keeps 0 at 0 and runs on any device.
    return (g > 0).to(g.dtype) - (g < 0).to(g.dtype)


def _per_sample_l2(t):
    """The L2 norm of each sample (over every dim but the first), shaped to broadcast."""
    flat = t.reshape(t.shape[0], -1)
    return (flat * flat).sum(1).sqrt().reshape((t.shape[0],) + (1,) * (t.ndim - 1))


def _project(delta, eps, norm):
    """delta projected onto the norm ball of radius eps (per sample)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _per_sample_l2(delta)
    # eps / max(n, eps): 1 inside the ball, eps / n outside; no division by 0 at n = 0
    return delta * (eps / n.clamp(min=eps)) if eps > 0 else delta * 0


def _in_range(x, clamp):
    return x if clamp is None else x.clamp(clamp[0], clamp[1])


def fgsm(model, x, y, eps, loss_fn=None, clamp=(0.0, 1.0)):
    """Fast gradient sign method (Goodfellow et al. 2015): x + eps * sign(d loss / dx),
    clamped to `clamp`. `loss_fn(output, y)` defaults to cross_entropy."""
    eps = _check_eps("fgsm", eps)
    clamp = _check_clamp("fgsm", clamp)
    loss_fn = loss_fn or nn.functional.cross_entropy
    g = _input_grad(model, x, y, loss_fn)
    with no_grad():
        return _in_range(x.detach() + eps * _sign(g), clamp).detach()


def pgd(model, x, y, eps, alpha, steps, random_start=True, norm="linf", loss_fn=None, clamp=(0.0, 1.0),
        generator=None):
    """Projected gradient descent on the loss (Madry et al. 2018): `steps` ascent steps of
    size `alpha` (the gradient's sign for "linf", the per-sample unit gradient for "l2"),
    each followed by projection onto the eps ball around x and onto `clamp`.

    random_start: begin at a uniform point of the ball (linf: uniform in [-eps, eps] per
    element; l2: a uniform direction at radius eps * U^(1/d), uniform in the ball's
    volume), drawn from `generator` (a NumPy Generator) or dlkern's seeded generator.
    """
    eps = _check_eps("pgd", eps)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"pgd: alpha must be a finite number >= 0, got {alpha!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
        raise ValueError(f"pgd: steps must be an integer >= 0, got {steps!r}")
    if norm not in NORMS:
        raise ValueError(f"pgd: norm must be one of {NORMS}, got {norm!r}")
    clamp = _check_clamp("pgd", clamp)
    loss_fn = loss_fn or nn.functional.cross_entropy
    x0 = x.detach()
    with no_grad():
        if random_start and eps > 0 and x0.numel() > 0:
            delta = _random_start(x0, eps, norm, generator)
            adv = _in_range(x0 + delta, clamp)
        else:
            adv = x0.clone()
    for _ in range(int(steps)):
        g = _input_grad(model, adv, y, loss_fn)
        with no_grad():
            if norm == "linf":
                step = _sign(g)
            else:
                # 1e-12 only keeps a zero gradient from dividing by zero (it stays zero)
                step = g / (_per_sample_l2(g) + 1e-12)
            adv = _in_range(x0 + _project(adv + float(alpha) * step - x0, eps, norm), clamp)
    return adv.detach()


def _random_start(x0, eps, norm, generator):
    shape, dt, dev = tuple(x0.shape), x0.dtype, x0.device
    if norm == "linf":
        return (rand(*shape, dtype=dt, device=dev, generator=generator) * 2 - 1) * eps
    d = x0.numel() // shape[0]
    direction = randn(*shape, dtype=dt, device=dev, generator=generator)
    direction = direction / (_per_sample_l2(direction) + 1e-12)
    radius = rand(shape[0], dtype=dt, device=dev, generator=generator) ** (1.0 / d) * eps
    return direction * radius.reshape((shape[0],) + (1,) * (len(shape) - 1))
