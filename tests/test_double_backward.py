"""Higher-order autograd (create_graph=True): second derivatives of every op family with
a double backward, checked against central finite differences of first derivatives in
float64 (and against PyTorch where it is installed); third order through a few ops; the
error of an op without a double backward; first-order results and .grad accumulation
unchanged."""

import numpy as np
import pytest

import dlkern
import dlkern.nn.functional as F
from dlkern import autograd

EPS = 1e-6


def C(m, a):
    """A constant (no grad) of module m (dlkern, torch, or _DevModule: dlkern on a device)."""
    return m.as_tensor(np.asarray(a)) if m.__name__ == "torch" else m.tensor(a)


# Each row: name, fn(m, F, *inputs) -> Tensor, the input shapes, the input domain
# ("any": uniform [-1, 1) away from kinks, "pos": [0.5, 1.5)).
_T = np.array([2, 0, 3, 3, 1])
_IDX = np.array([2, 0, 2])
_MASK = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])
ROWS = [
    ("add_broadcast", lambda m, F, x, y: x + y, [(3, 1), (1, 4)], "any"),
    ("sub", lambda m, F, x, y: x - y, [(3, 4), (4,)], "any"),
    ("mul", lambda m, F, x, y: x * y, [(3, 4), (4,)], "any"),
    ("mul_scalar", lambda m, F, x: x * 2.5, [(3, 4)], "any"),
    ("div", lambda m, F, x, y: x / y, [(3, 4), (3, 4)], "pos"),
    ("rdiv", lambda m, F, x: 1.5 / x, [(5,)], "pos"),
    ("pow_scalar", lambda m, F, x: x ** 3, [(3, 4)], "any"),
    ("pow_tensor", lambda m, F, x, y: x ** y, [(3, 4), (3, 4)], "pos"),
    ("rpow", lambda m, F, x: 2.0 ** x, [(4,)], "any"),
    ("neg", lambda m, F, x: -x, [(3, 4)], "any"),
    ("exp", lambda m, F, x: x.exp(), [(3, 4)], "any"),
    ("log", lambda m, F, x: x.log(), [(3, 4)], "pos"),
    ("sqrt", lambda m, F, x: x.sqrt(), [(3, 4)], "pos"),
    ("abs", lambda m, F, x: x.abs() * x, [(3, 4)], "any"),
    ("sin_cos", lambda m, F, x: x.sin() * x.cos(), [(3, 4)], "any"),
    ("erf", lambda m, F, x: x.erf(), [(3, 4)], "any"),
    ("tanh", lambda m, F, x: x.tanh(), [(3, 4)], "any"),
    ("sigmoid", lambda m, F, x: x.sigmoid(), [(3, 4)], "any"),
    ("relu", lambda m, F, x: F.relu(x) * x, [(3, 4)], "any"),
    ("leaky_relu", lambda m, F, x: F.leaky_relu(x, 0.1) * x, [(3, 4)], "any"),
    ("elu", lambda m, F, x: F.elu(x), [(3, 4)], "any"),
    ("selu", lambda m, F, x: F.selu(x), [(3, 4)], "any"),
    ("gelu", lambda m, F, x: F.gelu(x), [(3, 4)], "any"),
    ("gelu_tanh", lambda m, F, x: F.gelu(x, approximate="tanh"), [(3, 4)], "any"),
    ("silu", lambda m, F, x: F.silu(x), [(3, 4)], "any"),
    ("softplus", lambda m, F, x: F.softplus(x, beta=2.0), [(3, 4)], "any"),
    ("clamp", lambda m, F, x: x.clamp(-0.5, 0.5) * x, [(3, 4)], "any"),
    ("where", lambda m, F, x, y: m.where(C(m, _MASK), x, y) * x, [(3, 4), (3, 4)], "any"),
    ("maximum", lambda m, F, x, y: m.maximum(x, y) * y, [(3, 4), (3, 4)], "any"),
    ("masked_fill", lambda m, F, x: x.masked_fill(C(m, _MASK), 0.25) * x, [(3, 4)], "any"),
    ("reshape", lambda m, F, x: x.reshape(4, 3), [(3, 4)], "any"),
    ("transpose", lambda m, F, x: x.transpose(0, 2), [(2, 3, 4)], "any"),
    ("permute", lambda m, F, x: x.permute(2, 0, 1), [(2, 3, 4)], "any"),
    ("expand", lambda m, F, x: x.expand(2, 3, 4), [(3, 1)], "any"),
    ("unsqueeze_squeeze", lambda m, F, x: x.unsqueeze(1).squeeze(1), [(3, 4)], "any"),
    ("getitem_basic", lambda m, F, x: x[1:, ::2], [(3, 4)], "any"),
    ("getitem_repeated", lambda m, F, x: x[C(m, _IDX)], [(3, 4)], "any"),
    ("cat", lambda m, F, x, y: m.cat([x, y], dim=1), [(3, 2), (3, 4)], "any"),
    ("stack", lambda m, F, x, y: m.stack([x, y], dim=1), [(3, 4), (3, 4)], "any"),
    ("clone", lambda m, F, x: x.clone(), [(3, 4)], "any"),
    ("sum_dim", lambda m, F, x: x.sum(1, keepdim=True) * x, [(3, 4)], "any"),
    ("sum_all", lambda m, F, x: x.sum() * x, [(3, 4)], "any"),
    ("mean_dims", lambda m, F, x: x.mean((0, 2)), [(2, 3, 4)], "any"),
    ("var", lambda m, F, x: x.var(1), [(3, 4)], "any"),
    ("std", lambda m, F, x: x.std(0, keepdim=True), [(3, 4)], "any"),
    ("amax", lambda m, F, x: x.amax(1) * x.sum(1), [(3, 4)], "any"),
    ("max_dim", lambda m, F, x: x.max(1)[0] * x.sum(1), [(3, 4)], "any"),
    ("logsumexp", lambda m, F, x: x.logsumexp(1), [(3, 4)], "any"),
    ("matmul", lambda m, F, x, y: x @ y, [(3, 4), (4, 2)], "any"),
    ("matmul_vec_mat", lambda m, F, x, y: x @ y, [(4,), (4, 2)], "any"),
    ("matmul_mat_vec", lambda m, F, x, y: x @ y, [(3, 4), (4,)], "any"),
    ("matmul_batched", lambda m, F, x, y: x @ y, [(2, 3, 4), (4, 2)], "any"),
    ("bmm", lambda m, F, x, y: x.bmm(y), [(2, 3, 4), (2, 4, 2)], "any"),
    ("linear", lambda m, F, x, w, b: F.linear(x, w, b), [(5, 4), (3, 4), (3,)], "any"),
    ("linear_3d", lambda m, F, x, w: F.linear(x, w), [(2, 5, 4), (3, 4)], "any"),
    ("softmax", lambda m, F, x: F.softmax(x, dim=1), [(3, 4)], "any"),
    ("log_softmax", lambda m, F, x: F.log_softmax(x, dim=0), [(3, 4)], "any"),
    ("cross_entropy", lambda m, F, x: F.cross_entropy(x, C(m, _T)), [(5, 4)], "any"),
    ("cross_entropy_weight_ignore",
     lambda m, F, x: F.cross_entropy(x, C(m, _T), weight=C(m, np.array([1.0, 2.0, 0.5, 1.5])), ignore_index=3),
     [(5, 4)], "any"),
    ("cross_entropy_sum_3d", lambda m, F, x: F.cross_entropy(x, C(m, _T[:4].reshape(2, 2)), reduction="sum"),
     [(2, 4, 2)], "any"),
    ("cross_entropy_label_smoothing",
     lambda m, F, x: F.cross_entropy(x, C(m, _T), weight=C(m, np.array([1.0, 2.0, 0.5, 1.5])), ignore_index=3,
                                     label_smoothing=0.2), [(5, 4)], "any"),
    ("cross_entropy_label_smoothing_none_3d",
     lambda m, F, x: F.cross_entropy(x, C(m, _T[:4].reshape(2, 2)), reduction="none", label_smoothing=0.3),
     [(2, 4, 2)], "any"),
    ("nll_loss", lambda m, F, x: F.nll_loss(x.log_softmax(1), C(m, _T), reduction="none"), [(5, 4)], "any"),
    ("mse_loss", lambda m, F, x, y: F.mse_loss(x, y), [(3, 4), (3, 4)], "any"),
    ("cross_entropy_probs",
     lambda m, F, x: F.cross_entropy(x, C(m, np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1], [0.0, 0.0, 1.0, 0.0],
                                                      [0.25, 0.25, 0.25, 0.25], [0.5, 0.0, 0.0, 0.5]])),
                               weight=C(m, np.array([1.0, 2.0, 0.5, 1.5]))), [(5, 4)], "any"),
    ("cross_entropy_probs_none_3d",
     lambda m, F, x: F.cross_entropy(x, C(m, np.full((2, 4, 2), 0.25)), reduction="none", label_smoothing=0.2),
     [(2, 4, 2)], "any"),
    ("bce", lambda m, F, x, y: F.binary_cross_entropy(x, y), [(3, 4), (3, 4)], "prob"),
    ("bce_with_logits", lambda m, F, x, y: F.binary_cross_entropy_with_logits(x, y), [(3, 4), (3, 4)], "any"),
    ("layer_norm", lambda m, F, x, w, b: F.layer_norm(x, (4,), w, b), [(3, 4), (4,), (4,)], "any"),
    ("layer_norm_2d", lambda m, F, x: F.layer_norm(x, (3, 4)), [(2, 3, 4)], "any"),
    ("group_norm", lambda m, F, x, w, b: F.group_norm(x, 2, w, b), [(2, 4, 3), (4,), (4,)], "any"),
    ("batch_norm_train",
     lambda m, F, x, w, b: F.batch_norm(x, C(m, np.zeros(3)), C(m, np.ones(3)), w, b, training=True),
     [(4, 3, 2), (3,), (3,)], "any"),
    ("conv2d", lambda m, F, x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [(2, 2, 5, 5), (3, 2, 3, 3), (3,)],
     "any"),
    ("conv2d_groups_dilation", lambda m, F, x, w: F.conv2d(x, w, groups=2, dilation=2), [(1, 4, 6, 6), (2, 2, 2, 2)],
     "any"),
    ("conv1d", lambda m, F, x, w: F.conv1d(x, w, padding=1), [(2, 3, 7), (2, 3, 3)], "any"),
    ("max_pool2d", lambda m, F, x: F.max_pool2d(x, 2) * F.max_pool2d(x, 2), [(1, 2, 4, 5)], "any"),
    ("avg_pool2d", lambda m, F, x: F.avg_pool2d(x, 3, stride=2, padding=1), [(1, 2, 5, 5)], "any"),
    ("adaptive_avg_pool2d", lambda m, F, x: F.adaptive_avg_pool2d(x, (2, 3)), [(1, 2, 5, 7)], "any"),
    ("gather", lambda m, F, x: x.gather(1, C(m, np.array([[0, 0, 3], [1, 2, 1], [3, 3, 0]]))) * x[:, :3],
     [(3, 4)], "any"),
    ("sdpa", lambda m, F, q, k, v: F.scaled_dot_product_attention(q, k, v), [(1, 2, 3, 4), (1, 2, 5, 4), (1, 2, 5, 3)],
     "any"),
    ("sdpa_causal_gqa", lambda m, F, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
     [(1, 4, 3, 2), (1, 2, 3, 2), (1, 2, 3, 2)], "any"),
    ("sdpa_bool_mask", lambda m, F, q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=C(m, _MASK[:, :3])),
     [(2, 3, 2), (2, 3, 2), (2, 3, 2)], "any"),
    ("flip", lambda m, F, x: x.flip([0, 1]) * x, [(3, 4)], "any"),
    ("roll", lambda m, F, x: x.roll(1, 1) * x, [(3, 4)], "any"),
    ("repeat", lambda m, F, x: x.repeat(2, 1, 2), [(3, 2)], "any"),
    ("index_select", lambda m, F, x: x.index_select(1, C(m, _IDX)) * x[:, :3], [(3, 4)], "any"),
    ("diag_of_matrix", lambda m, F, x: m.diag(x, 1) * x[0, :3], [(3, 4)], "any"),
    ("diag_of_vector", lambda m, F, x: m.diag(x, -1) * m.diag(x, -1), [(3,)], "any"),
    ("cumsum", lambda m, F, x: x.cumsum(1) * x, [(3, 4)], "any"),
    ("embedding", lambda m, F, w: F.embedding(C(m, np.array([[0, 2], [2, 1]])), w, padding_idx=1), [(3, 4)],
     "any"),
    ("scatter_add", lambda m, F, x, s: x.scatter_add(1, C(m, np.array([[0, 0], [3, 1], [2, 2]])), s) * x,
     [(3, 4), (3, 2)], "any"),
    ("conv_transpose2d", lambda m, F, x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
     [(1, 2, 3, 3), (2, 3, 3, 3), (3,)], "any"),
    ("conv_transpose1d", lambda m, F, x, w: F.conv_transpose1d(x, w, groups=2), [(2, 4, 5), (4, 1, 3)], "any"),
    ("lerp_tensor_weight", lambda m, F, a, b, w: m.lerp(a, b, w), [(3, 4), (3, 4), (3, 4)], "any"),
    ("lerp_scalar_weight", lambda m, F, a, b: m.lerp(a, b, 0.3) * a, [(3, 4), (4,)], "any"),
    ("rms_norm", lambda m, F, x, w: F.rms_norm(x, (4,), w, eps=1e-6), [(3, 4), (4,)], "any"),
    ("vector_norm_2", lambda m, F, x: m.linalg.vector_norm(x, 2, dim=1), [(3, 4)], "any"),
    ("vector_norm_3", lambda m, F, x: m.linalg.vector_norm(x, 3, dim=(0, 1)), [(3, 4)], "any"),
    ("vector_norm_1", lambda m, F, x: m.linalg.vector_norm(x, 1) * x, [(3, 4)], "any"),
    ("vector_norm_inf", lambda m, F, x: m.linalg.vector_norm(x, float("inf"), dim=0) * x, [(3, 4)], "any"),
    ("max_unpool2d", lambda m, F, x: F.max_unpool2d(x, C(m, np.array([[[[5, 2], [12, 15]]]])), 2), [(1, 1, 2, 2)],
     "any"),
    ("baddbmm", lambda m, F, c, a, b: m.baddbmm(c, a, b, beta=0.5, alpha=2.0), [(3, 2), (2, 3, 4), (2, 4, 2)],
     "any"),
    ("einsum_contract", lambda m, F, a, b: m.einsum("bij,jk->bik", a, b), [(2, 3, 4), (4, 2)], "any"),
    ("einsum_outer_sum", lambda m, F, a, b: m.einsum("ij,k->k", a, b) * b, [(3, 4), (2,)], "any"),
    ("interpolate_bilinear", lambda m, F, x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False),
     [(1, 2, 3, 3)], "any"),
    ("interpolate_nearest", lambda m, F, x: F.interpolate(x, size=(5, 2), mode="nearest"), [(1, 1, 3, 4)], "any"),
    ("adaptive_max_pool2d", lambda m, F, x: F.adaptive_max_pool2d(x, (2, 2)) * F.adaptive_max_pool2d(x, (2, 2)),
     [(1, 2, 5, 4)], "any"),
    ("max_pool1d", lambda m, F, x: F.max_pool1d(x, 2) * F.max_pool1d(x, 2), [(2, 3, 6)], "any"),
    ("scatter", lambda m, F, x, s: x.scatter(1, C(m, np.array([[0, 1], [3, 2], [2, 0]])), s) ** 2,
     [(3, 4), (3, 2)], "any"),
    ("prod_dim", lambda m, F, x: x.prod(1), [(3, 4)], "any"),
    ("prod_all", lambda m, F, x: x.prod() * x, [(2, 3)], "any"),
    ("cumprod", lambda m, F, x: x.cumprod(0), [(3, 4)], "any"),
    ("batch_norm_eval",
     lambda m, F, x, w: F.batch_norm(x, C(m, np.full(3, 0.1)), C(m, np.full(3, 2.0)), w, None, training=False),
     [(4, 3), (3,)], "any"),
]


