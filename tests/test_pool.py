"""Pooling (dlkern.ops.max_pool2d / avg_pool2d / adaptive_avg_pool2d and backwards)
against float64 NumPy references (dlkern.reference, explicit window loops), on every
ISA path and 1 and 2 threads, plus finite-difference gradient checks and errors."""

import functools

import numpy as np
import pytest

import dlkern
from dlkern import ops
from dlkern import reference as R
from helpers import assert_close, check_grads, num_threads, rand

# ----------------------------------------------------------------------------- references


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# The float64 references (dlkern.reference): max pooling gives per window the last NaN if
# any, else the first maximum in scan order (rows then columns), and -inf / -1 for a
# window with no input; avg_pool2d follows PyTorch's divisor rule.
ref_max_pool, ref_max_backward = R.max_pool2d_forward, R.max_pool2d_backward
ref_avg_pool, ref_avg_backward = R.avg_pool2d, R.avg_pool2d_backward
ref_adaptive, ref_adaptive_backward = R.adaptive_avg_pool2d, R.adaptive_avg_pool2d_backward


# ----------------------------------------------------------------------------- cases

# (name, shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ("2x2s2_resnetish", (2, 3, 16, 40), 2, 2, 0, 1, False),
    ("3x3s2p1_resnet", (2, 3, 17, 45), 3, 2, 1, 1, False),
    ("3x3s1p1", (1, 2, 9, 37), 3, 1, 1, 1, False),
    ("kernel_equals_input", (2, 3, 5, 7), (5, 7), None, 0, 1, False),
    ("stride_gt_kernel", (2, 3, 11, 29), 2, 3, 0, 1, False),
    ("pad_half_kernel_4", (1, 2, 9, 35), 4, 2, 2, 1, False),
    ("ceil_partial", (1, 2, 10, 39), 3, 2, 0, 1, True),
    ("ceil_pad", (1, 2, 7, 34), 2, 2, 1, 1, True),
    ("dilation2", (2, 2, 13, 37), 3, 1, 2, 2, False),
    ("dilation2_s2_ceil", (1, 2, 12, 41), 3, 2, 1, 2, True),
    ("odd_batch1", (1, 3, 13, 31), 3, 2, 1, 1, False),
    ("kernel_1x1", (2, 3, 6, 19), 1, None, 0, 1, False),
    ("asymmetric", (1, 2, 9, 38), (2, 3), (1, 2), (1, 1), (2, 1), False),
    ("stride3_pad1", (1, 2, 10, 23), 3, 3, 1, 1, True),
    ("rows_skipped", (1, 2, 12, 36), 2, (3, 2), 0, 1, False),
]

AVG_CASES = [
    ("2x2s2", (2, 3, 16, 40), 2, 2, 0, False),
    ("3x3s2p1", (2, 3, 17, 45), 3, 2, 1, False),
    ("3x3s1p1", (1, 2, 9, 37), 3, 1, 1, False),
    ("kernel_equals_input", (2, 3, 5, 7), (5, 7), None, 0, False),
    ("stride_gt_kernel", (2, 3, 11, 29), 2, 3, 0, False),
    ("pad_half_kernel_4", (1, 2, 9, 35), 4, 2, 2, False),
    ("ceil_partial", (1, 2, 10, 39), 3, 2, 0, True),
    ("ceil_pad", (1, 2, 7, 34), 2, 2, 1, True),
    ("odd_batch1", (1, 3, 13, 31), 3, 2, 1, False),
    ("kernel_1x1", (2, 3, 6, 19), 1, None, 0, False),
    ("asymmetric", (1, 2, 9, 38), (2, 3), (1, 2), (1, 1), True),
    ("stride3_pad1", (1, 2, 10, 23), 3, 3, 1, True),
    ("rows_skipped", (1, 2, 12, 36), 2, (3, 2), 0, False),
    ("rows_skipped_s1", (1, 2, 13, 30), (1, 3), (4, 1), 0, True),
]

ADAPTIVE_CASES = [
    ((2, 3, 7, 11), (1, 1)),
    ((1, 2, 40, 37), (1, 1)),
    ((2, 3, 7, 11), (3, 5)),
    ((1, 2, 8, 8), (4, 4)),
    ((1, 2, 7, 7), (5, 5)),
    ((1, 2, 5, 6), (9, 13)),
    ((1, 1, 1, 1), (1, 1)),
]


