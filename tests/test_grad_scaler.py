"""dlkern.amp.GradScaler: the scale sequence and skipped steps on a scripted run of
finite / inf / NaN gradients (an expectation written out here, and torch.amp.GradScaler
on cpu as an oracle), unscale_ before clipping, the error cases, state_dict."""

import math

import numpy as np
import pytest

import dlkern
from dlkern import optim
from dlkern.amp import GradScaler

INF, NAN = float("inf"), float("nan")
# (what the step's gradient holds) for a run with init_scale=8, growth_interval=3
PATTERN = ["ok", "ok", "ok", "inf", "ok", "nan", "inf", "ok", "ok", "ok", "ok"]
# worked by hand: three clean steps double the scale; a bad one halves it, resets the
# count and skips the step
EXPECTED_SCALES = [8, 8, 16, 8, 8, 4, 2, 2, 2, 4, 4]
EXPECTED_SKIPPED = [3, 5, 6]


def _coef(kind):
    return {"ok": [1.0, -2.0], "inf": [1.0, INF], "nan": [NAN, 1.0]}[kind]


def _run_dlkern(pattern, unscale_first=False):
    p = dlkern.tensor([0.5, -0.25], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    scaler = GradScaler(init_scale=8.0, growth_interval=3)
    scales, params, grads = [], [], []
    for kind in pattern:
        opt.zero_grad()
        loss = (p * dlkern.tensor(_coef(kind))).sum()
        scaler.scale(loss).backward()
        if unscale_first:
            scaler.unscale_(opt)
            grads.append(p.grad.data.copy())
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        params.append(p.data.copy())
    return scales, params, grads


def test_scale_sequence_and_skipped_steps():
    scales, params, _ = _run_dlkern(PATTERN)
    assert scales == EXPECTED_SCALES
    prev = np.array([0.5, -0.25], np.float32)
    for i, p in enumerate(params):
        if i in EXPECTED_SKIPPED:
            np.testing.assert_array_equal(p, prev)  # the step was skipped
        else:
            # a clean step sees the unscaled gradient (the coefficients) exactly
            np.testing.assert_allclose(p, prev - np.float32(0.1) * np.array(_coef("ok"), np.float32), rtol=1e-6)
        prev = p


def test_unscale_gives_true_gradients_for_clipping():
    _, _, grads = _run_dlkern(["ok", "inf", "ok"], unscale_first=True)
    np.testing.assert_array_equal(grads[0], [1.0, -2.0])
    assert not np.isfinite(grads[1]).all()
    # clipping after unscale_ acts on the true gradient norm
    p = dlkern.tensor([1.0, 1.0], requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    scaler = GradScaler(init_scale=1024.0)
    scaler.scale((p * dlkern.tensor([3.0, 4.0])).sum()).backward()
    scaler.unscale_(opt)
    norm = dlkern.nn.utils.clip_grad_norm_([p], max_norm=1.0)
    assert math.isclose(float(norm), 5.0, rel_tol=1e-6)
    scaler.step(opt)
    scaler.update()
    np.testing.assert_allclose(p.data, [1 - 0.6, 1 - 0.8], rtol=1e-6)


def test_matches_torch_grad_scaler():
    torch = pytest.importorskip("torch")
    tp = torch.tensor([0.5, -0.25], requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1)
    ts = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    tscales, tparams = [], []
    for kind in PATTERN:
        topt.zero_grad()
        ts.scale((tp * torch.tensor(_coef(kind))).sum()).backward()
        ts.step(topt)
        ts.update()
        tscales.append(ts.get_scale())
        tparams.append(tp.detach().numpy().copy())
    scales, params, _ = _run_dlkern(PATTERN)
    assert scales == tscales
    np.testing.assert_allclose(np.array(params), np.array(tparams), rtol=1e-6)
    sd = ts.state_dict()
    mine = GradScaler(init_scale=8.0, growth_interval=3)
    assert set(mine.state_dict()) == set(sd)


def test_backoff_rounds_to_float32_and_growth_stops_at_overflow():
    p = dlkern.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    scaler = GradScaler(init_scale=1.0, backoff_factor=0.3)
    scaler.scale((p * dlkern.tensor([INF])).sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == float(np.float32(1.0) * np.float32(0.3))
    big = GradScaler(init_scale=3e38, growth_interval=1)
    big.scale(p.sum())
    p.grad = None
    big.unscale_(opt)  # no gradients: nothing inf, a clean step
    big.step(opt)
    big.update()
    assert big.get_scale() == float(np.float32(3e38))  # doubling would overflow: kept


def test_step_returns_the_optimizers_return():
    class Opt:
        def __init__(self, p):
            self.param_groups = [{"params": [p]}]

        def step(self, *args, **kwargs):
            return ("stepped", args, kwargs)

    p = dlkern.tensor([1.0], requires_grad=True)
    scaler = GradScaler()
    scaler.scale(p.sum()).backward()
    assert scaler.step(Opt(p), 1, k=2) == ("stepped", (1,), {"k": 2})
    scaler.update()
    p.grad = None
    scaler.scale((p * dlkern.tensor([NAN])).sum()).backward()
    assert scaler.step(Opt(p)) is None
    with pytest.raises(RuntimeError, match="Closure"):
        scaler.step(Opt(p), closure=lambda: 0)


def _stepped():
    p = dlkern.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    scaler = GradScaler()
    scaler.scale(p.sum()).backward()
    return scaler, opt, p


def test_call_order_errors():
    scaler, opt, _ = _stepped()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    scaler.update()
    scaler.unscale_(opt)  # a new iteration
    with pytest.raises(RuntimeError, match="scale is unset"):
        GradScaler().step(opt)
    fresh = GradScaler()
    fresh.scale(dlkern.tensor(1.0))
    with pytest.raises(RuntimeError, match="No inf checks"):
        fresh.update()


def test_fp16_gradients_refused():
    p = dlkern.tensor([1.0], dtype=dlkern.float16, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    scaler = GradScaler(init_scale=4.0)
    scaler.scale(p.sum()).backward()
    with pytest.raises(ValueError, match="FP16 gradients"):
        scaler.unscale_(opt)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"growth_factor": 1.0}, "growth factor"), ({"backoff_factor": 1.0}, "backoff factor"),
    ({"growth_interval": 0}, "growth_interval"), ({"device": "tpu"}, "device"),
])
def test_constructor_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GradScaler(**kwargs)


