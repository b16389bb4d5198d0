"""``python -m dlkern bench matmul``: dlkern's matmul beside NumPy and PyTorch.

All libraries run in one process on the same inputs, at the same thread count, with
their own preallocated output (a fresh output over ~32 MiB would add page faults to
every call, see MACHINE.md). Each library's result is checked against a float64
product before it is timed. Speedup = peer time / dlkern time (> 1: dlkern faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

import dlkern

from . import common

DESCRIPTION = "matrix product (A @ B) against NumPy and PyTorch"

PEAK_GFLOPS_PER_CORE_F32 = 116.8  # MACHINE.md: 32 FLOP/cycle at 3.65 GHz
DEFAULT_REPEATS = 7
QUICK_REPEATS = 3
DEFAULT_OUT = "bench/results/matmul.md"
SCALING_PROBE_SIZE = 512
# Products up to this many multiply-adds are checked entry by entry; larger ones on
# sampled full rows and full columns (every tile edge is still crossed).
FULL_CHECK_LIMIT = 1 << 24
SAMPLED_LINES = 24
# Rounding error of a K-term dot product grows like sqrt(K) * eps relative to
# sum |a_ik b_kj|; a dropped or doubled term is ~1/K of that sum, far above this.
VALIDATION_SAFETY = 8.0

LIBRARY_LABELS = {"dlkern": "dlkern", "numpy": "NumPy", "torch": "PyTorch"}


@dataclasses.dataclass(frozen=True)
class Shape:
    """C (M x N) = A (M x K) @ B (K x N)."""

    m: int
    k: int
    n: int
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.m}x{self.k}x{self.n}"

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def is_matvec(self) -> bool:
        return self.m == 1 or self.n == 1

    def bytes_moved(self, itemsize: int) -> int:
        """Each operand read or written once: for GEMV the matrix dominates."""
        return itemsize * (self.m * self.k + self.k * self.n + self.m * self.n)


DEFAULT_SHAPES = [Shape(s, s, s, "square") for s in (64, 128, 256, 512, 1024, 2048)] + [
    Shape(4096, 768, 3072, "BERT-base FFN up"),
    Shape(4096, 3072, 768, "BERT-base FFN down"),
    Shape(2048, 192, 768, "tiny GPT FFN up"),
    Shape(128, 784, 256, "MLP 784-256, batch 128"),
    Shape(1, 4096, 4096, "GEMV"),
]
QUICK_SHAPES = [Shape(s, s, s, "square") for s in (64, 128, 256)] + [
    Shape(128, 784, 256, "MLP 784-256, batch 128"),
    Shape(1, 1024, 1024, "GEMV"),
]


# ----------------------------------------------------------------------------- arguments


def parse_shape(text: str) -> Shape:
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected N (square) or MxKxN with positive sizes")
    return Shape(*sizes, note=describe_sizes(*sizes))


def describe_sizes(m: int, k: int, n: int) -> str:
    known = {(s.m, s.k, s.n): s.note for s in DEFAULT_SHAPES}
    if (m, k, n) in known:
        return known[(m, k, n)]
    if m == 1 or n == 1:
        return "GEMV"
    return "square" if m == k == n else ""


def parse_shapes(text: str) -> List[Shape]:
    return [parse_shape(part) for part in text.split(",") if part.strip()]


def parse_thread_counts(text: str) -> List[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"threads {text!r}: expected positive integers like 1,2")
    return counts


def parse_peers(text: str) -> List[str]:
    peers = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [p for p in peers if p not in ("numpy", "torch")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}: choose from numpy, torch")
    return peers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=parse_thread_counts, default=[1, 2],
                        help="thread counts to run, comma separated (default 1,2)")
    parser.add_argument("--shapes", type=parse_shapes, default=None,
                        help="N (square) or MxKxN, comma separated (default: the standard set)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed samples per library (default {DEFAULT_REPEATS}, {QUICK_REPEATS} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="small shapes and few repeats: a smoke test, not a measurement")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--peak", type=float, default=PEAK_GFLOPS_PER_CORE_F32,
                        help="float32 peak GFLOP/s per core (float64: half); default from MACHINE.md")
    parser.add_argument("--peers", type=parse_peers, default=["numpy", "torch"],
                        help="peer libraries, comma separated (default numpy,torch; torch skipped if absent)")
    parser.add_argument("--min-sample-ms", type=float, default=common.DEFAULT_MIN_SAMPLE_S * 1e3,
                        help="each sample repeats the call until it lasts this long (default 20)")
    parser.add_argument("--settle-ms", type=float, default=common.DEFAULT_SETTLE_S * 1e3,
                        help="pause before each sample at >1 thread so idle workers of the previous "
                             "library stop spinning (default 150)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"markdown report, relative to the current directory (default {DEFAULT_OUT}); "
                             "the PNG chart goes beside it")


# ----------------------------------------------------------------------------- contenders


def make_inputs(shape: Shape, dtype: np.dtype, seed: int = 0):
    # Seeded by shape so every thread count sees identical inputs.
    rng = np.random.default_rng([seed, shape.m, shape.k, shape.n])
    a = rng.uniform(-1.0, 1.0, size=(shape.m, shape.k)).astype(dtype)
    b = rng.uniform(-1.0, 1.0, size=(shape.k, shape.n)).astype(dtype)
    return a, b


def make_contenders(a: np.ndarray, b: np.ndarray, peers: Sequence[str], torch_module) -> List[common.Contender]:
    """dlkern first, then the peers, each writing into its own reused output."""
    out_shape = (a.shape[0], b.shape[1])
    dlkern_out = np.empty(out_shape, a.dtype)
    contenders = [common.Contender("dlkern", lambda: dlkern.ops.matmul(a, b, out=dlkern_out))]
    if "numpy" in peers:
        numpy_out = np.empty(out_shape, a.dtype)
        contenders.append(common.Contender("numpy", lambda: np.matmul(a, b, out=numpy_out)))
    if "torch" in peers and torch_module is not None:
        # from_numpy shares memory: PyTorch reads the very same input buffers.
        ta, tb = torch_module.from_numpy(a), torch_module.from_numpy(b)
        torch_out = torch_module.empty(out_shape, dtype=ta.dtype)
        # torch.mm is the 2-D path torch.matmul ends in, minus its dispatch overhead.
        contenders.append(common.Contender("torch", lambda: torch_module.mm(ta, tb, out=torch_out)))
    return contenders


def as_numpy(result) -> np.ndarray:
    return result.numpy() if hasattr(result, "numpy") else np.asarray(result)


# ----------------------------------------------------------------------------- validation


@dataclasses.dataclass
class CheckedBlock:
    """Part of C with its float64 value and the size of its dot products (|A|@|B|)."""

    index: tuple
    expected: np.ndarray
    magnitude: np.ndarray


@dataclasses.dataclass
class Reference:
    """What a correct C must match: computed once per input, shared by all libraries."""

    shape: Shape
    dtype: np.dtype
    tolerance: float
    blocks: List[CheckedBlock]


def checked_block(a64: np.ndarray, b64: np.ndarray, rows, cols) -> CheckedBlock:
    a_part, b_part = a64[rows, :], b64[:, cols]
    return CheckedBlock((rows, cols), a_part @ b_part, np.abs(a_part) @ np.abs(b_part))


def float64_reference(shape: Shape, a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> Reference:
    """The whole product for small sizes; else full rows and full columns at random
    (plus the first and last), which still cross every tile edge of the kernel."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    every = slice(None)
    if shape.m * shape.k * shape.n <= FULL_CHECK_LIMIT:
        blocks = [checked_block(a64, b64, every, every)]
    else:
        rows = np.unique(np.concatenate([[0, shape.m - 1], rng.integers(0, shape.m, SAMPLED_LINES)]))
        cols = np.unique(np.concatenate([[0, shape.n - 1], rng.integers(0, shape.n, SAMPLED_LINES)]))
        blocks = [checked_block(a64, b64, rows, every), checked_block(a64, b64, every, cols)]
    tolerance = VALIDATION_SAFETY * math.sqrt(shape.k) * np.finfo(a.dtype).eps
    return Reference(shape, a.dtype, tolerance, blocks)


