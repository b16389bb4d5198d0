"""Module hooks (forward pre-hooks, forward hooks, full backward (pre-)hooks, handles)
and get_submodule: NumPy references written here, then the same modules and hook
functions in PyTorch."""

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.models import GPT


def _linear(w, b):
    lin = nn.Linear(w.shape[1], w.shape[0], dtype=np.float64)
    lin.weight.data[...] = w
    lin.bias.data[...] = b
    return lin


class Mix(nn.Module):
    """forward(x, y, scale) = (x * y * scale + linear(x), "tag"): two tensor inputs, a
    non-tensor input, a tensor and a non-tensor output."""

    def __init__(self, w, b):
        super().__init__()
        self.lin = _linear(w, b)

    def forward(self, x, y, scale):
        return x * y * scale + self.lin(x), "tag"


def _data(seed=0, n=4, d=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)), rng.standard_normal((n, d)), rng.standard_normal((d, d)),
            rng.standard_normal(d), rng.standard_normal((n, d)))


def _np(t):
    return None if t is None else np.asarray(t.detach().numpy() if hasattr(t, "detach") else t.data)


# ---------------------------------------------------------------------- forward hooks

def test_forward_order_and_arguments():
    log = []

    class Rec(nn.Module):
        def forward(self, x):
            log.append(("forward", x))
            return x + 1

    m = Rec()
    m.register_forward_pre_hook(lambda mod, args: log.append(("pre", mod, args)))
    m.register_forward_hook(lambda mod, args, out: log.append(("hook", mod, args, out)))
    x = dlkern.tensor([1.0, 2.0])
    y = m(x)
    assert [e[0] for e in log] == ["pre", "forward", "hook"]
    assert log[0][1] is m and log[0][2] == (x,)
    assert log[2][2] == (x,) and log[2][3] is y
    np.testing.assert_array_equal(_np(y), [2.0, 3.0])


def test_pre_hook_replaces_args_and_forward_hook_output():
    lin = _linear(np.eye(2) * 2, np.zeros(2))
    x = dlkern.tensor(np.array([[1.0, -1.0]]))
    seen = []
    h1 = lin.register_forward_pre_hook(lambda mod, args: args[0] * 3)      # a single value: wrapped
    lin.register_forward_hook(lambda mod, args, out: seen.append(_np(args[0])))
    out = lin(x)
    np.testing.assert_array_equal(_np(out), [[6.0, -6.0]])
    np.testing.assert_array_equal(seen[0], [[3.0, -3.0]])                     # the hook sees the new args
    h1.remove()
    h2 = lin.register_forward_pre_hook(lambda mod, args: (args[0] + 1,))     # a tuple
    np.testing.assert_array_equal(_np(lin(x)), [[4.0, 0.0]])
    h2.remove()
    lin.register_forward_hook(lambda mod, args, out: out * 0 + 7)
    np.testing.assert_array_equal(_np(lin(x)), [[7.0, 7.0]])


def test_prepend_with_kwargs_and_removal():
    class K(nn.Module):
        def forward(self, x, shift=0.0):
            return x + shift

    m = K()
    order = []
    m.register_forward_hook(lambda mod, a, o: order.append("a"))
    m.register_forward_hook(lambda mod, a, o: order.append("b"), prepend=True)
    h = m.register_forward_pre_hook(lambda mod, a, kw: (a, {"shift": kw["shift"] * 10}), with_kwargs=True)
    hk = m.register_forward_hook(lambda mod, a, kw, o: o + kw["shift"], with_kwargs=True)
    out = m(dlkern.tensor([1.0]), shift=2.0)
    np.testing.assert_array_equal(_np(out), [41.0])     # 1 + 20, then + 20 by the kwargs hook
    assert order == ["b", "a"]
    h.remove()
    hk.remove()
    h.remove()  # twice: no error
    np.testing.assert_array_equal(_np(m(dlkern.tensor([1.0]), shift=2.0)), [3.0])
    with m.register_forward_hook(lambda mod, a, o: o * 2):
        np.testing.assert_array_equal(_np(m(dlkern.tensor([1.0]))), [2.0])
    np.testing.assert_array_equal(_np(m(dlkern.tensor([1.0]))), [1.0])
    m._hooks.forward.clear()
    m.register_forward_pre_hook(lambda mod, a, kw: "bad", with_kwargs=True)
    with pytest.raises(RuntimeError, match="new_kwargs"):
        m(dlkern.tensor([1.0]))


