"""layer_norm, rms_norm, group_norm and batch_norm against float64 NumPy references
written here, on every ISA path and 1 and 2 threads; float64 finite-difference gradient
checks of every op and argument; running statistics; errors.

Tolerance model: a normalised value is computed from a mean and variance that are
length-k reductions, so it errs by about eps * sqrt(k) relative to its size; on top,
the mean is rounded to the array's dtype, which moves (x - mean) by eps * |mean|, i.e.
eps * |mean| * rstd in the output. The bound below is C * eps * (sqrt(k + 1) * size +
|mean| * rstd * |weight|). A one-pass E[x^2] - E[x]^2 variance on 1e4 + noise errs by
eps * |mean|^2 / var ~ 1e8 eps, far outside it; an indexing bug errs by O(1).
"""

import zlib

import numpy as np
import pytest

import dlkern
from dlkern import ops
from helpers import check_grads, num_threads, using_isa

C_TOL = 8.0

try:  # optional oracle
    import torch
except ImportError:  # pragma: no cover
    torch = None


def _tol_check(actual, expected, dtype, units, what=""):
    """|actual - expected| <= C_TOL * eps(dtype) * units, elementwise."""
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == np.shape(expected), f"{what}: shape {actual.shape}, expected {np.shape(expected)}"
    eps = float(np.finfo(dtype).eps)
    tol = C_TOL * eps * np.broadcast_to(units, np.shape(expected))
    err = np.abs(actual.astype(np.float64) - expected)
    bad = ~(err <= tol)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), 0)), bad.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} out of tolerance; worst at {i}: "
                             f"got {actual[i]!r}, expected {expected[i]!r}, tol {tol[i]:.3g}")


def _seed(*parts):
    """A seed fixed by the test parameters (str hashes are salted per process)."""
    return zlib.crc32(repr(parts).encode())


def _rand(rng, shape, dtype, offset=0.0, scale=1.0):
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)


def _as64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------------------------- references


def ref_normalize(x, axes, eps, w=None, b=None, center=True):
    """xhat and y over `axes` in float64; w, b already broadcastable."""
    x = _as64(x)
    mean = x.mean(axis=axes, keepdims=True) if center else np.zeros_like(x.mean(axis=axes, keepdims=True))
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * rstd
    y = xhat * (1.0 if w is None else _as64(w)) + (0.0 if b is None else _as64(b))
    return y, mean, rstd, xhat


def ref_normalize_backward(dy, xhat, rstd, axes, w=None, center=True):
    """dx of y = xhat * w (+ b) with statistics over `axes`."""
    g = _as64(dy) * (1.0 if w is None else _as64(w))
    mean_g = g.mean(axis=axes, keepdims=True) if center else 0.0
    mean_gx = (g * xhat).mean(axis=axes, keepdims=True)
    return rstd * (g - mean_g - xhat * mean_gx)


def ln_units(x, xhat, rstd, mean, k, w=None, b=None):
    """Tolerance units of a normalised output (see the module docstring)."""
    w_abs = 1.0 if w is None else np.abs(_as64(w))
    size = (1.0 + np.abs(xhat)) * w_abs + (0.0 if b is None else np.abs(_as64(b)))
    return np.sqrt(k + 1.0) * size + 2.0 * np.abs(mean) * rstd * w_abs


def dweight_units(dy, xhat, mean, rstd, k, axes, count):
    """Tolerance units of dweight = sum over `axes` of dy * xhat: the summation's own
    rounding (sqrt(count) * sqrt(sum of terms^2)) plus each term's error, which comes
    from xhat: eps * (sqrt(k) * (1 + |xhat|) + 2 |mean| * rstd) relative to dy."""
    dy = np.abs(_as64(dy))
    terms = dy * xhat
    term_err = dy * (np.sqrt(k + 1.0) * (1 + np.abs(xhat)) + 2 * np.abs(mean) * rstd)
    return (np.sqrt(count + 1.0) * np.sqrt((terms ** 2).sum(axis=axes))
            + np.sqrt((term_err ** 2).sum(axis=axes)) + 1e-300)


def _check_affine_grads(dw, db, dy, xhat, w, red, count, mean, rstd, k, dtype):
    """dbias = sum of dy and dweight = sum of dy * xhat over the `count` positions of the
    axes `red` (dweight None without a weight); k: the statistics' reduction length."""
    _tol_check(db, _as64(dy).sum(axis=red), dtype,
               np.sqrt(count + 1.0) * np.sqrt((_as64(dy) ** 2).sum(axis=red)) + 1e-300, "dbias")
    if w is None:
        assert dw is None
    else:
        _tol_check(dw, (_as64(dy) * xhat).sum(axis=red), dtype,
                   dweight_units(dy, xhat, mean, rstd, k, red, count), "dweight")


