"""Shared test helpers: random inputs, float64 references and a tolerance model.

Tolerance model. A float dot product of length k accumulated in any order errs by
a random walk of roundings: about eps * sqrt(k) * sqrt(sum_p a_p^2 b_p^2) for inputs of
random sign. `dot_scale` gives that per-element magnitude, `assert_close` multiplies it
by C_TOL * eps(dtype) * sqrt(k + 1). Measured worst ratio over 300^3 products on every
ISA path (including the float64 reference's own error) is about 1.9, hence C_TOL = 4.
An indexing or packing bug errs by O(|a| |b|), millions of eps away.
"""

import contextlib

import numpy as np
import pytest

import dlkern
from dlkern import reference

DTYPES = (np.float32, np.float64)
C_TOL = 4.0


def rand(rng, shape, dtype):
    """Uniform [-1, 1) values, exactly representable in `dtype`."""
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def as64(x):
    return np.asarray(x).astype(np.float64)


def ref_matmul(a, b):
    """numpy.matmul of the same values in float64: the reference."""
    return reference.matmul(a, b)


def dot_scale(a, b):
    """Per output element, sqrt(sum_p a_ip^2 b_pj^2): the magnitude of its rounding walk."""
    a64, b64 = as64(a), as64(b)
    return np.sqrt(np.matmul(a64 * a64, b64 * b64))


def assert_close(actual, expected, k, dtype, scale=1.0):
    """Check `actual` (dtype `dtype`) against a float64 reference of a length-k reduction.

    `scale` is the magnitude of each element's terms (dot_scale; 1.0 means inputs of
    unit size). NaN and infinities must appear exactly where the reference has them.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    got = actual.astype(np.float64)
    nan_exp, nan_got = np.isnan(expected), np.isnan(got)
    assert np.array_equal(nan_exp, nan_got), (
        f"NaN pattern differs: {int(nan_exp.sum())} expected, {int(nan_got.sum())} got")
    inf_exp = np.isinf(expected)
    assert np.array_equal(got[inf_exp], expected[inf_exp]), "infinities differ"
    finite = ~(nan_exp | inf_exp)
    eps = float(np.finfo(dtype).eps)
    tol = C_TOL * eps * np.sqrt(k + 1.0) * np.broadcast_to(np.asarray(scale, np.float64), expected.shape)
    err = np.abs(np.where(finite, got, 0.0) - np.where(finite, expected, 0.0))
    bad = finite & ~(err <= tol)
    if bad.any():
        idx = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), 0)), bad.shape)
        raise AssertionError(
            f"{int(bad.sum())} of {bad.size} elements out of tolerance (k={k}, {np.dtype(dtype)}); "
            f"worst at {tuple(int(i) for i in idx)}: got {got[idx]!r}, expected {expected[idx]!r}, "
            f"|err|={err[idx]:.3g} > tol={tol[idx]:.3g}")


def check_matmul(a, b, dtype, out=None):
    """dlkern.ops.matmul(a, b[, out]) against the float64 reference; inputs must be left alone."""
    a_before, b_before = np.array(a, copy=True), np.array(b, copy=True)
    expected = ref_matmul(a, b)
    scale = dot_scale(a, b)
    k = np.shape(a)[-1]
    result = dlkern.ops.matmul(a, b) if out is None else dlkern.ops.matmul(a, b, out=out)
    assert_close(result, expected, k, dtype, scale)
    if out is None:
        np.testing.assert_array_equal(a, a_before)
        np.testing.assert_array_equal(b, b_before)
    return result


@contextlib.contextmanager
def _setting(get, set_, value):
    """set_(value) for the block; the previous get() restored after, even on error."""
    prev = get()
    set_(value)
    try:
        yield
    finally:
        set_(prev)


def num_threads(n):
    return _setting(dlkern.get_num_threads, dlkern.set_num_threads, n)


def using_isa(name):
    return _setting(dlkern.get_isa, dlkern.set_isa, name)


def numeric_grad(loss, x, eps=1e-6):
    """Central finite differences of the scalar `loss()` with respect to the float64
    array `x`, perturbed in place one element at a time (and restored)."""
    assert x.dtype == np.float64, "finite differences need float64 inputs"
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, x), "x must be contiguous so it can be perturbed in place"
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = loss()
        flat[i] = saved - eps
        down = loss()
        flat[i] = saved
        gflat[i] = (up - down) / (2 * eps)
    return grad


def check_grads(forward, backward, inputs, rng, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Gradient check of a kernel pair in float64.

    forward(*inputs) -> output array; backward(cotangent, *inputs) -> tuple of
    gradients, one per input (None to skip an input). The scalar checked is
    sum(forward(*inputs) * w) for a random cotangent w.
    """
    out = forward(*inputs)
    w = rng.standard_normal(np.shape(out))
    grads = backward(w, *inputs)
    for index, (x, g) in enumerate(zip(inputs, grads)):
        if g is None:
            continue
        expected = numeric_grad(lambda: float(np.sum(forward(*inputs) * w)), x, eps)
        np.testing.assert_allclose(g, expected, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {index} disagrees with finite differences")


def raises_each(cases):
    """A test parametrized over (name, call, exception type, message pattern) rows: each
    call must raise that type with a message matching the pattern."""
    @pytest.mark.parametrize("name,call,exc,pattern", cases, ids=[c[0] for c in cases])
    def test_errors(name, call, exc, pattern):
        with pytest.raises(exc, match=pattern):
            call()
    return test_errors
