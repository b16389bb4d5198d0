"""dlkern.autograd.functional: vjp, jvp, jacobian, hessian, hvp, vhp against NumPy
closed forms, and against torch.autograd.functional (values and result structure:
Tensor vs tuple exactly as PyTorch), including the Hessian of a small MLP."""

import numpy as np
import pytest

import dlkern
import dlkern.nn.functional as F
from dlkern.autograd import functional as AF

RNG = np.random.default_rng(5)
A = RNG.standard_normal((3, 3))
B = RNG.standard_normal((2, 3))
X = RNG.standard_normal(3)
V3 = RNG.standard_normal(3)
V2 = RNG.standard_normal(2)


def t(a, grad=False):
    return dlkern.tensor(np.array(a, dtype=np.float64), requires_grad=grad)


# ------------------------------------------------------------------ closed forms (NumPy)

def test_hessian_of_quadratic_form():
    h = AF.hessian(lambda x: (x * (t(A) @ x)).sum(), t(X))
    assert isinstance(h, dlkern.Tensor) and h.shape == (3, 3) and h.grad_fn is None
    np.testing.assert_allclose(h.data, A + A.T, rtol=1e-12, atol=1e-12)


def test_jacobian_elementwise_and_linear():
    j = AF.jacobian(lambda x: x.sin(), t(X))
    np.testing.assert_allclose(j.data, np.diag(np.cos(X)), rtol=1e-12, atol=1e-12)
    j = AF.jacobian(lambda x: t(B) @ x, t(X))
    np.testing.assert_allclose(j.data, B, rtol=1e-12, atol=1e-12)


def test_jvp_vjp_hvp_vhp_closed_forms():
    out, jv = AF.jvp(lambda x: t(B) @ x.exp(), t(X), t(V3))
    np.testing.assert_allclose(out.data, B @ np.exp(X))
    np.testing.assert_allclose(jv.data, B @ (np.exp(X) * V3), rtol=1e-12)
    out, vj = AF.vjp(lambda x: t(B) @ x.exp(), t(X), t(V2))
    np.testing.assert_allclose(vj.data, (V2 @ B) * np.exp(X), rtol=1e-12)
    f = lambda x: (x * x * x).sum()  # Hessian diag(6 x)
    for fn in (AF.hvp, AF.vhp):
        out, hv = fn(f, t(X), t(V3))
        assert out.shape == () and out.grad_fn is None
        np.testing.assert_allclose(hv.data, 6 * X * V3, rtol=1e-12)


def test_create_graph_results_are_differentiable():
    x = t(X, grad=True)
    _, hv = AF.hvp(lambda x: (x * x * x).sum(), x, t(V3), create_graph=True)
    assert hv.requires_grad
    (g,) = dlkern.autograd.grad(hv.sum(), x)
    np.testing.assert_allclose(g.data, 6 * V3, rtol=1e-12)  # d/dx sum(6 x v) = 6 v
    h = AF.hessian(lambda x: (x ** 3).sum(), x, create_graph=True)
    (g,) = dlkern.autograd.grad(h.sum(), x)
    np.testing.assert_allclose(g.data, np.full(3, 6.0), rtol=1e-12)
    _, hv = AF.hvp(lambda x: (x * x * x).sum(), x, t(V3))
    assert not hv.requires_grad


def test_zero_dim_and_empty_inputs():
    h = AF.hessian(lambda s: s ** 3, t(2.0))
    assert h.shape == () and h.item() == pytest.approx(12.0)
    j = AF.jacobian(lambda x: x * 2, t(np.zeros(0)))
    assert j.shape == (0, 0)


def test_noncontiguous_inputs():
    base = RNG.standard_normal((3, 4))
    x = dlkern.tensor(base[:, ::2].T)  # (2, 3) strided
    j = AF.jacobian(lambda x: (x * x).sum(1), x)
    expected = np.zeros((2, 2, 3))
    for i in range(2):
        expected[i, i] = 2 * base[:, ::2].T[i]
    np.testing.assert_allclose(j.data, expected, rtol=1e-12)


