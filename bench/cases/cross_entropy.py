"""``python -m dlkern bench cross_entropy``: the fused cross-entropy forward + backward
(mean reduction) beside PyTorch's ``F.cross_entropy(...).backward()`` and NumPy in float32
(``_numpy_peers``); dlkern runs once allocating the gradient, once into ``out=``. Every
library is checked against ``dlkern.reference`` in float64."""

from __future__ import annotations

import numpy as np

from dlkern import ops, reference
from dlkern.bench import load_module
from dlkern.bench.harness import Bench, Case, f64, pick, rng_for, sampled_rows, shapes_arg

peers = load_module("_numpy_peers")

EPS32 = float(np.finfo(np.float32).eps)


def cross_entropy_case(n: int, c: int) -> Case:
    def make():
        rng = rng_for(n, c)
        return dict(x=rng.standard_normal((n, c)).astype(np.float32), t=rng.integers(0, c, n),
                    rows=sampled_rows(rng, n, 32))

    def expected(inp):
        x, t, rows = inp["x"], inp["t"], inp["rows"]
        fwd, bwd = reference.cross_entropy_forward, reference.cross_entropy_backward
        # The mean needs every row: float64 in chunks of 256 rows, so no N x C float64 copy.
        loss = sum(fwd(*f64(x[i:i + 256]), t[i:i + 256])[0] * len(t[i:i + 256]) for i in range(0, n, 256)) / n
        x64 = f64(x[rows])[0]
        return np.float64(loss), bwd(1.0, x64, t[rows], fwd(x64, t[rows])[1]) * len(rows) / n

    def compare(got, want, inp, index):  # the loss to 1e-4 relative, the gradient to 64 eps / N
        return float(abs(got - want) / (1e-4 * max(1.0, abs(want))) if index == 0
                     else np.abs(got - want).max() / (64 * EPS32 / n))

    def dlkern_step(out):
        def make_call(inp, torch):
            x, t, dx, one = inp["x"], inp["t"], np.empty_like(inp["x"]) if out else None, np.float32(1.0)

            def step():
                loss, lse = ops.cross_entropy_forward(x, t)
                return loss, ops.cross_entropy_backward(one, x, t, lse, out=dx)
            return step
        return make_call

    def torch_step(inp, torch):
        tx, tt = torch.from_numpy(inp["x"]), torch.from_numpy(inp["t"])

        def step():
            leaf = tx.detach().requires_grad_()
            loss = torch.nn.functional.cross_entropy(leaf, tt)
            loss.backward()
            return loss.detach(), leaf.grad
        return step

    def numpy_step(inp, torch):
        def step():
            loss, lse = peers.cross_entropy_forward(inp["x"], inp["t"])
            return loss, peers.cross_entropy_backward(np.float32(1.0), inp["x"], inp["t"], lse)
        return step

    return Case((f"{n}x{c}",), make, {"dlkern": dlkern_step(False), "dlkern_out": dlkern_step(True),
                                      "torch": torch_step, "numpy": numpy_step},
                expected, 3.0 * n * c * 4, tol=1.0, compare=compare, outputs=("loss", "gradient"),
                check=lambda got, inp: (got[0], got[1][inp["rows"]]), target=("torch", 1.2))


def cross_entropy_probe():
    rng = rng_for(1)
    x, t = rng.standard_normal((512, 32000)).astype(np.float32), rng.integers(0, 32000, 512)
    return lambda: ops.cross_entropy_forward(x, t)


BENCH = Bench(
    "cross_entropy", "fused cross-entropy forward+backward against PyTorch and NumPy",
    "dlkern cross-entropy benchmark", ("shape NxC",),
    lambda args: [cross_entropy_case(*s) for s in pick(args, [(4096, 32000)], [(256, 4000)])],
    extra_arguments=shapes_arg("NxC", "4096x32000"), probe=cross_entropy_probe, repeats=5,
    method=["- **method**: float32 standard-normal logits, int64 targets, reduction='mean'; one step = loss + "
            "d loss / d logits. dlkern: `cross_entropy_forward` + `cross_entropy_backward` (gradient allocated "
            "fresh, or into a preallocated `out=`); PyTorch: `F.cross_entropy(x, t).backward()` on a leaf "
            "sharing the NumPy buffer; NumPy: float32 log-sum-exp (row max subtracted), NLL, "
            "softmax - one-hot (bench/cases/_numpy_peers.py). All are checked against dlkern.reference in float64.",
            "- **GB/s** = 3 x N x C x 4 bytes (logits read by forward and backward, gradient written) / time."])
