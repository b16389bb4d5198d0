"""Packed sequences (PackedSequence, pack_padded_sequence, pad_packed_sequence) through
the recurrent modules, against the float64 step-by-step reference of test_rnn.py and
PyTorch; the modules on the host twin of the CUDA module; count_macs and summary."""

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.device import CUDADevice
from dlkern.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence, pad_packed_sequence, pad_sequence

import host_cuda
from test_rnn import CONFIGS, IDS, _torch, close, hn_arg, make, params64, ref_rnn, split_state, states


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




def test_pack_and_pad_round_trip_and_gradients():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((4, 3, 2))
    xt = dlkern.tensor(x, requires_grad=True)
    p = pack_padded_sequence(xt, dlkern.tensor([2, 4, 1]), enforce_sorted=False)
    assert p.batch_sizes.dtype == np.int64 and p.batch_sizes.tolist() == [3, 2, 1, 1]
    assert p.sorted_indices.tolist() == [1, 0, 2] and p.unsorted_indices.tolist() == [1, 0, 2]
    want = np.concatenate([x[0, [1, 0, 2]], x[1, [1, 0]], x[2, [1]], x[3, [1]]])
    np.testing.assert_array_equal(p.data.detach().numpy(), want)
    padded, lens = pad_packed_sequence(p, padding_value=-7.0, total_length=6)
    assert lens.tolist() == [2, 4, 1] and tuple(padded.shape) == (6, 3, 2)
    mask = np.arange(6)[:, None] < np.array([2, 4, 1])[None, :]
    np.testing.assert_array_equal(padded.detach().numpy()[mask], np.pad(x, ((0, 2), (0, 0), (0, 0)))[mask])
    assert np.all(padded.detach().numpy()[~mask] == -7.0)
    w = rng.standard_normal((6, 3, 2))
    (padded * dlkern.tensor(w)).sum().backward()
    np.testing.assert_array_equal(xt.grad.numpy(), np.where(mask[:4, :, None], w[:4], 0.0))
    # batch_first on both sides, already sorted
    pb = pack_padded_sequence(dlkern.tensor(x.transpose(1, 0, 2)), [4, 2, 2], batch_first=True)
    assert pb.sorted_indices is None and pb.batch_sizes.tolist() == [3, 3, 1, 1]
    back, lens = pad_packed_sequence(pb, batch_first=True)
    assert tuple(back.shape) == (3, 4, 2) and lens.tolist() == [4, 2, 2]
    np.testing.assert_array_equal(back.numpy()[0], x[:, 0])
    np.testing.assert_array_equal(back.numpy()[1, :2], x[:2, 1])
    assert np.all(back.numpy()[1, 2:] == 0)


def test_packing_matches_pytorch():
    torch = _torch()
    x = np.random.default_rng(15).standard_normal((5, 4, 3))
    for lengths, sort in (([5, 3, 3, 1], True), ([1, 5, 2, 5], False)):
        for bf in (False, True):
            xin = np.ascontiguousarray(x.transpose(1, 0, 2)) if bf else x
            p = pack_padded_sequence(dlkern.tensor(xin), lengths, batch_first=bf, enforce_sorted=sort)
            tp = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(xin), torch.tensor(lengths), batch_first=bf,
                                                         enforce_sorted=sort)
            np.testing.assert_array_equal(p.data.numpy(), tp.data.numpy())
            assert p.batch_sizes.tolist() == tp.batch_sizes.tolist()
            for a, b in ((p.sorted_indices, tp.sorted_indices), (p.unsorted_indices, tp.unsorted_indices)):
                assert (a is None) == (b is None) and (a is None or a.tolist() == b.tolist())
            out, lens = pad_packed_sequence(p, batch_first=bf, padding_value=2.5, total_length=7)
            tout, tlens = torch.nn.utils.rnn.pad_packed_sequence(tp, batch_first=bf, padding_value=2.5,
                                                                 total_length=7)
            np.testing.assert_array_equal(out.numpy(), tout.numpy())
            assert lens.tolist() == tlens.tolist()


