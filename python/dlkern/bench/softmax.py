"""``python -m dlkern bench softmax``: dlkern's softmax and log_softmax (last axis)
beside PyTorch and a NumPy reference.

All libraries run in one process on the same float32 input, at the same thread count,
each writing into its own preallocated output (PyTorch through ``torch._softmax(...,
out=)``; a fresh 100 MB output would add page faults to every call, see MACHINE.md).
Each library's result is checked against a float64 softmax first. GB/s counts the
input read once and the output written once. Speedup = peer time / dlkern time.
"""

from __future__ import annotations

import time
from typing import Dict, List

import numpy as np

import dlkern

from . import common

DESCRIPTION = "softmax / log_softmax over the last axis against PyTorch and NumPy"

DEFAULT_SHAPES = [(4096, 1024), (32768, 768)]
QUICK_SHAPES = [(256, 1024)]
OPS = ("softmax", "log_softmax")
DEFAULT_REPEATS = 7
QUICK_REPEATS = 3
DEFAULT_OUT = "bench/results/softmax.md"
LABELS = {"dlkern": "dlkern", "numpy": "NumPy", "torch": "PyTorch"}
TARGET_VS_TORCH = 1.2
CHECKED_ROWS = 64


def add_arguments(parser) -> None:
    common.add_rowwise_arguments(parser, "ROWSxCOLS, comma separated (default 4096x1024,32768x768)",
                                 DEFAULT_OUT, DEFAULT_REPEATS, QUICK_REPEATS)


# ----------------------------------------------------------------------------- references


def numpy_softmax(x, out, log):
    """The NumPy reference the tests use, in float32 (what a NumPy user would write)."""
    m = x.max(axis=-1, keepdims=True)
    np.subtract(x, m, out=out)
    if log:
        s = np.log(np.exp(out).sum(axis=-1, keepdims=True))
        np.subtract(out, s, out=out)
    else:
        np.exp(out, out=out)
        out /= out.sum(axis=-1, keepdims=True)
    return out


def validate(name: str, op: str, result, x: np.ndarray, rows: np.ndarray) -> None:
    got = np.asarray(result)[rows].astype(np.float64)
    x64 = x[rows].astype(np.float64)
    z = x64 - x64.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1, keepdims=True))
    expected = z - lse if op == "log_softmax" else np.exp(z - lse)
    scale = np.maximum(np.abs(expected), 1.0) if op == "log_softmax" else np.abs(expected) + 1e-30
    err = float((np.abs(got - expected) / scale).max())
    tol = 8 * np.sqrt(x.shape[1]) * np.finfo(np.float32).eps
    if not err <= tol:
        raise common.BenchValidationError(f"{LABELS[name]} {op} {x.shape}: relative error {err:.3g} > {tol:.3g}; "
                                          "not timing it")


def contenders(op: str, x: np.ndarray, peers: List[str], torch_module) -> List[common.Contender]:
    log = op == "log_softmax"
    fn = dlkern.ops.log_softmax if log else dlkern.ops.softmax
    out_d = np.empty_like(x)
    found = [common.Contender("dlkern", lambda: fn(x, -1, out=out_d))]
    if "torch" in peers and torch_module is not None:
        tx = torch_module.from_numpy(x)
        tout = torch_module.empty(x.shape, dtype=tx.dtype)
        tfn = torch_module._log_softmax if log else torch_module._softmax
        found.append(common.Contender("torch", lambda: tfn(tx, -1, False, out=tout)))
    if "numpy" in peers:
        out_n = np.empty_like(x)
        found.append(common.Contender("numpy", lambda: numpy_softmax(x, out_n, log)))
    return found


def as_numpy(result):
    return result.numpy() if hasattr(result, "numpy") else np.asarray(result)


# ----------------------------------------------------------------------------- running


def bench_one(op, shape, n_threads, args, torch_module) -> Dict[str, common.Timing]:
    rng = np.random.default_rng([shape[0], shape[1]])
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    rows = np.unique(np.concatenate([[0, shape[0] - 1], rng.integers(0, shape[0], CHECKED_ROWS)]))
    found = contenders(op, x, args.peers, torch_module)
    with common.pinned_threads(n_threads, torch_module):
        for c in found:
            validate(c.name, op, as_numpy(c.run()), x, rows)
        return common.measure_interleaved(found, args.repeats, n_threads, args.min_sample_ms / 1e3,
                                          args.settle_ms / 1e3)


def scaling_probe():
    x = np.random.default_rng(1).standard_normal((4096, 1024)).astype(np.float32)
    out = np.empty_like(x)
    return lambda: dlkern.ops.softmax(x, -1, out=out)


