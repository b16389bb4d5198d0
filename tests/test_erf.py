"""erf: the kernel dlkern.ops.erf (float32: csrc/cpu/erf_poly.h's vector erf; float64: the C
library's) on every ISA path and 1 and 2 threads, against math.erf in float64 over a dense
sweep (in ulps of the result); its out= and strided forms and errors; Tensor.erf /
dlkern.erf with gradients by finite differences, on the CPU and the CUDA host twin; and
PyTorch parity (torch.erf)."""

import math

import numpy as np
import pytest

import dlkern
from dlkern import ops
from dlkern.device import CUDADevice

import host_cuda
from helpers import numeric_grad

_ERF = np.frompyfunc(math.erf, 1, 1)


def erf64(x):
    """math.erf of each element, in float64: the test's own reference."""
    return _ERF(np.asarray(x, np.float64)).astype(np.float64)


def ulp_error(got, x, dtype):
    """|got - erf(x)| in units of the last place of erf(x) rounded to dtype (the smallest
    subnormal's spacing at 0)."""
    want = erf64(x)
    spacing = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


def sweep(dtype):
    """Every 2.5e-5 on [-6, 6], a geometric run from 1e-40 (subnormals) to 1e4 of both
    signs, and the values erf rounds to +-1 at."""
    lin = np.linspace(-6, 6, 480001)
    geo = np.geomspace(1e-40 if dtype == np.float32 else 1e-310, 1e4, 20001)
    return np.concatenate([lin, geo, -geo, [3.9, 3.92, 4.0, 5.9, 6.0, 1e30]]).astype(dtype)


# Max error measured over every float32 input (tools/erf_accuracy.cpp): 1.18 ulp on
# AVX-512 and AVX2, 1.46 on the portable path.
# float64 is the C library's erf.
MAX_ULP = {np.float32: 2.0, np.float64: 2.0}


def test_erf_kernel_within_two_ulp_on_a_dense_sweep(isa, threads, dtype):
    x = sweep(dtype)
    y = ops.erf(x)
    assert y.dtype == dtype and y.shape == x.shape
    err = ulp_error(y, x, dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[dtype], f"erf({x[worst]!r}) = {y[worst]!r}: {err[worst]:.2f} ulp"
    # odd, and never past +-1
    np.testing.assert_array_equal(ops.erf(-x), -y)
    assert np.all(np.abs(y) <= 1)


def test_erf_special_values(isa, dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, 1e-30, 6.0, -6.0, 10.0], dtype)
    y = ops.erf(x)
    np.testing.assert_array_equal(y[:4], [0.0, -0.0, 1.0, -1.0])
    assert not np.signbit(y[0]) and np.signbit(y[1])
    assert np.isnan(y[4])
    # erf(x) ~ 2x / sqrt(pi) near 0, subnormals included (no flush to zero)
    assert np.all(ulp_error(y[5:8], x[5:8], dtype) <= MAX_ULP[dtype])
    assert y[5] > 0 and y[6] < 0
    np.testing.assert_array_equal(y[8:], [1.0, -1.0, 1.0])


def test_erf_kernel_shapes_strides_and_out(dtype):
    rng = np.random.default_rng(0)
    base = (rng.standard_normal((6, 8)) * 2).astype(dtype)
    want = ops.erf(np.ascontiguousarray(base))
    # empty, 0-d, a transposed and a reversed view
    assert ops.erf(np.zeros((0, 3), dtype)).shape == (0, 3)
    zero_d = ops.erf(np.array(0.5, dtype))
    assert zero_d.shape == () and zero_d.dtype == dtype
    np.testing.assert_allclose(zero_d, math.erf(0.5), rtol=2 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(ops.erf(base.T), want.T)
    np.testing.assert_array_equal(ops.erf(base[::-1, ::2]), want[::-1, ::2])
    # out: fresh, x itself (in place), a strided view, an overlapping shifted view
    out = np.empty_like(base)
    assert ops.erf(base, out=out) is out
    np.testing.assert_array_equal(out, want)
    x = base.copy()
    assert ops.erf(x, out=x) is x
    np.testing.assert_array_equal(x, want)
    big = np.zeros((6, 16), dtype)
    view = big[:, ::2]
    assert ops.erf(base, out=view) is view
    np.testing.assert_array_equal(view, want)
    assert np.all(big[:, 1::2] == 0)
    flat = np.zeros(base.size + 1, dtype)
    flat[:-1] = base.reshape(-1)
    ops.erf(flat[:-1], out=flat[1:])   # out overlaps x one element on
    np.testing.assert_array_equal(flat[1:], want.reshape(-1))


def test_erf_kernel_errors():
    x = np.zeros(3, np.float32)
    with pytest.raises(TypeError, match=r"^erf: x"):
        ops.erf(np.arange(3))
    with pytest.raises(TypeError, match=r"^erf: x"):
        ops.erf([0.5, 1.0])
    with pytest.raises(ValueError, match=r"^erf: out has shape \(4,\)"):
        ops.erf(x, out=np.zeros(4, np.float32))
    with pytest.raises(TypeError, match=r"^erf: out has dtype float64"):
        ops.erf(x, out=np.zeros(3))
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"^erf: out"):
        ops.erf(x, out=ro)
    with pytest.raises(TypeError, match=r"^erf: out"):
        ops.erf(x, out=[0.0, 0.0, 0.0])


