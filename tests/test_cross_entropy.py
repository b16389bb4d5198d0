"""Fused cross-entropy against float64 NumPy references (dlkern.reference for the loss; the
gradient with its rounding budget here) and PyTorch when it is importable: every option (weight, ignore_index, label_smoothing, reduction),
(N, C) and (N, C, d1, ...) inputs, every ISA path, 1 and 2 threads, finite-difference
gradients in float64, and argument errors."""

import itertools

import numpy as np
import pytest

from dlkern import ops
from dlkern import reference as R
from helpers import assert_close, check_grads, num_threads


# float64 PyTorch cross_entropy with class-index targets (dlkern.reference): (loss, lse).
ce_ref = R.cross_entropy_forward


def ce_grad_ref(grad, x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """float64 d loss / d x: (softmax * sum(q) - q) * g per sample, q the smoothed,
    weighted target distribution. Returns (dx, scale): scale bounds the size of the
    rounding a float kernel may make in each element (see check_against_reference)."""
    x = np.moveaxis(np.asarray(x, np.float64), 1, -1)
    c = x.shape[-1]
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    keep = target != ignore_index
    t = np.where(keep, target, 0)
    q = label_smoothing / c * np.broadcast_to(w, x.shape).copy()
    np.put_along_axis(q, t[..., None], np.take_along_axis(q, t[..., None], -1) + (1 - label_smoothing) * w[t][..., None], -1)
    g = np.broadcast_to(np.asarray(grad, np.float64), keep.shape).astype(np.float64)
    if reduction == "mean":
        g = g / np.where(keep, w[t], 0.0).sum()
    g = np.where(keep, g, 0.0)
    d = (p * q.sum(-1, keepdims=True) - q) * g[..., None]
    # The kernel's softmax exp(x - lse) errs relatively by about (|lse| + |x - lse|) / 2
    # ulp (the rounding of the stored lse and of x - lse) plus a few for exp and the sum;
    # the target's p - q may cancel, so both terms' sizes count.
    m = x.max(-1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(-1, keepdims=True))
    with np.errstate(invalid="ignore"):
        spread = np.where(np.isfinite(x), np.abs(x - lse), 0.0)
    rel_p = 1.0 + 0.5 * (np.minimum(np.abs(lse), 32.0) + spread)
    scale = (p * q.sum(-1, keepdims=True) * rel_p + q) * np.abs(g)[..., None]
    return np.moveaxis(d, -1, 1), np.moveaxis(scale, -1, 1)


def make_case(rng, shape, dtype, ignore=False, ignore_index=-100, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    c = shape[1]
    target = rng.integers(0, c, (shape[0],) + tuple(shape[2:]))
    if ignore:
        flat = target.reshape(-1)
        flat[1::3] = ignore_index  # never all of them (see test_all_ignored_mean_is_nan_like_torch)
    weight = rng.uniform(0.2, 2.0, c).astype(dtype)
    return x, target, weight


OPTIONS = list(itertools.product([False, True], [False, True], [0.0, 0.25], ["none", "mean", "sum"]))
OPTION_IDS = [f"{'w' if w else 'now'}-{'ign' if i else 'noign'}-ls{ls}-{r}" for w, i, ls, r in OPTIONS]


def check_against_reference(x, target, weight, ignore_index, reduction, ls, dtype, rng):
    c = x.shape[1]
    loss, lse = ops.cross_entropy_forward(x, target, weight, ignore_index, reduction, ls)
    ref_loss, ref_lse = ce_ref(x, target, weight, ignore_index, reduction, ls)
    assert loss.dtype == dtype and lse.dtype == dtype
    assert_close(lse, ref_lse, c, dtype, scale=np.abs(ref_lse) + 1)
    n_samples = target.size
    assert_close(loss, ref_loss, c * n_samples, dtype, scale=np.abs(ref_loss) + 1)
    np.testing.assert_array_equal(ops.cross_entropy(x, target, weight, ignore_index, reduction, ls), loss)

    grad = rng.standard_normal(np.shape(ref_loss)).astype(dtype)
    dx = ops.cross_entropy_backward(grad, x, target, lse, weight, ignore_index, reduction, ls)
    ref_dx, dx_scale = ce_grad_ref(grad, x, target, weight, ignore_index, reduction, ls)
    assert_close(dx, ref_dx, c, dtype, scale=dx_scale + np.finfo(dtype).tiny)
    return loss, lse, dx


@pytest.mark.parametrize("weighted,ignore,ls,reduction", OPTIONS, ids=OPTION_IDS)
def test_options_match_reference(weighted, ignore, ls, reduction, isa, dtype):
    rng = np.random.default_rng(1)
    for shape in [(7, 5), (3, 1003), (4, 6, 3), (2, 3, 2, 5)]:
        x, target, weight = make_case(rng, shape, dtype, ignore)
        check_against_reference(x, target, weight if weighted else None, -100, reduction, ls, dtype, rng)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (70, 1003), (5, 32000 + 3), (3, 7, 1000 + 3), (130, 33, 17)],
                         ids=str)
