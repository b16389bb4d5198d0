"""nn.RNN (tanh/relu), nn.LSTM (proj_size), nn.GRU, the cells, and packed sequences.

Every configuration is checked against an independent float64 NumPy reference written
here (the textbook cell equations, one sequence and one step at a time, so packing,
directions and layer stacking are re-derived), its gradients by central finite
differences in float64, and, with torch installed, against PyTorch with the same
state_dict (outputs, h_n/c_n and the gradients of every parameter, the input and
h0/c0). Errors follow PyTorch's types. The fused cell kernels
(dlkern.ops.lstm_cell_forward & co.) are checked against the same reference cells.
Packed sequences, the CUDA twin and the MAC count: test_rnn_packed.py."""

import math

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from helpers import numeric_grad

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _torch():
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------- reference (float64)

def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_cell(mode, x, h, c, w):
    """One step for one sequence: x (in,), h (P,), c (H,) -> (h', c')."""
    w_ih, w_hh, b_ih, b_hh, w_hr = w
    gi = w_ih @ x + (0 if b_ih is None else b_ih)
    gh = w_hh @ h + (0 if b_hh is None else b_hh)
    if mode == "RNN_TANH":
        return np.tanh(gi + gh), None
    if mode == "RNN_RELU":
        return np.maximum(gi + gh, 0.0), None
    if mode == "LSTM":
        i, f, g, o = np.split(gi + gh, 4)
        c2 = sig(f) * c + sig(i) * np.tanh(g)
        h2 = sig(o) * np.tanh(c2)
        return (h2 if w_hr is None else w_hr @ h2), c2
    (ri, zi, ni), (rh, zh, nh) = np.split(gi, 3), np.split(gh, 3)
    r, z = sig(ri + rh), sig(zi + zh)
    n = np.tanh(ni + r * nh)
    return (1 - z) * n + z * h, None


