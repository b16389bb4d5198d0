"""Losses, functional and module forms: values against float64 NumPy references
(PyTorch's definitions; dlkern.reference for the kernels' losses), float64
finite-difference gradient checks, and bad input."""

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
import dlkern.nn.functional as F
from dlkern import reference as R
from test_autograd_helpers import gradcheck, t64

REDUCTIONS = ["mean", "sum", "none"]


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def reduce_ref(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def log_softmax_ref(x, axis=1):
    return R.log_softmax(x, axis)


def class_last(x):
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]) if x.ndim > 2 else x


def nll_ref(logp, t, weight, ignore_index, reduction):
    lp, tt = class_last(logp), t.reshape(-1)
    c = lp.shape[1]
    w = np.ones(c) if weight is None else weight
    valid = tt != ignore_index
    safe = np.where(valid, tt, 0)
    wt = w[safe] * valid
    loss = -wt * lp[np.arange(len(tt)), safe]
    if reduction == "none":
        return loss.reshape(t.shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / wt.sum()


# PyTorch's cross_entropy (class-index targets, weights, ignore_index, label smoothing).
ce_ref = R.cross_entropy


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_l1(reduction, rng):
    a, b = t64(rng, 3, 4), t64(rng, 3, 4)
    np.testing.assert_allclose(F.mse_loss(a, b, reduction).data, reduce_ref((a.data - b.data) ** 2, reduction))
    np.testing.assert_allclose(nn.L1Loss(reduction)(a, b).data, reduce_ref(np.abs(a.data - b.data), reduction))
    gradcheck(lambda a, b: nn.MSELoss(reduction=reduction)(a, b), [a, b], rng)
    gradcheck(lambda a, b: F.l1_loss(a, b, reduction), [a, b], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2, 3)])
@pytest.mark.parametrize("options", [dict(), dict(weight=True), dict(ignore=True), dict(smoothing=0.1),
                                     dict(weight=True, ignore=True, smoothing=0.2)])
def test_cross_entropy(reduction, shape, options, rng):
    x = t64(rng, *shape, low=-3, high=3)
    tshape = (shape[0],) + shape[2:]
    t = rng.integers(0, shape[1], size=tshape)
    if options.get("ignore"):
        t.reshape(-1)[::3] = -1
    weight = rng.uniform(0.5, 2.0, shape[1]) if options.get("weight") else None
    ii, ls = (-1 if options.get("ignore") else -100), options.get("smoothing", 0.0)
    kw = dict(weight=None if weight is None else dlkern.tensor(weight), ignore_index=ii, reduction=reduction,
              label_smoothing=ls)
    got = F.cross_entropy(x, dlkern.tensor(t), **kw)
    np.testing.assert_allclose(got.data, ce_ref(x.data, t, weight, ii, reduction, ls), rtol=1e-10, atol=1e-12)
    gradcheck(lambda x: nn.CrossEntropyLoss(**kw)(x, dlkern.tensor(t)), [x], rng)


