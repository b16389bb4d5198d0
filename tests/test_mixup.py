"""dlkern.data.Mixup (mixup / CutMix, timm's semantics), cross-entropy with probability
targets as one Function, and ``train --mixup/--cutmix`` (issue 15, deliverable 4).

References: the same draws replayed from a NumPy Generator with the same seed, NumPy
float64 formulas, central finite differences, and torch for the loss."""

import numpy as np
import pytest

import dlkern
from dlkern.__main__ import main
from dlkern.data import Mixup
from dlkern.data.mixup import cutmix_box
from dlkern.nn import functional as F

from helpers import numeric_grad


def _batch(shape=(6, 2, 8, 8), c=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(dtype), rng.integers(0, c, size=shape[0])


def _smooth(y, c, s):
    out = np.full((len(y), c), s / c)
    out[np.arange(len(y)), y] = 1 - s + s / c
    return out


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_mixup_recomputed_with_the_same_seed(smoothing):
    x, y = _batch()
    mix = Mixup(mixup_alpha=0.4, label_smoothing=smoothing, num_classes=5, generator=np.random.default_rng(3))
    xm, soft = mix(dlkern.tensor(x), dlkern.tensor(y))
    replay = np.random.default_rng(3)
    assert replay.random() < 1.0                      # the prob draw
    lam = replay.beta(0.4, 0.4)
    perm = np.arange(len(y))[::-1]                    # timm's partner: the reversed batch
    np.testing.assert_allclose(xm.numpy(), lam * x + (1 - lam) * x[perm], rtol=0, atol=1e-15)
    expected = lam * _smooth(y, 5, smoothing) + (1 - lam) * _smooth(y[perm], 5, smoothing)
    np.testing.assert_allclose(soft.numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(soft.numpy().sum(1), 1.0, rtol=0, atol=1e-15)
    assert soft.dtype == dlkern.float64 and soft.shape == (6, 5)


def test_label_smoothing_values_without_mixing():
    x, y = _batch(shape=(4, 3))
    mix = Mixup(mixup_alpha=1.0, prob=0.0, label_smoothing=0.1, num_classes=5)
    xm, soft = mix(dlkern.tensor(x), dlkern.tensor(y))
    np.testing.assert_array_equal(xm.numpy(), x)
    s = soft.numpy()
    assert np.allclose(s[np.arange(4), y], 0.9 + 0.02) and np.allclose(np.sort(s, 1)[:, :4], 0.02)


def test_mixup_any_shape_float32_and_sums_to_one():
    x, y = _batch(shape=(7, 3), dtype=np.float32)           # odd batch, 2-D input
    xm, soft = Mixup(num_classes=5, generator=np.random.default_rng(1))(dlkern.tensor(x), dlkern.tensor(y))
    assert xm.dtype == soft.dtype == dlkern.float32 and xm.shape == (7, 3)
    np.testing.assert_allclose(soft.numpy().sum(1), 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(xm.numpy()[3], x[3], rtol=1e-6)  # the middle sample mixes with itself


def test_cutmix_box_and_area_corrected_lambda():
    x, y = _batch(shape=(4, 3, 10, 12))
    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=5,
                generator=np.random.default_rng(11))
    xm, soft = mix(dlkern.tensor(x), dlkern.tensor(y))
    replay = np.random.default_rng(11)
    replay.random()
    lam = replay.beta(1.0, 1.0)
    cut_h, cut_w = int(10 * np.sqrt(1 - lam)), int(12 * np.sqrt(1 - lam))
    cy, cx = replay.integers(0, 10), replay.integers(0, 12)
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, 10)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, 12)
    expected = x.copy()
    expected[:, :, y0:y1, x0:x1] = x[::-1][:, :, y0:y1, x0:x1]
    np.testing.assert_array_equal(xm.numpy(), expected)
    lam_c = 1 - (y1 - y0) * (x1 - x0) / 120.0
    np.testing.assert_allclose(soft.numpy(), lam_c * _smooth(y, 5, 0) + (1 - lam_c) * _smooth(y[::-1], 5, 0),
                               rtol=0, atol=1e-15)


def test_cutmix_box_clipped_at_the_border():
    class Fixed:
        def integers(self, lo, hi):
            return 0
    (y0, y1, x0, x1), lam = cutmix_box(8, 8, 0.75, Fixed())   # sides 4, centre at the corner
    assert (y0, y1, x0, x1) == (0, 2, 0, 2) and lam == 1 - 4 / 64


