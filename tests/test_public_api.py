"""Public names that no other test exercised: one test each, checking values (so a
wrong implementation fails, not only a missing one).

Grad mode (enable_grad, set_grad_enabled), randint, the in-place Tensor methods,
expand_as, pow, amin, dim, long, nn.Identity, the Module registry methods,
LRScheduler.get_lr, the data helpers, and float64 gradient checks of the norms on each
SIMD path (the vectorised AVX2/AVX-512 code, not only the generic one).
"""

import gzip
import struct

import numpy as np
import pytest

import dlkern
from dlkern import data, nn, optim
from dlkern.nn import functional as F
from test_autograd_helpers import gradcheck


def _t(a, **kw):
    return dlkern.tensor(np.asarray(a, dtype=np.float64), **kw)


# ------------------------------------------------------------------------ grad mode
def test_enable_grad_inside_no_grad():
    x = _t([1.0, 2.0], requires_grad=True)
    with dlkern.no_grad():
        assert not (x * 2).requires_grad
        with dlkern.enable_grad():
            assert dlkern.is_grad_enabled()
            y = (x * x).sum()
        assert not dlkern.is_grad_enabled()
    assert y.requires_grad
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])

    @dlkern.enable_grad()
    def doubled(t):
        return t * 2

    with dlkern.no_grad():
        assert doubled(x).requires_grad
    assert dlkern.is_grad_enabled()


def test_set_grad_enabled():
    x = _t([3.0], requires_grad=True)
    with dlkern.set_grad_enabled(False):
        assert not dlkern.is_grad_enabled() and not (x * x).requires_grad
    assert dlkern.is_grad_enabled()
    with dlkern.set_grad_enabled(True):
        assert (x * x).requires_grad
    try:
        dlkern.set_grad_enabled(False)         # as a call: takes effect at once, as PyTorch
        assert not dlkern.is_grad_enabled() and not (x + 1).requires_grad
    finally:
        dlkern.set_grad_enabled(True)
    assert dlkern.is_grad_enabled() and (x + 1).requires_grad


# ------------------------------------------------------------------------ factories and Tensor methods
def test_randint():
    r = dlkern.randint(3, 7, (4000,))
    assert r.dtype == np.int64 and r.shape == (4000,) and not r.requires_grad
    assert set(np.unique(r.data).tolist()) == {3, 4, 5, 6}          # low inclusive, high exclusive
    assert abs(np.bincount(r.data)[3:].min() - 1000) < 150           # uniform
    z = dlkern.randint(5, size=(2, 3), dtype=dlkern.int32)          # one bound: [0, high)
    assert z.dtype == np.int32 and z.shape == (2, 3) and z.data.min() >= 0 and z.data.max() < 5
    dlkern.manual_seed(11)
    a = dlkern.randint(0, 1000, (8,)).data
    dlkern.manual_seed(11)
    np.testing.assert_array_equal(dlkern.randint(0, 1000, (8,)).data, a)
    g = np.random.default_rng(4)
    np.testing.assert_array_equal(dlkern.randint(0, 1000, (8,), generator=g).data,
                                  np.random.default_rng(4).integers(0, 1000, (8,)))


def test_inplace_methods():
    a = _t([2.0, 4.0, 6.0])
    data = a.data
    assert a.mul_(3) is a and a.data is data
    np.testing.assert_array_equal(a.data, [6.0, 12.0, 18.0])
    assert a.sub_(_t([1.0, 2.0, 3.0])) is a
    np.testing.assert_array_equal(a.data, [5.0, 10.0, 15.0])
    a.sub_(1.0, alpha=2)
    np.testing.assert_array_equal(a.data, [3.0, 8.0, 13.0])
    assert a.div_(_t([3.0, 2.0, 13.0])) is a
    np.testing.assert_array_equal(a.data, [1.0, 4.0, 1.0])
    a.div_(2)
    np.testing.assert_array_equal(a.data, [0.5, 2.0, 0.5])
    assert a.zero_() is a and a.data is data
    np.testing.assert_array_equal(a.data, [0.0, 0.0, 0.0])
    leaf = _t([1.0], requires_grad=True)
    for op in (lambda t: t.zero_(), lambda t: t.mul_(2), lambda t: t.sub_(1), lambda t: t.div_(2)):
        with pytest.raises(RuntimeError, match="in-place"):
            op(leaf)
    with dlkern.no_grad():
        leaf.mul_(5)
    np.testing.assert_array_equal(leaf.data, [5.0])


def test_detach_():
    x = _t([1.0, 2.0], requires_grad=True)
    y = x * 3
    assert y.grad_fn is not None
    assert y.detach_() is y
    assert y.grad_fn is None and not y.requires_grad
    np.testing.assert_array_equal(y.data, [3.0, 6.0])
    z = (y * x).sum()                    # y is a constant now: dz/dx = y
    z.backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 6.0])


def test_expand_as():
    x = _t([[1.0], [2.0]], requires_grad=True)
    e = x.expand_as(dlkern.zeros(2, 3))
    assert e.shape == (2, 3)
    np.testing.assert_array_equal(e.data, [[1, 1, 1], [2, 2, 2]])
    (e * _t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[6.0], [15.0]])      # summed over the expanded axis


