"""Autograd engine: the named edge cases, and a finite-difference check of every
differentiable Tensor op."""

import math
import sys

import numpy as np
import pytest

import dlkern
from test_autograd_helpers import gradcheck, t64


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ------------------------------------------------------------------ named engine tests

def test_reused_node(rng):
    x = t64(rng, 3, 4)
    y = x * x + x  # x used three times
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 1)


def test_reused_intermediate_node(rng):
    x = t64(rng, 5)
    h = x.exp()
    (h * h + h).sum().backward()  # h consumed by two ops
    e = np.exp(x.data)
    np.testing.assert_allclose(x.grad.data, 2 * e * e + e)


def test_diamond_graph(rng):
    x = t64(rng, 4)
    a = x * 2.0
    b = a.exp()
    c = a.sin()
    d = (b * c).sum()
    d.backward()
    av = 2 * x.data
    expected = 2 * (np.exp(av) * np.sin(av) + np.exp(av) * np.cos(av))
    np.testing.assert_allclose(x.grad.data, expected)


def test_broadcast_gradient(rng):
    a = t64(rng, 3, 1, 5)
    b = t64(rng, 4, 1)
    c = t64(rng, 5)
    (a * b + c).sum().backward()
    # reference: d/da sum(a*b + c) = sum over broadcast axes of b
    np.testing.assert_allclose(a.grad.data, np.full((3, 1, 5), b.data.sum()))
    np.testing.assert_allclose(b.grad.data, np.full((4, 1), a.data.sum()))
    np.testing.assert_allclose(c.grad.data, np.full(5, 3 * 4.0))
    assert a.grad.shape == a.shape and b.grad.shape == b.shape and c.grad.shape == c.shape


def test_deep_chain_10000():
    x = dlkern.tensor(1.0, dtype=np.float64, requires_grad=True)
    y = x
    for _ in range(10000):
        y = y * 1.0001
    assert sys.getrecursionlimit() < 10000 * 2  # a recursive walk would overflow
    y.backward()
    np.testing.assert_allclose(x.grad.item(), 1.0001 ** 10000, rtol=1e-9)
    del y  # tearing the chain down must not overflow the C stack either


def test_backward_twice_raises_unless_retained(rng):
    x = t64(rng, 3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    x.grad = None
    z = (x.exp()).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_allclose(x.grad.data, 2 * np.exp(x.data))


def test_no_grad(rng):
    x = t64(rng, 3)
    with dlkern.no_grad():
        y = x * 2
        assert dlkern.is_grad_enabled() is False
    assert dlkern.is_grad_enabled() is True
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()

    @dlkern.no_grad()
    def f(t):
        return t * t
    assert not f(x).requires_grad
    assert (x * x).requires_grad


def test_backward_of_nonscalar_needs_gradient(rng):
    x = t64(rng, 3)
    y = x * 2
    with pytest.raises(RuntimeError, match="scalar outputs"):
        y.backward()
    y.backward(dlkern.ones(3, dtype=np.float64))
    np.testing.assert_allclose(x.grad.data, np.full(3, 2.0))
    with pytest.raises(RuntimeError, match="shape"):
        (x * 2).backward(dlkern.ones(4, dtype=np.float64))


def test_grad_accumulates_across_backwards(rng):
    x = t64(rng, 2)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad.data, np.full(2, 6.0))


def test_shared_gradient_array_not_aliased(rng):
    # Add hands the same gradient array to both inputs; each leaf needs its own copy.
    a, b = t64(rng, 3), t64(rng, 3)
    (a + b).sum().backward()
    a.grad.data += 1
    np.testing.assert_allclose(b.grad.data, np.ones(3))


def test_detach_and_leaf(rng):
    x = t64(rng, 3)
    y = x * 2
    assert not y.is_leaf and x.is_leaf
    d = y.detach()
    assert not d.requires_grad and np.shares_memory(d.data, y.data)


