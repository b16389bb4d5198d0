"""``python -m dlkern bench rnn``: the recurrent cells' fused pointwise kernels
(``ops.lstm_cell_forward`` / ``_backward``, ``ops.gru_cell_forward`` / ``_backward``: one
time step of nn.LSTM / nn.GRU around its matrix products) beside the float32 NumPy
composition a NumPy user would write and the same composition in PyTorch ops (PyTorch's
CPU LSTM/GRU cells run such a chain of pointwise ops; its fused cell kernels are CUDA-only)."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench.harness import Bench, Case, f64, pick, rng_for, shapes_arg


def _sig(x, lib):
    return 1 / (1 + lib.exp(-x)) if lib is np else x.sigmoid()


def _blocks(x, k):
    return np.split(x, k, axis=1) if isinstance(x, np.ndarray) else x.chunk(k, 1)


def _cat(parts, lib):
    return np.concatenate(parts, axis=1) if lib is np else lib.cat(parts, 1)


# The four steps over a namespace `lib` (numpy or torch): plain elementwise chains.
def lstm_fwd(lib, gates, c_prev):
    i, f, g, o = _blocks(gates, 4)
    i, f, g, o = _sig(i, lib), _sig(f, lib), lib.tanh(g), _sig(o, lib)
    c = f * c_prev + i * g
    return o * lib.tanh(c), c, _cat([i, f, g, o], lib)


def lstm_bwd(lib, dh, dc, act, c_prev, c):
    i, f, g, o = _blocks(act, 4)
    tc = lib.tanh(c)
    dct = dc + dh * o * (1 - tc * tc)
    return _cat([dct * g * i * (1 - i), dct * c_prev * f * (1 - f), dct * i * (1 - g * g), dh * tc * o * (1 - o)],
                lib), dct * f


def gru_fwd(lib, gi, gh, h_prev):
    (ir, iz, i_n), (hr, hz, hn) = _blocks(gi, 3), _blocks(gh, 3)
    r, z = _sig(ir + hr, lib), _sig(iz + hz, lib)
    n = lib.tanh(i_n + r * hn)
    return (1 - z) * n + z * h_prev, _cat([r, z, n, hn], lib)


def gru_bwd(lib, dh, saved, h_prev):
    r, z, n, hn = _blocks(saved, 4)
    dn = dh * (1 - z) * (1 - n * n)
    dz = dh * (h_prev - n) * z * (1 - z)
    dr = dn * hn * r * (1 - r)
    return _cat([dr, dz, dn], lib), _cat([dr, dz, dn * r], lib), dh * z


_STEPS = {("lstm", "forward"): ("lstm_cell_forward", lstm_fwd, 11), ("lstm", "backward"): ("lstm_cell_backward", lstm_bwd, 13),
          ("gru", "forward"): ("gru_cell_forward", gru_fwd, 12), ("gru", "backward"): ("gru_cell_backward", gru_bwd, 13)}


def _inputs(cell, op, b, h):
    """float32 inputs of the call, in its argument order (a backward's saved tensors come
    from the float64 reference forward)."""
    rng = rng_for(b, h, cell == "gru", op == "backward")
    u = lambda *s, lim=3.0: rng.uniform(-lim, lim, s).astype(np.float32)  # noqa: E731
    if cell == "lstm":
        gates, c_prev = u(b, 4 * h), u(b, h, lim=2.0)
        if op == "forward":
            return [gates, c_prev]
        _, c, act = reference.lstm_cell_forward(gates, c_prev)
        return [u(b, h, lim=1.0), u(b, h, lim=1.0), act.astype(np.float32), c_prev, c.astype(np.float32)]
    gi, gh, h_prev = u(b, 3 * h), u(b, 3 * h), u(b, h, lim=1.0)
    if op == "forward":
        return [gi, gh, h_prev]
    _, saved = reference.gru_cell_forward(gi, gh, h_prev)
    return [u(b, h, lim=1.0), saved.astype(np.float32), h_prev]


def rnn_case(cell: str, op: str, b: int, h: int) -> Case:
    name, chain, arrays = _STEPS[(cell, op)]
    kernel, ref = getattr(ops, name), getattr(reference, name)

    def make():
        return {f"a{k}": a for k, a in enumerate(_inputs(cell, op, b, h))}

    def args(inp):
        return [inp[f"a{k}"] for k in range(len(inp))]

    def torch_chain(inp, torch):
        t = [torch.from_numpy(a) for a in args(inp)]
        return lambda: chain(torch, *t)

    libraries = {
        "dlkern": lambda inp, torch: (lambda a=args(inp): kernel(*a)),
        "numpy": lambda inp, torch: (lambda a=args(inp): chain(np, *a)),
        "torch": torch_chain,
    }
    return Case((cell, op, f"{b}x{h}"), make, libraries, lambda inp: ref(*f64(*args(inp))), arrays * b * h * 4.0,
                tol=1e-5, compare=lambda got, want, inp, i: float((np.abs(got - want) / (np.abs(want) + 1)).max()),
                outputs=("out0", "out1", "out2"))


BENCH = Bench(
    "rnn", "fused LSTM/GRU cell pointwise steps, forward and backward, against NumPy and PyTorch compositions",
    "dlkern recurrent-cell benchmark", ("cell", "op", "BxH"),
    lambda args: [rnn_case(cell, op, *s) for cell in ("lstm", "gru")
                  for s in pick(args, [(32, 256), (64, 256), (32, 512), (64, 512)], [(32, 256)])
                  for op in ("forward", "backward")],
    extra_arguments=shapes_arg("BxH", "32x256,64x256,32x512,64x512"),
    method=["- **method**: float32, gate pre-activations uniform in [-3, 3], fresh outputs. NumPy and PyTorch: "
            "the formulas of csrc/cpu/rnn.h as a chain of elementwise ops (sigmoid as 1 / (1 + exp(-x)) in NumPy, "
            "`Tensor.sigmoid` in PyTorch). GB/s counts every input read and output written once "
            "(LSTM forward 11 B H floats, backward 13; GRU forward 12, backward 13)."])
