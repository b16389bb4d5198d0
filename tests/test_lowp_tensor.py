"""bfloat16 and float16 Tensors and the kernels that compute them in float32
(dlkern.dtypes, dlkern.ops.lowp): names, casts, reductions, ops' bf16-in/bf16-out contract."""

import ml_dtypes
import numpy as np
import pytest

import dlkern
from dlkern import ops, reference
from dlkern.dtypes import as_dtype, is_floating, is_low_precision

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
LOWP = [BF16, F16]
# one unit in the last place at 1.0: the relative rounding error of one rounding is half of it
ULP = {BF16: 2.0 ** -7, F16: 2.0 ** -10}


def _lowp(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32).astype(dtype)


def _rounded_close(got, want64, dtype, rel_terms=1.0):
    """got (16-bit) is want64 (float64) rounded once, give or take the float32 work inside:
    |got - want| <= ulp/2 * |want| * (1 + slack) + a tiny absolute part."""
    assert got.dtype == dtype
    got = got.astype(np.float64)
    bound = ULP[dtype] * 0.5 * (1 + rel_terms * 2.0 ** -10) * np.abs(want64) + 1e-30
    # float32 inside adds ~1e-6 relative, far under the 16-bit half-ulp; allow it on top
    bound = bound + 1e-5 * np.abs(want64) + 1e-6
    bad = np.abs(got - want64) > bound
    assert not bad.any(), (got[bad][:5], want64[bad][:5])


def test_dtype_names():
    assert dlkern.bfloat16 == BF16 and dlkern.float16 == F16 and dlkern.half == F16
    assert as_dtype("bfloat16") == BF16 and as_dtype("half") == F16
    assert is_floating(BF16) and is_floating(F16) and is_floating(np.dtype(np.float32))
    assert not is_floating(np.dtype(np.int32)) and not is_floating(np.dtype(np.bool_))
    assert is_low_precision(BF16) and is_low_precision(F16) and not is_low_precision(np.dtype(np.float32))


@pytest.mark.parametrize("dtype", LOWP, ids=str)
def test_cast_round_trip_and_gradient(dtype):
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((3, 5)).astype(np.float32)
    x = dlkern.tensor(x32, requires_grad=True)
    y = x.bfloat16() if dtype == BF16 else x.half()
    assert y.dtype == dtype and y.is_floating_point() and y.requires_grad
    np.testing.assert_array_equal(y.data.view(np.uint16), x32.astype(dtype).view(np.uint16))
    w = rng.standard_normal((3, 5)).astype(np.float32)
    (y.float() * dlkern.tensor(w)).sum().backward()
    assert x.grad.dtype == np.float32
    # d/dx of round(x) is taken as 1 (as PyTorch): w itself, rounded through the 16-bit dtype
    np.testing.assert_array_equal(x.grad.numpy(), w.astype(dtype).astype(np.float32))


def test_low_precision_leaf_can_require_grad_and_repr():
    t = dlkern.tensor([1.0, 2.5], dtype="bfloat16", requires_grad=True)
    assert t.requires_grad and t.dtype == BF16
    assert repr(t) == "tensor([1. , 2.5], dtype=bfloat16, requires_grad=True)"
    assert dlkern.zeros(2, dtype=dlkern.bfloat16).dtype == BF16
    with pytest.raises(TypeError, match="dtype mismatch"):
        t + dlkern.tensor([1.0, 2.0])


@pytest.mark.parametrize("dtype", LOWP, ids=str)
def test_sum_and_mean_accumulate_in_float32(dtype):
    ones = dlkern.ones(10000, dtype=dtype)
    # accumulated in bfloat16 the sum would stop at 256 (256 + 1 rounds back to 256)
    want = np.float64(np.float32(10000).astype(dtype))
    assert ones.sum().dtype == dtype and float(ones.sum()) == want
    rng = np.random.default_rng(1)
    x = _lowp(rng, (64, 300), dtype)
    ref = x.astype(np.float64)
    _rounded_close(dlkern.tensor(x).sum(1).numpy(), ref.sum(1), dtype, rel_terms=300)
    _rounded_close(dlkern.tensor(x).mean(0).numpy(), ref.mean(0), dtype, rel_terms=64)


