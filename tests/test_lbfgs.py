"""dlkern.optim.LBFGS: a dense-matrix L-BFGS reference written here, convergence on
Rosenbrock, the stopping rules, state across step() calls and through state_dict, and
errors; torch.optim.LBFGS, when importable, is the oracle of the iterates.

Against PyTorch the problems' losses and gradients come from one NumPy function given to
both optimizers, so any difference is the optimizers'. Two levels of parity:
- with dlkern's four kernels (dot, axpy, |.|_1, sqrt) swapped for PyTorch's, every
  iterate is PyTorch's bit for bit over hundreds of iterations: the algorithm (every
  branch of the line search, every stopping rule, the history) is PyTorch's;
- with dlkern's own NumPy kernels the iterates agree to rtol 1e-10 while the problem
  does not amplify rounding: Rosenbrock is chaotic along its valley, so the
  last-bit differences of MKL's dot and fused multiply-add against NumPy's grow ~10x per
  few iterations there, exactly as they do between two PyTorch builds.
"""

import argparse
from pathlib import Path

import numpy as np
import pytest

import dlkern
from dlkern import optim
from dlkern.bench import common, load_benchmark
from dlkern.nn import Parameter
from dlkern.optim import lbfgs as lbfgs_module


# ----------------------------------------------------------------------------- problems
def rosenbrock(xs):
    """Rosenbrock's function of one vector and its gradient."""
    (x,) = xs
    a, b = x[1:] - x[:-1] ** 2, 1.0 - x[:-1]
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * x[:-1] - 2.0 * b
    g[1:] += 200.0 * a
    return float(np.sum(100.0 * a * a + b * b)), [g]


def _digits(n=300):
    try:
        from dlkern.data.datasets import load_digits_arrays
        images, labels = load_digits_arrays()
        return images.reshape(len(images), -1)[:n].astype(np.float64), labels[:n]
    except Exception:  # no scikit-learn: a synthetic 10-class set of Gaussian blobs
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, n)
        centers = rng.standard_normal((10, 64))
        return centers[labels] + 0.5 * rng.standard_normal((n, 64)), labels


X_DIGITS, Y_DIGITS = _digits()


def logistic(xs, lam=1e-3):
    """Softmax regression on the digits: mean cross-entropy + lam/2 |W|^2, gradients of W and b."""
    w, b = xs
    z = X_DIGITS @ w.T + b
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    n = len(Y_DIGITS)
    loss = -logp[np.arange(n), Y_DIGITS].mean() + 0.5 * lam * np.sum(w * w)
    dz = np.exp(logp)
    dz[np.arange(n), Y_DIGITS] -= 1.0
    dz /= n
    return float(loss), [dz.T @ X_DIGITS + lam * w, dz.sum(axis=0)]


PROBLEMS = {
    "rosenbrock2": (rosenbrock, lambda: [np.array([-1.2, 1.0])]),
    "rosenbrock100": (rosenbrock, lambda: [-np.ones(100)]),
    "logistic": (logistic, lambda: [np.zeros((10, 64)), np.zeros(10)]),
}


class Run:
    """An optimizer (dlkern's or PyTorch's) on a problem: every point the closure was
    called at, in order, and what step() returned."""

    def __init__(self, lib, problem, torch=None, **options):
        fun, x0 = PROBLEMS[problem]
        self.fun, self.lib, self.torch = fun, lib, torch
        if lib == "torch":
            self.params = [torch.tensor(a, requires_grad=True) for a in x0()]
            self.opt = torch.optim.LBFGS(self.params, **options)
        else:
            self.params = [Parameter(a) for a in x0()]
            self.opt = optim.LBFGS(self.params, **options)
        self.points, self.returned = [], []

    def arrays(self):
        return [p.detach().numpy() if self.lib == "torch" else p.data for p in self.params]

    def closure(self):
        xs = self.arrays()
        self.points.append(np.concatenate([x.ravel() for x in xs]))
        loss, grads = self.fun(xs)
        for p, g in zip(self.params, grads):
            p.grad = self.torch.from_numpy(g) if self.lib == "torch" else dlkern.Tensor(g)
        if self.lib == "torch":
            return self.torch.tensor(loss, dtype=self.torch.float64)
        return dlkern.tensor(np.float64(loss))

    def step(self, times=1):
        for _ in range(times):
            self.returned.append(float(self.opt.step(self.closure)))
        return self

    @property
    def state(self):
        return self.opt.state[self.params[0]]

    def flat(self):
        return np.concatenate([x.ravel() for x in self.arrays()])


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def torch_kernels(torch, monkeypatch):
    """dlkern's LBFGS doing its vector arithmetic with PyTorch's kernels."""
    t = torch.from_numpy
    monkeypatch.setattr(lbfgs_module, "_dot", lambda a, b: torch.dot(t(a), t(b)).item())
    monkeypatch.setattr(lbfgs_module, "_axpy", lambda alpha, x, y: torch.add(t(y), t(x), alpha=alpha).numpy())
    monkeypatch.setattr(lbfgs_module, "_abs_sum", lambda a: t(a).abs().sum().item())
    monkeypatch.setattr(lbfgs_module, "_sqrt", lambda x: torch.tensor(x, dtype=torch.float64).sqrt().item())