def test_cpu_namespace_and_kernel_lists():
    # (ops.erf wraps the kernel only to take bfloat16/float16 through float32: ops/lowp.py)
    assert dlkern.cpu.erf is ops.erf and ops.erf.__wrapped__ is dlkern._C.erf
    assert "erf" in dlkern._C.KERNELS and dlkern._C.KERNEL_NAMES.count("erf") == 1
    assert "erf" in host_cuda.KERNELS


# ---------------------------------------------------------------------- Tensor.erf


def test_tensor_erf_values_and_gradient(dtype):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((4, 5)) * 1.5).astype(dtype)
    t = dlkern.tensor(a, requires_grad=True)
    y = t.erf()
    assert y.dtype == dtype and y.shape == (4, 5)
    np.testing.assert_allclose(y.detach().numpy(), erf64(a), rtol=4 * np.finfo(dtype).eps, atol=1e-30)
    np.testing.assert_array_equal(dlkern.erf(t).detach().numpy(), y.detach().numpy())
    w = rng.standard_normal((4, 5)).astype(dtype)
    (y * dlkern.tensor(w)).sum().backward()
    want = w * 2 / math.sqrt(math.pi) * np.exp(-a.astype(np.float64) ** 2)
    # x^2 rounds to dtype before exp: a relative error of about x^2 eps
    tol = 4 * np.finfo(dtype).eps * (1 + a.astype(np.float64) ** 2) * np.abs(want)
    assert np.all(np.abs(t.grad.numpy() - want) <= tol)


def test_tensor_erf_gradient_by_finite_differences():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4)) * 1.5
    w = rng.standard_normal((3, 4))
    t = dlkern.tensor(x, requires_grad=True)
    (t.erf() * dlkern.tensor(w)).sum().backward()
    expected = numeric_grad(lambda: float(np.sum(dlkern.tensor(x).erf().numpy() * w)), x)
    np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_tensor_erf_forms():
    # 0-d, empty, non-contiguous (a transposed view), NaN and infinities propagate
    assert dlkern.tensor(0.5).erf().shape == ()
    assert dlkern.erf(dlkern.zeros(0, 3)).shape == (0, 3)
    a = np.arange(12.0).reshape(3, 4) / 5 - 1
    np.testing.assert_allclose(dlkern.tensor(a).T.erf().numpy(), erf64(a.T), rtol=1e-15, atol=1e-300)
    y = dlkern.tensor([np.nan, np.inf, -np.inf, -0.0]).erf().numpy()
    assert np.isnan(y[0]) and y[1] == 1 and y[2] == -1 and y[3] == 0 and np.signbit(y[3])
    # gradient at +-inf is 0 and at NaN NaN
    t = dlkern.tensor([np.inf, -np.inf, np.nan, 0.0], requires_grad=True)
    t.erf().sum().backward()
    g = t.grad.numpy()
    assert g[0] == 0 and g[1] == 0 and np.isnan(g[2])
    np.testing.assert_allclose(g[3], 2 / math.sqrt(math.pi), rtol=1e-7)


def test_tensor_erf_dtypes_as_torch():
    # integer and bool tensors give float32 (torch's default dtype); float16 stays float16
    y = dlkern.tensor([0, 1, 2]).erf()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), erf64([0, 1, 2]), rtol=1e-7)
    assert dlkern.tensor([True, False]).erf().dtype == np.float32
    h = dlkern.tensor([0.5, -2.0], dtype=dlkern.float16, requires_grad=True)
    yh = h.erf()
    assert yh.dtype == np.float16
    np.testing.assert_allclose(yh.detach().numpy(), erf64([0.5, -2.0]), rtol=1e-3)
    yh.sum().backward()
    assert h.grad.dtype == np.float16


def test_tensor_erf_on_the_cuda_twin():
    """On CUDA the forward is the module's erf primitive and the backward its exp: the
    tensor never leaves the device."""
    dev = CUDADevice(0, module=host_cuda)
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 7))
    t = dlkern.tensor(a).to(dev).requires_grad_()
    y = t.erf()
    assert y.device == dev
    np.testing.assert_allclose(y.detach().cpu().numpy(), erf64(a), rtol=1e-15, atol=1e-300)
    y.sum().backward()
    np.testing.assert_allclose(t.grad.cpu().numpy(), 2 / math.sqrt(math.pi) * np.exp(-a * a), rtol=1e-14)


