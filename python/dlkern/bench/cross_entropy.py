"""``python -m dlkern bench cross_entropy``: fused cross-entropy forward + backward
beside PyTorch (``F.cross_entropy(...).backward()``) and a NumPy reference.

One step = the loss and d loss / d logits for mean reduction over (N, C) float32
logits with int64 targets. dlkern runs ``cross_entropy_forward`` then
``cross_entropy_backward``, once allocating the gradient fresh (as PyTorch's autograd
does) and once into a preallocated ``out=``. Every library's loss and gradient are
checked against float64 first. GB/s counts the bytes a fused step must move: the
logits read twice (forward, backward) and the gradient written once.
"""

from __future__ import annotations

import time
from typing import List

import numpy as np

import dlkern

from . import common

DESCRIPTION = "fused cross-entropy forward+backward against PyTorch and NumPy"

DEFAULT_SHAPES = [(4096, 32000)]
QUICK_SHAPES = [(256, 4000)]
DEFAULT_REPEATS = 5
QUICK_REPEATS = 3
DEFAULT_OUT = "bench/results/cross_entropy.md"
LABELS = {"dlkern": "dlkern", "dlkern_out": "dlkern (out=)", "numpy": "NumPy", "torch": "PyTorch"}
TARGET_VS_TORCH = 1.2
CHECKED_ROWS = 32


def add_arguments(parser) -> None:
    common.add_rowwise_arguments(parser, "NxC logits, comma separated (default 4096x32000)",
                                 DEFAULT_OUT, DEFAULT_REPEATS, QUICK_REPEATS)


def numpy_step(x, target):
    """Float32 NumPy reference: log_softmax, NLL mean, gradient softmax - one_hot."""
    m = x.max(-1, keepdims=True)
    z = x - m
    e = np.exp(z)
    s = e.sum(-1, keepdims=True)
    rows = np.arange(x.shape[0])
    loss = (np.log(s[:, 0]) - z[rows, target]).mean()
    e /= s
    e[rows, target] -= 1
    e /= x.shape[0]
    return loss, e


def validate(name, loss, grad, x, target, rows):
    x64 = x[rows].astype(np.float64)
    m = x64.max(-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x64 - m).sum(-1))
    full_rows = np.arange(x.shape[0])
    # The mean needs every row: float64 log-sum-exp of all rows, chunked.
    total = 0.0
    for start in range(0, x.shape[0], 256):
        chunk = x[start:start + 256].astype(np.float64)
        cm = chunk.max(-1, keepdims=True)
        total += float((cm[:, 0] + np.log(np.exp(chunk - cm).sum(-1)) - chunk[np.arange(len(chunk)),
                                                                              target[start:start + 256]]).sum())
    expected_loss = total / len(full_rows)
    if not abs(float(loss) - expected_loss) <= 1e-4 * max(1.0, abs(expected_loss)):
        raise common.BenchValidationError(f"{LABELS[name]}: loss {float(loss)} != {expected_loss}; not timing it")
    p = np.exp(x64 - lse[:, None])
    p[np.arange(len(rows)), target[rows]] -= 1
    p /= x.shape[0]
    err = float(np.abs(np.asarray(grad)[rows].astype(np.float64) - p).max())
    tol = 64 * np.finfo(np.float32).eps / x.shape[0]
    if not err <= tol:
        raise common.BenchValidationError(f"{LABELS[name]}: gradient error {err:.3g} > {tol:.3g}; not timing it")


def contenders(x, target, peers, torch_module) -> List[common.Contender]:
    ops = dlkern.ops
    one = np.float32(1.0)
    dx = np.empty_like(x)

    def dlkern_step():
        loss, lse = ops.cross_entropy_forward(x, target)
        return loss, ops.cross_entropy_backward(one, x, target, lse)

    def dlkern_out_step():
        loss, lse = ops.cross_entropy_forward(x, target)
        return loss, ops.cross_entropy_backward(one, x, target, lse, out=dx)

    found = [common.Contender("dlkern", dlkern_step), common.Contender("dlkern_out", dlkern_out_step)]
    if "torch" in peers and torch_module is not None:
        tx, tt = torch_module.from_numpy(x), torch_module.from_numpy(target)
        F = torch_module.nn.functional

        def torch_step():
            a = tx.detach().requires_grad_()
            loss = F.cross_entropy(a, tt)
            loss.backward()
            return loss.detach(), a.grad

        found.append(common.Contender("torch", torch_step))
    if "numpy" in peers:
        found.append(common.Contender("numpy", lambda: numpy_step(x, target)))
    return found


def to_numpy(v):
    return v.numpy() if hasattr(v, "numpy") else np.asarray(v)


def scaling_probe():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 32000)).astype(np.float32)
    t = rng.integers(0, 32000, 512)
    return lambda: dlkern.ops.cross_entropy_forward(x, t)


