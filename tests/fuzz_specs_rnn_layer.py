"""Fuzz case builders of the recurrent layers' time loops (csrc/cpu/rnn_layer.h), kept
beside tests/fuzz_specs.py, which registers them with its ``builder``.

A drawn call: dtype, hidden size H (0 allowed), packed step sizes (non-increasing, > 0,
possibly no steps), a state with rows to spare, either direction, each optional save
given or not. Arrays written in place are C-contiguous (the kernels require it); the
read-only ones take any layout. Forward inputs take NaN/inf, backward ones NaN. The
recurrent weights are drawn at most `gain / H` in size, so an error grows by at most
(1 + G gain) per step: the tolerance scale carries that factor over the steps.
"""
import numpy as np
from hypothesis import strategies as st

from dlkern import reference
from fuzz_cases import F32, F64, Case, amax, array, choice, close, dtype, flag, size

# name -> ((argument, columns in units of H, role) in call order); roles: "in" read-only,
# "io" written in place, "save" an optional array written in place, "w" the (G H, H) weight,
# "b" the optional (G H,) bias, "state" (B, H) written in place.
_ARGS = {
    "lstm_layer_forward": (("gates", 4, "io"), ("w_hh", 4, "w"), ("h", 1, "state"), ("c", 1, "state"),
                           ("out", 1, "io"), ("c_all", 1, "save"), ("c_prev", 1, "save"), ("h_prev", 1, "save")),
    "lstm_layer_backward": (("dout", 1, "in"), ("dh", 1, "state"), ("dc", 1, "state"), ("act", 4, "in"),
                            ("c_all", 1, "in"), ("c_prev", 1, "in"), ("w_hh", 4, "w")),
    "gru_layer_forward": (("gi", 3, "in"), ("w_hh", 3, "w"), ("b_hh", 3, "b"), ("h", 1, "state"), ("out", 1, "io"),
                          ("saved", 4, "save"), ("h_prev", 1, "save")),
    "gru_layer_backward": (("dout", 1, "in"), ("dh", 1, "state"), ("saved", 4, "in"), ("h_prev", 1, "in"),
                           ("w_hh", 3, "w")),
    "rnn_layer_forward": (("pre", 1, "io"), ("w_hh", 1, "w"), ("h", 1, "state"), ("out", 1, "io"),
                          ("h_prev", 1, "save")),
    "rnn_layer_backward": (("dout", 1, "in"), ("dh", 1, "state"), ("out", 1, "in"), ("w_hh", 1, "w")),
}
_ACTIVATED = ("act", "saved")  # sigmoid/tanh outputs: drawn in [-1, 1]


def _steps(data):
    b0 = size(data, hi=5, label="batch")
    sizes = data.draw(st.lists(st.integers(1, b0), max_size=5), label="batch_sizes")
    return tuple(sorted(sizes, reverse=True)), b0 + int(flag(data, "spare_state_row"))