def _inputs(shapes, domain, seed):
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        if domain == "pos":
            a = rng.uniform(0.5, 1.5, shape)
        elif domain == "prob":
            a = rng.uniform(0.1, 0.9, shape)
        else:  # away from the kinks at 0 (relu, abs, clamp, max) by far more than EPS
            a = rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
        out.append(a)
    return out


def _loss(m, F, fn, xs, weights):
    """A scalar whose second derivative goes through fn's backward twice (and whose
    third does three times: the cubic term keeps it from vanishing for linear ops)."""
    out = fn(m, F, *xs)
    r1, r2, r3 = (C(m, w) for w in weights)
    return (out * r1).sum() + (out * out * r2).sum() + (out * out * out * r3).sum()


def _weights(fn, arrays, seed):
    rng = np.random.default_rng(seed + 1)
    out = fn(dlkern, F, *(dlkern.tensor(a) for a in arrays))
    return rng.standard_normal(out.shape), rng.standard_normal(out.shape), rng.standard_normal(out.shape)


def _first(fn, arrays, weights):
    """The first derivatives as float64 arrays (no create_graph)."""
    xs = [dlkern.tensor(a, requires_grad=True) for a in arrays]
    return [g.data for g in autograd.grad(_loss(dlkern, F, fn, xs, weights), xs)]


