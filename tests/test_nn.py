"""dlkern.nn: Module mechanics, every layer's forward against a float64 NumPy reference
(dlkern.reference, or written here), a float64 finite-difference check of every layer,
and clear errors."""

import math

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
import dlkern.nn.functional as F
from dlkern import reference as R
from test_autograd_helpers import gradcheck, t64


@pytest.fixture
def rng():
    return np.random.default_rng(42)


# ------------------------------------------------------------------ Module mechanics

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.act = nn.ReLU()
        self.blocks = nn.ModuleList([nn.Linear(6, 6), nn.Linear(6, 6)])
        self.heads = nn.ModuleDict({"a": nn.Linear(6, 2)})
        self.scale = nn.Parameter(dlkern.ones(1))
        self.register_buffer("counter", dlkern.zeros(1))

    def forward(self, x):
        x = self.act(self.fc1(x))
        for b in self.blocks:
            x = b(x)
        return self.heads["a"](x) * self.scale


def test_module_registration():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
                     "blocks.1.bias", "heads.a.weight", "heads.a.bias"]  # PyTorch's order
    assert len(list(net.parameters())) == 9
    assert len(list(net.children())) == 4
    assert len(list(net.modules())) == 8  # net, fc1, act, blocks (+2), heads (+1)
    assert set(net.state_dict()) == set(names) | {"counter"}
    out = net(dlkern.randn(3, 4))
    assert out.shape == (3, 2)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.eval()
    assert not net.training and not net.blocks[0].training
    net.train()
    assert net.heads["a"].training
    r = repr(net)
    assert "(fc1): Linear(in_features=4, out_features=6, bias=True)" in r and "(0): Linear" in r


def test_sequential_indexing_and_shared_params():
    a = nn.Linear(3, 3)
    seq = nn.Sequential(a, nn.Tanh(), a)
    assert seq[0] is a and len(seq) == 3 and isinstance(seq[1:], nn.Sequential)
    assert len(list(seq.parameters())) == 2  # shared module counted once
    x = dlkern.randn(2, 3)
    want = np.tanh(x.data @ a.weight.data.T + a.bias.data) @ a.weight.data.T + a.bias.data
    np.testing.assert_allclose(seq(x).data, want, rtol=1e-5, atol=1e-6)


def test_state_dict_roundtrip_and_errors():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
        assert not np.shares_memory(pa.data, pb.data)
    sd = a.state_dict()
    sd["extra.weight"] = dlkern.zeros(2)
    with pytest.raises(RuntimeError, match="unexpected keys: extra.weight"):
        b.load_state_dict(sd)
    b.load_state_dict(sd, strict=False)
    sd = a.state_dict()
    del sd["fc1.bias"]
    with pytest.raises(RuntimeError, match="missing keys: fc1.bias"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["fc1.weight"] = dlkern.zeros(5, 4)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc1.weight.*\(5, 4\).*\(6, 4\)"):
        b.load_state_dict(sd, strict=False)


def test_module_to_dtype_keeps_parameter_objects():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert all(p is q for p, q in zip(params, net.parameters()))
    assert net.counter.dtype == np.float64
    out = net(dlkern.randn(2, 4, dtype=dlkern.float64))
    assert out.dtype == np.float64
    net.to(dlkern.float32)
    assert net.fc1.weight.dtype == np.float32
    if dlkern.cuda.is_available():
        net.to("cuda")
        assert all(p.device == "cuda:0" for p in net.parameters())
        assert all(p is q for p, q in zip(params, net.parameters()))
    else:
        with pytest.raises(RuntimeError, match=r"device 'cuda' requested but"):
            net.to("cuda")


# ------------------------------------------------------------------ layers

def test_linear_forward_and_grad(rng):
    lin = nn.Linear(5, 3).double()
    x = t64(rng, 4, 5)
    want = x.data @ lin.weight.data.T + lin.bias.data
    np.testing.assert_allclose(lin(x).data, want, rtol=1e-12)
    gradcheck(lambda x, w, b: F.linear(x, w, b), [x, lin.weight, lin.bias], rng)
    x3 = t64(rng, 2, 3, 5)
    gradcheck(lambda x, w: F.linear(x, w), [x3, lin.weight], rng)
    nb = nn.Linear(5, 3, bias=False)
    assert nb.bias is None and len(list(nb.parameters())) == 1


def test_linear_errors():
    lin = nn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"Linear: input has shape \(3, 5\), expected \(\.\.\., 4\)"):
        lin(dlkern.ones(3, 5))
    with pytest.raises(TypeError, match="dtype"):
        lin(dlkern.ones(3, 4, dtype=dlkern.float64))