def ref_weights(params, layer, d):
    sfx = f"_l{layer}" + ("_reverse" if d else "")
    return tuple(params.get(n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"))


def ref_rnn(mode, params, x, h0, c0, lengths, num_layers, directions):
    """x (T, B, in); h0 (L*D, B, P); c0 (L*D, B, H) or None; sequence b has lengths[b]
    steps. Returns output (T, B, D*P) (zero past each length), h_n, c_n (or None)."""
    T, B = x.shape[:2]
    layer_in, h_n, c_n = x, [], []
    for layer in range(num_layers):
        outs = []
        for d in range(directions):
            k = layer * directions + d
            w = ref_weights(params, layer, d)
            out = np.zeros((T, B, h0.shape[2]))
            for b in range(B):
                h, c = h0[k, b], (None if c0 is None else c0[k, b])
                steps = range(lengths[b]) if d == 0 else reversed(range(lengths[b]))
                for t in steps:
                    h, c = ref_cell(mode, layer_in[t, b], h, c, w)
                    out[t, b] = h
                h_n.append(h)
                if c0 is not None:
                    c_n.append(c)
            outs.append(out)
        layer_in = np.concatenate(outs, axis=-1)
    shape = (num_layers * directions, B)
    h_n = np.array(h_n).reshape(shape + h0.shape[2:])
    c_n = None if c0 is None else np.array(c_n).reshape(shape + c0.shape[2:])
    return layer_in, h_n, c_n


# ----------------------------------------------------------------------------- helpers

MODULES = {"RNN_TANH": lambda *a, **k: nn.RNN(*a, **k), "RNN_RELU": lambda *a, **k: nn.RNN(*a, nonlinearity="relu", **k),
           "LSTM": nn.LSTM, "GRU": nn.GRU}

CONFIGS = [
    ("LSTM", {}), ("GRU", {}), ("RNN_TANH", {}), ("RNN_RELU", {}),
    ("LSTM", {"num_layers": 2, "bidirectional": True}), ("GRU", {"num_layers": 2, "bidirectional": True}),
    ("RNN_TANH", {"num_layers": 2, "bidirectional": True}), ("RNN_RELU", {"num_layers": 3}),
    ("LSTM", {"proj_size": 2, "num_layers": 2, "bidirectional": True}), ("LSTM", {"proj_size": 3}),
    ("LSTM", {"bias": False, "batch_first": True}), ("GRU", {"bias": False, "num_layers": 2}),
    ("GRU", {"batch_first": True, "bidirectional": True}), ("RNN_TANH", {"batch_first": True}),
]
IDS = [m + "-" + "-".join(f"{k}={v}" for k, v in kw.items()) for m, kw in CONFIGS]


def make(mode, input_size, hidden, dtype=np.float64, seed=0, **kw):
    m = MODULES[mode](input_size, hidden, dtype=dtype, **kw)
    rng = np.random.default_rng(seed)
    # weights larger than PyTorch's init so every gate saturates somewhere and the
    # nonlinearities' curvature shows in the gradients
    m.load_state_dict({k: rng.uniform(-0.8, 0.8, v.shape).astype(dtype) for k, v in m.state_dict().items()})
    return m


def params64(m):
    return {k: np.asarray(v, dtype=np.float64) for k, v in m.state_dict().items()}


def states(m, batch, rng, dtype):
    L = m.num_layers * (2 if m.bidirectional else 1)
    P = m.proj_size or m.hidden_size
    h0 = rng.uniform(-1, 1, (L, batch, P)).astype(dtype)
    c0 = rng.uniform(-1, 1, (L, batch, m.hidden_size)).astype(dtype) if m.mode == "LSTM" else None
    return h0, c0


def run(m, x, h0, c0, grad=False, **tensor_kw):
    xt = dlkern.tensor(x, requires_grad=grad, **tensor_kw)
    ht = dlkern.tensor(h0, requires_grad=grad, **tensor_kw)
    ct = None if c0 is None else dlkern.tensor(c0, requires_grad=grad, **tensor_kw)
    out, hn = m(xt, hn_arg(ht, ct))
    return xt, ht, ct, out, hn


def hn_arg(h, c):
    return h if c is None else (h, c)


def split_state(hn):
    return (hn[0], hn[1]) if isinstance(hn, tuple) else (hn, None)


def close(got, want, dtype):
    got = got.detach().numpy() if hasattr(got, "detach") else np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=TOL[dtype] * 10, atol=TOL[dtype])


# ----------------------------------------------------------------------------- against the reference

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode,kw", CONFIGS, ids=IDS)
def test_modules_match_the_reference(mode, kw, dtype):
    m = make(mode, 3, 4, dtype, **kw)
    rng = np.random.default_rng(1)
    T, B = 5, 3
    x = rng.uniform(-1, 1, (T, B, 3)).astype(dtype)
    h0, c0 = states(m, B, rng, dtype)
    xin = np.ascontiguousarray(x.transpose(1, 0, 2)) if m.batch_first else x
    _, _, _, out, hn = run(m, xin, h0, c0)
    want, h_want, c_want = ref_rnn(m.mode, params64(m), x.astype(np.float64), h0.astype(np.float64),
                                   None if c0 is None else c0.astype(np.float64), [T] * B, m.num_layers,
                                   2 if m.bidirectional else 1)
    close(out, want.transpose(1, 0, 2) if m.batch_first else want, dtype)
    h, c = split_state(hn)
    close(h, h_want, dtype)
    if c_want is not None:
        close(c, c_want, dtype)
    assert out.dtype == dtype and h.dtype == dtype


@pytest.mark.parametrize("mode,kw", CONFIGS[:9], ids=IDS[:9])
def test_default_state_is_zeros_and_unbatched_input(mode, kw):
    m = make(mode, 3, 4, **kw)
    x = np.random.default_rng(2).uniform(-1, 1, (4, 3))
    out, hn = m(dlkern.tensor(x))
    L = m.num_layers * (2 if m.bidirectional else 1)
    P = m.proj_size or m.hidden_size
    zeros = np.zeros((L, 1, P)), (np.zeros((L, 1, m.hidden_size)) if m.mode == "LSTM" else None)
    want, h_want, c_want = ref_rnn(m.mode, params64(m), x[:, None], zeros[0], zeros[1], [4], m.num_layers,
                                   2 if m.bidirectional else 1)
    close(out, want[:, 0], np.float64)
    h, c = split_state(hn)
    close(h, h_want[:, 0], np.float64)
    if c is not None:
        close(c, c_want[:, 0], np.float64)


# ----------------------------------------------------------------------------- finite differences

FD_CONFIGS = [("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 1}), ("GRU", {"bidirectional": True}),
              ("RNN_TANH", {"num_layers": 2}), ("RNN_RELU", {}), ("LSTM", {"bias": False})]


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("mode,kw", FD_CONFIGS, ids=[m + str(i) for i, (m, _) in enumerate(FD_CONFIGS)])
def test_gradients_by_finite_differences(mode, kw, packed):
    m = make(mode, 2, 2, seed=4, **kw)
    rng = np.random.default_rng(5)
    T, lengths = 3, [2, 3]
    x = rng.uniform(-1, 1, (T, 2, 2))
    h0, c0 = states(m, 2, rng, np.float64)

    def forward():
        xt = dlkern.tensor(x, requires_grad=True)
        ht = dlkern.tensor(h0, requires_grad=True)
        ct = None if c0 is None else dlkern.tensor(c0, requires_grad=True)
        inp = pack_padded_sequence(xt, lengths, enforce_sorted=False) if packed else xt
        out, hn = m(inp, hn_arg(ht, ct))
        if packed:
            out = pad_packed_sequence(out)[0]
        h, c = split_state(hn)
        loss = (out * w_out).sum() + (h * w_h).sum() + (0 if c is None else (c * w_c).sum())
        return xt, ht, ct, loss

    w_out = dlkern.tensor(rng.standard_normal((T, 2, (2 if m.bidirectional else 1) * (m.proj_size or 2))))
    w_h = dlkern.tensor(rng.standard_normal(h0.shape))
    w_c = None if c0 is None else dlkern.tensor(rng.standard_normal(c0.shape))
    m.zero_grad()
    xt, ht, ct, loss = forward()
    loss.backward()
    value = lambda: float(forward()[3].item())  # noqa: E731
    for arr, t in [(x, xt), (h0, ht)] + ([(c0, ct)] if c0 is not None else []):
        np.testing.assert_allclose(t.grad.numpy(), numeric_grad(value, arr), rtol=1e-6, atol=1e-8)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), numeric_grad(value, p.data), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


# ----------------------------------------------------------------------------- PyTorch parity

def torch_twin(torch, m):
    kind = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(m.mode, m.mode)
    kw = dict(num_layers=m.num_layers, bias=m.bias, batch_first=m.batch_first, dropout=m.dropout,
              bidirectional=m.bidirectional)
    if m.mode == "LSTM":
        kw["proj_size"] = m.proj_size
    if m.mode == "RNN_RELU":
        kw["nonlinearity"] = "relu"
    t = getattr(torch.nn, kind)(m.input_size, m.hidden_size, **kw).double()
    t.load_state_dict({k: torch.tensor(np.asarray(v, np.float64)) for k, v in m.state_dict().items()})
    return t


def _compare_grads(torch_pairs, dtype=np.float64):
    for name, mine, theirs in torch_pairs:
        assert mine is not None, name
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


@pytest.mark.filterwarnings("ignore:dropout option adds dropout")
@pytest.mark.parametrize("case", ["plain", "unbatched", "packed", "dropout_eval", "no_h0"])
@pytest.mark.parametrize("mode,kw", CONFIGS, ids=IDS)
def test_matches_pytorch(mode, kw, case):
    torch = _torch()
    kw = dict(kw)
    if case == "dropout_eval":
        kw["dropout"] = 0.5
    m = make(mode, 3, 4, **kw)
    if case == "dropout_eval":
        m.eval()
    t = torch_twin(torch, m)
    t.train(m.training)
    rng = np.random.default_rng(6)
    T, B = 5, 3
    lengths = [3, 5, 2]
    shape = (T, 3) if case == "unbatched" else ((B, T, 3) if m.batch_first else (T, B, 3))
    x = rng.uniform(-1, 1, shape)
    h0, c0 = states(m, 1 if case == "unbatched" else B, rng, np.float64)
    if case == "unbatched":
        h0, c0 = h0[:, 0], (None if c0 is None else c0[:, 0])
    xt, tx = dlkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ht, th = dlkern.tensor(h0, requires_grad=True), torch.tensor(h0, requires_grad=True)
    ct = None if c0 is None else dlkern.tensor(c0, requires_grad=True)
    tc = None if c0 is None else torch.tensor(c0, requires_grad=True)
    if case == "packed":
        inp = pack_padded_sequence(xt, lengths, batch_first=m.batch_first, enforce_sorted=False)
        tinp = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=m.batch_first,
                                                       enforce_sorted=False)
    else:
        inp, tinp = xt, tx
    if case == "no_h0":
        out, hn = m(inp)
        tout, thn = t(tinp)
    else:
        out, hn = m(inp, hn_arg(ht, ct))
        tout, thn = t(tinp, hn_arg(th, tc))
    if case == "packed":
        np.testing.assert_allclose(out.data.detach().numpy(), tout.data.detach().numpy(), rtol=1e-10, atol=1e-12)
        assert out.batch_sizes.tolist() == tout.batch_sizes.tolist()
        assert out.sorted_indices.tolist() == tout.sorted_indices.tolist()
        assert out.unsorted_indices.tolist() == tout.unsorted_indices.tolist()
        out = pad_packed_sequence(out, batch_first=m.batch_first)[0]
        tout = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=m.batch_first)[0]
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    h, c = split_state(hn)
    t_h, t_c = split_state(thn)
    assert tuple(h.shape) == tuple(t_h.shape)
    np.testing.assert_allclose(h.detach().numpy(), t_h.detach().numpy(), rtol=1e-10, atol=1e-12)
    if c is not None:
        np.testing.assert_allclose(c.detach().numpy(), t_c.detach().numpy(), rtol=1e-10, atol=1e-12)
    wo = rng.standard_normal(tuple(out.shape))
    wh = rng.standard_normal(tuple(h.shape))
    loss = (out * dlkern.tensor(wo)).sum() + (h * dlkern.tensor(wh)).sum()
    tloss = (tout * torch.tensor(wo)).sum() + (t_h * torch.tensor(wh)).sum()
    if c is not None:
        loss = loss + (c * c).sum()
        tloss = tloss + (t_c * t_c).sum()
    loss.backward()
    tloss.backward()
    tp = dict(t.named_parameters())
    pairs = [(n, p.grad, tp[n].grad) for n, p in m.named_parameters()] + [("input", xt.grad, tx.grad)]
    if case != "no_h0":
        pairs.append(("h0", ht.grad, th.grad))
        if c0 is not None:
            pairs.append(("c0", ct.grad, tc.grad))
    _compare_grads(pairs)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("mode,kw", CONFIGS, ids=IDS)
