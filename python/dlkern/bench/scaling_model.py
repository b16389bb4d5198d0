"""The alpha-beta cost model behind ``python -m dlkern bench ddp``: fit measured
all-reduce times, then predict a ring all-reduce and data-parallel efficiency at scale.

Pure functions on numbers (no MPI, no timing), so the model can be tested on synthetic
data and reused by a reader with their own measurements.

The model (Hockney's): moving ``n`` bytes costs ``alpha + beta * n`` -- a fixed start-up
(latency, software overhead) plus a per-byte cost (1 / bandwidth). A ring all-reduce over
``p`` ranks is a reduce-scatter then an all-gather, each ``p - 1`` steps moving ``n / p``
bytes per rank, so ``t_ring(p, n) = 2 (p - 1) alpha + 2 (p - 1) / p * n * beta``.

DDP's all-reduce runs in buckets (``bucket_cap_mb``, launched as each fills during the
backward). Every bucket pays its own start-up; with overlap, communication hides behind
the rest of the backward, except the last bucket's, which can only start once the
backward has finished.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

GBIT = 1e9 / 8  # bytes per second in one Gb/s
BUCKET_BYTES = 25 * 2**20       # DDP's bucket_cap_mb=25
FIRST_BUCKET_BYTES = 2**20      # DDP's (and PyTorch's) smaller first bucket


@dataclasses.dataclass
class AlphaBetaFit:
    """``t = alpha + beta * bytes`` fitted to measurements, with the fit's relative residuals."""

    alpha_s: float          # seconds per message (start-up)
    beta_s_per_byte: float  # seconds per byte
    bytes: List[float]
    seconds: List[float]
    residuals: List[float]  # (measured - fitted) / measured, one per point

    @property
    def bandwidth_gbs(self) -> float:
        """1 / beta in GB/s (1e9 bytes per second)."""
        return 1.0 / self.beta_s_per_byte / 1e9 if self.beta_s_per_byte > 0 else math.inf

    @property
    def max_abs_residual(self) -> float:
        return max((abs(r) for r in self.residuals), default=0.0)

    @property
    def rms_residual(self) -> float:
        return math.sqrt(sum(r * r for r in self.residuals) / len(self.residuals)) if self.residuals else 0.0

    def predict(self, n_bytes: float) -> float:
        return self.alpha_s + self.beta_s_per_byte * n_bytes


