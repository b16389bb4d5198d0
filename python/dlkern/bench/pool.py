"""``python -m dlkern bench pool``: max/avg pooling beside PyTorch and a NumPy reference.

Cases are the CNN ones: 2x2 stride 2 and 3x3 stride 2 pad 1 (ResNet's stem) on
(32, 64, 56, 56) float32. Two modes:

- ``fwd``: the pooled output. dlkern reads NCHW; PyTorch is timed on a channels_last
  copy (its fast layout; target: dlkern >= 1.0x) and on NCHW; NumPy is the strided-
  slice reference (np.maximum / sum over the k*k shifted views).
- ``fwd+bwd``: forward (max: with indices) then the input gradient for a fixed
  grad_out. PyTorch runs autograd on NCHW (target: dlkern >= 3x) and channels_last.

Every result is checked against the NumPy reference (run in float64) before timing.
GB/s counts the minimum traffic: forward reads x and writes y; the backward reads
grad_out and writes dx; max adds writing and reading the int64 indices.
Speedup = peer time / dlkern time (> 1: dlkern faster).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

import dlkern
from dlkern import ops

from . import common

DESCRIPTION = "max/avg pooling forward and forward+backward against PyTorch and NumPy"
DEFAULT_OUT = "bench/results/pool.md"
DEFAULT_SHAPE = (32, 64, 56, 56)
DEFAULT_REPEATS = 5
TARGETS = {("fwd", "torch_cl"): 1.0, ("fwd+bwd", "torch"): 3.0}
LABELS = {"dlkern": "dlkern", "torch_cl": "PyTorch channels_last", "torch": "PyTorch NCHW", "numpy": "NumPy"}


@dataclasses.dataclass(frozen=True)
class Case:
    op: str        # "max" or "avg"
    kernel: int
    stride: int
    pad: int
    mode: str      # "fwd" or "fwd+bwd"

    @property
    def label(self) -> str:
        return f"{self.op} {self.kernel}x{self.kernel} s{self.stride}" + (f" p{self.pad}" if self.pad else "")


CASES = [Case(op, k, 2, p, mode) for mode in ("fwd", "fwd+bwd") for op in ("max", "avg")
         for k, p in ((2, 0), (3, 1))]


# ----------------------------------------------------------------------------- NumPy reference


def shifted_views(x, k, s, p, fill):
    """The k*k strided views (N, C, OH, OW) of the padded input, in window scan order."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill) if p else x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return [xp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] for i in range(k) for j in range(k)]


def numpy_max_pool(x, k, s, p):
    views = shifted_views(x, k, s, p, -np.inf)
    y = views[0].copy()
    for v in views[1:]:
        np.maximum(y, v, out=y)
    return y


def numpy_avg_pool(x, k, s, p):
    views = shifted_views(x, k, s, p, 0)
    y = views[0].copy()
    for v in views[1:]:
        y += v
    return y / (k * k)   # count_include_pad=True and no ceil_mode: always k*k


def numpy_max_fwd_bwd(x, g, k, s, p):
    n, c, h, w = x.shape
    views = np.stack(shifted_views(x, k, s, p, -np.inf))        # (k*k, N, C, OH, OW)
    first = np.argmax(views, axis=0)                            # first maximum in scan order
    oh, ow = views.shape[3], views.shape[4]
    ih = np.arange(oh)[:, None] * s - p + first // k
    iw = np.arange(ow)[None, :] * s - p + first % k
    dx = np.zeros((n * c, h * w), x.dtype)
    planes = np.arange(n * c).reshape(n, c, 1, 1)
    np.add.at(dx, (np.broadcast_to(planes, first.shape), ih * w + iw), g)
    return dx.reshape(x.shape)


def numpy_avg_fwd_bwd(x, g, k, s, p):
    numpy_avg_pool(x, k, s, p)
    n, c, h, w = x.shape
    dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), x.dtype)
    share = g / (k * k)
    oh, ow = g.shape[2], g.shape[3]
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] += share
    return dxp[:, :, p:p + h, p:p + w]


# ----------------------------------------------------------------------------- contenders


