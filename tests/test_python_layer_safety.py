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


# ---------------------------------------------------------------------------- clamp

def test_clamp_tensor_bounds_values_and_gradients(rng):
    # Values kept at least 0.05 away from the bounds so finite differences are exact.
    x = rng.uniform(-1, 1, size=(4, 5))
    lo = rng.uniform(-0.6, -0.1, size=(5,))
    hi = rng.uniform(0.1, 0.6, size=(4, 1))
    near = (np.abs(x - lo) < 0.05) | (np.abs(x - hi) < 0.05)
    while near.any():
        x[near] = rng.uniform(-1, 1, size=int(near.sum()))
        near = (np.abs(x - lo) < 0.05) | (np.abs(x - hi) < 0.05)
    assert (x < lo).any() and (x > hi).any() and ((x > lo) & (x < hi)).any()
    xt = dlkern.tensor(x, dtype=np.float64, requires_grad=True)
    lot = dlkern.tensor(lo, dtype=np.float64, requires_grad=True)
    hit = dlkern.tensor(hi, dtype=np.float64, requires_grad=True)
    y = xt.clamp(lot, hit)
    np.testing.assert_array_equal(y.data, np.minimum(np.maximum(x, lo), hi))
    gradcheck(lambda a, b, c: a.clamp(b, c), [xt, lot, hit], rng)
    assert lot.grad.shape == (5,) and hit.grad.shape == (4, 1)
    # Explicit: with a unit cotangent, each bound's gradient counts the elements it clamps.
    for t in (xt, lot, hit):
        t.grad = None
    xt.clamp(lot, hit).sum().backward()
    np.testing.assert_array_equal(xt.grad.data, ((x >= lo) & (x <= hi)).astype(float))
    np.testing.assert_array_equal(lot.grad.data, (x < lo).sum(0))
    np.testing.assert_array_equal(hit.grad.data, (x > hi).sum(1, keepdims=True))


def test_clamp_single_tensor_bound_and_ties(rng):
    x = dlkern.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=np.float64, requires_grad=True)
    lo = dlkern.tensor([-1.0, -1.0, -1.0, -1.0, 3.0], dtype=np.float64, requires_grad=True)
    x.clamp(min=lo).sum().backward()
    # PyTorch: x gets the gradient where x >= min (ties included), min where x < min.
    np.testing.assert_array_equal(x.grad.data, [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(lo.grad.data, [1, 0, 0, 0, 1])
    x.grad = None
    hi = dlkern.tensor([1.0, 1.0, 1.0, 1.0, 1.0], dtype=np.float64, requires_grad=True)
    x.clamp(max=hi).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(hi.grad.data, [0, 0, 0, 0, 1])


def test_clamp_min_greater_than_max_gives_max(rng):
    x = dlkern.tensor([-3.0, 0.0, 3.0], dtype=np.float64, requires_grad=True)
    lo = dlkern.tensor([1.0, 1.0, 1.0], dtype=np.float64, requires_grad=True)
    hi = dlkern.tensor([-1.0, -1.0, -1.0], dtype=np.float64, requires_grad=True)
    y = x.clamp(lo, hi)
    np.testing.assert_array_equal(y.data, [-1.0, -1.0, -1.0])  # the result is max everywhere
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 0, 0])
    np.testing.assert_array_equal(lo.grad.data, [0, 0, 0])
    np.testing.assert_array_equal(hi.grad.data, [1, 1, 1])


def test_clamp_tensor_bound_dtype_mismatch_is_an_error():
    x = dlkern.zeros(3)
    with pytest.raises(TypeError, match="clamp: min has dtype float64"):
        x.clamp(dlkern.zeros(3, dtype=np.float64))
