"""Silent wrong results and unclear errors in the Python layer (issue items 5 and 6):
nll_loss on K-dimensional input, clamp with tensor bounds, in-place operators,
__array__'s copy argument, int-only arguments (group_norm), load_state_dict errors,
the CLI's handling of mismatched checkpoints, --resume past the end, --threads, and
stale checkpoint temporaries. References are NumPy written here; gradients are float64
central finite differences."""

import os
import time

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
import dlkern.nn.functional as F
from dlkern import optim
from dlkern.__main__ import main
from dlkern.train.checkpoint import load_checkpoint, save_checkpoint
from test_autograd_helpers import gradcheck, t64


@pytest.fixture
def rng():
    return np.random.default_rng(11)


# ---------------------------------------------------------------------------- nll_loss

def nll_reference(x, t, weight, ignore_index, reduction):
    """Element by element over the target's positions: -w[c] x[n, c, d1, ...]."""
    c = x.shape[1]
    w = np.ones(c) if weight is None else weight
    losses = np.zeros(t.shape)
    wsum = 0.0
    for idx in np.ndindex(*t.shape):
        cls = int(t[idx])
        if cls == ignore_index:
            continue
        losses[idx] = -w[cls] * x[(idx[0], cls) + idx[1:]]
        wsum += w[cls]
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / wsum


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 5), (2, 3, 4, 5), (2, 3, 2, 3, 2)])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_k_dimensional(reduction, shape, weighted, rng):
    x = t64(rng, *shape)
    t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    t.reshape(-1)[::3] = -100  # some ignored targets
    w = rng.uniform(0.5, 2.0, shape[1]) if weighted else None
    wt = dlkern.tensor(w) if weighted else None
    got = F.nll_loss(x, dlkern.tensor(t), weight=wt, reduction=reduction)
    want = nll_reference(x.data, t, w, -100, reduction)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got.data, want, rtol=1e-12, atol=1e-15)
    gradcheck(lambda x: F.nll_loss(x, dlkern.tensor(t), weight=wt, reduction=reduction), [x], rng)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4, 5)])
def test_nll_loss_matches_cross_entropy_of_log_softmax(shape, rng):
    x = t64(rng, *shape, requires_grad=False)
    t = dlkern.tensor(rng.integers(0, shape[1], size=(shape[0],) + shape[2:]))
    for reduction in ("none", "sum", "mean"):
        ce = F.cross_entropy(x, t, reduction=reduction)
        nll = F.nll_loss(F.log_softmax(x, dim=1), t, reduction=reduction)
        np.testing.assert_allclose(nll.data, ce.data, rtol=1e-12, atol=1e-14)


def test_nll_loss_target_shape_is_checked(rng):
    x = t64(rng, 2, 3, 4, 5)
    # Same number of elements, wrong layout: (N, d2, d1) instead of (N, d1, d2).
    with pytest.raises(ValueError, match=r"nll_loss: input has shape \(2, 3, 4, 5\) but target has shape"):
        F.nll_loss(x, dlkern.tensor(rng.integers(0, 3, size=(2, 5, 4))))