def worst_normalised_error(c: np.ndarray, block: CheckedBlock) -> float:
    """max |c - a@b| / (|a|@|b|): rounding error in units of the dot products' size."""
    error = np.abs(c[block.index].astype(np.float64) - block.expected)
    return float((error / np.maximum(block.magnitude, np.finfo(np.float64).tiny)).max(initial=0.0))


def validate_product(library: str, n_threads: int, c: np.ndarray, reference: Reference) -> float:
    """Raise BenchValidationError unless C matches the float64 reference; return the
    worst normalised error."""
    shape, label = reference.shape, LIBRARY_LABELS[library]
    if c.shape != (shape.m, shape.n):
        raise common.BenchValidationError(
            f"{label} matmul {shape.label}: result shape {c.shape}, expected {(shape.m, shape.n)}")
    worst = max(worst_normalised_error(c, block) for block in reference.blocks)
    if not worst <= reference.tolerance:  # also catches NaN
        raise common.BenchValidationError(
            f"{label} matmul {shape.label} {reference.dtype} at {n_threads} thread(s) is WRONG: "
            f"max |C - A@B| / (|A|@|B|) = {worst:.3g} > tolerance {reference.tolerance:.3g}; not timing it")
    return worst


# ----------------------------------------------------------------------------- measuring