def make_contenders(case: Case, x, g, peers, torch_module) -> Dict[str, object]:
    k, s, p = case.kernel, case.stride, case.pad
    found = {}
    if case.mode == "fwd":
        if case.op == "max":
            found["dlkern"] = lambda: ops.max_pool2d(x, k, s, p)
        else:
            found["dlkern"] = lambda: ops.avg_pool2d(x, k, s, p)
    elif case.op == "max":
        def dlkern_max():
            _, idx = ops.max_pool2d(x, k, s, p, return_indices=True)
            return ops.max_pool2d_backward(g, idx, x.shape)
        found["dlkern"] = dlkern_max
    else:
        def dlkern_avg():
            ops.avg_pool2d(x, k, s, p)
            return ops.avg_pool2d_backward(g, x.shape, k, s, p)
        found["dlkern"] = dlkern_avg
    if torch_module is not None and "torch" in peers:
        F = torch_module.nn.functional
        pool = F.max_pool2d if case.op == "max" else F.avg_pool2d
        tx = torch_module.from_numpy(x)
        layouts = {"torch_cl": tx.contiguous(memory_format=torch_module.channels_last), "torch": tx}
        tg = {"torch_cl": torch_module.from_numpy(g).contiguous(memory_format=torch_module.channels_last),
              "torch": torch_module.from_numpy(g)}
        for name, t in layouts.items():
            if case.mode == "fwd":
                def run(t=t):
                    with torch_module.no_grad():
                        return pool(t, k, s, p)
            else:
                leaf = t.detach().clone().requires_grad_(True) if name == "torch_cl" else t.detach().requires_grad_(True)

                def run(leaf=leaf, grad=tg[name]):
                    leaf.grad = None
                    pool(leaf, k, s, p).backward(grad)
                    return leaf.grad
            found[name] = run
    if "numpy" in peers:
        if case.mode == "fwd":
            found["numpy"] = (lambda: numpy_max_pool(x, k, s, p)) if case.op == "max" else (lambda: numpy_avg_pool(x, k, s, p))
        else:
            found["numpy"] = ((lambda: numpy_max_fwd_bwd(x, g, k, s, p)) if case.op == "max"
                              else (lambda: numpy_avg_fwd_bwd(x, g, k, s, p)))
    return found


def as_numpy(result) -> np.ndarray:
    return np.ascontiguousarray(result.detach().numpy() if hasattr(result, "detach") else result)


def reference(case: Case, x, g) -> np.ndarray:
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    k, s, p = case.kernel, case.stride, case.pad
    if case.mode == "fwd":
        return numpy_max_pool(x64, k, s, p) if case.op == "max" else numpy_avg_pool(x64, k, s, p)
    return numpy_max_fwd_bwd(x64, g64, k, s, p) if case.op == "max" else numpy_avg_fwd_bwd(x64, g64, k, s, p)


def validate(case: Case, name: str, result, expected: np.ndarray, n_threads: int) -> None:
    got = as_numpy(result)
    if got.shape != expected.shape:
        raise common.BenchValidationError(f"{LABELS[name]} {case.label} {case.mode}: shape {got.shape}, "
                                          f"expected {expected.shape}")
    # Max forward is exact; sums of at most 9 terms (and their spread) are within 1e-5.
    err = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if not err <= 1e-5:
        raise common.BenchValidationError(f"{LABELS[name]} {case.label} {case.mode} at {n_threads} thread(s) "
                                          f"is WRONG: max |error| {err:.3g}; not timing it")


def traffic_bytes(case: Case, shape, itemsize: int = 4) -> int:
    n, c, h, w = shape
    oh = (h + 2 * case.pad - case.kernel) // case.stride + 1
    ow = (w + 2 * case.pad - case.kernel) // case.stride + 1
    inp, out = n * c * h * w, n * c * oh * ow
    total = itemsize * (inp + out)
    if case.mode == "fwd+bwd":
        total += itemsize * (out + inp) + (2 * 8 * out if case.op == "max" else 0)
    return total


# ----------------------------------------------------------------------------- running


@dataclasses.dataclass
class Row:
    case: Case
    n_threads: int
    timings: Dict[str, common.Timing]
    bytes: int

    def seconds(self, name: str) -> Optional[float]:
        return self.timings[name].median if name in self.timings else None


