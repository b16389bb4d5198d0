"""The recurrent layers' time loops (dlkern.ops.lstm/gru/rnn_layer_forward/backward,
csrc/cpu/rnn_layer.h): against dlkern.reference (float64 loops over the reference cells)
on packed batch sizes, both directions, B = 1, T = 1 and no steps, on every ISA at 1 and
2 threads; NaN/inf propagation; the argument errors; the CUDA namespace's composition on
the host twin; and, where torch is installed, forward and backward against PyTorch's own
cells stepped over the same packed rows with autograd."""
import numpy as np
import pytest

import dlkern
import dlkern.ops as ops
from dlkern import reference as R
from dlkern.device import CUDADevice

import host_cuda

ENVS = [(isa, n) for isa in dlkern.supported_isas() for n in (1, 2)]
# (batch_sizes, state rows B, hidden H, reverse)
SHAPES = {
    "packed": ((5, 5, 3, 1), 5, 7, False),
    "packed-reverse": ((5, 5, 3, 1), 6, 7, True),
    "b1": ((1, 1, 1), 1, 4, False),
    "t1": ((3,), 3, 9, True),
    "empty": ((), 2, 3, False),
    "wide": ((4, 2), 4, 37, True),
    "h0": ((2, 1), 2, 0, False),
}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


@pytest.fixture
def env(request):
    isa, n = request.param
    prev = dlkern.get_isa(), dlkern.get_num_threads(), dlkern._C.get_min_work_scale()
    dlkern.set_isa(isa)
    dlkern.set_num_threads(n)
    dlkern._C.set_min_work_scale(0.0 if n > 1 else prev[2])  # small steps take the threaded paths too
    yield
    dlkern.set_isa(prev[0])
    dlkern.set_num_threads(prev[1])
    dlkern._C.set_min_work_scale(prev[2])


def _inputs(kind, shape, seed=0, dtype=np.float64):
    sizes, B, H, rev = SHAPES[shape]
    n, g = sum(sizes), GATES[kind]
    r = np.random.default_rng(seed)
    a = {"x": r.uniform(-3, 3, (n, g * H)), "h": r.uniform(-1, 1, (B, H)),
         "w": r.uniform(-1, 1, (g * H, H)) / np.sqrt(max(H, 1)), "c": r.uniform(-2, 2, (B, H)),
         "b": r.uniform(-1, 1, (g * H,)), "dout": r.standard_normal((n, H)), "dh": r.standard_normal((B, H)),
         "dc": r.standard_normal((B, H))}
    return {k: v.astype(dtype) for k, v in a.items()}, sizes, rev


def _run(ns, kind, a, sizes, rev, nonlinearity="tanh"):
    """Forward (with every save) then backward on copies; every array the calls produced."""
    a = {k: v.copy() for k, v in a.items()}
    n, H = a["dout"].shape
    z = lambda cols=1: np.zeros((n, cols * H), a["x"].dtype)  # noqa: E731
    res = {"h": a["h"], "out": z()}
    if kind == "lstm":
        res.update(gates=a["x"], c=a["c"], c_all=z(), c_prev=z(), h_prev=z())
        ns.lstm_layer_forward(res["gates"], a["w"], res["h"], res["c"], res["out"], sizes, rev, res["c_all"],
                              res["c_prev"], res["h_prev"])
        res.update(dh=a["dh"], dc=a["dc"])
        res["dgates"] = ns.lstm_layer_backward(a["dout"], res["dh"], res["dc"], res["gates"], res["c_all"],
                                               res["c_prev"], a["w"], sizes, rev)
    elif kind == "gru":
        res.update(saved=z(4), h_prev=z())
        ns.gru_layer_forward(a["x"], a["w"], a["b"], res["h"], res["out"], sizes, rev, res["saved"], res["h_prev"])
        res["dh"] = a["dh"]
        res["dgi"], res["dgh"] = ns.gru_layer_backward(a["dout"], res["dh"], res["saved"], res["h_prev"], a["w"],
                                                       sizes, rev)
    else:
        res.update(pre=a["x"], h_prev=z())
        ns.rnn_layer_forward(res["pre"], a["w"], res["h"], res["out"], sizes, rev, nonlinearity, res["h_prev"])
        res["dh"] = a["dh"]
        res["dpre"] = ns.rnn_layer_backward(a["dout"], res["dh"], res["out"], a["w"], sizes, rev, nonlinearity)
    return res