@dataclasses.dataclass
class Measurement:
    shape: Shape
    n_threads: int
    library: str
    timing: common.Timing
    itemsize: int
    peak_gflops: float

    @property
    def seconds(self) -> float:
        return self.timing.median

    @property
    def gflops(self) -> float:
        return self.shape.flops / self.seconds / 1e9

    @property
    def percent_of_peak(self) -> float:
        return 100.0 * self.gflops / self.peak_gflops

    @property
    def gbytes_per_s(self) -> Optional[float]:
        if not self.shape.is_matvec:
            return None
        return self.shape.bytes_moved(self.itemsize) / self.seconds / 1e9


def peak_gflops(per_core_f32: float, dtype: np.dtype, n_threads: int) -> float:
    # A float64 vector holds half as many lanes, so half the FLOPs per FMA.
    return per_core_f32 * n_threads * (4 / np.dtype(dtype).itemsize)


def bench_shape(shape: Shape, n_threads: int, args, torch_module) -> List[Measurement]:
    dtype = np.dtype(args.dtype)
    a, b = make_inputs(shape, dtype)
    contenders = make_contenders(a, b, args.peers, torch_module)
    reference = float64_reference(shape, a, b, np.random.default_rng(n_threads))
    with common.pinned_threads(n_threads, torch_module):
        for contender in contenders:
            validate_product(contender.name, n_threads, as_numpy(contender.run()), reference)
        timings = common.measure_interleaved(contenders, args.repeats, n_threads,
                                             args.min_sample_ms / 1e3, args.settle_ms / 1e3)
    peak = peak_gflops(args.peak, dtype, n_threads)
    return [Measurement(shape, n_threads, name, timing, dtype.itemsize, peak) for name, timing in timings.items()]


def scaling_probe(dtype: np.dtype):
    a, b = make_inputs(Shape(SCALING_PROBE_SIZE, SCALING_PROBE_SIZE, SCALING_PROBE_SIZE), dtype, seed=1)
    out = np.empty((SCALING_PROBE_SIZE, SCALING_PROBE_SIZE), dtype)
    return lambda: dlkern.ops.matmul(a, b, out=out)


def check_scaling(n_threads: int, args, when: str) -> common.ThreadScaling:
    scaling = common.check_thread_scaling(scaling_probe(np.dtype(args.dtype)), n_threads,
                                          settle_s=args.settle_ms / 1e3)
    print(f"[thread check {when} the {n_threads}-thread run, dlkern {SCALING_PROBE_SIZE}^3] {scaling.describe()}",
          flush=True)
    return scaling