def bench_case(case: Case, n_threads: int, x, g, args, torch_module) -> Row:
    contenders = make_contenders(case, x, g, args.peers, torch_module)
    expected = reference(case, x, g)
    with common.pinned_threads(n_threads, torch_module):
        for name, run in contenders.items():
            validate(case, name, run(), expected, n_threads)
        timings = common.measure_interleaved([common.Contender(n, r) for n, r in contenders.items()],
                                             args.repeats, n_threads)
    return Row(case, n_threads, timings, traffic_bytes(case, x.shape))


def ratio_cell(row: Row, peer: str) -> str:
    return common.format_ratio(row.seconds(peer), row.seconds("dlkern"))


def target_cell(row: Row) -> str:
    for (mode, peer), target in TARGETS.items():
        if row.case.mode == mode and peer in row.timings:
            ratio = row.seconds(peer) / row.seconds("dlkern")
            return f"{target:g}x vs {LABELS[peer]}: {'met' if ratio >= target else 'MISSED'} ({ratio:.2f}x)"
    return "-"


def summary(rows: List[Row]):
    libs = [name for name in ("dlkern", "torch_cl", "torch", "numpy") if any(name in r.timings for r in rows)]
    headers = ["case", "mode", "threads"] + [f"{LABELS[n]} ms" for n in libs] + ["dlkern GB/s"]
    headers += [f"dlkern/{LABELS[n]}" for n in libs if n != "dlkern"] + ["target"]
    table = []
    for r in rows:
        cells = [r.case.label, r.case.mode, r.n_threads]
        cells += [f"{r.seconds(n) * 1e3:.3f}" if n in r.timings else "-" for n in libs]
        cells += [f"{r.bytes / r.seconds('dlkern') / 1e9:.1f}"]
        cells += [ratio_cell(r, n) for n in libs if n != "dlkern"] + [target_cell(r)]
        table.append(cells)
    return headers, table


def details(rows: List[Row]):
    headers = ["case", "mode", "threads", "library", "median ms", "spread", "calls/sample", "GB/s"]
    table = []
    for r in rows:
        for name, t in r.timings.items():
            table.append([r.case.label, r.case.mode, r.n_threads, LABELS[name], f"{t.median * 1e3:.3f}",
                          f"{100 * t.spread:.0f}%", t.calls_per_sample, f"{r.bytes / t.median / 1e9:.1f}"])
    return headers, table