def summary(results):
    names = [n for n in ("dlkern", "dlkern_out", "torch", "numpy") if any(n in r["timings"] for r in results)]
    headers = ["shape NxC", "threads"] + [f"{LABELS[n]} ms" for n in names] + [f"{LABELS[n]} GB/s" for n in names]
    headers += ["PyTorch / dlkern", "PyTorch / dlkern (out=)", "NumPy / dlkern", f"target >= {TARGET_VS_TORCH}x"]
    rows = []
    for r in results:
        t = r["timings"]
        nbytes = 3 * r["shape"][0] * r["shape"][1] * 4
        d = t["dlkern"].median
        row = [f"{r['shape'][0]}x{r['shape'][1]}", r["threads"]]
        row += [f"{t[n].median * 1e3:.1f}" for n in names] + [f"{nbytes / t[n].median / 1e9:.1f}" for n in names]
        row += [common.format_ratio(t["torch"].median if "torch" in t else None, d),
                common.format_ratio(t["torch"].median if "torch" in t else None, t["dlkern_out"].median),
                common.format_ratio(t["numpy"].median if "numpy" in t else None, d)]
        row += ["met" if "torch" in t and t["torch"].median / d >= TARGET_VS_TORCH else
                ("MISSED" if "torch" in t else "-")]
        rows.append(row)
    return headers, rows


def run(args) -> int:
    threads, shapes, torch_module, torch_missing = common.rowwise_setup(
        args, DEFAULT_SHAPES, QUICK_SHAPES, DEFAULT_REPEATS, QUICK_REPEATS, "NxC")
    notes, results = [], []
    started = time.perf_counter()
    for n in threads:
        if n > 1:
            s = common.check_thread_scaling(scaling_probe(), n, settle_s=args.settle_ms / 1e3)
            notes.append("Before: " + s.describe())
            print(notes[-1], flush=True)
        for shape in shapes:
            rng = np.random.default_rng([shape[0], shape[1]])
            x = rng.standard_normal(shape).astype(np.float32)
            target = rng.integers(0, shape[1], shape[0])
            rows = np.unique(np.concatenate([[0, shape[0] - 1], rng.integers(0, shape[0], CHECKED_ROWS)]))
            found = contenders(x, target, args.peers, torch_module)
            with common.pinned_threads(n, torch_module):
                for c in found:
                    loss, grad = c.run()
                    validate(c.name, to_numpy(loss), to_numpy(grad), x, target, rows)
                timings = common.measure_interleaved(found, args.repeats, n, args.min_sample_ms / 1e3,
                                                     args.settle_ms / 1e3)
            results.append({"shape": shape, "threads": n, "timings": timings})
            d = timings["dlkern"].median
            print(f"[{n}T] {shape}: " + " | ".join(
                f"{LABELS[k]} {v.median * 1e3:.1f} ms" + ("" if k == "dlkern" else f" ({v.median / d:.2f}x)")
                for k, v in timings.items()), flush=True)
        if n > 1:
            s = common.check_thread_scaling(scaling_probe(), n, settle_s=args.settle_ms / 1e3)
            notes.append("After: " + s.describe())
            print(notes[-1], flush=True)
    out_path = common.resolve_output_path(args.out)
    machine = common.describe_machine(torch_module, torch_missing)
    headers, rows = summary(results)
    lines = [
        "# dlkern cross-entropy benchmark", "",
        f"- **date**: {common.timestamp()}",
        f"- **command**: `{common.command_line()}`",
        f"- **method**: float32 standard-normal logits, int64 targets, reduction='mean'; one step = loss + "
        f"d loss / d logits. dlkern: `cross_entropy_forward` + `cross_entropy_backward` (gradient allocated "
        f"fresh, or into a preallocated `out=`); PyTorch: `F.cross_entropy(x, t).backward()` on a leaf tensor "
        f"sharing the NumPy buffer; NumPy: a float32 reference (log-softmax, NLL, softmax - one-hot). Results "
        f"checked against float64 first; median of {args.repeats} samples; libraries alternate sample by sample.",
        "- **GB/s** = 3 x N x C x 4 bytes (logits read by forward and backward, gradient written) / time. "
        "Ratios are peer time / dlkern time.", "",
    ]
    lines += [f"> {note}\n" for note in notes]
    lines += ["## Summary", ""] + common.markdown_table(headers, rows) + [""]
    detail = [[f"{r['shape'][0]}x{r['shape'][1]}", r["threads"], LABELS[k], f"{v.median * 1e3:.2f}",
               f"{100 * v.spread:.0f}%", v.calls_per_sample] for r in results for k, v in r["timings"].items()]
    lines += ["## Details", ""] + common.markdown_table(
        ["shape", "threads", "library", "median ms", "spread", "calls/sample"], detail) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(machine) + [""]
    out_path.write_text("\n".join(lines), encoding="utf-8")
    print()
    print(common.text_table(headers, rows))
    print(f"\n{time.perf_counter() - started:.1f} s; wrote {out_path}")
    return 0
