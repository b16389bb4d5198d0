"""``python -m dlkern bench gelu``: dlkern's fused tanh-approximation GELU (forward and
backward) beside PyTorch and the NumPy form it replaced.

All libraries run in one process on the same float32 input at the same thread count.
PyTorch: ``torch.nn.functional.gelu(x, approximate="tanh")`` and its backward
(``torch.ops.aten.gelu_backward``). NumPy: the in-place passes a NumPy user would write.
Each result is checked against float64 first. GB/s counts the arrays read and written
once (forward: x in, y out; backward: grad and x in, dx out).
"""

from __future__ import annotations

import time

import numpy as np

import dlkern

from . import common

DESCRIPTION = "fused tanh-approximation GELU, forward and backward, against PyTorch and NumPy"

DEFAULT_SHAPES = [(2048, 768), (16384, 3072)]
QUICK_SHAPES = [(256, 768)]
DEFAULT_REPEATS = 7
QUICK_REPEATS = 3
DEFAULT_OUT = "bench/results/gelu.md"
LABELS = {"dlkern": "dlkern", "numpy": "NumPy", "torch": "PyTorch"}
_C = float(np.sqrt(2 / np.pi))
_K = 0.044715


def add_arguments(parser) -> None:
    common.add_rowwise_arguments(parser, "ROWSxCOLS, comma separated (default 2048x768,16384x3072)",
                                 DEFAULT_OUT, DEFAULT_REPEATS, QUICK_REPEATS)


def numpy_forward(x):
    t = x * x
    t *= _K * _C
    t += _C
    t *= x
    np.tanh(t, out=t)
    t += 1
    t *= x
    t *= 0.5
    return t


def numpy_backward(g, x):
    t = x * x
    t *= _K * _C
    t += _C
    t *= x
    np.tanh(t, out=t)
    u = x * x
    u *= 1.5 * _K * _C
    u += 0.5 * _C
    s = t * t
    s -= 1
    s *= x
    s *= u
    t *= 0.5
    t += 0.5
    t -= s
    t *= g
    return t


def reference(op, g, x):
    x = x.astype(np.float64)
    s = 1 / (1 + np.exp(-2 * _C * (x + _K * x ** 3)))
    if op == "forward":
        return x * s
    return g * (s + x * s * (1 - s) * 2 * _C * (1 + 3 * _K * x * x))


def contenders(op, g, x, peers, torch_module):
    if op == "forward":
        found = [common.Contender("dlkern", lambda: dlkern.ops.gelu_tanh(x))]
    else:
        found = [common.Contender("dlkern", lambda: dlkern.ops.gelu_tanh_backward(g, x))]
    if "torch" in peers and torch_module is not None:
        tx, tg = torch_module.from_numpy(x), torch_module.from_numpy(g)
        if op == "forward":
            found.append(common.Contender("torch", lambda: torch_module.nn.functional.gelu(tx, approximate="tanh")))
        else:
            found.append(common.Contender("torch", lambda: torch_module.ops.aten.gelu_backward(tg, tx,
                                                                                              approximate="tanh")))
    if "numpy" in peers:
        found.append(common.Contender("numpy", (lambda: numpy_forward(x)) if op == "forward" else
                                      (lambda: numpy_backward(g, x))))
    return found


def bench_one(op, shape, n_threads, args, torch_module):
    rng = np.random.default_rng(list(shape))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    expected = reference(op, g, x)
    found = contenders(op, g, x, args.peers, torch_module)
    with common.pinned_threads(n_threads, torch_module):
        for c in found:
            result = c.run()
            got = np.asarray(result.numpy() if hasattr(result, "numpy") else result, np.float64)
            # relative to |x| + 1: the 0.5 x (1 + tanh) form (PyTorch's, NumPy's) cancels for negative x
            err = float(np.max(np.abs(got - expected) / (np.abs(x) + 1)))
            if not err <= 1e-5:
                raise common.BenchValidationError(f"{LABELS[c.name]} gelu {op} {shape}: relative error {err:.3g}")
        return common.measure_interleaved(found, args.repeats, n_threads, args.min_sample_ms / 1e3,
                                          args.settle_ms / 1e3)


def run(args) -> int:
    threads, shapes, torch_module, torch_missing = common.rowwise_setup(
        args, DEFAULT_SHAPES, QUICK_SHAPES, DEFAULT_REPEATS, QUICK_REPEATS)
    rows, started = [], time.perf_counter()
    names = ["dlkern"] + [p for p in ("torch", "numpy") if p in args.peers and (p != "torch" or torch_module)]
    for n in threads:
        for shape in shapes:
            for op in ("forward", "backward"):
                t = bench_one(op, shape, n, args, torch_module)
                arrays = 2 if op == "forward" else 3
                gbs = [f"{arrays * shape[0] * shape[1] * 4 / t[k].median / 1e9:.1f}" for k in names]
                rows.append([op, f"{shape[0]}x{shape[1]}", n] + [f"{t[k].median * 1e3:.3f}" for k in names] + gbs
                            + [common.format_ratio(t[k].median, t["dlkern"].median) for k in names[1:]])
                print(f"[{n}T] gelu {op} {shape}: " + " | ".join(f"{LABELS[k]} {t[k].median * 1e3:.3f} ms"
                                                                  for k in names), flush=True)
    headers = (["op", "shape", "threads"] + [f"{LABELS[k]} ms" for k in names] + [f"{LABELS[k]} GB/s" for k in names]
               + [f"dlkern/{LABELS[k]}" for k in names[1:]])
    out_path = common.resolve_output_path(args.out)
    lines = ["# dlkern GELU (tanh approximation) benchmark", "",
             f"- **date**: {common.timestamp()}", f"- **command**: `{common.command_line()}`",
             f"- **method**: float32, standard-normal * 3 input; each result checked against float64 first; median "
             f"of {args.repeats} interleaved samples, each >= {args.min_sample_ms:g} ms of back-to-back calls "
             f"(fresh outputs, as in training).", ""]
    lines += ["## Summary", ""] + common.markdown_table(headers, rows) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(common.describe_machine(torch_module, torch_missing)) + [""]
    out_path.write_text("\n".join(lines), encoding="utf-8")
    print()
    print(common.text_table(headers, rows))
    print(f"\n{time.perf_counter() - started:.1f} s; wrote {out_path}")
    return 0