def test_cross_entropy_errors():
    x = dlkern.randn(3, 4)
    with pytest.raises(ValueError, match="7"):
        F.cross_entropy(x, dlkern.tensor([0, 7, 1]))
    with pytest.raises(ValueError, match="shape"):
        F.cross_entropy(x, dlkern.tensor([0, 1]))
    with pytest.raises(ValueError, match="probability target"):  # float targets are class probabilities
        F.cross_entropy(x, dlkern.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(x, dlkern.tensor([True, False, True]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, dlkern.tensor([0, 1, 2]), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_probability_targets(reduction, weighted, rng):
    x = t64(rng, 4, 5, 2, low=-3, high=3)
    p = rng.random((4, 5, 2))
    p /= p.sum(1, keepdims=True)
    w = rng.uniform(0.5, 2, 5) if weighted else None
    tgt = p * 0.9 + 0.1 / 5
    ref = -(log_softmax_ref(x.data) * tgt * (1 if w is None else w[None, :, None])).sum(1)
    kw = dict(weight=None if w is None else dlkern.tensor(w), reduction=reduction, label_smoothing=0.1)
    got = F.cross_entropy(x, dlkern.tensor(p), **kw)
    np.testing.assert_allclose(got.data, reduce_ref(ref, reduction), rtol=1e-12)
    gradcheck(lambda x: F.cross_entropy(x, dlkern.tensor(p), **kw), [x], rng)
    with pytest.raises(ValueError, match="probability target"):
        F.cross_entropy(x, dlkern.tensor(p[:, :4]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3)])
def test_nll_loss(reduction, shape, rng):
    x = t64(rng, *shape)
    t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    t.reshape(-1)[1] = -100
    w = rng.uniform(0.5, 2, shape[1])
    got = F.nll_loss(x, dlkern.tensor(t), weight=dlkern.tensor(w), reduction=reduction)
    np.testing.assert_allclose(got.data, nll_ref(x.data, t, w, -100, reduction), rtol=1e-12)
    gradcheck(lambda x: nn.NLLLoss(dlkern.tensor(w), reduction=reduction)(x, dlkern.tensor(t)), [x], rng)
    with pytest.raises(ValueError, match="out of range"):
        F.nll_loss(x, dlkern.tensor(np.full(t.shape, shape[1])))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy(reduction, rng):
    p = t64(rng, 4, 3, low=0.05, high=0.95)
    y = t64(rng, 4, 3, low=0, high=1)
    w = rng.uniform(0.5, 2, (4, 3))
    ref = -(y.data * np.log(p.data) + (1 - y.data) * np.log(1 - p.data)) * w
    got = F.binary_cross_entropy(p, y, dlkern.tensor(w), reduction)
    np.testing.assert_allclose(got.data, reduce_ref(ref, reduction), rtol=1e-12)
    gradcheck(lambda p, y: nn.BCELoss(reduction=reduction)(p, y), [p, y], rng)
    # log clamped at -100 as PyTorch: p = 0 with y = 1 gives 100, not inf
    edge = F.binary_cross_entropy(dlkern.tensor([0.0, 1.0], dtype=dlkern.float64),
                                  dlkern.tensor([1.0, 0.0], dtype=dlkern.float64), reduction="none")
    np.testing.assert_allclose(edge.data, [100.0, 100.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.binary_cross_entropy(dlkern.tensor([1.5]), dlkern.tensor([1.0]))
    with pytest.raises(ValueError, match="shape"):
        F.binary_cross_entropy(p, t64(rng, 3, 4))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_pw", [False, True])
def test_bce_with_logits(reduction, use_pw, rng):
    x = t64(rng, 4, 3, low=-4, high=4)
    y = t64(rng, 4, 3, low=0, high=1)
    pw = rng.uniform(0.5, 3, 3) if use_pw else None
    s = 1 / (1 + np.exp(-x.data))
    pwv = 1.0 if pw is None else pw
    ref = -(pwv * y.data * np.log(s) + (1 - y.data) * np.log(1 - s))
    kw = dict(reduction=reduction, pos_weight=None if pw is None else dlkern.tensor(pw))
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(x, y, **kw).data, reduce_ref(ref, reduction),
                               rtol=1e-10)
    gradcheck(lambda x, y: nn.BCEWithLogitsLoss(**kw)(x, y), [x, y], rng)
    big = dlkern.tensor([200.0, -200.0], dtype=dlkern.float64)
    out = F.binary_cross_entropy_with_logits(big, dlkern.tensor([0.0, 1.0], dtype=dlkern.float64), reduction="none")
    np.testing.assert_allclose(out.data, [200.0, 200.0])  # stable far from 0


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1, 1.5), (0.6, 0.0)])
def test_sigmoid_focal_loss(reduction, alpha, gamma, rng):
    x = t64(rng, 5, 3, low=-3, high=3)
    y = dlkern.tensor((rng.random((5, 3)) > 0.5).astype(np.float64))
    p = 1 / (1 + np.exp(-x.data))
    ce = -(y.data * np.log(p) + (1 - y.data) * np.log(1 - p))
    pt = p * y.data + (1 - p) * (1 - y.data)
    ref = ce * (1 - pt) ** gamma
    if alpha >= 0:
        ref = ref * (alpha * y.data + (1 - alpha) * (1 - y.data))
    got = F.sigmoid_focal_loss(x, y, alpha, gamma, reduction)
    np.testing.assert_allclose(got.data, reduce_ref(ref, reduction), rtol=1e-10)
    gradcheck(lambda x: nn.SigmoidFocalLoss(alpha, gamma, reduction)(x, y), [x], rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [None, 0.5, "per_class"])
def test_focal_loss(reduction, alpha, rng):
    x = t64(rng, 6, 4, low=-3, high=3)
    t = rng.integers(0, 4, 6)
    t[2] = -100
    a = rng.uniform(0.2, 1, 4) if alpha == "per_class" else alpha
    logp = log_softmax_ref(x.data)
    valid = t != -100
    safe = np.where(valid, t, 0)
    lpt = logp[np.arange(6), safe]
    ref = -((1 - np.exp(lpt)) ** 2.0) * lpt * valid
    if a is not None:
        ref = ref * (np.asarray(a)[safe] if np.ndim(a) else a)
    want = ref if reduction == "none" else ref.sum() if reduction == "sum" else ref.sum() / valid.sum()
    kw = dict(gamma=2.0, alpha=None if a is None else (dlkern.tensor(a) if np.ndim(a) else a), reduction=reduction)
    np.testing.assert_allclose(F.focal_loss(x, dlkern.tensor(t), **kw).data, want, rtol=1e-10, atol=1e-14)
    gradcheck(lambda x: nn.FocalLoss(**kw)(x, dlkern.tensor(t)), [x], rng)
    # gamma = 0 and no alpha is cross-entropy
    ce = F.focal_loss(x, dlkern.tensor(t), gamma=0.0)
    np.testing.assert_allclose(ce.data, nll_ref(logp, t, None, -100, "mean"), rtol=1e-12)


def test_loss_errors():
    a = dlkern.ones(3)
    with pytest.raises(ValueError, match="shape"):
        F.mse_loss(a, dlkern.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(TypeError, match="integer"):
        F.nll_loss(dlkern.ones(2, 3), dlkern.tensor([0.5, 1.0]))


def test_cross_entropy_unbatched(rng):
    x = t64(rng, 5)
    ref = -log_softmax_ref(x.data[None])[0, 3]
    np.testing.assert_allclose(F.cross_entropy(x, dlkern.tensor(3)).item(), ref, rtol=1e-12)
    assert F.cross_entropy(x, dlkern.tensor(3), reduction="none").shape == ()
    gradcheck(lambda x: F.cross_entropy(x, dlkern.tensor(3)), [x], rng)