def _second(fn, arrays, weights, v):
    """d/dx <grad L(x), v> through create_graph, plus the first derivatives it saw."""
    xs = [dlkern.tensor(a, requires_grad=True) for a in arrays]
    gs = autograd.grad(_loss(dlkern, F, fn, xs, weights), xs, create_graph=True)
    s = sum((g * dlkern.tensor(vi)).sum() for g, vi in zip(gs, v))
    return [g.data for g in gs], [h.data for h in autograd.grad(s, xs, allow_unused=True, materialize_grads=True)]


@pytest.mark.parametrize("name,fn,shapes,domain", ROWS, ids=[r[0] for r in ROWS])
def test_second_derivative_matches_finite_differences(name, fn, shapes, domain):
    arrays = _inputs(shapes, domain, seed=len(name))
    weights = _weights(fn, arrays, seed=len(name))
    rng = np.random.default_rng(7)
    v = [rng.standard_normal(a.shape) for a in arrays]
    first, second = _second(fn, arrays, weights, v)
    # The recorded first derivative is the plain one.
    for a, b in zip(first, _first(fn, arrays, weights)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # d<grad L, v>/dx_j[k] by central differences of the first-order gradient.
    for j, a in enumerate(arrays):
        numeric = np.zeros_like(a)
        flat = a.reshape(-1)
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + EPS
            plus = sum((g * vi).sum() for g, vi in zip(_first(fn, arrays, weights), v))
            flat[k] = orig - EPS
            minus = sum((g * vi).sum() for g, vi in zip(_first(fn, arrays, weights), v))
            flat[k] = orig
            numeric.reshape(-1)[k] = (plus - minus) / (2 * EPS)
        np.testing.assert_allclose(second[j], numeric, rtol=1e-5, atol=1e-6, err_msg=f"{name}: input {j}")


@pytest.mark.parametrize("name,fn,shapes,domain", ROWS, ids=[r[0] for r in ROWS])
def test_second_derivative_matches_torch(name, fn, shapes, domain):
    torch = pytest.importorskip("torch")
    arrays = _inputs(shapes, domain, seed=len(name))
    weights = _weights(fn, arrays, seed=len(name))
    v = [np.random.default_rng(3).standard_normal(a.shape) for a in arrays]
    _, ours = _second(fn, arrays, weights, v)
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    # (PyTorch's fused CPU attention has no double backward: its math backend has)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        gs = torch.autograd.grad(_loss(torch, torch.nn.functional, fn, xs, weights), xs, create_graph=True)
        s = sum((g * torch.tensor(vi)).sum() for g, vi in zip(gs, v))
        theirs = torch.autograd.grad(s, xs, allow_unused=True, materialize_grads=True)
    for j, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-9, atol=1e-10, err_msg=f"{name}: input {j}")