def test_pytorch_state_dict_loads(mode, kw):
    torch = _torch()
    kind = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
    extra = {"nonlinearity": "relu"} if mode == "RNN_RELU" else {}
    t = getattr(torch.nn, kind)(3, 4, **kw, **extra)
    m = MODULES[mode](3, 4, **kw)
    assert list(m.state_dict()) == list(t.state_dict())
    assert all(tuple(v.shape) == tuple(t.state_dict()[k].shape) for k, v in m.state_dict().items())
    m.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    x = np.random.default_rng(7).standard_normal((4, 2, 3)).astype(np.float32)
    if m.batch_first:
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
    out, _ = m(dlkern.tensor(x))
    with torch.no_grad():
        tout, _ = t(torch.tensor(x))
    np.testing.assert_allclose(out.detach().numpy(), tout.numpy(), rtol=1e-5, atol=1e-6)
    assert repr(m).replace("RNN", "X") == repr(t).replace("RNN", "X")


# ----------------------------------------------------------------------------- cells

CELLS = [("RNN_TANH", nn.RNNCell, {}), ("RNN_RELU", nn.RNNCell, {"nonlinearity": "relu"}), ("LSTM", nn.LSTMCell, {}),
         ("GRU", nn.GRUCell, {}), ("GRU", nn.GRUCell, {"bias": False}), ("LSTM", nn.LSTMCell, {"bias": False})]
