"""softmax / log_softmax over any axis and their backward passes, against float64
NumPy references (dlkern.reference), on every ISA path, 1 and 2 threads, float32/float64.

Tolerances: softmax outputs are checked relative to their own size (an exp, a
division and a sum of `dim` terms: a few ulp times sqrt(dim)); log_softmax outputs
relative to max(|y|, 1) (a subtraction and a log). Values below dtype's smallest
normal number are compared absolutely (a float32 softmax rounds 1e-150 to 0).
"""

import numpy as np
import pytest

import dlkern
from dlkern import ops
from dlkern import reference as R
from helpers import assert_close, check_grads, num_threads, raises_each

def rel_scale(ref, dtype):
    return np.abs(ref) + np.finfo(dtype).tiny


# float64 references: an all -inf slice gives 0 (softmax) / -inf (log_softmax).
softmax_ref, log_softmax_ref = R.softmax, R.log_softmax


def check_forward(x, dim, dtype):
    k = x.shape[dim] if x.ndim else 1
    ref = softmax_ref(x, dim)
    assert_close(ops.softmax(x, dim), ref, k, dtype, scale=rel_scale(ref, dtype))
    lref = log_softmax_ref(x, dim)
    assert_close(ops.log_softmax(x, dim), lref, k, dtype, scale=np.maximum(np.abs(lref), 1.0))


# (shape, dim): 1, odd, prime and 1000+3 sizes; every axis of 3-D inputs; sizes big
# enough (> 65536 elements) that 2 threads really split the work.
FORWARD_CASES = [
    ((1,), -1), ((7,), 0), ((1, 1), -1), ((3, 7), -1), ((3, 7), 0), ((5, 1003), -1), ((70, 1003), 1),
    ((2, 3, 5), 0), ((2, 3, 5), 1), ((2, 3, 5), -1), ((2, 3, 5), 2), ((3, 1003, 37), 1),
    ((5, 17, 1003), 0), ((4, 31, 64), -2), ((2, 1, 3), 1), ((9, 33, 1), 1),
]


@pytest.mark.parametrize("shape,dim", FORWARD_CASES, ids=[f"{s}-d{d}" for s, d in FORWARD_CASES])
def test_forward_matches_reference(shape, dim, isa, threads, dtype):
    rng = np.random.default_rng(len(shape) * 1000 + shape[-1] + dim)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    before = x.copy()
    check_forward(x, dim, dtype)
    np.testing.assert_array_equal(x, before)


def test_zero_dim_array(dtype):
    x = np.array(3.5, dtype)
    assert ops.softmax(x).shape == () and float(ops.softmax(x)) == 1.0
    assert float(ops.log_softmax(x, 0)) == 0.0


def test_empty_arrays(dtype):
    for shape, dim in [((0, 5), -1), ((3, 0), -1), ((3, 0, 2), 0)]:
        x = np.zeros(shape, dtype)
        assert ops.softmax(x, dim).shape == shape
        assert ops.log_softmax_backward(x, x, dim).shape == shape


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_large_logits(dim, isa, dtype):
    rng = np.random.default_rng(5)
    x = (rng.uniform(-1.0, 1.0, (6, 40, 33)) * 1e4).astype(dtype)
    x[:, :, 0] = 1e4  # ties at the maximum
    check_forward(x, dim, dtype)
    check_forward((1e4 + rng.standard_normal((6, 40, 33)) * 3).astype(dtype), dim, dtype)
    y = ops.softmax(x, dim)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_neg_inf_entries_and_rows(dim, isa, threads, dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 19, 1003)).astype(dtype)
    x[rng.random(x.shape) < 0.3] = -np.inf
    # Make whole slices along `dim` -inf: two of them in different places.
    index = [slice(None)] * 3
    other = [a for a in range(3) if a != dim % 3]
    for k in (0, 2):
        index[other[0]], index[other[1]] = k, k + 1
        x[tuple(index)] = -np.inf
    check_forward(x, dim, dtype)
    y, ly = ops.softmax(x, dim), ops.log_softmax(x, dim)
    assert not np.isnan(y).any() and not np.isnan(ly).any()
    assert (y[tuple(index)] == 0).all() and np.isneginf(ly[tuple(index)]).all()
    assert (y[np.isneginf(x)] == 0).all()


def test_nan_propagates(isa):
    x = np.zeros((2, 37), np.float32)
    x[0, 5] = np.nan
    y, ly = ops.softmax(x), ops.log_softmax(x)
    assert np.isnan(y[0]).all() and np.isnan(ly[0]).all()
    assert_close(y[1], np.full(37, 1 / 37), 37, np.float32)


