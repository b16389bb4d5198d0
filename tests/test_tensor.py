"""Tensor: construction, properties, operators and comparisons against NumPy, and clear
errors for bad input."""

import numpy as np
import pytest

import dlkern


def test_tensor_dtypes():
    assert dlkern.tensor([1.0, 2.0]).dtype == np.float32  # Python floats -> float32 (PyTorch)
    assert dlkern.tensor([1, 2]).dtype == np.int64
    assert dlkern.tensor(np.zeros(3)).dtype == np.float64  # NumPy arrays keep their dtype
    assert dlkern.tensor([1, 2], dtype=dlkern.float64).dtype == np.float64
    assert dlkern.tensor(3.5).shape == ()
    assert dlkern.tensor(np.float64(2.0)).dtype == np.float64
    a = np.arange(3.0)
    t = dlkern.tensor(a)
    a[0] = 7
    assert t.data[0] == 0  # tensor() copies
    assert dlkern.from_numpy(a).data is a or np.shares_memory(dlkern.from_numpy(a).data, a)


def test_factories():
    assert dlkern.zeros(2, 3).shape == (2, 3) and dlkern.zeros(2, 3).dtype == np.float32
    assert dlkern.ones((4,), dtype=dlkern.float64).data.sum() == 4
    assert dlkern.full((2, 2), 7.0).data.tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert dlkern.empty(3).shape == (3,)
    assert dlkern.arange(5).data.tolist() == [0, 1, 2, 3, 4] and dlkern.arange(5).dtype == np.int64
    assert dlkern.arange(0, 1, 0.25).dtype == np.float32
    x = dlkern.randn(100, 100)
    assert x.dtype == np.float32 and abs(float(x.data.mean())) < 0.05 and abs(float(x.data.std()) - 1) < 0.05
    u = dlkern.rand(1000, dtype=dlkern.float64)
    assert u.dtype == np.float64 and 0 <= u.data.min() and u.data.max() < 1
    for like in (dlkern.zeros_like, dlkern.ones_like, dlkern.empty_like, dlkern.randn_like, dlkern.rand_like):
        assert like(u).shape == u.shape and like(u).dtype == u.dtype
    assert dlkern.full_like(u, 2.0).data.max() == 2.0
    w = dlkern.zeros(3, requires_grad=True)
    assert w.requires_grad and w.is_leaf


def test_like_factories_values():
    """Each *_like fills with its own values (a swapped factory keeps shape and dtype)."""
    u = dlkern.full((40, 50), 3.0, dtype=dlkern.float64)
    np.testing.assert_array_equal(dlkern.zeros_like(u).data, np.zeros((40, 50)))
    np.testing.assert_array_equal(dlkern.ones_like(u).data, np.ones((40, 50)))
    np.testing.assert_array_equal(dlkern.full_like(u, -2.5).data, np.full((40, 50), -2.5))
    z = dlkern.zeros_like(u, dtype=dlkern.float32, requires_grad=True)
    assert z.dtype == np.float32 and z.requires_grad and not z.data.any()
    r = dlkern.rand_like(u).data
    assert r.dtype == np.float64 and r.min() >= 0 and r.max() < 1
    assert abs(r.mean() - 0.5) < 0.03 and abs(r.std() - 12 ** -0.5) < 0.03  # uniform [0, 1)
    n = dlkern.randn_like(u).data
    assert n.dtype == np.float64 and abs(n.mean()) < 0.1 and abs(n.std() - 1) < 0.1
    assert n.min() < -1.5 and n.max() > 1.5  # normal, not uniform
    dlkern.manual_seed(3)
    a = dlkern.randn_like(u).data
    dlkern.manual_seed(3)
    np.testing.assert_array_equal(dlkern.randn_like(u).data, a)  # drawn from dlkern's generator


def test_manual_seed_reproducible():
    dlkern.manual_seed(7)
    a = dlkern.randn(5).data.copy()
    dlkern.manual_seed(7)
    np.testing.assert_array_equal(dlkern.randn(5).data, a)
    dlkern.manual_seed(8)
    assert not np.array_equal(dlkern.randn(5).data, a)


def test_properties_and_conversion():
    t = dlkern.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.shape == (2, 2) and t.ndim == 2 and t.size(1) == 2 and t.numel() == 4
    assert str(t.device) == "cpu" and t.device == "cpu"
    assert t.double().dtype == np.float64 and t.double().float().dtype == np.float32
    assert t.to(dlkern.float64).dtype == np.float64 and t.to("cpu") is t
    assert t.to("cpu", dlkern.float64).dtype == np.float64
    assert t[1, 0].item() == 3.0 and isinstance(t[1, 0].item(), float)
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert isinstance(t.numpy(), np.ndarray)
    with pytest.raises(RuntimeError, match="requires grad"):
        dlkern.ones(2, requires_grad=True).numpy()
    with pytest.raises(ValueError, match="one-element"):
        t.item()
    assert "tensor(" in repr(t)
    assert "grad_fn" in repr(dlkern.ones(2, requires_grad=True) * 2)