def test_pow():
    x = _t([0.5, 2.0, 3.0], requires_grad=True)
    y = x.pow(3)
    np.testing.assert_allclose(y.data, [0.125, 8.0, 27.0], rtol=1e-15)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, 3 * np.array([0.5, 2.0, 3.0]) ** 2, rtol=1e-15)
    e = _t([2.0, 0.5, -1.0])
    np.testing.assert_allclose(x.pow(e).data, [0.25, 2 ** 0.5, 1 / 3], rtol=1e-15)
    np.testing.assert_allclose((2.0 ** _t([3.0, -1.0])).data, [8.0, 0.5], rtol=1e-15)


def test_amin():
    a = np.array([[3.0, -1.0, 7.0], [0.5, 9.0, -4.0]])
    x = _t(a, requires_grad=True)
    assert float(x.amin().data) == -4.0
    np.testing.assert_array_equal(x.amin(dim=1).data, [-1.0, -4.0])
    np.testing.assert_array_equal(x.amin(dim=0, keepdim=True).data, [[0.5, -1.0, -4.0]])
    np.testing.assert_array_equal(dlkern.amin(x, 1).data, [-1.0, -4.0])
    x.amin(dim=1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 1, 0], [0, 0, 1]])


def test_dim_and_long():
    assert _t(np.zeros((2, 3, 4))).dim() == 3 and _t(5.0).dim() == 0
    x = _t([1.7, -2.2, 3.0])
    n = x.long()
    assert n.dtype == np.int64 and dlkern.long == np.int64
    np.testing.assert_array_equal(n.data, [1, -2, 3])                  # truncation toward zero


# ------------------------------------------------------------------------ nn.Module registry
def test_identity():
    x = _t([1.0, -2.0], requires_grad=True)
    ident = nn.Identity()
    y = ident(x)
    np.testing.assert_array_equal(y.data, [1.0, -2.0])
    (y * _t([3.0, 4.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])
    assert list(ident.parameters()) == []


def _tree():
    root = nn.Module()
    root.add_module("body", nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    root.add_module("head", nn.Linear(3, 1))
    root.add_module("norm", nn.BatchNorm1d(3))
    return root


def test_add_module_and_named_modules():
    root = _tree()
    names = [name for name, _ in root.named_modules()]
    assert names == ["", "body", "body.0", "body.1", "head", "norm"]
    assert dict(root.named_modules())["body.0"] is root.body[0]
    shared = nn.Linear(1, 1)
    root.add_module("again", shared)
    root.add_module("alias", shared)
    assert [n for n, m in root.named_modules() if m is shared] == ["again"]       # each module once
    assert [n for n, _ in root.named_modules(prefix="m")][:2] == ["m", "m.body"]
    with pytest.raises(TypeError, match="not a Module"):
        root.add_module("bad", 3)
    assert nn.Module.register_module is nn.Module.add_module


def test_buffers():
    root = _tree()
    names = [n for n, _ in root.named_buffers()]
    assert names == ["norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]
    bufs = list(root.buffers())
    assert len(bufs) == 3 and bufs[0] is root.norm.running_mean
    assert list(root.buffers(recurse=False)) == []
    root.register_buffer("scale", dlkern.ones(2))
    assert list(root.buffers(recurse=False))[0] is root.scale
    assert "scale" in root.state_dict()


def test_register_parameter():
    m = nn.Module()
    p = nn.Parameter(np.ones(3))
    m.register_parameter("w", p)
    assert m.w is p and dict(m.named_parameters()) == {"w": p}
    m.register_parameter("b", None)          # a declared but absent parameter
    assert m.b is None and list(m.parameters()) == [p] and "b" not in m.state_dict()
    with pytest.raises(TypeError, match="must be a Parameter"):
        m.register_parameter("x", dlkern.ones(2))


# ------------------------------------------------------------------------ LRScheduler.get_lr
def _opt(lr=1.0):
    return optim.SGD([nn.Parameter(np.zeros(1))], lr=lr)


def test_lr_scheduler_get_lr():
    with pytest.raises(NotImplementedError):
        optim.lr_scheduler.LRScheduler(_opt())                  # the base class has no rule

    class Halving(optim.lr_scheduler.LRScheduler):
        def get_lr(self):
            return [base * 0.5 ** self.last_epoch for base in self.base_lrs]

    opt = _opt(0.8)
    sched = Halving(opt)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs == [0.8, 0.4, 0.2, 0.1] and sched.get_last_lr() == [0.05]
    # the built-in chainable get_lr agrees with its closed form along the schedule
    opt = _opt(1.0)
    step = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        assert step._get_closed_form_lr() == [opt.param_groups[0]["lr"]]
        step.step()
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


# ------------------------------------------------------------------------ data helpers
def test_default_collate():
    items = [(np.array([1.0, 2.0]), 3), (np.array([4.0, 5.0]), 6)]
    x, y = data.default_collate(items)
    np.testing.assert_array_equal(x.data, [[1.0, 2.0], [4.0, 5.0]])
    np.testing.assert_array_equal(y.data, [3, 6])
    d = data.default_collate([{"a": 1.0, "b": np.zeros(2)}, {"a": 2.0, "b": np.ones(2)}])
    np.testing.assert_array_equal(d["a"].data, [1.0, 2.0])
    np.testing.assert_array_equal(d["b"].data, [[0, 0], [1, 1]])
    lst = data.default_collate([[1, 2], [3, 4]])
    assert isinstance(lst, list) and lst[0].data.tolist() == [1, 3]


def test_train_test_split_and_normalize():
    tr, te = data.train_test_split(50, test_fraction=0.2, seed=3)
    assert len(te) == 10 and len(tr) == 40
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(50))  # a partition
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(te) > 0)
    tr2, te2 = data.train_test_split(50, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(te, te2)
    assert not np.array_equal(te, data.train_test_split(50, test_fraction=0.2, seed=4)[1])
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(10, test_fraction=1.0)
    imgs = np.array([[0.0, 0.5, 1.0]])
    out = data.normalize(imgs, 0.5, 0.25)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[-2.0, 0.0, 2.0]])