def test_pad_sequence_and_pack_sequence():
    rng = np.random.default_rng(17)
    arrays = [rng.standard_normal((n, 2)) for n in (3, 5, 1)]
    ts = [dlkern.tensor(a, requires_grad=True) for a in arrays]
    for bf in (False, True):
        out = pad_sequence(ts, batch_first=bf, padding_value=-1.0)
        want = np.full((5, 3, 2), -1.0)
        for b, a in enumerate(arrays):
            want[:len(a), b] = a
        np.testing.assert_array_equal(out.detach().numpy(), want.transpose(1, 0, 2) if bf else want)
    w = rng.standard_normal((3, 5, 2))
    (out * dlkern.tensor(w)).sum().backward()
    for b, (a, t) in enumerate(zip(arrays, ts)):
        np.testing.assert_array_equal(t.grad.numpy(), w[b, :len(a)])
    p = pack_sequence(ts, enforce_sorted=False)
    assert p.batch_sizes.tolist() == [3, 2, 2, 1, 1] and p.sorted_indices.tolist() == [1, 0, 2]
    back, lens = pad_packed_sequence(p)
    assert lens.tolist() == [3, 5, 1]
    np.testing.assert_array_equal(back.detach().numpy(), np.where(want == -1.0, 0.0, want))
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        pack_sequence(ts)
    with pytest.raises(RuntimeError, match="empty list"):
        pad_sequence([])
    torch = _torch()
    tt = [torch.tensor(a) for a in arrays]
    np.testing.assert_array_equal(pad_sequence(ts, True, 2.0).detach().numpy(),
                                  torch.nn.utils.rnn.pad_sequence(tt, True, 2.0).numpy())
    tp = torch.nn.utils.rnn.pack_sequence(tt, enforce_sorted=False)
    np.testing.assert_array_equal(p.data.detach().numpy(), tp.data.numpy())


def test_packing_errors():
    x = dlkern.tensor(np.zeros((3, 2, 1)))
    with pytest.raises(RuntimeError, match="greater than 0"):
        pack_padded_sequence(x, [3, 0])
    with pytest.raises(RuntimeError, match="sorted in decreasing order"):
        pack_padded_sequence(x, [2, 3])
    with pytest.raises(RuntimeError, match="len\\(lengths\\)"):
        pack_padded_sequence(x, [3, 2, 1])
    with pytest.raises(RuntimeError, match="exceeds"):
        pack_padded_sequence(x, [4, 2])
    with pytest.raises(RuntimeError, match="1-D"):
        pack_padded_sequence(x, [[3, 2]])
    p = pack_padded_sequence(x, [3, 2])
    with pytest.raises(ValueError, match="total_length"):
        pad_packed_sequence(p, total_length=2)
    import dlkern.nn.utils.rnn as rnn_module  # importable as a submodule, as torch.nn.utils.rnn
    assert rnn_module.PackedSequence is PackedSequence and nn.utils.rnn is rnn_module



@pytest.mark.parametrize("mode,kw", [("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
                                     ("GRU", {"batch_first": True}), ("RNN_RELU", {})])
def test_runs_on_the_cuda_twin_like_the_cpu(mode, kw):
    dev = CUDADevice(0, module=host_cuda)
    m = make(mode, 3, 4, **kw)
    rng = np.random.default_rng(16)
    x = rng.uniform(-1, 1, (3, 5, 3) if m.batch_first else (5, 3, 3))
    lengths = [5, 2, 4]
    results = []
    for device in ("cpu", dev):
        m.zero_grad()
        m.to(device)
        xt = dlkern.tensor(x).to(device).requires_grad_(True)
        packed = pack_padded_sequence(xt, lengths, batch_first=m.batch_first, enforce_sorted=False)
        out, hn = m(packed)
        padded = pad_packed_sequence(out, batch_first=m.batch_first)[0]
        h = split_state(hn)[0]
        (padded.sum() + (h * h).sum()).backward()
        results.append([padded.detach().cpu().numpy(), h.detach().cpu().numpy(), xt.grad.cpu().numpy()]
                       + [p.grad.cpu().numpy() for p in m.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13)
    cell = nn.LSTMCell(3, 4).to(dev)
    h, c = cell(dlkern.randn(2, 3).to(dev))
    assert h.device == dev and tuple(c.shape) == (2, 4)


def test_count_macs_and_summary():
    m = nn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2)
    x = dlkern.randn(5, 4, 3)
    out = m(x)
    rows = 20
    want = 2 * rows * (32 * (3 + 2) + 8 * 2) + 2 * rows * (32 * (4 + 2) + 8 * 2)
    assert m.count_macs((x,), {}, out) == want
    packed = pack_padded_sequence(x, [5, 3, 2, 1])
    assert m.count_macs((packed,), {}, m(packed)) == want * 11 // 20
    cell = nn.GRUCell(3, 8)
    assert cell.count_macs((dlkern.randn(4, 3),), {}, None) == 4 * 24 * (3 + 8)
    assert dlkern.utils.summary(m, input_data=[x]).total_macs == want