def test_shapes_threads_isas(shape, isa, threads, dtype):
    rng = np.random.default_rng(2)
    x, target, weight = make_case(rng, shape, dtype, ignore=True)
    for w, ls, red in [(None, 0.0, "mean"), (weight, 0.1, "none"), (weight, 0.0, "sum")]:
        check_against_reference(x, target, w, -100, red, ls, dtype, rng)


def test_threads_agree():
    rng = np.random.default_rng(3)
    x, target, weight = make_case(rng, (300, 1003), np.float32, ignore=True)
    results = []
    for n in (1, 2):
        with num_threads(n):
            loss, lse = ops.cross_entropy_forward(x, target, weight, reduction="none", label_smoothing=0.2)
            dx = ops.cross_entropy_backward(np.ones_like(loss), x, target, lse, weight, reduction="none",
                                            label_smoothing=0.2)
            results.append((loss, lse, dx))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_ignore_index_inside_class_range(isa):
    rng = np.random.default_rng(4)
    x, target, weight = make_case(rng, (40, 9), np.float64)
    target[::4] = 3
    for red in ("none", "mean", "sum"):
        check_against_reference(x, target, weight, 3, red, 0.1, np.float64, rng)
    dx = ops.cross_entropy_backward(1.0, x, target, ops.cross_entropy_forward(x, target, ignore_index=3)[1],
                                    ignore_index=3)
    assert (dx[::4] == 0).all()


def test_all_ignored_mean_is_nan_like_torch():
    x = np.zeros((3, 4), np.float32)
    target = np.full(3, -100)
    loss, lse = ops.cross_entropy_forward(x, target)
    assert np.isnan(loss)
    assert float(ops.cross_entropy(x, target, reduction="sum")) == 0.0
    dx = ops.cross_entropy_backward(np.float32(1), x, target, lse)
    assert (dx == 0).all()


@pytest.mark.parametrize("ls", [0.0, 0.3])
def test_large_logits(ls, isa, dtype):
    rng = np.random.default_rng(5)
    x, target, weight = make_case(rng, (64, 1003), dtype, ignore=True, scale=1e4)
    x[np.arange(64), target.clip(0)] += 1e4  # some targets at the maximum
    # Logits all near 1e4 with an O(1) spread: lse = 1e4 + O(1) cannot be stored exactly,
    # so exp(x - lse) from the stored value would err by ~1e-4 relative in float32.
    near = (1e4 + rng.standard_normal((64, 1003)) * 3).astype(dtype)
    for logits in (x, near):
        for red in ("none", "mean"):
            loss, lse, dx = check_against_reference(logits, target, weight, -100, red, ls, dtype, rng)
            assert np.isfinite(loss).all() and np.isfinite(dx).all()


def test_neg_inf_logits(isa, dtype):
    rng = np.random.default_rng(6)
    x, target, weight = make_case(rng, (50, 37), dtype)
    mask = rng.random(x.shape) < 0.3
    mask[np.arange(50), target] = False  # the target logit stays finite
    x[mask] = -np.inf
    loss, lse, dx = check_against_reference(x, target, weight, -100, "none", 0.0, dtype, rng)
    assert np.isfinite(loss).all() and np.isfinite(lse).all() and np.isfinite(dx).all()
    assert (dx[mask] == 0).all()
    # Smoothing puts mass on the -inf classes: an infinite loss, as in PyTorch.
    smoothed = ops.cross_entropy(x, target, label_smoothing=0.1, reduction="none")
    assert np.isposinf(smoothed[mask.any(1)]).all()