def test_random_split_and_subset():
    ds = data.TensorDataset(np.arange(10.0)[:, None], np.arange(10))
    a, b = data.random_split(ds, [7, 3], generator=np.random.default_rng(0))
    assert len(a) == 7 and len(b) == 3
    labels = sorted([int(a[i][1]) for i in range(7)] + [int(b[i][1]) for i in range(3)])
    assert labels == list(range(10))
    sizes = [len(s) for s in data.random_split(ds, [0.25, 0.25, 0.5])]
    assert sizes == [3, 2, 5]            # floors 2, 2, 5; the remainder goes round-robin from the first
    sub = data.Subset(ds, [4, 1])
    assert len(sub) == 2 and int(sub[0][1]) == 4 and float(sub[1][0][0]) == 1.0
    with pytest.raises(ValueError, match="summing to 10"):
        data.random_split(ds, [5, 6])


def _idx_bytes(arr):
    """The IDX format: two zero bytes, type code 0x08 (ubyte), ndim, big-endian dims, data."""
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def test_load_idx(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "x-idx3-ubyte").write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(data.load_idx(tmp_path / "x-idx3-ubyte"), arr)
    with gzip.open(tmp_path / "y-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(np.array([7, 1, 9], np.uint8)))
    np.testing.assert_array_equal(data.load_idx(tmp_path / "y-idx1-ubyte.gz"), [7, 1, 9])


def test_char_tokenizer_roundtrip():
    tok = data.CharTokenizer.from_text("hello world")
    assert tok.vocab_size == len(set("hello world")) == len(tok)
    ids = tok.encode("hold")
    assert tok.decode(ids) == "hold" and len(set(ids.tolist())) == 4
    assert tok.encode("lol").tolist()[0] == tok.encode("lol").tolist()[2]


# ------------------------------------------------------------------------ norms: float64 gradients per ISA
def _rng_t(rng, *shape):
    return dlkern.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=True)


# The normalised length (37, 2 x 37) is not a multiple of any vector width, so the
# SIMD body and its tail both run; the isa fixture selects avx512/avx2/generic in turn.
_NORMS = {
    "layer_norm": lambda r: (lambda x, w, b: F.layer_norm(x, (37,), w, b), (_rng_t(r, 3, 37), _rng_t(r, 37),
                                                                           _rng_t(r, 37))),
    "layer_norm_2d": lambda r: (lambda x, w, b: F.layer_norm(x, (2, 37), w, b),
                                (_rng_t(r, 2, 2, 37), _rng_t(r, 2, 37), _rng_t(r, 2, 37))),
    "rms_norm": lambda r: (lambda x, w: F.rms_norm(x, (37,), w, eps=1e-6), (_rng_t(r, 3, 37), _rng_t(r, 37))),
    "group_norm": lambda r: (lambda x, w, b: F.group_norm(x, 2, w, b), (_rng_t(r, 2, 4, 19), _rng_t(r, 4),
                                                                       _rng_t(r, 4))),
    "batch_norm_train": lambda r: (lambda x, w, b: F.batch_norm(x, np.zeros(3), np.ones(3), w, b, training=True),
                                   (_rng_t(r, 4, 3, 11), _rng_t(r, 3), _rng_t(r, 3))),
    "batch_norm_eval": lambda r: (lambda x, w, b: F.batch_norm(x, np.full(3, 0.2), np.full(3, 1.7), w, b),
                                  (_rng_t(r, 4, 3, 11), _rng_t(r, 3), _rng_t(r, 3))),
}


@pytest.mark.parametrize("norm", sorted(_NORMS))
def test_norm_float64_gradients(norm, isa):
    fn, inputs = _NORMS[norm](np.random.default_rng(9))
    assert dlkern.get_isa() == isa
    gradcheck(fn, inputs, rtol=1e-6, atol=1e-8)

