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
        expected = (numeric_grad(lambda: float(np.sum(fn(*[T(b) for b in arrays]).data * w)), a) if a.size
                    else np.zeros_like(a))
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



# ---------------------------------------------------------------------- attention batch broadcasting

def sdpa_ref(q, k, v):
    """softmax(q k^T / sqrt(d)) v with NumPy's matmul broadcasting over all leading dims."""
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


SDPA_SHAPES = [((2, 4, 3, 5), (1, 4, 6, 5)), ((2, 4, 3, 5), (4, 6, 5)), ((2, 4, 3, 5), (2, 1, 6, 5)),
               ((2, 4, 3, 5), (6, 5)), ((4, 3, 5), (2, 4, 6, 5)), ((3, 5), (6, 5)), ((1, 4, 3, 5), (3, 1, 4, 6, 5))]


@pytest.mark.parametrize("qs,ks", SDPA_SHAPES, ids=[f"{q}-{k}" for q, k in SDPA_SHAPES])
def test_sdpa_broadcasts_batch_dims_forward_and_backward(qs, ks):
    q, k, v = A(*qs), A(*ks), A(*ks[:-1], 4)
    out = fd_check(lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [q, k, v])
    expected = sdpa_ref(q, k, v)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)


def test_sdpa_broadcast_errors_and_mask():
    q = T(A(2, 4, 3, 5))
    with pytest.raises(ValueError, match="batch dims of query .* do not broadcast"):
        F.scaled_dot_product_attention(q, T(A(3, 4, 6, 5)), T(A(3, 4, 6, 5)))
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(q, T(A(2, 2, 6, 5)), T(A(2, 2, 6, 5)))
    with pytest.raises(ValueError, match="same sequence length"):
        F.scaled_dot_product_attention(q, T(A(1, 4, 6, 5)), T(A(1, 4, 7, 5)))
    with pytest.raises(ValueError, match="at least 2 dims"):
        F.scaled_dot_product_attention(q, T(A(5)), T(A(5)))
    k, v = A(4, 6, 5), A(1, 4, 6, 3)
    mask = RNG.random((3, 6)) > 0.3
    mask[:, 0] = True
    s = q.data @ np.swapaxes(k, -1, -2) / np.sqrt(5) + np.where(mask, 0, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    got = F.scaled_dot_product_attention(q, T(k), T(v), attn_mask=mask).data
    np.testing.assert_allclose(got, (p / p.sum(-1, keepdims=True)) @ v, rtol=1e-10)


def test_sdpa_broadcast_matches_torch():
    torch = pytest.importorskip("torch")
    for qs, ks in SDPA_SHAPES:
        arrays = [A(*qs), A(*ks), A(*ks[:-1], 4)]
        ours, theirs = [T(a, True) for a in arrays], [torch.tensor(a, requires_grad=True) for a in arrays]
        out = F.scaled_dot_product_attention(*ours, is_causal=True)
        t_out = torch.nn.functional.scaled_dot_product_attention(*theirs, is_causal=True)
        g = A(*out.shape)
        out.backward(T(g))
        t_out.backward(torch.tensor(g))
        assert out.shape == tuple(t_out.shape)
        np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
        for a, b in zip(ours, theirs):
            assert a.grad.shape == tuple(b.grad.shape)
            np.testing.assert_allclose(a.grad.data, b.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- max_pool2d indices and unpooling

def pool_indices_ref(x, k, stride, pad):
    """(values, int64 flat index ih * W + iw of each window's first maximum in its plane)."""
    h, w = x.shape[-2:]
    pos = np.arange(h * w).reshape(h, w).astype(np.float64)
    win = _windows(x, (k, k), stride, pad, fill=-np.inf)
    where = _windows(np.broadcast_to(pos, x.shape), (k, k), stride, pad, fill=-1)
    flat = win.reshape(win.shape[:4] + (k * k,))
    arg = flat.argmax(-1) if flat.size else np.zeros(flat.shape[:-1], np.int64)
    idx = np.take_along_axis(where.reshape(flat.shape), arg[..., None], -1)[..., 0]
    return flat.max(-1), idx.astype(np.int64)


def unpool_ref(x, idx, out_hw):
    out = np.zeros(x.shape[:2] + (out_hw[0] * out_hw[1],))
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[n, c, idx[n, c].ravel()] = x[n, c].ravel()
    return out.reshape(x.shape[:2] + tuple(out_hw))


POOLS = [((2, 3, 7, 7), 3, 2, 1, None), ((1, 2, 6, 6), 2, 2, 0, (7, 7)), ((2, 2, 5, 6), 3, 1, 1, None),
         ((3, 6, 6), 2, 2, 0, (1, 3, 6, 7)), ((0, 2, 4, 4), 2, 2, 0, None)]


@pytest.mark.parametrize("shape,k,stride,pad,output_size", POOLS, ids=[str(p[0]) for p in POOLS])
def test_max_pool2d_indices_and_unpool(shape, k, stride, pad, output_size):
    x = RNG.permutation(int(np.prod(shape))).reshape(shape) / max(int(np.prod(shape)), 1)  # no ties
    batched = x if x.ndim == 4 else x[None]
    values, idx = F.max_pool2d(T(x), k, stride, pad, return_indices=True)
    ref_v, ref_i = pool_indices_ref(batched, k, stride, pad)
    if x.ndim == 3:
        ref_v, ref_i = ref_v[0], ref_i[0]
    assert idx.dtype == np.int64 and not idx.requires_grad
    np.testing.assert_array_equal(idx.data, ref_i)
    np.testing.assert_array_equal(values.data, ref_v)
    fd_check(lambda t: F.max_pool2d(t, k, stride, pad, return_indices=True)[0], [x])
    default = tuple((n - 1) * stride - 2 * pad + k for n in values.shape[-2:])
    out_hw = default if output_size is None else tuple(output_size[-2:])
    unpooled = F.max_unpool2d(values, idx, k, stride, pad, output_size=output_size)
    ref_u = unpool_ref(ref_v if x.ndim == 4 else ref_v[None], ref_i if x.ndim == 4 else ref_i[None], out_hw)
    np.testing.assert_array_equal(unpooled.data, ref_u if x.ndim == 4 else ref_u[0])
    unique = all(len(set(p.ravel())) == p.size for p in ref_i.reshape((-1,) + ref_i.shape[-2:]))
    if unique:
        fd_check(lambda t: F.max_unpool2d(t, idx, k, stride, pad, output_size=output_size), [values.data])
    else:  # a position written twice: its gradient goes to both inputs (a gather, as PyTorch)
        tv = T(values.data, True)
        g = A(*unpooled.shape)
        F.max_unpool2d(tv, idx, k, stride, pad, output_size=output_size).backward(T(g))
        flat = g.reshape(g.shape[:-2] + (-1,))
        gathered = np.take_along_axis(flat, ref_i.reshape(ref_i.shape[:-2] + (-1,)), -1)
        np.testing.assert_array_equal(tv.grad.data, gathered.reshape(ref_i.shape))
    pool, unpool = nn.MaxPool2d(k, stride, pad, return_indices=True), nn.MaxUnpool2d(k, stride, pad)
    v2, i2 = pool(T(x))
    np.testing.assert_array_equal(unpool(v2, i2, output_size).data, unpooled.data)


def test_max_unpool2d_errors():
    v, i = F.max_pool2d(T(A(1, 1, 4, 4)), 2, return_indices=True)
    cases = [(lambda: F.max_unpool2d(v, i.data.astype(np.float64), 2), TypeError, "indices must be int64"),
             (lambda: F.max_unpool2d(v, i[..., :1], 2), ValueError, "indices have shape"),
             (lambda: F.max_unpool2d(v, i, 2, output_size=(6, 6)), ValueError, "invalid output_size .* between 2 and 6"),
             (lambda: F.max_unpool2d(v, i, 2, output_size=(5,)), ValueError, "output_size must have 2"),
             (lambda: F.max_unpool2d(v, i * 10, 2), IndexError, r"invalid max index \d+ \(output planes are 4x4\)"),
             (lambda: F.max_unpool2d(v, i * 0 - 1, 2), IndexError, "invalid max index -1"),
             (lambda: F.max_unpool2d(v[0, 0], i[0, 0], 2), ValueError, "max_unpool2d: expected a 3-D"),
             (lambda: F.max_unpool2d(v, i, 2.5), TypeError, "kernel_size must be an int"),
             (lambda: nn.MaxUnpool2d((2, 2, 2)), TypeError, "MaxUnpool2d: kernel_size")]
    for call, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            call()


def test_max_pool2d_indices_and_unpool_match_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    for shape, k, stride, pad, output_size in POOLS:
        x = A(*shape)
        ours, theirs = T(x, True), torch.tensor(x, requires_grad=True)
        v, i = F.max_pool2d(ours, k, stride, pad, return_indices=True)
        tv, ti = tf.max_pool2d(theirs, k, stride, pad, return_indices=True)
        np.testing.assert_array_equal(i.data, ti.numpy())
        u = F.max_unpool2d(v, i, k, stride, pad, output_size)
        tu = tf.max_unpool2d(tv, ti, k, stride, pad, output_size)
        g = A(*u.shape)
        u.backward(T(g))
        tu.backward(torch.tensor(g))
        np.testing.assert_array_equal(u.data, tu.detach().numpy())
        np.testing.assert_allclose(ours.grad.data, theirs.grad.numpy(), rtol=1e-12)
    assert repr(nn.MaxUnpool2d(2)) == repr(torch.nn.MaxUnpool2d(2))


# ---------------------------------------------------------------------- matmul/linear from expanded gradients

def test_matmul_and_linear_backward_from_expanded_gradients():
    a, w = A(3, 4), A(4, 5)
    ta, tw = T(a, True), T(w, True)
    (ta @ tw).sum().backward()                        # the engine's ones, broadcast to (3, 5)
    np.testing.assert_allclose(ta.grad.data, np.ones((3, 5)) @ w.T, rtol=1e-12)
    np.testing.assert_allclose(tw.grad.data, a.T @ np.ones((3, 5)), rtol=1e-12)
    for g in (dlkern.ones(1, dtype=dlkern.float64).expand(3, 5),               # zero strides
              T(np.broadcast_to(np.arange(5.0), (3, 5))),                     # zero row stride
              T(np.arange(15.0).reshape(5, 3).T)):                            # transposed
        ta, tw = T(a, True), T(w, True)
        (ta @ tw).backward(g)
        np.testing.assert_allclose(ta.grad.data, g.data @ w.T, rtol=1e-12)
        np.testing.assert_allclose(tw.grad.data, a.T @ g.data, rtol=1e-12)
    x3 = A(2, 3, 4)
    g3 = np.broadcast_to(np.arange(5.0), (2, 3, 5))
    tx, tw = T(x3, True), T(w, True)
    (tx @ tw).backward(T(g3))
    np.testing.assert_allclose(tx.grad.data, g3 @ w.T, rtol=1e-12)
    np.testing.assert_allclose(tw.grad.data, np.einsum("bij,bik->jk", x3, g3), rtol=1e-12)
    lin = nn.Linear(4, 5, dtype=dlkern.float64)
    for g in (None, g3, np.arange(30.0).reshape(2, 5, 3).transpose(0, 2, 1)):
        tx = T(x3, True)
        lin.zero_grad()
        out = lin(tx)
        (out.sum().backward() if g is None else out.backward(T(g)))
        gg = np.ones((2, 3, 5)) if g is None else g
        np.testing.assert_allclose(tx.grad.data, gg @ lin.weight.data, rtol=1e-12)
        np.testing.assert_allclose(lin.weight.grad.data, np.einsum("bij,bik->jk", gg, x3), rtol=1e-12)
        np.testing.assert_allclose(lin.bias.grad.data, gg.sum((0, 1)), rtol=1e-12)
    v = T(A(4), True)
    (T(a) @ v).backward(dlkern.ones(1, dtype=dlkern.float64).expand(3))   # matrix @ vector
    np.testing.assert_allclose(v.grad.data, a.sum(0), rtol=1e-12)


# ---------------------------------------------------------------------- cat with size-0 dims

def test_cat_with_empty_dims_forward_backward_and_errors():
    p, q = T(A(2, 0, 3), True), T(A(2, 4, 3), True)
    out = dlkern.cat([p, q, p], 1)
    np.testing.assert_array_equal(out.data, q.data)
    g = A(2, 4, 3)
    out.backward(T(g))
    assert p.grad.shape == (2, 0, 3)
    np.testing.assert_array_equal(q.grad.data, g)
    e, r = T(A(0, 3), True), T(A(2, 3), True)
    np.testing.assert_array_equal(dlkern.cat([e, r], 0).data, r.data)
    legacy = T(np.zeros(0), True)
    out = dlkern.cat([r, legacy, r], dim=-2)        # a (0,) tensor joins anything (PyTorch's rule)
    np.testing.assert_array_equal(out.data, np.concatenate([r.data, r.data]))
    out.sum().backward()
    assert legacy.grad.shape == (0,)
    np.testing.assert_array_equal(r.grad.data, np.full((2, 3), 2.0))
    assert dlkern.cat([legacy, legacy]).shape == (0,)
    cases = [(lambda: dlkern.cat([r, T(A(2, 4))], 0), ValueError, r"cat: tensor 1 has shape \(2, 4\)"),
             (lambda: dlkern.cat([r, T(A(2))], 0), ValueError, r"cat: tensor 1 has shape \(2,\)"),
             (lambda: dlkern.cat([r, r], 2), IndexError, "cat: dim 2 is out of range"),
             (lambda: dlkern.cat([T(1.0), T(2.0)]), ValueError, "zero-dimensional")]
    for call, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            call()


# ---------------------------------------------------------------------- softmax's dim/axis spellings

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dim_and_axis_spellings_agree(name):
    x = A(3, 4, 2)
    e = np.exp(x - x.max(1, keepdims=True))
    ref = e / e.sum(1, keepdims=True)
    ref = ref if name == "softmax" else np.log(ref)
    t = T(x)
    results = [getattr(t, name)(1), getattr(t, name)(dim=1), getattr(t, name)(axis=1), getattr(t, name)(-2),
               getattr(F, name)(t, 1), getattr(F, name)(t, dim=1), getattr(F, name)(t, axis=1),
               getattr(dlkern, name)(t, dim=1), getattr(dlkern, name)(t, axis=1),
               getattr(dlkern.ops, name)(x, 1), getattr(dlkern.ops, name)(x, dim=1), getattr(dlkern.ops, name)(x, axis=1)]
    for r in results:
        np.testing.assert_allclose(getattr(r, "data", r), ref, rtol=1e-12, atol=1e-12)
    y = dlkern.ops.softmax(x, axis=1) if name == "softmax" else dlkern.ops.log_softmax(x, axis=1)
    g = A(3, 4, 2)
    backward = getattr(dlkern.ops, name + "_backward")
    np.testing.assert_array_equal(backward(g, y, axis=1), backward(g, y, 1))
    for call in (lambda: getattr(t, name)(0, axis=1), lambda: getattr(F, name)(t, dim=0, axis=2),
                 lambda: getattr(dlkern.ops, name)(x, 0, axis=1)):
        with pytest.raises(TypeError, match=f"{name}: got both dim=0 and axis="):
            call()


# ---------------------------------------------------------------------- the same paths on the CUDA namespace

def test_edge_paths_on_the_cuda_host_twin():
    import host_cuda
    from dlkern.device import CUDADevice
    dev = CUDADevice(0, module=host_cuda)
    s = T(np.float64(0.5), True)
    d = s.to(dev)
    assert d.shape == ()                                  # a 0-d tensor stays 0-d on the device
    d.softmax(0).backward()
    d2 = s.to(dev).sum(-1)
    assert d2.shape == ()
    x = A(2, 3, 6, 6)
    tx = T(x, True)
    v, i = F.max_pool2d(tx.to(dev), 2, return_indices=True)
    u = F.max_unpool2d(v, i, 2)
    u.sum().backward()
    ref_v, ref_i = pool_indices_ref(x, 2, 2, 0)
    np.testing.assert_array_equal(u.cpu().detach().numpy(), unpool_ref(ref_v, ref_i, (6, 6)))
    np.testing.assert_array_equal(tx.grad.data, unpool_ref(np.ones_like(ref_v), ref_i, (6, 6)))
    q, k = A(2, 4, 3, 5), A(4, 6, 5)
    tk = T(k, True)
    out = F.scaled_dot_product_attention(T(q).to(dev), tk.to(dev), tk.to(dev))
    np.testing.assert_allclose(out.cpu().detach().numpy(), sdpa_ref(q, k, k), rtol=1e-10)
    out.sum().backward()
    assert tk.grad.shape == (4, 6, 5)
    y = F.conv2d(T(A(2, 5, 5)).to(dev), T(A(3, 2, 2, 2)).to(dev))
    assert y.shape == (3, 4, 4)
