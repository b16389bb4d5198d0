"""Tensor hooks, retain_grad, post-accumulate hooks and anomaly mode: each against
hand-derived NumPy values, and against PyTorch on the same graph with the same hooks when
it is installed. (autograd.grad and gradcheck: test_autograd_grad.py.)"""

import gc
import warnings

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
from dlkern import autograd
from dlkern.autograd import Function, engine, hooks
from test_autograd_helpers import leaf, no_hooks_left  # noqa: F401 (a fixture)

# every test leaves no hook record behind once its tensors are gone
pytestmark = pytest.mark.usefixtures("no_hooks_left")


@pytest.fixture
def rng():
    return np.random.default_rng(1313)


class NanBackward(Function):
    """Identity forward; its backward returns NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        return g * np.nan


# ---------------------------------------------------------------------------- register_hook

def test_leaf_hook_sees_total_and_replaces_before_accumulation(rng):
    a = rng.standard_normal(4)
    x = leaf(a)
    seen = []
    x.register_hook(lambda g: seen.append(g.data.copy()) or g * 10)
    # x reaches the loss three times (twice through the product, once broadcast into a
    # (2, 4) sum): the hook runs once, with the summed gradient shaped like x.
    m = dlkern.tensor(rng.standard_normal((2, 4)))
    loss = (x * x).sum() + (x + m).sum()
    loss.backward()
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 * a + 2)
    np.testing.assert_allclose(x.grad.data, 10 * (2 * a + 2))
    # a second backward: the hook sees this backward's gradient, .grad accumulates
    (x * 3).sum().backward()
    np.testing.assert_allclose(seen[1], np.full(4, 3.0))
    np.testing.assert_allclose(x.grad.data, 10 * (2 * a + 2) + 30)


def test_leaf_hook_on_backward_root_and_0d_and_empty():
    x = leaf([1.0, 2.0])
    x.register_hook(lambda g: g * 5)
    x.backward(dlkern.ones(2, dtype=np.float64))
    np.testing.assert_allclose(x.grad.data, [5.0, 5.0])
    s = leaf(3.0)
    calls = []
    s.register_hook(lambda g: calls.append(g.shape))
    (s * s).backward()
    assert calls == [()] and s.grad.item() == 6.0
    e = leaf(np.zeros((0, 3)))
    e.register_hook(lambda g: calls.append(g.shape))
    (e * 2).sum().backward()
    assert calls[-1] == (0, 3) and e.grad.shape == (0, 3)


def test_leaf_grad_does_not_alias_a_hook_result():
    x = leaf([1.0, 2.0])
    kept = dlkern.tensor([5.0, 5.0], dtype=np.float64)
    x.register_hook(lambda g: kept)  # a tensor the hook keeps using
    (x * 1).sum().backward()
    (x * 1).sum().backward()  # accumulates into .grad in place
    np.testing.assert_allclose(x.grad.data, [10.0, 10.0])
    np.testing.assert_allclose(kept.data, [5.0, 5.0])


def test_hooks_run_in_registration_order_and_chain():
    x = leaf([1.0, -2.0])
    order = []
    x.register_hook(lambda g: order.append(("first", g.data.copy())) or g * 2)
    x.register_hook(lambda g: order.append(("second", g.data.copy())))  # None: keeps the gradient
    x.register_hook(lambda g: order.append(("third", g.data.copy())) or g + 1)
    (x * 3).sum().backward()
    assert [name for name, _ in order] == ["first", "second", "third"]
    np.testing.assert_allclose(order[1][1], [6.0, 6.0])  # sees the first hook's replacement
    np.testing.assert_allclose(x.grad.data, [7.0, 7.0])


def test_handle_remove_and_context_manager():
    x = leaf([1.0, 2.0])
    handle = x.register_hook(lambda g: g * 100)
    keep = x.register_hook(lambda g: g * 2)
    handle.remove()
    handle.remove()  # a second remove does nothing
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 2.0])
    keep.remove()
    assert not hooks.LEAF_HOOKS  # nothing left: the fast path again
    x.grad = None
    with x.register_hook(lambda g: g * 7):
        (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.data, [7.0, 7.0])
    x.grad = None
    (x * 1).sum().backward()
    np.testing.assert_allclose(x.grad.data, [1.0, 1.0])


def test_nonleaf_hook_replaces_the_gradient_that_flows_on(rng):
    a = rng.standard_normal(3)
    x = leaf(a)
    h = x * 3
    seen = []
    h.register_hook(lambda g: seen.append(g.data.copy()) or g * 2)
    (h * h).sum().backward()
    np.testing.assert_allclose(seen[0], 2 * 3 * a)  # d(sum h^2)/dh
    np.testing.assert_allclose(x.grad.data, 3 * 2 * (2 * 3 * a))
    assert h.grad is None  # a non-leaf keeps no .grad unless retain_grad


def test_nonleaf_hook_runs_even_when_the_tensor_is_dropped():
    x = leaf([1.0, 2.0])
    h = x * 2
    calls = []
    h.register_hook(lambda g: calls.append(1) or g * 0)
    loss = h.sum()
    del h
    loss.backward()
    assert calls == [1]
    np.testing.assert_allclose(x.grad.data, [0.0, 0.0])


def test_hook_on_a_tensor_used_by_two_branches_sees_the_sum(rng):
    a = rng.standard_normal(5)
    x = leaf(a)
    h = x.exp()
    seen = []
    h.register_hook(lambda g: seen.append(g.data.copy()))
    (h * 2 + h * h).sum().backward()
    e = np.exp(a)
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], 2 + 2 * e)
    np.testing.assert_allclose(x.grad.data, (2 + 2 * e) * e)


def test_hook_errors():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        dlkern.ones(2).register_hook(lambda g: g)
    x = leaf([1.0, 2.0])
    with pytest.raises(TypeError, match="callable"):
        x.register_hook(3)
    for hook, exc, pattern in [(lambda g: g.sum(), RuntimeError, "changed the size"),
                               (lambda g: 3, TypeError, "returned 'int'"),
                               (lambda g: g.float(), RuntimeError, "changed the type")]:
        for target in (x, x * 1):
            t = leaf([1.0, 2.0]) if target is x else x * 1
            handle = t.register_hook(hook)
            with pytest.raises(exc, match=pattern):
                (t * t).sum().backward()
            handle.remove()


def test_hooks_match_torch(rng):
    torch = pytest.importorskip("torch")
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(4)

    def run(lib, tensor):
        x = tensor(a, requires_grad=True)
        w = tensor(b, requires_grad=True)
        log = []
        x.register_hook(lambda g: log.append(("x", g.detach().numpy().copy())) or g * 2)
        h = (x * w).exp()
        h.retain_grad()
        h.register_hook(lambda g: log.append(("h", g.detach().numpy().copy())) or g - 1)
        w.register_hook(lambda g: log.append(("w", g.detach().numpy().copy())))
        loss = (h * w + x).sum() + (w * w).sum()
        loss.backward(retain_graph=True)
        loss.backward()
        return log, x.grad.detach().numpy(), w.grad.detach().numpy(), h.grad.detach().numpy()

    ours = run(dlkern, lambda v, requires_grad: dlkern.tensor(v, dtype=np.float64, requires_grad=requires_grad))
    theirs = run(torch, lambda v, requires_grad: torch.tensor(v, dtype=torch.float64, requires_grad=requires_grad))
    assert sorted(n for n, _ in ours[0]) == sorted(n for n, _ in theirs[0])
    for name in "xhw":
        for g1, g2 in zip([g for n, g in ours[0] if n == name], [g for n, g in theirs[0] if n == name]):
            np.testing.assert_allclose(g1, g2, rtol=1e-12)
    for r1, r2 in zip(ours[1:], theirs[1:]):
        np.testing.assert_allclose(r1, r2, rtol=1e-12)


# ---------------------------------------------------------------------------- retain_grad

def test_retain_grad_accumulates_across_backwards(rng):
    a = rng.standard_normal(3)
    x = leaf(a)
    h = x * 3
    assert not h.retains_grad
    h.retain_grad()
    assert h.retains_grad and h.is_leaf is False
    y = (h * h).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(h.grad.data, 6 * a)
    first = h.grad
    y.backward()
    np.testing.assert_allclose(h.grad.data, 12 * a)
    np.testing.assert_allclose(first.data, 6 * a)  # out of place: the first .grad is not changed
    np.testing.assert_allclose(x.grad.data, 36 * a)


def test_retain_grad_stores_after_hooks_whatever_the_order():
    x = leaf([1.0, 2.0])
    h = x * 3
    h.retain_grad()  # registered before the hook, stored after it (as PyTorch)
    h.register_hook(lambda g: g * 2)
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.data, [12.0, 24.0])
    np.testing.assert_allclose(x.grad.data, [36.0, 72.0])


def test_retain_grad_on_leaf_is_noop_and_errors():
    x = leaf([1.0])
    assert x.retain_grad() is None and not x.retains_grad
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0])
    with pytest.raises(RuntimeError, match="requires_grad=False"):
        dlkern.ones(2).retain_grad()
    h = x * 2
    h.retain_grad()
    h.detach().sum()  # nothing flows: no .grad
    assert h.grad is None


def test_retain_grad_matches_torch(rng):
    torch = pytest.importorskip("torch")
    a = rng.standard_normal((2, 3))
    results = []
    for make in (lambda v: dlkern.tensor(v, dtype=np.float64, requires_grad=True),
                 lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)):
        x = make(a)
        h = x.exp()
        h.retain_grad()
        y = (h * h).sum()
        y.backward(retain_graph=True)
        y.backward()
        results.append((h.grad.detach().numpy(), x.grad.detach().numpy(), h.retains_grad, x.retains_grad))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)
    assert results[0][2:] == results[1][2:] == (True, False)


# ---------------------------------------------------------------------------- post-accumulate hooks

def test_post_accumulate_grad_hook_runs_once_after_accumulation():
    x = leaf([1.0, 2.0])
    seen = []
    x.register_post_accumulate_grad_hook(lambda t: seen.append((t is x, t.grad.data.copy())))
    x.register_hook(lambda g: g * 2)
    (x * x + x).sum().backward()  # x reaches the loss three times
    assert len(seen) == 1 and seen[0][0]
    np.testing.assert_allclose(seen[0][1], 2 * np.array([3.0, 5.0]))
    autograd.grad((x * x).sum(), x)  # autograd.grad accumulates nothing: no call
    assert len(seen) == 1
    with pytest.raises(RuntimeError, match="non-leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        dlkern.ones(1).register_post_accumulate_grad_hook(lambda t: None)


def test_post_accumulate_hooks_fire_as_each_parameter_is_ready():
    # What data parallelism needs: the last layer's gradients are final (and its hooks
    # run) while the first layer's are still to be computed.
    dlkern.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    first, last = model[0], model[2]
    events = []
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(
            lambda t, name=name: events.append((name, first.weight.grad is None)))
    model(dlkern.randn(2, 4)).sum().backward()
    assert sorted(n for n, _ in events) == sorted(n for n, _ in model.named_parameters())
    assert dict(events)["2.weight"] is True  # first layer not reached yet
    assert dict(events)["0.weight"] is False
    assert last.weight.grad is not None


def test_copies_and_pickles_start_without_hooks():
    import copy
    import pickle

    model = nn.Linear(2, 2)
    calls = []
    model.weight.register_post_accumulate_grad_hook(lambda t: calls.append("original"))
    twin = copy.deepcopy(model)
    twin.weight.register_post_accumulate_grad_hook(lambda t: calls.append("copy"))
    twin(dlkern.ones(1, 2)).sum().backward()
    assert calls == ["copy"]
    model(dlkern.ones(1, 2)).sum().backward()
    assert calls == ["copy", "original"]
    back = pickle.loads(pickle.dumps(model.weight))
    back.grad = None
    (back * 1).sum().backward()
    assert calls == ["copy", "original"]
    np.testing.assert_array_equal(back.data, model.weight.data)


def test_post_accumulate_matches_torch():
    torch = pytest.importorskip("torch")
    logs = []
    for make in (lambda v: dlkern.tensor(v, dtype=np.float64, requires_grad=True),
                 lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)):
        x = make([1.0, -2.0, 0.5])
        log = []
        x.register_post_accumulate_grad_hook(lambda t: log.append(t.grad.detach().numpy().copy()))
        (x * x * x).sum().backward()
        (x.exp()).sum().backward()
        logs.append(log)
    assert len(logs[0]) == len(logs[1]) == 2
    for g1, g2 in zip(*logs):
        np.testing.assert_allclose(g1, g2, rtol=1e-12)


# ---------------------------------------------------------------------------- detect_anomaly

def test_detect_anomaly_names_the_function():
    x = leaf([0.0, 1.0])
    with pytest.warns(UserWarning, match="Anomaly Detection has been enabled"):
        ctx = autograd.detect_anomaly()
    with ctx:
        assert autograd.is_anomaly_enabled()
        with pytest.raises(RuntimeError, match=r"Function 'SqrtBackward' returned nan values in its 0th output\."):
            with np.errstate(all="ignore"):
                (x.sqrt() * 0).sum().backward()  # 0 / (2 * sqrt(0))
        with pytest.raises(RuntimeError, match=r"Function 'DivBackward' returned nan values in its 1th output\."):
            with np.errstate(all="ignore"):
                (x / x).sum().backward()
        y = leaf([1.0, 2.0])
        with pytest.raises(RuntimeError, match=r"Function 'NanBackwardBackward' returned nan values in its 0th"):
            (NanBackward.apply(y) * 2).sum().backward()
        (y * 2).sum().backward()  # no NaN: no error
        with np.errstate(all="ignore"):
            (x.sqrt()).sum().backward()  # inf is not an anomaly
    assert not autograd.is_anomaly_enabled()


def test_anomaly_off_by_default_and_modes(monkeypatch):
    assert not autograd.is_anomaly_enabled()
    x = leaf([0.0, 1.0])
    with np.errstate(all="ignore"):
        (x.sqrt() * 0).sum().backward()
    assert np.isnan(x.grad.data[0])  # NaN propagates, nothing raised
    autograd.set_detect_anomaly(True)
    try:
        assert autograd.is_anomaly_enabled()
        with pytest.raises(RuntimeError, match="SqrtBackward"):
            with np.errstate(all="ignore"):
                (x.sqrt() * 0).sum().backward()
    finally:
        autograd.set_detect_anomaly(False)
    with autograd.set_detect_anomaly(True, check_nan=False):
        with np.errstate(all="ignore"):
            (x.sqrt() * 0).sum().backward()  # check_nan=False: nothing checked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")

        @autograd.detect_anomaly()
        def step():
            assert autograd.is_anomaly_enabled()
            with np.errstate(all="ignore"):
                (x.sqrt() * 0).sum().backward()
    with pytest.raises(RuntimeError, match="SqrtBackward"):
        step()
    assert not autograd.is_anomaly_enabled()


def test_anomaly_matches_torch():
    torch = pytest.importorskip("torch")
    for build in (lambda t: (t.sqrt() * 0).sum(), lambda t: (t / t).sum()):
        messages = []
        for make in (lambda v: dlkern.tensor(v, dtype=np.float64, requires_grad=True),
                     lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)):
            lib = dlkern if make([1.0]).__class__ is dlkern.Tensor else torch
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                with lib.autograd.detect_anomaly():
                    with pytest.raises(RuntimeError) as info:
                        build(make([0.0, 1.0])).backward()
            messages.append(str(info.value).replace("Backward0", "Backward"))
        assert messages[0] == messages[1]


# ---------------------------------------------------------------------------- nothing when off

def test_plain_backward_never_takes_the_hook_path(monkeypatch):
    def boom(*args):
        raise AssertionError("the hook path ran without any hook")

    monkeypatch.setattr(engine, "_run_node", boom)
    monkeypatch.setattr(engine, "_deliver_leaf", boom)
    x = leaf([1.0, 2.0])
    (x.exp() * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, np.exp([1.0, 2.0]) * np.array([2.0, 3.0]))
    h = x * 2
    handle = h.register_hook(lambda g: g)
    with pytest.raises(AssertionError, match="hook path"):
        (h * 1).sum().backward()
    handle.remove()  # the last hook gone: the plain path again
    x.grad = None
    (h * 1).sum().backward()
    np.testing.assert_allclose(x.grad.data, [2.0, 2.0])


def test_hook_records_go_away_with_their_tensors():
    x = leaf([1.0])
    h = x * 2
    x.register_hook(lambda g: g)
    h.register_hook(lambda g: g)
    h.retain_grad()
    assert hooks.STATE.nodes == 1 and len(hooks.LEAF_HOOKS) == 1
    del x, h
    gc.collect()
    assert hooks.STATE.nodes == 0 and not hooks.LEAF_HOOKS


# ---------------------------------------------------------------------------- on the CUDA host twin

def test_hooks_retain_grad_grad_and_anomaly_on_the_cuda_twin():
    import host_cuda
    from dlkern.devices import CUDADevice

    dev = CUDADevice(0, module=host_cuda)
    a = np.array([1.0, 2.0, 4.0])
    x = dlkern.tensor(a, dtype=np.float64, device=dev, requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.device) or g * 2)
    h = x * 3
    h.retain_grad()
    h.register_hook(lambda g: g + 1)
    (h * h).sum().backward()
    assert seen == [dev] and x.grad.device == dev and h.grad.device == dev
    np.testing.assert_allclose(h.grad.cpu().numpy(), 6 * a + 1)
    np.testing.assert_allclose(x.grad.cpu().numpy(), 2 * 3 * (6 * a + 1))
    (g,) = autograd.grad((x * x).sum(), x)
    assert g.device == dev
    np.testing.assert_allclose(g.cpu().numpy(), 2 * 2 * a)  # x's hook doubles it
    y = dlkern.tensor([1.0, 2.0], dtype=np.float64, device=dev, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with autograd.detect_anomaly():
            with pytest.raises(RuntimeError, match="NanBackwardBackward"):
                NanBackward.apply(y).sum().backward()
