"""NaN propagation (softmax, log_softmax, cross_entropy, the norms; forward and
backward) and refusal of out-of-range caller integers and sizes in the bindings.

NaN: a NaN anywhere in a softmax slice makes the whole output slice NaN, as NumPy's
exp(x - max) / sum and PyTorch do; a slice of only -inf keeps the documented result
(softmax 0, log_softmax -inf). Every layout (last axis, strided inner axis,
non-contiguous input), every ISA path and 1 and 2 threads. The references are float64
NumPy written here; PyTorch is an optional extra check.
"""

import numpy as np
import pytest

import dlkern
from dlkern import ops

DTYPES = (np.float32, np.float64)


# ----------------------------------------------------------------------------- references


def _shifted(x, dim):
    """x in float64, minus its slice max taken over the non-NaN entries (0 for a slice
    with no finite max), and where each slice holds a NaN."""
    x = np.asarray(x, np.float64)
    nan = np.isnan(x).any(axis=dim, keepdims=True)
    m = np.max(np.where(np.isnan(x), -np.inf, x), axis=dim, keepdims=True)
    return x - np.where(np.isneginf(m), 0.0, m), nan


def softmax_ref(x, dim):
    """float64 softmax: a slice of all -inf gives 0, a slice with a NaN all NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z, nan = _shifted(x, dim)
        e = np.exp(z)
        s = np.sum(e, axis=dim, keepdims=True)
        y = np.where(s > 0, e / np.where(s > 0, s, 1.0), 0.0)
    return np.where(nan, np.nan, y)


def log_softmax_ref(x, dim):
    """float64 log_softmax: a slice of all -inf gives -inf, a slice with a NaN all NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z, nan = _shifted(x, dim)
        log_s = np.log(np.sum(np.exp(z), axis=dim, keepdims=True))
        y = np.where(np.isneginf(log_s), -np.inf, z - log_s)
    return np.where(nan, np.nan, y)


def softmax_backward_ref(g, y, dim):
    g, y = np.asarray(g, np.float64), np.asarray(y, np.float64)
    return y * (g - np.sum(g * y, axis=dim, keepdims=True))


def log_softmax_backward_ref(g, y, dim):
    g, y = np.asarray(g, np.float64), np.asarray(y, np.float64)
    with np.errstate(invalid="ignore"):
        return g - np.exp(y) * np.sum(g, axis=dim, keepdims=True)


def assert_matches(actual, expected, dtype):
    """Same NaN and infinity pattern, finite values close (a few ulp times the size)."""
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape
    got = actual.astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(expected)), (
        f"NaN pattern differs: {int(np.isnan(expected).sum())} expected, {int(np.isnan(got).sum())} got")
    inf = np.isinf(expected)
    assert np.array_equal(got[inf], expected[inf]), "infinities differ"
    fin = np.isfinite(expected)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got[fin], expected[fin], rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- softmax inputs

SLICES = ["all_nan", "nan_with_neg_inf", "one_nan", "nan_first_then_neg_inf", "all_neg_inf"]


