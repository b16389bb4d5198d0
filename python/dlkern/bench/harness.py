"""The case runner behind every kernel benchmark: a benchmark is a ``Bench`` (its name,
report text and options) whose ``cases(args)`` returns ``Case`` rows; this module
validates, times and reports them, the same way for every op.

A ``Case`` row says: the report cells that name it (op, shape, ...), how to build its
seeded inputs, how each library runs it (``dlkern``, the NumPy peer, the PyTorch peer,
variants such as ``dlkern_out`` or ``torch_cl``), the float64 reference it must match
(``expected``, from ``dlkern.reference``: the one NumPy oracle, which the op table and
the tests use too), the tolerance, and its work per call (FLOPs or bytes) that turns
medians into GFLOP/s or GB/s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import common

LABELS = {"dlkern": "dlkern", "dlkern_out": "dlkern (out=)", "numpy": "NumPy", "torch": "PyTorch",
          "torch_cl": "PyTorch channels_last"}
OUTPUT_NAMES = ("y", "dx", "dweight", "dbias")


def default_out(name: str) -> str:
    """Reports go outside the package and outside the tracked bench/results/ (which only
    an explicit --out overwrites): ./bench-results/<name>.md."""
    return os.path.join("bench-results", f"{name}.md")


def as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach()
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def as_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


def max_relative(got: np.ndarray, want: np.ndarray, inputs, index: int) -> float:
    """max |got - want| / max(max |want|, 1): a wrong index or formula errs by O(1)."""
    return float(np.abs(got - want).max(initial=0.0) / max(float(np.abs(want).max(initial=0.0)), 1.0))


@dataclasses.dataclass
class Case:
    cells: Tuple                      # the report cells naming the row
    make: Callable[[], Dict]          # seeded inputs, by name
    libs: Dict[str, Callable]         # library -> (inputs, torch or None) -> zero-argument call
    expected: Callable[[Dict], tuple]  # float64 outputs every library must match
    work: float                       # FLOPs or bytes per call
    tol: float = 1e-5
    compare: Callable = max_relative  # (got, want, inputs, output index) -> error compared with tol
    check: Optional[Callable] = None  # (got tuple, inputs) -> got tuple: e.g. sample rows
    target: Optional[Tuple[str, float]] = None  # (peer, dlkern/peer wanted)
    outputs: Sequence[str] = OUTPUT_NAMES
    section: str = "Summary"          # rows of one section share a summary table (and a unit)
    unit: Optional[str] = None        # the Bench's unit unless set

    @property
    def label(self) -> str:
        return " ".join(str(c) for c in self.cells)


@dataclasses.dataclass
class Result:
    case: Case
    threads: int
    timings: Dict[str, common.Timing]

    def seconds(self, lib: str) -> Optional[float]:
        return self.timings[lib].median if lib in self.timings else None


def validate(case: Case, lib: str, result, inputs, want: tuple, threads: int, labels) -> None:
    got = tuple(as_numpy(r) for r in as_tuple(result))
    if case.check is not None:
        got = case.check(got, inputs)
    if len(got) != len(want):
        raise common.BenchValidationError(f"{labels.get(lib, lib)} {case.label}: {len(got)} outputs, expected "
                                          f"{len(want)} ({', '.join(case.outputs[:len(want)])})")
    for index, (name, g, w) in enumerate(zip(case.outputs, got, want)):
        if g.shape != w.shape:
            raise common.BenchValidationError(f"{labels.get(lib, lib)} {case.label}: {name} has shape {g.shape}, "
                                              f"expected {w.shape}")
        err = case.compare(g.astype(np.float64), w, inputs, index)
        if not err <= case.tol:  # also catches NaN
            raise common.BenchValidationError(
                f"{labels.get(lib, lib)} {case.label} at {threads} thread(s): {name} is WRONG (error {err:.3g} > "
                f"tolerance {case.tol:.3g}); not timing it")


def wanted(lib: str, peers: Sequence[str], torch) -> bool:
    if lib.startswith("torch"):
        return torch is not None and "torch" in peers
    return lib.startswith("dlkern") or lib.split("_")[0] in peers


def bench_case(case: Case, threads: int, args, torch, labels=LABELS) -> Result:
    inputs = case.make()
    want = tuple(case.expected(inputs))
    contenders = [common.Contender(lib, make(inputs, torch)) for lib, make in case.libs.items()
                  if wanted(lib, args.peers, torch)]
    with common.pinned_threads(threads, torch):
        for c in contenders:
            validate(case, c.name, c.run(), inputs, want, threads, labels)
        del want
        timings = common.measure_interleaved(contenders, args.repeats, threads, args.min_sample_ms / 1e3,
                                             args.settle_ms / 1e3)
    return Result(case, threads, timings)


# ----------------------------------------------------------------------------- helpers for case files


def rng_for(*seed):
    return np.random.default_rng([int(s) for s in seed])


def sampled_rows(rng, n: int, count: int) -> np.ndarray:
    """The first and last row plus ``count`` at random: a tile edge or tail is always crossed."""
    return np.unique(np.concatenate([[0, n - 1], rng.integers(0, n, count)]))


def parse_2d(text: str, label: str = "ROWSxCOLS"):
    try:
        rows, cols = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: expected {label}") from None
    return rows, cols


def shapes_arg(label: str, default: str):
    def add(parser):
        parser.add_argument("--shapes", type=lambda t: [parse_2d(p, label) for p in t.split(",") if p.strip()],
                            default=None, help=f"{label}, comma separated (default {default})")
    return add


def pick(args, default, quick):
    return args.shapes or (quick if args.quick else default)


def matmul_probe(size: int = 512):
    a = rng_for(1).standard_normal((size, size)).astype(np.float32)
    out = np.empty_like(a)
    from dlkern import ops  # here, not at the top: the harness must import without the compiled module

    return lambda: ops.matmul(a, a, out=out)


def leaves(torch, *arrays):
    """Fresh leaf tensors that need gradients (no accumulation into .grad across calls)."""
    return [torch.from_numpy(a).detach().requires_grad_() for a in arrays]


# ----------------------------------------------------------------------------- the benchmark


def parse_list(text: str) -> List[str]:
    return [p.strip().lower() for p in str(text).split(",") if p.strip()]


def parse_threads(text: str) -> List[int]:
    try:
        counts = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"threads {text!r}: expected positive integers like 1,2")
    return counts


def parse_peers(text: str) -> List[str]:
    peers = parse_list(text)
    unknown = [p for p in peers if p not in ("numpy", "torch")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {unknown}: choose from numpy, torch")
    return peers


def add_common_arguments(parser, name: str, repeats: int, quick_repeats: int, threads: str = "1,2",
                         peers: str = "numpy,torch", min_sample_ms: float = common.DEFAULT_MIN_SAMPLE_S * 1e3):
    out = default_out(name)
    parser.add_argument("--threads", type=parse_threads, default=parse_threads(threads),
                        help=f"thread counts, comma separated (default {threads})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed samples per library (default {repeats}, {quick_repeats} with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats: a smoke test")
    parser.add_argument("--peers", type=parse_peers, default=parse_peers(peers),
                        help=f"peer libraries (default {peers}; torch skipped if absent)")
    parser.add_argument("--min-sample-ms", type=float, default=min_sample_ms,
                        help="each sample repeats the call until it lasts this long (default %(default)s)")
    parser.add_argument("--settle-ms", type=float, default=common.DEFAULT_SETTLE_S * 1e3,
                        help="pause before each sample at >1 thread so idle workers of the previous library "
                             "stop spinning (default %(default)s)")
    parser.add_argument("--out", default=out, help=f"markdown report (default {out}; charts go beside it)")


def resolve(args, repeats: int, quick_repeats: int):
    """Fill in --repeats, import PyTorch if it is a peer; (torch or None, why not)."""
    args.repeats = args.repeats if args.repeats is not None else (quick_repeats if args.quick else repeats)
    if args.repeats < 1:
        raise SystemExit("error: --repeats must be at least 1")
    peers = getattr(args, "peers", ["torch"])
    torch, why = common.optional_import("torch") if "torch" in peers else (None, "not requested (--peers)")
    if "torch" in peers and torch is None:
        print(f"PyTorch not available, benchmarking without it ({why})")
    if not common.blas_pinning_available():
        print("WARNING: threadpoolctl is not installed, so NumPy's BLAS thread count is not pinned")
    return torch, why


@dataclasses.dataclass
class Bench:
    """One ``python -m dlkern bench <name>`` subcommand made of Case rows."""

    name: str
    DESCRIPTION: str
    title: str
    head: Sequence[str]               # headers of Case.cells
    cases: Callable                   # args -> [Case]
    unit: str = "GB/s"                # "GFLOP/s" (work = FLOPs) or "GB/s" (work = bytes)
    method: Sequence[str] = ()        # markdown bullets describing the method
    probe: Optional[Callable] = None  # () -> dlkern call for the thread-scaling check
    repeats: int = 7
    quick_repeats: int = 3
    extra_arguments: Optional[Callable] = None
    labels: Dict[str, str] = dataclasses.field(default_factory=lambda: dict(LABELS))
    peak: Optional[Callable] = None   # (args, threads) -> peak GFLOP/s for a "% peak" column
    chart: bool = False
    footer: Sequence[str] = ()

    @property
    def doc(self) -> str:
        """The subcommand's --help text: what it compares and how it measures."""
        return "\n\n".join([f"python -m dlkern bench {self.name}: {self.DESCRIPTION}."] + [
            m.lstrip("- ").replace("**", "") for m in self.method])

    def add_arguments(self, parser) -> None:
        add_common_arguments(parser, self.name, self.repeats, self.quick_repeats)
        if self.extra_arguments is not None:
            self.extra_arguments(parser)

    def run(self, args) -> int:
        torch, why = resolve(args, self.repeats, self.quick_repeats)
        cases = self.cases(args)
        notes, results, started = [], [], time.perf_counter()
        # a bar with an ETA on a terminal (tqdm), moved between cases only: never while timing
        from ..train.progress import StepBar
        bar = StepBar(len(args.threads) * len(cases), f"bench {self.name}", unit="case")
        for threads in args.threads:
            notes += scaling_note(self, threads, args, "Before")
            for case in cases:
                result = bench_case(case, threads, args, torch, self.labels)
                results.append(result)
                bar.write(progress_line(self, result, args))
                bar.update(1)
            notes += scaling_note(self, threads, args, "After")
        bar.close()
        path = common.resolve_output_path(args.out)
        chart = write_chart(self, path.with_suffix(".png"), results, args) if self.chart else None
        sections = {}
        for r in results:
            sections.setdefault(r.case.section, []).append(r)
        summaries = [(title, summary_table(self, group, args)) for title, group in sections.items()]
        lines = report_head(self.title, list(self.method) + [
            f"- **timing**: median of {args.repeats} samples per library, each >= {args.min_sample_ms:g} ms of "
            f"back-to-back calls, libraries alternating sample by sample, all at the same pinned thread count; "
            f"every result checked against a float64 reference first. **{self.unit}** = work per call / median "
            f"time. **speedup** dlkern/X = X's time / dlkern's time (> 1: dlkern faster)."], notes)
        for title, summary in summaries:
            lines += [f"## {title}", ""] + common.markdown_table(*summary) + [""]
        if chart is not None:
            lines += [f"![{self.unit}]({chart.name})", ""]
        lines += ["## Details", ""] + common.markdown_table(*detail_table(self, results)) + [""]
        lines += report_tail(common.describe_machine(torch, why)) + list(self.footer)
        finish(path, lines, [summary for _, summary in summaries], started, chart)
        return 0