def run_both(torch, problem, steps=1, **options):
    ours = Run("dlkern", problem, **options).step(steps)
    theirs = Run("torch", problem, torch, **options).step(steps)
    return ours, theirs


def assert_same_run(ours, theirs, rtol=0.0, evaluations=None):
    """Same evaluation points (all, or the first `evaluations`), counters and returns."""
    if evaluations is None:
        assert len(ours.points) == len(theirs.points)
        for key in ("func_evals", "n_iter"):
            assert ours.state[key] == theirs.state[key], key
        np.testing.assert_allclose(ours.returned, theirs.returned, rtol=rtol, atol=0)
        np.testing.assert_allclose(ours.flat(), theirs.flat(), rtol=0, atol=rtol * np.abs(theirs.flat()).max())
    count = evaluations or len(ours.points)
    assert len(ours.points) >= count and len(theirs.points) >= count
    for k in range(count):
        # relative to the iterate's largest entry: a tiny entry has no precision of its own
        diff, scale = np.abs(ours.points[k] - theirs.points[k]).max(), np.abs(theirs.points[k]).max()
        assert diff <= rtol * scale, f"evaluation {k}: difference {diff:.3g} > {rtol:g} * {scale:.3g}"


# ----------------------------------------------------------------------------- parity with PyTorch
EXACT_CONFIGS = [
    ("rosenbrock2", dict(max_iter=100, line_search_fn="strong_wolfe")),
    ("rosenbrock2", dict(max_iter=60, lr=0.1)),
    ("rosenbrock100", dict(max_iter=300, history_size=10, line_search_fn="strong_wolfe")),
    ("rosenbrock100", dict(max_iter=200, history_size=3, line_search_fn="strong_wolfe")),
    ("rosenbrock100", dict(max_iter=200, history_size=3, lr=1e-3)),
    ("logistic", dict(max_iter=80, history_size=3, line_search_fn="strong_wolfe")),
    ("logistic", dict(max_iter=80, history_size=10, lr=0.5)),
]


@pytest.mark.parametrize("problem,options", EXACT_CONFIGS)
def test_iterates_equal_pytorch_bit_for_bit_with_its_kernels(torch, torch_kernels, problem, options):
    ours, theirs = run_both(torch, problem, **options)
    assert len(ours.points) > 40
    assert_same_run(ours, theirs)


# How many evaluations stay within 1e-10 of PyTorch's before the problem amplifies the
# last-bit differences of the kernels past it (measured: 29-52 on Rosenbrock, 50-67 on the
# logistic regression, all 75 with the full history).
@pytest.mark.parametrize("problem,options,evaluations", [
    ("rosenbrock2", dict(max_iter=100, line_search_fn="strong_wolfe"), 25),
    ("rosenbrock2", dict(max_iter=100, history_size=3, line_search_fn="strong_wolfe"), 25),
    ("rosenbrock2", dict(max_iter=100, lr=0.1), 60),
    ("rosenbrock100", dict(max_iter=300, history_size=10, line_search_fn="strong_wolfe"), 30),
    ("rosenbrock100", dict(max_iter=200, history_size=3, line_search_fn="strong_wolfe"), 30),
    ("logistic", dict(max_iter=80, history_size=3, line_search_fn="strong_wolfe"), 40),
    ("logistic", dict(max_iter=80, history_size=10, lr=0.5), 60),
    ("logistic", dict(max_iter=80, history_size=100, line_search_fn="strong_wolfe"), None),
])
def test_iterates_match_pytorch_to_float64_precision(torch, problem, options, evaluations):
    ours, theirs = run_both(torch, problem, **options)
    assert len(ours.points) >= 30
    assert_same_run(ours, theirs, rtol=1e-10, evaluations=evaluations)