CELL_IDS = [f"{c.__name__}{i}" for i, (_, c, _) in enumerate(CELLS)]


def make_cell(cls, kw, dtype=np.float64, seed=8):
    m = cls(3, 4, dtype=dtype, **kw)
    rng = np.random.default_rng(seed)
    m.load_state_dict({k: rng.uniform(-0.8, 0.8, v.shape).astype(dtype) for k, v in m.state_dict().items()})
    return m


def cell_weights(m):
    p = {k: np.asarray(v, np.float64) for k, v in m.state_dict().items()}
    return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh"), None


@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("mode,cls,kw", CELLS, ids=CELL_IDS)
def test_cells_match_the_reference_and_finite_differences(mode, cls, kw, unbatched):
    m = make_cell(cls, kw)
    rng = np.random.default_rng(9)
    B = 3
    x, h, c = rng.uniform(-1, 1, (B, 3)), rng.uniform(-1, 1, (B, 4)), rng.uniform(-1, 1, (B, 4))
    lstm = mode == "LSTM"
    want = [ref_cell(mode, x[b], h[b], c[b] if lstm else None, cell_weights(m)) for b in range(B)]
    if unbatched:
        x, h, c, want = x[0], h[0], c[0], want[:1]
    xt, ht, ct = (dlkern.tensor(a, requires_grad=True) for a in (x, h, c))
    got = m(xt, (ht, ct) if lstm else ht)
    h2 = got[0] if lstm else got
    close(h2, np.array([w[0] for w in want]).reshape(h2.shape), np.float64)
    if lstm:
        close(got[1], np.array([w[1] for w in want]).reshape(h2.shape), np.float64)
    wv = rng.standard_normal(tuple(h2.shape))

    def loss_of(xa, ha, ca):
        out = m(dlkern.tensor(xa), (dlkern.tensor(ha), dlkern.tensor(ca)) if lstm else dlkern.tensor(ha))
        return (out[0] * dlkern.tensor(wv)).sum() + (out[1] * out[1]).sum() if lstm else (out * dlkern.tensor(wv)).sum()

    m.zero_grad()
    ((h2 * dlkern.tensor(wv)).sum() + ((got[1] * got[1]).sum() if lstm else 0)).backward()
    value = lambda: float(loss_of(x, h, c).item())  # noqa: E731
    x, h, c = (np.ascontiguousarray(a) for a in (x, h, c))
    for arr, t in [(x, xt), (h, ht)] + ([(c, ct)] if lstm else []):
        np.testing.assert_allclose(t.grad.numpy(), numeric_grad(value, arr), rtol=1e-6, atol=1e-8)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), numeric_grad(value, p.data), rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("mode,cls,kw", CELLS, ids=CELL_IDS)