def scaling_note(bench: Bench, threads: int, args, when: str) -> List[str]:
    if threads <= 1 or bench.probe is None:
        return []
    usable = common.usable_cpu_count()
    notes = [f"WARNING: {threads} threads requested but only {usable} cores are usable."] \
        if when == "Before" and threads > usable else []
    scaling = common.check_thread_scaling(bench.probe(), threads, settle_s=args.settle_ms / 1e3)
    notes.append(f"{when}: {scaling.describe()}")
    for note in notes:
        print(note, flush=True)
    return notes


def rate(bench: Bench, result: Result, lib: str) -> float:
    return result.case.work / result.seconds(lib) / 1e9


def unit(bench: Bench, result: Result) -> str:
    return result.case.unit or bench.unit


def libraries(results: Sequence[Result]) -> List[str]:
    found = []
    for r in results:
        found += [lib for lib in r.timings if lib not in found]
    return found


def progress_line(bench: Bench, r: Result, args) -> str:
    d = r.seconds("dlkern")
    parts = [f"{bench.labels[lib]} {r.seconds(lib) * 1e3:.3f} ms {rate(bench, r, lib):.1f} {unit(bench, r)}"
             + ("" if lib == "dlkern" else f" (dlkern {common.format_ratio(r.seconds(lib), d)})")
             for lib in r.timings]
    return f"[{r.threads}T] {r.case.label}: " + " | ".join(parts)


