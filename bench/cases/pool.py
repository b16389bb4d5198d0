"""``python -m dlkern bench pool``: max/avg pooling (2x2 s2 and ResNet's 3x3 s2 p1) beside
PyTorch on channels_last and NCHW and NumPy (float32 strided-window slices, from
``_numpy_peers``); every library is checked against ``dlkern.reference`` in float64."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench import load_module
from dlkern.bench.harness import Bench, Case, f64, rng_for

peers = load_module("_numpy_peers")


POOL_CASES = [(op, k, p) for op in ("max", "avg") for k, p in ((2, 0), (3, 1))]


def pool_case(op: str, k: int, p: int, mode: str, shape: tuple) -> Case:
    s, backward = 2, mode == "fwd+bwd"
    n, c, h, w = shape
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def make():
        x = rng_for(0, *shape).uniform(-1.0, 1.0, shape).astype(np.float32)
        return dict(x=x, g=rng_for(1, *shape).uniform(-1.0, 1.0, (n, c, oh, ow)).astype(np.float32))

    def chain(module, x, g):
        if not backward:
            return getattr(module, f"{op}_pool2d")(x, k, s, p)
        if op == "max":
            _, idx = module.max_pool2d(x, k, s, p, return_indices=True)
            return module.max_pool2d_backward(g, idx, x.shape)
        module.avg_pool2d(x, k, s, p)
        return module.avg_pool2d_backward(g, x.shape, k, s, p)

    def torch_call(layout):
        def make_call(inp, torch):
            pool = getattr(torch.nn.functional, f"{op}_pool2d")
            fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
            tx, tg = (torch.from_numpy(inp[key]).contiguous(memory_format=fmt) for key in ("x", "g"))
            if not backward:
                def forward():
                    with torch.no_grad():
                        return pool(tx, k, s, p)
                return forward
            leaf = tx.detach().clone().requires_grad_()

            def both():
                leaf.grad = None
                pool(leaf, k, s, p).backward(tg)
                return leaf.grad
            return both
        return make_call

    traffic = n * c * (h * w + oh * ow) * 4 * (2 if backward else 1) + (16 * n * c * oh * ow if backward and op == "max"
                                                                        else 0)
    return Case((f"{op} {k}x{k} s{s}" + (f" p{p}" if p else ""), mode), make, {
        "dlkern": lambda inp, torch: lambda: chain(ops, inp["x"], inp["g"]),
        "torch_cl": torch_call("cl"), "torch": torch_call("nchw"),
        "numpy": lambda inp, torch: lambda: chain(peers, inp["x"], inp["g"]),
    }, lambda inp: (chain(reference, *f64(inp["x"], inp["g"])),), traffic, tol=1e-5,
        compare=lambda got, want, inp, i: float(np.abs(got - want).max()),
        target=("torch", 3.0) if backward else ("torch_cl", 1.0))


def pool_cases(args):
    shape = (2, 4, 20, 20) if args.quick else tuple(int(v) for v in args.shape.split(","))
    if len(shape) != 4 or min(shape) < 1:
        raise SystemExit("error: --shape needs N,C,H,W >= 1")
    return [pool_case(op, k, p, mode, shape) for mode in ("fwd", "fwd+bwd") for op, k, p in POOL_CASES]


def pool_probe():
    x = rng_for(0).uniform(-1.0, 1.0, (32, 64, 56, 56)).astype(np.float32)
    return lambda: ops.max_pool2d(x, 3, 2, 1)


BENCH = Bench(
    "pool", "max/avg pooling forward and forward+backward against PyTorch and NumPy",
    "dlkern pooling benchmark", ("case", "mode"), pool_cases, probe=pool_probe, repeats=5, quick_repeats=1,
    chart=True, extra_arguments=lambda p: p.add_argument("--shape", default="32,64,56,56",
                                                         help="N,C,H,W (default 32,64,56,56)"),
    labels={"dlkern": "dlkern", "torch_cl": "PyTorch channels_last", "torch": "PyTorch NCHW", "numpy": "NumPy"},
    method=["- **method**: float32; dlkern reads NCHW; 'PyTorch channels_last' runs on a channels_last copy, "
            "'PyTorch NCHW' on x itself (fwd under no_grad, fwd+bwd autograd); NumPy is float32 strided "
            "slices, one whole-array op per window tap (bench/cases/_numpy_peers.py). Every library allocates its "
            "outputs on every call and is checked against dlkern.reference in float64.",
            "- **GB/s** = minimum traffic / time: fwd reads x and writes y; fwd+bwd adds reading grad_out and "
            "writing dx, and for max writing and reading the int64 indices. Targets: fwd >= 1.0x PyTorch "
            "channels_last; fwd+bwd >= 3x PyTorch NCHW."])