def slice_values(kind, n, rng):
    """One slice of length n of the named kind."""
    v = rng.standard_normal(n) * 3
    if kind == "all_nan":
        v[:] = np.nan
    elif kind == "nan_with_neg_inf":
        v[:] = -np.inf
        v[n // 2] = np.nan
    elif kind == "one_nan":
        v[(2 * n) // 3] = np.nan
    elif kind == "nan_first_then_neg_inf":
        # finite, then NaN, then -inf: a NaN-dropping max ends at -inf.
        v[:] = -np.inf
        v[0] = 1.0
        v[min(1, n - 1)] = np.nan
    elif kind == "all_neg_inf":
        v[:] = -np.inf
    return v


def make_input(shape, dim, kind, dtype, seed):
    """Random finite x of `shape` with three slices along `dim` replaced by `kind`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    moved = np.moveaxis(x, dim, -1)  # a view: writes go to x
    n_slices = int(np.prod(moved.shape[:-1]))
    picks = sorted({0, n_slices // 2, n_slices - 1})
    for p in picks:
        idx = np.unravel_index(p, moved.shape[:-1])
        moved[idx] = slice_values(kind, shape[dim], rng)
    return x.astype(dtype)


# (shape, dim): last axis (contiguous rows, lengths below / above one vector and with
# tails), inner axis strided (dim=0 / dim=1 of 3-D arrays, inner below and above one
# chunk), and big enough that 2 threads split the work.
LAYOUTS = [
    ((4, 5), -1), ((4, 37), -1), ((3, 1003), -1), ((70, 1003), -1),
    ((5, 4), 0), ((37, 6), 0), ((9, 7, 3), 0), ((3, 11, 70), 1), ((4, 33, 1003), 1), ((2, 5, 19), -2),
]


@pytest.mark.parametrize("kind", SLICES)
@pytest.mark.parametrize("shape,dim", LAYOUTS, ids=[f"{s}-d{d}" for s, d in LAYOUTS])
def test_softmax_forward_nan_slices(shape, dim, kind, isa, threads, dtype):
    x = make_input(shape, dim, kind, dtype, seed=len(shape) * 100 + shape[dim])
    assert_matches(ops.softmax(x, dim), softmax_ref(x, dim), dtype)
    assert_matches(ops.log_softmax(x, dim), log_softmax_ref(x, dim), dtype)


@pytest.mark.parametrize("kind", SLICES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_forward_nan_non_contiguous(dim, kind, isa, dtype):
    base = make_input((9, 14, 40), dim, kind, dtype, seed=3)
    for x in (base[:, ::2, 1::3], base.transpose(2, 0, 1), base[::-1]):
        assert not x.flags.c_contiguous
        assert_matches(ops.softmax(x, dim), softmax_ref(x, dim), dtype)
        assert_matches(ops.log_softmax(x, dim), log_softmax_ref(x, dim), dtype)


@pytest.mark.parametrize("kind", ["all_nan", "nan_with_neg_inf", "one_nan"])
@pytest.mark.parametrize("shape,dim", LAYOUTS, ids=[f"{s}-d{d}" for s, d in LAYOUTS])
def test_softmax_backward_through_nan_forward(shape, dim, kind, isa, threads, dtype):
    """The saved output of a NaN slice is NaN, so its gradient slice is NaN too."""
    x = make_input(shape, dim, kind, dtype, seed=7 + shape[dim])
    g = np.random.default_rng(8).standard_normal(shape).astype(dtype)
    y, ly = ops.softmax(x, dim), ops.log_softmax(x, dim)
    assert_matches(ops.softmax_backward(g, y, dim), softmax_backward_ref(g, y, dim), dtype)
    assert_matches(ops.log_softmax_backward(g, ly, dim), log_softmax_backward_ref(g, ly, dim), dtype)
    nan_slices = np.isnan(x).any(axis=dim, keepdims=True) & np.ones(shape, bool)
    assert np.isnan(ops.softmax_backward(g, y, dim)[nan_slices]).all()
    assert np.isnan(ops.log_softmax_backward(g, ly, dim)[nan_slices]).all()


@pytest.mark.parametrize("shape,dim", LAYOUTS, ids=[f"{s}-d{d}" for s, d in LAYOUTS])
def test_softmax_backward_nan_in_grad(shape, dim, isa, threads, dtype):
    """A NaN in grad_out makes its whole slice of dx NaN (it enters the slice's sum)."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    x.flat[::7] = -np.inf  # softmax 0 there: 0 * NaN is still NaN
    g = make_input(shape, dim, "one_nan", dtype, seed=10)
    y, ly = ops.softmax(x, dim), ops.log_softmax(x, dim)
    assert_matches(ops.softmax_backward(g, y, dim), softmax_backward_ref(g, y, dim), dtype)
    assert_matches(ops.log_softmax_backward(g, ly, dim), log_softmax_backward_ref(g, ly, dim), dtype)


@pytest.mark.parametrize("shape,dim", LAYOUTS[:6], ids=[f"{s}-d{d}" for s, d in LAYOUTS[:6]])
def test_softmax_backward_nan_in_saved_output(shape, dim, isa, dtype):
    """A NaN in a saved softmax output makes the slice NaN (it enters sum(g * y));
    log_softmax's backward follows its formula g - exp(y) * sum(g), as PyTorch."""
    rng = np.random.default_rng(12)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y, ly = ops.softmax(x, dim), ops.log_softmax(x, dim)
    idx = tuple(s // 2 for s in shape)
    y[idx], ly[idx] = np.nan, np.nan
    assert_matches(ops.softmax_backward(g, y, dim), softmax_backward_ref(g, y, dim), dtype)
    assert_matches(ops.log_softmax_backward(g, ly, dim), log_softmax_backward_ref(g, ly, dim), dtype)


def test_softmax_nan_tiny_shapes(isa, dtype):
    """0-d arrays and slices of one element (all lanes but one are the load's fill)."""
    for x, dim in [(np.array(np.nan, dtype), 0), (np.array([np.nan], dtype), 0),
                   (np.array([[np.nan], [1.0]], dtype), 1), (np.array([[np.nan, 1.0]], dtype), 0)]:
        ref_dim = dim if x.ndim else None
        want = softmax_ref(x, ref_dim) if x.ndim else np.array(np.nan)
        lwant = log_softmax_ref(x, ref_dim) if x.ndim else np.array(np.nan)
        assert_matches(ops.softmax(x, dim), want, dtype)
        assert_matches(ops.log_softmax(x, dim), lwant, dtype)


def test_all_neg_inf_slice_keeps_documented_result(isa, dtype):
    x = np.full((3, 37), -np.inf, dtype)
    x[1] = np.arange(37)
    y, ly = ops.softmax(x, -1), ops.log_softmax(x, -1)
    assert (y[[0, 2]] == 0).all() and np.isneginf(ly[[0, 2]]).all()
    assert not np.isnan(y).any() and not np.isnan(ly).any()


def test_softmax_nan_matches_torch_when_available(isa):
    torch = pytest.importorskip("torch")
    for shape, dim in [((6, 37), -1), ((5, 6, 19), 0), ((5, 37, 6), 1)]:
        for kind in SLICES[:4]:
            x = make_input(shape, dim, kind, np.float32, seed=1)
            tx = torch.from_numpy(x)
            np.testing.assert_allclose(ops.softmax(x, dim), torch.softmax(tx, dim).numpy(), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(ops.log_softmax(x, dim), torch.log_softmax(tx, dim).numpy(),
                                       rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- cross_entropy


def ce_sample_ref(x, target, weight, ignore_index, eps):
    """float64 per-sample loss and d loss_i / d x (cotangent 1) of the fused
    cross-entropy; x (N, d..., C). NaN logits give a NaN loss and a NaN gradient row;
    an ignored sample contributes 0 to both (its loss does not depend on x)."""
    c = x.shape[-1]
    w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
    with np.errstate(invalid="ignore"):
        m = x.max(-1, keepdims=True)  # NaN when the row has one
        m = np.where(np.isneginf(m), 0.0, m)
        logp = (x - m) - np.log(np.exp(x - m).sum(-1, keepdims=True))
        keep = target != ignore_index
        t = np.where(keep, target, 0)
        loss = -(1 - eps) * np.take_along_axis(logp, t[..., None], -1)[..., 0] * w[t]
        if eps > 0:
            loss = loss - eps / c * (logp * w).sum(-1)
        q = eps / c * np.broadcast_to(w, x.shape).copy()
        np.put_along_axis(q, t[..., None], np.take_along_axis(q, t[..., None], -1) + (1 - eps) * w[t][..., None], -1)
        d = np.exp(logp) * q.sum(-1, keepdims=True) - q
    return np.where(keep, loss, 0.0), np.where(keep[..., None], d, 0.0), keep


CE_SHAPES = [(6, 3), (6, 40), (5, 1003), (4, 5, 3), (3, 7, 11), (300, 257)]


@pytest.mark.parametrize("kind", ["all_nan", "nan_with_neg_inf", "one_nan", "nan_first_then_neg_inf"])
@pytest.mark.parametrize("shape", CE_SHAPES, ids=[str(s) for s in CE_SHAPES])
@pytest.mark.parametrize("weighted,eps", [(False, 0.0), (True, 0.0), (False, 0.1), (True, 0.2)])
def test_cross_entropy_nan_logits(shape, kind, weighted, eps, isa, threads, dtype):
    rng = np.random.default_rng(20 + shape[1])
    x = make_input(shape, 1, kind, dtype, seed=shape[1])  # NaN slices along the classes
    c = shape[1]
    sample_shape = (shape[0],) + shape[2:]
    target = rng.integers(0, c, sample_shape)
    target.flat[1::4] = -100
    target.flat[0] = 0  # the first NaN sample is never ignored
    weight = (rng.random(c) + 0.5).astype(dtype) if weighted else None

    xl = np.moveaxis(x.astype(np.float64), 1, -1)
    ref_loss, ref_d, keep = ce_sample_ref(xl, target, weight, -100, eps)
    has_nan = np.isnan(xl).any(-1)
    assert (has_nan & keep).any()

    loss, lse = ops.cross_entropy_forward(x, target, weight, reduction="none", label_smoothing=eps)
    assert_matches(loss, ref_loss, dtype)
    assert np.array_equal(np.isnan(lse), has_nan)
    for reduction in ("mean", "sum"):
        assert np.isnan(ops.cross_entropy(x, target, weight, reduction=reduction, label_smoothing=eps))

    for cot in (np.ones(sample_shape, dtype), np.zeros(sample_shape, dtype)):
        dx = ops.cross_entropy_backward(cot, x, target, lse, weight, reduction="none", label_smoothing=eps)
        ref = np.moveaxis(ref_d * cot.astype(np.float64)[..., None], -1, 1)
        # 0 * NaN is NaN: a zero cotangent still gives NaN rows (as PyTorch).
        assert_matches(dx, ref, dtype)
        nan_rows = np.moveaxis(np.broadcast_to((has_nan & keep)[..., None], xl.shape), -1, 1)
        assert np.isnan(dx[nan_rows]).all()
    # Mean: the NaN samples' rows are NaN, the others stay finite.
    dx = ops.cross_entropy_backward(1.0, x, target, lse, weight, reduction="mean", label_smoothing=eps)
    nan_rows = np.moveaxis(np.broadcast_to((has_nan & keep)[..., None], xl.shape), -1, 1)
    assert np.isnan(dx[nan_rows]).all() and np.isfinite(dx[~nan_rows]).all()


def test_cross_entropy_nan_matches_torch_when_available(isa):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    for shape in [(6, 40), (4, 5, 3)]:
        x = make_input(shape, 1, "one_nan", np.float32, seed=2)
        target = np.arange(int(np.prod((shape[0],) + shape[2:]))).reshape((shape[0],) + shape[2:]) % shape[1]
        tx = torch.from_numpy(x).requires_grad_()
        tl = F.cross_entropy(tx, torch.from_numpy(target), reduction="none", label_smoothing=0.1)
        tl.sum().backward()
        loss, lse = ops.cross_entropy_forward(x, target, reduction="none", label_smoothing=0.1)
        np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-5, atol=1e-6)
        dx = ops.cross_entropy_backward(np.ones_like(loss), x, target, lse, reduction="none", label_smoothing=0.1)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- norms


def _nan_in(x, index):
    x = x.copy()
    x[index] = np.nan
    return x


@pytest.mark.parametrize("shape", [(3, 5), (4, 37), (70, 1003)], ids=str)
def test_layer_and_rms_norm_nan_rows(shape, isa, threads, dtype):
    rng = np.random.default_rng(30)
    x = _nan_in(rng.standard_normal(shape).astype(dtype), (1, shape[1] - 1))
    g = rng.standard_normal(shape).astype(dtype)
    row = np.zeros(shape, bool)
    row[1] = True
    w = (rng.random(shape[1]) + 0.5).astype(dtype)
    y, mean, rstd = ops.layer_norm_forward(x, shape[1], w, w)
    assert np.isnan(y[row]).all() and np.isfinite(y[~row]).all()
    assert np.isnan(mean[1]) and np.isnan(rstd[1])
    dx, dw, db = ops.layer_norm_backward(g, x, shape[1], w, mean, rstd)
    assert np.isnan(dx[row]).all() and np.isfinite(dx[~row]).all()
    assert np.isnan(dw).all() and np.isfinite(db).all()  # db = sum(g) never sees x
    y, rstd = ops.rms_norm_forward(x, shape[1], w)
    assert np.isnan(y[row]).all() and np.isfinite(y[~row]).all()
    dx, dw = ops.rms_norm_backward(g, x, shape[1], w, rstd)
    assert np.isnan(dx[row]).all() and np.isfinite(dx[~row]).all()
    # A NaN in grad_out spreads over its row's dx only.
    gn = _nan_in(g, (2, 0))
    x = rng.standard_normal(shape).astype(dtype)
    y, mean, rstd = ops.layer_norm_forward(x, shape[1])
    dx = ops.layer_norm_backward(gn, x, shape[1], None, mean, rstd)[0]
    assert np.isnan(dx[2]).all() and np.isfinite(np.delete(dx, 2, 0)).all()


@pytest.mark.parametrize("shape", [(3, 4, 1), (3, 4, 37), (4, 6, 4099)], ids=str)
def test_group_and_batch_norm_nan(shape, isa, threads, dtype):
    rng = np.random.default_rng(31)
    x = _nan_in(rng.standard_normal(shape).astype(dtype), (1, 2, shape[2] // 2))
    g = rng.standard_normal(shape).astype(dtype)
    group = np.zeros(shape, bool)
    cpg = shape[1] // 2  # 2 groups; channel 2 is in group 2 // cpg of sample 1
    group[1, (2 // cpg) * cpg:(2 // cpg + 1) * cpg] = True
    y, mean, rstd = ops.group_norm_forward(x, 2)
    assert np.isnan(y[group]).all() and np.isfinite(y[~group]).all()
    dx = ops.group_norm_backward(g, x, 2, None, mean, rstd)[0]
    assert np.isnan(dx[group]).all() and np.isfinite(dx[~group]).all()

    channel = np.zeros(shape, bool)
    channel[:, 2] = True
    rm, rv = np.zeros(shape[1], dtype), np.ones(shape[1], dtype)
    y, sm, sr = ops.batch_norm_forward(x, rm, rv, training=True)
    assert np.isnan(y[channel]).all() and np.isfinite(y[~channel]).all()
    assert np.isnan(rm[2]) and np.isnan(rv[2]) and np.isfinite(np.delete(rm, 2)).all()
    dx = ops.batch_norm_backward(g, x, None, sm, sr, True)[0]
    assert np.isnan(dx[channel]).all() and np.isfinite(dx[~channel]).all()
    # Eval: the statistics are constants, so only the NaN element itself is NaN.
    y = ops.batch_norm(x, np.zeros(shape[1], dtype), np.ones(shape[1], dtype), training=False)
    assert np.array_equal(np.isnan(y), np.isnan(x))


def test_norms_nan_match_torch_when_available():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = _nan_in(np.random.default_rng(32).standard_normal((3, 4, 5)).astype(np.float32), (1, 2, 3))
    tx = torch.from_numpy(x)
    assert np.array_equal(np.isnan(ops.group_norm(x, 2)), torch.isnan(F.group_norm(tx, 2)).numpy())
    assert np.array_equal(np.isnan(ops.layer_norm(x, 5)), torch.isnan(F.layer_norm(tx, (5,))).numpy())
    assert np.array_equal(np.isnan(ops.batch_norm(x, None, None, training=True)),
                          torch.isnan(F.batch_norm(tx, None, None, training=True)).numpy())


# ----------------------------------------------------------------------------- bounds

F32 = np.float32
X23 = np.ones((2, 3), F32)
T2 = np.array([0, 2])
XG = np.ones((2, 4, 3), F32)
XB = np.arange(24, dtype=F32).reshape(4, 3, 2)
BIG = [2 ** 63, -(2 ** 63) - 1, np.uint64(2 ** 64 - 1), 2 ** 200]


def _as_strided(shape, strides, dtype=F32, base=4):
    return np.lib.stride_tricks.as_strided(np.zeros(base, dtype), shape, strides)


SOFTMAX_CALLS = [
    ("softmax", lambda d: ops.softmax(X23, d)),
    ("log_softmax", lambda d: ops.log_softmax(X23, d)),
    ("softmax_backward", lambda d: ops.softmax_backward(X23, X23, d)),
    ("log_softmax_backward", lambda d: ops.log_softmax_backward(X23, X23, d)),
]


@pytest.mark.parametrize("big", BIG, ids=["2**63", "-2**63-1", "uint64_max", "2**200"])
@pytest.mark.parametrize("op,call", SOFTMAX_CALLS, ids=[c[0] for c in SOFTMAX_CALLS])
def test_softmax_dim_beyond_int64_is_value_error(op, call, big):
    # Was pybind11's "incompatible function arguments" TypeError, naming neither op nor dim.
    with pytest.raises(ValueError, match=rf"^{op}: dim=-?\d+ does not fit in int64$"):
        call(big)


def test_softmax_dim_types_checked_by_binding():
    for dim in (np.int64(-1), np.int32(1), np.uint8(0), -2):
        assert ops.softmax(X23, dim).shape == (2, 3)
    with pytest.raises(ValueError, match=r"^softmax: dim -9223372036854775808 is out of range"):
        ops.softmax(X23, -(2 ** 63))
    with pytest.raises(TypeError, match=r"^softmax: dim must be an int, got bool$"):
        dlkern._C.softmax(X23, True)  # the binding itself refuses bool (it took it as 1)
    with pytest.raises(TypeError, match=r"^log_softmax_backward: dim must be an int, got float$"):
        dlkern._C.log_softmax_backward(X23, X23, 1.0)


@pytest.mark.parametrize("big", BIG, ids=["2**63", "-2**63-1", "uint64_max", "2**200"])
def test_cross_entropy_ignore_index_beyond_int64_is_value_error(big):
    with pytest.raises(ValueError, match=r"^cross_entropy: ignore_index=-?\d+ does not fit in int64$"):
        ops.cross_entropy(X23, T2, ignore_index=big)
    with pytest.raises(ValueError, match=r"^cross_entropy_backward: ignore_index=-?\d+ does not fit in int64$"):
        ops.cross_entropy_backward(1.0, X23, T2, np.zeros(2, F32), ignore_index=big)
    with pytest.raises(ValueError, match=r"^cross_entropy: ignore_index=-?\d+ does not fit in int64$"):
        dlkern._C.cross_entropy_forward(X23, T2, None, big)


@pytest.mark.parametrize("bad", [-1, 3, 2 ** 62, -(2 ** 63), 2 ** 63 - 1])
def test_cross_entropy_target_out_of_range_never_read(bad, isa):
    target = np.array([0, bad])
    for ignore_index in (-100, 2, np.int64(-1) if bad != -1 else -7):
        with pytest.raises(ValueError, match=rf"^cross_entropy: target value {bad} \(flat index 1\) is out of range"):
            ops.cross_entropy(X23, target, ignore_index=ignore_index)
        with pytest.raises(ValueError, match=rf"^cross_entropy_backward: target value {bad} \(flat index 1\)"):
            ops.cross_entropy_backward(1.0, X23, target, np.zeros(2, F32), ignore_index=ignore_index)
    # (N, C, d) layout, and unsigned targets converted explicitly
    x3 = np.ones((2, 3, 2), F32)
    with pytest.raises(ValueError, match=r"^cross_entropy: target value .* is out of range"):
        ops.cross_entropy(x3, np.array([[0, 1], [bad, 0]]))
    with pytest.raises(ValueError, match=r"^cross_entropy: target value 18446744073709551615 does not fit in int64"):
        ops.cross_entropy(X23, np.array([0, 2 ** 64 - 1], np.uint64))


def test_cross_entropy_label_smoothing_type():
    with pytest.raises(TypeError, match=r"^cross_entropy: label_smoothing must be a real number, got str$"):
        ops.cross_entropy(X23, T2, label_smoothing="0.1")  # float() used to accept it
    with pytest.raises(ValueError, match=r"^cross_entropy: label_smoothing must be in \[0, 1\], got nan$"):
        ops.cross_entropy(X23, T2, label_smoothing=float("nan"))
    assert np.isfinite(ops.cross_entropy(X23, T2, label_smoothing=np.float32(0.25)))


GROUP_ERRORS = [
    (2.5, TypeError, r"^group_norm: num_groups must be an int, got float$"),  # int() truncated it to 2
    (True, TypeError, r"^group_norm: num_groups must be an int, got bool$"),
    ("2", TypeError, r"^group_norm: num_groups must be an int, got str$"),  # int("2") accepted it
    (2 ** 64, ValueError, r"^group_norm: num_groups=18446744073709551616 does not fit in int64$"),
    (0, ValueError, r"^group_norm: num_groups must be positive, got 0$"),
    (-2, ValueError, r"^group_norm: num_groups must be positive, got -2$"),
    (3, ValueError, r"^group_norm: the 4 channels of x .* are not divisible by num_groups=3$"),
    (8, ValueError, r"^group_norm: num_groups=8 exceeds the 4 channels of x"),
    (2 ** 63 - 1, ValueError, r"^group_norm: num_groups=9223372036854775807 exceeds the 4 channels"),
]


@pytest.mark.parametrize("groups,exc,pattern", GROUP_ERRORS, ids=[repr(g[0]) for g in GROUP_ERRORS])
def test_group_norm_num_groups_checked(groups, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ops.group_norm(XG, groups)
    with pytest.raises(exc, match=pattern.replace("group_norm:", "group_norm_backward:")):
        ops.group_norm_backward(XG, XG, groups, None, np.zeros((2, 2), F32), np.ones((2, 2), F32))


def test_group_norm_zero_channels_refuses_huge_num_groups():
    # C = 0 divides by anything: (N, num_groups) statistics were allocated as asked
    # (numpy's "array is too big", or a MemoryError for 2**40 groups).
    x = np.ones((2, 0, 3), F32)
    for groups in (2 ** 40, 2 ** 62):
        with pytest.raises(ValueError, match=rf"^group_norm: num_groups={groups} exceeds the 0 channels"):
            ops.group_norm(x, groups)
    y, mean, rstd = ops.group_norm_forward(x, 1)
    assert y.shape == (2, 0, 3) and mean.shape == (2, 1)
    assert ops.group_norm(XG, np.int64(2)).shape == XG.shape


EPS_CALLS = [
    ("layer_norm", lambda eps: ops.layer_norm(XB[0], 2, eps=eps)),
    ("rms_norm", lambda eps: ops.rms_norm(XB[0], 2, eps=eps)),
    ("group_norm", lambda eps: ops.group_norm(XB, 3, eps=eps)),
    ("batch_norm", lambda eps: ops.batch_norm(XB, None, None, training=True, eps=eps)),
]


@pytest.mark.parametrize("eps", [-1.0, -1e-30, float("nan"), float("inf")], ids=str)
@pytest.mark.parametrize("op,call", EPS_CALLS, ids=[c[0] for c in EPS_CALLS])
def test_norm_eps_must_be_finite_non_negative(op, call, eps):
    # A negative eps made var + eps negative and the output silently NaN.
    with pytest.raises(ValueError, match=rf"^{op}: eps must be finite and >= 0, got "):
        call(eps)


@pytest.mark.parametrize("op,call", EPS_CALLS, ids=[c[0] for c in EPS_CALLS])
def test_norm_eps_types(op, call):
    assert np.isfinite(call(0)).all()  # eps=0 is allowed
    assert np.isfinite(call(np.float32(1e-3))).all()
    with pytest.raises(TypeError, match=rf"^{op}: eps must be a real number, got str$"):
        call("1e-5")
    with pytest.raises(TypeError, match=r"^rms_norm: eps must be a real number, got str$"):
        dlkern._C.rms_norm_forward(X23, [3], None, "a")  # was a RuntimeError from pybind11's cast


@pytest.mark.parametrize("momentum", [float("nan"), float("inf"), -float("inf")], ids=str)
def test_batch_norm_momentum_must_be_finite(momentum):
    rm, rv = np.zeros(3, F32), np.ones(3, F32)
    with pytest.raises(ValueError, match=r"^batch_norm: momentum must be finite, got "):
        ops.batch_norm(XB, rm, rv, training=True, momentum=momentum)
    assert (rm == 0).all() and (rv == 1).all()  # the running statistics were not touched


def test_batch_norm_momentum_type():
    with pytest.raises(TypeError, match=r"^batch_norm: momentum must be a real number, got NoneType$"):
        ops.batch_norm(XB, np.zeros(3, F32), np.ones(3, F32), training=True, momentum=None)


NS_ERRORS = [
    ((3.9,), TypeError, r"^layer_norm: normalized_shape must be an int, got float$"),  # int() truncated to 3
    (3.0, TypeError, r"^layer_norm: normalized_shape must be an int or a sequence of ints, got float$"),
    ("3", TypeError, r"^layer_norm: normalized_shape must be an int or a sequence of ints, got str$"),
    ((True,), TypeError, r"^layer_norm: normalized_shape must be an int, got bool$"),
    (2 ** 64, ValueError, r"^layer_norm: normalized_shape=18446744073709551616 does not fit in int64$"),
    ((2, 2 ** 63), ValueError, r"^layer_norm: normalized_shape=9223372036854775808 does not fit in int64$"),
    ((-3,), ValueError, r"^layer_norm: normalized_shape \(-3,\) does not match the trailing dimensions"),
    ((), ValueError, r"^layer_norm: normalized_shape is empty"),
]


@pytest.mark.parametrize("ns,exc,pattern", NS_ERRORS, ids=[repr(n[0]) for n in NS_ERRORS])
def test_normalized_shape_checked(ns, exc, pattern):
    with pytest.raises(exc, match=pattern):
        ops.layer_norm(X23, ns)
    with pytest.raises(exc, match=pattern.replace("layer_norm:", "rms_norm:")):
        ops.rms_norm(X23, ns)


def test_normalized_shape_accepted_forms():
    for ns in (3, np.int64(3), [3], (3,), np.array([3]), np.array(3), (2, 3), [np.int32(2), 3]):
        assert ops.layer_norm(X23, ns).shape == (2, 3)
        assert ops.rms_norm(X23, ns).shape == (2, 3)


def test_gemm_alpha_beta_types():
    a = np.ones((2, 3), F32)
    with pytest.raises(TypeError, match=r"^gemm: alpha must be a real number, got str$"):
        ops.gemm(a, a, alpha="2", trans_b=True)
    with pytest.raises(TypeError, match=r"^gemm: beta must be a real number, got NoneType$"):
        ops.gemm(a, a, np.zeros((2, 2), F32), beta=None, trans_b=True)
    with pytest.raises(ValueError, match=r"^gemm: alpha is too large for a float"):
        ops.gemm(a, a, alpha=10 ** 400, trans_b=True)
    np.testing.assert_array_equal(ops.gemm(a, a, alpha=np.float32(2), trans_b=True), np.full((2, 2), 6, F32))


def test_gemm_single_column_c_with_zero_row_stride_refused():
    # n == 1 skipped the row-overlap check: every row (and thread) wrote one element.
    c = _as_strided((2, 1), (0, 4))
    with pytest.raises(ValueError, match=r"^gemm: the rows of c overlap \(row stride 0 bytes for 1 columns"):
        ops.gemm(np.ones((2, 3), F32), np.ones((3, 1), F32), c)


def test_matmul_self_overlapping_out_goes_through_a_temporary():
    # A zero batch stride in out used to reach the kernel ("gemm_strided_batched: stride_c
    # is 0"); numpy computes into a buffer and assigns, and so does dlkern now.
    rng = np.random.default_rng(40)
    a, b = rng.standard_normal((3, 2, 4)).astype(F32), rng.standard_normal((3, 4, 2)).astype(F32)
    want = _as_strided((3, 2, 2), (0, 8, 4))
    np.matmul(a, b, out=want)
    out = _as_strided((3, 2, 2), (0, 8, 4))
    assert ops.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-6)
    # interleaved rows (row stride 4 bytes for 2 columns)
    want = _as_strided((3, 2, 2), (0, 4, 4))
    np.matmul(a, b, out=want)
    out = _as_strided((3, 2, 2), (0, 4, 4))
    ops.matmul(a, b, out=out)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_matmul_batch_strides_that_overflow_when_merged():
    # merge_batch_axes multiplied stride * size in int64 (signed overflow for as_strided
    # views with huge strides); an empty batch means nothing is read.
    a = _as_strided((2 ** 40, 0, 1, 2), (2 ** 40, 4, 4, 4))
    assert ops.matmul(a, np.ones((2, 2), F32)).shape == (2 ** 40, 0, 1, 2)
    a = _as_strided((2, 2 ** 40, 0, 2), (8, 2 ** 40, 4, 4))  # 2**40 * 2**40 overflows
    assert ops.matmul(a, np.ones((2, 3), F32)).shape == (2, 2 ** 40, 0, 3)


def test_batch_norm_running_stats_aliasing_weight_or_bias_refused():
    # The running statistics are updated in place before weight/bias are read, so an
    # alias changed the affine parameters half-way through the call.
    x = np.random.default_rng(41).standard_normal((4, 3)).astype(F32)
    params = np.ones((2, 3), F32)
    rv = np.ones(3, F32)
    with pytest.raises(ValueError, match=r"^batch_norm: running_mean / running_var share memory with weight$"):
        ops.batch_norm(x, params[0], rv, params[0], None, training=True)
    with pytest.raises(ValueError, match=r"^batch_norm: running_mean / running_var share memory with bias$"):
        ops.batch_norm(x, np.zeros(3, F32), params[1], None, params[1], training=True)
    np.testing.assert_array_equal(params, np.ones((2, 3), F32))
    # Eval mode reads them only: aliasing is harmless there.
    assert np.isfinite(ops.batch_norm(x, params[0], params[1], params[0], params[1], training=False)).all()


def test_overlap_checks_survive_strides_past_the_address_space():
    # byte_range multiplied stride * (size - 1) in signed intptr_t: a view whose strides
    # reach past the address space overflowed, could pass as "no overlap" and let the
    # kernel write 2**62 bytes away. Run in a child: the old behaviour was a crash.
    import subprocess
    import sys
    code = (
        "import numpy as np\n"
        "from dlkern import ops\n"
        "c = np.lib.stride_tricks.as_strided(np.zeros(4, np.float32), (3, 2), (2**62, 4))\n"
        "try:\n"
        "    ops.gemm(np.ones((3, 3), np.float32), np.ones((3, 2), np.float32), c)\n"
        "except ValueError as e:\n"
        "    print('refused:', e)\n"
    )
    # The timeout only guards against a hang: a busy machine can take minutes to start Python.
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused: gemm: c shares memory with an input"), r.stdout