@pytest.mark.parametrize("cfg", [dict(stride=1, padding=0, dilation=1, groups=1),
                                 dict(stride=2, padding=1, dilation=1, groups=1),
                                 dict(stride=1, padding=2, dilation=2, groups=2)])
def test_conv2d(cfg, rng):
    conv = nn.Conv2d(4, 6, 3, **cfg).double()
    x = t64(rng, 2, 4, 7, 6)
    pair = lambda v: (v, v)
    want = R.conv2d(x.data, conv.weight.data, conv.bias.data, pair(cfg["stride"]), pair(cfg["padding"]),
                    pair(cfg["dilation"]), cfg["groups"])
    np.testing.assert_allclose(conv(x).data, want, rtol=1e-10, atol=1e-12)
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, **cfg), [x, conv.weight, conv.bias], rng)


def test_conv2d_errors():  # checked before any kernel runs
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv2d: input has shape \(1, 2, 8, 8\)"):
        conv(dlkern.ones(1, 2, 8, 8))
    with pytest.raises(ValueError, match="4-D|shape"):
        conv(dlkern.ones(2, 8, 8))
    with pytest.raises(TypeError, match="dtype"):
        F.conv2d(dlkern.ones(1, 3, 8, 8, dtype=dlkern.float64), conv.weight)
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)


def test_conv1d(rng):
    conv = nn.Conv1d(3, 4, 3, stride=2, padding=1).double()
    x = t64(rng, 2, 3, 9)
    want = R.conv2d(x.data[:, :, None, :], conv.weight.data[:, :, None, :], conv.bias.data, (1, 2), (0, 1),
                    (1, 1), 1)[:, :, 0, :]
    np.testing.assert_allclose(conv(x).data, want, rtol=1e-10, atol=1e-12)
    gradcheck(lambda x, w, b: F.conv1d(x, w, b, 2, 1), [x, conv.weight, conv.bias], rng)


def test_max_pool2d(rng):
    x = t64(rng, 2, 3, 6, 7)
    np.testing.assert_allclose(nn.MaxPool2d(2)(x).data, R.max_pool2d(x.data, 2, 2))
    np.testing.assert_allclose(nn.MaxPool2d(3, stride=2)(x).data, R.max_pool2d(x.data, 3, 2))
    gradcheck(lambda x: F.max_pool2d(x, 2), [x], rng)


def test_avg_pool2d(rng):
    x = t64(rng, 2, 3, 6, 7)
    np.testing.assert_allclose(nn.AvgPool2d(2)(x).data, R.avg_pool2d(x.data, 2, 2), rtol=1e-12)
    gradcheck(lambda x: F.avg_pool2d(x, 3, 2, 1), [x], rng)


def test_adaptive_avg_pool2d(rng):
    x = t64(rng, 2, 3, 6, 4)
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(1)(x).data, x.data.mean((2, 3), keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d((3, 2))(x).data, R.avg_pool2d(x.data, 2, 2), rtol=1e-12)
    gradcheck(lambda x: F.adaptive_avg_pool2d(x, (4, 3)), [x], rng)


def test_flatten(rng):
    x = t64(rng, 2, 3, 4)
    assert nn.Flatten()(x).shape == (2, 12)
    gradcheck(lambda x: nn.Flatten(0, 1)(x).exp(), [x], rng)