def build(data, name):
    dt = dtype(data)
    H = size(data, zero=True, hi=11, label="hidden")
    sizes, B = _steps(data)
    N = sum(sizes)
    gain = choice(data, [0.25, 1.0], "gain")
    forward = name.endswith("forward")
    special = (np.nan, np.inf, -np.inf, 0.0) if forward else (np.nan, 0.0)
    kwargs = {}
    for arg, cols, role in _ARGS[name]:
        if role == "w":
            lim = gain / max(H, 1)
            kwargs[arg] = array(data, (cols * H, H), dt, label=f"{arg}_layout", lo=-lim, hi=lim)
        elif role == "b":
            kwargs[arg] = array(data, (cols * H,), dt, label="b_hh_layout") if flag(data, "bias") else None
        elif role == "save":
            kwargs[arg] = np.zeros((N, cols * H), dt) if flag(data, f"{arg}_given") else None
        else:
            rows = B if role == "state" else N
            lim = 1.0 if arg in _ACTIVATED else 2.0
            layouts = ("contiguous",) if role in ("io", "state") else None
            kw = {} if layouts is None else {"layouts": layouts}
            kwargs[arg] = array(data, (rows, cols * H), dt, label=f"{arg}_layout", lo=-lim, hi=lim,
                                special=special, **kw)
    kwargs["batch_sizes"] = sizes
    kwargs["reverse"] = flag(data, "reverse")
    if name.startswith("rnn"):
        kwargs["nonlinearity"] = choice(data, ["tanh", "relu"], "nonlinearity")

    # the oracle on float64 copies of every array (it writes the in-place ones)
    ref_kw = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    ret = getattr(reference, name)(**ref_kw)
    written = [a for a, _, role in _ARGS[name] if role in ("io", "state", "save")]
    arrays = [v for v in kwargs.values() if isinstance(v, np.ndarray)]
    g = next(c for _, c, r in _ARGS[name] if r == "w")
    scale = 8 * (1 + g * gain) ** len(sizes) * (1 + amax(*arrays))

    def check(res):
        if ret is None:
            assert res is None, f"{name}: expected None"
        else:
            got = res if isinstance(res, tuple) else (res,)
            exp = ret if isinstance(ret, tuple) else (ret,)
            assert len(got) == len(exp), f"{name}: expected {len(exp)} result(s)"
            for i, (g, e) in enumerate(zip(got, exp)):
                close(f"{name} result {i}", g, e, dt, scale)
        for arg in written:
            if kwargs[arg] is not None:
                close(f"{name} {arg}", kwargs[arg], ref_kw[arg], dt, scale)

    floats = [a for a, _, _ in _ARGS[name]]
    required = [a for a, _, role in _ARGS[name] if role not in ("save", "b")]
    other = F64 if dt == F32 else F32
    bad = {
        "batch_sizes sum too large": {"batch_sizes": sizes + (1,)},
        "batch_sizes increasing": {"batch_sizes": (1, 2) + sizes},
        "batch_sizes with a zero": {"batch_sizes": sizes + (0,)},
        "batch_sizes beyond the state": {"batch_sizes": (B + 1,) + sizes},
        "batch_sizes=str": {"batch_sizes": "ab"},
        "batch_sizes=float items": {"batch_sizes": tuple(float(s) for s in sizes) or (1.5,)},
        "batch_sizes=2-D array": {"batch_sizes": np.ones((1, 1), np.int64)},
        "reverse=str": {"reverse": "yes"},
        f"{required[-1]} mixed dtype": {required[-1]: kwargs[required[-1]].astype(other)},
    }
    first_state = next(a for a, _, r in _ARGS[name] if r == "state")
    for arg, cols, role in _ARGS[name]:
        shape = {"b": (cols * H,), "w": (cols * H, H), "state": (B, cols * H)}.get(role, (N, cols * H))
        if role == "b":
            bad[f"{arg} one too many"] = {arg: np.ones((cols * H + 1,), dt)}
            continue
        if arg != first_state:  # the first state's rows are B, which may exceed the steps' sizes
            bad[f"{arg} one row too many"] = {arg: np.ones((shape[0] + 1, shape[1]), dt)}
        bad[f"{arg} one column too many"] = {arg: np.ones((shape[0], shape[1] + 1), dt)}
        if role in ("io", "state", "save"):
            ro = np.ones(shape, dt)
            ro.setflags(write=False)
            bad[f"{arg} read-only"] = {arg: ro}
            if shape[0] > 1 and shape[1] > 0:
                bad[f"{arg} not contiguous"] = {arg: np.ones((shape[0], 2 * shape[1]), dt)[:, ::2]}
            w_size = g * H * H
            if role != "save" and 0 < w_size <= kwargs[arg].size:
                # w_hh in the memory of an array written in place: the loop would read
                # weights it has overwritten
                bad[f"w_hh overlaps {arg}"] = {"w_hh": kwargs[arg].reshape(-1)[:w_size].reshape(g * H, H)}
    if name.startswith("rnn"):
        bad["nonlinearity=sigmoid"] = {"nonlinearity": "sigmoid"}
    return Case(name, kwargs, check, floats=floats, ndims={a: ((1,) if r == "b" else (2,)) for a, _, r in _ARGS[name]},
                required=required, bad=bad, inplace=tuple(written))


def register(builder):
    builder(*_ARGS)(build)
