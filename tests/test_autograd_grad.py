"""dlkern.autograd.grad and dlkern.autograd.gradcheck: against hand-derived NumPy values,
and against PyTorch on the same graph when it is installed. (The hooks these run are
tested in test_autograd_hooks.py.)"""

import numpy as np
import pytest

import dlkern
from dlkern import autograd
from dlkern.autograd import Function
from test_autograd_helpers import leaf, no_hooks_left  # noqa: F401 (a fixture)

# every test leaves no hook record behind once its tensors are gone
pytestmark = pytest.mark.usefixtures("no_hooks_left")


@pytest.fixture
def rng():
    return np.random.default_rng(1314)


class Square(Function):
    """x**2 with the right backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved
        return 2 * x * g


def wrong_mul(base, saved):
    """a * b as a `base` Function whose backward gets b's gradient wrong (a instead of
    a * g); saved(ctx) reads what forward saved. (dlkern's and PyTorch's share the code.)"""

    class WrongMul(base):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = saved(ctx)
            return g * b, a + 0 * g

    return WrongMul


WrongMul = wrong_mul(Function, lambda ctx: ctx.saved)


# ---------------------------------------------------------------------------- autograd.grad

def test_grad_scalar_and_does_not_touch_grad(rng):
    a = rng.standard_normal(4)
    x = leaf(a)
    x.grad = dlkern.tensor(np.ones(4))
    (g,) = autograd.grad((x * x).sum(), x)
    np.testing.assert_allclose(g.data, 2 * a)
    np.testing.assert_allclose(x.grad.data, np.ones(4))  # unchanged
    assert not g.requires_grad and g.grad_fn is None


def test_grad_with_grad_outputs_several_inputs_and_outputs(rng):
    A, v, w = rng.standard_normal((3, 4)), rng.standard_normal(3), rng.standard_normal(4)
    x, b = leaf(w), leaf(rng.standard_normal(3))
    y = dlkern.tensor(A) @ x + b  # non-scalar output
    z = (x * x).sum()
    gx, gb = autograd.grad([y, z], [x, b], grad_outputs=[dlkern.tensor(v), None])
    np.testing.assert_allclose(gx.data, A.T @ v + 2 * w)
    np.testing.assert_allclose(gb.data, v)
    x32 = leaf(w, np.float32)  # a float64 cotangent is cast to the float32 output's dtype
    (g32,) = autograd.grad(dlkern.tensor(A, dtype=np.float32) @ x32, x32, grad_outputs=dlkern.tensor(v))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32.data, A.T @ v, rtol=1e-5)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        autograd.grad(dlkern.tensor(A) @ x, x)
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        autograd.grad(dlkern.tensor(A) @ x, x, grad_outputs=dlkern.ones(4, dtype=np.float64))


def test_grad_over_module_parameters(rng):
    lin = dlkern.nn.Linear(3, 2)
    xv = rng.standard_normal((4, 3)).astype(np.float32)
    gw, gb = autograd.grad(lin(dlkern.tensor(xv)).sum(), lin.parameters())  # a generator
    np.testing.assert_allclose(gw.data, np.tile(xv.sum(0), (2, 1)), rtol=1e-5)
    np.testing.assert_allclose(gb.data, [4.0, 4.0])
    assert lin.weight.grad is None and lin.bias.grad is None


def test_grad_non_leaf_inputs_duplicates_and_output_as_input(rng):
    a = rng.standard_normal(3)
    x = leaf(a)
    h = x * 3
    gh, gx, gh2 = autograd.grad((h * h).sum(), [h, x, h])
    np.testing.assert_allclose(gh.data, 6 * a)  # d(sum h^2)/dh = 2h
    np.testing.assert_allclose(gx.data, 18 * a)
    np.testing.assert_allclose(gh2.data, gh.data)
    # only what leads to an input runs: h's own node is not run, so it is not freed
    h = x * 3
    (g,) = autograd.grad((h * h).sum(), h)
    (h * 1).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0, 3.0, 3.0])
    (g,) = autograd.grad(x, x, grad_outputs=dlkern.tensor(np.full(3, 2.0)))
    np.testing.assert_allclose(g.data, [2.0, 2.0, 2.0])
    (g,) = autograd.grad([(x * 2).sum(), (x * 3).sum()], x)
    np.testing.assert_allclose(g.data, [5.0, 5.0, 5.0])


def test_grad_runs_only_what_leads_to_the_inputs():
    x, w = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    a, b = x * 2, w * 2
    called = []
    a.register_hook(lambda g: called.append("a"))
    b.register_hook(lambda g: called.append("b"))
    w.register_hook(lambda g: called.append("w"))
    x.register_hook(lambda g: called.append("x") or g * 10)  # an input's hook does run
    (g,) = autograd.grad((a * b).sum(), x)
    np.testing.assert_allclose(g.data, 10 * 2 * np.array([6.0, 8.0]))
    assert sorted(called) == ["a", "x"]
    assert x.grad is None and w.grad is None


def test_grad_allow_unused_and_materialize():
    x, y = leaf([1.0, 2.0]), leaf([3.0])
    out = (x * 2).sum()
    with pytest.raises(RuntimeError, match="index 1 appears to not have been used in the graph"):
        autograd.grad(out, [x, y], retain_graph=True)
    gx, gy = autograd.grad(out, [x, y], allow_unused=True, retain_graph=True)
    np.testing.assert_allclose(gx.data, [2.0, 2.0])
    assert gy is None
    gx, gy = autograd.grad(out, [x, y], materialize_grads=True)
    np.testing.assert_allclose(gy.data, [0.0])
    with pytest.raises(RuntimeError, match="not have been used"):
        autograd.grad(x.sum(), y)  # an output that does not reach the input at all


def test_grad_retain_graph_semantics():
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    autograd.grad(y, x, retain_graph=True)
    autograd.grad(y, x)  # retain_graph defaults to create_graph (False): frees the graph
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        autograd.grad(y, x)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_grad_errors():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    # (create_graph=True is implemented now: tests/test_double_backward.py)
    with pytest.raises(RuntimeError, match="does not require grad"):
        autograd.grad(y, dlkern.ones(2))
    with pytest.raises(RuntimeError, match="does not require grad"):
        autograd.grad(dlkern.ones(2).sum(), x)
    with pytest.raises(TypeError, match="inputs"):
        autograd.grad(y, 3)
    with pytest.raises(RuntimeError, match="grad_outputs has 2 entries"):
        autograd.grad(y, x, grad_outputs=[None, None])


def test_grad_0d_empty_and_noncontiguous(rng):
    s = leaf(2.0)
    (g,) = autograd.grad(s * s * s, s)
    assert g.shape == () and g.item() == 12.0
    e = leaf(np.zeros((0, 2)))
    (g,) = autograd.grad((e * 3).sum(), e)
    assert g.shape == (0, 2)
    base = rng.standard_normal((4, 3))
    t = dlkern.from_numpy(base.T).requires_grad_()  # a strided leaf
    assert not t.data.flags.c_contiguous
    (g,) = autograd.grad((t * t).sum(), t)
    np.testing.assert_allclose(g.data, 2 * base.T)


def test_grad_matches_torch(rng):
    torch = pytest.importorskip("torch")
    a, b, v = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(3)
    res = []
    for lib, make in ((dlkern, lambda x: dlkern.tensor(x, dtype=np.float64, requires_grad=True)),
                      (torch, lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True))):
        x, w = make(a), make(b)
        h = (x * w).tanh()
        y = h.sum(1) * h.mean(1)
        go = (dlkern.tensor(v) if lib is dlkern else torch.tensor(v))
        res.append([g.detach().numpy() for g in lib.autograd.grad(y, [x, w, h], grad_outputs=go)])
    for g1, g2 in zip(*res):
        np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- gradcheck

def test_gradcheck_passes_on_correct_functions(rng):
    x = leaf(rng.uniform(0.5, 1.5, (2, 3)))
    w = leaf(rng.standard_normal((3, 2)))
    assert autograd.gradcheck(lambda a, b: (a @ b).exp(), (x, w)) is True
    assert autograd.gradcheck(Square.apply, x) is True
    assert autograd.gradcheck(lambda a: (a.sum(), a * 2), [x]) is True  # several outputs
    assert autograd.gradcheck(lambda a, k: a * k, (x, 3.0)) is True  # a non-tensor input
    assert autograd.gradcheck(lambda a: a * a, leaf(1.5)) is True  # 0-d
    assert autograd.gradcheck(lambda a: a.exp(), leaf(np.zeros((0, 2)))) is True  # empty
    t = dlkern.from_numpy(rng.standard_normal((3, 2)).T).requires_grad_()
    before = t.data.copy()
    assert autograd.gradcheck(lambda a: a * a, t) is True  # strided
    np.testing.assert_array_equal(t.data, before)  # the perturbations are undone
    assert t.grad is None and x.grad is None


def test_gradcheck_fails_on_a_wrong_function(rng):
    a, b = leaf(rng.standard_normal(3)), leaf(rng.standard_normal(3))
    # WrongMul's analytical Jacobian for b has every row = a; the true one is diag(a):
    # the largest error is max |a_j| off the diagonal.
    worst = np.abs(a.data).max()
    with pytest.raises(autograd.GradcheckError,
                       match=rf"output 0 with respect to input 1, max abs error {worst:.6g} ") as info:
        autograd.gradcheck(WrongMul.apply, (a, b))
    assert isinstance(info.value, RuntimeError)
    assert autograd.gradcheck(WrongMul.apply, (a, b), raise_exception=False) is False
    # input 0's gradient is right: with b constant the check passes
    assert autograd.gradcheck(WrongMul.apply, (a, b.detach())) is True
    assert a.grad is None and b.grad is None


def test_gradcheck_error_names_the_max_error():
    class Off(Function):  # gradient off by exactly 0.5 on every element
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2.5

    with pytest.raises(autograd.GradcheckError, match=r"input 0, max abs error 0\.5"):
        autograd.gradcheck(Off.apply, leaf([1.0, 2.0]))


def test_gradcheck_refuses_bad_inputs():
    with pytest.raises(ValueError, match="float64"):
        autograd.gradcheck(lambda t: t * 2, leaf([1.0], dtype=np.float32))
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        autograd.gradcheck(lambda t: t * 2, dlkern.ones(2, dtype=np.float64))
    with pytest.raises(TypeError, match="must return a Tensor"):
        autograd.gradcheck(lambda t: 3.0, leaf([1.0]))


def test_gradcheck_agrees_with_torch(rng):
    torch = pytest.importorskip("torch")

    TorchWrongMul = wrong_mul(torch.autograd.Function, lambda ctx: ctx.saved_tensors)
    a, b = rng.standard_normal(3), rng.standard_normal(3)
    cases = [(lambda x, y: (x * y).exp(), lambda x, y: (x * y).exp()),
             (WrongMul.apply, TorchWrongMul.apply)]
    verdicts = []
    for ours_fn, torch_fn in cases:
        ours = autograd.gradcheck(ours_fn, (leaf(a), leaf(b)), raise_exception=False)
        theirs = torch.autograd.gradcheck(torch_fn, (torch.tensor(a, requires_grad=True),
                                                     torch.tensor(b, requires_grad=True)), raise_exception=False)
        verdicts.append((ours, theirs))
    assert verdicts == [(True, True), (False, False)]