# ---------------------------------------------------------------------- PyTorch


def test_matches_torch_erf(dtype):
    torch = pytest.importorskip("torch")
    x = sweep(dtype)[::7]
    got = ops.erf(x)
    want = torch.erf(torch.from_numpy(x)).numpy()
    # both within ~1 ulp of math.erf, so within 3 of each other
    spacing = np.spacing(np.abs(want)).astype(np.float64)
    assert np.max(np.abs(got.astype(np.float64) - want) / np.maximum(spacing, np.finfo(dtype).smallest_subnormal)) <= 3
    rng = np.random.default_rng(6)
    a = rng.standard_normal((5, 6))
    t = dlkern.tensor(a, requires_grad=True)
    tt = torch.tensor(a, requires_grad=True)
    t.erf().sum().backward()
    torch.erf(tt).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-13)


# ---------------------------------------------------------------------- the exact GELU's kernels


def gelu64(x):
    """x Phi(x) and Phi(x) + x phi(x) in float64, Phi from erfc on the negative side (no
    cancellation): the test's own reference."""
    x = np.asarray(x, np.float64)
    erfc = np.frompyfunc(math.erfc, 1, 1)
    phi_cdf = 0.5 * erfc(-x / math.sqrt(2)).astype(np.float64)
    return x * phi_cdf, phi_cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def test_gelu_erf_kernels_accuracy(isa, threads, dtype):
    # Measured (tools/erf_accuracy.cpp, every 5th float32 with |x| < 12): forward
    # |err| / (|x| + 1) <= 2.0e-7 and backward |err| <= 2.9e-7 on every float32 path
    # (PyTorch's float32 GELU: 2.7e-7 and 2.9e-7); float64 is the C library's erf.
    x = np.concatenate([np.linspace(-12, 12, 240001), np.geomspace(1e-30, 12, 2001),
                        -np.geomspace(1e-30, 12, 2001)]).astype(dtype)
    y, d = gelu64(x)
    fwd_tol, bwd_tol = (4e-7, 4e-7) if dtype == np.float32 else (1e-15, 1e-15)
    err = np.abs(ops.gelu_erf(x) - y) / (np.abs(x.astype(np.float64)) + 1)
    assert err.max() <= fwd_tol, f"gelu_erf({x[err.argmax()]!r}): {err.max():.3g}"
    g = np.ones_like(x)
    err = np.abs(ops.gelu_erf_backward(g, x) - d)
    assert err.max() <= bwd_tol, f"gelu_erf_backward at {x[err.argmax()]!r}: {err.max():.3g}"


def test_gelu_erf_kernels_special_values(isa, dtype):
    # as PyTorch: GELU(inf) = inf, GELU(-inf) = -inf * 0 = NaN; the derivative at +-inf is
    # NaN (x phi(x) = inf * 0); NaN propagates; 0 and -0 give 0 and 1/2
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0], dtype)
    y = ops.gelu_erf(x)
    assert y[0] == np.inf and np.isnan(y[1]) and np.isnan(y[2]) and y[3] == 0 and y[4] == 0
    d = ops.gelu_erf_backward(np.ones_like(x), x)
    assert np.isnan(d[0]) and np.isnan(d[1]) and np.isnan(d[2]) and d[3] == 0.5 and d[4] == 0.5


def test_gelu_erf_kernels_match_torch(dtype):
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-8, 8, 20001), [np.inf, -np.inf, np.nan]]).astype(dtype)
    g = np.random.default_rng(7).standard_normal(x.shape).astype(dtype)
    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    tol = 6e-7 if dtype == np.float32 else 1e-14   # both sides' errors (see above)
    scale = np.abs(x.astype(np.float64)) + 1
    want = torch.nn.functional.gelu(tx).numpy()
    got = ops.gelu_erf(x)
    # PyTorch's float32 F.gelu (its vectorised CPU path) gives NaN at +inf, its float64 inf;
    # dlkern gives inf for both, so only NaN and -inf are compared for NaN-ness.
    keep = x != np.inf
    np.testing.assert_array_equal(np.isnan(got)[keep], np.isnan(want)[keep])
    assert got[~keep].tolist() == [np.inf]
    fin = np.isfinite(x)
    assert np.all(np.abs(got[fin] - want[fin]) <= tol * scale[fin])
    want = torch.ops.aten.gelu_backward(tg, tx).numpy()
    got = ops.gelu_erf_backward(g, x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.all(np.abs(got[fin] - want[fin]) <= tol * (np.abs(g[fin]) + 1))
