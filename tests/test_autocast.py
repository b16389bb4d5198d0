"""dlkern.autocast: the op policy (output dtypes), values against float64 NumPy
references, gradients to float32 masters, nesting, the cast cache, errors; PyTorch's
CPU autocast is the oracle for the ops whose policy it shares (importorskip)."""

import numpy as np
import pytest

import dlkern
import dlkern.nn.functional as F
from dlkern import nn
from dlkern.autograd.autocast_state import AutocastState

from helpers import check_grads

BF16, FP16, F32, F64 = dlkern.bfloat16, dlkern.float16, dlkern.float32, dlkern.float64
LOW = [BF16, FP16]
# one rounding of a 16-bit result plus float32-accumulated products of 16-bit inputs
TOL = {BF16: 2.0 ** -7, FP16: 2.0 ** -9}


def _rng():
    return np.random.default_rng(16)


def _t(a, requires_grad=False):
    return dlkern.tensor(np.asarray(a, np.float32), requires_grad=requires_grad)


def _round(a, dtype):
    """a rounded to dtype, in float64 (what autocast's cast does to an input)."""
    return np.asarray(a, np.float32).astype(dtype).astype(np.float64)


def _close(actual, expected, dtype):
    a = np.asarray(actual.data if hasattr(actual, "data") else actual).astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(a, expected, rtol=0, atol=2 * TOL[dtype] * scale)


# ---------------------------------------------------------------------- policy: dtypes
def _inputs():
    rng = _rng()
    return {"x": _t(rng.standard_normal((4, 8))), "w": _t(rng.standard_normal((3, 8)), True),
            "b": _t(rng.standard_normal(3), True), "y": _t(rng.standard_normal((4, 3))),
            "img": _t(rng.standard_normal((2, 1, 6, 6))), "k": _t(rng.standard_normal((2, 1, 3, 3))),
            "q": _t(rng.standard_normal((2, 5, 8))), "t": dlkern.tensor([0, 1, 2, 0])}


# (name, op, "lower" | "float32" | "same") -- "same": the dtype of the (16-bit) input
CASES = [
    ("linear", lambda d: F.linear(d["x"], d["w"], d["b"]), "lower"),
    ("matmul", lambda d: d["x"] @ d["w"].t(), "lower"),
    ("bmm", lambda d: dlkern.bmm(d["q"], d["q"].transpose(1, 2)), "lower"),
    ("einsum", lambda d: dlkern.einsum("ij,kj->ik", d["x"], d["w"]), "lower"),
    ("conv2d", lambda d: F.conv2d(d["img"], d["k"]), "lower"),
    ("sdpa", lambda d: F.scaled_dot_product_attention(d["q"], d["q"], d["q"]), "lower"),
    ("softmax", lambda d: F.linear(d["x"], d["w"]).softmax(-1), "float32"),
    ("log_softmax", lambda d: F.log_softmax(F.linear(d["x"], d["w"]), -1), "float32"),
    ("layer_norm", lambda d: F.layer_norm(F.linear(d["x"], d["w"]), (3,)), "float32"),
    ("exp", lambda d: F.linear(d["x"], d["w"]).exp(), "float32"),
    ("sum", lambda d: F.linear(d["x"], d["w"]).sum(), "float32"),
    ("mean", lambda d: F.linear(d["x"], d["w"]).mean(), "float32"),
    ("cross_entropy", lambda d: F.cross_entropy(F.linear(d["x"], d["w"]), d["t"]), "float32"),
    ("mse_loss", lambda d: F.mse_loss(F.linear(d["x"], d["w"]), d["y"]), "float32"),
    ("nll_loss", lambda d: F.nll_loss(F.linear(d["x"], d["w"]), d["t"]), "float32"),
    ("relu", lambda d: F.linear(d["x"], d["w"]).relu(), "same"),
    ("gelu", lambda d: F.gelu(F.linear(d["x"], d["w"])), "same"),
    ("mixed_add", lambda d: F.linear(d["x"], d["w"]) + d["y"], "float32"),
    ("mixed_mul", lambda d: d["y"] * F.linear(d["x"], d["w"]), "float32"),
    ("mixed_cat", lambda d: dlkern.cat([F.linear(d["x"], d["w"]), d["y"]]), "float32"),
]
# The ops where PyTorch's CPU autocast has the same policy as dlkern (its CPU list leaves
# softmax, the norms, exp and sums in the 16-bit dtype; dlkern follows the CUDA list).
TORCH_SAME = {"linear", "matmul", "bmm", "einsum", "conv2d", "sdpa", "cross_entropy", "mse_loss", "nll_loss",
              "relu", "gelu", "mixed_add", "mixed_mul", "mixed_cat"}


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name,op,kind", CASES, ids=[c[0] for c in CASES])
def test_output_dtype(name, op, kind, dtype):
    d = _inputs()
    with dlkern.autocast("cpu", dtype=dtype):
        out = op(d)
    assert out.dtype == (dtype if kind in ("lower", "same") else F32), name
    # outside the region the same op is float32 again
    assert op(d).dtype == F32


