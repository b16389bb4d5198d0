"""``python -m dlkern bench gelu``: the fused GELU kernels (tanh approximation and exact),
forward and backward, beside PyTorch (``F.gelu``, ``aten.gelu_backward``) and, for the tanh
form, the in-place NumPy passes it replaced (NumPy has no erf)."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench.harness import Bench, Case, f64, pick, rng_for, shapes_arg


_C, _K = float(np.sqrt(2 / np.pi)), 0.044715


def numpy_gelu(x, g=None):
    """The in-place float32 passes a NumPy user would write (backward when g is given)."""
    t = x * x
    t *= _K * _C
    t += _C
    t *= x
    np.tanh(t, out=t)
    if g is None:
        t += 1
        t *= x
        t *= 0.5
        return t
    u = x * x
    u *= 1.5 * _K * _C
    u += 0.5 * _C
    s = t * t
    s -= 1
    s *= x
    s *= u
    t *= 0.5
    t += 0.5
    t -= s
    t *= g
    return t


def gelu_case(kind: str, op: str, rows: int, cols: int) -> Case:
    forward = op == "forward"
    name = f"gelu_{kind}"   # the ops / reference names: gelu_tanh, gelu_erf
    approximate = "tanh" if kind == "tanh" else "none"

    def make():
        rng = rng_for(rows, cols)
        return dict(x=(rng.standard_normal((rows, cols)) * 3).astype(np.float32),
                    g=rng.standard_normal((rows, cols)).astype(np.float32))

    def expected(inp):
        x, g = f64(inp["x"], inp["g"])
        return (getattr(reference, name)(x) if forward else getattr(reference, f"{name}_backward")(g, x),)

    def torch_gelu(inp, torch):
        tx, tg = torch.from_numpy(inp["x"]), torch.from_numpy(inp["g"])
        if forward:
            return lambda: torch.nn.functional.gelu(tx, approximate=approximate)
        return lambda: torch.ops.aten.gelu_backward(tg, tx, approximate=approximate)

    # Relative to |x| + 1: the 0.5 x (1 + tanh) form (PyTorch's, NumPy's) cancels for negative x.
    fwd, bwd = getattr(ops, name), getattr(ops, f"{name}_backward")
    libraries = {
        "dlkern": lambda inp, torch: ((lambda: fwd(inp["x"])) if forward else (lambda: bwd(inp["g"], inp["x"]))),
        "torch": torch_gelu,
    }
    if kind == "tanh":
        libraries["numpy"] = lambda inp, torch: lambda: numpy_gelu(inp["x"], None if forward else inp["g"])
    return Case((kind, op, f"{rows}x{cols}"), make, libraries, expected, (2 if forward else 3) * rows * cols * 4.0, tol=1e-5,
        compare=lambda got, want, inp, i: float((np.abs(got - want) / (np.abs(inp["x"]) + 1)).max()))


BENCH = Bench(
    "gelu", "fused GELU (tanh approximation and exact), forward and backward, against PyTorch and NumPy",
    "dlkern GELU benchmark", ("gelu", "op", "shape"),
    lambda args: [gelu_case(kind, op, *s) for kind in ("tanh", "erf")
                  for s in pick(args, [(256, 768), (1024, 1024), (2048, 768), (16384, 3072)], [(256, 768)])
                  for op in ("forward", "backward")],
    extra_arguments=shapes_arg("ROWSxCOLS", "256x768,1024x1024,2048x768,16384x3072"),
    method=["- **method**: float32, standard-normal * 3 input, fresh outputs (as in training). PyTorch: "
            "`F.gelu(x, approximate=...)` and `aten.gelu_backward`; NumPy (tanh only; NumPy has no erf): "
            "in-place float32 passes. The exact GELU's float32 kernels are erf_poly.h's rationals (forward "
            "max |err| / (|x| + 1) 1.7e-7, backward max |err| 2.3e-7, measured over float32 inputs in [-12, 12]; "
            "PyTorch's: 2.7e-7, 2.9e-7). GB/s "
            "counts x in, y out (forward) and grad, x in, dx out (backward)."])