def _ref_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# (name, call on the ops, independent float64 reference of the same call); each output
# must be the float64 result rounded once to the input's 16-bit dtype.
def _cases(rng, dtype):
    x = _lowp(rng, (6, 33), dtype)
    img = _lowp(rng, (2, 3, 9, 9), dtype)
    w = _lowp(rng, (4, 3, 3, 3), dtype, 0.3)
    x64, img64, w64 = (a.astype(np.float64) for a in (x, img, w))
    yield "softmax", ops.softmax(x, -1), _ref_softmax(x64)
    yield "log_softmax", ops.log_softmax(x, -1), np.log(_ref_softmax(x64))
    mu, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    yield "layer_norm", ops.layer_norm(x, 33), (x64 - mu) / np.sqrt(var + 1e-5)
    yield "gelu_tanh", ops.gelu_tanh(x), reference.gelu_tanh(x64)
    yield "conv2d", ops.conv2d(img, w, padding=1), reference.conv2d(img64, w64, padding=1)
    yield "max_pool2d", ops.max_pool2d(img, 2), reference.max_pool2d(img64, 2)


@pytest.mark.parametrize("dtype", LOWP, ids=str)
def test_kernels_compute_16_bit_in_float32(dtype):
    rng = np.random.default_rng(2)
    for name, got, want in _cases(rng, dtype):
        assert got.dtype == dtype, name
        assert got.shape == want.shape, name
        _rounded_close(got, want, dtype, rel_terms=30)


@pytest.mark.parametrize("dtype", LOWP, ids=str)
def test_forward_keeps_saved_state_in_float32_and_backward_runs(dtype):
    rng = np.random.default_rng(3)
    x = _lowp(rng, (5, 16), dtype)
    y, mean, rstd = ops.layer_norm_forward(x, 16)
    assert y.dtype == dtype and mean.dtype == np.float32 and rstd.dtype == np.float32
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean.reshape(-1), x64.mean(-1), rtol=1e-6, atol=1e-7)
    dy = _lowp(rng, (5, 16), dtype)
    dx, _, _ = ops.layer_norm_backward(dy, x, 16, None, mean, rstd)
    want = reference.layer_norm_backward(dy.astype(np.float64), x64, 16, None, x64.mean(-1),
                                         1 / np.sqrt(x64.var(-1) + 1e-5))[0]
    assert dx.dtype == dtype
    _rounded_close(dx, want, dtype, rel_terms=100)


def test_cross_entropy_bf16_loss_and_gradient():
    rng = np.random.default_rng(4)
    logits = _lowp(rng, (7, 10), BF16, 3.0)
    target = rng.integers(0, 10, 7)
    x = dlkern.tensor(logits, requires_grad=True)
    loss = dlkern.nn.functional.cross_entropy(x, dlkern.tensor(target))
    assert loss.dtype == BF16 and loss.shape == ()
    l64 = logits.astype(np.float64)
    lse = np.log(np.exp(l64 - l64.max(1, keepdims=True)).sum(1)) + l64.max(1)
    _rounded_close(loss.detach().numpy(), np.mean(lse - l64[np.arange(7), target]), BF16)
    loss.backward()
    p = _ref_softmax(l64)
    p[np.arange(7), target] -= 1
    assert x.grad.dtype == BF16
    # the upstream 1.0 and the gradient each rounded once
    _rounded_close(x.grad.numpy(), p / 7, BF16, rel_terms=20)


def test_out_argument_and_refusals():
    rng = np.random.default_rng(5)
    x = _lowp(rng, (3, 4), BF16)
    out = np.empty((3, 4), BF16)
    assert ops.softmax(x, -1, out=out) is out
    _rounded_close(out, _ref_softmax(x.astype(np.float64)), BF16)
    with pytest.raises(TypeError, match="softmax: out has dtype float32 but the inputs have dtype bfloat16"):
        ops.softmax(x, -1, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="int16"):  # an unsupported dtype is still refused by the kernel
        ops.softmax(np.ones((2, 2), np.int16), -1)


def test_float32_call_takes_the_kernel_itself():
    # a float32/float64 call is the compiled kernel's: its own error for a bad argument
    with pytest.raises(ValueError, match="^softmax: dim"):
        ops.softmax(np.ones((2, 2), np.float32), 5)


