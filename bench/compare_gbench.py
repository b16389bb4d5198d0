#!/usr/bin/env python3
"""Compare two dlkern_gbench (Google Benchmark) JSON result files.

    dlkern_gbench --benchmark_format=json --benchmark_out=before.json   # (or --benchmark_out=...)
    ... change something, rebuild ...
    dlkern_gbench --benchmark_out=after.json --benchmark_out_format=json
    python bench/compare_gbench.py before.json after.json [--metric real_time] [--filter gemm]
                                                        [--fail-above 1.10]

Prints one table per kernel family (the name up to its first '/'): each benchmark's time
in A and B, the ratio B/A (below 1: B is faster) and the speedup A/B, then the geometric
mean of the ratios per family and overall. With --benchmark_repetitions the median
aggregate is used (or the median of the repeated runs when only those were written).
A benchmark that reported an error in either file is listed as such and left out of the
means; one present in only one file is listed at the end. --fail-above R exits 1 when a
benchmark's ratio exceeds R (a regression gate). Standard library only.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys

_UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


class InputError(Exception):
    """A result file that cannot be read as Google Benchmark JSON."""


def load(path):
    """{name: {"time_ns": {...metric: ns}, "error": str or None}} and the file's context."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read as JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise InputError(f"{path}: not a Google Benchmark JSON file (no 'benchmarks' list)")
    runs, medians, errors = {}, {}, {}
    for b in data["benchmarks"]:
        if not isinstance(b, dict) or "name" not in b:
            raise InputError(f"{path}: a benchmark entry without a name")
        # Repeated runs share run_name; their aggregates are named run_name + "_median" etc.
        name = b.get("run_name", b["name"])
        if b.get("error_occurred"):
            errors[name] = b.get("error_message", "error")
            continue
        scale = _UNIT_NS.get(b.get("time_unit", "ns"))
        if scale is None:
            raise InputError(f"{path}: {b['name']}: unknown time_unit {b.get('time_unit')!r}")
        times = {m: float(b[m]) * scale for m in ("real_time", "cpu_time") if m in b}
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = times
        else:
            runs.setdefault(name, []).append(times)
    results = {}
    for name, rs in runs.items():
        times = medians.get(name) or {m: statistics.median(r[m] for r in rs) for m in rs[0]}
        results[name] = {"time_ns": times, "error": None}
    for name, msg in errors.items():
        results[name] = {"time_ns": {}, "error": msg}
    return results, data.get("context", {})


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3f} {unit}"
    return f"{ns:.1f} ns"


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def compare(a, b, metric="real_time", pattern=None):
    """Rows (family, name, time_a, time_b, ratio or None, note) in A's order, then B's extras."""
    rx = re.compile(pattern) if pattern else None
    names = list(a) + [n for n in b if n not in a]
    rows = []
    for name in names:
        if rx and not rx.search(name):
            continue
        family = name.split("/", 1)[0]
        ra, rb = a.get(name), b.get(name)
        if ra is None or rb is None:
            rows.append((family, name, None, None, None, "only in " + ("B" if ra is None else "A")))
        elif ra["error"] or rb["error"]:
            rows.append((family, name, None, None, None, "error: " + (ra["error"] or rb["error"])))
        elif metric not in ra["time_ns"] or metric not in rb["time_ns"]:
            rows.append((family, name, None, None, None, f"no {metric}"))
        else:
            ta, tb = ra["time_ns"][metric], rb["time_ns"][metric]
            ratio = tb / ta if ta > 0 else None
            rows.append((family, name, ta, tb, ratio, ""))
    return rows


def render(rows, label_a="A", label_b="B"):
    lines = []
    width = max([len(r[1]) for r in rows] + [9])
    header = f"{'benchmark':<{width}}  {label_a:>12}  {label_b:>12}  {'B/A':>7}  {'speedup':>7}"
    families = []
    for r in rows:
        if r[0] not in families:
            families.append(r[0])
    all_ratios = []
    for fam in families:
        fam_rows = [r for r in rows if r[0] == fam]
        lines += ["", f"== {fam}", header, "-" * len(header)]
        ratios = []
        for _, name, ta, tb, ratio, note in fam_rows:
            if ratio is None:
                lines.append(f"{name:<{width}}  {note}")
                continue
            ratios.append(ratio)
            lines.append(f"{name:<{width}}  {fmt_time(ta):>12}  {fmt_time(tb):>12}  {ratio:7.3f}  {1 / ratio:6.2f}x")
        if len(ratios) > 1:
            lines.append(f"{'geometric mean':<{width}}  {'':>12}  {'':>12}  {geomean(ratios):7.3f}  {1 / geomean(ratios):6.2f}x")
        all_ratios += ratios
    if all_ratios:
        g = geomean(all_ratios)
        lines += ["", f"overall geometric mean B/A over {len(all_ratios)} benchmarks: {g:.3f} ({1 / g:.2f}x speedup)"]
    return "\n".join(lines)


def context_notes(ctx_a, ctx_b):
    """The settings that differ between the two runs (timings then compare unlike things)."""
    notes = []
    for key in ("host_name", "num_cpus", "mhz_per_cpu", "library_build_type", "dlkern_isa", "dlkern_threads"):
        va, vb = ctx_a.get(key), ctx_b.get(key)
        if va != vb:
            notes.append(f"note: {key} differs: A={va} B={vb}")
    return notes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="baseline JSON (dlkern_gbench --benchmark_out=... --benchmark_out_format=json)")
    p.add_argument("b", help="JSON to compare against the baseline")
    p.add_argument("--metric", choices=("real_time", "cpu_time"), default="real_time",
                   help="which time to compare (default: real_time, the wall clock the kernels' threads share)")
    p.add_argument("--filter", help="only benchmarks whose name matches this regular expression")
    p.add_argument("--fail-above", type=float, metavar="RATIO",
                   help="exit 1 when any benchmark's B/A ratio is above RATIO (e.g. 1.10)")
    args = p.parse_args(argv)
    if args.fail_above is not None and not args.fail_above > 0:
        p.error(f"--fail-above must be positive (got {args.fail_above})")
    try:
        if args.filter:
            re.compile(args.filter)
    except re.error as e:
        p.error(f"--filter: bad regular expression: {e}")
    try:
        (a, ctx_a), (b, ctx_b) = load(args.a), load(args.b)
    except InputError as e:
        print(f"compare_gbench: {e}", file=sys.stderr)
        return 2
    rows = compare(a, b, args.metric, args.filter)
    if not rows:
        print("compare_gbench: no benchmark to compare" + (f" matches {args.filter!r}" if args.filter else ""),
              file=sys.stderr)
        return 2
    for note in context_notes(ctx_a, ctx_b):
        print(note)
    print(f"A = {args.a}\nB = {args.b}\nmetric: {args.metric}; B/A < 1: B is faster")
    print(render(rows))
    if args.fail_above is not None:
        slow = [(n, r) for _, n, _, _, r, _ in rows if r is not None and r > args.fail_above]
        for name, r in slow:
            print(f"REGRESSION {name}: B/A = {r:.3f} > {args.fail_above}", file=sys.stderr)
        if slow:
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # piped into head: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(0)