def progress_line(measurements: List[Measurement]) -> str:
    first = measurements[0]
    dlkern_s = by_library(measurements)["dlkern"].seconds
    parts = []
    for m in measurements:
        text = f"{LIBRARY_LABELS[m.library]} {m.seconds * 1e3:.3f} ms {m.gflops:.1f} GFLOP/s"
        if m.library != "dlkern":
            text += f" (dlkern {common.format_ratio(m.seconds, dlkern_s)})"
        parts.append(text)
    return f"[{first.n_threads}T] {first.shape.label:>15}: " + " | ".join(parts)


def by_library(measurements: Sequence[Measurement]) -> Dict[str, Measurement]:
    return {m.library: m for m in measurements}


# ----------------------------------------------------------------------------- reports


def library_names(results: Sequence[List[Measurement]]) -> List[str]:
    names = []
    for group in results:
        for m in group:
            if m.library not in names:
                names.append(m.library)
    return names


def summary_table(results: Sequence[List[Measurement]]):
    """One row per (shape, threads): GFLOP/s of each library and dlkern's speedups."""
    libraries = library_names(results)
    peers = [name for name in libraries if name != "dlkern"]
    headers = ["shape MxKxN", "what", "threads"]
    headers += [f"{LIBRARY_LABELS[name]} GFLOP/s" for name in libraries]
    headers += ["dlkern % peak"] + [f"dlkern/{LIBRARY_LABELS[name]}" for name in peers]
    rows = []
    for group in results:
        found = by_library(group)
        dlkern_row = found["dlkern"]
        row = [dlkern_row.shape.label, dlkern_row.shape.note or "-", dlkern_row.n_threads]
        row += [f"{found[name].gflops:.1f}" if name in found else "-" for name in libraries]
        row += [f"{dlkern_row.percent_of_peak:.0f}%"]
        row += [common.format_ratio(found[name].seconds if name in found else None, dlkern_row.seconds)
                for name in peers]
        rows.append(row)
    return headers, rows


def detail_table(results: Sequence[List[Measurement]]):
    """One row per measurement, with the spread of its samples."""
    headers = ["shape MxKxN", "threads", "library", "median ms", "spread", "calls/sample",
               "GFLOP/s", "% peak", "GB/s", "speedup of dlkern"]
    rows = []
    for group in results:
        dlkern_s = by_library(group)["dlkern"].seconds
        for m in group:
            rows.append([
                m.shape.label, m.n_threads, LIBRARY_LABELS[m.library], f"{m.seconds * 1e3:.4f}",
                f"{100 * m.timing.spread:.0f}%", m.timing.calls_per_sample, f"{m.gflops:.1f}",
                f"{m.percent_of_peak:.0f}%", f"{m.gbytes_per_s:.1f}" if m.gbytes_per_s is not None else "-",
                "-" if m.library == "dlkern" else common.format_ratio(m.seconds, dlkern_s),
            ])
    return headers, rows


