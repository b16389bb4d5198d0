"""Op-table rows of the recurrent layers' time loops (csrc/cpu/rnn_layer.h), appended to
tests/op_table.py's ROWS. Each row runs one layer over packed time-major rows: the
forward's first output is every step's h; the backward returns the gradients w.r.t. the
input projections (gates / gi / pre) and the initial state, which the table checks against
dlkern.reference, central differences and (forward) PyTorch's own cells stepped the same way.
The kernels write in place, so each call works on copies (the table reuses its inputs)."""
import numpy as np

from op_table import Row, _cases, u

# (batch_sizes, state rows B, hidden H, reverse)
_CASES = _cases(("0", dict(sizes=(), b=2, h=3, rev=False)), ("1", dict(sizes=(1,), b=1, h=1, rev=False)),
                ("t1", dict(sizes=(4,), b=4, h=5, rev=True)),
                ("packed", dict(sizes=(5, 5, 3, 1), b=5, h=7, rev=False)),
                ("reverse", dict(sizes=(5, 5, 3, 1), b=6, h=7, rev=True)),
                ("wide", dict(sizes=(2, 2, 1), b=2, h=33, rev=False)),
                ("noncontig", dict(sizes=(3, 2, 2), b=3, h=5, rev=True)),
                ("grad", dict(sizes=(3, 2, 1), b=4, h=3, rev=True)))


def _rows(sizes, b, h, rev):
    return sum(sizes), {"batch_sizes": sizes, "reverse": rev}


def _make(rng, dtype, sizes, b, h, rev, g, first, bias=False, scale=3.0):
    n, s = _rows(sizes, b, h, rev)
    arrays = {first: u(rng, (n, g * h), dtype, -scale, scale), "h": u(rng, (b, h), dtype),
              "w_hh": u(rng, (g * h, h), dtype, -1 / np.sqrt(h), 1 / np.sqrt(h))}
    if g == 4:
        arrays["c"] = u(rng, (b, h), dtype, -2, 2)
    if bias:
        arrays["b_hh"] = u(rng, (g * h,), dtype)
    if g == 3:  # room for GRU's saves (n, 4H), copied on the device like the inputs
        arrays["saved"] = np.zeros((n, 4 * h), dtype)
    return arrays, s


def _step_rows(sizes, reverse):
    ends = np.cumsum(sizes, dtype=np.int64)
    rows = [(int(e - b), int(e)) for b, e in zip(sizes, ends)]
    return rows[::-1] if reverse else rows


def _torch_steps(t, a, s, cell):
    """Every step's h from PyTorch's cell(rows' input, state rows) -> new state."""
    state = [a[k].clone() for k in ("h", "c") if k in a]
    first = next(iter(a.values()))
    out = t.zeros(first.shape[0], a["h"].shape[1], dtype=t.float64)
    for lo, hi in _step_rows(s["batch_sizes"], s["reverse"]):
        b = hi - lo
        new = cell(first[lo:hi], tuple(x[:b] for x in state))
        new = new if isinstance(new, tuple) else (new,)
        for x, v in zip(state, new):
            x[:b] = v
        out[lo:hi] = new[0]
    return out


# ---- LSTM
def _lstm_fwd(ns, a, s):
    gates, h, c = a["gates"].copy(), a["h"].copy(), a["c"].copy()
    n, H = gates.shape[0], h.shape[1]
    out, c_all, c_prev, h_prev = ((gates[:, :H] * 0).copy() for _ in range(4))
    ns.lstm_layer_forward(gates, a["w_hh"], h, c, out, s["batch_sizes"], s["reverse"], c_all, c_prev, h_prev)
    return out, h, c, gates, c_all, c_prev, h_prev


def _lstm_bwd(ns, cot, out, a, s):
    dh, dc = (out[1] * 0).copy(), (out[2] * 0).copy()
    dgates = ns.lstm_layer_backward(cot, dh, dc, out[3], out[4], out[5], a["w_hh"], s["batch_sizes"], s["reverse"])
    return dgates, dh, dc


def _torch_lstm(F, t, a, s):
    eye = t.eye(a["gates"].shape[1], dtype=t.float64)
    return _torch_steps(t, a, s, lambda x, st: t.lstm_cell(x, st, eye, a["w_hh"]))


# ---- GRU
def _gru_fwd(ns, a, s):
    h = a["h"].copy()
    H = h.shape[1]
    out, h_prev = (a["gi"][:, :H] * 0).copy(), (a["gi"][:, :H] * 0).copy()
    saved = a["saved"].copy()
    ns.gru_layer_forward(a["gi"], a["w_hh"], a.get("b_hh"), h, out, s["batch_sizes"], s["reverse"], saved, h_prev)
    return out, h, saved, h_prev


def _gru_bwd(ns, cot, out, a, s):
    dh = (out[1] * 0).copy()
    dgi, dgh = ns.gru_layer_backward(cot, dh, out[2], out[3], a["w_hh"], s["batch_sizes"], s["reverse"])
    return dgi, dh, dgh.sum(axis=0)


def _torch_gru(F, t, a, s):
    eye = t.eye(a["gi"].shape[1], dtype=t.float64)
    return _torch_steps(t, {"gi": a["gi"], "h": a["h"]}, s,
                        lambda x, st: t.gru_cell(x, st[0], eye, a["w_hh"], None, a["b_hh"]))


# ---- Elman RNN
def _rnn_fwd(nl):
    def fwd(ns, a, s):
        pre, h = a["pre"].copy(), a["h"].copy()
        out, h_prev = (pre * 0).copy(), (pre * 0).copy()
        ns.rnn_layer_forward(pre, a["w_hh"], h, out, s["batch_sizes"], s["reverse"], nl, h_prev)
        return out, h, pre, h_prev
    return fwd


def _rnn_bwd(nl):
    def bwd(ns, cot, out, a, s):
        dh = (out[1] * 0).copy()
        return ns.rnn_layer_backward(cot, dh, out[0], a["w_hh"], s["batch_sizes"], s["reverse"], nl), dh
    return bwd


def _torch_rnn(nl):
    def twin(F, t, a, s):
        eye = t.eye(a["pre"].shape[1], dtype=t.float64)
        cell = t.rnn_relu_cell if nl == "relu" else t.rnn_tanh_cell
        return _torch_steps(t, a, s, lambda x, st: cell(x, st[0], eye, a["w_hh"]))
    return twin


def _k(a, s):
    """The reduction length behind an output: H terms per recurrent product, over the steps."""
    return a["w_hh"].shape[0] * max(len(s["batch_sizes"]), 1)


ROWS = [
    Row("lstm_layer", _CASES, lambda rng, dt, **p: _make(rng, dt, g=4, first="gates", **p), _lstm_fwd, _k,
        bwd=_lstm_bwd, diff=("gates", "h", "c"), torch=_torch_lstm, tol=4.0),
    Row("gru_layer", _CASES, lambda rng, dt, **p: _make(rng, dt, g=3, first="gi", bias=True, **p), _gru_fwd, _k,
        bwd=_gru_bwd, diff=("gi", "h", "b_hh"), torch=_torch_gru, tol=4.0),
    *(Row(f"rnn_layer_{nl}", _CASES, lambda rng, dt, **p: _make(rng, dt, g=1, first="pre", scale=1.5, **p),
          _rnn_fwd(nl), _k, bwd=_rnn_bwd(nl), diff=("pre", "h"), torch=_torch_rnn(nl), tol=4.0)
      for nl in ("tanh", "relu")),
]
