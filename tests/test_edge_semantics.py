"""Edge-case semantics as PyTorch (issue 13): 0-d tensors in reductions, transpose and
softmax; unbatched conv/pool inputs; batch broadcasting in scaled_dot_product_attention;
max_pool2d indices with max_unpool2d; matmul/linear backward from expanded gradients; cat
with size-0 dims; softmax's axis alias. (Empty tensors through every op:
tests/test_edge_empty.py.)

Each behaviour is checked against a NumPy reference written here (float64 finite
differences for gradients), and against PyTorch where it is installed."""

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


def expect_raises(cases):
    """Each (call, exception type, message pattern) raises that type with that message."""
    for call, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            call()


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
    ("prod", lambda x, d: x.prod(d), lambda v: v, 1.0),
    ("cumsum", lambda x, d: x.cumsum(d), lambda v: v, 1.0),
    ("cumprod", lambda x, d: x.cumprod(d), lambda v: v, 1.0),
    ("norm", lambda x, d: x.norm(dim=d), lambda v: abs(v), 1.0),
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
    expect_raises([(call, ValueError, pattern) for call, pattern in cases])


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
             (lambda: F.max_unpool2d(v, i, 2, output_size=(6, 6)), ValueError,
              "invalid output_size .* between 2 and 6"),
             (lambda: F.max_unpool2d(v, i, 2, output_size=(5,)), ValueError, "output_size must have 2"),
             (lambda: F.max_unpool2d(v, i * 10, 2), IndexError, r"invalid max index \d+ \(output planes are 4x4\)"),
             (lambda: F.max_unpool2d(v, i * 0 - 1, 2), IndexError, "invalid max index -1"),
             (lambda: F.max_unpool2d(v[0, 0], i[0, 0], 2), ValueError, "max_unpool2d: expected a 3-D"),
             (lambda: F.max_unpool2d(v, i, 2.5), TypeError, "kernel_size must be an int"),
             (lambda: nn.MaxUnpool2d((2, 2, 2)), TypeError, "MaxUnpool2d: kernel_size")]
    expect_raises(cases)


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
    expect_raises(cases)


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
               getattr(dlkern.ops, name)(x, 1), getattr(dlkern.ops, name)(x, dim=1),
               getattr(dlkern.ops, name)(x, axis=1)]
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
    a, w = A(3, 4), A(4, 5)                               # gemm from the engine's broadcast ones
    ta, tw = T(a, True), T(w, True)
    (ta.to(dev) @ tw.to(dev)).sum().backward()
    np.testing.assert_allclose(ta.grad.data, np.ones((3, 5)) @ w.T, rtol=1e-12)
    np.testing.assert_allclose(tw.grad.data, a.T @ np.ones((3, 5)), rtol=1e-12)