def write_markdown(path: Path, results, scaling_notes: List[str], machine: Dict, args, chart: Optional[Path]):
    lines = [
        "# dlkern matmul benchmark",
        "",
        f"- **date**: {common.timestamp()}",
        f"- **command**: `{common.command_line()}`",
        f"- **method**: {args.dtype}, C = A @ B into a preallocated C; every library's result checked "
        f"against a float64 product first; median of {args.repeats} sample(s) per library, each sample "
        f">= {args.min_sample_ms:g} ms of back-to-back calls; libraries alternate sample by sample "
        f"(with a {args.settle_ms:g} ms pause before each sample at >1 thread); "
        f"peak = {args.peak:g} GFLOP/s per core (float32) x threads.",
        "- **speedup** dlkern/X = X's time / dlkern's time: above 1 means dlkern is faster. "
        "spread = (max - min) / median of the samples. GB/s (GEMV only) counts each operand once.",
        "",
    ]
    lines += [f"> {note}" + "\n" for note in scaling_notes]
    lines += ["## Summary", ""] + common.markdown_table(*summary_table(results)) + [""]
    if chart is not None:
        lines += [f"![GFLOP/s per shape]({chart.name})", ""]
    lines += ["## Details", ""] + common.markdown_table(*detail_table(results)) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(machine) + [""]
    if "OPENBLAS_CORETYPE" not in common.recorded_environment():
        lines += ["NumPy ran OpenBLAS's own choice of kernels. MACHINE.md: on this CPU "
                  "`OPENBLAS_CORETYPE=Haswell` is about 5% faster at 1 thread; rerun with it set "
                  "(and another `--out`) to report both.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def write_chart(path: Path, results: Sequence[List[Measurement]], thread_counts: Sequence[int],
                dtype_name: str) -> Optional[Path]:
    """Grouped bars of GFLOP/s per shape, one panel per thread count; None without matplotlib."""
    matplotlib, _ = common.optional_import("matplotlib")
    if matplotlib is None:
        return None
    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    libraries = library_names(results)
    fig, axes = plt.subplots(len(thread_counts), 1, figsize=(12, 4 * len(thread_counts)), squeeze=False)
    width = 0.8 / len(libraries)
    for axis, n_threads in zip(axes[:, 0], thread_counts):
        groups = [by_library(g) for g in results if g[0].n_threads == n_threads]
        positions = np.arange(len(groups))
        for index, name in enumerate(libraries):
            heights = [g[name].gflops if name in g else 0.0 for g in groups]
            axis.bar(positions + (index - (len(libraries) - 1) / 2) * width, heights, width,
                     label=LIBRARY_LABELS[name])
        if groups:
            axis.axhline(groups[0]["dlkern"].peak_gflops, color="gray", linestyle="--", linewidth=1,
                         label="peak")
        axis.set_xticks(positions)
        axis.set_xticklabels([g["dlkern"].shape.label for g in groups], rotation=30, ha="right")
        axis.set_ylabel("GFLOP/s")
        axis.set_title(f"matmul {dtype_name}, {n_threads} thread{'s' if n_threads > 1 else ''}")
        # Outside the axes, so the legend never hides a bar.
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- entry point


def resolve_defaults(args) -> None:
    if args.shapes is None:
        args.shapes = QUICK_SHAPES if args.quick else DEFAULT_SHAPES
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.repeats < 1:
        raise SystemExit("error: --repeats must be at least 1")


def load_torch(peers: Sequence[str]):
    if "torch" not in peers:
        return None, "not requested (--peers)"
    return common.optional_import("torch")


def run(args) -> int:
    resolve_defaults(args)
    torch_module, torch_missing = load_torch(args.peers)
    if "torch" in args.peers and torch_module is None:
        print(f"PyTorch not available, benchmarking without it ({torch_missing})")
    if not common.blas_pinning_available():
        print("WARNING: threadpoolctl is not installed, so NumPy's BLAS thread count is not pinned")
    usable = common.usable_cpu_count()
    scaling_notes = []
    results: List[List[Measurement]] = []
    started = time.perf_counter()
    for n_threads in args.threads:
        if n_threads > usable:
            scaling_notes.append(f"WARNING: {n_threads} threads requested but only {usable} cores are usable.")
            print(scaling_notes[-1])
        if n_threads > 1:
            scaling_notes.append("Before: " + check_scaling(n_threads, args, "before").describe())
        for shape in args.shapes:
            group = bench_shape(shape, n_threads, args, torch_module)
            print(progress_line(group), flush=True)
            results.append(group)
        if n_threads > 1:
            scaling_notes.append("After: " + check_scaling(n_threads, args, "after").describe())
    out_path = common.resolve_output_path(args.out)
    chart = write_chart(out_path.with_suffix(".png"), results, args.threads, args.dtype)
    machine = common.describe_machine(torch_module, torch_missing)
    write_markdown(out_path, results, scaling_notes, machine, args, chart)
    print()
    print(common.text_table(*summary_table(results)))
    print(f"\nspeedup dlkern/X = X's time / dlkern's time (> 1: dlkern faster); "
          f"{time.perf_counter() - started:.1f} s")
    print(f"wrote {out_path}" + (f" and {chart}" if chart is not None else " (no chart: matplotlib missing)"))
    return 0
