"""``python -m dlkern bench rnn``: the recurrent layers.

- Module rows: nn.RNN / nn.LSTM / nn.GRU forward (inference, no graph) and
  forward+backward beside PyTorch's modules loaded with the same weights (one state_dict
  of seeded NumPy arrays loaded into both), both checked first against a float64 NumPy
  re-derivation written here (the reference cells of dlkern.reference, driven through
  time, with backpropagation through time for every gradient).
- Kernel rows: the recurrent cells' fused pointwise kernels (``ops.lstm_cell_forward`` /
  ``_backward``, ``ops.gru_cell_forward`` / ``_backward``: one time step of nn.LSTM /
  nn.GRU around its matrix products) beside the float32 NumPy composition a NumPy user
  would write and the same composition in PyTorch ops (PyTorch's CPU LSTM/GRU cells run
  such a chain of pointwise ops; its fused cell kernels are CUDA-only)."""

from __future__ import annotations

import numpy as np

import argparse

import dlkern
from dlkern import ops, reference
from dlkern.bench.harness import Bench, Case, f64, matmul_probe, max_relative, pick, rng_for, shapes_arg


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
                outputs=("out0", "out1", "out2"), section="Cell kernels")


# ----------------------------------------------------------------------------- module rows

MODULE_SHAPES = [(32, 128, 128, 256, 2), (64, 64, 512, 512, 1)]  # (B, T, input, hidden, layers): issue 14's
QUICK_MODULE_SHAPES = [(8, 16, 32, 64, 2)]
_MODULES = {"RNN": 1, "LSTM": 4, "GRU": 3}  # gate blocks per layer
_TARGETS = {"forward": 1.2, "forward+backward": 1.5}  # issue 14: dlkern/PyTorch wanted


def parse_module_shapes(text: str):
    """'BxTxINxHxL,...' -> [(B, T, in, H, L)]; 'none' -> []."""
    if text.strip().lower() == "none":
        return []
    shapes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            shape = tuple(int(v) for v in part.lower().split("x"))
        except ValueError:
            shape = ()
        if len(shape) != 5 or min(shape) < 1:
            raise argparse.ArgumentTypeError(f"module shape {part!r}: expected BxTxINPUTxHIDDENxLAYERS, positive")
        shapes.append(shape)
    return shapes


def module_flops(mode: str, b: int, t: int, n_in: int, h: int, layers: int) -> float:
    """The GEMM FLOPs of one forward: per layer 2 T B G (in + H), G = gates * H (the
    pointwise cell work is not counted)."""
    g = _MODULES[mode] * h
    return float(sum(2 * t * b * g * ((n_in if k == 0 else h) + h) for k in range(layers)))


