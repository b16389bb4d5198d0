"""nn.RNN (tanh/relu), nn.LSTM (proj_size), nn.GRU, the cells, and packed sequences.

Every configuration is checked against an independent float64 NumPy reference written
here (the textbook cell equations, one sequence and one step at a time, so packing,
directions and layer stacking are re-derived), its gradients by central finite
differences in float64, and, with torch installed, against PyTorch with the same
state_dict (outputs, h_n/c_n and the gradients of every parameter, the input and
h0/c0). The modules also run on the host twin of the CUDA module; errors follow
PyTorch's types. The fused cell kernels (dlkern.ops.lstm_cell_forward & co.) are
checked against the same reference cells."""

import math

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.device import CUDADevice
from dlkern.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import host_cuda
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


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode,kw", CONFIGS[:10], ids=IDS[:10])
def test_packed_unsorted_lengths_match_the_reference(mode, kw, batch_first):
    m = make(mode, 3, 4, batch_first=batch_first, **kw)
    rng = np.random.default_rng(3)
    T, lengths = 6, [2, 6, 1, 4, 6]
    B = len(lengths)
    x = rng.uniform(-1, 1, (T, B, 3))
    h0, c0 = states(m, B, rng, np.float64)
    xin = np.ascontiguousarray(x.transpose(1, 0, 2)) if batch_first else x
    xt = dlkern.tensor(xin, requires_grad=True)
    packed = pack_padded_sequence(xt, lengths, batch_first=batch_first, enforce_sorted=False)
    assert isinstance(packed, PackedSequence)
    assert packed.batch_sizes.tolist() == [5, 4, 3, 3, 2, 2]
    out, hn = m(packed, hn_arg(dlkern.tensor(h0), None if c0 is None else dlkern.tensor(c0)))
    assert isinstance(out, PackedSequence) and out.batch_sizes is packed.batch_sizes
    padded, lens = pad_packed_sequence(out, batch_first=batch_first)
    assert lens.tolist() == lengths
    want, h_want, c_want = ref_rnn(m.mode, params64(m), x, h0, c0, lengths, m.num_layers,
                                   2 if m.bidirectional else 1)
    close(padded, want.transpose(1, 0, 2) if batch_first else want, np.float64)
    h, c = split_state(hn)
    close(h, h_want, np.float64)
    if c is not None:
        close(c, c_want, np.float64)
    # padded steps receive no gradient
    padded.sum().backward()
    g = xt.grad.numpy() if not batch_first else xt.grad.numpy().transpose(1, 0, 2)
    for b, n in enumerate(lengths):
        assert np.all(g[n:, b] == 0) and np.any(g[:n, b] != 0)


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