def test_cells_match_pytorch(mode, cls, kw, with_state):
    torch = _torch()
    m = make_cell(cls, kw)
    t = getattr(torch.nn, cls.__name__)(3, 4, **kw).double()
    assert list(t.state_dict()) == list(m.state_dict())
    t.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in m.state_dict().items()})
    rng = np.random.default_rng(10)
    x, h, c = rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (2, 4)), rng.uniform(-1, 1, (2, 4))
    lstm = mode == "LSTM"
    mine = [dlkern.tensor(a, requires_grad=True) for a in (x, h, c)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, h, c)]
    state = (lambda s: (s[1], s[2]) if lstm else s[1]) if with_state else (lambda s: None)
    out, tout = m(mine[0], state(mine)), t(theirs[0], state(theirs))
    outs, touts = (out, tout) if lstm else ((out,), (tout,))
    loss = sum(((o * o * (i + 1)).sum() for i, o in enumerate(outs)), dlkern.tensor(0.0, dtype="float64"))
    tloss = sum((o * o * (i + 1)).sum() for i, o in enumerate(touts))
    for o, to in zip(outs, touts):
        np.testing.assert_allclose(o.detach().numpy(), to.detach().numpy(), rtol=1e-10, atol=1e-12)
    loss.backward()
    tloss.backward()
    tp = dict(t.named_parameters())
    pairs = [(n, p.grad, tp[n].grad) for n, p in m.named_parameters()] + [("input", mine[0].grad, theirs[0].grad)]
    if with_state:
        pairs += [("h", mine[1].grad, theirs[1].grad)] + ([("c", mine[2].grad, theirs[2].grad)] if lstm else [])
    _compare_grads(pairs)