def test_non_contiguous_and_other_int_targets(isa):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((10, 30)).astype(np.float32)
    x = base[:, ::3]  # (10, 10), strided
    target = rng.integers(0, 10, 20)[::2].astype(np.int32)
    expected = ops.cross_entropy(np.ascontiguousarray(x), target.astype(np.int64), reduction="none")
    np.testing.assert_array_equal(ops.cross_entropy(x, target, reduction="none"), expected)
    assert_close(expected, ce_ref(x, target, reduction="none")[0], 10, np.float32, scale=np.abs(expected) + 1)


def test_unbatched_input():
    x = np.array([0.5, -1.0, 2.0], np.float64)
    t = np.array(2)
    loss, lse = ops.cross_entropy_forward(x, t, reduction="none")
    assert loss.shape == () and lse.shape == ()
    ref = ce_ref(x[None], t[None], reduction="none")[0][0]
    assert abs(float(loss) - ref) < 1e-14
    dx = ops.cross_entropy_backward(np.float64(1), x, t, lse, reduction="none")
    assert dx.shape == (3,)
    np.testing.assert_allclose(dx, ce_grad_ref(1.0, x[None], t[None], reduction="none")[0][0], atol=1e-15)


@pytest.mark.parametrize("weighted,ignore,ls,reduction", OPTIONS, ids=OPTION_IDS)
def test_finite_difference_gradients(weighted, ignore, ls, reduction, isa):
    rng = np.random.default_rng(8)
    for shape in [(5, 4), (3, 4, 2)]:
        x, target, weight = make_case(rng, shape, np.float64, ignore, ignore_index=-1)
        w = weight if weighted else None

        def forward(a):
            return ops.cross_entropy(a, target, w, -1, reduction, ls)

        def backward(g, a):
            lse = ops.cross_entropy_forward(a, target, w, -1, reduction, ls)[1]
            return (ops.cross_entropy_backward(g, a, target, lse, w, -1, reduction, ls),)

        check_grads(forward, backward, [x], rng)


@pytest.mark.parametrize("weighted,ignore,ls,reduction", OPTIONS, ids=OPTION_IDS)
def test_matches_torch(weighted, ignore, ls, reduction):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    for shape in [(6, 11), (3, 5, 4)]:
        x, target, weight = make_case(rng, shape, np.float64, ignore)
        w = weight if weighted else None
        loss, lse = ops.cross_entropy_forward(x, target, w, -100, reduction, ls)
        tx = torch.from_numpy(x.copy()).requires_grad_()
        tl = torch.nn.functional.cross_entropy(tx, torch.from_numpy(target), None if w is None else torch.from_numpy(w),
                                               ignore_index=-100, reduction=reduction, label_smoothing=ls)
        g = rng.standard_normal(tuple(tl.shape))
        tl.backward(torch.from_numpy(g))
        np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-12, atol=1e-13)
        dx = ops.cross_entropy_backward(g, x, target, lse, w, -100, reduction, ls)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------- errors

F32 = np.float32
X = np.zeros((4, 5), F32)
T = np.array([0, 1, 2, 3])