# ----------------------------------------------------------------------------- layer norm

LN_CASES = [  # (x shape, normalized_shape)
    ((1, 1), (1,)),
    ((7, 1), (1,)),
    ((1, 37), (37,)),
    ((5, 33), (33,)),
    ((3, 4, 257), (257,)),
    ((6, 3, 5), (3, 5)),
    ((2, 70), (70,)),
    ((9, 1024), (1024,)),
    ((40, 1031), (1031,)),  # enough work for 2 threads
]
AFFINE = ["wb", "w", "none"]


@pytest.mark.parametrize("shape,ns", LN_CASES, ids=[f"{s}-{n}" for s, n in LN_CASES])
@pytest.mark.parametrize("affine", AFFINE)
def test_layer_norm(shape, ns, affine, isa, threads, dtype):
    rng = np.random.default_rng(_seed(shape, ns, affine))
    x = _rand(rng, shape, dtype, offset=0.3)
    w = _rand(rng, ns, dtype, offset=1.0) if affine in ("wb", "w") else None
    b = _rand(rng, ns, dtype) if affine == "wb" else None
    axes = tuple(range(len(shape) - len(ns), len(shape)))
    k = int(np.prod(ns))
    y, mean, rstd = ops.layer_norm_forward(x, ns, w, b, 1e-5)
    ry, rmean, rrstd, xhat = ref_normalize(x, axes, 1e-5, w, b)
    _tol_check(y, ry, dtype, ln_units(x, xhat, rrstd, rmean, k, w, b), "y")
    lead = shape[: len(shape) - len(ns)]
    _tol_check(mean, rmean.reshape(lead), dtype,
               (np.sqrt(k + 1.0) / rrstd + np.abs(rmean)).reshape(lead), "mean")
    _tol_check(rstd, rrstd.reshape(lead), dtype,
               (np.sqrt(k + 1.0) * rrstd * (1 + np.abs(rmean) * rrstd)).reshape(lead), "rstd")
    np.testing.assert_array_equal(ops.layer_norm(x, ns, w, b), y)

    dy = _rand(rng, shape, dtype)
    dx, dw, db = ops.layer_norm_backward(dy, x, ns, w, mean, rstd)
    rdx = ref_normalize_backward(dy, xhat, rrstd, axes, w)
    g = np.abs(_as64(dy)) * (1.0 if w is None else np.abs(_as64(w)))
    dx_units = rrstd * np.sqrt(k + 1.0) * (g + g.mean(axis=axes, keepdims=True)
                                          + (1 + np.abs(xhat)) * (g * (1 + np.abs(xhat))).mean(axis=axes, keepdims=True))
    _tol_check(dx, rdx, dtype, dx_units * (1 + np.abs(rmean) * rrstd), "dx")
    _check_affine_grads(dw, db, dy, xhat, w, tuple(range(len(shape) - len(ns))), int(np.prod(lead)) if lead else 1,
                        rmean, rrstd, k, dtype)
    assert ops.layer_norm_backward(dy, x, ns, w, mean, rstd, need_bias=False)[2] is None


def test_layer_norm_large_mean(isa, threads):
    """1e4 + noise in float32: a one-pass variance would lose everything here."""
    rng = np.random.default_rng(1)
    x = _rand(rng, (64, 1000), np.float32, offset=1e4)
    y, mean, rstd = ops.layer_norm_forward(x, 1000)
    ry, rmean, rrstd, xhat = ref_normalize(x, (1,), 1e-5)
    _tol_check(y, ry, np.float32, ln_units(x, xhat, rrstd, rmean, 1000), "y")
    # Direct bound: error far below the noise level (one-pass would be O(1) or NaN).
    assert np.abs(y - ry).max() < 5e-3
    np.testing.assert_allclose(rstd, rrstd[:, 0], rtol=1e-4)
    dy = _rand(rng, x.shape, np.float32)
    dx, _, db = ops.layer_norm_backward(dy, x, 1000, None, mean, rstd)
    rdx = ref_normalize_backward(dy, xhat, rrstd, (1,))
    assert np.abs(dx - rdx).max() < 5e-3 * np.abs(rdx).max()


# ----------------------------------------------------------------------------- rms norm

RMS_CASES = [((1, 1), (1,)), ((1, 37), (37,)), ((5, 33), (33,)), ((4, 3, 5), (3, 5)),
             ((3, 2, 257), (257,)), ((6, 768), (768,))]