def test_disabled_is_a_pass_through():
    p = dlkern.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    off = GradScaler(enabled=False)
    loss = p.sum()
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and not off.is_enabled()
    assert off.state_dict() == {}
    loss.backward()
    off.unscale_(opt)
    off.update()
    assert off.step(opt) is None
    np.testing.assert_allclose(p.data, [0.9])  # the grad (1.0) was stepped unscaled


def test_state_dict_round_trip_and_new_scale():
    scales, _, _ = _run_dlkern(PATTERN[:2])
    scaler = GradScaler(init_scale=8.0, growth_interval=3)
    p = dlkern.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    for _ in range(2):
        p.grad = None
        scaler.scale(p.sum()).backward()
        scaler.step(opt)
        scaler.update()
    sd = scaler.state_dict()
    assert sd == {"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 3,
                  "_growth_tracker": 2}
    other = GradScaler()
    other.load_state_dict(sd)
    assert other.state_dict() == sd
    with pytest.raises(RuntimeError, match="empty"):
        other.load_state_dict({})
    # one more clean step on the loaded scaler completes the interval: the scale doubles
    p.grad = None
    other.scale(p.sum()).backward()
    other.step(opt)
    other.update()
    assert other.get_scale() == 16.0
    other.update(new_scale=2.0)
    assert other.get_scale() == 2.0
    other.update(new_scale=dlkern.tensor(4.0))
    assert other.get_scale() == 4.0
    with pytest.raises(ValueError, match="new_scale"):
        other.update(new_scale=dlkern.tensor([1.0, 2.0]))


def test_scale_nested_outputs_and_bad_type():
    scaler = GradScaler(init_scale=4.0)
    a, b = dlkern.tensor(1.0), dlkern.tensor(2.0)
    out = scaler.scale([a, (b,)])
    assert isinstance(out, list) and float(out[0]) == 4.0 and float(out[1][0]) == 8.0
    with pytest.raises(TypeError, match="Tensor"):
        scaler.scale(3.0)