# ----------------------------------------------------------------------------- the fused cell kernels

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_kernels_match_the_reference(dtype):
    rng = np.random.default_rng(11)
    B, H = 5, 7
    ops = dlkern.ops
    gates, c_prev = rng.uniform(-3, 3, (B, 4 * H)).astype(dtype), rng.uniform(-1, 1, (B, H)).astype(dtype)
    h, c, act = ops.lstm_cell_forward(gates, c_prev)
    g64, c64 = gates.astype(np.float64), c_prev.astype(np.float64)
    i, f, g, o = np.split(g64, 4, axis=1)
    act_want = np.concatenate([sig(i), sig(f), np.tanh(g), sig(o)], axis=1)
    c_want = sig(f) * c64 + sig(i) * np.tanh(g)
    tol = dict(rtol=TOL[dtype] * 10, atol=TOL[dtype])
    for got, want in ((act, act_want), (c, c_want), (h, sig(o) * np.tanh(c_want))):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **tol)
    dh, dc = rng.standard_normal((B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype)
    dgates, dc_prev = ops.lstm_cell_backward(dh, dc, act, c_prev, c)
    # chain rule by hand: c = f c_prev + i g, h = o tanh(c)
    tc = np.tanh(c_want)
    dct = dc + dh * sig(o) * (1 - tc ** 2)
    want = np.concatenate([dct * np.tanh(g) * sig(i) * (1 - sig(i)), dct * c64 * sig(f) * (1 - sig(f)),
                           dct * sig(i) * (1 - np.tanh(g) ** 2), dh * tc * sig(o) * (1 - sig(o))], axis=1)
    np.testing.assert_allclose(dgates, want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=TOL[dtype] * 10)
    np.testing.assert_allclose(dc_prev, dct * sig(f), rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=TOL[dtype] * 10)

    gi, gh, hp = (rng.uniform(-2, 2, s).astype(dtype) for s in ((B, 3 * H), (B, 3 * H), (B, H)))
    h2, saved = ops.gru_cell_forward(gi, gh, hp)
    (ri, zi, ni), (rh, zh, nh) = np.split(gi.astype(np.float64), 3, 1), np.split(gh.astype(np.float64), 3, 1)
    r, z = sig(ri + rh), sig(zi + zh)
    n = np.tanh(ni + r * nh)
    np.testing.assert_allclose(h2, (1 - z) * n + z * hp, **tol)
    np.testing.assert_allclose(saved, np.concatenate([r, z, n, nh], axis=1), **tol)
    dgi, dgh, dhp = ops.gru_cell_backward(dh, saved, hp)
    dn = dh * (1 - z) * (1 - n ** 2)
    dr = dn * nh * r * (1 - r)
    dz = dh * (hp - n) * z * (1 - z)
    loose = dict(rtol=1e-4 if dtype == np.float32 else 1e-12, atol=TOL[dtype] * 10)
    np.testing.assert_allclose(dgi, np.concatenate([dr, dz, dn], 1), **loose)
    np.testing.assert_allclose(dgh, np.concatenate([dr, dz, dn * r], 1), **loose)
    np.testing.assert_allclose(dhp, dh * z, **loose)


# ----------------------------------------------------------------------------- dropout, init, size 0

def test_dropout_between_layers_in_training_only():
    m = make("GRU", 3, 4, num_layers=2, dropout=1.0)
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (4, 2, 3))
    p = params64(m)
    out_train, h_train = m(dlkern.tensor(x))
    # p = 1 drops the whole first-layer output: the second layer sees zeros
    zeros = np.zeros((4, 2, 4))
    want2, _, _ = ref_rnn("GRU", {k.replace("_l1", "_l0"): v for k, v in p.items() if "_l1" in k}, zeros,
                          np.zeros((1, 2, 4)), None, [4, 4], 1, 1)
    close(out_train, want2, np.float64)
    want1, h1, _ = ref_rnn("GRU", p, x, np.zeros((2, 2, 4)), None, [4, 4], 2, 1)
    close(h_train[0], h1[0], np.float64)  # the first layer's own state is not dropped
    m.eval()
    close(m(dlkern.tensor(x))[0], want1, np.float64)
    # the last layer's output is never dropped, and a p < 1 mask changes the result in training only
    m2 = make("LSTM", 3, 4, num_layers=2, dropout=0.5)
    dlkern.manual_seed(0)
    a = m2(dlkern.tensor(x))[0].detach().numpy()
    m2.eval()
    b = m2(dlkern.tensor(x))[0].detach().numpy()
    assert not np.allclose(a, b)
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.2)