def fit_alpha_beta(n_bytes: Sequence[float], seconds: Sequence[float]) -> AlphaBetaFit:
    """Least-squares fit of ``t = alpha + beta * bytes`` in relative error.

    Sizes span eight decades: an ordinary least-squares fit would be decided by the
    largest messages alone (their times are 10^5 times larger) and leave alpha, set by
    the small ones, at noise. Weighting each point by 1 / t minimises the relative
    residuals, so every size counts alike."""
    x = np.asarray(n_bytes, np.float64)
    t = np.asarray(seconds, np.float64)
    if x.ndim != 1 or x.shape != t.shape or x.size < 2:
        raise ValueError(f"fit_alpha_beta: needs two equally long 1-d sequences of >= 2 points, got "
                         f"{x.shape} and {t.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t)) and np.all(t > 0)):
        raise ValueError("fit_alpha_beta: sizes and times must be finite and the times positive")
    if np.unique(x).size < 2:
        raise ValueError("fit_alpha_beta: needs at least two distinct message sizes")
    design = np.stack([np.ones_like(x), x], axis=1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    residuals = (t - (alpha + beta * x)) / t
    return AlphaBetaFit(float(alpha), float(beta), x.tolist(), t.tolist(), residuals.tolist())


def ring_allreduce_seconds(p: int, n_bytes: float, alpha_s: float, beta_s_per_byte: float) -> float:
    """Ring all-reduce of ``n_bytes`` over ``p`` ranks: 2(p-1) alpha + 2(p-1)/p n beta."""
    if p < 1:
        raise ValueError(f"ring_allreduce_seconds: p must be >= 1, got {p}")
    if p == 1:
        return 0.0
    return 2 * (p - 1) * alpha_s + 2 * (p - 1) / p * n_bytes * beta_s_per_byte


def bucket_sizes(n_bytes: float, bucket_bytes: float, first_bytes: Optional[float] = None) -> List[float]:
    """The gradient split into DDP buckets: the first of ``first_bytes`` (DDP makes it
    small, 1 MiB, so communication starts early; None: like the others), then
    ``bucket_bytes`` each, the last one what remains. Real buckets end at parameter
    boundaries; this is the byte-exact idealisation."""
    if n_bytes <= 0:
        return []
    first = min(float(first_bytes if first_bytes is not None else bucket_bytes), float(n_bytes))
    rest = n_bytes - first
    full = int(rest // bucket_bytes)
    tail = rest - full * bucket_bytes
    return [first] + [float(bucket_bytes)] * full + ([float(tail)] if tail > 0 else [])


@dataclasses.dataclass
class DDPPrediction:
    comm_s: float       # all buckets' ring all-reduces, back to back
    last_bucket_s: float
    compute_s: float
    backward_s: float

    @property
    def exposed_no_overlap_s(self) -> float:
        return self.comm_s

    @property
    def exposed_overlap_s(self) -> float:
        """What the backward cannot hide: the excess over it, and at least the last bucket."""
        return max(self.comm_s - self.backward_s, self.last_bucket_s, 0.0)

    @property
    def efficiency_no_overlap(self) -> float:
        return self.compute_s / (self.compute_s + self.exposed_no_overlap_s)

    @property
    def efficiency_overlap(self) -> float:
        return self.compute_s / (self.compute_s + self.exposed_overlap_s)


def predict_ddp(p: int, grad_bytes: float, compute_s: float, alpha_s: float, beta_s_per_byte: float,
                bucket_bytes: float = BUCKET_BYTES, backward_fraction: float = 2 / 3,
                first_bucket_bytes: Optional[float] = FIRST_BUCKET_BYTES) -> DDPPrediction:
    """One data-parallel step on ``p`` ranks: ``compute_s`` of forward+backward+update per
    rank, then the gradient's ring all-reduce in buckets. DDP efficiency is
    ``compute / (compute + exposed communication)``; with overlap the buckets run during
    the backward (``backward_fraction`` of the step), without it after."""
    buckets = bucket_sizes(grad_bytes, bucket_bytes, first_bucket_bytes)
    times = [ring_allreduce_seconds(p, b, alpha_s, beta_s_per_byte) for b in buckets]
    return DDPPrediction(sum(times), times[-1] if times else 0.0, compute_s, backward_fraction * compute_s)


def network_beta(gbit_per_s: float) -> float:
    """Seconds per byte of a link of ``gbit_per_s`` Gb/s."""
    return 1.0 / (gbit_per_s * GBIT)


def efficiency_table(models: Dict[str, Dict[str, float]], networks_gbit: Sequence[float], ranks: Sequence[int],
                     alpha_s: float, bucket_bytes: float = BUCKET_BYTES) -> List[Dict[str, object]]:
    """Rows (model, network) with, per rank count, (efficiency without, with overlap).

    ``models[name]`` has ``grad_bytes`` and ``compute_s`` (one step's compute per rank)."""
    rows = []
    for name, model in models.items():
        for gbit in networks_gbit:
            cells = {}
            for p in ranks:
                pred = predict_ddp(p, model["grad_bytes"], model["compute_s"], alpha_s, network_beta(gbit),
                                   bucket_bytes)
                cells[p] = (pred.efficiency_no_overlap, pred.efficiency_overlap, pred.comm_s)
            rows.append({"model": name, "gbit": gbit, "cells": cells})
    return rows


__all__ = ["BUCKET_BYTES", "FIRST_BUCKET_BYTES", "AlphaBetaFit", "DDPPrediction", "GBIT", "bucket_sizes", "efficiency_table", "fit_alpha_beta",
           "network_beta", "predict_ddp", "ring_allreduce_seconds"]