def _assert_close(got, expected, dtype, what):
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for k, e in expected.items():
        g = got[k]
        assert g.dtype == dtype, f"{what} {k}: dtype {g.dtype}"
        assert g.shape == e.shape, f"{what} {k}: shape {g.shape} vs {e.shape}"
        np.testing.assert_allclose(g, e, rtol=tol, atol=tol, err_msg=f"{what} {k}")


KINDS = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]


@pytest.mark.parametrize("env", ENVS, ids=[f"{i}-{n}thr" for i, n in ENVS], indirect=True)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind, nl", KINDS, ids=[f"{k}-{n}" for k, n in KINDS])
def test_layer_kernels_match_the_reference(env, kind, nl, shape, dtype):
    a, sizes, rev = _inputs(kind, shape, dtype=dtype)
    got = _run(ops, kind, a, sizes, rev, nl)
    expected = _run(R, kind, {k: v.astype(np.float64) for k, v in a.items()}, sizes, rev, nl)
    _assert_close(got, expected, dtype, f"{kind}-{nl}[{shape}]")


@pytest.mark.parametrize("kind, nl", KINDS, ids=[f"{k}-{n}" for k, n in KINDS])
def test_state_rows_past_the_first_step_keep_their_values(kind, nl):
    a, sizes, rev = _inputs(kind, "packed-reverse")  # B = 6 state rows, steps of at most 5
    got = _run(ops, kind, a, sizes, rev, nl)
    np.testing.assert_array_equal(got["h"][5], a["h"][5])
    np.testing.assert_array_equal(got["dh"][5], a["dh"][5])
    if kind == "lstm":
        np.testing.assert_array_equal(got["c"][5], a["c"][5])


@pytest.mark.parametrize("kind, nl", KINDS, ids=[f"{k}-{n}" for k, n in KINDS])
def test_the_final_state_is_each_sequences_last_output(kind, nl):
    """Packed (5, 5, 3, 1): sequence 0 ends at step 3, 1-2 at step 2, 3-4 at step 1."""
    a, sizes, rev = _inputs(kind, "packed")
    got = _run(ops, kind, a, sizes, rev, nl)
    out = got["out"]
    np.testing.assert_array_equal(got["h"][0], out[13])
    np.testing.assert_array_equal(got["h"][1:3], out[11:13])
    np.testing.assert_array_equal(got["h"][3:5], out[8:10])


@pytest.mark.parametrize("kind, nl", KINDS, ids=[f"{k}-{n}" for k, n in KINDS])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_propagate_as_in_the_reference(kind, nl, value):
    """A special input value in one sequence's row of step 0 reaches that sequence only."""
    a, sizes, rev = _inputs(kind, "packed")
    a["x"][1, :] = value
    got = _run(ops, kind, a, sizes, rev, nl)
    expected = _run(R, kind, a, sizes, rev, nl)
    for k in ("out", "h"):
        e = expected[k]
        assert np.array_equal(np.isnan(got[k]), np.isnan(e)), f"{k}: NaN pattern"
        assert np.array_equal(got[k][np.isinf(e)], e[np.isinf(e)]), f"{k}: infinities"
    # rows of sequence 0 (row 0 of each step) never see the value
    assert np.isfinite(got["out"][[0, 5, 10, 13]]).all()
    if value != value:  # NaN: sequence 1's later outputs are NaN
        assert np.isnan(got["out"][[1, 6, 11]]).all()


def test_nan_propagates_through_the_backward():
    a, sizes, rev = _inputs("lstm", "packed")
    a["dout"][13, 2] = np.nan  # the last step's only row: sequence 0
    got = _run(ops, "lstm", a, sizes, rev)
    expected = _run(R, "lstm", a, sizes, rev)
    assert np.array_equal(np.isnan(got["dgates"]), np.isnan(expected["dgates"]))
    assert np.isnan(got["dgates"][[0, 5, 10, 13]]).any(axis=1).all()
    assert not np.isnan(got["dgates"][[1, 2, 3, 4]]).any()