@pytest.mark.parametrize("dtype", LOW, ids=str)
@pytest.mark.parametrize("name,op,kind", [c for c in CASES if c[0] in TORCH_SAME], ids=sorted(TORCH_SAME,
                         key=[c[0] for c in CASES].index))
def test_output_dtype_matches_torch(name, op, kind, dtype):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as TF
    d = _inputs()
    td = {k: torch.from_numpy(np.array(v.data)) for k, v in d.items()}
    torch_ops = {
        "linear": lambda d: TF.linear(d["x"], d["w"], d["b"]), "matmul": lambda d: d["x"] @ d["w"].t(),
        "bmm": lambda d: torch.bmm(d["q"], d["q"].transpose(1, 2)),
        "einsum": lambda d: torch.einsum("ij,kj->ik", d["x"], d["w"]), "conv2d": lambda d: TF.conv2d(d["img"], d["k"]),
        "sdpa": lambda d: TF.scaled_dot_product_attention(d["q"], d["q"], d["q"]),
        "cross_entropy": lambda d: TF.cross_entropy(TF.linear(d["x"], d["w"]), d["t"]),
        "mse_loss": lambda d: TF.mse_loss(TF.linear(d["x"], d["w"]), d["y"]),
        "nll_loss": lambda d: TF.nll_loss(TF.linear(d["x"], d["w"]), d["t"]),
        "relu": lambda d: TF.linear(d["x"], d["w"]).relu(), "gelu": lambda d: TF.gelu(TF.linear(d["x"], d["w"])),
        "mixed_add": lambda d: TF.linear(d["x"], d["w"]) + d["y"],
        "mixed_mul": lambda d: d["y"] * TF.linear(d["x"], d["w"]),
        "mixed_cat": lambda d: torch.cat([TF.linear(d["x"], d["w"]), d["y"]]),
    }
    tdtype = {BF16: torch.bfloat16, FP16: torch.float16}[dtype]
    with torch.autocast("cpu", dtype=tdtype):
        expected = torch_ops[name](td)
    with dlkern.autocast("cpu", dtype=dtype):
        out = op(d)
    assert str(out.dtype) == str(expected.dtype).replace("torch.", ""), name
    np.testing.assert_allclose(np.asarray(out.data, np.float64), expected.double().numpy(),
                               rtol=4 * TOL[dtype], atol=4 * TOL[dtype] * max(1.0, expected.abs().max().item()))


def test_float64_is_never_lowered():
    x = dlkern.ones((2, 3), dtype=F64)
    with dlkern.autocast():
        assert (x @ x.t()).dtype == F64
        assert x.sum().dtype == F64


def test_bf16_with_fp16_promotes_to_float32():
    a, b = dlkern.ones(3, dtype=BF16), dlkern.ones(3, dtype=FP16)
    with dlkern.autocast():
        assert (a + b).dtype == F32
        assert (a - b).dtype == F32


# ---------------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_linear_values_against_float64(dtype):
    rng = _rng()
    x, w, b = rng.standard_normal((16, 32)), rng.standard_normal((8, 32)), rng.standard_normal(8)
    with dlkern.autocast(dtype=dtype):
        out = F.linear(_t(x), _t(w), _t(b))
    # the inputs are rounded to dtype, products accumulate in float32, the result rounds
    ref = _round(x, dtype) @ _round(w, dtype).T + _round(b, dtype)
    _close(out, ref, dtype)