def test_layer_norm(rng):
    ln = nn.LayerNorm(5).double()
    ln.weight.data[...] = rng.uniform(0.5, 1.5, 5)
    ln.bias.data[...] = rng.uniform(-1, 1, 5)
    x = t64(rng, 3, 4, 5)
    np.testing.assert_allclose(ln(x).data, R.layer_norm(x.data, (5,), ln.weight.data, ln.bias.data, 1e-5), rtol=1e-9,
                               atol=1e-12)
    gradcheck(lambda x, w, b: F.layer_norm(x, (5,), w, b), [x, ln.weight, ln.bias], rng)
    gradcheck(lambda x: F.layer_norm(x, (4, 5)), [x], rng)


def test_rms_norm(rng):
    rn = nn.RMSNorm(6, eps=1e-6).double()
    rn.weight.data[...] = rng.uniform(0.5, 1.5, 6)
    x = t64(rng, 4, 6)
    want = x.data / np.sqrt((x.data ** 2).mean(-1, keepdims=True) + 1e-6) * rn.weight.data
    np.testing.assert_allclose(rn(x).data, want, rtol=1e-9)
    gradcheck(lambda x, w: F.rms_norm(x, 6, w, 1e-6), [x, rn.weight], rng)


def test_group_norm(rng):
    gn = nn.GroupNorm(2, 4).double()
    gn.weight.data[...] = rng.uniform(0.5, 1.5, 4)
    gn.bias.data[...] = rng.uniform(-1, 1, 4)
    x = t64(rng, 3, 4, 5)
    xg = x.data.reshape(3, 2, -1)
    norm = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    want = norm * gn.weight.data[None, :, None] + gn.bias.data[None, :, None]
    np.testing.assert_allclose(gn(x).data, want, rtol=1e-9, atol=1e-12)
    gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), [x, gn.weight, gn.bias], rng)


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2, 3)])
def test_batch_norm(shape, rng):
    bn = (nn.BatchNorm1d(3) if len(shape) == 2 else nn.BatchNorm2d(3)).double()
    bn.weight.data[...] = rng.uniform(0.5, 1.5, 3)
    bn.bias.data[...] = rng.uniform(-1, 1, 3)
    x = t64(rng, *shape)
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    mean, var = x.data.mean(axes), x.data.var(axes)
    count = x.data.size // 3
    want = (x.data - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5) * bn.weight.data.reshape(bshape) \
        + bn.bias.data.reshape(bshape)
    np.testing.assert_allclose(bn(x).data, want, rtol=1e-9, atol=1e-12)
    # running statistics as PyTorch: momentum 0.1, unbiased variance
    np.testing.assert_allclose(bn.running_mean.data, 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var.data, 0.9 + 0.1 * var * count / (count - 1), rtol=1e-12)
    assert int(bn.num_batches_tracked.item()) == 1
    bn.eval()
    rm, rv = bn.running_mean.data.copy(), bn.running_var.data.copy()
    want_eval = (x.data - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-5) * bn.weight.data.reshape(bshape) \
        + bn.bias.data.reshape(bshape)
    np.testing.assert_allclose(bn(x).data, want_eval, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(bn.running_mean.data, rm)
    bn.train()
    dummy_rm, dummy_rv = np.zeros(3), np.ones(3)
    gradcheck(lambda x, w, b: F.batch_norm(x, dummy_rm.copy(), dummy_rv.copy(), w, b, True), [x, bn.weight, bn.bias],
              rng)
    gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, False), [x, bn.weight, bn.bias], rng)
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def test_batch_norm_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2d: input has shape \(2, 3\)"):
        nn.BatchNorm2d(3)(dlkern.ones(2, 3))


def test_dropout(rng):
    dlkern.manual_seed(0)
    d = nn.Dropout(0.3)
    x = dlkern.ones(200, 100, dtype=dlkern.float64, requires_grad=True)
    y = d(x)
    kept = y.data != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y.data[kept], 1 / 0.7)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, np.where(kept, 1 / 0.7, 0))
    d.eval()
    assert d(x) is x
    assert (nn.Dropout(1.0)(x).data == 0).all()
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_alpha_dropout_keeps_moments():
    dlkern.manual_seed(1)
    d = nn.AlphaDropout(0.2)
    x = dlkern.randn(400, 500, dtype=dlkern.float64)
    y = d(x).data
    assert abs(y.mean()) < 0.02 and abs(y.std() - 1) < 0.02
    assert (d.eval()(x).data == x.data).all()
    xg = t64(np.random.default_rng(0), 3, 4)
    dlkern.manual_seed(2)
    y = F.alpha_dropout(xg, 0.5, True)
    y.sum().backward()
    dropped = np.isclose(xg.grad.data, 0)
    assert dropped.any() and (~dropped).any()