@pytest.mark.parametrize("kind, nl", KINDS, ids=[f"{k}-{n}" for k, n in KINDS])
def test_read_only_inputs_of_any_layout_are_read_not_changed(kind, nl):
    """A transposed w_hh, a strided dout: copied, never written."""
    a, sizes, rev = _inputs(kind, "packed")
    expected = _run(ops, kind, a, sizes, rev, nl)
    a["w"] = np.asfortranarray(a["w"])
    a["dout"] = np.asfortranarray(a["dout"])
    if kind == "gru":
        a["x"] = np.asfortranarray(a["x"])
    before = {k: v.copy() for k, v in a.items()}
    got = _run(ops, kind, a, sizes, rev, nl)
    _assert_close(got, expected, np.float64, kind)
    for k in ("w", "dout"):
        np.testing.assert_array_equal(a[k], before[k])


@pytest.mark.parametrize("kind, nl", KINDS, ids=[f"{k}-{n}" for k, n in KINDS])
def test_the_cuda_namespace_composes_the_same_loop(kind, nl):
    """The device-neutral composition (devices/cuda.py) on the host twin equals the kernel."""
    a, sizes, rev = _inputs(kind, "packed-reverse")
    dev = CUDADevice(0, module=host_cuda)

    class OnTwin:  # the namespace with host arrays moved over and results moved back
        def __getattr__(self, name):
            def call(*args):
                moved = [dev.from_host(v) if isinstance(v, np.ndarray) else v for v in args]
                r = getattr(dev, name)(*moved)
                for v, m in zip(args, moved):
                    if isinstance(v, np.ndarray):
                        v[...] = m.numpy()
                return tuple(x.numpy() for x in r) if isinstance(r, tuple) else None if r is None else r.numpy()
            return call

    got = _run(OnTwin(), kind, a, sizes, rev, nl)
    expected = _run(ops, kind, a, sizes, rev, nl)
    _assert_close(got, expected, np.float64, f"twin {kind}")


# ----------------------------------------------------------------------------- argument errors


def _lstm_args(**over):
    n, B, H = 4, 2, 3
    a = dict(gates=np.zeros((n, 4 * H)), w_hh=np.zeros((4 * H, H)), h=np.zeros((B, H)), c=np.zeros((B, H)),
             out=np.zeros((n, H)), batch_sizes=(2, 1, 1), reverse=False)
    a.update(over)
    return a


def _bwd_args(**over):
    n, B, H = 4, 2, 3
    a = dict(dout=np.zeros((n, H)), dh=np.zeros((B, H)), dc=np.zeros((B, H)), act=np.zeros((n, 4 * H)),
             c_all=np.zeros((n, H)), c_prev=np.zeros((n, H)), w_hh=np.zeros((4 * H, H)), batch_sizes=(2, 1, 1))
    a.update(over)
    return a