@pytest.mark.parametrize("op,third", [
    ("cube", lambda x: np.full_like(x, 6.0)),
    ("exp", np.exp),
    ("tanh", lambda x: -2 * (1 - np.tanh(x) ** 2) * (1 - 3 * np.tanh(x) ** 2)),
    ("sin", lambda x: -np.cos(x)),
])
def test_third_order(op, third):
    a = np.array([-0.7, 0.2, 1.3])
    x = dlkern.tensor(a, requires_grad=True)
    y = {"cube": lambda t: t ** 3, "exp": lambda t: t.exp(), "tanh": lambda t: t.tanh(),
         "sin": lambda t: t.sin()}[op](x).sum()
    (g1,) = autograd.grad(y, x, create_graph=True)
    (g2,) = autograd.grad(g1.sum(), x, create_graph=True)
    (g3,) = autograd.grad(g2.sum(), x)
    np.testing.assert_allclose(g3.data, third(a), rtol=1e-12, atol=1e-12)
    assert g3.grad_fn is None and g2.grad_fn is not None


def test_op_without_double_backward_raises_when_differentiated_again():
    rng = np.random.default_rng(0)
    x = dlkern.tensor(np.array([[0.5, 0.0, 1.5], [2.0, -1.0, 0.5]]), requires_grad=True)
    f = lambda x: (x.cumprod(1) ** 2).sum()  # noqa: E731  (CumProd with a zero: first order only)
    (gx,) = autograd.grad(f(x), x, create_graph=True)
    (plain,) = autograd.grad(f(x), x)
    np.testing.assert_array_equal(gx.data, plain.data)  # the first derivative is right
    assert gx.requires_grad and "CumProd" in repr(gx.grad_fn)
    with pytest.raises(NotImplementedError, match="double backward of CumProd is not implemented"):
        autograd.grad(gx.sum(), x)
    # A recurrent layer with a frozen (constant) bias: the forward did not keep its value.
    rnn = _rnn(dlkern.nn.GRU)
    rnn.bias_hh_l0.requires_grad = False
    seq = dlkern.tensor(rng.standard_normal((2, 1, 3)), requires_grad=True)
    (gs,) = autograd.grad((rnn(seq)[0] ** 2).sum(), seq, create_graph=True)
    (plain,) = autograd.grad((rnn(seq)[0] ** 2).sum(), seq)
    np.testing.assert_allclose(gs.data, plain.data, rtol=1e-12, atol=1e-14)
    with pytest.raises(NotImplementedError, match="double backward of GRULayer is not implemented"):
        autograd.grad(gs.sum(), seq)
    # Not reached when the path does not go through the refusing node.
    w = dlkern.tensor(rng.standard_normal((3, 1, 2, 2)), requires_grad=True)
    x = dlkern.tensor(rng.standard_normal((1, 1, 4, 4)), requires_grad=True)
    y = (x * x).sum() + (F.conv2d(x.detach(), w) ** 2).sum()
    (g,) = autograd.grad(y, x, create_graph=True)
    (h,) = autograd.grad(g.sum(), x)
    np.testing.assert_array_equal(h.data, np.full(x.shape, 2.0))


