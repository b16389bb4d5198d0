"""Gradient checking for Tensor code (shared by the autograd, nn and loss tests; holds
no tests itself). Central finite differences in float64 with a random cotangent, via
helpers.numeric_grad."""

import gc

import numpy as np
import pytest

import dlkern
from dlkern.autograd import hooks
from helpers import numeric_grad


def gradcheck(fn, inputs, rng=None, eps=1e-6, rtol=1e-5, atol=1e-7):
    """fn(*tensors) -> Tensor. Every float64 input that requires grad is checked:
    backward of sum(fn * w) against finite differences of the same scalar."""
    rng = rng or np.random.default_rng(0)
    out = fn(*inputs)
    w = rng.standard_normal(out.shape)
    for t in inputs:
        if isinstance(t, dlkern.Tensor):
            t.grad = None
    out.backward(dlkern.tensor(w, dtype=out.dtype))
    checked = 0
    for index, t in enumerate(inputs):
        if not (isinstance(t, dlkern.Tensor) and t.requires_grad):
            continue
        assert t.data.dtype == np.float64, "gradcheck needs float64 inputs"
        assert t.grad is not None, f"input {index} received no gradient"
        with dlkern.no_grad():
            expected = numeric_grad(lambda: float(np.sum(fn(*inputs).data * w)), t.data, eps)
        np.testing.assert_allclose(t.grad.data, expected, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {index} disagrees with finite differences")
        checked += 1
    assert checked, "nothing was checked"


def t64(rng, *shape, requires_grad=True, low=-1.0, high=1.0):
    return dlkern.tensor(rng.uniform(low, high, size=shape), dtype=np.float64, requires_grad=requires_grad)


# ---- for the hook tests (test_autograd_hooks.py, test_autograd_grad.py)
def leaf(a, dtype=np.float64):
    """A leaf tensor that requires grad, float64 unless told."""
    return dlkern.tensor(np.asarray(a, dtype=dtype), requires_grad=True)


@pytest.fixture
def no_hooks_left():
    """After the test, once its tensors are gone, the engine is on its fast path again."""
    yield
    if hooks.STATE.nodes or hooks.LEAF_HOOKS:
        gc.collect()  # (only then: a collection is slow once torch is imported)
    assert hooks.STATE.nodes == 0 and not hooks.LEAF_HOOKS and not hooks.STATE.anomaly