_shared = np.zeros((4, 12))
BAD = [
    ("lstm_layer_forward", _lstm_args(batch_sizes=(2, 1)), ValueError, "sum to 3"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=(2, 2, 1)), ValueError, "sum to more than"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=(1, 2, 1)), ValueError, "must not increase"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=(2, 2, 0)), ValueError, "batch_sizes[2] = 0"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=(-1, 5)), ValueError, "batch_sizes[0] = -1"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=(3, 1)), ValueError, "exceeds the state"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=4), TypeError, "batch_sizes must be a sequence"),
    ("lstm_layer_forward", _lstm_args(batch_sizes="ab"), TypeError, "batch_sizes must be a sequence"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=(2.0, 2)), TypeError, "batch_sizes"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=(True, 1, 1, 1)), TypeError, "batch_sizes"),
    ("lstm_layer_forward", _lstm_args(batch_sizes=np.array([[2, 2]])), TypeError, "1-D"),
    ("lstm_layer_forward", _lstm_args(reverse="no"), TypeError, "reverse must be a bool"),
    ("lstm_layer_forward", _lstm_args(gates=np.zeros((4, 10))), ValueError, "4 * hidden_size"),
    ("lstm_layer_forward", _lstm_args(w_hh=np.zeros((12, 4))), ValueError, "w_hh has shape (12, 4)"),
    ("lstm_layer_forward", _lstm_args(c=np.zeros((3, 3))), ValueError, "c has shape (3, 3)"),
    ("lstm_layer_forward", _lstm_args(h=np.zeros((2, 4))), ValueError, "h has shape (2, 4)"),
    ("lstm_layer_forward", _lstm_args(out=np.zeros((5, 3))), ValueError, "out has shape (5, 3)"),
    ("lstm_layer_forward", _lstm_args(c_all=np.zeros((4, 2))), ValueError, "c_all has shape (4, 2)"),
    ("lstm_layer_forward", _lstm_args(h=np.zeros((2, 3), np.float32)), TypeError, "h has dtype float32"),
    ("lstm_layer_forward", _lstm_args(h=np.zeros((2, 3), np.int64)), TypeError, "h"),
    ("lstm_layer_forward", _lstm_args(h=[[0.0] * 3] * 2), TypeError, "h must be a numpy.ndarray"),
    ("lstm_layer_forward", _lstm_args(h=np.zeros(3)), ValueError, "h must be 2-D"),
    ("lstm_layer_forward", _lstm_args(out=np.zeros((3, 4)).T), ValueError, "out is written in place"),
    ("lstm_layer_forward", _lstm_args(gates=np.zeros((4, 24))[:, ::2]), ValueError, "C-contiguous"),
    ("lstm_layer_forward", _lstm_args(h=np.zeros((2, 3)).copy().view(), c=None), TypeError, "c must be"),
    ("lstm_layer_forward", _lstm_args(w_hh=_shared.reshape(-1)[:36].reshape(12, 3), gates=_shared), ValueError,
     "share memory"),
    ("lstm_layer_forward", _lstm_args(c_prev=np.zeros((4, 3)), h_prev=None, c_all=None), None, None),
    ("lstm_layer_backward", _bwd_args(dout=np.zeros((4, 4))), ValueError, "dout has shape (4, 4)"),
    ("lstm_layer_backward", _bwd_args(dc=np.zeros((1, 3))), ValueError, "dc has shape (1, 3)"),
    ("lstm_layer_backward", _bwd_args(batch_sizes=(1, 1, 1)), ValueError, "sum to 3"),
    ("lstm_layer_backward", _bwd_args(c_all=np.zeros((4, 3), np.float32)), TypeError, "c_all has dtype float32"),
    ("gru_layer_forward", dict(gi=np.zeros((2, 6)), w_hh=np.zeros((6, 2)), b_hh=np.zeros(5), h=np.zeros((1, 2)),
                               out=np.zeros((2, 2)), batch_sizes=(1, 1)), ValueError, "b_hh has shape (5,)"),
    ("gru_layer_forward", dict(gi=np.zeros((2, 6)), w_hh=np.zeros((6, 2)), b_hh=None, h=np.zeros((1, 2)),
                               out=np.zeros((2, 2)), batch_sizes=(1, 1), saved=np.zeros((2, 6))), ValueError,
     "saved has shape (2, 6)"),
    ("gru_layer_backward", dict(dout=np.zeros((2, 2)), dh=np.zeros((1, 2)), saved=np.zeros((2, 7)),
                                h_prev=np.zeros((2, 2)), w_hh=np.zeros((6, 2)), batch_sizes=(1, 1)), ValueError,
     "4 * hidden_size"),
    ("rnn_layer_forward", dict(pre=np.zeros((2, 2)), w_hh=np.zeros((2, 2)), h=np.zeros((1, 2)), out=np.zeros((2, 2)),
                               batch_sizes=(1, 1), nonlinearity="sigmoid"), ValueError, "'tanh' or 'relu'"),
    ("rnn_layer_backward", dict(dout=np.zeros((2, 2)), dh=np.zeros((1, 2)), out=np.zeros((2, 2)),
                                w_hh=np.zeros((2, 2)), batch_sizes=(1, 1), nonlinearity=None), ValueError,
     "nonlinearity"),
    ("rnn_layer_backward", dict(dout=np.zeros((2, 2)), dh=np.zeros((1, 2)), out=np.zeros((2, 2)),
                                w_hh=np.zeros((2, 3)), batch_sizes=(1, 1)), ValueError, "w_hh has shape (2, 3)"),
]