def case_input(shape, dtype, seed):
    return rand(np.random.default_rng(seed), shape, dtype)


@functools.lru_cache(maxsize=None)
def max_reference(case_index, dtype_name):
    _, shape, k, s, p, d, cm = MAX_CASES[case_index]
    x = case_input(shape, np.dtype(dtype_name), case_index)
    y, idx = ref_max_pool(x, k, k if s is None else s, p, d, cm)
    g = case_input(y.shape, np.dtype(dtype_name), 100 + case_index)
    return x, y, idx, g, ref_max_backward(g, idx, x.shape)


@functools.lru_cache(maxsize=None)
def avg_reference(case_index, dtype_name, count_include_pad, divisor_override):
    _, shape, k, s, p, cm = AVG_CASES[case_index]
    s = k if s is None else s
    x = case_input(shape, np.dtype(dtype_name), case_index)
    y = ref_avg_pool(x, k, s, p, cm, count_include_pad, divisor_override)
    g = case_input(y.shape, np.dtype(dtype_name), 100 + case_index)
    return x, y, g, ref_avg_backward(g, x.shape, k, s, p, cm, count_include_pad, divisor_override)


# ----------------------------------------------------------------------------- max pool


@pytest.mark.parametrize("case", range(len(MAX_CASES)), ids=[c[0] for c in MAX_CASES])
def test_max_pool2d(case, isa, threads, dtype):
    name, shape, k, s, p, d, cm = MAX_CASES[case]
    x, y_ref, idx_ref, g, dx_ref = max_reference(case, np.dtype(dtype).name)
    x_before = x.copy()
    y, idx = ops.max_pool2d(x, k, s, p, d, cm, return_indices=True)
    assert y.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref.astype(dtype))   # a max is exact
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(ops.max_pool2d(x, k, s, p, d, cm), y)  # value-only path
    y2, idx2 = ops.max_pool2d_forward(x, k, s, p, d, cm)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(idx2, idx)
    np.testing.assert_array_equal(x, x_before)
    dx = ops.max_pool2d_backward(g, idx, x.shape)
    # Overlapping windows add several gradients into one input (at most k_h*k_w).
    kk = int(np.prod(pair(k)))
    assert_close(dx, dx_ref, kk, dtype)


def test_max_pool2d_ties_pick_first_in_scan_order(isa, threads):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(2, 3, 11, 37)).astype(np.float32)   # many ties
    for k, s, p, d in [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 1), (3, 2, 2, 2)]:
        y_ref, idx_ref = ref_max_pool(x, k, s, p, d, False)
        y, idx = ops.max_pool2d(x, k, s, p, d, return_indices=True)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(idx, idx_ref, err_msg=f"k={k} s={s} p={p} d={d}")


def test_max_pool2d_all_minus_inf_gives_first_valid_index(isa):
    x = np.full((1, 2, 6, 36), -np.inf, np.float32)
    y, idx = ops.max_pool2d(x, 3, 2, 1, return_indices=True)
    y_ref, idx_ref = ref_max_pool(x, 3, 2, 1, 1, False)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)


