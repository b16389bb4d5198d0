"""dlkern.optim.lr_scheduler: lr sequences against closed-form NumPy formulas over many
steps (two parameter groups), chaining, state_dict round trips, errors, scale_lr.
torch.optim.lr_scheduler, when importable, is an extra oracle."""

import math
import warnings

import numpy as np
import pytest

from dlkern import optim
from dlkern.nn import Parameter
from dlkern.optim import lr_scheduler as sched

BASE_LRS = (0.1, 0.02)
N = 60


def make_opt(name="SGD", lrs=BASE_LRS, **kw):
    groups = [{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs]
    return getattr(optim, name)(groups, **kw)


# ----------------------------------------------------------------------------- closed forms (written here)
def cawr_position(t, T_0, T_mult):
    """(T_cur, T_i) at epoch t (may be fractional): walk the restarts."""
    start, T_i = 0, T_0
    while t >= start + T_i:
        start += T_i
        T_i *= T_mult
    return t - start, T_i


def cosine(base, eta_min, frac):
    return eta_min + (base - eta_min) * (1 + np.cos(np.pi * frac)) / 2


def anneal(start, end, pct, strategy):
    if strategy == "cos":
        return end + (start - end) * (1 + np.cos(np.pi * pct)) / 2
    return start + (end - start) * pct


def one_cycle(t, max_lr, total, pct_start=0.3, div=25.0, final_div=1e4, strategy="cos", three_phase=False,
              base_m=0.85, max_m=0.95):
    """(lr, momentum) at step t of the 1cycle policy."""
    init = max_lr / div
    low = init / final_div
    if three_phase:
        ends = [pct_start * total - 1, 2 * pct_start * total - 2, total - 1]
        lrs = [init, max_lr, init, low]
        moms = [max_m, base_m, max_m, max_m]
    else:
        ends = [pct_start * total - 1, total - 1]
        lrs = [init, max_lr, low]
        moms = [max_m, base_m, max_m]
    start = 0.0
    for i, end in enumerate(ends):
        if t <= end or i == len(ends) - 1:
            pct = (t - start) / (end - start)
            return anneal(lrs[i], lrs[i + 1], pct, strategy), anneal(moms[i], moms[i + 1], pct, strategy)
        start = end


def f_lambda(t):
    return 0.95 ** t + 0.01 * (t % 3)


CASES = {
    "LambdaLR": (lambda o: sched.LambdaLR(o, f_lambda),
                 lambda b, t: b * f_lambda(t)),
    "LambdaLR-per-group": (lambda o: sched.LambdaLR(o, [f_lambda, lambda e: 1.0 / (1 + e)]),
                           None),  # checked per group below
    "StepLR": (lambda o: sched.StepLR(o, step_size=7, gamma=0.5),
               lambda b, t: b * 0.5 ** (t // 7)),
    "MultiStepLR": (lambda o: sched.MultiStepLR(o, milestones=[30, 5, 12, 12], gamma=0.3),
                    lambda b, t: b * 0.3 ** sum(m <= t for m in [5, 12, 12, 30])),
    "ExponentialLR": (lambda o: sched.ExponentialLR(o, gamma=0.93),
                      lambda b, t: b * 0.93 ** t),
    "CosineAnnealingLR": (lambda o: sched.CosineAnnealingLR(o, T_max=13),
                          lambda b, t: cosine(b, 0.0, t / 13)),
    "CosineAnnealingLR-eta_min": (lambda o: sched.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
                                  lambda b, t: cosine(b, 0.001, t / 10)),
    "CosineAnnealingWarmRestarts": (lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=6),
                                    lambda b, t: cosine(b, 0.0, t % 6 / 6)),
    "CosineAnnealingWarmRestarts-T_mult": (
        lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=0.005),
        lambda b, t: cosine(b, 0.005, np.divide(*cawr_position(t, 3, 2)))),
    "LinearLR": (lambda o: sched.LinearLR(o), lambda b, t: b * (1 / 3 + (2 / 3) * min(t, 5) / 5)),
    "LinearLR-decay": (lambda o: sched.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=20),
                       lambda b, t: b * (1.0 - 0.9 * min(t, 20) / 20)),
    "SequentialLR": (lambda o: sched.SequentialLR(o, [sched.LinearLR(o, start_factor=0.1, total_iters=8),
                                                      sched.CosineAnnealingLR(o, T_max=40)], milestones=[10]),
                     lambda b, t: b * (0.1 + 0.9 * min(t, 8) / 8) if t < 10 else cosine(b, 0.0, (t - 10) / 40)),
    "SequentialLR-three": (lambda o: sched.SequentialLR(o, [sched.ExponentialLR(o, 0.9), sched.StepLR(o, 4),
                                                            sched.LinearLR(o, 0.5, total_iters=6)], [7, 25]),
                           lambda b, t: (b * 0.9 ** t if t < 7 else b * 0.1 ** ((t - 7) // 4) if t < 25
                                         else b * (0.5 + 0.5 * min(t - 25, 6) / 6))),
    "OneCycleLR": (lambda o: sched.OneCycleLR(o, max_lr=[1.0, 0.3], total_steps=N + 1),
                   None),
    "OneCycleLR-linear-three_phase": (
        lambda o: sched.OneCycleLR(o, max_lr=0.5, epochs=6, steps_per_epoch=11, pct_start=0.25,
                                   anneal_strategy="linear", three_phase=True, div_factor=10, final_div_factor=50),
        None),
}


def expected_lrs(name, t):
    if name == "LambdaLR-per-group":
        return [BASE_LRS[0] * f_lambda(t), BASE_LRS[1] / (1 + t)]
    if name == "OneCycleLR":
        return [one_cycle(t, m, N + 1)[0] for m in (1.0, 0.3)]
    if name == "OneCycleLR-linear-three_phase":
        return [one_cycle(t, 0.5, 66, pct_start=0.25, div=10, final_div=50, strategy="linear",
                          three_phase=True)[0]] * 2
    formula = CASES[name][1]
    return [formula(b, t) for b in BASE_LRS]


def lr_sequence(scheduler, opt, steps=N):
    seq = [list(scheduler.get_last_lr())]
    for _ in range(steps):
        opt.step()
        scheduler.step()
        seq.append(list(scheduler.get_last_lr()))
        assert seq[-1] == [g["lr"] for g in opt.param_groups]
    return seq


@pytest.mark.parametrize("name", sorted(CASES))
def test_lr_sequence_matches_closed_form(name):
    opt = make_opt(momentum=0.9)
    scheduler = CASES[name][0](opt)
    assert scheduler.last_epoch == 0
    for t, lrs in enumerate(lr_sequence(scheduler, opt)):
        np.testing.assert_allclose(lrs, expected_lrs(name, t), rtol=1e-9, atol=1e-15, err_msg=f"step {t}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_lr_sequence_matches_torch(name):
    torch = pytest.importorskip("torch")
    import torch.optim.lr_scheduler as tsched

    global sched
    opt = make_opt(momentum=0.9)
    ours = lr_sequence(CASES[name][0](opt), opt)
    tgroups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in BASE_LRS]
    topt = torch.optim.SGD(tgroups, momentum=0.9)
    saved, sched = sched, tsched
    try:
        tscheduler = CASES[name][0](topt)
    finally:
        sched = saved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lr_sequence(tscheduler, topt)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def test_constructor_performs_the_initial_step():
    opt = make_opt()
    s = sched.StepLR(opt, 3)
    assert s.last_epoch == 0 and s.base_lrs == list(BASE_LRS)
    assert [g["initial_lr"] for g in opt.param_groups] == list(BASE_LRS)
    assert s.get_last_lr() == list(BASE_LRS)
    opt2 = make_opt()
    sched.LinearLR(opt2, start_factor=0.5)
    np.testing.assert_allclose([g["lr"] for g in opt2.param_groups], [0.05, 0.01])
    assert [g["initial_lr"] for g in opt2.param_groups] == list(BASE_LRS)


def test_chained_schedulers_multiply():
    opt = make_opt()
    a = sched.StepLR(opt, step_size=4, gamma=0.5)
    b = sched.ExponentialLR(opt, gamma=0.9)
    for t in range(1, 30):
        opt.step()
        a.step()
        b.step()
        np.testing.assert_allclose(b.get_last_lr(), [lr * 0.5 ** (t // 4) * 0.9 ** t for lr in BASE_LRS],
                                   rtol=1e-12)


def test_cosine_warm_restarts_fractional_epochs():
    opt = make_opt()
    s = sched.CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=3, eta_min=0.001)
    for epoch in [0.25, 1.5, 3.99, 4.0, 7.3, 15.9, 16.0, 30.2, 2.5, 60.0]:
        s.step(epoch)
        t_cur, t_i = cawr_position(epoch, 4, 3)
        np.testing.assert_allclose(s.get_last_lr(), [cosine(b, 0.001, t_cur / t_i) for b in BASE_LRS],
                                   rtol=1e-9, err_msg=f"epoch {epoch}")
        assert s.last_epoch == math.floor(epoch)
    # per-batch use: epoch + i / iters, then plain steps continue from the integer epoch
    opt = make_opt()
    s = sched.CosineAnnealingWarmRestarts(opt, T_0=2)
    for epoch in range(3):
        for i in range(4):
            s.step(epoch + i / 4)
            np.testing.assert_allclose(s.get_last_lr()[0], cosine(0.1, 0.0, (epoch + i / 4) % 2 / 2), rtol=1e-12)
    with pytest.raises(ValueError, match="non-negative epoch"):
        s.step(-1)


def test_cosine_warm_restarts_fractional_matches_torch():
    torch = pytest.importorskip("torch")
    opt = make_opt()
    s = sched.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE_LRS[0])
    ts = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(topt, T_0=3, T_mult=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in [0.5, 2.9, 3.0, 8.25, 9.0, 22.5, 1.0]:
            s.step(epoch)
            ts.step(epoch)
            np.testing.assert_allclose(s.get_last_lr()[0], ts.get_last_lr()[0], rtol=1e-12)
            assert (s.T_i, s.last_epoch) == (ts.T_i, ts.last_epoch)


def test_step_with_epoch_uses_closed_form():
    opt = make_opt()
    s = sched.MultiStepLR(opt, [3, 6], gamma=0.1)
    s.step(7)
    np.testing.assert_allclose(s.get_last_lr(), [b * 0.01 for b in BASE_LRS], rtol=1e-12)
    s.step(4)
    np.testing.assert_allclose(s.get_last_lr(), [b * 0.1 for b in BASE_LRS], rtol=1e-12)


@pytest.mark.parametrize("optimizer,key", [("SGD", "momentum"), ("RMSprop", "momentum"), ("Adam", "betas"),
                                           ("AdamW", "betas"), ("RAdam", "betas")])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_momentum(optimizer, key, three_phase):
    kw = {"momentum": 0.5} if optimizer in ("SGD", "RMSprop") else {}
    opt = make_opt(optimizer, **kw)
    total = 40
    s = sched.OneCycleLR(opt, max_lr=0.8, total_steps=total, three_phase=three_phase, base_momentum=0.8,
                         max_momentum=0.9)
    for t in range(total):
        lr, mom = one_cycle(t, 0.8, total, three_phase=three_phase, base_m=0.8, max_m=0.9)
        for g in opt.param_groups:
            np.testing.assert_allclose(g["lr"], lr, rtol=1e-12)
            got = g["betas"][0] if key == "betas" else g["momentum"]
            np.testing.assert_allclose(got, mom, rtol=1e-12)
            if key == "betas":
                assert g["betas"][1] == 0.999
        if t < total - 1:
            opt.step()
            s.step()
    assert opt.param_groups[0]["max_lr"] == 0.8 and opt.param_groups[0]["min_lr"] == 0.8 / 25 / 1e4
    s.step()  # step == total_steps still computes (as PyTorch), one more is an error
    with pytest.raises(ValueError, match="Tried to step 41 times"):
        s.step()


def test_one_cycle_without_momentum_cycling():
    opt = make_opt("Adagrad")
    with pytest.raises(ValueError, match="momentum or beta1"):
        sched.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    s = sched.OneCycleLR(opt, max_lr=1.0, total_steps=10, cycle_momentum=False)
    np.testing.assert_allclose(s.get_last_lr(), [1.0 / 25] * 2, rtol=1e-12)
    opt = make_opt("SGD", momentum=0.3)
    sched.OneCycleLR(opt, max_lr=1.0, total_steps=10, cycle_momentum=False)
    assert opt.param_groups[0]["momentum"] == 0.3


def test_one_cycle_matches_torch_for_adam_betas():
    torch = pytest.importorskip("torch")
    opt = make_opt("Adam")
    s = sched.OneCycleLR(opt, max_lr=[0.5, 0.2], total_steps=30, anneal_strategy="linear", pct_start=0.4)
    topt = torch.optim.Adam([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in BASE_LRS])
    ts = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=[0.5, 0.2], total_steps=30, anneal_strategy="linear",
                                             pct_start=0.4)
    for _ in range(29):
        for g, tg in zip(opt.param_groups, topt.param_groups):
            np.testing.assert_allclose([g["lr"], g["betas"][0]], [tg["lr"], tg["betas"][0]], rtol=1e-12)
        opt.step()
        topt.step()
        s.step()
        ts.step()


# ----------------------------------------------------------------------------- state dicts
class Warmup:
    """A callable object: LambdaLR saves its attributes."""

    def __init__(self, n):
        self.n = n

    def __call__(self, t):
        return min(1.0, (t + 1) / self.n)


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip(name):
    opt = make_opt(momentum=0.9)
    s = CASES[name][0](opt)
    for _ in range(17):
        opt.step()
        s.step()
    saved_sched, saved_opt = s.state_dict(), opt.state_dict()
    assert "optimizer" not in saved_sched and saved_sched["last_epoch"] == 17
    rest = lr_sequence(s, opt, 30)

    opt2 = make_opt(momentum=0.9)
    s2 = CASES[name][0](opt2)  # a fresh run (initial step done), then restored
    opt2.load_state_dict(saved_opt)
    s2.load_state_dict(saved_sched)
    assert s2.last_epoch == 17
    np.testing.assert_allclose(lr_sequence(s2, opt2, 30), rest, rtol=1e-13)


def test_lambda_state_dict_saves_callable_objects_only():
    opt = make_opt()
    w = Warmup(10)
    s = sched.LambdaLR(opt, [w, f_lambda])
    sd = s.state_dict()
    assert sd["lr_lambdas"] == [{"n": 10}, None]
    w2 = Warmup(3)
    s2 = sched.LambdaLR(make_opt(), [w2, f_lambda])
    s2.load_state_dict(sd)
    assert w2.n == 10 and s2.lr_lambdas[1] is f_lambda


def test_state_dict_is_a_copy():
    opt = make_opt()
    s = sched.MultiStepLR(opt, [2, 4])
    sd = s.state_dict()
    s.step()
    sd["base_lrs"].append(1.0)
    assert s.last_epoch == 1 and sd["last_epoch"] == 0 and len(s.base_lrs) == 2


def test_resuming_with_last_epoch():
    opt = make_opt()
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(opt, 3, last_epoch=5)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    s = sched.StepLR(opt, 3, gamma=0.5, last_epoch=5)
    assert s.last_epoch == 6
    s.step(9)
    np.testing.assert_allclose(s.get_last_lr(), [b * 0.125 for b in BASE_LRS])


# ----------------------------------------------------------------------------- errors and scale_lr
def test_invalid_arguments():
    opt = make_opt()
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        sched.LambdaLR(opt, [f_lambda])
    with pytest.raises(ValueError, match="step_size"):
        sched.StepLR(opt, 0)
    with pytest.raises(ValueError, match="T_max"):
        sched.CosineAnnealingLR(opt, 0)
    with pytest.raises(ValueError, match="T_0"):
        sched.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="T_mult"):
        sched.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=0)
    with pytest.raises(ValueError, match="start_factor"):
        sched.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="end_factor"):
        sched.LinearLR(opt, end_factor=1.5)
    with pytest.raises(ValueError, match="one more scheduler than milestones"):
        sched.SequentialLR(opt, [sched.StepLR(opt, 2), sched.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="same optimizer"):
        sched.SequentialLR(opt, [sched.StepLR(opt, 2), sched.StepLR(make_opt(), 3)], milestones=[4])
    with pytest.raises(ValueError, match="total_steps OR"):
        sched.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="total_steps"):
        sched.OneCycleLR(opt, max_lr=1.0, total_steps=0)
    with pytest.raises(ValueError, match="pct_start"):
        sched.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="anneal_strategy"):
        sched.OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="exp")
    with pytest.raises(ValueError, match="expected 2 values for max_lr"):
        sched.OneCycleLR(opt, max_lr=[1.0, 2.0, 3.0], total_steps=10)
    with pytest.raises(TypeError, match="not an Optimizer"):
        sched.StepLR(object(), 2)


def test_scale_lr():
    assert optim.scale_lr(0.1, 512, 256) == pytest.approx(0.2)
    assert optim.scale_lr(0.1, 64, 256, rule="linear") == pytest.approx(0.025)
    assert optim.scale_lr(0.1, 1024, 256, rule="sqrt") == pytest.approx(0.2)
    assert optim.scale_lr(0.1, 64, 256, rule="sqrt") == pytest.approx(0.05)
    assert sched.scale_lr is optim.scale_lr
    with pytest.raises(ValueError, match="rule"):
        optim.scale_lr(0.1, 64, 256, rule="cubic")
    with pytest.raises(ValueError, match="batch_size"):
        optim.scale_lr(0.1, 0, 256)
    with pytest.raises(ValueError, match="base_lr"):
        optim.scale_lr(-0.1, 64, 256)