@pytest.mark.parametrize("shape,ns", RMS_CASES, ids=[f"{s}-{n}" for s, n in RMS_CASES])
@pytest.mark.parametrize("with_weight", [True, False], ids=["w", "now"])
def test_rms_norm(shape, ns, with_weight, isa, threads, dtype):
    rng = np.random.default_rng(_seed(shape, ns, with_weight))
    x = _rand(rng, shape, dtype, offset=0.2)
    w = _rand(rng, ns, dtype, offset=1.0) if with_weight else None
    axes = tuple(range(len(shape) - len(ns), len(shape)))
    k = int(np.prod(ns))
    eps = float(np.finfo(dtype).eps)  # the eps=None default
    y, rstd = ops.rms_norm_forward(x, ns, w)
    ry, _, rrstd, xhat = ref_normalize(x, axes, eps, w, center=False)
    _tol_check(y, ry, dtype, ln_units(x, xhat, rrstd, 0.0, k, w), "y")
    lead = shape[: len(shape) - len(ns)]
    _tol_check(rstd, rrstd.reshape(lead), dtype, np.sqrt(k + 1.0) * rrstd.reshape(lead), "rstd")
    np.testing.assert_array_equal(ops.rms_norm(x, ns, w), y)
    y2, _ = ops.rms_norm_forward(x, ns, w, eps=0.5)
    _tol_check(y2, ref_normalize(x, axes, 0.5, w, center=False)[0], dtype,
               ln_units(x, xhat, rrstd, 0.0, k, w), "y eps=0.5")

    dy = _rand(rng, shape, dtype)
    dx, dw = ops.rms_norm_backward(dy, x, ns, w, rstd)
    rdx = ref_normalize_backward(dy, xhat, rrstd, axes, w, center=False)
    g = np.abs(_as64(dy)) * (1.0 if w is None else np.abs(_as64(w)))
    dx_units = rrstd * np.sqrt(k + 1.0) * (g + (1 + np.abs(xhat)) * (g * (1 + np.abs(xhat))).mean(axis=axes, keepdims=True))
    _tol_check(dx, rdx, dtype, dx_units, "dx")
    lead_axes = tuple(range(len(shape) - len(ns)))
    if w is None:
        assert dw is None
    else:
        rows = int(np.prod(lead))
        _tol_check(dw, (_as64(dy) * xhat).sum(axis=lead_axes), dtype,
                   dweight_units(dy, xhat, 0.0, rrstd, k, lead_axes, rows), "dweight")


# ----------------------------------------------------------------------------- group norm

GN_CASES = [  # (x shape, groups)
    ((1, 1), 1),
    ((2, 6), 3),
    ((1, 4, 1, 1), 2),
    ((3, 6, 5), 3),
    ((2, 6, 7, 3), 2),
    ((2, 8, 9, 9), 8),
    ((1, 5, 33), 1),
    ((2, 4, 70, 70), 2),  # enough work for 2 threads
]


def gn_ref(x, groups, w, b, eps):
    n, c = x.shape[:2]
    xg = _as64(x).reshape(n, groups, -1)
    _, mean, rstd, xhat = ref_normalize(xg, (2,), eps)
    bshape = (1, c) + (1,) * (x.ndim - 2)
    xhat = xhat.reshape(x.shape)
    y = xhat * (1.0 if w is None else _as64(w).reshape(bshape)) + (0.0 if b is None else _as64(b).reshape(bshape))
    return y, mean[..., 0], rstd[..., 0], xhat, bshape