@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell, nn.GRUCell])
def test_initialisation_is_uniform_within_one_over_sqrt_hidden(cls):
    dlkern.manual_seed(3)
    kw = {"proj_size": 5} if cls is nn.LSTM else {}
    m = cls(10, 64, **kw) if not issubclass(cls, nn.RNNCellBase) else cls(10, 64)
    bound = 1 / math.sqrt(64)
    values = np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])
    assert values.dtype == np.float32 and np.all(np.abs(values) <= bound)
    assert abs(values.std() - bound / math.sqrt(3)) < 0.05 * bound  # uniform, not a constant


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_empty_batch(mode):
    m = make(mode, 3, 4, num_layers=2, bidirectional=True)
    x = dlkern.tensor(np.zeros((5, 0, 3)), requires_grad=True)
    out, hn = m(x)
    assert tuple(out.shape) == (5, 0, 8)
    h, c = split_state(hn)
    assert tuple(h.shape) == (4, 0, 4) and (c is None or tuple(c.shape) == (4, 0, 4))
    out.sum().backward()
    assert x.grad.shape == (5, 0, 3)
    assert all(np.all(p.grad.numpy() == 0) for p in m.parameters())


def test_non_contiguous_input():
    m = make("LSTM", 3, 4)
    x = np.random.default_rng(13).uniform(-1, 1, (5, 4, 6))
    view = dlkern.tensor(x)[:, ::2, ::2]
    assert not view.data.flags.c_contiguous
    out, _ = m(view)
    close(out, ref_rnn("LSTM", params64(m), x[:, ::2, ::2], np.zeros((1, 2, 4)), np.zeros((1, 2, 4)), [5, 5], 1, 1)[0],
          np.float64)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("make_bad,exc,match", [
    (lambda: nn.LSTM(3, 0), ValueError, "hidden_size must be greater than zero"),
    (lambda: nn.GRU(3, 4, num_layers=0), ValueError, "num_layers must be greater than zero"),
    (lambda: nn.LSTM(3, 4, dropout=1.5), ValueError, "dropout should be a number in range"),
    (lambda: nn.LSTM(3, 4, proj_size=4), ValueError, "proj_size has to be smaller than hidden_size"),
    (lambda: nn.LSTM(3, 4, proj_size=-1), ValueError, "proj_size should be a positive integer"),
    (lambda: nn.RNN(3, 4, nonlinearity="gelu"), ValueError, "Unknown nonlinearity"),
    (lambda: nn.RNNCell(3, 4, nonlinearity="gelu"), ValueError, "Unknown nonlinearity"),
    (lambda: nn.GRU(3.0, 4), TypeError, "input_size should be of type int"),
])
def test_constructor_errors(make_bad, exc, match):
    with pytest.raises(exc, match=match):
        make_bad()