# Runs that take the line search's rarer branches: extrapolating from a short first trial
# (lr 1e-3), zooming from a long one (lr 1e3, the insufficient-progress safeguard), and
# running on past convergence (tiny brackets, the 1e-9 bracket tolerance, equal losses).
# Same evaluation counts, points within 1e-10: not bit for bit, because where a step
# length is a 0-d tensor PyTorch's cubic interpolation divides a Python float by it as a
# multiplication by its reciprocal (two roundings), which dlkern does not copy.
@pytest.mark.parametrize("problem,options", [
    ("rosenbrock2", dict(max_iter=150, lr=1e-3, line_search_fn="strong_wolfe")),
    ("rosenbrock2", dict(max_iter=150, lr=1e3, line_search_fn="strong_wolfe")),
    ("rosenbrock2", dict(max_iter=150, line_search_fn="strong_wolfe", tolerance_grad=0, tolerance_change=0)),
    ("rosenbrock100", dict(max_iter=150, lr=30, history_size=5, line_search_fn="strong_wolfe")),
    ("rosenbrock100", dict(max_iter=150, lr=1e-2, history_size=5, line_search_fn="strong_wolfe")),
    ("logistic", dict(max_iter=200, line_search_fn="strong_wolfe", tolerance_change=1e-5)),
    ("logistic", dict(max_iter=200, lr=0.5, tolerance_change=1e-6)),
])
def test_line_search_branches_and_stops_match_pytorch(torch, torch_kernels, problem, options):
    ours, theirs = run_both(torch, problem, steps=2, **options)
    assert_same_run(ours, theirs, rtol=1e-10)