def summary_table(bench: Bench, results: Sequence[Result], args):
    libs = libraries(results)
    ours = [lib for lib in libs if lib.startswith("dlkern")]
    pairs = [(mine, peer) for mine in ours for peer in libs if not peer.startswith("dlkern")]
    labels = bench.labels
    targeted = any(r.case.target for r in results)
    headers = list(bench.head) + ["threads"] + [f"{labels[lib]} ms" for lib in libs]
    headers += [f"{labels[lib]} {unit(bench, results[0])}" for lib in libs]
    headers += ["dlkern % peak"] if bench.peak else []
    headers += [f"{labels[mine]}/{labels[peer]}" for mine, peer in pairs] + (["target"] if targeted else [])
    rows = []
    for r in results:
        row = list(r.case.cells) + [r.threads]
        row += [f"{r.seconds(lib) * 1e3:.3f}" if lib in r.timings else "-" for lib in libs]
        row += [f"{rate(bench, r, lib):.1f}" if lib in r.timings else "-" for lib in libs]
        row += [f"{100 * rate(bench, r, 'dlkern') / bench.peak(args, r.threads):.0f}%"] if bench.peak else []
        row += [common.format_ratio(r.seconds(peer), r.seconds(mine)) for mine, peer in pairs]
        if targeted:
            row.append(target_cell(r, labels))
        rows.append(row)
    return headers, rows