def test_removing_every_hook_restores_the_plain_call():
    lin = nn.Linear(2, 2)
    assert lin._hooks is None
    handles = [lin.register_forward_hook(lambda *a: None), lin.register_forward_pre_hook(lambda *a: None),
               lin.register_full_backward_hook(lambda *a: None)]
    assert lin._hooks is not None
    for h in handles:
        h.remove()
    assert lin._hooks is None
    with pytest.raises(TypeError, match="callable"):
        lin.register_forward_hook(3)


# ---------------------------------------------------------------------- backward hooks

def _mix_grads(x, y, w, b, g, scale):
    """NumPy: out = x*y*scale + x w^T + b; d/dx = g*y*scale + g w, d/dy = g*x*scale."""
    return g * y * scale + g @ w, g * x * scale


def test_full_backward_hook_values_numpy():
    xv, yv, w, b, g = _data()
    m = Mix(w, b)
    log = []
    m.register_full_backward_hook(lambda mod, gi, go: log.append((mod, gi, go)))
    x = dlkern.tensor(xv, requires_grad=True)
    y = dlkern.tensor(yv, requires_grad=True)
    out, tag = m(x, y, 0.5)
    assert tag == "tag" and not log
    out.backward(dlkern.tensor(g))
    assert len(log) == 1
    mod, gi, go = log[0]
    assert mod is m and len(gi) == 3 and len(go) == 2 and gi[2] is None and go[1] is None
    gx, gy = _mix_grads(xv, yv, w, b, g, 0.5)
    np.testing.assert_allclose(_np(go[0]), g)
    np.testing.assert_allclose(_np(gi[0]), gx)
    np.testing.assert_allclose(_np(gi[1]), gy)
    np.testing.assert_allclose(_np(x.grad), gx)
    np.testing.assert_allclose(_np(m.lin.weight.grad), g.T @ xv)


def test_full_backward_hook_replacement_and_accumulation():
    xv, yv, w, b, g = _data(1)
    m = Mix(w, b)
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0] * 2, None, None))
    x = dlkern.tensor(xv, requires_grad=True)
    y = dlkern.tensor(yv, requires_grad=True)
    out = m(x, y, 1.0)[0] + x          # x also reaches the loss around the module
    out.backward(dlkern.tensor(g))
    gx, _ = _mix_grads(xv, yv, w, b, g, 1.0)
    np.testing.assert_allclose(_np(x.grad), 2 * gx + g)
    assert y.grad is None                  # the hook replaced its gradient by None
    m2 = Mix(w, b)
    m2.register_full_backward_hook(lambda mod, gi, go: (gi[0],))
    with pytest.raises(RuntimeError, match="invalid number of grad_input"):
        m2(x, y, 1.0)[0].sum().backward()


def test_backward_hook_without_input_grad_and_pre_hook():
    xv, yv, w, b, g = _data(2)
    lin = _linear(w, b)
    calls = []
    lin.register_full_backward_pre_hook(lambda mod, go: (go[0] * 3,))
    lin.register_full_backward_hook(lambda mod, gi, go: calls.append((gi, _np(go[0]))))
    lin(dlkern.tensor(xv)).backward(dlkern.tensor(g))      # the input does not require grad
    assert calls[0][0] == (None,)
    np.testing.assert_allclose(calls[0][1], 3 * g)
    np.testing.assert_allclose(_np(lin.weight.grad), 3 * g.T @ xv)
    bad = _linear(w, b)
    bad.register_full_backward_hook(lambda mod, gi, go: (go[0],))
    with pytest.raises(RuntimeError, match="no input requires gradient"):
        bad(dlkern.tensor(xv)).sum().backward()


def test_backward_hook_zero_grad_input_for_unreached_inputs():
    class Pick(nn.Module):
        def forward(self, x, y, z):
            return x * 2, z * 1, 3

    log = []
    m = Pick()
    m.register_full_backward_hook(lambda mod, gi, go: log.append((gi, go)))
    x = dlkern.tensor(np.ones(2), requires_grad=True)
    y = dlkern.tensor(np.ones(2))
    z = dlkern.tensor(np.ones(2), requires_grad=True)
    a, _, _ = m(x, y, z)
    a.sum().backward()
    gi, go = log[0]
    np.testing.assert_array_equal(_np(gi[0]), [2.0, 2.0])
    np.testing.assert_array_equal(_np(gi[1]), [0.0, 0.0])   # does not require grad: zeros, as torch
    np.testing.assert_array_equal(_np(gi[2]), [0.0, 0.0])   # not reached: zeros, accumulated into z
    np.testing.assert_array_equal(_np(go[0]), [1.0, 1.0])
    assert go[1] is None and go[2] is None
    np.testing.assert_array_equal(_np(z.grad), [0.0, 0.0])