@pytest.mark.parametrize("shape,groups", GN_CASES, ids=[f"{s}-g{g}" for s, g in GN_CASES])
@pytest.mark.parametrize("affine", AFFINE)
def test_group_norm(shape, groups, affine, isa, threads, dtype):
    rng = np.random.default_rng(_seed(shape, groups, affine))
    c = shape[1]
    x = _rand(rng, shape, dtype, offset=-0.4)
    w = _rand(rng, (c,), dtype, offset=1.0) if affine in ("wb", "w") else None
    b = _rand(rng, (c,), dtype) if affine == "wb" else None
    y, mean, rstd = ops.group_norm_forward(x, groups, w, b)
    ry, rmean, rrstd, xhat, bshape = gn_ref(x, groups, w, b, 1e-5)
    n = shape[0]
    k = x.size // (n * groups)
    grp = lambda a: np.repeat(a.reshape(n, groups), c // groups, axis=1).reshape((n, c) + (1,) * (x.ndim - 2))
    wb = None if w is None else w.reshape(bshape)
    bb = None if b is None else b.reshape(bshape)
    _tol_check(y, ry, dtype, ln_units(x, xhat, grp(rrstd), grp(rmean), k, wb, bb), "y")
    _tol_check(mean, rmean, dtype, np.sqrt(k + 1.0) / rrstd + np.abs(rmean), "mean")
    _tol_check(rstd, rrstd, dtype, np.sqrt(k + 1.0) * rrstd * (1 + np.abs(rmean) * rrstd), "rstd")
    np.testing.assert_array_equal(ops.group_norm(x, groups, w, b), y)

    dy = _rand(rng, shape, dtype)
    dx, dw, db = ops.group_norm_backward(dy, x, groups, w, mean, rstd)
    g64 = _as64(dy) * (1.0 if w is None else _as64(w).reshape(bshape))
    gg = g64.reshape(n, groups, -1)
    xh = xhat.reshape(n, groups, -1)
    rdx = (rrstd[..., None] * (gg - gg.mean(2, keepdims=True) - xh * (gg * xh).mean(2, keepdims=True))).reshape(shape)
    ga = np.abs(gg)
    units = (rrstd[..., None] * np.sqrt(k + 1.0) * (ga + ga.mean(2, keepdims=True)
             + (1 + np.abs(xh)) * (ga * (1 + np.abs(xh))).mean(2, keepdims=True))).reshape(shape)
    _tol_check(dx, rdx, dtype, units * (1 + np.abs(grp(rmean)) * grp(rrstd)), "dx")
    _check_affine_grads(dw, db, dy, xhat, w, (0,) + tuple(range(2, x.ndim)), x.size // c, grp(rmean), grp(rrstd), k,
                        dtype)


def test_group_norm_large_mean(isa, threads):
    rng = np.random.default_rng(2)
    x = _rand(rng, (2, 4, 30, 30), np.float32, offset=1e4)
    y, mean, rstd = ops.group_norm_forward(x, 2)
    ry = gn_ref(x, 2, None, None, 1e-5)[0]
    assert np.abs(y - ry).max() < 5e-3


# ----------------------------------------------------------------------------- batch norm

BN_CASES = [(2, 1), (5, 3), (1, 4, 3), (3, 6, 5), (2, 3, 7, 5), (4, 8, 9, 9), (2, 2, 1, 1),
            (300, 130), (5, 6, 40, 40)]  # the last two: enough work for 2 threads


def bn_ref(x, w, b, eps, training, rm=None, rv=None):
    red = (0,) + tuple(range(2, x.ndim))
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        _, mean, rstd, xhat = ref_normalize(x, red, eps)
    else:
        mean = _as64(rm).reshape(bshape)
        rstd = 1.0 / np.sqrt(_as64(rv).reshape(bshape) + eps)
        xhat = (_as64(x) - mean) * rstd
    y = xhat * (1.0 if w is None else _as64(w).reshape(bshape)) + (0.0 if b is None else _as64(b).reshape(bshape))
    return y, mean, rstd, xhat, red, bshape


@pytest.mark.parametrize("shape", BN_CASES, ids=[str(s) for s in BN_CASES])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm(shape, affine, training, isa, threads, dtype):
    rng = np.random.default_rng(_seed(shape, affine, training))
    c = shape[1]
    x = _rand(rng, shape, dtype, offset=0.5)
    w = _rand(rng, (c,), dtype, offset=1.0) if affine in ("wb", "w") else None
    b = _rand(rng, (c,), dtype) if affine == "wb" else None
    rm0 = _rand(rng, (c,), dtype, scale=0.3)
    rv0 = (0.5 + rng.random(c)).astype(dtype)
    rm, rv = rm0.copy(), rv0.copy()
    y, smean, srstd = ops.batch_norm_forward(x, rm, rv, w, b, training, 0.1, 1e-5)
    ry, rmean, rrstd, xhat, red, bshape = bn_ref(x, w, b, 1e-5, training, rm0, rv0)
    m = x.size // c
    wb = None if w is None else w.reshape(bshape)
    bb = None if b is None else b.reshape(bshape)
    _tol_check(y, ry, dtype, ln_units(x, xhat, rrstd, rmean, m, wb, bb), "y")
    _tol_check(smean, rmean.reshape(c), dtype, (np.sqrt(m + 1.0) / rrstd + np.abs(rmean)).reshape(c), "save_mean")
    _tol_check(srstd, rrstd.reshape(c), dtype, (np.sqrt(m + 1.0) * rrstd * (1 + np.abs(rmean) * rrstd)).reshape(c),
               "save_rstd")
    if training:
        var_b = ((_as64(x) - rmean) ** 2).mean(axis=red)
        exp_rm = 0.9 * _as64(rm0) + 0.1 * rmean.reshape(c)
        exp_rv = 0.9 * _as64(rv0) + 0.1 * var_b * m / (m - 1)
        _tol_check(rm, exp_rm, dtype, np.sqrt(m + 1.0) * (1 + np.abs(exp_rm) + np.sqrt(var_b)), "running_mean")
        _tol_check(rv, exp_rv, dtype, np.sqrt(m + 1.0) * (1 + exp_rv), "running_var")
    else:
        np.testing.assert_array_equal(rm, rm0)
        np.testing.assert_array_equal(rv, rv0)
    rm2, rv2 = rm0.copy(), rv0.copy()
    np.testing.assert_array_equal(ops.batch_norm(x, rm2, rv2, w, b, training), y)

    dy = _rand(rng, shape, dtype)
    dx, dw, db = ops.batch_norm_backward(dy, x, w, smean, srstd, training)
    wfull = 1.0 if w is None else _as64(w).reshape(bshape)
    g = _as64(dy) * wfull
    ga = np.abs(g)
    if training:
        rdx = rrstd * (g - g.mean(axis=red, keepdims=True) - xhat * (g * xhat).mean(axis=red, keepdims=True))
        units = rrstd * np.sqrt(m + 1.0) * (ga + ga.mean(axis=red, keepdims=True)
                                            + (1 + np.abs(xhat)) * (ga * (1 + np.abs(xhat))).mean(axis=red, keepdims=True))
    else:
        rdx = g * rrstd
        units = 2 * ga * rrstd
    _tol_check(dx, rdx, dtype, units * (1 + np.abs(rmean) * rrstd), "dx")
    _check_affine_grads(dw, db, dy, xhat, w, red, m, rmean, rrstd, m, dtype)


def test_batch_norm_large_mean(isa, threads):
    rng = np.random.default_rng(3)
    x = _rand(rng, (8, 3, 20, 20), np.float32, offset=1e4)
    y, _, _ = ops.batch_norm_forward(x, None, None, training=True)
    ry = bn_ref(x, None, None, 1e-5, True)[0]
    assert np.abs(y - ry).max() < 5e-3


def test_batch_norm_running_stats_over_steps():
    """Three training steps then eval: the running estimate follows PyTorch's formula."""
    rng = np.random.default_rng(4)
    rm, rv = np.zeros(3), np.ones(3)
    erm, erv = rm.copy(), rv.copy()
    for step in range(3):
        x = rng.standard_normal((4, 3, 5)) * (step + 1) + step
        ops.batch_norm(x, rm, rv, training=True, momentum=0.2)
        mu = x.mean(axis=(0, 2))
        var_u = x.var(axis=(0, 2), ddof=1)
        erm = 0.8 * erm + 0.2 * mu
        erv = 0.8 * erv + 0.2 * var_u
    np.testing.assert_allclose(rm, erm, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, erv, rtol=1e-12)
    x = rng.standard_normal((2, 3, 5))
    np.testing.assert_allclose(ops.batch_norm(x, rm, rv), (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5),
                               rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- thread agreement


def test_threads_agree_and_reductions_deterministic():
    rng = np.random.default_rng(5)
    x = _rand(rng, (300, 257), np.float32)
    w = _rand(rng, (257,), np.float32, offset=1.0)
    dy = _rand(rng, x.shape, np.float32)
    results = {}
    for n in (1, 2):
        with num_threads(n):
            y, mean, rstd = ops.layer_norm_forward(x, 257, w, w)
            first = ops.layer_norm_backward(dy, x, 257, w, mean, rstd)
            again = ops.layer_norm_backward(dy, x, 257, w, mean, rstd)
            for a, b in zip(first, again):
                np.testing.assert_array_equal(a, b)  # bitwise repeatable for a fixed thread count
            results[n] = (y,) + first
    for a, b in zip(results[1], results[2]):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * np.abs(a).max())


# ----------------------------------------------------------------------------- gradient checks (float64)

GRAD_ISAS = ["avx512", "generic"]


def _isas():
    return [i for i in GRAD_ISAS if i in dlkern.supported_isas()]


@pytest.mark.parametrize("isa_name", _isas())
@pytest.mark.parametrize("ns_dims", [1, 2])
def test_layer_norm_gradcheck(isa_name, ns_dims):
    rng = np.random.default_rng(10 + ns_dims)
    shape, ns = ((3, 7), (7,)) if ns_dims == 1 else ((2, 3, 4), (3, 4))
    x, w, b = rng.standard_normal(shape) + 2.0, rng.standard_normal(ns), rng.standard_normal(ns)
    with using_isa(isa_name):
        check_grads(lambda x, w, b: ops.layer_norm(x, ns, w, b),
                    lambda dy, x, w, b: ops.layer_norm_backward(dy, x, ns, w, *ops.layer_norm_forward(x, ns, w, b)[1:]),
                    [x, w, b], rng)
        check_grads(lambda x: ops.layer_norm(x, ns),
                    lambda dy, x: ops.layer_norm_backward(dy, x, ns, None, *ops.layer_norm_forward(x, ns)[1:])[:1],
                    [x], rng)


@pytest.mark.parametrize("isa_name", _isas())
def test_rms_norm_gradcheck(isa_name):
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((3, 2, 5)), rng.standard_normal((2, 5))
    with using_isa(isa_name):
        for eps in (None, 0.1):
            check_grads(lambda x, w: ops.rms_norm(x, (2, 5), w, eps),
                        lambda dy, x, w: ops.rms_norm_backward(dy, x, (2, 5), w,
                                                               ops.rms_norm_forward(x, (2, 5), w, eps)[1]),
                        [x, w], rng)
        check_grads(lambda x: ops.rms_norm(x, 5),
                    lambda dy, x: ops.rms_norm_backward(dy, x, 5, None, ops.rms_norm_forward(x, 5)[1])[:1],
                    [x], rng)


@pytest.mark.parametrize("isa_name", _isas())
def test_group_norm_gradcheck(isa_name):
    rng = np.random.default_rng(13)
    x, w, b = rng.standard_normal((2, 6, 3)) - 1.0, rng.standard_normal(6), rng.standard_normal(6)
    with using_isa(isa_name):
        check_grads(lambda x, w, b: ops.group_norm(x, 3, w, b),
                    lambda dy, x, w, b: ops.group_norm_backward(dy, x, 3, w, *ops.group_norm_forward(x, 3, w, b)[1:]),
                    [x, w, b], rng)
        check_grads(lambda x: ops.group_norm(x, 2),
                    lambda dy, x: ops.group_norm_backward(dy, x, 2, None, *ops.group_norm_forward(x, 2)[1:])[:1],
                    [x], rng)


@pytest.mark.parametrize("isa_name", _isas())
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5)])
def test_batch_norm_gradcheck(isa_name, training, shape):
    rng = np.random.default_rng(14)
    c = shape[1]
    x, w, b = rng.standard_normal(shape) + 1.5, rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), 0.5 + rng.random(c)
    # Training: no running stats (they would change between finite-difference calls).
    stats = (None, None) if training else (rm, rv)
    with using_isa(isa_name):
        fwd = lambda x, w, b: ops.batch_norm(x, *stats, w, b, training)
        bwd = lambda dy, x, w, b: ops.batch_norm_backward(dy, x, w, *ops.batch_norm_forward(x, *stats, w, b, training)[1:],
                                                          training)
        check_grads(fwd, bwd, [x, w, b], rng)
        check_grads(lambda x: ops.batch_norm(x, *stats, None, None, training),
                    lambda dy, x: ops.batch_norm_backward(dy, x, None, *ops.batch_norm_forward(x, *stats, None, None,
                                                                                               training)[1:], training)[:1],
                    [x], rng)


