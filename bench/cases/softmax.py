"""``python -m dlkern bench softmax``: softmax and log_softmax over the last axis beside
PyTorch (``torch._softmax(..., out=)``) and the float32 NumPy a user would write, each
writing into a preallocated output; checked against float64 on sampled rows."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench.harness import Bench, Case, f64, pick, rng_for, sampled_rows, shapes_arg

EPS32 = float(np.finfo(np.float32).eps)


def numpy_softmax(x, out, log):
    """The float32 NumPy a NumPy user would write, into a preallocated output."""
    np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    if log:
        out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
    else:
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
    return out


def softmax_case(op: str, rows: int, cols: int) -> Case:
    log = op == "log_softmax"

    def make():
        rng = rng_for(rows, cols)
        return dict(x=(rng.standard_normal((rows, cols)) * 4).astype(np.float32), rows=sampled_rows(rng, rows, 64))

    def compare(got, want, inp, index):  # relative, but log-probabilities near 0 in absolute terms
        return float((np.abs(got - want) / (np.maximum(abs(want), 1.0) if log else abs(want) + 1e-30)).max())

    def torch_softmax(inp, torch):
        tx, fn = torch.from_numpy(inp["x"]), torch._log_softmax if log else torch._softmax
        out = torch.empty_like(tx)  # preallocated: a fresh 100 MB output would page-fault on every call
        return lambda: fn(tx, -1, False, out=out)

    def preallocated(call):
        def make_call(inp, torch):
            out = np.empty_like(inp["x"])
            return lambda: call(inp["x"], out)
        return make_call

    return Case((op, f"{rows}x{cols}"), make, {
        "dlkern": preallocated(lambda x, out: getattr(ops, op)(x, -1, out=out)),
        "torch": torch_softmax,
        "numpy": preallocated(lambda x, out: numpy_softmax(x, out, log)),
    }, lambda inp: (getattr(reference, op)(f64(inp["x"][inp["rows"]])[0]),), 2.0 * rows * cols * 4,
        tol=8 * np.sqrt(cols) * EPS32, compare=compare, check=lambda got, inp: (got[0][inp["rows"]],),
        target=("torch", 1.2))


def softmax_probe():
    x = rng_for(1).standard_normal((4096, 1024)).astype(np.float32)
    out = np.empty_like(x)
    return lambda: ops.softmax(x, -1, out=out)


BENCH = Bench(
    "softmax", "softmax / log_softmax over the last axis against PyTorch and NumPy",
    "dlkern softmax benchmark", ("op", "shape"),
    lambda args: [softmax_case(op, *s) for s in pick(args, [(4096, 1024), (32768, 768)], [(256, 1024)])
                  for op in ("softmax", "log_softmax")],
    extra_arguments=shapes_arg("ROWSxCOLS", "4096x1024,32768x768"), probe=softmax_probe, chart=True,
    method=["- **method**: float32, standard-normal * 4 input, over the last axis into a preallocated output "
            "(PyTorch: `torch._softmax(x, -1, False, out=)`); NumPy is the float32 max, subtract, exp, sum, "
            "divide. GB/s = (input read + output written) / time; checked on sampled rows."])