def _param_names(layers: int):
    return [f"{n}_l{k}" for k in range(layers) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def module_inputs(mode: str, b: int, t: int, n_in: int, h: int, layers: int):
    """x (T, B, in), the output's gradient dy and the parameters (PyTorch's names and init
    distribution, uniform +-1/sqrt(H)) as float32 arrays."""
    rng = rng_for(b, t, n_in, h, layers, _MODULES[mode])
    g, bound = _MODULES[mode] * h, 1 / np.sqrt(h)
    shapes = {"weight_ih": lambda k: (g, n_in if k == 0 else h), "weight_hh": lambda k: (g, h),
              "bias_ih": lambda k: (g,), "bias_hh": lambda k: (g,)}
    params = {name: rng.uniform(-bound, bound, shapes[name.rsplit("_", 1)[0]](int(name[-1]))).astype(np.float32)
              for name in _param_names(layers)}
    return dict(x=rng.standard_normal((t, b, n_in)).astype(np.float32),
                dy=rng.standard_normal((t, b, h)).astype(np.float32), params=params)


def reference_module(mode: str, inp, layers: int, backward: bool):
    """float64 NumPy: forward (y, h_n[, c_n]) or (y, dx, d<param> in _param_names order),
    the whole batch at once, one step at a time, through dlkern.reference's cells."""
    p = {k: np.asarray(v, np.float64) for k, v in inp["params"].items()}
    layer_in, tape, h_n, c_n = np.asarray(inp["x"], np.float64), [], [], []
    for k in range(layers):
        w_ih, w_hh, b_ih, b_hh = (p[f"{n}_l{k}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        t_len, b = layer_in.shape[:2]
        h = np.zeros((b, w_hh.shape[1]))
        c = np.zeros_like(h)
        gi = layer_in @ w_ih.T + b_ih
        out, steps = np.empty((t_len,) + h.shape), []
        for t in range(t_len):
            gh = h @ w_hh.T + b_hh
            if mode == "LSTM":
                h_new, c_new, act = reference.lstm_cell_forward(gi[t] + gh, c)
                steps.append((h, act, c, c_new))
                c = c_new
            elif mode == "GRU":
                h_new, saved = reference.gru_cell_forward(gi[t], gh, h)
                steps.append((h, saved))
            else:
                h_new = np.tanh(gi[t] + gh)
                steps.append((h, h_new))
            out[t], h = h_new, h_new
        tape.append((layer_in, steps))
        h_n.append(h)
        c_n.append(c)
        layer_in = out
    if not backward:
        return (layer_in, np.stack(h_n)) + ((np.stack(c_n),) if mode == "LSTM" else ())
    grads, dout = {}, np.asarray(inp["dy"], np.float64)
    for k in reversed(range(layers)):
        x, steps = tape[k]
        w_ih, w_hh = p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"]
        dh = np.zeros((x.shape[1], w_hh.shape[1]))
        dc = np.zeros_like(dh)
        dgi, dgh = np.empty(dout.shape[:2] + (w_hh.shape[0],)), np.empty(dout.shape[:2] + (w_hh.shape[0],))
        for t in reversed(range(len(steps))):
            dh = dh + dout[t]
            if mode == "LSTM":
                _, act, c_prev, c_t = steps[t]
                dgi[t], dc = reference.lstm_cell_backward(dh, dc, act, c_prev, c_t)
                dgh[t], direct = dgi[t], 0.0
            elif mode == "GRU":
                h_prev, saved = steps[t]
                dgi[t], dgh[t], direct = reference.gru_cell_backward(dh, saved, h_prev)
            else:
                dgi[t] = dgh[t] = dh * (1 - steps[t][1] ** 2)
                direct = 0.0
            dh = direct + dgh[t] @ w_hh
        hprev = np.stack([s[0] for s in steps])
        grads[f"weight_ih_l{k}"] = np.einsum("tbg,tbi->gi", dgi, x)
        grads[f"weight_hh_l{k}"] = np.einsum("tbg,tbh->gh", dgh, hprev)
        grads[f"bias_ih_l{k}"], grads[f"bias_hh_l{k}"] = dgi.sum(axis=(0, 1)), dgh.sum(axis=(0, 1))
        dout = dgi @ w_ih
    return (layer_in, dout) + tuple(grads[n] for n in _param_names(layers))


def module_call(lib, mode, inp, layers, backward):
    """The timed call in ``lib`` (dlkern or torch: the same API): a module built with the
    case's weights, run forward under no_grad, or forward and backward from fresh grads."""
    n_in, h = inp["x"].shape[2], inp["params"]["weight_hh_l0"].shape[1]
    m = getattr(lib.nn, mode)(n_in, h, num_layers=layers)
    m.load_state_dict({k: lib.from_numpy(v.copy()) for k, v in inp["params"].items()})
    x, dy = lib.from_numpy(inp["x"]), lib.from_numpy(inp["dy"])
    params = [getattr(m, n) for n in _param_names(layers)]
    if not backward:
        def forward():
            with lib.no_grad():
                y, state = m(x)
            return (y,) + (tuple(state) if mode == "LSTM" else (state,))
        return forward

    def train():
        m.zero_grad(set_to_none=True)
        xl = x.detach().requires_grad_()
        y, _ = m(xl)
        y.backward(dy)
        return (y, xl.grad) + tuple(q.grad for q in params)
    return train


def module_case(mode: str, op: str, b: int, t: int, n_in: int, h: int, layers: int) -> Case:
    backward = op == "forward+backward"
    libraries = {"dlkern": lambda inp, torch: module_call(dlkern, mode, inp, layers, backward),
                 "torch": lambda inp, torch: module_call(torch, mode, inp, layers, backward)}
    names = (("y", "dx") + tuple(f"d{n}" for n in _param_names(layers)) if backward
             else ("y", "h_n", "c_n"))
    # Every output relative to its own largest value: float32 through T steps and sums over
    # T B rows stays below 2.1e-6 (both libraries, 32x128x128x256x2); a wrong gate, step or
    # transpose errs by 1e-2 and more.
    return Case((mode, op, f"B{b} T{t} in{n_in} H{h} L{layers}"), lambda: module_inputs(mode, b, t, n_in, h, layers),
                libraries, lambda inp: reference_module(mode, inp, layers, backward),
                module_flops(mode, b, t, n_in, h, layers) * (3 if backward else 1), tol=3e-5,
                compare=max_relative, target=("torch", _TARGETS[op]), outputs=names, section="Modules",
                unit="GFLOP/s")


def cases(args):
    modules = args.modules if args.modules is not None else (QUICK_MODULE_SHAPES if args.quick else MODULE_SHAPES)
    rows = [module_case(mode, op, *s) for s in modules for mode in _MODULES for op in _TARGETS]
    if not args.no_kernels:
        rows += [rnn_case(cell, op, *s) for cell in ("lstm", "gru")
                 for s in pick(args, [(32, 256), (64, 256), (32, 512), (64, 512)], [(32, 256)])
                 for op in ("forward", "backward")]
    return rows


def extra_arguments(parser):
    shapes_arg("BxH", "32x256,64x256,32x512,64x512")(parser)
    parser.add_argument("--modules", type=parse_module_shapes, default=None,
                        help="module shapes BxTxINPUTxHIDDENxLAYERS, comma separated, or none (default "
                             "32x128x128x256x2,64x64x512x512x1; 8x16x32x64x2 with --quick)")
    parser.add_argument("--no-kernels", action="store_true", help="only the module rows")


BENCH = Bench(
    "rnn", "nn.RNN/LSTM/GRU forward and forward+backward against PyTorch with the same weights, and the fused "
    "LSTM/GRU cell pointwise steps against NumPy and PyTorch compositions",
    "dlkern recurrent-layer benchmark", ("cell", "op", "shape"), cases,
    extra_arguments=extra_arguments, probe=matmul_probe, repeats=5,
    method=["- **modules**: float32 nn.RNN (tanh) / nn.LSTM / nn.GRU, time-major input (T, B, in) from a standard "
            "normal, zero initial state, PyTorch's parameter names and init distribution (uniform +-1/sqrt(H)) drawn "
            "once and loaded into both libraries. **forward**: inference under `no_grad` (outputs y, h_n, c_n). "
            "**forward+backward**: `zero_grad`, forward with x requiring grad, `y.backward(dy)` (outputs y, dx and "
            "every parameter's gradient). Both libraries are checked against a float64 NumPy re-derivation "
            "(dlkern.reference's cells through time, backpropagation through time), each output relative to its "
            "largest value. **GFLOP/s** counts the GEMM FLOPs of the forward, per layer 2 T B G (in + H) with "
            "G = 1, 4, 3 H for RNN, LSTM, GRU, times 3 for forward+backward; the FMA peak is 117 GFLOP/s per core "
            "(MACHINE.md). Targets (issue 14): forward >= 1.2x PyTorch, forward+backward >= 1.5x. PyTorch's CPU "
            "LSTM runs oneDNN's fused RNN primitive (`aten::mkldnn_rnn_layer` and its backward, one call per "
            "layer); its GRU and RNN run `addmm` and pointwise ops per step.",
            "- **cell kernels**: float32, gate pre-activations uniform in [-3, 3], fresh outputs. NumPy and PyTorch: "
            "the formulas of csrc/cpu/rnn.h as a chain of elementwise ops (sigmoid as 1 / (1 + exp(-x)) in NumPy, "
            "`Tensor.sigmoid` in PyTorch). GB/s counts every input read and output written once "
            "(LSTM forward 11 B H floats, backward 13; GRU forward 12, backward 13)."])
