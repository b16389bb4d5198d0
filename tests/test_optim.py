"""dlkern.optim: optimizer trajectories against closed-form NumPy updates written here,
param groups, state_dict, zero_grad, skipped parameters, errors, in-place updates
without per-step allocations, gradient clipping and L1/L2 penalties.
torch.optim, when importable, is an extra oracle."""

import math
import tracemalloc

import numpy as np
import pytest

import dlkern
from dlkern import optim
from dlkern.nn import Parameter

STEPS = 8  # enough for RAdam's rho_t to pass 5 with the default beta2
SHAPES = [(3, 5), (7,)]
# large then tiny gradients: second moments shrink, so amsgrad's running max matters
GRAD_SCALES = [3.0, 3.0, 3.0, 0.01, 0.01, 0.01, 0.01, 0.01]


# ----------------------------------------------------------------------------- references
def ref_sgd(p, grads, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    out, buf = [], None
    for g in grads:
        g = (-g if maximize else g) + weight_decay * p
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p)
    return out


def ref_adagrad(p, grads, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                maximize=False):
    out, acc = [], np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(grads, 1):
        g = (-g if maximize else g) + weight_decay * p
        acc = acc + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(acc) + eps)
        out.append(p)
    return out


def ref_rmsprop(p, grads, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                maximize=False):
    out = []
    v, a, b = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        g = (-g if maximize else g) + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        if centered:
            a = alpha * a + (1 - alpha) * g
            denom = np.sqrt(v - a * a) + eps
        else:
            denom = np.sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / denom
            p = p - lr * b
        else:
            p = p - lr * g / denom
        out.append(p)
    return out


def adam_moments(p, g, m, v, lr, betas, weight_decay, maximize, decoupled_weight_decay):
    """The start of an Adam or RAdam step (they share it): weight decay (L2 on g, or
    decoupled on p), then both moments; returns the new (p, m, v)."""
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled_weight_decay:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    return p, b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g


def ref_adam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
             decoupled_weight_decay=False):
    b1, b2 = betas
    out = []
    m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        p, m, v = adam_moments(p, g, m, v, lr, betas, weight_decay, maximize, decoupled_weight_decay)
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(p)
    return out


def ref_adamw(p, grads, weight_decay=1e-2, **kw):
    return ref_adam(p, grads, weight_decay=weight_decay, decoupled_weight_decay=True, **kw)


def radam_rho(t, beta2):
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf, rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)


def ref_radam(p, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
              maximize=False):
    b1, b2 = betas
    out = []
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        p, m, v = adam_moments(p, g, m, v, lr, betas, weight_decay, maximize, decoupled_weight_decay)
        m_hat = m / (1 - b1 ** t)
        rho_inf, rho_t = radam_rho(t, b2)
        if rho_t > 5:
            r = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            adaptive = math.sqrt(1 - b2 ** t) / (np.sqrt(v) + eps)
            p = p - lr * m_hat * r * adaptive
        else:
            p = p - lr * m_hat
        out.append(p)
    return out


REFS = {"SGD": ref_sgd, "Adagrad": ref_adagrad, "RMSprop": ref_rmsprop, "Adam": ref_adam, "AdamW": ref_adamw,
        "RAdam": ref_radam}