# ----------------------------------------------------------------------------- PyTorch oracle


@pytest.mark.skipif(torch is None, reason="PyTorch not installed")
def test_against_torch():
    F = torch.nn.functional
    rng = np.random.default_rng(20)
    x = rng.standard_normal((4, 6, 5, 3))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    tx = torch.from_numpy(x)
    np.testing.assert_allclose(ops.layer_norm(x, (5, 3)), F.layer_norm(tx, (5, 3)).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ops.rms_norm(x, 3), F.rms_norm(tx, (3,)).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ops.group_norm(x, 3, w, b),
                               F.group_norm(tx, 3, torch.from_numpy(w), torch.from_numpy(b)).numpy(),
                               rtol=1e-10, atol=1e-12)
    rm, rv = rng.standard_normal(6), 1 + rng.random(6)
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    y = ops.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3)
    ty = F.batch_norm(tx, trm, trv, torch.from_numpy(w), torch.from_numpy(b), training=True, momentum=0.3)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ops.batch_norm(x, rm, rv, w, b), F.batch_norm(tx, trm, trv, torch.from_numpy(w),
                                                                             torch.from_numpy(b)).numpy(),
                               rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- layouts and errors


def test_non_contiguous_input_is_copied_explicitly():
    rng = np.random.default_rng(30)
    x = rng.standard_normal((8, 6)).T  # (6, 8), Fortran order
    np.testing.assert_allclose(ops.layer_norm(x, 8), ops.layer_norm(np.ascontiguousarray(x), 8))
    with pytest.raises(ValueError, match="C-contiguous"):
        dlkern._C.layer_norm_forward(x, (8,))
    rm = np.zeros((3, 2))[:, 0]
    with pytest.raises(ValueError, match="running_mean"):
        ops.batch_norm(rng.standard_normal((4, 3)), rm, np.ones(3), training=True)