def summary_rows(results):
    libraries = [name for name in ("dlkern", "torch", "numpy") if any(name in r["timings"] for r in results)]
    peers = [name for name in libraries if name != "dlkern"]
    headers = ["op", "shape", "threads"] + [f"{LABELS[n]} ms" for n in libraries]
    headers += [f"{LABELS[n]} GB/s" for n in libraries] + [f"dlkern/{LABELS[n]}" for n in peers]
    headers += [f"target dlkern/PyTorch >= {TARGET_VS_TORCH}x"]
    rows = []
    for r in results:
        t = r["timings"]
        nbytes = 2 * r["shape"][0] * r["shape"][1] * 4
        d = t["dlkern"].median
        row = [r["op"], f"{r['shape'][0]}x{r['shape'][1]}", r["threads"]]
        row += [f"{t[n].median * 1e3:.3f}" if n in t else "-" for n in libraries]
        row += [f"{nbytes / t[n].median / 1e9:.1f}" if n in t else "-" for n in libraries]
        row += [common.format_ratio(t[n].median if n in t else None, d) for n in peers]
        row += ["met" if "torch" in t and t["torch"].median / d >= TARGET_VS_TORCH else
                ("MISSED" if "torch" in t else "-")]
        rows.append(row)
    return headers, rows


def detail_rows(results):
    headers = ["op", "shape", "threads", "library", "median ms", "spread", "calls/sample"]
    rows = []
    for r in results:
        for name, timing in r["timings"].items():
            rows.append([r["op"], f"{r['shape'][0]}x{r['shape'][1]}", r["threads"], LABELS[name],
                         f"{timing.median * 1e3:.4f}", f"{100 * timing.spread:.0f}%", timing.calls_per_sample])
    return headers, rows


def write_chart(path, results, thread_counts):
    matplotlib, _ = common.optional_import("matplotlib")
    if matplotlib is None:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(thread_counts), 1, figsize=(10, 3.5 * len(thread_counts)), squeeze=False)
    for axis, n in zip(axes[:, 0], thread_counts):
        group = [r for r in results if r["threads"] == n]
        names = [name for name in ("dlkern", "torch", "numpy") if any(name in r["timings"] for r in group)]
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            heights = [2 * r["shape"][0] * r["shape"][1] * 4 / r["timings"][name].median / 1e9
                       if name in r["timings"] else 0 for r in group]
            axis.bar(np.arange(len(group)) + (i - (len(names) - 1) / 2) * width, heights, width, label=LABELS[name])
        axis.set_xticks(np.arange(len(group)))
        axis.set_xticklabels([f"{r['op']} {r['shape'][0]}x{r['shape'][1]}" for r in group])
        axis.set_ylabel("GB/s (read + write)")
        axis.set_title(f"softmax float32, {n} thread{'s' if n > 1 else ''}")
        axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(args) -> int:
    threads, shapes, torch_module, torch_missing = common.rowwise_setup(
        args, DEFAULT_SHAPES, QUICK_SHAPES, DEFAULT_REPEATS, QUICK_REPEATS)
    notes, results = [], []
    started = time.perf_counter()
    for n in threads:
        if n > 1:
            s = common.check_thread_scaling(scaling_probe(), n, settle_s=args.settle_ms / 1e3)
            notes.append("Before: " + s.describe())
            print(notes[-1], flush=True)
        for shape in shapes:
            for op in OPS:
                timings = bench_one(op, shape, n, args, torch_module)
                results.append({"op": op, "shape": shape, "threads": n, "timings": timings})
                d = timings["dlkern"].median
                print(f"[{n}T] {op} {shape}: " + " | ".join(
                    f"{LABELS[k]} {v.median * 1e3:.3f} ms" + ("" if k == "dlkern" else f" ({v.median / d:.2f}x)")
                    for k, v in timings.items()), flush=True)
        if n > 1:
            s = common.check_thread_scaling(scaling_probe(), n, settle_s=args.settle_ms / 1e3)
            notes.append("After: " + s.describe())
            print(notes[-1], flush=True)
    out_path = common.resolve_output_path(args.out)
    chart = write_chart(out_path.with_suffix(".png"), results, threads)
    machine = common.describe_machine(torch_module, torch_missing)
    lines = [
        "# dlkern softmax benchmark", "",
        f"- **date**: {common.timestamp()}",
        f"- **command**: `{common.command_line()}`",
        f"- **method**: float32, standard-normal * 4 input, softmax/log_softmax over the last axis into a "
        f"preallocated output (PyTorch: `torch._softmax(x, -1, False, out=)`); each library's result checked "
        f"against float64 on sampled rows first; median of {args.repeats} samples, each >= {args.min_sample_ms:g} ms "
        f"of back-to-back calls; libraries alternate sample by sample.",
        "- **GB/s** = (input read + output written) / time. **speedup** dlkern/X = X's time / dlkern's time.",
        "- **NumPy** is the float32 reference a NumPy user would write (max, subtract, exp, sum, divide).", "",
    ]
    lines += [f"> {note}\n" for note in notes]
    lines += ["## Summary", ""] + common.markdown_table(*summary_rows(results)) + [""]
    if chart is not None:
        lines += [f"![GB/s]({chart.name})", ""]
    lines += ["## Details", ""] + common.markdown_table(*detail_rows(results)) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(machine) + [""]
    out_path.write_text("\n".join(lines), encoding="utf-8")
    print()
    print(common.text_table(*summary_rows(results)))
    print(f"\n{time.perf_counter() - started:.1f} s; wrote {out_path}" + (f" and {chart}" if chart else ""))
    return 0