def test_threads_agree():
    rng = np.random.default_rng(7)
    for shape, dim in [((300, 1003), -1), ((4, 1003, 70), 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        with num_threads(1):
            one = ops.softmax(x, dim), ops.log_softmax(x, dim)
        with num_threads(2):
            two = ops.softmax(x, dim), ops.log_softmax(x, dim)
        # Each slice is computed by one thread in the same order: bitwise equal.
        np.testing.assert_array_equal(one[0], two[0])
        np.testing.assert_array_equal(one[1], two[1])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_non_contiguous_input(dim, isa, dtype):
    rng = np.random.default_rng(8)
    base = rng.standard_normal((9, 14, 40)).astype(dtype)
    for x in (base[:, ::2, 1::3], base.transpose(2, 0, 1), base[::-1]):
        assert not x.flags.c_contiguous
        check_forward(x, dim, dtype)
        g = rng.standard_normal(x.shape).astype(dtype)
        y = softmax_ref(x, dim).astype(dtype)
        expected = ops.softmax_backward(np.ascontiguousarray(g), np.ascontiguousarray(y), dim)
        np.testing.assert_array_equal(ops.softmax_backward(g, y, dim), expected)


def test_out_argument(dtype):
    x = np.random.default_rng(9).standard_normal((5, 33)).astype(dtype)
    out = np.full_like(x, np.nan)
    assert ops.softmax(x, out=out) is out
    assert_close(out, softmax_ref(x, -1), 33, dtype, scale=rel_scale(softmax_ref(x, -1), dtype))
    assert ops.log_softmax(x, 0, out=out) is out
    assert_close(out, log_softmax_ref(x, 0), 5, dtype, scale=np.maximum(1, np.abs(log_softmax_ref(x, 0))))


BACKWARD_CASES = [((1,), 0), ((3, 7), -1), ((70, 1003), -1), ((2, 3, 5), 0), ((3, 1003, 37), 1), ((5, 17, 33), 2)]


@pytest.mark.parametrize("shape,dim", BACKWARD_CASES, ids=[f"{s}-d{d}" for s, d in BACKWARD_CASES])
def test_backward_matches_reference(shape, dim, isa, threads, dtype):
    rng = np.random.default_rng(11 + len(shape) + dim)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    k = shape[dim]

    y = ops.softmax(x, dim)
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    dot = np.sum(g64 * y64, axis=dim, keepdims=True)
    ref = y64 * (g64 - dot)
    scale = np.abs(y64) * (np.abs(g64) + np.sum(np.abs(g64 * y64), axis=dim, keepdims=True))
    assert_close(ops.softmax_backward(g, y, dim), ref, k, dtype, scale=rel_scale(scale, dtype))

    ly = ops.log_softmax(x, dim)
    p = np.exp(ly.astype(np.float64))
    gsum = np.sum(g64, axis=dim, keepdims=True)
    lref = g64 - p * gsum
    lscale = np.abs(g64) + p * np.sum(np.abs(g64), axis=dim, keepdims=True)
    assert_close(ops.log_softmax_backward(g, ly, dim), lref, k, dtype, scale=rel_scale(lscale, dtype))


def test_backward_of_neg_inf_rows(isa):
    x = np.full((3, 9), -np.inf, np.float32)
    x[1] = np.arange(9)
    g = np.ones_like(x)
    dx = ops.softmax_backward(g, ops.softmax(x), -1)
    assert (dx[[0, 2]] == 0).all() and np.isfinite(dx).all()
    ldx = ops.log_softmax_backward(g, ops.log_softmax(x), -1)
    np.testing.assert_array_equal(ldx[[0, 2]], g[[0, 2]])  # exp(-inf) = 0: dx = grad_out
    assert np.isfinite(ldx).all()


GRAD_CASES = [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), 2), ((1, 17), -1)]


@pytest.mark.parametrize("shape,dim", GRAD_CASES, ids=[f"{s}-d{d}" for s, d in GRAD_CASES])
def test_finite_difference_gradients(shape, dim, isa):
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape) * 2
    check_grads(lambda a: ops.softmax(a, dim),
                lambda w, a: (ops.softmax_backward(w, ops.softmax(a, dim), dim),), [x], rng)
    check_grads(lambda a: ops.log_softmax(a, dim),
                lambda w, a: (ops.log_softmax_backward(w, ops.log_softmax(a, dim), dim),), [x], rng)


def test_matches_torch_when_available(isa):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(17)
    for shape, dim in [((33, 1003), -1), ((4, 65, 9), 1), ((4, 65, 9), 0)]:
        x = rng.standard_normal(shape).astype(np.float32) * 5
        tx = torch.from_numpy(x)
        np.testing.assert_allclose(ops.softmax(x, dim), torch.softmax(tx, dim).numpy(), rtol=2e-6, atol=1e-9)
        np.testing.assert_allclose(ops.log_softmax(x, dim), torch.log_softmax(tx, dim).numpy(),
                                   rtol=2e-6, atol=2e-6)


