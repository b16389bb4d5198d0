"""Empty (size-0) tensors through every op that exists, as PyTorch (issue 13): reductions
over an empty dim (sum 0, prod 1, mean/var NaN, logsumexp -inf, max raises), and a sweep over the
Tensor methods, free functions and dlkern.nn.functional on inputs with a size-0 dim,
forward and backward, against PyTorch where it is installed (shapes always)."""

import operator
import warnings

import numpy as np
import pytest

import dlkern
import dlkern.nn.functional as F

RNG = np.random.default_rng(1314)


def A(*shape):
    return RNG.standard_normal(shape)


def T(a, grad=False):
    return dlkern.tensor(np.asarray(a), requires_grad=grad)


# ---------------------------------------------------------------------- empty tensors

def test_empty_reductions_follow_numpy_identities():
    e = T(np.zeros((0, 3)), True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(e.sum(0).data, np.zeros(3))
        np.testing.assert_array_equal(e.prod(0).data, np.ones(3))
        assert float(e.prod().item()) == 1.0
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
    assert F.pixel_unshuffle(T(A(0, 2, 4, 4)), 2).shape == (0, 8, 2, 2)  # (PyTorch 2.13 keeps (0, 2, 4, 4))
    assert F.pixel_shuffle(T(A(0, 8, 2, 2)), 2).shape == (0, 2, 4, 4)
    with pytest.raises(ValueError, match="reshape: .*\\(0, 3, 2\\)"):
        T(A(0, 3, 2)).reshape(0, -1)


# The sweep: every Tensor method, free function and F function that exists, on inputs
# with a size-0 dim, each spelled once for both libraries (m is dlkern or torch).
def _f(m):
    return m.nn.functional


SWEEP = []
DLKERN_ONLY = []  # ops PyTorch does not have (dlkern's own): shapes and gradients only
COVERED = set()   # the public names the sweep calls (test_every_public_op_is_in_the_sweep)


def sweep(name, fn, *arrays, grad=True, covers=None, torch=True):
    (SWEEP if torch else DLKERN_ONLY).append(pytest.param(fn, arrays, grad, id=name))
    COVERED.update([covers] if isinstance(covers, str) else covers or ())


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
for _d in (0, 1):
    sweep(f"prod({_d})", lambda m, x, d=_d: x.prod(d), E)          # the empty product is 1
    sweep(f"cumsum({_d})", lambda m, x, d=_d: x.cumsum(d), E)
    sweep(f"cumprod({_d})", lambda m, x, d=_d: x.cumprod(d), E)
sweep("prod()", lambda m, x: x.prod(), E)
sweep("einsum_contract0", lambda m, x, y: m.einsum("ij,jk->ik", x, y), A(2, 0), A(0, 3))
sweep("einsum_rows0", lambda m, x, y: m.einsum("ij,jk->ik", x, y), E, A(3, 2))
sweep("bmm_batch0", lambda m, x, y: x.bmm(y), A(0, 2, 3), A(0, 3, 4))
sweep("bmm_inner0", lambda m, x, y: x.bmm(y), A(2, 3, 0), A(2, 0, 4))
sweep("baddbmm_inner0", lambda m, c, x, y: c.baddbmm(x, y, beta=0.5), A(2, 3, 4), A(2, 3, 0), A(2, 0, 4))
sweep("outer_empty", lambda m, x, y: x.outer(y), A(0), A(3))
sweep("any(1)", lambda m, x: (x > 0).any(1), A(2, 0), grad=False)
sweep("all(1)", lambda m, x: (x > 0).all(1), A(2, 0), grad=False)
sweep("any()", lambda m, x: (x > 0).any(), E, grad=False)
sweep("lerp", lambda m, x, y: x.lerp(y, 0.25), E, E)
sweep("norm()", lambda m, x: x.norm(), E)
sweep("norm(dim=0)", lambda m, x: x.norm(dim=0), E)
sweep("add_alpha", lambda m, x, y: x.add(y, alpha=2), E, A(1, 3))
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

# Added with the Tensor API breadth, the new layers and the exact GELU (issue 13).
sweep("gather", lambda m, x: x.gather(1, m.tensor(np.zeros((0, 2), np.int64))), E)
sweep("gather_empty_index", lambda m, x: x.gather(1, m.tensor(np.zeros((2, 0), np.int64))), A(2, 3))
sweep("scatter", lambda m, x, s: x.scatter(0, m.tensor(np.zeros((0, 3), np.int64)), s), E, A(0, 3))
sweep("scatter_add", lambda m, x, s: x.scatter_add(1, m.tensor(np.zeros((2, 0), np.int64)), s), A(2, 3), A(2, 0))
sweep("index_select", lambda m, x: x.index_select(0, m.tensor(np.zeros(0, np.int64))), A(4, 3))
sweep("index_select_rows0", lambda m, x: x.index_select(1, m.tensor(np.array([2, 0, 2]))), E)
for _d in (0, 1):
    sweep(f"sort({_d})", lambda m, x, d=_d: x.sort(d)[0], E)
    sweep(f"argsort({_d})", lambda m, x, d=_d: x.argsort(d), E, grad=False)
sweep("topk", lambda m, x: x.topk(2, dim=1)[0], E)
sweep("topk_k0", lambda m, x: x.topk(0, dim=0)[0], A(2, 3))
sweep("flip", lambda m, x: x.flip((0, 1)), E)
sweep("roll", lambda m, x: x.roll(1, 1), E)
sweep("repeat", lambda m, x: x.repeat(2, 1), E)
sweep("repeat_zero", lambda m, x: x.repeat(0, 2), A(2, 3))
sweep("tile", lambda m, x: x.tile((2,)), E)
sweep("repeat_interleave", lambda m, x: x.repeat_interleave(2, dim=1), E)
sweep("diag", lambda m, x: x.diag(), A(0))
sweep("diag_2d", lambda m, x: x.diag(), E)
sweep("erf", lambda m, x: x.erf(), E, covers="erf")
sweep("conv_transpose2d", lambda m, x, w: _f(m).conv_transpose2d(x, w, stride=2), A(0, 2, 3, 3), A(2, 3, 2, 2))
sweep("conv_transpose1d", lambda m, x, w: _f(m).conv_transpose1d(x, w), A(0, 2, 4), A(2, 3, 3))
sweep("interpolate", lambda m, x: _f(m).interpolate(x, scale_factor=2), A(0, 2, 3, 3))
sweep("interpolate_bilinear", lambda m, x: _f(m).interpolate(x, size=(4, 5), mode="bilinear"), A(0, 2, 3, 3))
sweep("upsample", lambda m, x: _f(m).upsample(x, scale_factor=2), A(0, 2, 3))
sweep("max_pool1d", lambda m, x: _f(m).max_pool1d(x, 2), A(0, 2, 4))
sweep("avg_pool1d", lambda m, x: _f(m).avg_pool1d(x, 2), A(0, 2, 4))
sweep("adaptive_max_pool2d", lambda m, x: _f(m).adaptive_max_pool2d(x, 2), A(0, 2, 4, 4))
# PyTorch 2.13 returns a size-0 input of pixel_shuffle/unshuffle with its shape unchanged
# (unshuffle of (0, 2, 4, 4) gives (0, 2, 4, 4), not (0, 8, 2, 2)) and its backward then
# fails; dlkern gives the shape the non-empty rule implies. Shuffle's forward still agrees.
sweep("pixel_shuffle_forward", lambda m, x: _f(m).pixel_shuffle(x, 2), A(0, 8, 2, 2), grad=False)
sweep("pixel_shuffle", lambda m, x: _f(m).pixel_shuffle(x, 2), A(0, 8, 2, 2), torch=False)
sweep("pixel_unshuffle", lambda m, x: _f(m).pixel_unshuffle(x, 2), A(0, 2, 4, 4), torch=False)
sweep("max_unpool2d", lambda m, x: _f(m).max_unpool2d(*_f(m).max_pool2d(x, 2, return_indices=True), 2),
      A(0, 2, 4, 4))
sweep("alpha_dropout", lambda m, x: _f(m).alpha_dropout(x, 0.5, training=True), E)
sweep("focal_loss", lambda m, x: _f(m).focal_loss(x, m.tensor(np.zeros(0, np.int64)), reduction="sum"), E,
      torch=False)
sweep("sigmoid_focal_loss", lambda m, x: _f(m).sigmoid_focal_loss(x, m.tensor(np.zeros((0, 3)))), E, torch=False)
sweep("rope", lambda m, x: _f(m).rope(x), A(1, 2, 0, 4), torch=False)
sweep("apply_rotary_emb", lambda m, x: _f(m).apply_rotary_emb(x, offset=3), A(1, 2, 0, 4), torch=False)
sweep("bfloat16", lambda m, x: x.bfloat16().float(), E)

# Public names the sweep does not call, each with the reason.
NOT_SWEPT = {
    # not ops: attributes, autograd state, conversion to Python/NumPy, devices
    "backward": "autograd", "data": "attribute", "device": "attribute", "dtype": "attribute", "grad": "attribute",
    "grad_fn": "attribute", "is_leaf": "attribute", "is_floating_point": "attribute", "ndim": "attribute", "shape": "attribute",
    "requires_grad": "attribute", "requires_grad_": "autograd", "retain_grad": "autograd",
    "register_hook": "autograd", "register_post_accumulate_grad_hook": "autograd", "retains_grad": "attribute",
    "detach": "autograd", "detach_": "autograd", "dim": "shape query", "numel": "shape query", "size": "shape query",
    "item": "Python scalar", "tolist": "Python list", "numpy": "NumPy view", "cpu": "device move",
    "cuda": "device move", "is_cuda": "attribute", "contiguous": "identity on the CPU", "Tensor": "class",
    "array_namespace": "device namespace lookup, not an op",
    # casts: the sweep's to_float32/double rows run Cast; these are the same op to other dtypes
    "bool": "cast", "byte": "cast", "short": "cast", "int": "cast", "long": "cast", "half": "cast", "float": "cast",
    "type": "cast",
    # in-place forms of swept ops (no grad): their out-of-place twins are swept
    "add_": "in place", "sub_": "in place", "mul_": "in place", "div_": "in place", "zero_": "in place",
    "fill_": "in place", "copy_": "in place", "masked_fill_": "in place", "scatter_": "in place",
    "scatter_add_": "in place",
    # aliases of swept ops
    "clip": "clamp", "expand_as": "expand", "scaled_dot_product_attention": "the sdpa_* rows",
}


def _public_ops():
    """(where, name) of every public Tensor attribute and dlkern.nn.functional function."""
    names = [("Tensor", n) for n in dir(dlkern.Tensor) if not n.startswith("_")]
    names += [("F", n) for n in dir(F) if not n.startswith("_") and callable(getattr(F, n))
              and getattr(getattr(F, n), "__module__", "").startswith("dlkern")]
    return names


def test_every_public_op_is_in_the_sweep():
    """A new Tensor method or F function gets a sweep row (or a reason in NOT_SWEPT)."""
    ids = [p.id for p in SWEEP + DLKERN_ONLY]

    def swept(n):
        for i in ids:
            for j in (i, i[2:] if i.startswith("F.") else None, i[5:] if i.startswith("free_") else None):
                if j is not None and (j == n or j.startswith(n + "(") or j.startswith(n + "_")):
                    return True
        return n in COVERED

    missing = [f"{w}.{n}" for w, n in _public_ops() if not swept(n) and n not in NOT_SWEPT]
    assert not missing, f"public ops with no size-0 sweep row: {missing}"


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


@pytest.mark.parametrize("fn,arrays,grad", SWEEP + DLKERN_ONLY)
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


# The kernels (dlkern.ops) on size-0 inputs: each runs and gives the shapes (and, for an
# empty sum, the zeros) that the arithmetic implies.
def _I(*shape):
    return np.zeros(shape, np.int64)


OPS = [
    ("gemm_m0", lambda o: o.gemm(A(0, 3), A(3, 2)), [(0, 2)]),
    ("matmul_batch0", lambda o: o.matmul(A(0, 2, 3), A(3, 4)), [(0, 2, 4)]),
    ("conv2d_N0", lambda o: o.conv2d(A(0, 2, 5, 5), A(3, 2, 3, 3)), [(0, 3, 3, 3)]),
    ("conv2d_backward_N0", lambda o: o.conv2d_backward(A(0, 3, 3, 3), A(0, 2, 5, 5), A(3, 2, 3, 3)),
     [(0, 2, 5, 5), (3, 2, 3, 3), (3,)]),
    ("conv1d_backward_N0", lambda o: o.conv1d_backward(A(0, 3, 3), A(0, 2, 5), A(3, 2, 3)),
     [(0, 2, 5), (3, 2, 3), (3,)]),
    ("causal_conv1d_N0", lambda o: o.causal_conv1d(A(0, 2, 5), A(3, 2, 3)), [(0, 3, 5)]),
    ("max_pool2d_backward_N0", lambda o: o.max_pool2d_backward(A(0, 2, 2, 2), _I(0, 2, 2, 2), (0, 2, 4, 4)),
     [(0, 2, 4, 4)]),
    ("avg_pool2d_backward_N0", lambda o: o.avg_pool2d_backward(A(0, 2, 2, 2), (0, 2, 4, 4), 2), [(0, 2, 4, 4)]),
    ("adaptive_avg_pool2d_backward_N0", lambda o: o.adaptive_avg_pool2d_backward(A(0, 2, 2, 2), (0, 2, 4, 4)),
     [(0, 2, 4, 4)]),
    ("softmax_backward", lambda o: o.softmax_backward(A(0, 3), A(0, 3), axis=1), [(0, 3)]),
    ("log_softmax_backward", lambda o: o.log_softmax_backward(A(3, 0), A(3, 0), 1), [(3, 0)]),
    ("layer_norm_forward", lambda o: o.layer_norm_forward(A(0, 4), (4,)), [(0, 4), (0,), (0,)]),
    ("rms_norm", lambda o: o.rms_norm(A(0, 4), (4,)), [(0, 4)]),
    ("group_norm", lambda o: o.group_norm(A(0, 4, 3), 2), [(0, 4, 3)]),
    ("cross_entropy_forward", lambda o: o.cross_entropy_forward(A(0, 3), _I(0)), [(), (0,)]),
    ("attention_forward_Tq0", lambda o: o.attention_forward(A(1, 2, 0, 4), A(1, 2, 3, 4), A(1, 2, 3, 4)),
     [(1, 2, 0, 4), (1, 2, 0)]),
    ("attention_forward_B0", lambda o: o.attention_forward(A(0, 2, 3, 4), A(0, 2, 3, 4), A(0, 2, 3, 4)),
     [(0, 2, 3, 4), (0, 2, 3)]),
    ("rope_backward_T0", lambda o: o.rope_backward(A(1, 2, 0, 4)), [(1, 2, 0, 4)]),
    ("gelu_erf_backward", lambda o: o.gelu_erf_backward(A(0, 3), A(0, 3)), [(0, 3)]),
]


@pytest.mark.parametrize("call,shapes", [pytest.param(c, s, id=n) for n, c, s in OPS])
def test_kernels_on_empty_inputs(call, shapes):
    out = call(dlkern.ops)
    out = out if isinstance(out, tuple) else (out,)
    assert [o.shape for o in out] == shapes


def test_empty_inner_dimension_sums_to_zero_in_the_kernels():
    np.testing.assert_array_equal(dlkern.ops.gemm(A(2, 0), A(0, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(dlkern.ops.matmul(A(4, 2, 0), A(0, 3)), np.zeros((4, 2, 3)))
    out, _ = dlkern.ops.attention_forward(A(1, 2, 3, 4), A(1, 2, 0, 4), A(1, 2, 0, 4))
    np.testing.assert_array_equal(out, np.zeros((1, 2, 3, 4)))   # no keys: nothing to attend to
    assert np.isnan(dlkern.ops.cross_entropy(A(0, 3), _I(0)))   # mean over no samples, as PyTorch