@pytest.mark.parametrize("op, kwargs, exc, text", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_arguments_are_refused_naming_the_op(op, kwargs, exc, text):
    if exc is None:  # a valid call among the invalid ones: the checks refuse no more than they must
        getattr(ops, op)(**kwargs)
        return
    with pytest.raises(exc) as info:
        getattr(ops, op)(**kwargs)
    assert op in str(info.value) and text in str(info.value), str(info.value)


def test_read_only_state_is_refused():
    h = np.zeros((2, 3))
    h.setflags(write=False)
    with pytest.raises(ValueError, match="lstm_layer_forward: h is read-only"):
        ops.lstm_layer_forward(**_lstm_args(h=h))


class _Twos:
    """A sequence of 10^12 twos."""

    def __len__(self):
        return 10 ** 12

    def __getitem__(self, i):
        if i >= 10 ** 12:
            raise IndexError(i)
        return 2


def test_huge_batch_sizes_are_refused_without_looping_over_them():
    with pytest.raises(ValueError, match="lstm_layer_forward: batch_sizes sum to more than the inputs' 4 rows"):
        ops.lstm_layer_forward(**_lstm_args(batch_sizes=_Twos()))


# ----------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("shape", ["packed", "packed-reverse", "t1"])
@pytest.mark.parametrize("kind, nl", KINDS, ids=[f"{k}-{n}" for k, n in KINDS])
def test_forward_and_backward_match_pytorch(kind, nl, shape):
    """PyTorch's own cells stepped over the same packed rows, gradients by its autograd
    (W_ih the identity, so the cells' input is our input projection)."""
    torch = pytest.importorskip("torch")
    a, sizes, rev = _inputs(kind, shape)
    got = _run(ops, kind, a, sizes, rev, nl)
    t = {k: torch.tensor(v, requires_grad=k in ("x", "h", "c")) for k, v in a.items()}
    eye = torch.eye(a["x"].shape[1], dtype=torch.float64)
    state = [t["h"] * 1] + ([t["c"] * 1] if kind == "lstm" else [])
    outs = [None] * len(sizes)
    ends = np.cumsum(sizes)
    order = range(len(sizes) - 1, -1, -1) if rev else range(len(sizes))
    for i in order:
        lo, hi = int(ends[i] - sizes[i]), int(ends[i])
        b = sizes[i]
        x = t["x"][lo:hi]
        if kind == "lstm":
            hn, cn = torch.lstm_cell(x, (state[0][:b], state[1][:b]), eye, t["w"])
            state = [torch.cat([hn, state[0][b:]]), torch.cat([cn, state[1][b:]])]
        else:
            if kind == "gru":
                hn = torch.gru_cell(x, state[0][:b], eye, t["w"], None, t["b"])
            else:
                cell = torch.rnn_relu_cell if nl == "relu" else torch.rnn_tanh_cell
                hn = cell(x, state[0][:b], eye, t["w"])
            state = [torch.cat([hn, state[0][b:]])]
        outs[i] = hn
    out = torch.cat(outs)
    np.testing.assert_allclose(got["out"], out.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["h"], state[0].detach().numpy(), rtol=1e-12, atol=1e-12)
    loss = (out * torch.tensor(a["dout"])).sum() + (state[0] * torch.tensor(a["dh"])).sum()
    if kind == "lstm":
        loss = loss + (state[1] * torch.tensor(a["dc"])).sum()
    loss.backward()
    dx = {"lstm": "dgates", "gru": "dgi", "rnn": "dpre"}[kind]
    np.testing.assert_allclose(got[dx], t["x"].grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["dh"], t["h"].grad.numpy(), rtol=1e-10, atol=1e-12)
    if kind == "lstm":
        np.testing.assert_allclose(got["dc"], t["c"].grad.numpy(), rtol=1e-10, atol=1e-12)