def test_backward_hook_not_fired_under_no_grad_or_after_removal():
    xv, _, w, b, g = _data(3)
    lin = _linear(w, b)
    calls = []
    h = lin.register_full_backward_hook(lambda *a: calls.append(1))
    x = dlkern.tensor(xv, requires_grad=True)
    with dlkern.no_grad():
        out = lin(x)
    assert out.grad_fn is None and not calls
    h.remove()
    lin(x).backward(dlkern.tensor(g))
    assert not calls
    np.testing.assert_allclose(_np(x.grad), g @ w)


def test_backward_hook_on_empty_batch():
    w, b = np.ones((2, 3)), np.zeros(2)
    lin = _linear(w, b)
    got = []
    lin.register_full_backward_hook(lambda mod, gi, go: got.append((gi[0].shape, go[0].shape)))
    x = dlkern.tensor(np.zeros((0, 3)), requires_grad=True)
    lin(x).sum().backward()
    assert got == [((0, 3), (0, 2))]


# ---------------------------------------------------------------------- get_submodule

def test_get_submodule():
    gpt = GPT(11, block_size=4, n_layer=2, n_head=2, d_model=8)
    assert gpt.get_submodule("blocks.1.attn") is gpt.blocks[1].attn
    assert gpt.get_submodule("") is gpt
    assert gpt.get_submodule("blocks.0.mlp.2") is gpt.blocks[0].mlp[2]
    with pytest.raises(AttributeError, match="ModuleList has no attribute `7`"):
        gpt.get_submodule("blocks.7.attn")
    with pytest.raises(AttributeError, match="MultiheadAttention has no attribute `nope`"):
        gpt.get_submodule("blocks.0.attn.nope")
    with pytest.raises(AttributeError, match="`weight` is not an nn.Module"):
        gpt.get_submodule("wte.weight")


# ---------------------------------------------------------------------- PyTorch parity