@pytest.mark.parametrize("dtype", LOW, ids=str)
def test_softmax_cross_entropy_values(dtype):
    rng = _rng()
    x, w = rng.standard_normal((6, 10)), rng.standard_normal((5, 10))
    t = np.array([0, 4, 2, 1, 3, 0])
    with dlkern.autocast(dtype=dtype):
        logits = _t(x) @ _t(w).t()
        p = logits.softmax(-1)
        loss = F.cross_entropy(logits, dlkern.tensor(t))
    z = _round(_round(x, dtype) @ _round(w, dtype).T, dtype)  # the matmul's 16-bit output
    e = np.exp(z - z.max(-1, keepdims=True))
    ref_p = e / e.sum(-1, keepdims=True)
    np.testing.assert_allclose(p.data, ref_p, rtol=1e-5, atol=1e-6)  # float32 from z
    ref_loss = -np.mean(np.log(ref_p[np.arange(6), t]))
    np.testing.assert_allclose(float(loss.item()), ref_loss, rtol=1e-5)


def test_empty_zero_d_and_non_contiguous():
    rng = _rng()
    w = _t(rng.standard_normal((3, 8)), True)
    with dlkern.autocast():
        e = F.linear(dlkern.zeros((0, 8)), w)
        assert e.shape == (0, 3) and e.dtype == BF16
        s = dlkern.tensor(2.5).exp()  # 0-d float32 stays float32
        assert s.dtype == F32 and s.shape == ()
        a = rng.standard_normal((8, 5))
        nc = _t(a).t()  # (5, 8), a transposed view
        out = nc @ w.t()
    _close(out, _round(_round(a.T, BF16) @ _round(w.data, BF16).T, BF16), BF16)


# ---------------------------------------------------------------------- gradients
def test_gradients_reach_float32_masters_as_the_explicit_casts():
    rng = _rng()
    x = _t(rng.standard_normal((4, 8)))
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    t = dlkern.tensor([0, 1, 2, 1])
    with dlkern.autocast():
        loss = F.cross_entropy(model(x), t)
    loss.backward()
    got = [p.grad.data.copy() for p in model.parameters()]
    assert all(g.dtype == np.float32 for g in got)
    model.zero_grad()
    # the same computation with the casts written out, no autocast
    l1, l2 = model[0], model[2]
    h = F.linear(x.bfloat16(), l1.weight.bfloat16(), l1.bias.bfloat16()).tanh()
    logits = F.linear(h, l2.weight.bfloat16(), l2.bias.bfloat16())
    F.cross_entropy(logits.float(), t).backward()
    for g, p in zip(got, model.parameters()):
        np.testing.assert_array_equal(g, p.grad.data)


def test_gradients_finite_differences_float64_under_autocast():
    # float64 is outside autocast's casts, so a float64 graph inside a region must give
    # exact gradients: checked against central differences.
    rng = _rng()
    x0, w0, b0 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)

    def forward(x, w, b):
        with dlkern.autocast():
            out = F.log_softmax(F.linear(dlkern.tensor(x), dlkern.tensor(w), dlkern.tensor(b)), -1)
        return out.data

    def backward(g, x, w, b):
        xs = [dlkern.tensor(a, requires_grad=True) for a in (x, w, b)]
        with dlkern.autocast():
            out = F.log_softmax(F.linear(*xs), -1)
        (out * dlkern.tensor(g)).sum().backward()
        return tuple(t.grad.data for t in xs)

    check_grads(forward, backward, [x0, w0, b0], rng)


def test_16_bit_bias_gradients_accumulate_in_float32():
    # 4096 rows of gradient 1: a sum kept in bfloat16 stalls at 256 (256 + 1 rounds back
    # to 256); Linear's bias gradient and a broadcast add's (the engine's sum_to_shape)
    # must accumulate in float32 and round once.
    x = dlkern.ones((4096, 2))
    w, b = _t(np.ones((3, 2)), True), _t(np.zeros(3), True)
    c = dlkern.zeros(3, dtype=BF16).requires_grad_(True)
    with dlkern.autocast():
        out = F.linear(x, w, b) + c
    out.sum().backward()
    np.testing.assert_array_equal(b.grad.data, np.full(3, 4096.0))
    np.testing.assert_array_equal(c.grad.data.astype(np.float32), np.full(3, 4096.0))
    assert c.grad.dtype == BF16


