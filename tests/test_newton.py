"""dlkern.optim.Newton: exact Newton and Newton-CG against NumPy references written here
(closed-form gradients and Hessians, np.linalg.solve, a textbook Levenberg-Marquardt and
Armijo loop). PyTorch has no Newton optimiser, so there is no parity part."""

import numpy as np
import pytest

import dlkern
from dlkern import optim
from dlkern.nn import Parameter

# --------------------------------------------------------------------------- problems


def _logistic_data(n=80, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w_true = rng.normal(size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ w_true + 0.3)))).astype(np.float64)
    return x, y


LAM = 1e-2


def logistic_np(theta, x, y, lam=LAM):
    """Binary logistic regression (weights theta[:-1], bias theta[-1]) with L2 on the
    weights: (loss, gradient, Hessian) in closed form."""
    w, b = theta[:-1], theta[-1]
    z = x @ w + b
    p = 1 / (1 + np.exp(-z))
    loss = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * lam * w @ w
    a = np.hstack([x, np.ones((len(y), 1))])
    g = a.T @ (p - y) / len(y)
    g[:-1] += lam * w
    h = (a.T * (p * (1 - p))) @ a / len(y)
    h[:-1, :-1] += lam * np.eye(len(w))
    return loss, g, h


def logistic_model(x, y, dtype=np.float64, lam=LAM):
    """Parameters (w, b) and a closure for the same loss in dlkern."""
    w = Parameter(dlkern.tensor(np.zeros(x.shape[1], dtype)))
    b = Parameter(dlkern.tensor(np.zeros(1, dtype)))
    xt, yt = dlkern.tensor(x.astype(dtype)), dlkern.tensor(y.astype(dtype))

    def closure():
        z = xt @ w + b
        data = dlkern.nn.functional.binary_cross_entropy_with_logits(z, yt)
        return data + 0.5 * lam * (w * w).sum()

    return [w, b], closure


def flat(params):
    return np.concatenate([np.asarray(p.data, np.float64).ravel() for p in params])


def set_flat(params, theta):
    offset = 0
    for p in params:
        n = p.data.size
        p.data[...] = theta[offset:offset + n].reshape(p.data.shape)
        offset += n