def test_errors_and_strict():
    with pytest.raises(RuntimeError, match="v must be given"):
        AF.vjp(lambda x: x * 2, t(X))
    with pytest.raises(RuntimeError, match="shape"):
        AF.vjp(lambda x: x * 2, t(X), t(V2))
    with pytest.raises(TypeError, match="inputs given to jvp"):
        AF.jvp(lambda x: x, [1.0])
    with pytest.raises(TypeError, match="outputs of the user-provided function given to vjp"):
        AF.vjp(lambda x: 3.0, t(X), t(V3))
    with pytest.raises(RuntimeError, match="single element"):
        AF.hvp(lambda x: x * 2, t(X), t(V3))
    with pytest.raises(RuntimeError, match="independent of input 1"):
        AF.vjp(lambda x, y: x * 2, (t(X), t(V3)), t(V3), strict=True)
    _, (gx, gy) = AF.vjp(lambda x, y: x * 2, (t(X), t(V3)), t(V3))
    np.testing.assert_array_equal(gy.data, np.zeros(3))  # not strict: zeros
    with pytest.raises(ValueError, match="strategy"):
        AF.jacobian(lambda x: x, t(X), strategy="sideways")
    with pytest.raises(NotImplementedError, match="vectorize=True"):
        AF.jacobian(lambda x: x, t(X), strategy="forward-mode")


# ------------------------------------------------------------------ PyTorch parity

def _mlp(lib, Fn, x, target):
    """A 5-4-3 MLP with tanh and cross-entropy, as a function of its parameters."""
    def loss(w1, b1, w2, b2):
        return Fn.cross_entropy(Fn.linear(Fn.linear(x, w1, b1).tanh(), w2, b2), target)
    return loss


def test_mlp_hessian_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s) * 0.7 for s in [(4, 5), (4,), (3, 4), (3,)]]
    xa, ta = rng.standard_normal((6, 5)), np.array([0, 2, 1, 1, 0, 2])
    ours = AF.hessian(_mlp(dlkern, F, t(xa), dlkern.tensor(ta)), tuple(t(p) for p in params))
    theirs = torch.autograd.functional.hessian(
        _mlp(torch, torch.nn.functional, torch.tensor(xa), torch.tensor(ta)), tuple(torch.tensor(p) for p in params))
    assert isinstance(ours, tuple) and len(ours) == 4
    for i in range(4):
        assert isinstance(ours[i], tuple) and len(ours[i]) == 4
        for j in range(4):
            assert ours[i][j].shape == tuple(theirs[i][j].shape)
            np.testing.assert_allclose(ours[i][j].data, theirs[i][j].numpy(), rtol=1e-9, atol=1e-12)


def _f1(m, x, y):
    return ((y @ x).tanh() * x[:2]).sum()


def _f2(m, x, y):
    return (y @ x).sin(), x.exp()


def _to(lib, value):
    if isinstance(value, tuple):
        return tuple(_to(lib, v) for v in value)
    return dlkern.tensor(value) if lib is dlkern else lib.tensor(value)


def _same(ours, theirs):
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same(a, b)
        return
    assert isinstance(ours, dlkern.Tensor), type(ours)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


CASES = [
    ("vjp_tuple", "vjp", _f2, (X, B), (V2, V3)),
    ("vjp_single", "vjp", lambda m, x: _f1(m, x, _to(m, B)), X, None),
    ("jvp_tuple", "jvp", _f2, (X, B), (V3, B)),
    ("jvp_single", "jvp", lambda m, x: _f2(m, x, _to(m, B))[0], X, V3),
    ("jacobian_tuple_tuple", "jacobian", _f2, (X, B), None),
    ("jacobian_tensor_tuple", "jacobian", lambda m, x: _f2(m, x, _to(m, B)), X, None),
    ("jacobian_tuple_tensor", "jacobian", lambda m, x, y: _f2(m, x, y)[0], (X, B), None),
    ("hessian_tuple", "hessian", _f1, (X, B), None),
    ("hessian_single", "hessian", lambda m, x: _f1(m, x, _to(m, B)), X, None),
    ("hvp_tuple", "hvp", _f1, (X, B), (V3, B)),
    ("hvp_single", "hvp", lambda m, x: _f1(m, x, _to(m, B)), X, V3),
    ("vhp_tuple", "vhp", _f1, (X, B), (V3, B)),
]


@pytest.mark.parametrize("name,api,fn,inputs,v", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(name, api, fn, inputs, v):
    torch = pytest.importorskip("torch")
    args = {}
    for lib, ns in ((dlkern, AF), (torch, torch.autograd.functional)):
        f = (lambda *a, lib=lib: fn(lib, *a))
        call = [f, _to(lib, inputs)]
        if api in ("vjp", "jvp", "hvp", "vhp"):
            call.append(None if v is None else _to(lib, v))
        args[lib] = getattr(ns, api)(*call)
    _same(args[dlkern], args[torch])