# ---------------------------------------------------------------------- regions
def test_nesting_and_disabled_inner_region():
    x, w = dlkern.ones((2, 4)), dlkern.ones((3, 4))
    assert not dlkern.amp.is_autocast_enabled()
    with dlkern.autocast():
        assert dlkern.amp.is_autocast_enabled("cpu") and not dlkern.amp.is_autocast_enabled("cuda")
        with dlkern.autocast(enabled=False):
            assert (x @ w.t()).dtype == F32
            with dlkern.autocast(dtype=FP16):
                assert (x @ w.t()).dtype == FP16
                assert dlkern.amp.get_autocast_dtype("cpu") == FP16
            assert (x @ w.t()).dtype == F32
        assert (x @ w.t()).dtype == BF16
    assert (x @ w.t()).dtype == F32
    assert not AutocastState.active


def test_state_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with dlkern.autocast():
            1 / 0
    assert not AutocastState.active and AutocastState.depth == 0 and not AutocastState.cache


def test_decorator_and_recursion():
    @dlkern.autocast()
    def f(x, w, n):
        return x @ w.t() if n == 0 else f(x, w, n - 1)

    x = dlkern.ones((2, 4))
    assert f(x, x, 3).dtype == BF16
    assert (x @ x.t()).dtype == F32 and not AutocastState.active
    assert dlkern.amp.autocast is dlkern.autocast


def test_cuda_region_leaves_cpu_tensors_alone():
    x = dlkern.ones((2, 4))
    with dlkern.autocast("cuda"):
        assert dlkern.amp.get_autocast_dtype("cuda") == FP16  # PyTorch's default there
        assert (x @ x.t()).dtype == F32


def test_cast_cache_once_per_region_and_under_no_grad():
    w = _t(np.ones((3, 4)), True)
    x = dlkern.ones((2, 4))
    with dlkern.autocast():
        a = F.linear(x, w)
        b = F.linear(x, w)
        # one cached bfloat16 copy of w feeds both products (the same Cast node)
        assert a.grad_fn.parents[1] is b.grad_fn.parents[1]
        assert len(AutocastState.cache) == 1
        with dlkern.no_grad():
            c = F.linear(x, w)
            assert c.dtype == BF16 and not c.requires_grad
        assert len(AutocastState.cache) == 2  # (the no_grad copy is cached apart)
        t = x @ w.t()  # w.t() is no leaf: cast each time, never cached (as PyTorch)
        assert len(AutocastState.cache) == 2 and t.dtype == BF16
    assert not AutocastState.cache
    (a.sum() + b.sum()).backward()
    np.testing.assert_allclose(w.grad.data, np.full((3, 4), 4.0))
    with dlkern.autocast(cache_enabled=False):
        a = F.linear(x, w)
        b = F.linear(x, w)
        assert a.grad_fn.parents[1] is not b.grad_fn.parents[1] and not AutocastState.cache


def test_mismatch_still_refused_outside_autocast():
    a, b = dlkern.ones(3, dtype=BF16), dlkern.ones(3)
    with pytest.raises(TypeError, match="dtype mismatch"):
        a + b
    with pytest.raises(TypeError, match="dtype mismatch"):
        dlkern.cat([a, b])
    with pytest.raises(TypeError, match="differs from the weight"):
        nn.Linear(3, 2)(a)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: dlkern.autocast(3), ValueError, "device_type"),
    (lambda: dlkern.autocast("tpu"), RuntimeError, "device_type"),
    (lambda: dlkern.autocast("cpu", dtype=F64), ValueError, "bfloat16 or dlkern.float16"),
    (lambda: dlkern.autocast("cpu", dtype=F32), ValueError, "float32"),
    (lambda: dlkern.autocast("cpu", enabled=1), TypeError, "enabled"),
], ids=["device_type_int", "device_type_unknown", "dtype_float64", "dtype_float32", "enabled_int"])
def test_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_unsupported_dtype_is_fine_when_disabled():
    with dlkern.autocast("cpu", dtype=F64, enabled=False):
        assert not AutocastState.active


def test_cuda_policy_on_the_host_twin():
    # The policy is device-neutral: a "cuda" region casts CUDA tensors (a "cpu" region
    # leaves them alone). The CUDA module has no 16-bit arrays yet, so the cast itself
    # is refused there with the device's dtype error.
    import host_cuda
    from dlkern.devices import CUDADevice
    dev = CUDADevice(0, module=host_cuda)
    lin = nn.Linear(4, 3).to(dev)
    x = dlkern.ones((2, 4), device=dev)
    with dlkern.autocast("cpu"):
        assert lin(x).dtype == F32
    with dlkern.autocast("cuda", dtype=BF16):
        with pytest.raises(TypeError, match="unsupported dtype bfloat16"):
            lin(x)
    assert not AutocastState.active