def quadratic(seed=1, n=5):
    """f(A_mat, v) = 0.5 t^T Q t + c^T t over t = (A_mat.ravel(), v): two parameters, so
    the flattening order matters."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n + 2, n + 2))
    q = m @ m.T + np.eye(n + 2)
    c = rng.normal(size=n + 2)
    a = Parameter(dlkern.tensor(rng.normal(size=(2, 2))))
    v = Parameter(dlkern.tensor(rng.normal(size=n - 2)))
    qt, ct = dlkern.tensor(q), dlkern.tensor(c)

    def closure():
        t = dlkern.cat([a.reshape(-1), v])
        return 0.5 * (t * (qt @ t)).sum() + (ct * t).sum()

    return [a, v], closure, q, c


def double_well_np(t):
    """f(x, y) = x^4/4 - x^2/2 + y^2/2 + x y / 4: indefinite Hessian near x = 0."""
    x, y = t
    f = x ** 4 / 4 - x ** 2 / 2 + y ** 2 / 2 + x * y / 4
    g = np.array([x ** 3 - x + y / 4, y + x / 4])
    h = np.array([[3 * x ** 2 - 1, 0.25], [0.25, 1.0]])
    return f, g, h


def double_well(start):
    p = Parameter(dlkern.tensor(np.array(start, np.float64)))

    def closure():
        x, y = p[0], p[1]
        return x ** 4 / 4 - x ** 2 / 2 + y ** 2 / 2 + x * y / 4

    return [p], closure


# --------------------------------------------------------------------------- convergence


def test_exact_newton_iterates_equal_numpy_newton_and_converge_quadratically():
    x, y = _logistic_data()
    params, closure = logistic_model(x, y)
    opt = optim.Newton(params)
    theta = np.zeros(x.shape[1] + 1)
    ours, ref = [], []
    for _ in range(8):
        opt.step(closure)
        _, g, h = logistic_np(theta, x, y)
        theta = theta - np.linalg.solve(h, g)
        ours.append(flat(params))
        ref.append(theta.copy())
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    # Quadratic convergence: e_{k+1} <= C e_k^2 while the error is above rounding.
    star = ref[-1]
    errors = [np.linalg.norm(t - star) for t in [np.zeros_like(star)] + ours]
    ratios = [e1 / e0 ** 2 for e0, e1 in zip(errors, errors[1:]) if e0 > 1e-7]
    assert len(ratios) >= 3
    assert max(ratios) < 5.0, ratios
    assert np.linalg.norm(logistic_np(flat(params), x, y)[1]) < 1e-12
    grad_norms = [np.linalg.norm(logistic_np(t, x, y)[1]) for t in ours]
    assert min(k for k, gn in enumerate(grad_norms) if gn < 1e-12) <= 7


def test_exact_newton_solves_a_quadratic_in_one_step():
    params, closure, q, c = quadratic()
    t0 = flat(params)
    d_ref = np.linalg.solve(q, -(q @ t0 + c))
    loss = optim.Newton(params).step(closure)
    np.testing.assert_allclose(float(loss), 0.5 * t0 @ q @ t0 + c @ t0, rtol=1e-13)
    np.testing.assert_allclose(flat(params) - t0, d_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(q @ flat(params) + c, 0, atol=1e-10)


@pytest.mark.parametrize("lr,damping", [(0.5, 0.0), (1.0, 0.7), (0.3, 2.0)])
def test_step_is_lr_times_damped_newton_direction(lr, damping):
    params, closure, q, c = quadratic(seed=3)
    t0 = flat(params)
    d_ref = np.linalg.solve(q + damping * np.eye(len(t0)), -(q @ t0 + c))
    for method in ("exact", "cg"):
        set_flat(params, t0)
        opt = optim.Newton(params, lr=lr, method=method, damping=damping)
        opt.step(closure)
        np.testing.assert_allclose(flat(params) - t0, lr * d_ref, rtol=1e-9, atol=1e-12)
        assert opt.state[params[0]]["damping"] == damping


def test_newton_cg_equals_exact_newton_when_cg_converges():
    x, y = _logistic_data(seed=5)
    p_exact, c_exact = logistic_model(x, y)
    p_cg, c_cg = logistic_model(x, y)
    exact = optim.Newton(p_exact)
    cg = optim.Newton(p_cg, method="cg", cg_tol=1e-14)
    for _ in range(5):
        exact.step(c_exact)
        cg.step(c_cg)
        np.testing.assert_allclose(flat(p_cg), flat(p_exact), rtol=0, atol=1e-8)
    n = x.shape[1] + 1
    assert exact.state[p_exact[0]]["hvp_evals"] == 5 * n  # one product per Hessian column
    cg_state = cg.state[p_cg[0]]
    assert 0 < cg_state["hvp_evals"] <= 5 * n  # CG needs at most n products per solve
    assert cg_state["func_evals"] == 5 and cg_state["n_iter"] == 5


def test_cg_max_iter_truncates_the_solve():
    params, closure, q, c = quadratic(seed=4)
    t0 = flat(params)
    opt = optim.Newton(params, method="cg", cg_max_iter=1)
    opt.step(closure)
    # One CG iteration from 0 is the exact minimiser along -g (Cauchy step).
    g = q @ t0 + c
    np.testing.assert_allclose(flat(params) - t0, -(g @ g) / (g @ q @ g) * g, rtol=1e-10)
    assert opt.state[params[0]]["cg_iters"] == 1 and opt.state[params[0]]["hvp_evals"] == 1


# --------------------------------------------------------------------------- non-convex


def test_pure_newton_climbs_on_negative_curvature_and_lm_damping_descends():
    start = [0.3, -0.2]
    params, closure = double_well(start)
    f0 = float(closure())
    optim.Newton(params).step(closure)
    assert float(closure()) > f0  # the test problem does need the safeguards below

    params, closure = double_well(start)
    opt = optim.Newton(params, adaptive_damping=True)
    # Reference: textbook Levenberg-Marquardt with the same schedule.
    theta, lam = np.array(start), 0.0
    losses = [f0]
    for _ in range(25):
        opt.step(closure)
        losses.append(float(closure()))
        f, g, h = double_well_np(theta)
        if np.linalg.norm(g) < 1e-6:  # near the minimum rounding decides acceptance: stop comparing
            continue
        for _ in range(30):
            trial = theta + np.linalg.solve(h + lam * np.eye(2), -g)
            if double_well_np(trial)[0] < f:
                theta, lam = trial, lam / 10
                break
            lam = lam * 10 if lam > 0 else 1e-6
        np.testing.assert_allclose(flat(params), theta, rtol=1e-12, atol=1e-14)
        assert opt.state[params[0]]["damping"] == pytest.approx(lam, rel=1e-12)
    assert opt.state[params[0]]["func_evals"] > 2 * 25  # some trials were rejected
    with np.errstate(all="raise"):  # at the minimum every trial is rejected: damping stays finite
        for _ in range(5):
            opt.step(closure)
    assert np.isfinite(opt.state[params[0]]["damping"])
    assert all(b < a for a, b in zip(losses, losses[1:]) if a - losses[-1] > 1e-14)
    assert np.linalg.norm(double_well_np(flat(params))[1]) < 1e-10
    assert np.all(np.linalg.eigvalsh(double_well_np(flat(params))[2]) > 0)  # a minimum, not the saddle


def test_cg_negative_curvature_on_first_iteration_gives_steepest_descent():
    params, closure = double_well([0.3, 0.0])
    _, g, h = double_well_np(np.array([0.3, 0.0]))
    assert (-g) @ h @ (-g) < 0
    opt = optim.Newton(params, method="cg", lr=0.5)
    opt.step(closure)
    np.testing.assert_allclose(flat(params), np.array([0.3, 0.0]) - 0.5 * g, rtol=1e-14)
    assert opt.state[params[0]]["cg_iters"] == 1


def test_cg_with_backtracking_decreases_the_loss_every_step_to_a_minimum():
    params, closure = double_well([0.05, 0.4])
    opt = optim.Newton(params, method="cg", line_search_fn="backtracking")
    losses = [float(closure())]
    for _ in range(30):
        opt.step(closure)
        losses.append(float(closure()))
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert losses[-1] < losses[0] - 0.1
    _, g, h = double_well_np(flat(params))
    assert np.linalg.norm(g) < 1e-10 and np.all(np.linalg.eigvalsh(h) > 0)


def test_backtracking_satisfies_armijo_where_the_full_step_overshoots():
    # f = sqrt(1 + x^2): Newton's full step maps x to -x^3 and diverges from |x| > 1.
    p = Parameter(dlkern.tensor(np.array([2.0])))

    def closure():
        return ((p * p + 1) ** 0.5).sum()

    opt = optim.Newton([p], line_search_fn="backtracking")
    x = 2.0
    for _ in range(6):
        opt.step(closure)
        f, g, d = np.sqrt(1 + x * x), x / np.sqrt(1 + x * x), -x * (1 + x * x)
        t = 1.0
        while np.sqrt(1 + (x + t * d) ** 2) > f + 1e-4 * t * g * d:
            t /= 2
        x = x + t * d
        np.testing.assert_allclose(float(p.data[0]), x, rtol=1e-12, atol=1e-300)
    assert abs(x) < 1e-6


def test_backtracking_searches_along_minus_g_when_exact_newton_ascends():
    t0 = np.array([0.3, 0.0])
    f, g, h = double_well_np(t0)
    assert g @ np.linalg.solve(h, -g) > 0  # the Newton direction climbs here
    params, closure = double_well(t0)
    opt = optim.Newton(params, line_search_fn="backtracking")
    opt.step(closure)
    t = 1.0
    while double_well_np(t0 - t * g)[0] > f - 1e-4 * t * (g @ g):
        t /= 2
    np.testing.assert_allclose(flat(params), t0 - t * g, rtol=1e-14)
    assert float(closure()) < f


def test_singular_hessian_without_damping_takes_the_minimum_norm_step():
    p = Parameter(dlkern.tensor(np.zeros(2)))

    def closure():
        return ((p.sum() - 1) ** 2)

    optim.Newton([p]).step(closure)
    np.testing.assert_allclose(flat([p]), [0.5, 0.5], rtol=1e-12)


# --------------------------------------------------------------------------- damping


def test_adaptive_damping_shrinks_by_ten_on_accepted_steps():
    x, y = _logistic_data(seed=2)
    params, closure = logistic_model(x, y)
    opt = optim.Newton(params, damping=1.0, adaptive_damping=True)
    theta, lam = np.zeros(x.shape[1] + 1), 1.0
    for k in range(4):
        opt.step(closure)
        _, g, h = logistic_np(theta, x, y)
        theta = theta + np.linalg.solve(h + lam * np.eye(len(theta)), -g)  # convex: accepted
        lam /= 10
        np.testing.assert_allclose(flat(params), theta, rtol=0, atol=1e-12)
        assert opt.state[params[0]]["damping"] == pytest.approx(lam)
        assert opt.state[params[0]]["func_evals"] == 2 * (k + 1)  # gradient point + trial point


def test_fixed_damping_follows_the_group():
    params, closure, q, c = quadratic()
    opt = optim.Newton(params, damping=0.5)
    opt.step(closure)
    opt.param_groups[0]["damping"] = 3.0
    t0 = flat(params)
    opt.step(closure)
    np.testing.assert_allclose(flat(params) - t0, np.linalg.solve(q + 3 * np.eye(len(t0)), -(q @ t0 + c)),
                               rtol=1e-10, atol=1e-13)
    assert opt.state[params[0]]["damping"] == 3.0


# --------------------------------------------------------------------------- API


def test_errors():
    params, closure, _, _ = quadratic()
    with pytest.raises(TypeError, match="closure"):
        optim.Newton(params).step()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.Newton([{"params": [params[0]]}, {"params": [params[1]]}])
    with pytest.raises(ValueError, match="method"):
        optim.Newton(params, method="bfgs")
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.Newton(params, line_search_fn="strong_wolfe")
    for kwargs in (dict(lr=0.0), dict(lr=-1.0), dict(damping=-1e-3), dict(damping=float("nan")),
                   dict(cg_tol=-1.0), dict(cg_max_iter=0), dict(cg_max_iter=2.5), dict(adaptive_damping="yes")):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            optim.Newton(params, **kwargs)
    with pytest.raises(RuntimeError, match="single-element"):
        optim.Newton(params).step(lambda: params[1] * 2)
    with pytest.raises(RuntimeError, match="does not require grad"):
        optim.Newton(params).step(lambda: params[1].detach().sum())
    with pytest.raises(TypeError, match="Tensor"):
        optim.Newton(params).step(lambda: 1.0)

    def lbfgs_style_closure():
        loss = closure()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="without calling backward"):
        optim.Newton(params).step(lbfgs_style_closure)


def test_returns_the_first_loss_and_leaves_unused_parameters():
    params, closure, q, c = quadratic()
    unused = Parameter(dlkern.tensor(np.ones(3)))
    t0 = flat(params)
    opt = optim.Newton(params + [unused])
    loss = opt.step(closure)  # H is singular on `unused`: the least-squares fallback
    assert isinstance(loss, dlkern.Tensor)
    np.testing.assert_allclose(float(loss), 0.5 * t0 @ q @ t0 + c @ t0, rtol=1e-13)
    np.testing.assert_allclose(q @ flat(params) + c, 0, atol=1e-10)  # min-norm step: unused stays
    np.testing.assert_array_equal(unused.data, np.ones(3))


def test_state_dict_round_trip_continues_identically():
    params, closure = double_well([0.3, -0.2])
    opt = optim.Newton(params, adaptive_damping=True, line_search_fn="backtracking")
    for _ in range(2):
        opt.step(closure)
    sd = opt.state_dict()
    saved = dict(sd["state"][0])
    assert set(saved) >= {"damping", "n_iter", "func_evals", "hvp_evals"} and saved["n_iter"] == 2
    snapshot = flat(params)
    opt.step(closure)
    after = flat(params)

    params2, closure2 = double_well(snapshot)
    opt2 = optim.Newton(params2)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["adaptive_damping"] and opt2.param_groups[0]["line_search_fn"] == "backtracking"
    assert opt2.state[params2[0]] == saved
    opt2.step(closure2)
    np.testing.assert_array_equal(flat(params2), after)
    assert opt2.state_dict()["state"] == opt.state_dict()["state"]


def test_float32_parameters():
    x, y = _logistic_data(seed=7)
    params, closure = logistic_model(x, y, dtype=np.float32)
    opt = optim.Newton(params, method="cg")
    for _ in range(6):
        opt.step(closure)
    assert all(p.data.dtype == np.float32 for p in params)
    theta = np.zeros(x.shape[1] + 1)
    for _ in range(10):
        _, g, h = logistic_np(theta, x, y)
        theta -= np.linalg.solve(h, g)
    np.testing.assert_allclose(flat(params), theta, rtol=1e-5, atol=1e-5)
    assert np.linalg.norm(logistic_np(flat(params), x, y)[1]) < 1e-5


def test_exported():
    assert optim.Newton is optim.newton.Newton and "Newton" in optim.__all__