ERRORS = [
    ("input_list", lambda: ops.cross_entropy([[1.0]], T), TypeError,
     r"^cross_entropy: input must be a numpy\.ndarray, got list$"),
    ("input_int", lambda: ops.cross_entropy(np.zeros((4, 5), np.int64), T), TypeError,
     r"^cross_entropy: input has dtype int64; expected float32 or float64$"),
    ("input_int16", lambda: ops.cross_entropy(np.zeros((4, 5), np.int16), T), TypeError,
     r"^cross_entropy: input has dtype int16"),
    ("input_0d", lambda: ops.cross_entropy(np.zeros((), F32), T), ValueError,
     r"^cross_entropy: input must have shape \(N, C\) or \(N, C, d1, \.\.\.\), got shape \(\)$"),
    ("target_float", lambda: ops.cross_entropy(X, T.astype(F32)), TypeError,
     r"^cross_entropy: target has dtype float32; expected int64 class indices$"),
    ("target_big_endian_direct", lambda: __import__("dlkern")._C.cross_entropy_forward(X, T.astype(">i8")), TypeError,
     r"^cross_entropy: target has dtype >i8; expected int64 class indices$"),
    ("target_bool", lambda: ops.cross_entropy(X, T > 1), TypeError, r"^cross_entropy: target has dtype bool"),
    ("target_shape", lambda: ops.cross_entropy(X, T[:3]), ValueError,
     r"^cross_entropy: target has shape \(3,\), expected \(4,\) for input of shape \(4, 5\)$"),
    ("target_2d", lambda: ops.cross_entropy(np.zeros((4, 5, 2), F32), T), ValueError,
     r"^cross_entropy: target has shape \(4,\), expected \(4, 2\)"),
    ("target_high", lambda: ops.cross_entropy(X, np.array([0, 1, 5, 3])), ValueError,
     r"^cross_entropy: target value 5 \(flat index 2\) is out of range for 5 classes"),
    ("target_negative", lambda: ops.cross_entropy(X, np.array([0, -1, 2, 3])), ValueError,
     r"^cross_entropy: target value -1 \(flat index 1\) is out of range"),
    ("weight_shape", lambda: ops.cross_entropy(X, T, weight=np.ones(4, F32)), ValueError,
     r"^cross_entropy: weight has shape \(4,\), expected \(5,\) for input of shape \(4, 5\)$"),
    ("weight_2d", lambda: ops.cross_entropy(X, T, weight=np.ones((1, 5), F32)), ValueError,
     r"^cross_entropy: weight has shape \(1, 5\)"),
    ("weight_dtype", lambda: ops.cross_entropy(X, T, weight=np.ones(5)), TypeError,
     r"^cross_entropy: weight has dtype float64 but input has dtype float32$"),
    ("reduction", lambda: ops.cross_entropy(X, T, reduction="avg"), ValueError,
     r"^cross_entropy: reduction must be 'none', 'mean' or 'sum', got 'avg'$"),
    ("smoothing", lambda: ops.cross_entropy(X, T, label_smoothing=1.5), ValueError,
     r"^cross_entropy: label_smoothing must be in \[0, 1\], got 1\.5$"),
    ("ignore_float", lambda: ops.cross_entropy(X, T, ignore_index=1.5), TypeError,
     r"^cross_entropy: ignore_index must be an int, got float$"),
    ("bwd_grad_shape", lambda: ops.cross_entropy_backward(np.ones(3, F32), X, T, np.zeros(4, F32), reduction="none"),
     ValueError, r"^cross_entropy_backward: grad_loss has shape \(3,\), expected \(4,\) for reduction='none'$"),
    ("bwd_grad_many", lambda: ops.cross_entropy_backward(np.ones(2, F32), X, T, np.zeros(4, F32)), ValueError,
     r"^cross_entropy_backward: grad_loss has shape \(2,\), expected a single value for reduction='mean'$"),
    ("bwd_grad_dtype", lambda: ops.cross_entropy_backward(np.ones((), np.float64), X, T, np.zeros(4, F32)),
     TypeError, r"^cross_entropy_backward: grad_loss has dtype float64 but input has dtype float32$"),
    ("bwd_lse_shape", lambda: ops.cross_entropy_backward(1.0, X, T, np.zeros(5, F32)), ValueError,
     r"^cross_entropy_backward: lse has shape \(5,\), expected \(4,\)$"),
    ("bwd_target", lambda: ops.cross_entropy_backward(1.0, X, np.array([9, 0, 0, 0]), np.zeros(4, F32)), ValueError,
     r"^cross_entropy_backward: target value 9 \(flat index 0\) is out of range"),
    ("bwd_out_alias", lambda: (lambda a: ops.cross_entropy_backward(1.0, a, T, np.zeros(4, F32), out=a))(X.copy()),
     ValueError, r"^cross_entropy_backward: out shares memory with an input"),
]


@pytest.mark.parametrize("name,call,exc,pattern", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(name, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_out_argument():
    rng = np.random.default_rng(10)
    x, target, weight = make_case(rng, (9, 13), np.float32, ignore=True)
    loss, lse = ops.cross_entropy_forward(x, target, weight, label_smoothing=0.1)
    out = np.full_like(x, np.nan)
    dx = ops.cross_entropy_backward(np.float32(2), x, target, lse, weight, label_smoothing=0.1, out=out)
    assert dx is out
    np.testing.assert_array_equal(out, ops.cross_entropy_backward(2.0, x, target, lse, weight, label_smoothing=0.1))


def test_all_neg_inf_row_is_nan_like_torch(isa):
    x = np.zeros((3, 40), np.float32)
    x[1] = -np.inf
    loss, lse = ops.cross_entropy_forward(x, np.array([0, 1, 2]), reduction="none")
    assert np.isneginf(lse[1]) and np.isnan(loss[1])
    assert np.isfinite(np.delete(loss, 1)).all()
