"""``python -m dlkern bench autograd``: the Python layer's cost beside PyTorch.

Three training-shaped workloads, forward + backward (``zero_grad``, model(x),
``.sum()``, ``.backward()``), dlkern beside PyTorch (CPU) and a hand-written NumPy
forward/backward (no autograd: the floor a framework adds its overhead to):

- ``linear8``: Linear(8, 8) at batch 1 -- almost pure per-op overhead;
- ``mlp8``: Linear-ReLU-Linear-ReLU-Linear, width 8, batch 1 -- per-op overhead over
  a 5-op graph;
- ``mlp784b1``: the MLP 784-256-256-10 at batch 1 -- small GEMV-shaped work plus overhead;
- ``mlp784``: the MLP 784-256-256-10 at batch 128 -- GEMM-bound.

The same float32 weights go to every library; before timing, each library's output and
parameter gradients are checked against the NumPy float64 forward/backward.
Speedup = peer time / dlkern time (> 1: dlkern faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Dict, List, Sequence

import numpy as np

import dlkern
import dlkern.nn as nn

from dlkern.bench import common, harness

DESCRIPTION = "autograd overhead and MLP forward+backward against PyTorch"

DEFAULT_OUT = harness.default_out("autograd")
DEFAULT_REPEATS = 7
QUICK_REPEATS = 3
LIBRARY_LABELS = {"dlkern": "dlkern", "numpy": "NumPy (manual backprop)", "torch": "PyTorch"}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    widths: tuple  # layer widths, input first
    batch: int
    threads: tuple  # thread counts it runs at by default
    note: str

    @property
    def label(self) -> str:
        return f"{self.name} ({'-'.join(map(str, self.widths))}, batch {self.batch})"


CASES = {
    "linear8": Case("linear8", (8, 8), 1, (1,), "per-call overhead"),
    "mlp8": Case("mlp8", (8, 8, 8, 8), 1, (1,), "per-call overhead, 3-layer MLP"),
    "mlp784b1": Case("mlp784b1", (784, 256, 256, 10), 1, (1,), "batch 1: matrix-vector work plus overhead"),
    "mlp784": Case("mlp784", (784, 256, 256, 10), 128, (1, 2), "GEMM-bound"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated subset of {', '.join(CASES)} (default: all)")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts for every case (default: 1 for the overhead cases, "
                             "1,2 for mlp784)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"samples per library (default {DEFAULT_REPEATS}, --quick {QUICK_REPEATS})")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--min-sample-ms", type=float, default=common.DEFAULT_MIN_SAMPLE_S * 1e3 * 5,
                        help="minimum duration of one timing sample (default %(default)s)")
    parser.add_argument("--settle-ms", type=float, default=common.DEFAULT_SETTLE_S * 1e3,
                        help="pause before each sample at more than 1 thread (default %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="markdown report path (default %(default)s)")


# ----------------------------------------------------------------------------- models

def make_weights(case: Case, seed: int = 0):
    """PyTorch-style uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights and biases."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(case.widths[:-1], case.widths[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        b = rng.uniform(-bound, bound, fan_out).astype(np.float32)
        layers.append((w, b))
    x = rng.standard_normal((case.batch, case.widths[0])).astype(np.float32)
    return layers, x


def dlkern_model(layers):
    mods = []
    for i, (w, b) in enumerate(layers):
        lin = nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data[...] = w
        lin.bias.data[...] = b
        mods.append(lin)
        if i < len(layers) - 1:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def torch_model(torch, layers):
    mods = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i < len(layers) - 1:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def numpy_step(layers, x):
    """Forward + backward of sum(MLP(x)) by hand; returns (output, [(dW, db), ...])."""
    acts = [x]
    h = x
    for i, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
        acts.append(h)
    out = h
    g = np.ones_like(out)
    grads = []
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        if i < len(layers) - 1:
            g = g * (acts[i + 1] > 0)
        grads.append((g.T @ acts[i], g.sum(0)))
        if i > 0:
            g = g @ w
    return out, grads[::-1]


# ----------------------------------------------------------------------------- validation

def validate(case: Case, layers, x, outputs: Dict[str, tuple]) -> None:
    layers64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in layers]
    ref_out, ref_grads = numpy_step(layers64, x.astype(np.float64))
    eps = float(np.finfo(np.float32).eps)
    for name, (out, grads) in outputs.items():
        # float32 sums of up to max(width, batch) terms of size ~1: a loose multiple of eps
        k = max(max(case.widths), case.batch)
        tol = 64 * eps * np.sqrt(k) * (1 + np.abs(ref_out).max())
        if out.shape != ref_out.shape or not np.allclose(out, ref_out, rtol=0, atol=tol):
            raise common.BenchValidationError(f"{name}: {case.name} output disagrees with the float64 reference")
        for i, ((gw, gb), (rw, rb)) in enumerate(zip(grads, ref_grads)):
            scale = 64 * eps * np.sqrt(k) * (1 + max(np.abs(rw).max(), np.abs(rb).max()))
            if not (np.allclose(gw, rw, rtol=1e-4, atol=scale) and np.allclose(gb, rb, rtol=1e-4, atol=scale)):
                raise common.BenchValidationError(f"{name}: {case.name} gradient of layer {i} disagrees "
                                                  f"with the float64 reference")


