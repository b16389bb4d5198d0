"""dlkern.ops.gelu_tanh / gelu_tanh_backward (the fused tanh-approximation GELU) against
float64 NumPy (dlkern.reference) on every ISA path and 1 and 2 threads, the Gelu
Function's gradient, and clear errors."""

import numpy as np
import pytest

import dlkern
from dlkern import ops
from dlkern import reference as R
from helpers import check_grads

@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (3, 1001), (70001,)], ids=str)
def test_gelu_tanh_matches_numpy(isa, threads, dtype, shape):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y = ops.gelu_tanh(x)
    dx = ops.gelu_tanh_backward(g, x)
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == shape
    tol = 4e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, R.gelu_tanh(x), rtol=tol, atol=tol * 1e-3)
    np.testing.assert_allclose(dx, R.gelu_tanh_backward(g, x), rtol=tol, atol=tol)


def test_gelu_tanh_extremes_and_strided_input(dtype):
    x = np.array([0.0, -0.0, 1e-30, 30.0, -30.0, 1e4, -1e4, np.inf, np.nan], dtype)
    y = ops.gelu_tanh(x)
    np.testing.assert_array_equal(y[:2], 0.0)
    np.testing.assert_allclose(y[2:6], [0.5e-30, 30.0, 0.0, 1e4], rtol=1e-6, atol=1e-30)
    assert abs(y[6]) < 1e-30 and y[7] == np.inf and np.isnan(y[8])
    a = np.random.default_rng(2).standard_normal((6, 5)).astype(dtype)
    np.testing.assert_array_equal(ops.gelu_tanh(a.T), ops.gelu_tanh(np.ascontiguousarray(a.T)))


def test_gelu_function_uses_kernel_and_gradient():
    rng = np.random.default_rng(3)
    forward = lambda x: dlkern.gelu(dlkern.tensor(x), approximate="tanh").data  # noqa: E731

    def backward(w, x):
        t = dlkern.tensor(x, requires_grad=True)
        dlkern.gelu(t, approximate="tanh").backward(w)
        return (t.grad.data,)
    check_grads(forward, backward, [rng.standard_normal((4, 7)) * 3], rng)


def test_gelu_tanh_errors():
    with pytest.raises(TypeError, match="gelu_tanh"):
        ops.gelu_tanh(np.arange(4))
    with pytest.raises(TypeError, match="same float type"):
        ops.gelu_tanh_backward(np.zeros(3, np.float32), np.zeros(3))
    with pytest.raises(ValueError, match=r"grad_out has shape \(3,\) but x has shape \(4,\)"):
        ops.gelu_tanh_backward(np.zeros(3), np.zeros(4))