@pytest.mark.parametrize("k,s,p", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (3, 3, 0)])
def test_max_pool2d_nan_propagates(isa, threads, dtype, k, s, p):
    rng = np.random.default_rng(3)
    x = rand(rng, (2, 2, 12, 40), dtype)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[0, 0, 0, :4] = np.nan                       # several NaNs in one window
    y_ref, idx_ref = ref_max_pool(x, k, s, p, 1, False)
    y, idx = ops.max_pool2d(x, k, s, p, return_indices=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    np.testing.assert_array_equal(y[~np.isnan(y)], y_ref[~np.isnan(y_ref)].astype(dtype))
    np.testing.assert_array_equal(idx, idx_ref)
    y_only = ops.max_pool2d(x, k, s, p)
    np.testing.assert_array_equal(np.isnan(y_only), np.isnan(y_ref))


def test_max_pool2d_empty_window_with_dilation():
    # Rows -1 and 2 of a 2-row input: the window holds no element.
    x = np.arange(4, dtype=np.float64).reshape(1, 1, 2, 2)
    y, idx = ops.max_pool2d(x, 2, 1, 1, 3, return_indices=True)
    y_ref, idx_ref = ref_max_pool(x, 2, 1, 1, 3, False)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    assert (idx == -1).any()
    dx = ops.max_pool2d_backward(np.ones_like(y), idx, x.shape)   # -1 is skipped
    np.testing.assert_array_equal(dx, ref_max_backward(np.ones_like(y), idx_ref, x.shape))


def test_max_pool2d_3d_input_and_noncontiguous():
    rng = np.random.default_rng(5)
    x4 = rand(rng, (2, 3, 14, 40), np.float32)
    x3 = x4[1]
    y3, i3 = ops.max_pool2d(x3, 3, 2, 1, return_indices=True)
    y4, i4 = ops.max_pool2d(x4, 3, 2, 1, return_indices=True)
    assert y3.shape == y4.shape[1:]
    np.testing.assert_array_equal(y3, y4[1])
    np.testing.assert_array_equal(i3, i4[1])
    dx3 = ops.max_pool2d_backward(np.ones_like(y3), i3, x3.shape)
    assert dx3.shape == x3.shape
    view = np.ascontiguousarray(x4.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # NCHW values, other strides
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(ops.max_pool2d(view, 3, 2, 1), y4)


def test_max_pool2d_gradient_finite_differences():
    rng = np.random.default_rng(11)
    shape = (1, 2, 5, 7)
    # Distinct, well separated values: no ties, so the max is differentiable.
    x = (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1).astype(np.float64)
    for k, s, p, d, cm in [(2, 2, 0, 1, True), (3, 2, 1, 1, False), (3, 1, 1, 2, False)]:
        def forward(x_):
            return ops.max_pool2d(x_, k, s, p, d, cm)

        def backward(w, x_):
            _, idx = ops.max_pool2d(x_, k, s, p, d, cm, return_indices=True)
            return (ops.max_pool2d_backward(w, idx, x_.shape),)

        check_grads(forward, backward, [x], rng, eps=1e-4)


# ----------------------------------------------------------------------------- avg pool


@pytest.mark.parametrize("case", range(len(AVG_CASES)), ids=[c[0] for c in AVG_CASES])
@pytest.mark.parametrize("cip,div", [(True, None), (False, None), (True, 5)], ids=["incl_pad", "excl_pad", "div5"])
def test_avg_pool2d(case, cip, div, isa, threads, dtype):
    name, shape, k, s, p, cm = AVG_CASES[case]
    x, y_ref, g, dx_ref = avg_reference(case, np.dtype(dtype).name, cip, div)
    kk = int(np.prod(pair(k)))
    y = ops.avg_pool2d(x, k, s, p, cm, cip, div)
    assert_close(y, y_ref, kk, dtype)
    dx = ops.avg_pool2d_backward(g, x.shape, k, s, p, cm, cip, div)
    assert_close(dx, dx_ref, kk, dtype)


def test_avg_pool2d_3d_input():
    rng = np.random.default_rng(2)
    x = rand(rng, (3, 9, 20), np.float64)
    y = ops.avg_pool2d(x, 3, 2, 1)
    assert_close(y, ref_avg_pool(x[None], 3, 2, 1, False, True, None)[0], 9, np.float64)
    g = rand(rng, y.shape, np.float64)
    dx = ops.avg_pool2d_backward(g, x.shape, 3, 2, 1)
    assert_close(dx, ref_avg_backward(g[None], (1,) + x.shape, 3, 2, 1, False, True, None)[0], 9, np.float64)


def test_avg_pool2d_gradient_finite_differences():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 2, 5, 7))
    for k, s, p, cm, cip, div in [(2, 2, 0, True, True, None), (3, 2, 1, False, False, None),
                                  (3, 1, 1, True, True, 4)]:
        check_grads(lambda x_: ops.avg_pool2d(x_, k, s, p, cm, cip, div),
                    lambda w, x_: (ops.avg_pool2d_backward(w, x_.shape, k, s, p, cm, cip, div),),
                    [x], rng)


# ----------------------------------------------------------------------------- adaptive