# Every option of every optimizer, alone and in the combinations that interact.
CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "dampening": 0.5}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"weight_decay": 0.1}),
    ("SGD", {"momentum": 0.8, "dampening": 0.3, "weight_decay": 0.1}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", {"momentum": 0.9, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adagrad", {"weight_decay": 0.1}),
    ("Adagrad", {"initial_accumulator_value": 0.5}),
    ("Adagrad", {"eps": 1e-2}),
    ("Adagrad", {"lr_decay": 0.05, "weight_decay": 0.2, "initial_accumulator_value": 0.1, "maximize": True}),
    ("RMSprop", {}),
    ("RMSprop", {"alpha": 0.9}),
    ("RMSprop", {"eps": 1e-2}),
    ("RMSprop", {"weight_decay": 0.1}),
    ("RMSprop", {"momentum": 0.8}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"centered": True, "momentum": 0.7, "weight_decay": 0.1, "alpha": 0.95}),
    ("RMSprop", {"momentum": 0.5, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"betas": (0.8, 0.99)}),
    ("Adam", {"eps": 1e-2}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.1, "betas": (0.5, 0.9)}),
    ("Adam", {"decoupled_weight_decay": True, "weight_decay": 0.3}),
    ("Adam", {"maximize": True}),
    ("AdamW", {}),
    ("AdamW", {"weight_decay": 0.3}),
    ("AdamW", {"amsgrad": True}),
    ("AdamW", {"amsgrad": True, "betas": (0.7, 0.95), "eps": 1e-3, "weight_decay": 0.0}),
    ("AdamW", {"maximize": True}),
    ("RAdam", {}),
    ("RAdam", {"betas": (0.8, 0.99)}),
    ("RAdam", {"eps": 1e-2}),
    ("RAdam", {"weight_decay": 0.1}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"maximize": True}),
]
LR = {"SGD": 0.05, "Adagrad": 0.1, "RMSprop": 0.01, "Adam": 0.05, "AdamW": 0.05, "RAdam": 0.05}


def case_id(case):
    name, kw = case
    return name + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "-defaults")


def make_data(seed, dtype=np.float64, steps=STEPS):
    rng = np.random.default_rng(seed)
    inits = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[(rng.standard_normal(s) * GRAD_SCALES[t % len(GRAD_SCALES)]).astype(dtype) for t in range(steps)]
             for s in SHAPES]
    return inits, grads


def run_dlkern(name, kw, inits, grads, lr):
    params = [Parameter(x.copy()) for x in inits]
    opt = getattr(optim, name)(params, lr=lr, **kw)
    traj = []
    for t in range(len(grads[0])):
        for p, gs in zip(params, grads):
            p.grad = dlkern.Tensor(gs[t], dtype=gs[t].dtype)
        opt.step()
        traj.append([p.data.copy() for p in params])
    return traj, params, opt


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_trajectory_matches_closed_form(case):
    name, kw = case
    inits, grads = make_data(1)
    traj, params, _ = run_dlkern(name, kw, inits, grads, LR[name])
    for i, (x0, gs) in enumerate(zip(inits, grads)):
        ref = REFS[name](x0.copy(), gs, lr=LR[name], **kw)
        for t in range(STEPS):
            np.testing.assert_allclose(traj[t][i], ref[t], rtol=1e-10, atol=1e-12, err_msg=f"step {t + 1}")
    assert params[0].data.dtype == np.float64


@pytest.mark.parametrize("case", [c for c in CASES if c[1]], ids=case_id)
def test_each_option_changes_the_trajectory(case):
    # guards the cases above: every option is exercised by data where it matters
    name, kw = case
    inits, grads = make_data(2)
    with_opt = run_dlkern(name, kw, inits, grads, LR[name])[0][-1]
    without = run_dlkern(name, {}, inits, grads, LR[name])[0][-1]
    assert not all(np.allclose(a, b, rtol=1e-9, atol=0) for a, b in zip(with_opt, without))


def test_radam_takes_both_branches():
    rhos = [radam_rho(t, 0.999)[1] for t in range(1, STEPS + 1)]
    assert min(rhos) <= 5 < max(rhos)


@pytest.mark.parametrize("name", sorted(REFS))
def test_float32_parameters(name):
    kw = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    inits, grads = make_data(3, np.float32)
    traj, params, opt = run_dlkern(name, kw, inits, grads, LR[name])
    assert all(p.data.dtype == np.float32 for p in params)
    assert all(v.dtype == np.float32 for s in opt.state.values() for v in s.values() if isinstance(v, np.ndarray))
    for i, (x0, gs) in enumerate(zip(inits, grads)):
        ref = REFS[name](x0.astype(np.float64), [g.astype(np.float64) for g in gs], lr=LR[name], **kw)
        np.testing.assert_allclose(traj[-1][i], ref[-1], rtol=1e-4, atol=1e-5)