def test_backward_create_graph_and_grad_accumulation():
    a = np.array([1.0, -2.0, 0.5])
    x = dlkern.tensor(a, requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.grad_fn is not None
    np.testing.assert_allclose(x.grad.data, 3 * a ** 2)
    g = x.grad
    x.grad = None
    g.sum().backward()  # d/dx sum(3 x^2) = 6 x, into a fresh .grad
    np.testing.assert_allclose(x.grad.data, 6 * a)
    # Accumulation: a second create_graph backward adds, out of place.
    x2 = dlkern.tensor(a, requires_grad=True)
    (x2 * x2).sum().backward(create_graph=True)
    first = x2.grad
    (x2 * x2).sum().backward(create_graph=True)
    np.testing.assert_allclose(x2.grad.data, 4 * a)
    np.testing.assert_allclose(first.data, 2 * a)  # the earlier .grad tensor is untouched
    (h,) = autograd.grad(x2.grad.sum(), x2)
    np.testing.assert_allclose(h.data, np.full(3, 4.0))
    # First order without create_graph is unchanged: plain arrays, in-place accumulation.
    x3 = dlkern.tensor(a, requires_grad=True)
    (x3 * x3).sum().backward()
    held = x3.grad
    (x3 * x3).sum().backward()
    assert x3.grad is held and x3.grad.grad_fn is None
    np.testing.assert_allclose(x3.grad.data, 4 * a)


def test_create_graph_hooks_and_grad_outputs():
    x = dlkern.tensor(np.array([0.5, -1.0]), requires_grad=True)
    y = x * x
    seen = []
    y.register_hook(lambda g: seen.append(g.requires_grad))
    v = dlkern.tensor(np.array([2.0, 3.0]), requires_grad=True)
    (g,) = autograd.grad(y, x, grad_outputs=v, create_graph=True)
    np.testing.assert_allclose(g.data, 2 * x.data * v.data)
    assert seen == [True]
    gx, gv = autograd.grad(g.sum(), [x, v])  # the gradient depends on grad_outputs too
    np.testing.assert_allclose(gx.data, 2 * v.data)
    np.testing.assert_allclose(gv.data, 2 * x.data)


def test_create_graph_zero_dim_and_empty():
    s = dlkern.tensor(1.5, requires_grad=True)
    (g,) = autograd.grad(s ** 4, s, create_graph=True)
    (h,) = autograd.grad(g, s)
    assert h.shape == () and h.item() == pytest.approx(12 * 1.5 ** 2)
    e = dlkern.tensor(np.zeros((0, 3)), requires_grad=True)
    (g,) = autograd.grad((e.tanh() * e).sum(), e, create_graph=True)
    (h,) = autograd.grad(g.sum(), e, allow_unused=True, materialize_grads=True)
    assert g.shape == (0, 3) and h.shape == (0, 3)


def test_noncontiguous_input():
    base = np.random.default_rng(1).standard_normal((4, 6))
    x = dlkern.tensor(base[:, ::2].T, requires_grad=True)  # (3, 4), strided
    (g,) = autograd.grad((x.tanh() @ x.transpose(0, 1)).sum(), x, create_graph=True)
    (h,) = autograd.grad((g * g).sum(), x)
    xc = dlkern.tensor(np.ascontiguousarray(base[:, ::2].T), requires_grad=True)
    (gc,) = autograd.grad((xc.tanh() @ xc.transpose(0, 1)).sum(), xc, create_graph=True)
    (hc,) = autograd.grad((gc * gc).sum(), xc)
    np.testing.assert_allclose(h.data, hc.data, rtol=1e-13, atol=1e-13)


def _mha(**kw):
    dlkern.manual_seed(0)
    return dlkern.nn.MultiheadAttention(8, 4, batch_first=True, **kw).double()


_MHA_SELF, _MHA_CROSS = _mha(num_kv_heads=2, rope=True), _mha()


def _rnn(cls, **kw):
    dlkern.manual_seed(0)
    return cls(3, 4, **kw).double()


_RNN_TANH = _rnn(dlkern.nn.RNN, batch_first=True)
_RNN_RELU_BI = _rnn(dlkern.nn.RNN, nonlinearity="relu", bidirectional=True, num_layers=2)
_GRU = _rnn(dlkern.nn.GRU, batch_first=True)
_LSTM_PROJ = _rnn(dlkern.nn.LSTM, proj_size=2, batch_first=True)
_LSTM_NO_BIAS = _rnn(dlkern.nn.LSTM, bias=False)


def _packed_gru(x):
    from dlkern.nn import rnn_utils
    packed = rnn_utils.pack_padded_sequence(x, [3, 2], batch_first=True)
    out, h = _GRU(packed)
    return rnn_utils.pad_packed_sequence(out, batch_first=True)[0] * 1.0 + h.sum()

# Ops PyTorch lacks (or lays out otherwise): finite differences only.
DLKERN_ONLY = [
    ("rope", lambda m, F, x: F.rope(x, offset=2), [(1, 3, 4)], "any"),
    ("mha_packed_rope_gqa_causal", lambda m, F, x: _MHA_SELF(x, x, x, is_causal=True)[0], [(2, 3, 8)], "any"),
    ("mha_cross", lambda m, F, q, kv: _MHA_CROSS(q, kv, kv)[0], [(1, 2, 8), (1, 4, 8)], "any"),
    ("rnn_tanh", lambda m, F, x: _RNN_TANH(x)[0], [(2, 3, 3)], "any"),
    ("rnn_relu_bidirectional_2_layers", lambda m, F, x, h0: _RNN_RELU_BI(x, h0)[0], [(3, 2, 3), (4, 2, 4)], "any"),
    ("gru", lambda m, F, x: _GRU(x)[1], [(2, 3, 3)], "any"),
    ("gru_packed", lambda m, F, x: _packed_gru(x), [(2, 3, 3)], "any"),
    ("lstm_proj", lambda m, F, x: _LSTM_PROJ(x)[0], [(2, 3, 3)], "any"),
    ("lstm_no_bias_states", lambda m, F, x, h0, c0: _LSTM_NO_BIAS(x, (h0, c0))[1][1], [(3, 2, 3), (1, 2, 4), (1, 2, 4)],
     "any"),
]


@pytest.mark.parametrize("name,fn,shapes,domain", DLKERN_ONLY, ids=[r[0] for r in DLKERN_ONLY])
def test_second_derivative_of_dlkern_only_ops(name, fn, shapes, domain):
    test_second_derivative_matches_finite_differences(name, fn, shapes, domain)


@pytest.mark.parametrize("name", ["rope", "mha_cross", "gru_packed", "lstm_proj"])
def test_third_order_of_dlkern_only_ops(name):
    test_third_order_matches_finite_differences(name)


THIRD = ["conv2d", "conv1d", "max_pool2d", "avg_pool2d", "gather", "getitem_repeated", "matmul", "linear",
         "softmax", "log_softmax", "cross_entropy", "layer_norm", "batch_norm_train", "sdpa", "gelu", "pow_tensor",
         "index_select", "diag_of_matrix", "cumsum", "embedding", "scatter_add", "conv_transpose2d", "lerp_tensor_weight",
         "rms_norm", "vector_norm_3", "adaptive_avg_pool2d", "max_unpool2d", "baddbmm", "einsum_contract",
         "einsum_outer_sum", "interpolate_bilinear", "adaptive_max_pool2d", "max_pool1d", "scatter", "cross_entropy_label_smoothing", "prod_dim", "cumprod"]
# PyTorch 2.13's third derivatives of layer_norm and batch_norm (the backward of its fused
# double-backward formulas) disagree with finite differences of its own second
# derivatives; ours agree (test_third_order_matches_finite_differences), so no parity row.
# Its third derivative of conv_transpose2d with output_padding raises ("output_padding is
# not supported for non-transposed convolutions").
TORCH_THIRD_WRONG = {"layer_norm", "batch_norm_train", "conv_transpose2d"}


def _third(m, fn, arrays, weights, v, w):
    """d/dx < d/dx <grad L, v>, w >: three backward passes, the first two recorded."""
    grad = autograd.grad if m is dlkern else m.autograd.grad
    xs = [m.tensor(a, requires_grad=True) for a in arrays]
    gs = grad(_loss(m, F if m is dlkern else m.nn.functional, fn, xs, weights), xs, create_graph=True)
    s = sum((g * C(m, vi)).sum() for g, vi in zip(gs, v))
    hs = grad(s, xs, create_graph=True, allow_unused=True, materialize_grads=True)
    terms = [(h * C(m, wi)).sum() for h, wi in zip(hs, w) if h.requires_grad]
    if not terms:  # a constant second derivative
        return [np.zeros_like(a) for a in arrays]
    out = grad(sum(terms), xs, allow_unused=True, materialize_grads=True)
    return [o.data if m is dlkern else o.detach().numpy() for o in out]


def _third_setup(name):
    _, fn, shapes, domain = next(r for r in ROWS + DLKERN_ONLY if r[0] == name)
    arrays = _inputs(shapes, domain, seed=len(name))
    weights = _weights(fn, arrays, seed=len(name))
    rng = np.random.default_rng(11)
    return fn, arrays, weights, [rng.standard_normal(a.shape) for a in arrays], [rng.standard_normal(a.shape)
                                                                               for a in arrays]


@pytest.mark.parametrize("name", THIRD)
def test_third_order_matches_finite_differences(name):
    """Third order runs the backward_graph of the recorded backward's own Functions
    (ConvGradInput, LinearMap, the composites' ops), which second order never reaches."""
    fn, arrays, weights, v, w = _third_setup(name)
    ours = _third(dlkern, fn, arrays, weights, v, w)
    for j, a in enumerate(arrays):
        numeric = np.zeros_like(a)
        flat = a.reshape(-1)
        for k in range(flat.size):
            orig = flat[k]
            side = []
            for x in (orig + EPS, orig - EPS):
                flat[k] = x
                _, second = _second(fn, arrays, weights, v)
                side.append(sum((h * wi).sum() for h, wi in zip(second, w)))
            flat[k] = orig
            numeric.reshape(-1)[k] = (side[0] - side[1]) / (2 * EPS)
        np.testing.assert_allclose(ours[j], numeric, rtol=1e-5, atol=1e-5, err_msg=f"{name}: input {j}")


@pytest.mark.parametrize("name", [n for n in THIRD if n not in TORCH_THIRD_WRONG])
def test_third_order_matches_torch(name):
    torch = pytest.importorskip("torch")
    fn, arrays, weights, v, w = _third_setup(name)
    ours = _third(dlkern, fn, arrays, weights, v, w)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        theirs = _third(torch, fn, arrays, weights, v, w)
    for j, (a, b) in enumerate(zip(ours, theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, err_msg=f"{name}: input {j}")


TWIN = ["mul", "div", "exp", "tanh", "sigmoid", "relu", "gelu", "softplus", "where", "reshape", "transpose",
        "getitem_basic", "getitem_repeated", "cat", "sum_dim", "mean_dims", "var", "amax", "logsumexp", "matmul",
        "linear", "softmax", "log_softmax", "cross_entropy", "mse_loss", "layer_norm", "conv2d", "max_pool2d",
        "avg_pool2d", "sdpa"]


@pytest.mark.parametrize("name", TWIN)
def test_second_derivative_on_the_cuda_twin(name):
    """The recorded backward runs through the device namespace: on the CUDA host twin
    it gives the CPU's second derivatives, or refuses with NotImplementedError naming
    the missing primitive and 'cuda' (never a wrong value)."""
    import host_cuda
    from dlkern.devices import CUDADevice

    dev = CUDADevice(0, module=host_cuda)
    _, fn, shapes, domain = next(r for r in ROWS if r[0] == name)
    arrays = _inputs(shapes, domain, seed=len(name))
    weights = _weights(fn, arrays, seed=len(name))
    v = [np.random.default_rng(3).standard_normal(a.shape) for a in arrays]
    _, expected = _second(fn, arrays, weights, v)
    xs = [dlkern.tensor(a, device=dev, requires_grad=True) for a in arrays]

    try:
        loss = _loss(_DevModule(dev), F, fn, xs, weights)
        gs = autograd.grad(loss, xs, create_graph=True)
        s = sum((g * dlkern.tensor(vi, device=dev)).sum() for g, vi in zip(gs, v))
        got = autograd.grad(s, xs, allow_unused=True, materialize_grads=True)
    except NotImplementedError as exc:
        assert "cuda" in str(exc)
        return
    for j, (a, b) in enumerate(zip(got, expected)):
        assert a.device == dev
        np.testing.assert_allclose(a.cpu().numpy(), b, rtol=1e-10, atol=1e-12, err_msg=f"{name}: input {j}")


class _DevModule:
    """dlkern as the rows see it, with tensor() making constants on `dev`."""

    __name__ = "dlkern"

    def __init__(self, dev):
        self.dev = dev

    def tensor(self, a):
        return dlkern.tensor(a, device=self.dev)

    def __getattr__(self, name):
        return getattr(dlkern, name)


def test_vector_norm_zero_norm_keeps_its_first_order_subgradient():
    x = dlkern.tensor(np.zeros((2, 3)), requires_grad=True)
    y = dlkern.tensor(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]), requires_grad=True)
    (g,) = autograd.grad(dlkern.linalg.vector_norm(x, 2, dim=1).sum(), x, create_graph=True)
    np.testing.assert_array_equal(g.data, np.zeros((2, 3)))  # PyTorch's subgradient, not 0/0
    (g,) = autograd.grad(dlkern.linalg.vector_norm(y, 2, dim=1).sum(), y, create_graph=True)
    np.testing.assert_allclose(g.data, [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]])


