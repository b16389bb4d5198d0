"""``python -m dlkern bench norm``: layer_norm, rms_norm, group_norm and batch_norm,
forward and forward+backward, beside PyTorch and NumPy in float32. The forward+backward
chain of ``*_forward`` and ``*_backward`` runs on ``dlkern.ops``, on the float32 NumPy
peers (``_numpy_peers``) and on ``dlkern.reference`` with float64 copies (the oracle every
library is checked against): all three share signatures."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench import load_module
from dlkern.bench.harness import Bench, Case, f64, leaves, matmul_probe, parse_list, rng_for

peers = load_module("_numpy_peers")


NORM_OPS = ("layer_norm", "rms_norm", "group_norm", "batch_norm")
GROUPS = 32


def norm_chain(module, op: str, x, w, b, dy, backward: bool):
    """(y,) or (y, dx, dweight) of one op through ``module`` (dlkern.ops, peers or reference)."""
    size = {"layer_norm": (x.shape[-1],), "rms_norm": (x.shape[-1],), "group_norm": (GROUPS,), "batch_norm": ()}[op]
    c = w.shape[0]
    args = {"layer_norm": (x, *size, w, b), "rms_norm": (x, *size, w), "group_norm": (x, *size, w, b),
            "batch_norm": (x, np.zeros(c, x.dtype), np.ones(c, x.dtype), w, b, True)}[op]
    y, *stats = getattr(module, op + "_forward")(*args)
    if not backward:
        return (y,)
    extra = (True,) if op == "batch_norm" else ()
    return (y,) + tuple(getattr(module, op + "_backward")(dy, x, *size, w, *stats, *extra)[:2])


def norm_case(op: str, shape: tuple, backward: bool) -> Case:
    def make():
        rng = rng_for(7, *shape)
        c = shape[-1] if op in ("layer_norm", "rms_norm") else shape[1]
        return dict(x=rng.standard_normal(shape, dtype=np.float32) + np.float32(0.5),
                    w=(1.0 + 0.1 * rng.standard_normal(c)).astype(np.float32),
                    b=(0.1 * rng.standard_normal(c)).astype(np.float32),
                    dy=rng.standard_normal(shape, dtype=np.float32))

    def args(inp, cast=lambda *a: a):
        return cast(inp["x"], inp["w"], inp["b"], inp["dy"])

    def torch_call(inp, torch):
        F = torch.nn.functional
        c = inp["w"].shape[0]
        f = {"layer_norm": lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b),
             "rms_norm": lambda x, w, b: F.rms_norm(x, x.shape[-1:], w),
             "group_norm": lambda x, w, b: F.group_norm(x, GROUPS, w, b),
             "batch_norm": lambda x, w, b: F.batch_norm(x, torch.zeros(c), torch.ones(c), w, b, training=True)}[op]
        tx, tw, tb, tdy = (torch.from_numpy(a) for a in args(inp))
        if not backward:
            def forward():
                with torch.no_grad():
                    return (f(tx, tw, tb),)
            return forward

        def forward_backward():
            x, w, b = leaves(torch, *args(inp)[:3])
            y = f(x, w, b)
            y.backward(tdy)
            return y.detach(), x.grad, w.grad
        return forward_backward

    return Case((op, "x".join(map(str, shape)), "fwd+bwd" if backward else "fwd"), make, {
        "dlkern": lambda inp, torch: lambda: norm_chain(ops, op, *args(inp), backward),
        "torch": torch_call,
        "numpy": lambda inp, torch: lambda: norm_chain(peers, op, *args(inp), backward),
    }, lambda inp: norm_chain(reference, op, *args(inp, f64), backward), (5 if backward else 2) * 4.0 * np.prod(shape),
        tol=2e-4, compare=lambda got, want, inp, i: float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)),
        outputs=("y", "dx", "dweight"), target=("torch", 1.2) if op in ("layer_norm", "rms_norm") else None)


def norm_cases(args):
    rows = [(256, 1024)] if args.quick else [(4096, 1024), (32768, 768)]
    conv = (4, 64, 28, 28) if args.quick else (32, 64, 56, 56)
    unknown = [op for op in args.ops if op not in NORM_OPS]
    if unknown:
        raise SystemExit(f"error: unknown op(s) {unknown}")
    return [norm_case(op, shape, backward) for op in NORM_OPS if op in args.ops
            for shape in (rows if op in ("layer_norm", "rms_norm") else [conv]) for backward in (False, True)]


BENCH = Bench(
    "norm", "layer/rms/group/batch norm, forward and forward+backward, against PyTorch and NumPy",
    "dlkern normalisation benchmark", ("op", "shape", "pass"), norm_cases, probe=matmul_probe,
    quick_repeats=2, extra_arguments=lambda p: p.add_argument(
        "--ops", type=parse_list, default=list(NORM_OPS), help="ops to run, comma separated (default all four)"),
    method=["- **method**: float32; every call allocates its outputs, as the public APIs do. PyTorch fwd+bwd is "
            "autograd; dlkern is *_forward + *_backward; NumPy is the vectorised float32 forms (bench/cases/_numpy_peers.py). All "
            f"are checked against dlkern.reference in float64. group_norm uses {GROUPS} groups; batch_norm is training mode.",
            "- **GB/s** = compulsory bytes / time: forward 2 x |x| (read x, write y), forward+backward 5 x |x| "
            "(+ read dy, x, write dx)."])