def test_param_groups_with_different_options():
    inits, grads = make_data(4)
    a, b = (Parameter(x.copy()) for x in inits)
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.2, "nesterov": True, "weight_decay": 0.1}],
                    lr=0.05, momentum=0.9)
    assert opt.param_groups[0]["nesterov"] is False and opt.param_groups[0]["lr"] == 0.05
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["params"] == [b]
    for t in range(STEPS):
        a.grad, b.grad = dlkern.Tensor(grads[0][t]), dlkern.Tensor(grads[1][t])
        opt.step()
    np.testing.assert_allclose(a.data, ref_sgd(inits[0], grads[0], lr=0.05, momentum=0.9)[-1], rtol=1e-12)
    np.testing.assert_allclose(b.data, ref_sgd(inits[1], grads[1], lr=0.2, momentum=0.9, nesterov=True,
                                               weight_decay=0.1)[-1], rtol=1e-12)


def test_adam_param_groups_and_add_param_group():
    inits, grads = make_data(5)
    a, b = (Parameter(x.copy()) for x in inits)
    opt = optim.Adam([a], lr=0.05, amsgrad=True)
    opt.add_param_group({"params": [b], "betas": (0.5, 0.9), "weight_decay": 0.1})
    assert opt.param_groups[1]["amsgrad"] is True and opt.param_groups[1]["lr"] == 0.05
    for t in range(STEPS):
        a.grad, b.grad = dlkern.Tensor(grads[0][t]), dlkern.Tensor(grads[1][t])
        opt.step()
    np.testing.assert_allclose(a.data, ref_adam(inits[0], grads[0], lr=0.05, amsgrad=True)[-1], rtol=1e-10)
    np.testing.assert_allclose(b.data, ref_adam(inits[1], grads[1], lr=0.05, amsgrad=True, betas=(0.5, 0.9),
                                                weight_decay=0.1)[-1], rtol=1e-10)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="beta"):
        opt.add_param_group({"params": [Parameter(np.zeros(2))], "betas": (0.9, 1.0)})


def test_lr_changed_between_steps_is_used():
    inits, grads = make_data(6)
    p = Parameter(inits[0].copy())
    opt = optim.SGD([p], lr=0.1)
    expected = inits[0].copy()
    for t, lr in enumerate([0.1, 0.05, 0.3, 0.0, 0.2]):
        opt.param_groups[0]["lr"] = lr
        p.grad = dlkern.Tensor(grads[0][t])
        opt.step()
        expected = expected - lr * grads[0][t]
    np.testing.assert_allclose(p.data, expected, rtol=1e-12)


RICH = {
    "SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    "Adagrad": {"lr_decay": 0.1, "initial_accumulator_value": 0.2},
    "RMSprop": {"momentum": 0.5, "centered": True},
    "Adam": {"amsgrad": True, "weight_decay": 0.1},
    "AdamW": {"amsgrad": True},
    "RAdam": {"weight_decay": 0.1, "decoupled_weight_decay": True},
}


