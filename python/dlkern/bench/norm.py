"""``python -m dlkern bench norm``: layer_norm, rms_norm, group_norm and batch_norm,
forward and forward+backward, dlkern beside PyTorch (CPU) and a NumPy reference.

All libraries run in one process on the same float32 inputs at the same thread count.
Every result (output, and for forward+backward dx and dweight) is checked against a
float64 NumPy computation before anything is timed. Each call allocates its outputs,
as the public APIs do (torch.nn.functional has no out= for these ops).

GB/s counts the compulsory traffic of the fused op: forward reads x and writes y
(2 x |x| bytes); forward+backward adds reading dy and x and writing dx (5 x |x|).
Speedup = peer time / dlkern time (> 1: dlkern faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

import dlkern

from . import common

DESCRIPTION = "layer/rms/group/batch norm, forward and forward+backward, against PyTorch and NumPy"
DEFAULT_OUT = "bench/results/norm.md"
DEFAULT_REPEATS = 7
QUICK_REPEATS = 2
TARGET_RATIO = 1.2  # layer_norm / rms_norm vs PyTorch (dlkern issue 3)
LIBRARY_LABELS = {"dlkern": "dlkern", "torch": "PyTorch", "numpy": "NumPy"}
SCALING_PROBE_SIZE = 512


@dataclasses.dataclass(frozen=True)
class Case:
    op: str            # layer_norm, rms_norm, group_norm, batch_norm
    shape: tuple
    backward: bool     # forward+backward (else forward only)

    @property
    def label(self) -> str:
        return f"{self.op} {'x'.join(map(str, self.shape))} {'fwd+bwd' if self.backward else 'fwd'}"

    def bytes_moved(self) -> int:
        return (5 if self.backward else 2) * int(np.prod(self.shape)) * 4


ROW_SHAPES = [(4096, 1024), (32768, 768)]
CONV_SHAPE = (32, 64, 56, 56)
GROUPS = 32


def default_cases(quick: bool) -> List[Case]:
    rows = [(256, 1024)] if quick else ROW_SHAPES
    conv = (4, 64, 28, 28) if quick else CONV_SHAPE
    cases = []
    for op in ("layer_norm", "rms_norm"):
        for shape in rows:
            cases += [Case(op, shape, False), Case(op, shape, True)]
    for op in ("group_norm", "batch_norm"):
        cases += [Case(op, conv, False), Case(op, conv, True)]
    return cases


# ----------------------------------------------------------------------------- NumPy reference (also the float64 oracle)


def np_forward(op, x, w, b):
    """Float64-capable NumPy reference: returns (y, saved) for np_backward."""
    if op in ("layer_norm", "rms_norm"):
        axes = (-1,)
        bshape = (x.shape[-1],)
    elif op == "group_norm":
        n, c = x.shape[:2]
        xg = x.reshape(n, GROUPS, -1)
        mu = xg.mean(-1, keepdims=True)
        d = xg - mu
        rstd = 1.0 / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5)
        xhat = (d * rstd).reshape(x.shape)
        bs = (1, c) + (1,) * (x.ndim - 2)
        return xhat * w.reshape(bs) + b.reshape(bs), (xhat, rstd)
    else:  # batch_norm, training
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if op == "rms_norm":
        rstd = 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + np.finfo(x.dtype).eps)
        xhat = x * rstd
        return xhat * w.reshape(bshape), (xhat, rstd)
    mu = x.mean(axis=axes, keepdims=True)
    d = x - mu
    rstd = 1.0 / np.sqrt((d * d).mean(axis=axes, keepdims=True) + 1e-5)
    xhat = d * rstd
    return xhat * w.reshape(bshape) + b.reshape(bshape), (xhat, rstd)


def np_backward(op, dy, x, w, saved):
    """(dx, dweight) of the reference forward."""
    xhat, rstd = saved
    if op in ("layer_norm", "rms_norm"):
        g = dy * w
        mg = g.mean(-1, keepdims=True) if op == "layer_norm" else 0.0
        dx = rstd * (g - mg - xhat * (g * xhat).mean(-1, keepdims=True))
        return dx, (dy * xhat).sum(axis=0)
    c = x.shape[1]
    bs = (1, c) + (1,) * (x.ndim - 2)
    red = (0,) + tuple(range(2, x.ndim))
    g = dy * w.reshape(bs)
    if op == "group_norm":
        n = x.shape[0]
        gg, xh = g.reshape(n, GROUPS, -1), xhat.reshape(n, GROUPS, -1)
        dx = (rstd * (gg - gg.mean(-1, keepdims=True) - xh * (gg * xh).mean(-1, keepdims=True))).reshape(x.shape)
    else:
        dx = rstd * (g - g.mean(axis=red, keepdims=True) - xhat * (g * xhat).mean(axis=red, keepdims=True))
    return dx, (dy * xhat).sum(axis=red)


# ----------------------------------------------------------------------------- contenders


def make_inputs(case: Case):
    rng = np.random.default_rng([7, *case.shape])
    x = rng.standard_normal(case.shape, dtype=np.float32) + np.float32(0.5)
    c = case.shape[-1] if case.op in ("layer_norm", "rms_norm") else case.shape[1]
    w = (1.0 + 0.1 * rng.standard_normal(c)).astype(np.float32)
    b = (0.1 * rng.standard_normal(c)).astype(np.float32)
    dy = rng.standard_normal(case.shape, dtype=np.float32)
    return x, w, b, dy


def dlkern_call(case: Case, x, w, b, dy) -> Callable[[], tuple]:
    from dlkern import ops
    d = x.shape[-1]
    if case.op == "layer_norm":
        fwd = lambda: ops.layer_norm_forward(x, d, w, b)
        bwd = lambda s: ops.layer_norm_backward(dy, x, d, w, s[1], s[2])
    elif case.op == "rms_norm":
        fwd = lambda: ops.rms_norm_forward(x, d, w)
        bwd = lambda s: ops.rms_norm_backward(dy, x, d, w, s[1])
    elif case.op == "group_norm":
        fwd = lambda: ops.group_norm_forward(x, GROUPS, w, b)
        bwd = lambda s: ops.group_norm_backward(dy, x, GROUPS, w, s[1], s[2])
    else:
        rm, rv = np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
        fwd = lambda: ops.batch_norm_forward(x, rm, rv, w, b, True)
        bwd = lambda s: ops.batch_norm_backward(dy, x, w, s[1], s[2], True)
    if case.backward:
        return lambda: (lambda s: (s[0],) + tuple(bwd(s)[:2]))(fwd())
    return lambda: (fwd()[0],)


def torch_call(case: Case, torch, x, w, b, dy) -> Callable[[], tuple]:
    F = torch.nn.functional
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
    d = x.shape[-1]
    rm, rv = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
    ops = {
        "layer_norm": lambda x_, w_, b_: F.layer_norm(x_, (d,), w_, b_),
        "rms_norm": lambda x_, w_, b_: F.rms_norm(x_, (d,), w_),
        "group_norm": lambda x_, w_, b_: F.group_norm(x_, GROUPS, w_, b_),
        "batch_norm": lambda x_, w_, b_: F.batch_norm(x_, rm, rv, w_, b_, training=True),
    }
    f = ops[case.op]
    if not case.backward:
        def forward():
            with torch.no_grad():
                return (f(tx, tw, tb),)
        return forward
    # Leaves that need gradients (fresh each call: no accumulation into .grad).
    def forward_backward():
        xr, wr, br = tx.detach().requires_grad_(), tw.detach().requires_grad_(), tb.detach().requires_grad_()
        y = f(xr, wr, br)
        y.backward(tdy)
        return y.detach(), xr.grad, wr.grad
    return forward_backward


def numpy_call(case: Case, x, w, b, dy) -> Callable[[], tuple]:
    if case.backward:
        def fb():
            y, saved = np_forward(case.op, x, w, b)
            return (y,) + np_backward(case.op, dy, x, w, saved)
        return fb
    return lambda: (np_forward(case.op, x, w, b)[0],)


def as_numpy(a) -> np.ndarray:
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def validate(name: str, case: Case, got: tuple, expected: tuple) -> None:
    """Relative to the largest reference value: a wrong index or formula errs by O(1)."""
    for what, g, e in zip(("y", "dx", "dweight"), got, expected):
        g = as_numpy(g).astype(np.float64)
        if g.shape != e.shape:
            raise common.BenchValidationError(f"{name} {case.label}: {what} has shape {g.shape}, expected {e.shape}")
        err = np.abs(g - e).max() / max(np.abs(e).max(), 1e-30)
        if not err <= 2e-4:
            raise common.BenchValidationError(f"{name} {case.label}: {what} off by {err:.2e} (relative to max)")


# ----------------------------------------------------------------------------- measurement


@dataclasses.dataclass
class Measurement:
    case: Case
    n_threads: int
    library: str
    timing: common.Timing

    @property
    def seconds(self) -> float:
        return self.timing.median

    @property
    def gbytes_per_s(self) -> float:
        return self.case.bytes_moved() / self.seconds / 1e9


def bench_case(case: Case, n_threads: int, args, torch_module) -> List[Measurement]:
    x, w, b, dy = make_inputs(case)
    x64, w64, b64, dy64 = (a.astype(np.float64) for a in (x, w, b, dy))
    y64, saved = np_forward(case.op, x64, w64, b64)
    expected = (y64,) + (np_backward(case.op, dy64, x64, w64, saved) if case.backward else ())
    del saved
    contenders = [common.Contender("dlkern", dlkern_call(case, x, w, b, dy))]
    if torch_module is not None:
        contenders.append(common.Contender("torch", torch_call(case, torch_module, x, w, b, dy)))
    if "numpy" in args.peers:
        contenders.append(common.Contender("numpy", numpy_call(case, x, w, b, dy)))
    with common.pinned_threads(n_threads, torch_module):
        for contender in contenders:
            validate(contender.name, case, contender.run(), expected)
        del expected, y64
        timings = common.measure_interleaved(contenders, args.repeats, n_threads,
                                             args.min_sample_ms / 1e3, args.settle_ms / 1e3)
    return [Measurement(case, n_threads, name, t) for name, t in timings.items()]


def check_scaling(n_threads: int, args, when: str) -> common.ThreadScaling:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((SCALING_PROBE_SIZE, SCALING_PROBE_SIZE), dtype=np.float32)
    out = np.empty_like(a)
    scaling = common.check_thread_scaling(lambda: dlkern.ops.matmul(a, a, out=out), n_threads,
                                          settle_s=args.settle_ms / 1e3)
    print(f"[thread check {when} the {n_threads}-thread run, dlkern matmul {SCALING_PROBE_SIZE}^3] "
          f"{scaling.describe()}", flush=True)
    return scaling


def by_library(group: Sequence[Measurement]) -> Dict[str, Measurement]:
    return {m.library: m for m in group}


def progress_line(group: List[Measurement]) -> str:
    found = by_library(group)
    d = found["dlkern"]
    parts = []
    for m in group:
        text = f"{LIBRARY_LABELS[m.library]} {m.seconds * 1e3:.2f} ms {m.gbytes_per_s:.1f} GB/s"
        if m.library != "dlkern":
            text += f" (dlkern {common.format_ratio(m.seconds, d.seconds)})"
        parts.append(text)
    return f"[{d.n_threads}T] {d.case.label:>34}: " + " | ".join(parts)


# ----------------------------------------------------------------------------- reports


def target_note(group: List[Measurement]) -> str:
    found = by_library(group)
    d = found["dlkern"]
    if d.case.op not in ("layer_norm", "rms_norm") or "torch" not in found:
        return "-"
    ratio = found["torch"].seconds / d.seconds
    return f"{'met' if ratio >= TARGET_RATIO else 'MISSED'} (>= {TARGET_RATIO}x)"


def summary_table(results: List[List[Measurement]]):
    libraries = []
    for group in results:
        for m in group:
            if m.library not in libraries:
                libraries.append(m.library)
    peers = [name for name in libraries if name != "dlkern"]
    headers = ["op shape pass", "threads"]
    for name in libraries:
        headers += [f"{LIBRARY_LABELS[name]} ms", f"{LIBRARY_LABELS[name]} GB/s"]
    headers += [f"dlkern/{LIBRARY_LABELS[name]}" for name in peers] + ["target vs PyTorch"]
    rows = []
    for group in results:
        found = by_library(group)
        d = found["dlkern"]
        row = [d.case.label, d.n_threads]
        for name in libraries:
            m = found.get(name)
            row += [f"{m.seconds * 1e3:.2f}", f"{m.gbytes_per_s:.1f}"] if m else ["-", "-"]
        row += [common.format_ratio(found[name].seconds if name in found else None, d.seconds) for name in peers]
        row.append(target_note(group))
        rows.append(row)
    return headers, rows


def detail_table(results: List[List[Measurement]]):
    headers = ["op shape pass", "threads", "library", "median ms", "spread", "calls/sample", "GB/s"]
    rows = []
    for group in results:
        for m in group:
            rows.append([m.case.label, m.n_threads, LIBRARY_LABELS[m.library], f"{m.seconds * 1e3:.3f}",
                         f"{100 * m.timing.spread:.0f}%", m.timing.calls_per_sample, f"{m.gbytes_per_s:.1f}"])
    return headers, rows


def write_markdown(path, results, notes, machine, args) -> None:
    lines = [
        "# dlkern normalisation benchmark",
        "",
        f"- **date**: {common.timestamp()}",
        f"- **command**: `{common.command_line()}`",
        f"- **load before the run** (1-min load average): {args.load_before}",
        f"- **method**: float32; each library's output (and dx, dweight for fwd+bwd) checked against a float64 "
        f"NumPy computation first; median of {args.repeats} samples per library, each >= {args.min_sample_ms:g} ms "
        f"of back-to-back calls, libraries alternating sample by sample. Every call allocates its outputs. "
        f"PyTorch fwd+bwd is autograd (forward with requires_grad + backward); dlkern is *_forward + *_backward. "
        f"group_norm uses {GROUPS} groups; batch_norm is training mode (batch statistics, running stats updated).",
        "- **GB/s** = compulsory bytes / time: forward 2 x |x| (read x, write y), forward+backward 5 x |x| "
        "(+ read dy, x, write dx), float32. **speedup** dlkern/X = X's time / dlkern's time (> 1: dlkern faster).",
        "",
    ]
    lines += [f"> {note}\n" for note in notes]
    lines += ["## Summary", ""] + common.markdown_table(*summary_table(results)) + [""]
    lines += ["## Details", ""] + common.markdown_table(*detail_table(results)) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(machine) + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


# ----------------------------------------------------------------------------- entry point


def parse_thread_counts(text: str) -> List[int]:
    try:
        counts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"threads {text!r}: expected positive integers like 1,2")
    return counts


def parse_list(text: str) -> List[str]:
    return [p.strip().lower() for p in text.split(",") if p.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=parse_thread_counts, default=[1, 2],
                        help="thread counts, comma separated (default 1,2)")
    parser.add_argument("--ops", type=parse_list, default=["layer_norm", "rms_norm", "group_norm", "batch_norm"],
                        help="ops to run, comma separated (default all four)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed samples per library (default {DEFAULT_REPEATS}, {QUICK_REPEATS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="small shapes, few repeats: a smoke test")
    parser.add_argument("--peers", type=parse_list, default=["torch", "numpy"],
                        help="peers, comma separated (default torch,numpy; torch skipped if absent)")
    parser.add_argument("--min-sample-ms", type=float, default=common.DEFAULT_MIN_SAMPLE_S * 1e3)
    parser.add_argument("--settle-ms", type=float, default=common.DEFAULT_SETTLE_S * 1e3)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")


def run(args) -> int:
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        raise SystemExit("error: --repeats must be at least 1")
    unknown = [op for op in args.ops if op not in ("layer_norm", "rms_norm", "group_norm", "batch_norm")]
    if unknown:
        raise SystemExit(f"error: unknown op(s) {unknown}")
    try:
        args.load_before = f"{__import__('os').getloadavg()[0]:.2f}"
    except OSError:
        args.load_before = "unknown"
    torch_module, torch_missing = (common.optional_import("torch") if "torch" in args.peers
                                   else (None, "not requested (--peers)"))
    if "torch" in args.peers and torch_module is None:
        print(f"PyTorch not available, benchmarking without it ({torch_missing})")
    cases = [c for c in default_cases(args.quick) if c.op in args.ops]
    notes, results = [], []
    started = time.perf_counter()
    for n_threads in args.threads:
        if n_threads > 1:
            notes.append("Before: " + check_scaling(n_threads, args, "before").describe())
        for case in cases:
            group = bench_case(case, n_threads, args, torch_module)
            print(progress_line(group), flush=True)
            results.append(group)
        if n_threads > 1:
            notes.append("After: " + check_scaling(n_threads, args, "after").describe())
    out_path = common.resolve_output_path(args.out)
    write_markdown(out_path, results, notes, common.describe_machine(torch_module, torch_missing), args)
    print()
    print(common.text_table(*summary_table(results)))
    print(f"\nspeedup dlkern/X = X's time / dlkern's time (> 1: dlkern faster); "
          f"{time.perf_counter() - started:.1f} s\nwrote {out_path}")
    return 0