def test_switch_between_mixup_and_cutmix():
    x, y = _batch()
    seen = set()
    mix = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, num_classes=5,
                generator=np.random.default_rng(0))
    for _ in range(20):
        xm, _ = mix(dlkern.tensor(x), dlkern.tensor(y))
        d = xm.numpy() - x
        # CutMix leaves the pixels outside the box bit-identical; mixup changes all of them
        seen.add("cutmix" if (d == 0).mean() > 0.1 else "mixup")
    assert seen == {"mixup", "cutmix"}


def test_mixup_errors():
    x, y = _batch()
    with pytest.raises(ValueError, match="mixup_alpha"):
        Mixup(mixup_alpha=-1)
    with pytest.raises(ValueError, match="prob"):
        Mixup(prob=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        Mixup(num_classes=0)
    with pytest.raises(NotImplementedError, match="mode"):
        Mixup(mode="elem")
    with pytest.raises(ValueError, match="CutMix needs x of shape"):
        Mixup(mixup_alpha=0, cutmix_alpha=1.0, num_classes=5)(dlkern.tensor(x[:, 0, 0]), dlkern.tensor(y))
    with pytest.raises(ValueError, match="out of range"):
        Mixup(num_classes=3)(dlkern.tensor(x), dlkern.tensor(y + 3))
    with pytest.raises(TypeError, match="integer class labels"):
        Mixup(num_classes=5)(dlkern.tensor(x), dlkern.tensor(y.astype(np.float64)))
    with pytest.raises(ValueError, match="target has shape"):
        Mixup(num_classes=5)(dlkern.tensor(x), dlkern.tensor(y[:3]))


def test_mixup_empty_batch():
    xm, soft = Mixup(num_classes=4)(dlkern.zeros(0, 3), dlkern.tensor(np.zeros(0, np.int64)))
    assert xm.shape == (0, 3) and soft.shape == (0, 4)


# ------------------------------------------------------------ soft-target cross-entropy

def _soft_ce_ref(x, t, w, reduction, ls):
    """NumPy float64: -sum_c w_c t'_c log_softmax(x)_c, t' = t (1 - ls) + ls / C."""
    axis = 0 if x.ndim == 1 else 1
    c = x.shape[axis]
    t = t * (1 - ls) + ls / c
    m = x.max(axis, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis, keepdims=True))
    wt = t if w is None else t * w.reshape((-1,) + (1,) * (x.ndim - 1 - axis))
    per = -(logp * wt).sum(axis)
    return per if reduction == "none" else per.sum() if reduction == "sum" else per.mean()


CASES = [((6, 5), None), ((6, 5), "w"), ((3, 4, 2, 3), "w"), ((5,), None), ((0, 4), None)]


@pytest.mark.parametrize("shape, weighted", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ls", [0.0, 0.2])
def test_soft_cross_entropy_vs_numpy_and_finite_differences(shape, weighted, reduction, ls):
    rng = np.random.default_rng(4)
    axis = 0 if len(shape) == 1 else 1
    x = rng.normal(size=shape)
    t = rng.random(shape)
    t /= np.maximum(t.sum(axis, keepdims=True), 1e-300)
    w = rng.random(shape[axis]) if weighted else None
    xt = dlkern.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, dlkern.tensor(t), weight=None if w is None else dlkern.tensor(w),
                           reduction=reduction, label_smoothing=ls)
    assert type(loss.grad_fn).__name__ == "SoftCrossEntropy"
    if x.size == 0:
        assert np.isnan(loss.item()) if reduction == "mean" else loss.detach().numpy().sum() == 0
        loss.sum().backward()
        assert xt.grad.shape == shape
        return
    expected = _soft_ce_ref(x, t, w, reduction, ls)
    np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-13, atol=1e-13)
    cot = rng.normal(size=np.shape(expected))
    (loss * dlkern.tensor(cot)).sum().backward()
    xc = x.copy()
    num = numeric_grad(lambda: float((_soft_ce_ref(xc, t, w, reduction, ls) * cot).sum()), xc)
    np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-6, atol=1e-8)


def test_soft_cross_entropy_non_contiguous_float32_and_numpy_target():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    t = rng.dirichlet(np.ones(4), size=5).astype(np.float32)
    xt = dlkern.tensor(np.ascontiguousarray(x.T)).transpose(0, 1)
    loss = F.cross_entropy(xt, t)                                # a NumPy target array
    assert loss.dtype == dlkern.float32
    np.testing.assert_allclose(loss.item(), _soft_ce_ref(x.astype(np.float64), t.astype(np.float64), None,
                                                         "mean", 0.0), rtol=1e-5)