def _line(seed):
    """A random line function phi(t) = a sin(bt) + c t^2 + (e - ab) t (phi'(0) = e < 0),
    its loss quantised (ties) for a third of the seeds, the direction scaled to 1e-8 (the
    bracket tolerance) or 1e3, a first trial step from 1e-4 to 1e4 and a budget of 1-25."""
    rng = np.random.default_rng(seed)
    a, b, c, e = rng.uniform(0.1, 3), rng.uniform(0.5, 20), rng.uniform(0.01, 2), rng.uniform(-5, -0.1)
    quantum = [None, 8.0, 1e3][seed % 3]
    scale = [1.0, 1e-8, 1e3][(seed // 3) % 3]

    def phi(t):
        f = a * np.sin(b * t) + c * t * t + (e - a * b) * t
        if quantum is not None:
            f = np.round(f * quantum) / quantum
        return float(f), a * b * np.cos(b * t) + 2 * c * t + (e - a * b)

    return phi, scale, 10.0 ** rng.uniform(-4, 4), int(rng.integers(1, 26))


def test_line_search_matches_pytorchs_on_random_lines(torch, torch_kernels):
    """dlkern's strong Wolfe search against PyTorch's (its private _strong_wolfe) on 300
    random lines: the same number of evaluations, step and loss (within 1e-8: PyTorch's
    division by a 0-d tensor step rounds twice)."""
    from torch.optim import lbfgs as torch_lbfgs

    branches = 0
    for seed in range(300):
        phi, scale, t0, max_ls = _line(seed)
        f0, g0 = phi(0.0)
        ours = lbfgs_module._strong_wolfe(lambda t: (phi(t * scale)[0], np.array([phi(t * scale)[1]])), t0,
                                          np.array([scale]), f0, np.array([g0]), g0 * scale, max_ls)

        def obj(x, t, d):
            f, g = phi(float(t) * scale)
            return f, torch.tensor([g], dtype=torch.float64)

        d, g = torch.tensor([scale], dtype=torch.float64), torch.tensor([g0], dtype=torch.float64)
        theirs = torch_lbfgs._strong_wolfe(obj, None, t0, d, f0, g, torch.dot(g, d), max_ls=max_ls)
        assert ours[3] == theirs[3], f"seed {seed}: {ours[3]} evaluations, PyTorch {theirs[3]}"
        assert float(ours[2]) == pytest.approx(float(theirs[2]), rel=1e-8, abs=0), f"seed {seed}: step"
        assert ours[0] == pytest.approx(theirs[0], rel=1e-8, abs=1e-300), f"seed {seed}: loss"
        branches += ours[3] > 3
    assert branches > 100  # most lines need the zoom or several extrapolations


@pytest.mark.parametrize("options", [
    dict(max_iter=7),                                                   # max_iter, fixed step: no last closure
    dict(max_iter=7, line_search_fn="strong_wolfe"),
    dict(max_iter=100, max_eval=9, line_search_fn="strong_wolfe"),      # the line search's budget runs out
    dict(max_iter=100, max_eval=1, line_search_fn="strong_wolfe"),
    dict(max_iter=100, max_eval=12),
    dict(max_iter=100, tolerance_grad=1e-2, line_search_fn="strong_wolfe"),
    dict(max_iter=100, tolerance_grad=1e3),                             # optimal at the start: one closure
    dict(max_iter=100, tolerance_change=1e-3, line_search_fn="strong_wolfe"),
    dict(max_iter=100, tolerance_change=1e-2, lr=1e-3),
    dict(max_iter=0),
])
def test_stopping_rules_match_pytorch(torch, torch_kernels, options):
    ours, theirs = run_both(torch, "rosenbrock2", steps=3, **options)
    assert_same_run(ours, theirs)
    assert sorted(ours.state) == sorted(theirs.state)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_state_continues_across_step_calls_as_pytorch(torch, torch_kernels, line_search_fn):
    ours, theirs = run_both(torch, "logistic", steps=6, max_iter=4, history_size=3, line_search_fn=line_search_fn)
    assert_same_run(ours, theirs)
    assert len(ours.returned) == 6 and len(ours.state["old_dirs"]) == 3
    assert ours.state["func_evals"] == len(ours.points) > 6


def test_returns_first_loss_tensor_as_pytorch(torch):
    ours, theirs = run_both(torch, "rosenbrock2", max_iter=5)
    assert ours.returned == theirs.returned == [pytest.approx(24.2, rel=1e-15)]
    out = Run("dlkern", "rosenbrock2").opt.step(lambda: 3.5)
    assert out == 3.5  # the closure's own object, not a float made from it


def test_dlkern_autograd_closure_matches_pytorch_autograd(torch):
    """The intended use: the closure computes the loss with dlkern's ops and backward."""
    x = Parameter(np.array([-1.2, 1.0]))
    xt = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    opt = optim.LBFGS([x], line_search_fn="strong_wolfe", max_iter=100)
    topt = torch.optim.LBFGS([xt], line_search_fn="strong_wolfe", max_iter=100)

    def f(v):
        return (100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2).sum()

    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    def tclosure():
        topt.zero_grad()
        loss = f(xt)
        loss.backward()
        return loss

    assert float(opt.step(closure)) == float(topt.step(tclosure).detach()) == pytest.approx(24.2)
    np.testing.assert_allclose(x.data, xt.detach().numpy(), rtol=1e-8)
    np.testing.assert_allclose(x.data, [1.0, 1.0], atol=1e-4)


# ----------------------------------------------------------------------------- without PyTorch
def dense_lbfgs_fixed_step(fun, x0, lr, history_size, iterations):
    """L-BFGS with a fixed step written with dense matrices: H_k from H_0 = gamma I
    (gamma = s.y / y.y of the newest pair) updated by the BFGS formula
    H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T over the last `history_size` pairs
    (N&W eq. 6.17, 7.19), d = -H g; the first step is scaled by min(1, 1/|g|_1)."""
    x, pairs, points = x0.copy(), [], []
    f, g = fun(x)
    points.append(x.copy())
    d, t = -g, min(1.0, 1.0 / np.abs(g).sum()) * lr
    for _ in range(iterations):
        x_new = x + t * d
        f, g_new = fun(x_new)
        points.append(x_new.copy())
        s, y = x_new - x, g_new - g
        if y @ s > 1e-10:
            pairs = (pairs + [(s, y)])[-history_size:]
        x, g, t = x_new, g_new, lr
        s_last, y_last = pairs[-1]
        h = np.eye(len(x)) * (s_last @ y_last) / (y_last @ y_last)
        for s_i, y_i in pairs:
            rho = 1.0 / (y_i @ s_i)
            left = np.eye(len(x)) - rho * np.outer(s_i, y_i)
            h = left @ h @ left.T + rho * np.outer(s_i, s_i)
        d = -h @ g
    return points


@pytest.mark.parametrize("history_size", [2, 5, 50])
def test_fixed_step_iterates_equal_dense_bfgs_reference(history_size):
    rng = np.random.default_rng(history_size)
    a = rng.standard_normal((12, 12))
    a = a @ a.T + 12 * np.eye(12)
    b = rng.standard_normal(12)

    def quad(xs):
        (x,) = xs
        return 0.5 * x @ a @ x - b @ x, [a @ x - b]

    x = Parameter(rng.standard_normal(12))
    x0 = x.data.copy()
    opt = optim.LBFGS([x], lr=0.3, max_iter=30, history_size=history_size, tolerance_grad=0, tolerance_change=0)
    points = []

    def closure():
        points.append(x.data.copy())
        f, (g,) = quad([x.data])
        x.grad = dlkern.Tensor(g)
        return dlkern.tensor(np.float64(f))

    opt.step(closure)
    want = dense_lbfgs_fixed_step(lambda v: (quad([v])[0], quad([v])[1][0]), x0, 0.3, history_size, 29)
    assert len(points) == 30
    np.testing.assert_allclose(np.array(points), np.array(want), rtol=1e-9, atol=1e-12)


def test_converges_to_rosenbrock_minimum():
    x = Parameter(-np.ones(100))
    opt = optim.LBFGS([x], history_size=10, max_iter=2000, max_eval=4000, line_search_fn="strong_wolfe",
                      tolerance_change=0)
    grads = []

    def closure():
        f, (g,) = rosenbrock([x.data])
        x.grad = dlkern.Tensor(g)
        grads.append(np.abs(g).max())
        return dlkern.tensor(np.float64(f))

    first = opt.step(closure)
    assert float(first) == pytest.approx(39996.0)
    np.testing.assert_allclose(x.data, np.ones(100), atol=1e-6)
    assert grads[-1] <= 1e-7  # stopped by tolerance_grad
    assert opt.state[x]["func_evals"] == len(grads) and opt.state[x]["n_iter"] < 2000
    # a further step sees the optimum at once: one closure call, no iteration
    n_iter = opt.state[x]["n_iter"]
    opt.step(closure)
    assert opt.state[x]["n_iter"] == n_iter and len(grads) == opt.state[x]["func_evals"]


def test_strong_wolfe_steps_satisfy_the_wolfe_conditions():
    """Every accepted line-search step of a run satisfies sufficient decrease and the
    strong curvature condition (c1 = 1e-4, c2 = 0.9), checked from the trial values."""
    x = Parameter(np.array([-1.2, 1.0]))
    opt = optim.LBFGS([x], max_iter=1, line_search_fn="strong_wolfe", history_size=5)
    for _ in range(20):
        x0 = x.data.copy()
        f0, (g0,) = rosenbrock([x0])

        def closure():
            f, (g,) = rosenbrock([x.data])
            x.grad = dlkern.Tensor(g)
            return dlkern.tensor(np.float64(f))

        opt.step(closure)
        if np.abs(g0).max() <= 1e-7:
            break
        step = x.data - x0
        f1, (g1,) = rosenbrock([x.data])
        assert f1 <= f0 + 1e-4 * g0 @ step
        assert abs(g1 @ step) <= 0.9 * abs(g0 @ step) + 1e-12


def test_several_parameters_float32_and_missing_gradients():
    w = Parameter(np.zeros((10, 64), np.float32))
    b = Parameter(np.zeros(10, np.float32))
    unused = Parameter(np.ones(3, np.float32))  # never gets a gradient: treated as zeros, never moves
    opt = optim.LBFGS([w, unused, b], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        loss, (gw, gb) = logistic([w.data.astype(np.float64), b.data.astype(np.float64)])
        w.grad, b.grad = dlkern.Tensor(gw.astype(np.float32)), dlkern.Tensor(gb.astype(np.float32))
        return dlkern.tensor(np.float64(loss))

    first = float(opt.step(closure))
    assert float(closure()) < 0.2 * first
    assert w.data.dtype == np.float32 and opt.state[w]["d"].dtype == np.float32
    np.testing.assert_array_equal(unused.data, np.ones(3, np.float32))


def test_state_dict_round_trip_continues_identically():
    def make():
        run = Run("dlkern", "logistic", max_iter=5, history_size=3, line_search_fn="strong_wolfe")
        return run

    whole, first, second = make(), make(), make()
    whole.step(4)
    first.step(2)
    saved = first.opt.state_dict()
    snapshot = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in saved["state"][0].items()}
    assert sorted(saved["state"]) == [0]
    assert {"func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad",
            "prev_loss"} <= set(saved["state"][0])
    assert saved["state"][0]["d"].shape == (650,)  # flat over both parameters
    for p, q in zip(second.params, first.params):
        p.data[...] = q.data
    second.opt.load_state_dict(saved)
    first.step(2)
    second.step(2)
    np.testing.assert_array_equal(second.flat(), whole.flat())
    np.testing.assert_array_equal(first.flat(), whole.flat())
    assert second.state["func_evals"] == whole.state["func_evals"]
    # the saved dict holds copies: later steps did not change it
    np.testing.assert_array_equal(saved["state"][0]["d"], snapshot["d"])
    assert second.state["old_dirs"][0] is not saved["state"][0]["old_dirs"][0]


def test_errors():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="parameter groups"):
        optim.LBFGS([{"params": [a]}, {"params": [b]}])
    opt = optim.LBFGS([a])
    with pytest.raises(ValueError, match="parameter groups"):
        opt.add_param_group({"params": [b]})
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="learning rate"):
        optim.LBFGS([a], lr=-1)
    with pytest.raises(ValueError, match="history_size"):
        optim.LBFGS([a], history_size=0)
    with pytest.raises(ValueError, match="max_iter"):
        optim.LBFGS([a], max_iter=2.5)

    def closure():
        a.grad = dlkern.Tensor(np.ones(2))
        return dlkern.tensor(1.0)

    with pytest.raises(RuntimeError, match="strong_wolfe"):
        optim.LBFGS([a], line_search_fn="backtracking").step(closure)
    # a state dict of another parameter count
    src = optim.LBFGS([a], max_iter=2)
    src.step(closure)
    with pytest.raises(ValueError, match="elements"):
        optim.LBFGS([Parameter(np.zeros(4))]).load_state_dict(src.state_dict())
    assert optim.LBFGS([a]).defaults["max_eval"] == 25 and optim.LBFGS([a], max_iter=7).defaults["max_eval"] == 8