def test_broadcast_and_bias_gradients_accumulate_in_float32():
    # 512 rows of gradient 1 summed into a bias: accumulated in bfloat16 they would stop at 256
    x = dlkern.ones((512, 3), dtype=BF16)
    b = dlkern.zeros(3, dtype=BF16, requires_grad=True)
    (x + b).sum().backward()
    assert b.grad.dtype == BF16
    np.testing.assert_array_equal(b.grad.numpy().astype(np.float32), [512, 512, 512])
    w = dlkern.zeros((2, 3), dtype=BF16, requires_grad=True)
    b2 = dlkern.zeros(2, dtype=BF16, requires_grad=True)
    dlkern.nn.functional.linear(x, w, b2).sum().backward()
    np.testing.assert_array_equal(b2.grad.numpy().astype(np.float32), [512, 512])
    np.testing.assert_array_equal(w.grad.numpy().astype(np.float32), np.full((2, 3), 512))


SPECIALS = [1.5, -2.0, 0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-40, -1e-40, 3e38, -3e38, 6e-8, -6e-8]


@pytest.mark.parametrize("dtype", LOWP, ids=str)
def test_relu_16_bit_values_and_gradient(dtype):
    rng = np.random.default_rng(6)
    with np.errstate(over="ignore"):  # 3e38 is Inf in float16, on purpose
        x = np.concatenate([np.array(SPECIALS, np.float32), rng.standard_normal(200).astype(np.float32)]).astype(dtype)
    t = dlkern.tensor(x, requires_grad=True)
    y = dlkern.nn.functional.relu(t)
    x32 = x.astype(np.float32)
    want = np.where(np.isnan(x32), x32, np.maximum(x32, 0))  # NaN kept, as torch.relu
    assert y.dtype == dtype
    np.testing.assert_array_equal(y.detach().numpy().astype(np.float32), want)
    g = rng.standard_normal(x.shape).astype(np.float32).astype(dtype)
    y.backward(dlkern.tensor(g))
    # torch's threshold_backward: g where the output is > 0 (a NaN output passes none here)
    np.testing.assert_array_equal(t.grad.numpy().astype(np.float32), np.where(want > 0, g.astype(np.float32), 0))
    assert t.grad.dtype == dtype


@pytest.mark.parametrize("dtype", LOWP, ids=str)
def test_linear_16_bit_bias_enters_the_accumulator(dtype):
    rng = np.random.default_rng(7)
    x, w, b = _lowp(rng, (9, 40), dtype), _lowp(rng, (6, 40), dtype), _lowp(rng, (6,), dtype)
    y = dlkern.nn.functional.linear(dlkern.tensor(x), dlkern.tensor(w), dlkern.tensor(b))
    want = x.astype(np.float64) @ w.astype(np.float64).T + b.astype(np.float64)
    assert y.dtype == dtype
    _rounded_close(y.numpy(), want, dtype, rel_terms=40)
    one_row = dlkern.nn.functional.linear(dlkern.tensor(x[:1]), dlkern.tensor(w), dlkern.tensor(b))
    np.testing.assert_array_equal(one_row.numpy().view(np.uint16), y.numpy()[:1].view(np.uint16))


def test_module_casts_and_state_dict_in_bfloat16():
    m = dlkern.nn.Sequential(dlkern.nn.Linear(5, 4), dlkern.nn.BatchNorm1d(4))
    w32 = m[0].weight.detach().numpy().copy()
    param = m[0].weight
    assert m.bfloat16() is m and m[0].weight is param  # in place, the same Parameter
    assert m[0].weight.dtype == BF16 and m[1].running_mean.dtype == BF16
    np.testing.assert_array_equal(m[0].weight.detach().numpy().view(np.uint16), w32.astype(BF16).view(np.uint16))
    other = dlkern.nn.Sequential(dlkern.nn.Linear(5, 4), dlkern.nn.BatchNorm1d(4)).bfloat16()
    other.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(other[0].weight.detach().numpy().view(np.uint16),
                                  m[0].weight.detach().numpy().view(np.uint16))
    assert m.half()[0].weight.dtype == F16 and m.float()[0].weight.dtype == np.float32
    with pytest.raises(TypeError, match="only floating dtypes"):
        m.to(np.int32)
    # a 16-bit model trains: the forward, loss and gradients stay 16-bit, running stats update
    m.bfloat16().train()
    x = dlkern.tensor(np.random.default_rng(8).standard_normal((6, 5)).astype(BF16))
    before = m[1].running_mean.numpy().astype(np.float32).copy()
    m(x).float().sum().backward()
    assert m[0].weight.grad.dtype == BF16
    assert not np.array_equal(m[1].running_mean.numpy().astype(np.float32), before)