def test_operators_match_numpy():
    rng = np.random.default_rng(0)
    a_np = rng.uniform(0.5, 2, (3, 4)).astype(np.float32)
    b_np = rng.uniform(0.5, 2, (4,)).astype(np.float32)
    a, b = dlkern.tensor(a_np), dlkern.tensor(b_np)
    cases = [(a + b, a_np + b_np), (a - b, a_np - b_np), (a * b, a_np * b_np), (a / b, a_np / b_np),
             (a ** 2, a_np ** 2), (a ** b, a_np ** b_np), (2 + a, 2 + a_np), (2 - a, 2 - a_np),
             (2 * a, 2 * a_np), (2 / a, 2 / a_np), (2 ** a, 2 ** a_np), (-a, -a_np),
             (a @ b, a_np @ b_np), (a_np + b, a_np + b_np)]
    for got, want in cases:
        assert isinstance(got, dlkern.Tensor)
        assert got.dtype == np.float32, got.dtype
        np.testing.assert_allclose(got.data, want, rtol=1e-6)


def test_unary_math_matches_numpy():
    rng = np.random.default_rng(1)
    x_np = rng.uniform(-3, 3, (5, 7))
    x = dlkern.tensor(x_np)
    sig = 1 / (1 + np.exp(-x_np))
    from math import erf
    erf_v = np.vectorize(erf)
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    refs = {
        "exp": np.exp(x_np), "abs": np.abs(x_np), "tanh": np.tanh(x_np), "sigmoid": sig,
        "relu": np.maximum(x_np, 0), "silu": x_np * sig,
        "gelu": 0.5 * x_np * (1 + erf_v(x_np / np.sqrt(2))),
        "selu": scale * np.where(x_np > 0, x_np, alpha * (np.exp(x_np) - 1)),
        "softplus": np.log1p(np.exp(x_np)),
    }
    for name, want in refs.items():
        np.testing.assert_allclose(getattr(x, name)().data, want, rtol=1e-12, atol=1e-15, err_msg=name)
    k = np.sqrt(2 / np.pi)
    np.testing.assert_allclose(x.gelu("tanh").data, 0.5 * x_np * (1 + np.tanh(k * (x_np + 0.044715 * x_np ** 3))),
                               rtol=1e-12)
    np.testing.assert_allclose(x.clamp(-1, 2).data, np.clip(x_np, -1, 2))
    np.testing.assert_allclose(x.abs().sqrt().data, np.sqrt(np.abs(x_np)))
    np.testing.assert_allclose(x.abs().log().data, np.log(np.abs(x_np)))
    np.testing.assert_allclose(dlkern.exp(x).data, np.exp(x_np))
    big = dlkern.tensor([-1000.0, 1000.0], dtype=dlkern.float64)
    np.testing.assert_allclose(big.sigmoid().data, [0.0, 1.0])
    # A large negative input keeps its small sigmoid, down through the subnormals, in
    # float32 and float64 (as PyTorch), rather than rounding to 0: exp(x) / (1 + exp(x)).
    for dtype, xs in ((np.float32, [-20.0, -90.0, -100.0]), (np.float64, [-40.0, -720.0, -740.0])):
        got = dlkern.tensor(np.array(xs, dtype)).sigmoid().numpy()
        want = np.exp(np.array(xs)) / (1 + np.exp(np.array(xs)))
        tiny = float(np.finfo(dtype).smallest_subnormal)
        assert got.dtype == dtype and (got > 0).all()
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=2 * tiny)
    np.testing.assert_allclose(big.softplus().data, [0.0, 1000.0])


def test_comparisons():
    a = dlkern.tensor([1.0, 2.0, 3.0])
    b = dlkern.tensor([3.0, 2.0, 1.0])
    assert (a < b).data.tolist() == [True, False, False]
    assert (a == b).data.tolist() == [False, True, False]
    assert (a >= 2).data.tolist() == [False, True, True]
    assert (a != b).dtype == np.bool_
    assert dlkern.where(a > 1.5, a, b).data.tolist() == [3.0, 2.0, 3.0]
    assert {a: 1}[a] == 1  # hashable by identity