def test_create_graph_leaf_hooks_and_retain_grad():
    a = np.array([0.5, -1.5])
    x = dlkern.tensor(a, requires_grad=True)
    x.register_hook(lambda g: g * 2)  # sees the total gradient (a Tensor with a graph), once
    posted = []
    x.register_post_accumulate_grad_hook(lambda t: posted.append(t.grad.requires_grad))
    h = x * x
    h.retain_grad()
    (h * x).sum().backward(create_graph=True)  # d/dx x^3 = 3 x^2, doubled by the hook
    np.testing.assert_allclose(x.grad.data, 6 * a ** 2)
    assert posted == [True] and h.grad is not None and h.grad.requires_grad
    np.testing.assert_allclose(h.grad.data, a)
    (g2,) = autograd.grad(x.grad.sum(), x)  # d/dx 6 x^2, doubled again by the hook (as PyTorch)
    np.testing.assert_allclose(g2.data, 24 * a)


@pytest.mark.parametrize("cls,kw", [("RNN", {"nonlinearity": "relu", "bidirectional": True, "num_layers": 2}),
                                    ("GRU", {"batch_first": True}), ("LSTM", {"proj_size": 2, "batch_first": True})])
def test_recurrent_second_derivative_matches_torch(cls, kw):
    torch = pytest.importorskip("torch")
    ours = _rnn(getattr(dlkern.nn, cls), **kw)
    theirs = getattr(torch.nn, cls)(3, 4, **kw).double()
    theirs.load_state_dict({k: torch.tensor(np.array(v.data)) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(2)
    a, v = rng.standard_normal((3, 2, 3)), rng.standard_normal((3, 2, 3))
    results = []
    for lib, mod in ((dlkern, ours), (torch, theirs)):
        x = lib.tensor(a, requires_grad=True)
        out = mod(x)[0]
        grad = autograd.grad if lib is dlkern else torch.autograd.grad
        (g,) = grad((out * out * out).sum(), x, create_graph=True)
        (h,) = grad((g * lib.tensor(v)).sum(), x)
        results.append(h.data if lib is dlkern else h.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-9, atol=1e-10)