def _x(shape=(4, 6), dtype=np.float32):
    return np.ones(shape, dtype) + np.arange(np.prod(shape), dtype=dtype).reshape(shape)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: ops.layer_norm(_x().astype(np.int32), 6), TypeError, "layer_norm: x has dtype int32"),
    (lambda: ops.layer_norm(_x().astype(np.int16), 6), TypeError, "int16"),
    (lambda: ops.layer_norm(_x().tolist(), 6), TypeError, "numpy.ndarray"),
    (lambda: ops.layer_norm(_x(), 5), ValueError, r"normalized_shape \(5,\) does not match .* \(4, 6\)"),
    (lambda: ops.layer_norm(_x(), (3, 4, 6)), ValueError, "normalized_shape"),
    (lambda: ops.layer_norm(_x(), ()), ValueError, "empty"),
    (lambda: ops.layer_norm(_x(), 6, np.ones(5, np.float32)), ValueError, r"weight has shape \(5,\), expected \(6,\)"),
    (lambda: ops.layer_norm(_x(), 6, np.ones(6)), TypeError, "weight has dtype float64 but x"),
    (lambda: ops.layer_norm(_x(), 6, None, np.ones((1, 6), np.float32)), ValueError, "bias has shape"),
    (lambda: ops.layer_norm_backward(_x(), _x(), 6, None, np.zeros(3, np.float32), np.ones(4, np.float32)),
     ValueError, r"mean has shape \(3,\), expected \(4,\)"),
    (lambda: ops.layer_norm_backward(_x((4, 5)), _x(), 6, None, np.zeros(4, np.float32), np.ones(4, np.float32)),
     ValueError, "grad_out has shape"),
    (lambda: ops.layer_norm_backward(_x(dtype=np.float64), _x(), 6, None, np.zeros(4, np.float32),
                                     np.ones(4, np.float32)), TypeError, "grad_out has dtype float64"),
    (lambda: ops.rms_norm(_x(), 4), ValueError, "normalized_shape"),
    (lambda: ops.rms_norm(_x(), 6, np.ones(6, np.float32)[::2]), ValueError, "weight has shape"),
    (lambda: ops.rms_norm_backward(_x(), _x(), 6, None, None), ValueError, "rstd is None"),
    (lambda: ops.group_norm(_x((2, 6, 3)), 4), ValueError, "6 channels .* not divisible by num_groups=4"),
    (lambda: ops.group_norm(_x((2, 6, 3)), 0), ValueError, "num_groups must be positive"),
    (lambda: ops.group_norm(_x((6,)), 2), ValueError, "at least 2 dimensions"),
    (lambda: ops.group_norm(_x((2, 6, 3)), 3, np.ones(3, np.float32)), ValueError, "weight has shape"),
    (lambda: ops.group_norm(_x((2, 6, 3)).astype(np.int64), 3), TypeError, "int64"),
    (lambda: ops.group_norm_backward(_x((2, 6, 3)), _x((2, 6, 3)), 3, None, np.zeros((2, 2), np.float32),
                                     np.ones((2, 3), np.float32)), ValueError, r"mean has shape \(2, 2\)"),
    (lambda: ops.batch_norm(_x((1, 3)), None, None, training=True), ValueError, "more than 1 value per channel"),
    (lambda: ops.batch_norm(_x((1, 3, 1, 1)), np.zeros(3, np.float32), np.ones(3, np.float32), training=True),
     ValueError, "more than 1 value per channel"),
    (lambda: ops.batch_norm(_x((4, 3)), np.zeros(4, np.float32), np.ones(3, np.float32), training=True),
     ValueError, r"running_mean has shape \(4,\), expected \(3,\)"),
    (lambda: ops.batch_norm(_x((4, 3)), np.zeros(3, np.float32), np.ones((3, 1), np.float32)),
     ValueError, "running_var has shape"),
    (lambda: ops.batch_norm(_x((4, 3)), np.zeros(3), np.ones(3), training=True), TypeError, "running_mean has dtype"),
    (lambda: ops.batch_norm(_x((4, 3)), None, None, training=False), ValueError, "required when training=False"),
    (lambda: ops.batch_norm(_x((4, 3)), np.zeros(3, np.float32), None, training=True), ValueError, "both"),
    (lambda: ops.batch_norm(_x((4, 3)).astype(np.int32), None, None, training=True), TypeError, "int32"),
    (lambda: ops.batch_norm(_x((4,)), None, None, training=True), ValueError, "at least 2 dimensions"),
    (lambda: ops.batch_norm_backward(_x((4, 3)), _x((4, 3)), None, np.zeros(2, np.float32), np.ones(3, np.float32),
                                     True), ValueError, r"save_mean has shape \(2,\)"),
])
def test_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_read_only_running_stats_rejected():
    rm, rv = np.zeros(3), np.ones(3)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean is read-only"):
        ops.batch_norm(np.random.default_rng(0).standard_normal((4, 3)), rm, rv, training=True)
    # Eval reads them only: a read-only pair is fine.
    rv.flags.writeable = False
    ops.batch_norm(np.ones((4, 3)), rm, rv, training=False)