def test_empty_and_nan():
    e = Parameter(np.zeros(0))
    opt = optim.LBFGS([e])
    assert float(opt.step(lambda: dlkern.tensor(2.0))) == 2.0  # nothing to optimise: one call
    x = Parameter(np.zeros(2))
    calls = []

    def closure():
        calls.append(1)
        x.grad = dlkern.Tensor(np.array([np.nan, 1.0]))
        return dlkern.tensor(float("nan"))

    optim.LBFGS([x], max_iter=3, line_search_fn="strong_wolfe").step(closure)  # ends, no exception
    assert np.isnan(x.data[0]) and len(calls) <= 4


# ----------------------------------------------------------------------------- the benchmark
CASES_DIR = Path(__file__).resolve().parents[1] / "bench" / "cases"


def _bench(tmp_path, monkeypatch, *argv):
    """`python -m dlkern bench lbfgs` at a small size; (exit status, report path)."""
    if not (CASES_DIR / "lbfgs.py").is_file():
        pytest.skip("no bench/cases in this checkout")
    monkeypatch.setenv("DLKERN_BENCH_CASES", str(CASES_DIR))
    bench = load_benchmark("lbfgs")
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "lbfgs.md"
    args = parser.parse_args(["--dim", "10", "--max-iter", "40", "--repeats", "1", "--out", str(out), *argv])
    return bench.run(args), out


