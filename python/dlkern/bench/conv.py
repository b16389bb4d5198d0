"""``python -m dlkern bench conv``: dlkern's conv2d beside PyTorch (oneDNN) and a NumPy
im2col + BLAS reference, forward and forward+backward.

All libraries run in one process on the same inputs at the same thread count. Each
library's outputs (y; dx, dweight, dbias) are checked against a float64 im2col
computation before it is timed. Speedup = peer time / dlkern time (> 1: dlkern faster).
FLOPs: forward 2*N*O*Ho*Wo*C/groups*kH*kW; forward+backward three times that.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Dict, List, Optional

import numpy as np

import dlkern

from . import common

DESCRIPTION = "conv2d forward and forward+backward against PyTorch and NumPy im2col"

DEFAULT_REPEATS = 5
DEFAULT_OUT = "bench/results/conv.md"
LIBRARY_LABELS = {"dlkern": "dlkern", "torch": "PyTorch", "numpy": "NumPy im2col"}
# Rounding of a length-K float32 dot product relative to sum |terms|: ~sqrt(K) eps.
VALIDATION_SAFETY = 8.0


@dataclasses.dataclass(frozen=True)
class ConvShape:
    name: str
    n: int
    c: int
    hw: int
    o: int
    k: int
    stride: int = 1
    padding: int = 0
    target: str = ""     # the brief's target, as text for the report

    @property
    def x_shape(self):
        return (self.n, self.c, self.hw, self.hw)

    @property
    def w_shape(self):
        return (self.o, self.c, self.k, self.k)

    @property
    def out_hw(self) -> int:
        return (self.hw + 2 * self.padding - self.k) // self.stride + 1

    @property
    def label(self) -> str:
        s = f"N{self.n} C{self.c} {self.hw}x{self.hw}, {self.o}x{self.k}x{self.k}"
        if self.stride != 1:
            s += f" s{self.stride}"
        if self.padding:
            s += f" p{self.padding}"
        return s

    def forward_flops(self) -> float:
        return 2.0 * self.n * self.o * self.out_hw ** 2 * self.c * self.k * self.k


SHAPES = [
    ConvShape("LeNet conv1", 64, 1, 28, 6, 5, target="fwd+bwd >= 2x PyTorch"),
    ConvShape("ResNet 3x3", 32, 64, 56, 64, 3, 1, 1, target=">= 1.0x PyTorch"),
    ConvShape("ResNet 3x3 s2", 32, 128, 28, 128, 3, 2, 1, target=">= 1.0x PyTorch"),
]
PASSES = ("forward", "forward+backward")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", default="1,2", help="thread counts, comma separated (default 1,2)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed samples per library")
    parser.add_argument("--quick", action="store_true", help="only the LeNet shape, 2 repeats: a smoke test")
    parser.add_argument("--no-numpy", action="store_true", help="leave out the (slow) NumPy reference")
    parser.add_argument("--shapes", default="",
                        help="only shapes whose name contains one of these comma-separated strings "
                             "(case-insensitive), e.g. 's2' or 'ResNet 3x3 s2,LeNet'")
    parser.add_argument("--min-sample-ms", type=float, default=common.DEFAULT_MIN_SAMPLE_S * 1e3)
    parser.add_argument("--settle-ms", type=float, default=common.DEFAULT_SETTLE_S * 1e3)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")


# ----------------------------------------------------------------------------- NumPy reference


def im2col(x, k, stride, padding):
    """(C*k*k, N*Ho*Wo) columns, rows ordered (c, i, j) as the weight flattens."""
    n, c = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = win.shape[2:4]
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(c * k * k, n * ho * wo), ho, wo


def numpy_forward(x, w, b, stride, padding):
    cols, ho, wo = im2col(x, w.shape[2], stride, padding)
    y = w.reshape(w.shape[0], -1) @ cols
    y = y.reshape(w.shape[0], x.shape[0], ho, wo).transpose(1, 0, 2, 3)
    return y + b[None, :, None, None]


def numpy_backward(gy, x, w, stride, padding):
    o, c, k, _ = w.shape
    n, _, h, wd = x.shape
    cols, ho, wo = im2col(x, k, stride, padding)
    g2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)
    dw = (g2 @ cols.T).reshape(w.shape)
    dcols = (w.reshape(o, -1).T @ g2).reshape(c, k, k, n, ho, wo)
    dxp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), x.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i: i + stride * (ho - 1) + 1: stride, j: j + stride * (wo - 1) + 1: stride] += \
                dcols[:, i, j].transpose(1, 0, 2, 3)
    dx = dxp[:, :, padding: padding + h, padding: padding + wd]
    return dx, dw, gy.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------- contenders


def make_inputs(shape: ConvShape):
    rng = np.random.default_rng([shape.n, shape.c, shape.hw, shape.o, shape.k])
    x = rng.uniform(-1, 1, shape.x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, shape.w_shape).astype(np.float32)
    b = rng.uniform(-1, 1, shape.o).astype(np.float32)
    gy = rng.uniform(-1, 1, (shape.n, shape.o, shape.out_hw, shape.out_hw)).astype(np.float32)
    return x, w, b, gy


def contenders(shape: ConvShape, pass_name: str, inputs, torch_module, with_numpy: bool):
    """name -> callable returning (y,) or (y, dx, dw, db) as NumPy arrays (or tensors)."""
    x, w, b, gy = inputs
    s, p = shape.stride, shape.padding
    ops = dlkern.ops
    out: Dict[str, object] = {}
    if pass_name == "forward":
        out["dlkern"] = lambda: (ops.conv2d(x, w, b, s, p),)
    else:
        out["dlkern"] = lambda: (ops.conv2d(x, w, b, s, p),) + tuple(ops.conv2d_backward(gy, x, w, s, p))
    if torch_module is not None:
        torch = torch_module
        tx, tw, tb, tgy = (torch.from_numpy(a) for a in (x, w, b, gy))
        if pass_name == "forward":
            def torch_forward():
                with torch.no_grad():
                    return (torch.nn.functional.conv2d(tx, tw, tb, s, p),)
            out["torch"] = torch_forward
        else:
            rx, rw, rb = (t.clone().requires_grad_() for t in (tx, tw, tb))

            def torch_both():
                rx.grad = rw.grad = rb.grad = None
                y = torch.nn.functional.conv2d(rx, rw, rb, s, p)
                y.backward(tgy)
                return y.detach(), rx.grad, rw.grad, rb.grad
            out["torch"] = torch_both
    if with_numpy:
        if pass_name == "forward":
            out["numpy"] = lambda: (numpy_forward(x, w, b, s, p),)
        else:
            out["numpy"] = lambda: (numpy_forward(x, w, b, s, p),) + numpy_backward(gy, x, w, s, p)
    return out


def as_numpy(a) -> np.ndarray:
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)


def validate(name: str, shape: ConvShape, results, reference, n_threads: int) -> None:
    """Each output against float64, in units of its terms' size (sum |terms|) and sqrt(K) eps."""
    labels = ("y", "dx", "dweight", "dbias")
    for label, got, (want, magnitude, k) in zip(labels, results, reference):
        got = as_numpy(got).astype(np.float64)
        if got.shape != want.shape:
            raise common.BenchValidationError(f"{LIBRARY_LABELS[name]} conv {shape.name}: {label} has shape "
                                              f"{got.shape}, expected {want.shape}")
        err = float((np.abs(got - want) / np.maximum(magnitude, 1e-30)).max())
        tol = VALIDATION_SAFETY * np.sqrt(k) * np.finfo(np.float32).eps
        if not err <= tol:
            raise common.BenchValidationError(
                f"{LIBRARY_LABELS[name]} conv {shape.name} at {n_threads} thread(s): {label} is WRONG "
                f"(max |err| / sum|terms| = {err:.3g} > {tol:.3g}); not timing it")


