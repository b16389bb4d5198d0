"""ReduceLROnPlateau (and LambdaLR with one function per group): lr sequences worked out
by hand from the documented rule, state_dict round trips, errors, and
torch.optim.lr_scheduler on the same metric sequences when torch is installed."""

import numpy as np
import pytest

import dlkern
from dlkern import optim
from dlkern.nn import Parameter
from dlkern.optim import lr_scheduler as sched


def make_opt(lrs=(1.0, 0.4)):
    return optim.SGD([{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs])


def run(scheduler, opt, metrics):
    out = []
    for m in metrics:
        scheduler.step(m)
        out.append([g["lr"] for g in opt.param_groups])
        assert scheduler.get_last_lr() == out[-1]
    return out


def test_min_mode_patience_cooldown_and_min_lr_by_hand():
    opt = make_opt()
    s = sched.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, threshold=0.0, threshold_mode="abs",
                                min_lr=[0.0, 0.3])
    assert isinstance(s, sched.LRScheduler)
    got = run(s, opt, [10, 9, 9, 9, 9, 8, 8, 8, 8, 8])
    # steps 3-4: two steps without improvement > patience 1 -> halve; step 5 is the cooldown;
    # 6 improves; 7-8 bad -> halve again; the second group stops at its min_lr 0.3.
    want = [[1, .4], [1, .4], [1, .4], [.5, .3], [.5, .3], [.5, .3], [.5, .3], [.25, .3], [.25, .3], [.25, .3]]
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    assert s.best == 8 and s.last_epoch == 10


def test_max_mode_relative_threshold_and_eps_by_hand():
    opt = make_opt((1.0, 1e-9))
    s = sched.ReduceLROnPlateau(opt, mode="max", patience=0, threshold=0.1)
    got = run(s, opt, [1.0, 1.05, 1.2, 1.3])
    # 1.05 is not above 1.0 * 1.1 (bad, patience 0: reduce); 1.2 is; 1.3 is not above 1.32.
    # The second group's reduction (9e-10) is below eps=1e-8, so it is never applied.
    np.testing.assert_allclose(got, [[1.0, 1e-9], [0.1, 1e-9], [0.1, 1e-9], [0.01, 1e-9]], rtol=1e-15, atol=0)


def test_metric_may_be_a_tensor_and_state_dict_round_trips():
    opt = make_opt()
    s = sched.ReduceLROnPlateau(opt, patience=2, factor=0.3)
    metrics = [5.0, 4.0, 4.5, 4.4, 4.2, 4.1, 4.3, 4.05, 4.3, 4.2, 4.3]
    run(s, opt, [dlkern.tensor(np.float64(m)) for m in metrics[:5]])
    state = s.state_dict()
    assert "optimizer" not in state and state["best"] == 4.0 and state["num_bad_epochs"] == 0
    assert s.get_last_lr() == [0.3, 0.4 * 0.3]   # three bad steps after 4.0 > patience 2
    opt2 = make_opt([g["lr"] for g in opt.param_groups])
    s2 = sched.ReduceLROnPlateau(opt2, mode="max", patience=99)
    s2.load_state_dict(state)
    assert run(s2, opt2, metrics[5:]) == run(s, opt, metrics[5:])


def test_plateau_errors():
    opt = make_opt()
    with pytest.raises(ValueError, match="factor should be < 1.0"):
        sched.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode 'best' is unknown"):
        sched.ReduceLROnPlateau(opt, mode="best")
    with pytest.raises(ValueError, match="threshold mode 'pct' is unknown"):
        sched.ReduceLROnPlateau(opt, threshold_mode="pct")
    with pytest.raises(ValueError, match="expected 2 min_lrs"):
        sched.ReduceLROnPlateau(opt, min_lr=[0.1])
    with pytest.raises(TypeError, match="is not an Optimizer"):
        sched.ReduceLROnPlateau(object())
    s = sched.ReduceLROnPlateau(opt, min_lr=[0.0, 0.0], patience=0)
    opt.add_param_group({"params": [Parameter(np.zeros(1))], "lr": 0.5})
    s.step(1.0)
    with pytest.raises(RuntimeError, match="parameter groups"):
        s.step(2.0)
    with pytest.warns(UserWarning, match="epoch argument is deprecated"):
        sched.ReduceLROnPlateau(make_opt()).step(1.0, epoch=3)


def test_lambda_lr_per_group_by_hand():
    opt = make_opt()
    s = sched.LambdaLR(opt, [lambda e: 0.5 ** e, lambda e: 1.0 / (e + 1)])
    got = [s.get_last_lr()]
    for _ in range(4):
        opt.step()
        s.step()
        got.append(s.get_last_lr())
    want = [[1.0 * 0.5 ** e, 0.4 / (e + 1)] for e in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-15)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        sched.LambdaLR(make_opt(), [lambda e: 1.0])


PLATEAU_CONFIGS = [
    dict(),
    dict(mode="max", factor=0.5, patience=3, threshold=0.05, cooldown=2),
    dict(factor=0.2, patience=0, threshold=0.5, threshold_mode="abs", min_lr=0.01),
    dict(mode="max", threshold_mode="abs", patience=2, min_lr=[0.05, 0.001], eps=1e-3),
]


@pytest.mark.parametrize("config", PLATEAU_CONFIGS, ids=range(len(PLATEAU_CONFIGS)))
def test_plateau_matches_torch(config):
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(0)
    metrics = np.cumsum(r.standard_normal(300) * 0.5) + r.integers(0, 3, 300)   # wandering, with plateaus
    opt = make_opt()
    topt = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in (1.0, 0.4)])
    s = sched.ReduceLROnPlateau(opt, **config)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **config)
    for i, m in enumerate(metrics):
        s.step(float(m))
        ts.step(float(m))
        assert s.get_last_lr() == ts.get_last_lr(), f"step {i}"
        assert (s.best, s.num_bad_epochs, s.cooldown_counter) == (ts.best, ts.num_bad_epochs, ts.cooldown_counter)
    assert min(s.get_last_lr()) < 0.4   # the sequence did reduce


def test_lambda_lr_matches_torch():
    torch = pytest.importorskip("torch")
    fns = [lambda e: 0.95 ** e, lambda e: min(1.0, (e + 1) / 5)]
    opt = make_opt()
    topt = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in (1.0, 0.4)])
    s, ts = sched.LambdaLR(opt, fns), torch.optim.lr_scheduler.LambdaLR(topt, fns)
    for _ in range(12):
        assert s.get_last_lr() == ts.get_last_lr()
        topt.step()
        s.step()
        ts.step()