@pytest.mark.parametrize("name", sorted(RICH))
def test_state_dict_round_trip_mid_run(name):
    inits, grads = make_data(7, steps=STEPS)
    kw = RICH[name]
    params = [Parameter(x.copy()) for x in inits]
    opt = getattr(optim, name)(params, lr=LR[name], **kw)
    for t in range(3):
        for p, gs in zip(params, grads):
            p.grad = dlkern.Tensor(gs[t])
        opt.step()
    saved = opt.state_dict()
    snapshot = {i: {k: np.copy(v) for k, v in s.items()} for i, s in saved["state"].items()}
    assert sorted(saved["state"]) == [0, 1]
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1]]
    assert saved["param_groups"][0]["lr"] == LR[name]
    assert saved["state"][0]["step" if name != "SGD" else "momentum_buffer"] is not None

    clones = [Parameter(p.data.copy()) for p in params]
    opt2 = getattr(optim, name)(clones, lr=123.0)  # options come from the state dict
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == LR[name] and opt2.param_groups[0]["params"] == clones
    for t in range(3, STEPS):
        for ps in (params, clones):
            for p, gs in zip(ps, grads):
                p.grad = dlkern.Tensor(gs[t])
        opt.step()
        opt2.step()
        for p, q in zip(params, clones):
            np.testing.assert_array_equal(p.data, q.data)
    # the saved dict holds copies: later steps did not change it, and opt2 did not alias it
    for i, s in saved["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(v, snapshot[i][k])
    assert all(opt2.state[clones[0]][k] is not saved["state"][0][k]
               for k in saved["state"][0] if isinstance(saved["state"][0][k], np.ndarray))


def test_state_dict_with_groups_and_stateless_params():
    a, b, c = Parameter(np.ones(3)), Parameter(np.ones(2)), Parameter(np.ones(4))
    opt = optim.Adam([{"params": [a, b]}, {"params": [c], "lr": 0.5}])
    a.grad = dlkern.Tensor(np.ones(3))
    c.grad = dlkern.Tensor(np.ones(4))
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 2]  # b never had a gradient
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    opt2 = optim.Adam([{"params": [Parameter(np.ones(3)), Parameter(np.ones(2))]},
                       {"params": [Parameter(np.ones(4))]}])
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.5 and opt2.state[opt2.param_groups[1]["params"][0]]["step"] == 1