def float64_reference(shape: ConvShape, inputs, with_backward: bool):
    x, w, b, gy = (a.astype(np.float64) for a in inputs)
    s, p = shape.stride, shape.padding
    ax, aw, agy = np.abs(x), np.abs(w), np.abs(gy)
    ref = [(numpy_forward(x, w, b, s, p), numpy_forward(ax, aw, np.abs(b), s, p), shape.c * shape.k ** 2 + 1)]
    if with_backward:
        dx, dw, db = numpy_backward(gy, x, w, s, p)
        mx, mw, mb = numpy_backward(agy, ax, aw, s, p)
        reduction = shape.n * shape.out_hw ** 2
        ref += [(dx, mx, shape.o * shape.k ** 2), (dw, mw, reduction), (db, mb, reduction)]
    return ref


# ----------------------------------------------------------------------------- measuring


@dataclasses.dataclass
class Row:
    shape: ConvShape
    pass_name: str
    n_threads: int
    timings: Dict[str, common.Timing]

    def flops(self) -> float:
        return self.shape.forward_flops() * (1 if self.pass_name == "forward" else 3)

    def gflops(self, name: str) -> float:
        return self.flops() / self.timings[name].median / 1e9

    def ratio(self, name: str) -> str:
        if name not in self.timings:
            return "-"
        return common.format_ratio(self.timings[name].median, self.timings["dlkern"].median)