@pytest.mark.parametrize("shape,size", ADAPTIVE_CASES, ids=[f"{c[0][2]}x{c[0][3]}->{c[1][0]}x{c[1][1]}" for c in ADAPTIVE_CASES])
def test_adaptive_avg_pool2d(shape, size, isa, threads, dtype):
    rng = np.random.default_rng(sum(shape) + sum(size))
    x = rand(rng, shape, dtype)
    k = int(np.ceil(shape[2] / size[0]) + 1) * int(np.ceil(shape[3] / size[1]) + 1)
    y = ops.adaptive_avg_pool2d(x, size)
    assert_close(y, ref_adaptive(x, size), k, dtype)
    g = rand(rng, y.shape, dtype)
    dx = ops.adaptive_avg_pool2d_backward(g, x.shape)
    assert_close(dx, ref_adaptive_backward(g, x.shape), 4, dtype)


def test_adaptive_avg_pool2d_int_none_and_3d():
    rng = np.random.default_rng(4)
    x = rand(rng, (2, 6, 9), np.float64)
    assert_close(ops.adaptive_avg_pool2d(x, 1), ref_adaptive(x[None], (1, 1))[0], 54, np.float64)
    assert_close(ops.adaptive_avg_pool2d(x, (None, 4)), ref_adaptive(x[None], (6, 4))[0], 9, np.float64)
    g = rand(rng, (2, 1, 1), np.float64)
    assert_close(ops.adaptive_avg_pool2d_backward(g, x.shape), ref_adaptive_backward(g[None], (1,) + x.shape)[0],
                 1, np.float64)


def test_adaptive_avg_pool2d_gradient_finite_differences():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((1, 2, 5, 7))
    for size in [(1, 1), (3, 4), (2, 5)]:
        check_grads(lambda x_: ops.adaptive_avg_pool2d(x_, size),
                    lambda w, x_: (ops.adaptive_avg_pool2d_backward(w, x_.shape),), [x], rng)


# ----------------------------------------------------------------------------- threads


def test_results_identical_across_thread_counts(isa):
    rng = np.random.default_rng(9)
    x = rand(rng, (3, 5, 23, 50), np.float32)
    outs = []
    for n in (1, 2):
        with num_threads(n):
            y, idx = ops.max_pool2d(x, 3, 2, 1, return_indices=True)
            a = ops.avg_pool2d(x, 3, 2, 1)
            da = ops.avg_pool2d_backward(a, x.shape, 3, 2, 1)
            dm = ops.max_pool2d_backward(y, idx, x.shape)
            outs.append((y, idx, a, da, dm, ops.adaptive_avg_pool2d(x, 1)))
    for first, second in zip(*outs):
        np.testing.assert_array_equal(first, second)


# ----------------------------------------------------------------------------- errors