def test_load_state_dict_errors():
    a, b = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    a.grad, b.grad = dlkern.Tensor(np.ones(3)), dlkern.Tensor(np.ones(2))
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="number of parameter groups"):
        optim.SGD([{"params": [Parameter(np.ones(3))]}, {"params": [Parameter(np.ones(2))]}],
                  lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 with 2 parameters.*has 1"):
        optim.SGD([Parameter(np.ones(3))], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="shape"):
        optim.SGD([Parameter(np.ones(3)), Parameter(np.ones(5))], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="state"):
        opt.load_state_dict({"param_groups": []})


def test_zero_grad():
    a, b, c = Parameter(np.ones(3)), Parameter(np.ones(2)), Parameter(np.ones(2))
    opt = optim.SGD([a, b, c], lr=0.1)
    a.grad, b.grad = dlkern.Tensor(np.full(3, 2.0)), dlkern.Tensor(np.full(2, 3.0))
    grad_array = a.grad.data
    opt.zero_grad(set_to_none=False)
    assert a.grad.data is grad_array and not a.grad.data.any() and not b.grad.data.any() and c.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None and c.grad is None


@pytest.mark.parametrize("name", sorted(RICH))
def test_parameters_without_grad_are_skipped(name):
    a, b = Parameter(np.ones(3)), Parameter(np.full(4, 2.0))
    opt = getattr(optim, name)([a, b], lr=0.1, **RICH[name])
    for _ in range(3):
        a.grad = dlkern.Tensor(np.full(3, 0.5))
        opt.step()
    np.testing.assert_array_equal(b.data, np.full(4, 2.0))
    assert b not in opt.state or name == "Adagrad"  # Adagrad builds its accumulators up front, like PyTorch
    if name == "Adagrad":
        assert opt.state[b]["step"] == 0
    assert not np.array_equal(a.data, np.ones(3))


class PlainParam:
    """Any object with .data (an ndarray) and .grad (an ndarray here) can be optimized."""

    def __init__(self, data):
        self.data = data
        self.grad = None


def test_plain_objects_with_ndarray_grads_and_in_place_updates():
    inits, grads = make_data(8)
    p = PlainParam(inits[0].copy())
    array = p.data
    opt = optim.Adam([p], lr=0.05)
    for t in range(STEPS):
        p.grad = grads[0][t]
        opt.step()
    assert p.data is array  # updated in place
    np.testing.assert_allclose(p.data, ref_adam(inits[0], grads[0], lr=0.05)[-1], rtol=1e-10)
    np.testing.assert_array_equal(p.grad, grads[0][-1])  # the gradient is never modified


@pytest.mark.parametrize("name", sorted(RICH))
def test_gradient_is_not_modified_and_buffers_are_reused(name):
    kw = dict(RICH[name], maximize=True)
    p = Parameter(np.linspace(-1, 1, 6))
    opt = getattr(optim, name)([p], lr=0.1, **kw)
    g = np.linspace(0.5, -0.3, 6)
    p.grad = dlkern.Tensor(g.copy())
    opt.step()
    ids = {k: id(v) for k, v in opt.state[p].items() if isinstance(v, np.ndarray)}
    array = p.data
    opt.step()
    assert p.data is array
    assert {k: id(v) for k, v in opt.state[p].items() if isinstance(v, np.ndarray)} == ids
    np.testing.assert_array_equal(p.grad.data, g)


@pytest.mark.parametrize("name", sorted(RICH))
def test_step_allocates_no_parameter_sized_temporaries(name):
    kw = dict(RICH[name], maximize=True)
    n = 200_000  # 1.6 MB of float64
    p = Parameter(np.random.default_rng(0).standard_normal(n))
    p.grad = dlkern.Tensor(np.random.default_rng(1).standard_normal(n))
    opt = getattr(optim, name)([p], lr=1e-3, **kw)
    opt.step()
    opt.step()  # state and scratch buffers exist now
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        opt.step()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < p.data.nbytes // 10, f"a step allocated {peak} bytes"


@pytest.mark.parametrize("name", sorted(RICH))
def test_maximize_is_minimizing_the_negated_gradient(name):
    inits, grads = make_data(9)
    up = run_dlkern(name, dict(RICH[name], maximize=True), inits, grads, LR[name])[0][-1]
    down = run_dlkern(name, RICH[name], inits, [[-g for g in gs] for gs in grads], LR[name])[0][-1]
    for a, b in zip(up, down):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_closure_is_called_and_its_loss_returned():
    p = Parameter(np.array([3.0]))
    opt = optim.SGD([p], lr=0.1)

    def closure():
        assert dlkern.is_grad_enabled()
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with dlkern.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 9.0
    np.testing.assert_allclose(p.data, [3.0 - 0.1 * 6.0])


def test_training_a_linear_model_with_autograd():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    w_true = np.array([[1.5], [-2.0], [0.5]], np.float32)
    y = x @ w_true + 0.3
    model = dlkern.nn.Linear(3, 1)
    opt = optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.0)
    xt, yt = dlkern.tensor(x), dlkern.tensor(y)
    for _ in range(150):
        opt.zero_grad()
        loss = ((model(xt) - yt) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    np.testing.assert_allclose(model.weight.data.reshape(-1), w_true.reshape(-1), atol=0.05)


# ----------------------------------------------------------------------------- errors
BAD = [
    ("SGD", {"lr": -0.1}, "learning rate"),
    ("SGD", {"momentum": -0.5}, "momentum"),
    ("SGD", {"weight_decay": -1e-4}, "weight_decay"),
    ("SGD", {"nesterov": True}, "Nesterov"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "Nesterov"),
    ("Adagrad", {"lr": -1.0}, "learning rate"),
    ("Adagrad", {"lr_decay": -0.1}, "lr_decay"),
    ("Adagrad", {"weight_decay": -0.1}, "weight_decay"),
    ("Adagrad", {"initial_accumulator_value": -0.1}, "initial_accumulator_value"),
    ("Adagrad", {"eps": -1e-10}, "epsilon"),
    ("RMSprop", {"lr": -1.0}, "learning rate"),
    ("RMSprop", {"alpha": -0.1}, "alpha"),
    ("RMSprop", {"eps": -1.0}, "epsilon"),
    ("RMSprop", {"momentum": -0.1}, "momentum"),
    ("RMSprop", {"weight_decay": -0.1}, "weight_decay"),
    ("Adam", {"lr": -1e-3}, "learning rate"),
    ("Adam", {"betas": (1.0, 0.999)}, "beta parameter at index 0"),
    ("Adam", {"betas": (0.9, -0.1)}, "beta parameter at index 1"),
    ("Adam", {"betas": (0.9,)}, "betas"),
    ("Adam", {"eps": -1e-8}, "epsilon"),
    ("Adam", {"weight_decay": -0.1}, "weight_decay"),
    ("AdamW", {"weight_decay": -0.1}, "weight_decay"),
    ("AdamW", {"betas": (0.9, 1.5)}, "beta parameter at index 1"),
    ("RAdam", {"lr": float("nan")}, "learning rate"),
    ("RAdam", {"betas": (-0.1, 0.999)}, "beta parameter at index 0"),
    ("RAdam", {"eps": -1.0}, "epsilon"),
    ("RAdam", {"weight_decay": -0.1}, "weight_decay"),
]


@pytest.mark.parametrize("name,kw,match", BAD, ids=[f"{n}-{m}" for n, _, m in BAD])
def test_invalid_hyper_parameters(name, kw, match):
    with pytest.raises(ValueError, match=match):
        getattr(optim, name)([Parameter(np.ones(2))], **kw)


def test_invalid_params_arguments():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(Parameter(np.ones(2)), lr=0.1)
    with pytest.raises(TypeError, match="set"):
        optim.SGD({Parameter(np.ones(2))}, lr=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        optim.SGD([PlainParam(np.ones(2, np.int64))], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([Parameter(np.ones(2)) * 2], lr=0.1)
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([{"params": [p], "lr": -1.0}], lr=0.1)


def test_defaults_match_pytorch():
    p = [Parameter(np.ones(2))]
    assert optim.SGD(p).defaults["lr"] == 1e-3
    d = optim.Adagrad(p).defaults
    assert (d["lr"], d["lr_decay"], d["initial_accumulator_value"], d["eps"]) == (1e-2, 0, 0, 1e-10)
    d = optim.RMSprop(p).defaults
    assert (d["lr"], d["alpha"], d["eps"], d["momentum"], d["centered"]) == (1e-2, 0.99, 1e-8, 0, False)
    d = optim.Adam(p).defaults
    assert (d["lr"], d["betas"], d["eps"], d["weight_decay"], d["amsgrad"]) == (1e-3, (0.9, 0.999), 1e-8, 0, False)
    assert optim.AdamW(p).defaults["weight_decay"] == 1e-2
    d = optim.RAdam(p).defaults
    assert (d["lr"], d["betas"], d["eps"], d["weight_decay"], d["decoupled_weight_decay"]) == \
        (1e-3, (0.9, 0.999), 1e-8, 0, False)


# ----------------------------------------------------------------------------- torch as an extra oracle
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_trajectory_matches_torch(case):
    torch = pytest.importorskip("torch")
    name, kw = case
    inits, grads = make_data(10)
    traj = run_dlkern(name, kw, inits, grads, LR[name])[0]
    tparams = [torch.tensor(x.copy(), requires_grad=True) for x in inits]
    topt = getattr(torch.optim, name)(tparams, lr=LR[name], **kw)
    for t in range(STEPS):
        for p, gs in zip(tparams, grads):
            p.grad = torch.tensor(gs[t])
        topt.step()
        for i, p in enumerate(tparams):
            np.testing.assert_allclose(traj[t][i], p.detach().numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- clipping
def grads_of(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    ps = [Parameter(np.zeros(s)) for s in [(4, 3), (5,), (2, 2, 2)]]
    for p in ps:
        p.grad = dlkern.Tensor(rng.standard_normal(p.data.shape) * scale)
    return ps


def ref_norm(arrays, norm_type):
    flat = np.concatenate([np.abs(a).ravel() for a in arrays])
    if norm_type == math.inf:
        return flat.max()
    return (flat ** norm_type).sum() ** (1 / norm_type)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm(norm_type, max_norm):
    ps = grads_of(0)
    before = [p.grad.data.copy() for p in ps]
    total = optim.clip_grad_norm_(ps, max_norm, norm_type=norm_type)
    expected = ref_norm(before, norm_type)
    np.testing.assert_allclose(total.item(), expected, rtol=1e-12)
    coef = min(1.0, max_norm / (expected + 1e-6))
    for p, g in zip(ps, before):
        np.testing.assert_allclose(p.grad.data, g * coef, rtol=1e-12)
    if coef < 1:
        np.testing.assert_allclose(ref_norm([p.grad.data for p in ps], norm_type), max_norm, rtol=1e-5)


def test_clip_grad_norm_skips_missing_grads_and_takes_one_tensor():
    ps = grads_of(1)
    extra = Parameter(np.ones(3))
    total = optim.clip_grad_norm_(ps + [extra], 1.0)
    assert extra.grad is None and math.isclose(ref_norm([p.grad.data for p in ps], 2), 1.0, rel_tol=1e-5)
    assert total.item() > 1.0
    single = grads_of(2)[0]
    g = single.grad.data.copy()
    np.testing.assert_allclose(optim.clip_grad_norm_(single, 100.0).item(), np.linalg.norm(g), rtol=1e-12)
    assert optim.clip_grad_norm_([Parameter(np.ones(2))], 1.0).item() == 0.0


def test_clip_grad_norm_nonfinite():
    ps = grads_of(3)
    ps[1].grad.data[2] = np.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)
    assert math.isinf(optim.clip_grad_norm_(ps, 1.0).item())


def test_clip_grad_norm_float32_in_place():
    ps = grads_of(4, scale=10.0)
    for p in ps:
        p.grad = dlkern.Tensor(p.grad.data.astype(np.float32))
    arrays = [p.grad.data for p in ps]
    total = optim.clip_grad_norm_(ps, 2.0)
    assert total.dtype == np.float32
    assert all(p.grad.data is a and a.dtype == np.float32 for p, a in zip(ps, arrays))
    np.testing.assert_allclose(ref_norm(arrays, 2), 2.0, rtol=1e-5)


def test_clip_grad_value():
    ps = grads_of(5, scale=2.0)
    before = [p.grad.data.copy() for p in ps]
    ps.append(Parameter(np.ones(2)))
    assert optim.clip_grad_value_(ps, 0.7) is None
    for p, g in zip(ps, before):
        np.testing.assert_array_equal(p.grad.data, np.clip(g, -0.7, 0.7))
    assert ps[-1].grad is None


def test_clip_matches_torch():
    torch = pytest.importorskip("torch")
    ps = grads_of(6)
    tps = [torch.zeros(p.data.shape, dtype=torch.float64, requires_grad=True) for p in ps]
    for p, t in zip(ps, tps):
        t.grad = torch.tensor(p.grad.data.copy())
    for norm_type in (2.0, 1.0, math.inf):
        a = optim.clip_grad_norm_(ps, 0.8, norm_type)
        b = torch.nn.utils.clip_grad_norm_(tps, 0.8, norm_type)
        np.testing.assert_allclose(a.item(), b.item(), rtol=1e-10)
        for p, t in zip(ps, tps):
            np.testing.assert_allclose(p.grad.data, t.grad.numpy(), rtol=1e-10)


# ----------------------------------------------------------------------------- penalties
def test_l1_l2_penalties_and_gradients():
    rng = np.random.default_rng(11)
    a = Parameter(rng.standard_normal((3, 4)))
    b = Parameter(rng.standard_normal(5))
    l1 = optim.l1_penalty([a, b])
    l2 = optim.l2_penalty([a, b])
    np.testing.assert_allclose(l1.item(), np.abs(a.data).sum() + np.abs(b.data).sum(), rtol=1e-12)
    np.testing.assert_allclose(l2.item(), (a.data ** 2).sum() + (b.data ** 2).sum(), rtol=1e-12)
    (0.5 * l1 + 0.25 * l2).backward()
    np.testing.assert_allclose(a.grad.data, 0.5 * np.sign(a.data) + 0.5 * a.data, rtol=1e-12)
    np.testing.assert_allclose(b.grad.data, 0.5 * np.sign(b.data) + 0.5 * b.data, rtol=1e-12)
    assert optim.l2_penalty([]).item() == 0.0 and optim.l1_penalty(iter([])).item() == 0.0


def test_l2_penalty_gradient_equals_weight_decay():
    rng = np.random.default_rng(12)
    x0 = rng.standard_normal(6)
    wd = 0.3
    p = Parameter(x0.copy())
    q = Parameter(x0.copy())
    opt_p = optim.SGD([p], lr=0.1, weight_decay=wd)
    opt_q = optim.SGD([q], lr=0.1)
    for _ in range(5):
        g = rng.standard_normal(6)
        p.grad = dlkern.Tensor(g)
        q.grad = None
        (0.5 * wd * optim.l2_penalty([q])).backward()
        q.grad.data += g
        opt_p.step()
        opt_q.step()
    np.testing.assert_allclose(p.data, q.data, rtol=1e-12)
    with pytest.raises(TypeError, match="Tensors"):
        optim.l1_penalty([PlainParam(np.ones(2))])


def test_optimizer_benchmark_smoke(tmp_path, capsys):
    import argparse

    from dlkern.bench import BENCHMARKS, load_benchmark

    assert "optim" in BENCHMARKS
    bench = load_benchmark("optim")
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "optim.md"
    args = parser.parse_args(["--optimizers", "Adam", "--repeats", "1", "--out", str(out)])
    assert bench.run(args) == 0
    assert "Adam" in capsys.readouterr().out and "dlkern ms/step" in out.read_text()
    assert bench.run(parser.parse_args(["--optimizers", "Nadam"])) == 2


def test_workspace_is_shared_and_strided_parameters_update_in_place():
    big = Parameter(np.ones((50, 40)))
    small = Parameter(np.ones(7))
    base = np.arange(24.0).reshape(4, 6)
    strided = PlainParam(base.T)  # a non-contiguous view: its owner must see the update
    opt = optim.Adam([big, small, strided], lr=0.1, amsgrad=True)
    big.grad, small.grad = dlkern.Tensor(np.ones((50, 40))), dlkern.Tensor(np.ones(7))
    g = np.linspace(-1, 1, 24).reshape(6, 4)
    strided.grad = g
    opt.step()
    workspace = sum(b.nbytes for bufs in opt._scratch.values() for b in bufs)
    assert workspace <= 2 * big.data.nbytes
    np.testing.assert_allclose(base.T, ref_adam(np.arange(24.0).reshape(4, 6).T, [g], lr=0.1, amsgrad=True)[-1],
                               rtol=1e-12)


def test_named_parameters():
    model = dlkern.nn.Linear(3, 2)
    opt = optim.SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
    assert opt.param_groups[0]["params"] == [model.weight, model.bias]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]
    with pytest.raises(ValueError, match="names"):
        optim.SGD([("w", Parameter(np.ones(2))), Parameter(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="names"):
        opt.add_param_group({"params": [Parameter(np.ones(2))]})