def bench_one(shape, pass_name, n_threads, args, torch_module, inputs, reference) -> Row:
    runs = contenders(shape, pass_name, inputs, torch_module, not args.no_numpy)
    with common.pinned_threads(n_threads, torch_module):
        for name, run in runs.items():
            validate(name, shape, run(), reference, n_threads)
        timings = common.measure_interleaved([common.Contender(k, v) for k, v in runs.items()], args.repeats,
                                             n_threads, args.min_sample_ms / 1e3, args.settle_ms / 1e3)
    return Row(shape, pass_name, n_threads, timings)


def scaling_probe():
    x = np.random.default_rng(1).uniform(-1, 1, (8, 64, 56, 56)).astype(np.float32)
    w = np.random.default_rng(2).uniform(-1, 1, (64, 64, 3, 3)).astype(np.float32)
    return lambda: dlkern.ops.conv2d(x, w, padding=1)


def summary(rows: List[Row]):
    names = [n for n in ("dlkern", "torch", "numpy") if any(n in r.timings for r in rows)]
    headers = ["shape", "pass", "threads"] + [f"{LIBRARY_LABELS[n]} ms" for n in names]
    headers += [f"{LIBRARY_LABELS[n]} GFLOP/s" for n in names]
    headers += [f"dlkern/{LIBRARY_LABELS[n]}" for n in names if n != "dlkern"] + ["target"]
    table = []
    for r in rows:
        line = [f"{r.shape.name} ({r.shape.label})", r.pass_name, r.n_threads]
        line += [f"{r.timings[n].median * 1e3:.2f}" if n in r.timings else "-" for n in names]
        line += [f"{r.gflops(n):.1f}" if n in r.timings else "-" for n in names]
        line += [r.ratio(n) for n in names if n != "dlkern"]
        target = r.shape.target
        if "fwd+bwd" in target and r.pass_name == "forward":
            target = "-"
        line.append(target or "-")
        table.append(line)
    return headers, table


def write_markdown(path, rows, notes, machine, args) -> None:
    lines = [
        "# dlkern conv2d benchmark",
        "",
        f"- **date**: {common.timestamp()}",
        f"- **command**: `{common.command_line()}`",
        "- **method**: float32 NCHW; every library's outputs checked against float64 im2col first; "
        f"median of {args.repeats} samples per library, each >= {args.min_sample_ms:g} ms of back-to-back "
        "calls, libraries alternating sample by sample; each call allocates its outputs (as all three "
        "libraries do in normal use). forward+backward = y, then dx, dweight, dbias "
        "(PyTorch: autograd backward with x, weight, bias requiring grad).",
        "- **speedup** dlkern/X = X's time / dlkern's time: above 1 means dlkern is faster.",
        "",
    ]
    lines += [f"> {note}\n" for note in notes]
    lines += ["## Results", ""] + common.markdown_table(*summary(rows)) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(machine) + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def run(args) -> int:
    thread_counts = [int(t) for t in str(args.threads).split(",") if t.strip()]
    shapes = SHAPES[:1] if args.quick else SHAPES
    wanted = [w.strip().lower() for w in str(getattr(args, "shapes", "") or "").split(",") if w.strip()]
    if wanted:
        shapes = [sh for sh in shapes if any(w in sh.name.lower() for w in wanted)]
        if not shapes:
            raise SystemExit(f"--shapes {args.shapes!r} matches none of: " + ", ".join(sh.name for sh in SHAPES))
    if args.quick:
        args.repeats = min(args.repeats, 2)
    torch_module, torch_missing = common.optional_import("torch")
    if torch_module is None:
        print(f"PyTorch not available ({torch_missing}); benchmarking without it")
    notes: List[str] = []
    rows: List[Row] = []
    started = time.perf_counter()
    for shape in shapes:
        inputs = make_inputs(shape)
        for pass_name in PASSES:
            reference = float64_reference(shape, inputs, pass_name != "forward")
            for n_threads in thread_counts:
                row = bench_one(shape, pass_name, n_threads, args, torch_module, inputs, reference)
                rows.append(row)
                parts = [f"{LIBRARY_LABELS[n]} {t.median * 1e3:.2f} ms ({row.gflops(n):.1f} GFLOP/s)"
                         for n, t in row.timings.items()]
                print(f"[{n_threads}T] {shape.name} {pass_name}: " + " | ".join(parts), flush=True)
    for n_threads in thread_counts:
        if n_threads > 1:
            scaling = common.check_thread_scaling(scaling_probe(), n_threads, settle_s=args.settle_ms / 1e3)
            notes.append("Thread check after the runs (dlkern conv, N8 ResNet 3x3): " + scaling.describe())
            print(notes[-1])
    out_path = common.resolve_output_path(args.out)
    write_markdown(out_path, rows, notes, common.describe_machine(torch_module, torch_missing), args)
    print()
    print(common.text_table(*summary(rows)))
    print(f"\n{time.perf_counter() - started:.1f} s; wrote {out_path}")
    return 0