X = np.zeros((1, 2, 6, 6), np.float32)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.max_pool2d(np.zeros((6, 6), np.float32), 2), ValueError, "3-D .* or 4-D"),
    (lambda: ops.max_pool2d(np.zeros((1, 1, 1, 6, 6), np.float32), 2), ValueError, "4-D"),
    (lambda: ops.avg_pool2d(np.zeros((6, 6), np.float32), 2), ValueError, "avg_pool2d"),
    (lambda: ops.adaptive_avg_pool2d(np.zeros(6, np.float32), 2), ValueError, "adaptive_avg_pool2d"),
    (lambda: ops.max_pool2d(X, 0), ValueError, "kernel_size must be positive"),
    (lambda: ops.max_pool2d(X, (2, -1)), ValueError, "kernel_size must be positive"),
    (lambda: ops.avg_pool2d(X, 2, 0), ValueError, "stride must be positive"),
    (lambda: ops.max_pool2d(X, 2, -1), ValueError, "stride must be positive"),
    (lambda: ops.max_pool2d(X, 2, dilation=0), ValueError, "dilation must be positive"),
    (lambda: ops.max_pool2d(X, 3, padding=2), ValueError, "half the effective kernel"),
    (lambda: ops.avg_pool2d(X, 2, padding=(0, 2)), ValueError, "half the effective kernel"),
    (lambda: ops.max_pool2d(X, 2, padding=-1), ValueError, "non-negative"),
    (lambda: ops.max_pool2d(X, 7), ValueError, "too small"),
    (lambda: ops.avg_pool2d(X, (2, 7)), ValueError, "too small"),
    (lambda: ops.max_pool2d(np.zeros((1, 1, 6, 6), np.int32), 2), TypeError, "int32"),
    (lambda: ops.avg_pool2d(np.zeros((1, 1, 6, 6), np.int16), 2), TypeError, "int16"),
    (lambda: ops.adaptive_avg_pool2d(np.zeros((1, 1, 6, 6), np.int64), 2), TypeError, "int64"),
    (lambda: ops.max_pool2d([[[[1.0]]]], 1), TypeError, "numpy.ndarray"),
    (lambda: ops.max_pool2d(X, 2.5), TypeError, "kernel_size"),
    (lambda: ops.max_pool2d(X, (2, 2, 2)), ValueError, "kernel_size"),
    (lambda: ops.adaptive_avg_pool2d(X, 0), ValueError, "output_size"),
    (lambda: ops.adaptive_avg_pool2d(X, (2, 0)), ValueError, "output_size"),
    (lambda: ops.avg_pool2d(X, 2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: ops.max_pool2d(np.zeros((1, 1, 0, 6), np.float32), 1), ValueError, "H and W"),
    (lambda: ops.max_pool2d(X, 2, dilation=2**40), ValueError, "too large"),
    (lambda: ops.max_pool2d(X, 2, stride=2**70), ValueError, "max_pool2d: stride .* too large"),
], ids=lambda v: None if callable(v) or isinstance(v, type) else str(v)[:30])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_backward_errors():
    y, idx = ops.max_pool2d(X, 2, return_indices=True)
    g = np.ones_like(y)
    with pytest.raises(ValueError, match="indices has shape"):
        ops.max_pool2d_backward(g, idx[:, :, :2], X.shape)
    with pytest.raises(TypeError, match="int64"):
        ops.max_pool2d_backward(g, idx.astype(np.int32), X.shape)
    with pytest.raises(TypeError, match="int64"):
        ops.max_pool2d_backward(g, idx.astype(np.float64), X.shape)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        ops.max_pool2d_backward(g, idx.tolist(), X.shape)
    bad = idx.copy()
    bad[0, 1, 2, 2] = 36                                # one past the 6x6 plane
    with pytest.raises(ValueError, match="outside"):
        ops.max_pool2d_backward(g, bad, X.shape)
    bad[0, 1, 2, 2] = -2
    with pytest.raises(ValueError, match="outside"):
        ops.max_pool2d_backward(g, bad, X.shape)
    with pytest.raises(ValueError, match="N and C must agree"):
        ops.max_pool2d_backward(g, idx, (1, 3, 6, 6))
    with pytest.raises(ValueError, match="input_shape"):
        ops.max_pool2d_backward(g, idx, (2, 6, 6))
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.max_pool2d_backward(g.astype(np.int32), idx, X.shape)
    a = ops.avg_pool2d(X, 2)
    with pytest.raises(ValueError, match="grad_out has shape"):
        ops.avg_pool2d_backward(a, X.shape, 3)
    with pytest.raises(ValueError, match="half the effective kernel"):
        ops.avg_pool2d_backward(a, X.shape, 2, padding=2)
    with pytest.raises(ValueError, match="N and C must agree"):
        ops.adaptive_avg_pool2d_backward(a, (2, 2, 6, 6))
    # _C directly: wrong ndim and non-contiguous input are errors, not crashes.
    with pytest.raises(ValueError, match="4-D"):
        dlkern._C.max_pool2d_forward(X[0, 0], 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        dlkern._C.avg_pool2d(X[:, :, :, ::2], 2)


# ----------------------------------------------------------------------------- PyTorch parity


def test_matches_pytorch_when_installed():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(21)
    x = rng.integers(-3, 3, size=(2, 3, 15, 37)).astype(np.float32)  # ties included
    x[0, 0, 3, 5] = np.nan
    tx = torch.from_numpy(x)
    for k, s, p, d, cm in [(2, 2, 0, 1, False), (3, 2, 1, 1, True), (3, 1, 1, 2, False), (4, 3, 2, 1, True)]:
        y, idx = ops.max_pool2d(x, k, s, p, d, cm, return_indices=True)
        ty, ti = F.max_pool2d(tx, k, s, p, d, cm, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, ti.numpy())
        if d == 1:
            xf = np.nan_to_num(x)
            for cip in (True, False):
                ya = ops.avg_pool2d(xf, k, s, p, cm, cip)
                np.testing.assert_allclose(ya, F.avg_pool2d(torch.from_numpy(xf), k, s, p, cm, cip).numpy(),
                                           rtol=1e-6, atol=1e-6)