def test_bench_validates_times_and_reports(tmp_path, monkeypatch):
    status, out = _bench(tmp_path, monkeypatch)
    text = out.read_text()
    assert status == 0 and "| dlkern | dlkern autograd |" in text and "## Machine" in text


def test_bench_validation_catches_a_changed_line_search(torch, tmp_path, monkeypatch):
    monkeypatch.setattr(lbfgs_module, "_C2", 0.5)
    with pytest.raises(common.BenchValidationError):
        _bench(tmp_path, monkeypatch)


# ----------------------------------------------------------------------------- on a CUDA device
def test_parameters_on_the_cuda_host_twin_follow_the_cpu_run():
    """The optimizer's vectors live on the host; parameters on a device are read and
    written through the device's transfers, and the run is the CPU's."""
    import host_cuda
    from dlkern.devices import CUDADevice

    dev = CUDADevice(0, module=host_cuda)
    runs = []
    for device in (None, dev):
        x = Parameter(np.array([-1.2, 1.0]))
        if device is not None:
            x = Parameter(dlkern.tensor(x.data, dtype=np.float64).to(device))
        opt = optim.LBFGS([x], max_iter=25, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        assert x.device == (device or dlkern.device("cpu"))
        runs.append((x.detach().cpu().numpy(), opt.state[x]["func_evals"]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12)
    assert runs[1][1] == runs[0][1]