def test_requires_grad_only_for_float():
    with pytest.raises(RuntimeError, match="floating"):
        dlkern.tensor([1, 2, 3], requires_grad=True)


def test_custom_function():
    class Cube(dlkern.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved
            return 3 * x * x * g

    x = dlkern.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    Cube.apply(x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0, 12.0])


# ------------------------------------------------------------------ op gradient checks

UNARY = {
    "exp": lambda x: x.exp(),
    "log": lambda x: (x.abs() + 0.5).log(),
    "sqrt": lambda x: (x.abs() + 0.5).sqrt(),
    "abs": lambda x: x.abs(),
    "neg": lambda x: -x,
    "clamp": lambda x: x.clamp(-0.5, 0.4),
    "clamp_min": lambda x: x.clamp(min=-0.3),
    "tanh": lambda x: x.tanh(),
    "sigmoid": lambda x: x.sigmoid(),
    "relu": lambda x: x.relu(),
    "gelu": lambda x: x.gelu(),
    "gelu_tanh": lambda x: x.gelu(approximate="tanh"),
    "selu": lambda x: x.selu(),
    "softplus": lambda x: x.softplus(),
    "softplus_beta": lambda x: x.softplus(beta=2.0, threshold=1.0),
    "silu": lambda x: x.silu(),
    "leaky_relu": lambda x: dlkern.nn.functional.leaky_relu(x, 0.1),
    "elu": lambda x: dlkern.nn.functional.elu(x, 0.7),
    "pow_scalar": lambda x: x ** 3,
    "pow_frac": lambda x: (x.abs() + 0.5) ** 1.5,
    "rpow": lambda x: 2.0 ** x,
    "scalar_ops": lambda x: (2 - x) * 3 / (x * x + 1) + 1,
    "rdiv": lambda x: 1.0 / (x + 3),
    "sin": lambda x: x.sin(),
    "cos": lambda x: dlkern.cos(x * 2),
    "masked_fill": lambda x: x.masked_fill(x.detach() > 0.3, -2.0).exp(),
    "tril": lambda x: x.tril().exp(),
    "triu": lambda x: dlkern.triu(x, 1).exp(),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_grad(name, rng):
    x = t64(rng, 3, 5)
    # keep away from kinks (abs, relu, clamp) where finite differences are meaningless
    x.data[np.abs(x.data) < 0.05] += 0.1
    x.data[np.abs(x.data + 0.5) < 0.02] += 0.05
    x.data[np.abs(x.data - 0.4) < 0.02] += 0.05
    x.data[np.abs(x.data + 0.3) < 0.02] += 0.05
    gradcheck(UNARY[name], [x], rng)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b + 2.5),
    "pow": lambda a, b: (a + 2.0) ** b,
    "where": lambda a, b: dlkern.where(a > 0, a, b),
    "maximum_like": lambda a, b: dlkern.where(a > b, a, b) * 2,
    "maximum": lambda a, b: dlkern.maximum(a, b) * 2,
    "minimum": lambda a, b: a.minimum(b).exp(),
}


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3))])
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_grad_with_broadcasting(name, shapes, rng):
    a, b = t64(rng, *shapes[0]), t64(rng, *shapes[1])
    gradcheck(BINARY[name], [a, b], rng)


REDUCTIONS = {
    "sum": lambda x: x.sum(),
    "sum_dim": lambda x: x.sum(1),
    "sum_dims_keep": lambda x: x.sum((0, 2), keepdim=True),
    "mean": lambda x: x.mean(),
    "mean_dim": lambda x: x.mean(-1, keepdim=True),
    "max": lambda x: x.max(),
    "max_dim": lambda x: x.max(1)[0],
    "min_dim_keep": lambda x: x.min(2, keepdim=True)[0],
    "amax_dims": lambda x: x.amax((0, 1)),
    "var": lambda x: x.var(),
    "var_dim": lambda x: x.var(1, keepdim=True),
    "var_biased": lambda x: x.var(2, unbiased=False),
    "std_dim": lambda x: x.std(0),
    "logsumexp": lambda x: x.logsumexp(1),
    "logsumexp_keep": lambda x: x.logsumexp(-1, keepdim=True),
}