# ----------------------------------------------------------------------------- errors

F32 = np.float32


ERRORS = [
    ("list", lambda: ops.softmax([[1.0, 2.0]]), TypeError, r"^softmax: x must be a numpy\.ndarray, got list$"),
    ("int_dtype", lambda: ops.softmax(np.ones((2, 3), np.int32)), TypeError,
     r"^softmax: x has dtype int32; expected float32 or float64$"),
    ("int16", lambda: ops.log_softmax(np.ones((2, 3), np.int16)), TypeError,
     r"^log_softmax: x has dtype int16"),
    ("dim_high", lambda: ops.softmax(np.ones((2, 3), F32), 2), ValueError,
     r"^softmax: dim 2 is out of range for an array of shape \(2, 3\) \(expected -2 <= dim < 2\)$"),
    ("dim_low", lambda: ops.log_softmax(np.ones((2, 3), F32), -3), ValueError, r"^log_softmax: dim -3 is out of range"),
    ("dim_float", lambda: ops.softmax(np.ones((2, 3), F32), 1.0), TypeError, r"^softmax: dim must be an int, got float$"),
    ("bwd_shape", lambda: ops.softmax_backward(np.ones((2, 3), F32), np.ones((3, 2), F32)), ValueError,
     r"^softmax_backward: grad_out has shape \(2, 3\) but y has shape \(3, 2\)$"),
    ("bwd_dtype", lambda: ops.log_softmax_backward(np.ones((2, 3), F32), np.ones((2, 3))), TypeError,
     r"^log_softmax_backward: grad_out has dtype float32 but y has dtype float64"),
    ("bwd_dim", lambda: ops.softmax_backward(np.ones((2, 3), F32), np.ones((2, 3), F32), 5), ValueError,
     r"^softmax_backward: dim 5 is out of range"),
    ("out_shape", lambda: ops.softmax(np.ones((2, 3), F32), out=np.ones((3, 2), F32)), ValueError,
     r"^softmax: out has shape \(3, 2\), expected \(2, 3\)$"),
    ("out_dtype", lambda: ops.softmax(np.ones((2, 3), F32), out=np.ones((2, 3))), TypeError,
     r"^softmax: out has dtype float64 but the input has dtype float32$"),
    ("out_alias", lambda: (lambda a: ops.softmax(a, out=a))(np.ones((2, 3), F32)), ValueError,
     r"^softmax: out shares memory with an input"),
    ("out_strided", lambda: ops.softmax(np.ones((2, 3), F32), out=np.ones((2, 6), F32)[:, ::2]), ValueError,
     r"^softmax: out must be C-contiguous"),
]


test_errors = raises_each(ERRORS)


def test_readonly_out_rejected():
    out = np.zeros((2, 3), F32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"^softmax: out is read-only$"):
        ops.softmax(np.ones((2, 3), F32), out=out)


def test_big_endian_rejected():
    with pytest.raises(TypeError, match=r"^softmax: x has dtype >f4"):
        ops.softmax(np.ones((2, 3), ">f4"))


def test_vectorised_exp_accuracy(isa):
    """The float32 exp inside the kernels, read out through log_softmax_backward: with
    rows y = (a, 0) and grad_out = (0, -1), dx[:, 0] = exp(a) exactly as computed."""
    a = np.concatenate([np.linspace(-110.0, 90.0, 400_001),
                        [-np.inf, np.inf, np.nan, 88.72, 88.7228, 88.73, -87.3, -103.2, -0.0]]).astype(np.float32)
    y = np.stack([a, np.zeros_like(a)], 1)
    g = np.stack([np.zeros_like(a), -np.ones_like(a)], 1)
    e = ops.log_softmax_backward(g, y)[:, 0]
    with np.errstate(over="ignore"):
        ref = np.exp(a.astype(np.float64))
        ref32 = ref.astype(np.float32)
    assert np.array_equal(np.isnan(e), np.isnan(a))
    assert np.array_equal(np.isposinf(e), np.isposinf(ref32))  # overflow exactly where float32 overflows
    assert np.array_equal(e == 0, ref32 == 0)  # underflow (and -inf) to exactly 0
    normal = np.isfinite(ref32) & (ref32 >= np.finfo(np.float32).tiny)
    ulps = np.abs(e[normal] - ref[normal]) / np.spacing(ref32[normal]).astype(np.float64)
    assert ulps.max() <= 2.0, f"exp errs by {ulps.max():.2f} ulp"
    sub = np.isfinite(ref32) & (ref32 > 0) & ~normal  # subnormal results: within one subnormal step
    assert np.abs(e[sub] - ref[sub]).max() <= np.finfo(np.float32).smallest_subnormal
