"""``python -m dlkern bench conv``: conv2d forward and forward+backward beside PyTorch
(oneDNN) and NumPy (float32 im2col + BLAS matmul, from ``_numpy_peers``); outputs checked
against ``dlkern.reference`` on float64 copies, in units of each output's terms' size."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench import load_module
from dlkern.bench.harness import Bench, Case, f64, leaves, parse_list, rng_for

peers = load_module("_numpy_peers")

EPS32 = float(np.finfo(np.float32).eps)


CONV_SHAPES = [  # name, N, C, H=W, O, k, stride, padding, target vs PyTorch (forward+backward only: "fb")
    ("LeNet conv1", 64, 1, 28, 6, 5, 1, 0, ("fb", 2.0)),
    ("ResNet 3x3", 32, 64, 56, 64, 3, 1, 1, ("both", 1.0)),
    ("ResNet 3x3 s2", 32, 128, 28, 128, 3, 2, 1, ("both", 1.0)),
]


def conv_case(name, n, c, hw, o, k, s, p, target, backward: bool) -> Case:
    ho = (hw + 2 * p - k) // s + 1

    def make():
        rng = rng_for(n, c, hw, o, k)
        shapes = dict(x=(n, c, hw, hw), w=(o, c, k, k), b=(o,), gy=(n, o, ho, ho))
        return {key: rng.uniform(-1, 1, shape).astype(np.float32) for key, shape in shapes.items()}

    def chain(module, x, w, b, gy):
        y = (module.conv2d(x, w, b, s, p),)
        return y + tuple(module.conv2d_backward(gy, x, w, s, p)) if backward else y

    def expected(inp):
        x, w, b, gy = f64(inp["x"], inp["w"], inp["b"], inp["gy"])
        # Each output's rounding scale: its terms' size (the same sums over |inputs|) x sqrt(K) eps.
        inp["scale"] = [m * 8 * np.sqrt(terms) * EPS32 for m, terms in zip(
            chain(reference, abs(x), abs(w), abs(b), abs(gy)), (c * k * k + 1, o * k * k, n * ho * ho, n * ho * ho))]
        return chain(reference, x, w, b, gy)

    def torch_call(inp, torch):
        F = torch.nn.functional
        tx, tw, tb, tgy = (torch.from_numpy(inp[key]) for key in ("x", "w", "b", "gy"))
        if not backward:
            def forward():
                with torch.no_grad():
                    return F.conv2d(tx, tw, tb, s, p)
            return forward

        def both():
            x, w, b = leaves(torch, inp["x"], inp["w"], inp["b"])
            y = F.conv2d(x, w, b, s, p)
            y.backward(tgy)
            return y.detach(), x.grad, w.grad, b.grad
        return both

    label = f"N{n} C{c} {hw}x{hw}, {o}x{k}x{k}" + (f" s{s}" if s != 1 else "") + (f" p{p}" if p else "")
    keys = ("x", "w", "b", "gy")
    return Case((f"{name} ({label})", "forward+backward" if backward else "forward"), make, {
        "dlkern": lambda inp, torch: lambda: chain(ops, *(inp[key] for key in keys)),
        "torch": torch_call,
        "numpy": lambda inp, torch: lambda: chain(peers, *(inp[key] for key in keys)),
    }, expected, 2.0 * n * o * ho * ho * c * k * k * (3 if backward else 1), tol=1.0,
        compare=lambda got, want, inp, i: float((np.abs(got - want) / np.maximum(inp["scale"][i], 1e-30)).max()),
        target=("torch", target[1]) if backward or target[0] == "both" else None)


def conv_cases(args):
    shapes = CONV_SHAPES[:1] if args.quick else CONV_SHAPES
    wanted = parse_list(args.shapes or "")
    if wanted:
        shapes = [sh for sh in shapes if any(w in sh[0].lower() for w in wanted)]
        if not shapes:
            raise SystemExit(f"--shapes {args.shapes!r} matches none of: " + ", ".join(sh[0] for sh in CONV_SHAPES))
    if args.no_numpy and "numpy" in args.peers:
        args.peers.remove("numpy")
    return [conv_case(*shape, backward) for shape in shapes for backward in (False, True)]


def conv_arguments(parser):
    parser.add_argument("--no-numpy", action="store_true", help="leave out the NumPy im2col peer")
    parser.add_argument("--shapes", default="", help="only shapes whose name contains one of these comma-separated "
                                                     "strings (case-insensitive), e.g. 's2' or 'ResNet 3x3 s2,LeNet'")


def conv_probe():
    x = rng_for(1).uniform(-1, 1, (8, 64, 56, 56)).astype(np.float32)
    w = rng_for(2).uniform(-1, 1, (64, 64, 3, 3)).astype(np.float32)
    return lambda: ops.conv2d(x, w, padding=1)


BENCH = Bench(
    "conv", "conv2d forward and forward+backward against PyTorch and NumPy im2col",
    "dlkern conv2d benchmark", ("shape", "pass"), conv_cases, unit="GFLOP/s", probe=conv_probe, repeats=5,
    quick_repeats=2, extra_arguments=conv_arguments, labels={"dlkern": "dlkern", "torch": "PyTorch",
                                                             "numpy": "NumPy im2col"},
    method=["- **method**: float32 NCHW; each call allocates its outputs; forward+backward = y, then dx, dweight, "
            "dbias (PyTorch: autograd with x, weight, bias requiring grad). NumPy: float32 im2col + BLAS matmul "
            "(bench/cases/_numpy_peers.py). Checked against dlkern.reference in float64, in "
            "units of each output's terms' size. FLOPs: forward 2*N*O*Ho*Wo*C*kH*kW, forward+backward 3x."])