def target_cell(r: Result, labels) -> str:
    if not r.case.target or r.case.target[0] not in r.timings:
        return "-"
    peer, wanted_ratio = r.case.target
    ratio = r.seconds(peer) / r.seconds("dlkern")
    return f"{wanted_ratio:g}x vs {labels[peer]}: {'met' if ratio >= wanted_ratio else 'MISSED'} ({ratio:.2f}x)"


def detail_table(bench: Bench, results: Sequence[Result]):
    headers = list(bench.head) + ["threads", "library", "median ms", "spread", "calls/sample", "rate"]
    rows = [list(r.case.cells) + [r.threads, bench.labels[lib], f"{t.median * 1e3:.4f}", f"{100 * t.spread:.0f}%",
                                  t.calls_per_sample, f"{rate(bench, r, lib):.1f} {unit(bench, r)}"]
            for r in results for lib, t in r.timings.items()]
    return headers, rows


def write_chart(bench: Bench, path, results: Sequence[Result], args):
    """Grouped bars of the rate per case, one panel per thread count; None without matplotlib."""
    matplotlib, _ = common.optional_import("matplotlib")
    if matplotlib is None:
        return None
    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    libs = libraries(results)
    fig, axes = plt.subplots(len(args.threads), 1, figsize=(12, 4 * len(args.threads)), squeeze=False)
    width = 0.8 / len(libs)
    for axis, threads in zip(axes[:, 0], args.threads):
        group = [r for r in results if r.threads == threads]
        pos = np.arange(len(group))
        for i, lib in enumerate(libs):
            axis.bar(pos + (i - (len(libs) - 1) / 2) * width,
                     [rate(bench, r, lib) if lib in r.timings else 0 for r in group], width, label=bench.labels[lib])
        if bench.peak:
            axis.axhline(bench.peak(args, threads), color="gray", linestyle="--", linewidth=1, label="peak")
        axis.set_xticks(pos)
        axis.set_xticklabels([r.case.label for r in group], rotation=30, ha="right", fontsize="small")
        axis.set_ylabel(bench.unit)
        axis.set_title(f"{bench.name}, {threads} thread{'s' if threads > 1 else ''}")
        # Outside the axes, so the legend never hides a bar.
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- report text


def report_head(title: str, bullets: Sequence[str], notes: Sequence[str]) -> List[str]:
    lines = [f"# {title}", "", f"- **date**: {common.timestamp()}", f"- **command**: `{common.command_line()}`"]
    return lines + list(bullets) + [""] + [f"> {note}\n" for note in notes]


def report_tail(machine) -> List[str]:
    return ["## Machine", ""] + common.machine_markdown(machine) + [""]


def finish(path, lines: Sequence[str], tables, started: float, chart=None) -> None:
    """Write the report, print its tables and where it went."""
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for table in tables:
        print()
        print(common.text_table(*table))
    print(f"\nspeedup dlkern/X = X's time / dlkern's time (> 1: dlkern faster); "
          f"{time.perf_counter() - started:.1f} s; wrote {path}" + (f" and {chart}" if chart else ""))


def write_table_report(path, title: str, bullets: Sequence[str], notes: Sequence[str], headers, rows,
                       machine, started: float) -> None:
    """A one-table report (the model-level benchmarks)."""
    out = common.resolve_output_path(path)
    finish(out, report_head(title, bullets, notes) + common.markdown_table(headers, rows) + [""]
           + report_tail(machine), [(headers, rows)], started)