def test_reduction_values(rng):
    x = t64(rng, 3, 4, 5, requires_grad=False)
    a = x.data
    np.testing.assert_allclose(x.sum(1).data, a.sum(1))
    np.testing.assert_allclose(x.mean((0, 2)).data, a.mean((0, 2)))
    v, i = x.max(2)
    assert x.max(2).values.shape == (3, 4) and x.min(1).indices.dtype == np.int64
    np.testing.assert_array_equal(v.data, a.max(2))
    np.testing.assert_array_equal(i.data, a.argmax(2))
    np.testing.assert_allclose(x.var(1).data, a.var(1, ddof=1))
    np.testing.assert_allclose(x.std(1, unbiased=False).data, a.std(1))
    ref = np.log(np.exp(a).sum(0))
    np.testing.assert_allclose(x.logsumexp(0).data, ref)
    np.testing.assert_array_equal(x.argmax(1).data, a.argmax(1))
    big = dlkern.tensor([1000.0, 1000.0], dtype=np.float64)
    np.testing.assert_allclose(big.logsumexp(0).item(), 1000 + math.log(2))


SHAPE_OPS = {
    "reshape": lambda x: x.reshape(4, 15) * 1.5,
    "view_infer": lambda x: x.view(-1, 5).exp(),
    "transpose": lambda x: x.transpose(0, 2) @ dlkern.ones(3, 2, dtype=np.float64),
    "permute": lambda x: x.permute(2, 0, 1).exp(),
    "T": lambda x: x.reshape(12, 5).T.exp(),
    "expand": lambda x: x[:, :1, :].expand(3, 4, 5) * dlkern.arange(5, dtype=np.float64),
    "squeeze": lambda x: x[:, 1:2].squeeze(1).exp(),
    "unsqueeze": lambda x: x.unsqueeze(1).exp(),
    "flatten": lambda x: x.flatten(1).exp(),
    "index_int": lambda x: x[1].exp(),
    "index_slice": lambda x: x[:, 1:3, ::2].exp(),
    "index_neg_ellipsis": lambda x: x[..., -1].exp(),
    "index_none": lambda x: x[None, 0].exp(),
    "index_array_repeat": lambda x: x[[0, 2, 0]].exp(),
    "index_array_pair": lambda x: x[np.array([0, 1, 1]), np.array([3, 0, 3])].exp(),
    "index_bool": lambda x: x[x.detach() > 0].exp(),
    "index_tensor": lambda x: x[dlkern.tensor([2, 0])].exp(),
    "cat": lambda x: dlkern.cat([x, x * 2, x[:, :1]], dim=1).exp(),
    "stack": lambda x: dlkern.stack([x, x.exp()], dim=-1),
    "split": lambda x: x.split(2, dim=1)[1].exp() + x.split([1, 3], dim=1)[0],
    "chunk": lambda x: x.chunk(3, dim=2)[2].exp(),
}


# The reductions and the shape ops share one gradient check on a (3, 4, 5) input.
assert not set(REDUCTIONS) & set(SHAPE_OPS)


@pytest.mark.parametrize("name", list(REDUCTIONS) + list(SHAPE_OPS))
def test_reduction_and_shape_op_grad(name, rng):
    gradcheck({**REDUCTIONS, **SHAPE_OPS}[name], [t64(rng, 3, 4, 5)], rng)