def test_empty_batch():
    x = np.zeros((0, 5), np.float32)
    y, mean, rstd = ops.layer_norm_forward(x, 5)
    assert y.shape == (0, 5) and mean.shape == (0,)
    dx, dw, db = ops.layer_norm_backward(x, x, 5, np.ones(5, np.float32), mean, rstd)
    assert dx.shape == (0, 5)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


# ----------------------------------------------------------------------------- large outputs (streaming stores)


def test_large_outputs_streaming_path(isa, threads):
    """Outputs over 4 MiB are written with non-temporal stores; odd row lengths make
    every row start unaligned, so the scalar peel before the aligned stores runs too."""
    rng = np.random.default_rng(40)
    x = _rand(rng, (1031, 1027), np.float32, offset=0.5)
    w = _rand(rng, (1027,), np.float32, offset=1.0)
    dy = _rand(rng, x.shape, np.float32)
    y, mean, rstd = ops.layer_norm_forward(x, 1027, w, w)
    ry, rmean, rrstd, xhat = ref_normalize(x, (1,), 1e-5, w, w)
    _tol_check(y, ry, np.float32, ln_units(x, xhat, rrstd, rmean, 1027, w, w), "layer_norm y")
    dx = ops.layer_norm_backward(dy, x, 1027, w, mean, rstd)[0]
    rdx = ref_normalize_backward(dy, xhat, rrstd, (1,), w)
    assert np.abs(dx - rdx).max() < 1e-4 * np.abs(rdx).max()
    y, rstd = ops.rms_norm_forward(x, 1027, w)
    assert np.abs(y - ref_normalize(x, (1,), float(np.finfo(np.float32).eps), w, center=False)[0]).max() < 1e-4

    xc = _rand(rng, (3, 6, 245, 245), np.float32, offset=-1.0)
    dyc = _rand(rng, xc.shape, np.float32)
    y, mean, rstd = ops.group_norm_forward(xc, 3)
    ry, _, rrstd, xhat, _ = gn_ref(xc, 3, None, None, 1e-5)
    assert np.abs(y - ry).max() < 1e-4
    dx = ops.group_norm_backward(dyc, xc, 3, None, mean, rstd)[0]
    xh = xhat.reshape(3, 3, -1)
    gg = _as64(dyc).reshape(3, 3, -1)
    rdx = (rrstd[..., None] * (gg - gg.mean(2, keepdims=True) - xh * (gg * xh).mean(2, keepdims=True))).reshape(xc.shape)
    assert np.abs(dx - rdx).max() < 1e-4 * np.abs(rdx).max()
    y, smean, srstd = ops.batch_norm_forward(xc, None, None, training=True)
    ry, _, rrstd, xhat, red, _ = bn_ref(xc, None, None, 1e-5, True)
    assert np.abs(y - ry).max() < 1e-4
    dx = ops.batch_norm_backward(dyc, xc, None, smean, srstd, True)[0]
    g = _as64(dyc)
    rdx = rrstd * (g - g.mean(axis=red, keepdims=True) - xhat * (g * xhat).mean(axis=red, keepdims=True))
    assert np.abs(dx - rdx).max() < 1e-4 * np.abs(rdx).max()
