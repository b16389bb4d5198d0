"""Edge-case semantics as PyTorch (issue 13): 0-d tensors in reductions, transpose and
softmax; empty (size-0) tensors through every op; unbatched conv/pool inputs; batch
broadcasting in scaled_dot_product_attention; max_pool2d indices with max_unpool2d;
matmul/linear backward from expanded gradients; cat with size-0 dims; softmax's axis alias.

Each behaviour is checked against a NumPy reference written here (float64 finite
differences for gradients), and against PyTorch where it is installed."""

import operator
import warnings

import numpy as np
import pytest

import dlkern
import dlkern.nn.functional as F
from dlkern import nn
from helpers import numeric_grad

RNG = np.random.default_rng(1313)


def A(*shape):
    return RNG.standard_normal(shape)


def T(a, grad=False):
    return dlkern.tensor(np.asarray(a), requires_grad=grad)


def fd_check(fn, arrays, rtol=1e-6, atol=1e-8):
    """Backward of sum(fn(*tensors) * w) against central finite differences, float64."""
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
    ts = [T(a, True) for a in arrays]
    out = fn(*ts)
    w = RNG.standard_normal(out.shape)
    (out * T(w)).sum().backward()
    for i, (a, t) in enumerate(zip(arrays, ts)):
        expected = numeric_grad(lambda: float(np.sum(fn(*[T(b) for b in arrays]).data * w)), a)
        assert t.grad is not None and t.grad.shape == a.shape, f"input {i}: gradient shape"
        np.testing.assert_allclose(t.grad.data, expected, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")
    return out


# ---------------------------------------------------------------------- 0-d tensors

# (method, call, NumPy reference of the value for x, reference gradient d out / d x)
ZERO_D = [
    ("sum", lambda x, d: x.sum(d), lambda v: v, 1.0),
    ("mean", lambda x, d: x.mean(d), lambda v: v, 1.0),
    ("amax", lambda x, d: x.amax(d), lambda v: v, 1.0),
    ("amin", lambda x, d: x.amin(d), lambda v: v, 1.0),
    ("logsumexp", lambda x, d: x.logsumexp(d), lambda v: v, 1.0),
    ("max", lambda x, d: x.max(d).values, lambda v: v, 1.0),
    ("min", lambda x, d: x.min(d).values, lambda v: v, 1.0),
    ("softmax", lambda x, d: x.softmax(d), lambda v: 1.0, 0.0),
    ("log_softmax", lambda x, d: x.log_softmax(d), lambda v: 0.0, 0.0),
    ("var0", lambda x, d: x.var(d, correction=0), lambda v: 0.0, 0.0),
    ("var", lambda x, d: x.var(d), lambda v: np.nan, np.nan),   # no degrees of freedom
    ("std", lambda x, d: x.std(d), lambda v: np.nan, np.nan),
    ("sum_keepdim", lambda x, d: x.sum(d, keepdim=True), lambda v: v, 1.0),
]


@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("name,call,ref,dref", ZERO_D, ids=[c[0] for c in ZERO_D])
def test_zero_d_reductions_take_dim_0_and_minus_1(name, call, ref, dref, dim):
    x = T(np.float64(1.25), True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # NumPy's "degrees of freedom <= 0"
        out = call(x, dim)
        assert out.shape == ()
        np.testing.assert_allclose(out.data, ref(1.25), equal_nan=True)
        out.backward()
    assert x.grad.shape == ()
    np.testing.assert_allclose(x.grad.data, dref, equal_nan=True)


def test_zero_d_indices_transpose_and_bad_dims():
    x = T(np.float64(2.0))
    for dim in (0, -1):
        for idx in (x.argmax(dim), x.argmin(dim), x.max(dim).indices, x.min(dim, keepdim=True).indices):
            assert idx.shape == () and idx.dtype == np.int64 and int(idx.item()) == 0
    for d0, d1 in ((0, 0), (-1, 0), (0, -1), (-1, -1)):
        assert x.transpose(d0, d1).shape == () and float(x.transpose(d0, d1).item()) == 2.0
    assert x.t().shape == () and dlkern.transpose(x, 0, 0).shape == ()
    for call in (lambda: x.sum(1), lambda: x.mean(-2), lambda: x.max(1), lambda: x.argmax(1),
                 lambda: x.transpose(0, 1), lambda: x.logsumexp(1)):
        with pytest.raises(IndexError, match="out of range"):
            call()
    with pytest.raises(ValueError, match="softmax: dim 1"):
        x.softmax(1)


def test_zero_d_matches_torch():
    torch = pytest.importorskip("torch")
    for name, call, _, _ in ZERO_D:
        for dim in (0, -1):
            x, tx = T(np.float64(0.75), True), torch.tensor(0.75, dtype=torch.float64, requires_grad=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out, tout = call(x, dim), call(tx, dim)
                out.backward()
                tout.backward()
            assert out.shape == tuple(tout.shape), name
            np.testing.assert_allclose(out.data, tout.detach().numpy(), equal_nan=True, err_msg=name)
            np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), equal_nan=True, err_msg=name)


# ---------------------------------------------------------------------- empty tensors

def test_empty_reductions_follow_numpy_identities():
    e = T(np.zeros((0, 3)), True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(e.sum(0).data, np.zeros(3))
        assert np.isnan(e.mean(0).data).all() and np.isnan(e.mean().data)
        assert np.isnan(e.var(0).data).all() and np.isnan(e.std(0).data).all()
        np.testing.assert_array_equal(e.logsumexp(0).data, np.full(3, -np.inf))
        for r in (e.sum(1), e.mean(1), e.var(1), e.amax(1), e.amin(1), e.logsumexp(1), e.max(1).values,
                  e.argmax(1), e.softmax(0), e.log_softmax(1)):
            assert r.shape[0] == 0
        e.logsumexp(0).sum().backward()
    assert e.grad.shape == (0, 3)
    with pytest.raises(IndexError, match="amax.*dim 0"):
        e.amax(0)
    with pytest.raises(IndexError, match="dim 0 of size 0"):
        e.max(0)
    with pytest.raises(RuntimeError, match="reduction dim"):
        e.max()
    with pytest.raises(IndexError, match="argmax"):
        e.argmax()


def test_empty_matmul_linear_cat_shapes_and_values():
    a, b = T(A(2, 0), True), T(A(0, 3), True)
    out = a @ b                                    # an empty sum: zeros
    np.testing.assert_array_equal(out.data, np.zeros((2, 3)))
    out.sum().backward()
    assert a.grad.shape == (2, 0) and b.grad.shape == (0, 3)
    x, w, bias = T(A(2, 0)), T(A(3, 0)), T(A(3))
    np.testing.assert_allclose(F.linear(x, w, bias).data, np.broadcast_to(bias.data, (2, 3)))
    assert F.linear(T(A(0, 4)), T(A(3, 4))).shape == (0, 3)
    assert (T(A(0, 2, 3)) @ T(A(3, 4))).shape == (0, 2, 4)
    assert T(A(3, 2))[[]].shape == (0, 2)
    with pytest.raises(ValueError, match="reshape: .*\\(0, 3, 2\\)"):
        T(A(0, 3, 2)).reshape(0, -1)


# The sweep: every Tensor method, free function and F function that exists, on inputs
# with a size-0 dim, each spelled once for both libraries (m is dlkern or torch).
def _f(m):
    return m.nn.functional


SWEEP = []


def sweep(name, fn, *arrays, grad=True):
    SWEEP.append(pytest.param(fn, arrays, grad, id=name))


E = A(0, 3)
for _u in ("abs", "cos", "exp", "sin", "tanh", "sigmoid", "relu", "clone", "t", "flatten", "sqrt", "log"):
    sweep(_u, lambda m, x, u=_u: getattr(x, u)(), E)
sweep("neg", lambda m, x: -x, E)
sweep("clamp", lambda m, x: x.clamp(-1, 1), E)
sweep("pow", lambda m, x: x ** 2, E)
sweep("rpow", lambda m, x: 2.0 ** x, E)
for _op in ("add", "sub", "mul", "truediv"):
    sweep(_op, lambda m, x, y, op=_op: getattr(operator, op)(x, y), E, A(1, 3))
    sweep(_op + "_broadcast", lambda m, x, y, op=_op: getattr(operator, op)(x, y), A(2, 1), A(0, 1, 3))
sweep("maximum", lambda m, x, y: x.maximum(y), E, A(1, 3))
sweep("minimum", lambda m, x, y: x.minimum(y), E, A(0, 3))
sweep("matmul_rows0", lambda m, x, y: x @ y, E, A(3, 2))
sweep("matmul_inner0", lambda m, x, y: x @ y, A(2, 0), A(0, 3))
sweep("matmul_batch0", lambda m, x, y: x @ y, A(0, 2, 3), A(3, 4))
sweep("matmul_vec0", lambda m, x, y: x @ y, A(0), A(0))
for _r in ("sum", "mean", "var", "std", "logsumexp", "amax", "amin", "softmax", "log_softmax"):
    for _d in ([1, -1] if _r in ("amax", "amin") else [0, 1, -1]):
        sweep(f"{_r}({_d})", lambda m, x, r=_r, d=_d: getattr(x, r)(d), E)
for _r in ("sum", "mean", "var", "std"):
    sweep(f"{_r}()", lambda m, x, r=_r: getattr(x, r)(), E)
for _r in ("max", "min"):
    sweep(f"{_r}(1)", lambda m, x, r=_r: getattr(x, r)(1)[0], E)
    sweep(f"{_r}(1).indices", lambda m, x, r=_r: getattr(x, r)(1)[1], E, grad=False)
sweep("sum_keepdim", lambda m, x: x.sum(0, keepdim=True), E)
sweep("argmax(1)", lambda m, x: x.argmax(1), E, grad=False)
sweep("argmin(1)", lambda m, x: x.argmin(1), E, grad=False)
sweep("reshape", lambda m, x: x.reshape(-1), E)
sweep("reshape_3x0", lambda m, x: x.reshape(3, 0), E)
sweep("view", lambda m, x: x.view(3, 0, 1), E)
sweep("permute", lambda m, x: x.permute(1, 0), E)
sweep("transpose", lambda m, x: x.transpose(0, 1), E)
sweep("T", lambda m, x: x.T, E)
sweep("expand", lambda m, x: x.expand(0, 4), A(0, 1))
sweep("expand_lead", lambda m, x: x.expand(2, 0, 3), E)
sweep("squeeze", lambda m, x: x.squeeze(), A(0, 1, 3))
sweep("squeeze0", lambda m, x: x.squeeze(0), A(0, 1, 3))
sweep("unsqueeze", lambda m, x: x.unsqueeze(1), E)
sweep("split", lambda m, x: x.split(2, 1)[1], E)
sweep("chunk", lambda m, x: x.chunk(2, 1)[0], E)
sweep("getitem", lambda m, x: x[:, 1], E)
sweep("getitem_empty_list", lambda m, x: x[[]], A(3, 2))
sweep("getitem_empty_slice", lambda m, x: x[2:2], A(3, 2))
sweep("getitem_false_mask", lambda m, x: x[x > 10], A(3, 2))
sweep("masked_fill", lambda m, x: x.masked_fill(x > 0, 1.0), E)
sweep("tril", lambda m, x: x.tril(), E)
sweep("triu", lambda m, x: x.triu(), A(3, 0))
sweep("to_float32", lambda m, x: x.to(m.float32), E)
sweep("double", lambda m, x: x.double(), E)
sweep("cat0", lambda m, x, y: m.cat([x, y], 0), E, A(2, 3))
sweep("cat1", lambda m, x, y: m.cat([x, y], 1), A(2, 0, 3), A(2, 4, 3))
sweep("cat_legacy_1d", lambda m, x, y: m.cat([y, x, y], 0), A(0), A(2, 3))
sweep("cat_all_empty", lambda m, x, y: m.cat([x, y], 0), E, E)
sweep("stack", lambda m, x, y: m.stack([x, y], 1), E, E)
sweep("where", lambda m, x, y: m.where(x > 0, x, y), E, E)
sweep("free_sum", lambda m, x: m.sum(x, 0), E)
sweep("free_logsumexp", lambda m, x: m.logsumexp(x, 1), E)
sweep("linear", lambda m, x, w, b: _f(m).linear(x, w, b), A(0, 4), A(3, 4), A(3))
sweep("linear_in0", lambda m, x, w, b: _f(m).linear(x, w, b), A(2, 0), A(3, 0), A(3))
sweep("linear_3d", lambda m, x, w: _f(m).linear(x, w), A(2, 0, 4), A(3, 4))
sweep("conv2d_N0", lambda m, x, w, b: _f(m).conv2d(x, w, b, padding=1), A(0, 2, 5, 5), A(3, 2, 3, 3), A(3))
sweep("conv1d_N0", lambda m, x, w, b: _f(m).conv1d(x, w, b), A(0, 2, 5), A(3, 2, 3), A(3))
sweep("max_pool2d_N0", lambda m, x: _f(m).max_pool2d(x, 2), A(0, 2, 4, 4))
sweep("avg_pool2d_N0", lambda m, x: _f(m).avg_pool2d(x, 2), A(0, 2, 4, 4))
sweep("adaptive_avg_pool2d_N0", lambda m, x: _f(m).adaptive_avg_pool2d(x, 2), A(0, 2, 4, 4))
sweep("layer_norm", lambda m, x, w, b: _f(m).layer_norm(x, (4,), w, b), A(0, 4), A(4), A(4))
sweep("rms_norm", lambda m, x, w: _f(m).rms_norm(x, (4,), w), A(0, 4), A(4))
sweep("group_norm", lambda m, x, w, b: _f(m).group_norm(x, 2, w, b), A(0, 4, 3), A(4), A(4))
sweep("batch_norm_eval", lambda m, x: _f(m).batch_norm(x, m.zeros(3, dtype=m.float64),
                                                       m.ones(3, dtype=m.float64)), A(0, 3))
sweep("embedding", lambda m, w: _f(m).embedding(m.tensor(np.zeros((0, 2), np.int64)), w), A(5, 3))
sweep("dropout_eval", lambda m, x: _f(m).dropout(x, 0.5, training=False), E)
sweep("dropout_train", lambda m, x: _f(m).dropout(x, 0.5, training=True), E)
for _a in ("relu", "elu", "leaky_relu", "selu", "silu", "sigmoid", "tanh", "softplus", "gelu"):
    sweep("F." + _a, lambda m, x, a=_a: getattr(_f(m), a)(x), E)
sweep("F.softmax", lambda m, x: _f(m).softmax(x, dim=1), E)
sweep("F.log_softmax", lambda m, x: _f(m).log_softmax(x, dim=0), E)
for _loss in ("mse_loss", "l1_loss", "binary_cross_entropy_with_logits"):
    for _red in ("mean", "sum", "none"):
        sweep(f"{_loss}_{_red}", lambda m, x, y, f=_loss, r=_red: getattr(_f(m), f)(x, y, reduction=r),
              E, np.zeros((0, 3)))
sweep("binary_cross_entropy", lambda m, x, y: _f(m).binary_cross_entropy(x.sigmoid(), y), E, np.zeros((0, 3)))
for _red in ("mean", "sum", "none"):
    sweep(f"cross_entropy_{_red}", lambda m, x, r=_red: _f(m).cross_entropy(
        x, m.tensor(np.zeros(0, np.int64)), reduction=r), E)
    sweep(f"nll_loss_{_red}", lambda m, x, r=_red: _f(m).nll_loss(x, m.tensor(np.zeros(0, np.int64)), reduction=r), E)
sweep("sdpa_Tq0", lambda m, q, k, v: _f(m).scaled_dot_product_attention(q, k, v), A(1, 2, 0, 4), A(1, 2, 3, 4),
      A(1, 2, 3, 4))
sweep("sdpa_B0", lambda m, q, k, v: _f(m).scaled_dot_product_attention(q, k, v), A(0, 2, 3, 4), A(0, 2, 3, 4),
      A(0, 2, 3, 4))
sweep("sdpa_Tk0", lambda m, q, k, v: _f(m).scaled_dot_product_attention(q, k, v), A(1, 2, 3, 4), A(1, 2, 0, 4),
      A(1, 2, 0, 4))


def _run(m, fn, arrays, grad):
    """(output, input gradients) as NumPy arrays; the cotangent is 1, 2, 3, ..."""
    ts = []
    for a in arrays:
        t = m.tensor(a)
        if grad and a.dtype.kind == "f":
            t.requires_grad_(True)
        ts.append(t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPy's "mean of empty slice", torch's "degrees of freedom"
        out = fn(m, *ts)
        grads = []
        if grad and out.requires_grad:
            w = np.arange(out.numel(), dtype=np.float64).reshape(tuple(out.shape)) + 1
            out.backward(m.tensor(w.astype(out.detach().numpy().dtype)))
            grads = [t.grad.detach().numpy() for t in ts if t.requires_grad]
    return out.detach().numpy(), grads


@pytest.mark.parametrize("fn,arrays,grad", SWEEP)
def test_empty_sweep_runs_and_gives_empty_gradients(fn, arrays, grad):
    out, grads = _run(dlkern, fn, arrays, grad)
    assert out.shape == np.broadcast_shapes(out.shape)  # an array, not a scalar
    for a, g in zip([a for a in arrays if a.dtype.kind == "f"], grads):
        assert g.shape == a.shape


@pytest.mark.parametrize("fn,arrays,grad", SWEEP)
def test_empty_sweep_matches_torch(fn, arrays, grad):
    torch = pytest.importorskip("torch")
    out, grads = _run(dlkern, fn, arrays, grad)
    t_out, t_grads = _run(torch, fn, arrays, grad)
    assert out.shape == t_out.shape and out.dtype.kind == t_out.dtype.kind
    np.testing.assert_allclose(out, t_out, equal_nan=True)
    assert len(grads) == len(t_grads)
    for g, tg in zip(grads, t_grads):
        assert g.shape == tg.shape
        np.testing.assert_allclose(g, tg, equal_nan=True)


# ---------------------------------------------------------------------- unbatched conv and pool

def _windows(x, k, stride, pad, fill=0.0):
    """x (N, C, *spatial) padded by `fill` -> sliding windows (N, C, *out, *k) at `stride`."""
    nd = len(k)
    x = np.pad(x, [(0, 0), (0, 0)] + [(pad, pad)] * nd, constant_values=fill)
    w = np.lib.stride_tricks.sliding_window_view(x, k, axis=tuple(range(2, 2 + nd)))
    return w[(slice(None), slice(None)) + (slice(None, None, stride),) * nd]


def conv_ref(x, w, b, stride=1, pad=0):
    win = _windows(x, w.shape[2:], stride, pad)          # (N, C, *out, *k)
    letters = "hw"[:w.ndim - 2] if w.ndim == 4 else "l"
    k = "uv"[:w.ndim - 2] if w.ndim == 4 else "u"
    out = np.einsum(f"nc{letters}{k},oc{k}->no{letters}", win, w)
    return out + b.reshape((1, -1) + (1,) * (w.ndim - 2))


UNBATCHED = [
    ("conv2d", lambda f, x, w, b: f.conv2d(x, w, b, stride=2, padding=1), (2, 5, 6), (3, 2, 3, 3),
     lambda x, w, b: conv_ref(x[None], w, b, 2, 1)[0]),
    ("conv1d", lambda f, x, w, b: f.conv1d(x, w, b, padding=1), (2, 7), (3, 2, 3),
     lambda x, w, b: conv_ref(x[None], w, b, 1, 1)[0]),
    ("max_pool2d", lambda f, x: f.max_pool2d(x, 2, 1), (2, 4, 5), None,
     lambda x: _windows(x[None], (2, 2), 1, 0).max(axis=(-2, -1))[0]),
    ("avg_pool2d", lambda f, x: f.avg_pool2d(x, 3, 2, 1), (2, 5, 5), None,
     lambda x: _windows(x[None], (3, 3), 2, 1).mean(axis=(-2, -1))[0]),
    ("adaptive_avg_pool2d", lambda f, x: f.adaptive_avg_pool2d(x, (2, 3)), (2, 4, 6), None,
     lambda x: x.reshape(2, 2, 2, 3, 2).mean(axis=(2, 4))),
]


@pytest.mark.parametrize("name,call,xs,ws,ref", UNBATCHED, ids=[u[0] for u in UNBATCHED])
def test_unbatched_functional_matches_reference_and_gradients(name, call, xs, ws, ref):
    arrays = [A(*xs)] + ([A(*ws), A(ws[0])] if ws else [])
    call = (lambda fn: lambda *ts: fn(F, *ts))(call)  # (the rows take the functional module first)
    out = fd_check(call, arrays)
    np.testing.assert_allclose(out.data, ref(*arrays), rtol=1e-12, atol=1e-12)
    batched = call(*([T(arrays[0][None])] + [T(a) for a in arrays[1:]]))
    np.testing.assert_array_equal(out.data, batched.data[0])        # same as a batch of one
    nc = arrays[0][:, ::-1] if arrays[0].ndim == 3 else arrays[0][::-1]  # a non-contiguous input
    np.testing.assert_allclose(call(*([T(nc)] + [T(a) for a in arrays[1:]])).data, ref(*([nc] + arrays[1:])),
                               rtol=1e-12, atol=1e-12)


def test_unbatched_modules_and_ndim_errors():
    x = A(2, 6, 6)
    for m in (nn.Conv2d(2, 3, 3, dtype=dlkern.float64), nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(3)):
        np.testing.assert_allclose(m(T(x)).data, m(T(x[None])).data[0], rtol=1e-12)
    conv1 = nn.Conv1d(2, 3, 3, dtype=dlkern.float64)
    np.testing.assert_allclose(conv1(T(x[0:2, :, 0])).data, conv1(T(x[None, 0:2, :, 0])).data[0], rtol=1e-12)
    cases = [(lambda: F.conv2d(T(A(5, 5)), T(A(3, 1, 2, 2))), r"conv2d: expected a 3-D .* or 4-D"),
             (lambda: F.conv2d(T(A(1, 1, 1, 5, 5)), T(A(3, 1, 2, 2))), r"conv2d: .*got shape \(1, 1, 1, 5, 5\)"),
             (lambda: F.conv1d(T(A(5)), T(A(3, 1, 2))), r"conv1d: expected a 2-D \(C, L\)"),
             (lambda: F.conv2d(T(A(3, 5, 5)), T(A(3, 2, 2, 2))), r"conv2d: input has 3 channels"),
             (lambda: nn.Conv2d(2, 3, 3)(T(A(5, 5).astype(np.float32))), r"Conv2d: input has shape \(5, 5\)"),
             (lambda: nn.Conv1d(2, 3, 3)(T(A(3, 5).astype(np.float32))), r"Conv1d: input has shape \(3, 5\)"),
             (lambda: F.max_pool2d(T(A(5, 5)), 2), r"max_pool2d: .*3-D"),
             (lambda: F.avg_pool2d(T(A(1, 1, 1, 5, 5)), 2), r"avg_pool2d: .*4-D"),
             (lambda: F.adaptive_avg_pool2d(T(A(5)), 2), r"adaptive_avg_pool2d: .*3-D")]
    for call, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            call()


def test_unbatched_matches_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    for name, call, xs, ws, _ in UNBATCHED:
        arrays = [A(*xs)] + ([A(*ws), A(ws[0])] if ws else [])
        ours = [T(a, True) for a in arrays]
        theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
        out, t_out = call(F, *ours), call(tf, *theirs)
        g = A(*out.shape)
        out.backward(T(g))
        t_out.backward(torch.tensor(g))
        np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-10, err_msg=name)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)