def test_call_errors():
    lstm, gru = nn.LSTM(3, 4, num_layers=2), nn.GRU(3, 4)
    x = dlkern.randn(5, 2, 3)
    cases = [
        (lambda: gru(dlkern.randn(5, 2, 4)), RuntimeError, "input.size\\(-1\\) must be equal to input_size"),
        (lambda: gru(dlkern.randn(1, 5, 2, 3)), ValueError, "Expected input to be 2D or 3D, got 4D"),
        (lambda: lstm(np.zeros((5, 2, 3), np.float32)), TypeError, "LSTM: input must be a Tensor or a PackedSequence"),
        (lambda: gru(dlkern.randn(0, 2, 3)), RuntimeError, "sequence length to be larger than 0"),
        (lambda: gru(x, dlkern.zeros(2, 2, 4)), RuntimeError, "Expected hidden size \\(1, 2, 4\\), got \\[2, 2, 4\\]"),
        (lambda: gru(dlkern.randn(5, 3), dlkern.zeros(1, 1, 4)), RuntimeError, "hx should also be 2-D"),
        (lambda: gru(x, dlkern.zeros(1, 4)), RuntimeError, "hx should also be 3-D"),
        (lambda: lstm(x, dlkern.zeros(2, 2, 4)), TypeError, "hx must be a tuple"),
        (lambda: lstm(x, (dlkern.zeros(2, 2, 4), dlkern.zeros(2, 3, 4))), RuntimeError,
         "Expected hidden\\[1\\] size \\(2, 2, 4\\), got \\[2, 3, 4\\]"),
        (lambda: gru(x.double()), TypeError, "dtype"),
        (lambda: gru(x, dlkern.zeros(1, 2, 4, dtype="float64")), RuntimeError, "not the same dtype"),
        (lambda: nn.LSTMCell(3, 4)(dlkern.randn(2, 3), (dlkern.zeros(2, 4), dlkern.zeros(2, 4, dtype="float64"))),
         RuntimeError, "not the same dtype"),
        (lambda: nn.GRUCell(3, 4)(dlkern.randn(2, 5)), RuntimeError, "inconsistent input_size: got 5 expected 3"),
        (lambda: nn.GRUCell(3, 4)(dlkern.randn(2, 3), dlkern.zeros(3, 4)), RuntimeError,
         "Input batch size 2 doesn't match hidden0 batch size 3"),
        (lambda: nn.LSTMCell(3, 4)(dlkern.randn(2, 3), (dlkern.zeros(2, 4), dlkern.zeros(2, 5))), RuntimeError,
         "Expected hidden1 size"),
        (lambda: nn.RNNCell(3, 4)(dlkern.randn(2, 2, 3)), ValueError, "Expected input to be 1D or 2D"),
        (lambda: nn.GRUCell(3, 4)(np.zeros((2, 3), np.float32)), TypeError, "GRUCell: input must be a Tensor"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()