def test_embedding(rng):
    emb = nn.Embedding(6, 3, padding_idx=0).double()
    assert (emb.weight.data[0] == 0).all()
    idx = dlkern.tensor([[1, 2, 1], [0, 5, 2]])
    out = emb(idx)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx.data])
    w = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(dlkern.tensor(w))
    want = np.zeros((6, 3))
    np.add.at(want, idx.data, w)
    want[0] = 0
    np.testing.assert_allclose(emb.weight.grad.data, want)
    with pytest.raises(IndexError, match="out of range"):
        emb(dlkern.tensor([6]))
    with pytest.raises(TypeError, match="integers"):
        emb(dlkern.tensor([1.0]))


ACTIVATIONS = [(nn.ReLU(), lambda x: np.maximum(x, 0)), (nn.Tanh(), np.tanh),
               (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))), (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
               (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
               (nn.ELU(0.5), lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
               (nn.Softplus(beta=2.0), lambda x: np.log1p(np.exp(2 * x)) / 2),
               (nn.GELU(approximate="tanh"),
                lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
               (nn.SELU(), lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1))),
               (nn.GELU(), lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))))]


@pytest.mark.parametrize("module,ref", ACTIVATIONS, ids=[type(m).__name__ + str(i) for i, (m, _) in enumerate(ACTIVATIONS)])
def test_activation_modules(module, ref, rng):
    x = t64(rng, 4, 5, low=-3, high=3)
    x.data[np.abs(x.data) < 0.05] += 0.1
    np.testing.assert_allclose(module(x).data, ref(x.data), rtol=1e-12, atol=1e-14)
    gradcheck(module, [x], rng)


@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_modules(dim, rng):
    x = t64(rng, 3, 4, 5)
    e = np.exp(x.data - x.data.max(dim, keepdims=True))
    sm = e / e.sum(dim, keepdims=True)
    np.testing.assert_allclose(nn.Softmax(dim)(x).data, sm, rtol=1e-12)
    np.testing.assert_allclose(nn.LogSoftmax(dim=dim)(x).data, np.log(sm), rtol=1e-10, atol=1e-12)
    gradcheck(lambda x: F.softmax(x, dim), [x], rng)
    gradcheck(lambda x: x.log_softmax(dim), [x], rng)


def test_clip_grad_norm():
    p = nn.Parameter(dlkern.ones(4))
    p.grad = dlkern.full((4,), 3.0)
    total = nn.utils.clip_grad_norm_([p], 1.0)
    assert abs(total - 6.0) < 1e-6
    np.testing.assert_allclose(np.linalg.norm(p.grad.data), 1.0, rtol=1e-5)


def test_deepcopy_and_pickle_keep_working():
    import copy
    import pickle
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = dlkern.randn(2, 3)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert clone[0].weight.device is dlkern.cpu
        assert not np.shares_memory(clone[0].weight.data, net[0].weight.data)
        np.testing.assert_array_equal(clone(x).data, net(x).data)
        clone(x).sum().backward()
        assert clone[0].weight.grad is not None and net[0].weight.grad is None


def seeded(fn, seed=5):
    """fn with the same random mask on every call, so finite differences see one function."""
    def run(*args):
        dlkern.manual_seed(seed)
        return fn(*args)
    return run


def test_dropout_embedding_finite_differences(rng):
    x = t64(rng, 4, 6)
    gradcheck(seeded(lambda x: F.dropout(x, 0.4, True)), [x], rng)
    gradcheck(seeded(lambda x: F.alpha_dropout(x, 0.3, True)), [x], rng)
    w = t64(rng, 7, 3)
    idx = dlkern.tensor([[0, 3, 3], [6, 1, 0]])
    gradcheck(lambda w: F.embedding(idx, w), [w], rng)  # padding_idx zeroes a grad by design: tested above