def test_soft_cross_entropy_target_gradient_still_flows():
    # a target that requires grad (distillation from a trained teacher) keeps the composite path
    rng = np.random.default_rng(6)
    x, t = rng.normal(size=(3, 4)), rng.dirichlet(np.ones(4), size=3)
    tt = dlkern.tensor(t, requires_grad=True)
    F.cross_entropy(dlkern.tensor(x), tt).backward()
    tc = t.copy()
    num = numeric_grad(lambda: float(_soft_ce_ref(x, tc, None, "mean", 0.0)), tc)
    np.testing.assert_allclose(tt.grad.numpy(), num, rtol=1e-6, atol=1e-8)


def test_soft_cross_entropy_errors():
    x = dlkern.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, np.full((2, 3), 1 / 3), label_smoothing=1.5)
    with pytest.raises(ValueError, match="probability target has shape"):
        F.cross_entropy(x, np.full((2, 4), 0.25))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_soft_cross_entropy_torch_parity(reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x, t, w = rng.normal(size=(4, 3, 5)), rng.dirichlet(np.ones(3), size=(4, 5)).transpose(0, 2, 1), rng.random(3)
    xt = dlkern.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, dlkern.tensor(np.ascontiguousarray(t)), weight=dlkern.tensor(w),
                           reduction=reduction, label_smoothing=0.1)
    tx = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t), weight=torch.tensor(w), reduction=reduction,
                                           label_smoothing=0.1)
    np.testing.assert_allclose(loss.detach().numpy(), tl.detach().numpy(), rtol=1e-13, atol=1e-14)
    loss.sum().backward()
    tl.sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_train_cli_mixup_and_cutmix(capsys):
    pytest.importorskip("sklearn")
    for extra in (["--mixup", "0.2"], ["--mixup", "0.2", "--cutmix", "1.0"], ["--cutmix", "1.0"]):
        rc = main(["train", "--model", "mlp", "--epochs", "2", "--no-progress", "--threads", "1"] + extra)
        out = capsys.readouterr().out
        assert rc == 0, out
        assert float(out.split("done: test accuracy ")[1].split()[0]) > 0.5
    assert main(["train", "--epochs", "1", "--mixup", "-1"]) == 2
    assert "--mixup must be > 0" in capsys.readouterr().err


def test_mixup_and_soft_cross_entropy_on_the_cuda_host_twin():
    import host_cuda
    from dlkern.devices import CUDADevice

    dev = CUDADevice(0, module=host_cuda)
    x, y = _batch(shape=(4, 2, 6, 6))
    for kw in (dict(mixup_alpha=1.0), dict(mixup_alpha=0.0, cutmix_alpha=1.0)):
        a = Mixup(num_classes=5, generator=np.random.default_rng(2), **kw)(dlkern.tensor(x), dlkern.tensor(y))
        b = Mixup(num_classes=5, generator=np.random.default_rng(2), **kw)(dlkern.tensor(x, device=dev),
                                                                           dlkern.tensor(y, device=dev))
        for u, v in zip(a, b):
            assert v.device == dev
            np.testing.assert_array_equal(v.cpu().numpy(), u.numpy())
    rng = np.random.default_rng(8)
    z, t, w = rng.normal(size=(4, 5, 3)), rng.dirichlet(np.ones(5), size=(4, 3)).transpose(0, 2, 1), rng.random(5)
    t = np.ascontiguousarray(t)
    for reduction in ("mean", "sum", "none"):
        zd = dlkern.tensor(z, device=dev, requires_grad=True)
        loss = F.cross_entropy(zd, dlkern.tensor(t, device=dev), weight=dlkern.tensor(w, device=dev),
                               reduction=reduction, label_smoothing=0.1)
        assert type(loss.grad_fn).__name__ == "SoftCrossEntropy"
        np.testing.assert_allclose(loss.detach().cpu().numpy(), _soft_ce_ref(z, t, w, reduction, 0.1),
                                   rtol=1e-13, atol=1e-14)
        loss.sum().backward()
        zc = z.copy()
        num = numeric_grad(lambda: float(np.sum(_soft_ce_ref(zc, t, w, reduction, 0.1))), zc)
        np.testing.assert_allclose(zd.grad.cpu().numpy(), num, rtol=1e-6, atol=1e-8)