def _torch_mix(torch, w, b):
    class TMix(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(w.shape[1], w.shape[0]).double()
            with torch.no_grad():
                self.lin.weight.copy_(torch.from_numpy(w))
                self.lin.bias.copy_(torch.from_numpy(b))

        def forward(self, x, y, scale):
            return x * y * scale + self.lin(x), "tag"

    return TMix()


def _run_both(torch, make_hooks, y_requires_grad=True, seed=4):
    """The same hooks on Mix and its torch twin; returns (dlkern log, torch log, grads)."""
    xv, yv, w, b, g = _data(seed)
    results = []
    for lib, model in (("dl", Mix(w, b)), ("torch", _torch_mix(torch, w, b))):
        log = []
        for kind, fn in make_hooks(log):
            getattr(model, "register_" + kind)(fn)
        if lib == "dl":
            x, y = dlkern.tensor(xv, requires_grad=True), dlkern.tensor(yv, requires_grad=y_requires_grad)
            gt = dlkern.tensor(g)
        else:
            x, y = torch.tensor(xv, requires_grad=True), torch.tensor(yv, requires_grad=y_requires_grad)
            gt = torch.tensor(g)
        out, _ = model(x, y, 0.5)
        out.backward(gt)
        results.append((log, _np(x.grad), _np(y.grad)))
    return results


def _norm(entry):
    if isinstance(entry, tuple):
        return tuple(_norm(e) for e in entry)
    return _np(entry) if entry is not None and not isinstance(entry, (str, float)) else entry


def _assert_same(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            _assert_same(u, v)
    elif a is None or isinstance(a, str):
        assert a == b
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("y_grad", [True, False])
def test_hooks_match_torch(y_grad):
    torch = pytest.importorskip("torch")

    def hooks(log):
        return [("forward_pre_hook", lambda m, a: log.append(("pre", a[2])) or (a[0] * 2, a[1], a[2])),
                ("forward_hook", lambda m, a, o: log.append(("fwd", a[0])) or (o[0] + 1, o[1])),
                ("full_backward_hook", lambda m, gi, go: log.append(("bwd", gi, go))),
                ("full_backward_hook", lambda m, gi, go: (gi[0] * 3 if gi[0] is not None else None,) + gi[1:])]

    (dl_log, dl_gx, dl_gy), (t_log, t_gx, t_gy) = _run_both(torch, hooks, y_grad)
    assert [e[0] for e in dl_log] == [e[0] for e in t_log] == ["pre", "fwd", "bwd"]
    for a, b in zip(dl_log, t_log):
        _assert_same(_norm(a), _norm(b))
    _assert_same(dl_gx, t_gx)
    _assert_same(dl_gy, t_gy)


def test_backward_pre_hook_and_no_input_grad_match_torch():
    torch = pytest.importorskip("torch")
    import warnings
    xv, _, w, b, g = _data(5)
    logs = []
    for lin, x, gt in ((_linear(w, b), dlkern.tensor(xv), dlkern.tensor(g)),
                       (torch.nn.Linear(3, 3).double(), torch.tensor(xv), torch.tensor(g))):
        if not isinstance(lin, nn.Module):
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
        log = []
        lin.register_full_backward_pre_hook(lambda m, go: (go[0] * 3,))
        lin.register_full_backward_hook(lambda m, gi, go: log.append((gi, go)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that no input requires grad
            lin(x).backward(gt)
        logs.append((_norm(log[0]), _np(lin.weight.grad)))
    _assert_same(logs[0], logs[1])


def test_get_submodule_errors_match_torch():
    torch = pytest.importorskip("torch")
    dl = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    tm = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.ReLU()))
    for target in ("0.foo", "3", "1.0.x", "0.weight"):
        with pytest.raises(AttributeError) as e_dl:
            dl.get_submodule(target)
        with pytest.raises(AttributeError) as e_t:
            tm.get_submodule(target)
        assert str(e_dl.value) == str(e_t.value)
    assert type(dl.get_submodule("1.0")).__name__ == type(tm.get_submodule("1.0")).__name__


def test_unreached_inputs_and_outputs_match_torch():
    torch = pytest.importorskip("torch")
    logs, grads = [], []
    for lib, base in ((dlkern, nn.Module), (torch, torch.nn.Module)):
        class Pick(base):
            def forward(self, x, y, z):
                return x * 2, z * 1, 3

        m = Pick()
        log = []
        m.register_full_backward_hook(lambda mod, gi, go: log.append((gi, go)))
        x = lib.tensor(np.ones(2), requires_grad=True)
        z = lib.tensor(np.ones(2), requires_grad=True)
        a, b, _ = m(x, lib.tensor(np.ones(2)), z)
        a.sum().backward()
        logs.append(_norm(log[0]))
        grads.append((_np(x.grad), _np(z.grad)))
    _assert_same(logs[0], logs[1])
    _assert_same(grads[0], grads[1])


def test_backward_hooks_on_the_cuda_host_twin():
    """The hooks' zeros and replacement gradients are made on the tensors' device."""
    import host_cuda
    from dlkern.device import CUDADevice
    dev = CUDADevice(0, module=host_cuda)
    xv, yv, w, b, g = _data(6)

    class Pick(nn.Module):
        def forward(self, x, z):
            return self.lin(x), z * 1

    m = Pick()
    m.lin = _linear(w, b)
    m.to(dev)
    got = []

    def hook(mod, gi, go):
        got.append((gi[0].device, gi[1].detach().cpu().numpy(), go[1]))
        return (np.asarray(gi[0].detach().cpu().numpy()) * 2, gi[1])   # a host array: moved to the device

    m.register_full_backward_hook(hook)
    x = dlkern.tensor(xv, requires_grad=True).to(dev).detach().requires_grad_()
    z = dlkern.tensor(yv).to(dev).detach().requires_grad_()
    out, _ = m(x, z)
    out.backward(dlkern.tensor(g).to(dev))
    assert got[0][0] == dev and got[0][2] is None
    np.testing.assert_array_equal(got[0][1], np.zeros_like(yv))
    assert x.grad.device == dev
    np.testing.assert_allclose(x.grad.cpu().numpy(), 2 * g @ w)
    np.testing.assert_array_equal(z.grad.cpu().numpy(), np.zeros_like(yv))


def test_leaf_gradient_through_hooks_is_its_own_array():
    """The gradient handed on to a leaf input must not be another holder's array: the
    leaf later accumulates into its .grad in place."""
    m = nn.Identity()
    m.register_full_backward_hook(lambda mod, gi, go: None)
    x = dlkern.tensor(np.zeros(3), requires_grad=True)
    g = dlkern.tensor(np.array([1.0, 2.0, 3.0]))
    for _ in range(2):
        m(x).backward(g)
    np.testing.assert_array_equal(_np(x.grad), [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(_np(g), [1.0, 2.0, 3.0])     # the caller's gradient is untouched