def write_chart(path: Path, rows: List[Row]) -> Optional[Path]:
    matplotlib, _ = common.optional_import("matplotlib")
    if matplotlib is None:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = sorted({r.n_threads for r in rows})
    libs = [n for n in ("dlkern", "torch_cl", "torch", "numpy") if any(n in r.timings for r in rows)]
    fig, axes = plt.subplots(len(threads), 1, figsize=(12, 4 * len(threads)), squeeze=False)
    width = 0.8 / len(libs)
    for axis, nt in zip(axes[:, 0], threads):
        group = [r for r in rows if r.n_threads == nt]
        pos = np.arange(len(group))
        for i, name in enumerate(libs):
            axis.bar(pos + (i - (len(libs) - 1) / 2) * width,
                     [r.seconds(name) * 1e3 if name in r.timings else 0 for r in group], width, label=LABELS[name])
        axis.set_yscale("log")
        axis.set_xticks(pos)
        axis.set_xticklabels([f"{r.case.label}\n{r.case.mode}" for r in group], fontsize="small")
        axis.set_ylabel("ms (log)")
        axis.set_title(f"pooling (32, 64, 56, 56) float32, {nt} thread{'s' if nt > 1 else ''}")
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def parse_peers(text: str) -> List[str]:
    peers = [p.strip().lower() for p in text.split(",") if p.strip()]
    bad = [p for p in peers if p not in ("numpy", "torch")]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {bad}: choose from numpy, torch")
    return peers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", default="1,2", help="thread counts, comma separated (default 1,2)")
    parser.add_argument("--shape", default=",".join(map(str, DEFAULT_SHAPE)),
                        help="N,C,H,W (default 32,64,56,56)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="timed samples per library")
    parser.add_argument("--quick", action="store_true", help="small shape, 1 repeat: a smoke test")
    parser.add_argument("--peers", type=parse_peers, default=["numpy", "torch"],
                        help="peer libraries (default numpy,torch; torch skipped if absent)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")


def run(args) -> int:
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    shape = tuple(int(v) for v in args.shape.split(","))
    if args.quick:
        shape, args.repeats = (2, 4, 20, 20), 1
    if len(shape) != 4 or min(shape) < 1 or min(threads) < 1 or args.repeats < 1:
        raise SystemExit("error: --shape needs N,C,H,W >= 1, --threads and --repeats >= 1")
    torch_module, torch_missing = (common.optional_import("torch") if "torch" in args.peers
                                   else (None, "not requested (--peers)"))
    if "torch" in args.peers and torch_module is None:
        print(f"PyTorch not available, benchmarking without it ({torch_missing})")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
    started = time.perf_counter()
    rows: List[Row] = []
    notes: List[str] = []
    for nt in threads:
        probe = lambda: ops.max_pool2d(x, 3, 2, 1)  # noqa: E731
        if nt > 1:
            notes.append("Before: " + common.check_thread_scaling(probe, nt).describe())
            print(notes[-1], flush=True)
        for case in CASES:
            k, s, p = case.kernel, case.stride, case.pad
            oh, ow = (shape[2] + 2 * p - k) // s + 1, (shape[3] + 2 * p - k) // s + 1
            g = np.random.default_rng(1).uniform(-1.0, 1.0, size=(shape[0], shape[1], oh, ow)).astype(np.float32)
            row = bench_case(case, nt, x, g, args, torch_module)
            rows.append(row)
            print(f"[{nt}T] {case.label:>14} {case.mode:>7}: " + " | ".join(
                f"{LABELS[n]} {t.median * 1e3:.3f} ms" for n, t in row.timings.items()) + f" | {target_cell(row)}",
                flush=True)
        if nt > 1:
            notes.append("After: " + common.check_thread_scaling(probe, nt).describe())
            print(notes[-1], flush=True)
    out = common.resolve_output_path(args.out)
    chart = write_chart(out.with_suffix(".png"), rows)
    machine = common.describe_machine(torch_module, torch_missing)
    lines = [
        "# dlkern pooling benchmark", "",
        f"- **date**: {common.timestamp()}",
        f"- **command**: `{common.command_line()}`",
        f"- **input**: x {shape} float32, uniform [-1, 1); grad_out fixed, uniform [-1, 1).",
        "- **method**: every library's result checked against the NumPy reference (float64) first; "
        f"median of {args.repeats} samples per library, each >= {common.DEFAULT_MIN_SAMPLE_S * 1e3:g} ms of "
        "back-to-back calls, libraries interleaved sample by sample. dlkern reads NCHW; "
        "'PyTorch channels_last' is timed on x.contiguous(memory_format=torch.channels_last) "
        "(fwd: under no_grad; fwd+bwd: autograd on a channels_last leaf); 'PyTorch NCHW' on x itself. "
        "Outputs are freshly allocated by every library on every call.",
        "- **GB/s** = minimum traffic / time: fwd reads x and writes y; fwd+bwd adds reading grad_out "
        "and writing dx, and for max writing and reading the int64 indices.",
        "- **speedup** dlkern/X = X's time / dlkern's time (> 1: dlkern faster). Targets: fwd >= 1.0x "
        "PyTorch channels_last; fwd+bwd >= 3x PyTorch NCHW.", "",
    ]
    lines += [f"> {n}\n" for n in notes]
    lines += ["## Summary", ""] + common.markdown_table(*summary(rows)) + [""]
    if chart is not None:
        lines += [f"![time per case]({chart.name})", ""]
    lines += ["## Details", ""] + common.markdown_table(*details(rows)) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(machine) + [""]
    out.write_text("\n".join(lines), encoding="utf-8")
    print()
    print(common.text_table(*summary(rows)))
    print(f"\n{time.perf_counter() - started:.1f} s; wrote {out}" + (f" and {chart}" if chart else ""))
    return 0