def test_setitem_and_inplace():
    t = dlkern.zeros(3)
    t[1] = 5.0
    t.add_(1.0)
    assert t.data.tolist() == [1.0, 6.0, 1.0]
    w = dlkern.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w.add_(1.0)
    with dlkern.no_grad():
        w.add_(1.0)
    assert w.data.tolist() == [1.0, 1.0, 1.0]


def test_errors():
    a = dlkern.ones(3)
    with pytest.raises(TypeError, match="dtype mismatch"):
        a + dlkern.ones(3, dtype=dlkern.float64)
    with pytest.raises(TypeError, match="dtype mismatch"):
        dlkern.ones(2, 3) @ dlkern.ones(3, 2, dtype=dlkern.float64)
    with pytest.raises(TypeError, match="dtype mismatch"):
        dlkern.cat([a, dlkern.ones(3, dtype=dlkern.float64)])
    with pytest.raises(ValueError, match="inner dimensions"):
        dlkern.ones(2, 3) @ dlkern.ones(2, 3)
    with pytest.raises(IndexError):
        a[5]
    with pytest.raises(IndexError):
        a[[0, 3]]
    with pytest.raises(ValueError):
        a.reshape(2, 2)
    with pytest.raises(IndexError):
        a.sum(2)
    with pytest.raises(ValueError, match="permutation"):
        dlkern.ones(2, 3).permute(0, 0)
    with pytest.raises(ValueError, match="sum"):
        a.split([1, 1])
    with pytest.raises(TypeError):
        a + "x"
    with pytest.raises(ValueError, match="unknown device"):
        dlkern.ones(2, device="tpu")
    with pytest.raises(ValueError, match="approximate"):
        a.gelu("fast")


def _cuda_unavailable_message():
    """What a request for 'cuda' says on this build: no CUDA module, or no device."""
    try:
        from dlkern import _C_cuda  # noqa: F401
    except ImportError:
        return r"device 'cuda(:0)?' requested but dlkern was built without CUDA"
    return r"device 'cuda(:0)?' requested but .*no CUDA device is available"


def test_cuda_request_is_clear():
    if dlkern.cuda.is_available():
        assert dlkern.device("cuda:0").type == "cuda"
        for make in (lambda: dlkern.ones(2, device="cuda"), lambda: dlkern.tensor([1.0], device="cuda:0")):
            assert make().device == "cuda:0"
        return
    with pytest.raises(RuntimeError, match=_cuda_unavailable_message()):
        dlkern.ones(2, device="cuda")
    with pytest.raises(RuntimeError, match=_cuda_unavailable_message()):
        dlkern.device("cuda:0")


def test_device_namespace_missing_kernel_names_op_and_device():
    dev = dlkern.device("cpu")
    with pytest.raises(NotImplementedError, match="'no_such_op'.*'cpu'"):
        dev.no_such_op
    assert dev.matmul is dlkern.ops.matmul
    assert dev.exp is np.exp


def test_package_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, dlkern, dlkern.nn; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("dtype,tol", [(np.float64, 5e-16), (np.float32, 1.5e-7)])
def test_exact_gelu_matches_math_erf_densely(dtype, tol):
    # The exact GELU kernel (ops.gelu_erf, F.gelu's default) over a dense range, against
    # x * 0.5 * (1 + erf(x / sqrt 2)) with Python's math.erf in float64. The 1 + erf term
    # cancels for x << 0, so the error bound scales with max(|x|, 1).
    import math
    x = np.concatenate([np.linspace(-8, 8, 40001), [0.0, 2.0, -2.0, 6.5, np.inf]]).astype(dtype)
    got = dlkern.ops.gelu_erf(x)
    assert got.dtype == dtype
    want = np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
    finite = np.isfinite(x)
    err = np.abs(got[finite].astype(np.float64) - want[finite])
    assert (err <= 4 * tol * np.maximum(np.abs(x[finite]), 1)).all(), err.max()
    assert got[-1] == np.inf
    assert np.isnan(dlkern.ops.gelu_erf(np.array([np.nan, -np.inf], dtype))).all()  # as in PyTorch


def test_mismatched_devices_are_a_clear_error():
    from dlkern.device import CPUDevice

    class OtherDevice(CPUDevice):  # a second namespace stands in for another device
        def __str__(self):
            return "other"

    a = dlkern.ones(3)
    b = dlkern.Tensor._make(np.ones(3, np.float32), OtherDevice(), False, None)
    with pytest.raises(RuntimeError, match="same device"):
        a + b
    with pytest.raises(RuntimeError, match="different devices"):
        dlkern.ones(2, 3) @ dlkern.Tensor._make(np.ones((3, 2), np.float32), OtherDevice(), False, None)