def test_shape_values(rng):
    x = t64(rng, 3, 4, 5, requires_grad=False)
    a = x.data
    np.testing.assert_array_equal(x.permute(1, 2, 0).data, a.transpose(1, 2, 0))
    np.testing.assert_array_equal(x[[0, 2], 1:].data, a[[0, 2], 1:])
    np.testing.assert_array_equal(dlkern.cat([x, x], 2).data, np.concatenate([a, a], 2))
    np.testing.assert_array_equal(dlkern.stack([x, x], 1).data, np.stack([a, a], 1))
    parts = x.chunk(2, dim=1)
    assert [p.shape for p in parts] == [(3, 2, 5), (3, 2, 5)]
    assert [p.shape for p in x.split([1, 3], 1)] == [(3, 1, 5), (3, 3, 5)]
    assert x.unsqueeze(-1).shape == (3, 4, 5, 1)
    assert x.flatten().shape == (60,)


MATMUL_SHAPES = [((4, 3), (3, 5)), ((3,), (3, 5)), ((4, 3), (3,)), ((3,), (3,)), ((2, 4, 3), (3, 5)),
                 ((2, 4, 3), (2, 3, 5)), ((1, 4, 3), (2, 3, 2)), ((4, 3), (2, 3, 5))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_grad(sa, sb, rng):
    a, b = t64(rng, *sa), t64(rng, *sb)
    np.testing.assert_allclose((a @ b).data, np.matmul(a.data, b.data), rtol=1e-12)
    gradcheck(lambda a, b: a @ b, [a, b], rng)


def test_matmul_transposed_view_grad(rng):
    a, b = t64(rng, 3, 4), t64(rng, 5, 4)
    gradcheck(lambda a, b: a @ b.T, [a, b], rng)


def test_cast_grad(rng):
    x = t64(rng, 3)
    y = x.float()
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.data, np.full(3, 2.0))


def test_float32_grads_stay_float32(rng):
    x = dlkern.randn(3, 4, requires_grad=True)
    w = dlkern.randn(4, 2, requires_grad=True)
    ((x @ w).tanh() * 0.5 + 1).sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_zero_dim_results_stay_arrays(rng):
    w = dlkern.tensor(0.5, dtype=np.float64, requires_grad=True)
    y = (w * 2).exp().log().tanh()
    assert isinstance(y.data, np.ndarray) and y.shape == ()
    y.backward()
    assert isinstance(w.grad.data, np.ndarray) and w.grad.shape == ()
    np.testing.assert_allclose(w.grad.item(), 2 * (1 - np.tanh(1.0) ** 2))


def test_inplace_on_graph_tensor_refused(rng):
    x = t64(rng, 3)
    y = x * 2
    with pytest.raises(RuntimeError, match="in-place"):
        y[0] = 1.0
    with pytest.raises(RuntimeError, match="in-place"):
        x.add_(1.0)
    with dlkern.no_grad():
        y[0] = 1.0
    assert y.data[0] == 1.0


def test_new_elementwise_values(rng):
    a = t64(rng, 3, 4, requires_grad=False)
    b = t64(rng, 4, requires_grad=False)
    np.testing.assert_array_equal(dlkern.maximum(a, b).data, np.maximum(a.data, b.data))
    np.testing.assert_array_equal(a.minimum(b).data, np.minimum(a.data, b.data))
    np.testing.assert_array_equal(a.tril(-1).data, np.tril(a.data, -1))
    np.testing.assert_array_equal(a.triu().data, np.triu(a.data))
    np.testing.assert_array_equal(a.masked_fill(a > 0, float("-inf")).data, np.where(a.data > 0, -np.inf, a.data))
    np.testing.assert_allclose(a.sin().data, np.sin(a.data))
    with pytest.raises(TypeError, match="bool"):
        a.masked_fill(a.data, 0.0)
    x = dlkern.tensor([1.0, 2.0], dtype=np.float64, requires_grad=True)
    y = dlkern.tensor([1.0, 3.0], dtype=np.float64, requires_grad=True)
    dlkern.maximum(x, y).sum().backward()  # tie at 1.0 splits the gradient, as PyTorch
    np.testing.assert_allclose(x.grad.data, [0.5, 0.0])
    np.testing.assert_allclose(y.grad.data, [0.5, 1.0])