# ----------------------------------------------------------------------------- timing

@dataclasses.dataclass
class Measurement:
    case: Case
    threads: int
    library: str
    timing: common.Timing

    @property
    def us(self) -> float:
        return self.timing.median * 1e6


def bench_case(case: Case, n_threads: int, args, torch) -> List[Measurement]:
    layers, x = make_weights(case)
    model = dlkern_model(layers)
    xd = dlkern.tensor(x)

    def run_dlkern():
        model.zero_grad()
        model(xd).sum().backward()

    contenders = [common.Contender("dlkern", run_dlkern)]
    outputs = {}
    contenders.append(common.Contender("numpy", lambda: numpy_step(layers, x)))
    if torch is not None:
        tmodel = torch_model(torch, layers)
        tx = torch.from_numpy(x)

        def run_torch():
            tmodel.zero_grad(set_to_none=True)
            tmodel(tx).sum().backward()
        contenders.append(common.Contender("torch", run_torch))
    with common.pinned_threads(n_threads, torch):
        # validate: one step each, gradients read back
        model.zero_grad()
        out = model(xd)
        out.sum().backward()
        lins = [m for m in model if isinstance(m, nn.Linear)]
        outputs["dlkern"] = (out.data, [(m.weight.grad.data, m.bias.grad.data) for m in lins])
        outputs["numpy"] = numpy_step(layers, x)
        if torch is not None:
            tmodel.zero_grad(set_to_none=True)
            tout = tmodel(tx)
            tout.sum().backward()
            tl = [m for m in tmodel if isinstance(m, torch.nn.Linear)]
            outputs["torch"] = (tout.detach().numpy(), [(m.weight.grad.numpy(), m.bias.grad.numpy()) for m in tl])
        validate(case, layers, x, outputs)
        timings = common.measure_interleaved(contenders, args.repeats, n_threads, args.min_sample_ms / 1e3,
                                             args.settle_ms / 1e3)
    return [Measurement(case, n_threads, name, t) for name, t in timings.items()]


def scaling_probe():
    layers, x = make_weights(CASES["mlp784"])
    a = np.random.default_rng(1).standard_normal((512, 512)).astype(np.float32)
    out = np.empty_like(a)
    return lambda: dlkern.ops.matmul(a, a, out=out)


# ----------------------------------------------------------------------------- report

def rows(results: Sequence[List[Measurement]]):
    headers = ["case", "threads", "dlkern us", "PyTorch us", "NumPy manual us", "PyTorch/dlkern", "NumPy/dlkern",
               "dlkern spread"]
    out = []
    for group in results:
        by = {m.library: m for m in group}
        d = by["dlkern"]
        t, n = by.get("torch"), by.get("numpy")
        out.append([d.case.label, d.threads, f"{d.us:.1f}", f"{t.us:.1f}" if t else "-", f"{n.us:.1f}" if n else "-",
                    common.format_ratio(t.timing.median if t else None, d.timing.median),
                    common.format_ratio(n.timing.median if n else None, d.timing.median),
                    f"{d.timing.spread:.0%}"])
    return headers, out


def run(args) -> int:
    repeats = args.repeats if args.repeats is not None else (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    if repeats < 1:
        raise SystemExit("error: --repeats must be at least 1")
    args.repeats = repeats
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"error: unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    forced = None
    if args.threads:
        try:
            forced = tuple(int(t) for t in args.threads.split(","))
        except ValueError:
            raise SystemExit(f"error: --threads {args.threads!r}: expected integers like 1,2") from None
    torch, torch_missing = common.optional_import("torch")
    if torch is None:
        print(f"PyTorch not available, benchmarking without it ({torch_missing})")
    notes, results = [], []
    started = time.perf_counter()
    checked = set()
    for name in names:
        case = CASES[name]
        for n_threads in forced or case.threads:
            if n_threads > 1 and n_threads not in checked:
                checked.add(n_threads)
                s = common.check_thread_scaling(scaling_probe(), n_threads, settle_s=args.settle_ms / 1e3)
                notes.append(s.describe())
                print(f"[thread check] {s.describe()}", flush=True)
            group = bench_case(case, n_threads, args, torch)
            results.append(group)
            by = {m.library: m for m in group}
            line = f"{case.label} {n_threads} thr: dlkern {by['dlkern'].us:.1f} us"
            if "torch" in by:
                line += f", PyTorch {by['torch'].us:.1f} us ({by['torch'].us / by['dlkern'].us:.2f}x)"
            print(line, flush=True)
    harness.write_table_report(args.out, "dlkern autograd benchmark", [
        "- **method**: float32; one step = zero_grad, forward, .sum(), .backward(); the same weights in every "
        "library, outputs and gradients checked against a float64 NumPy forward/backward first; median of "
        f"{args.repeats} samples per library, each >= {args.min_sample_ms:g} ms of back-to-back steps, libraries "
        "interleaved sample by sample.",
        "- **ratios** = peer time / dlkern time (> 1: dlkern faster). Targets: PyTorch/dlkern >= 1.0 for "
        "every row (overhead no worse than PyTorch's; batch-128 forward+backward at least as fast).",
        "- **NumPy (manual backprop)** is the same math written by hand without autograd: the floor."],
        notes, *rows(results), common.describe_machine(torch, torch_missing), started)
    return 0
