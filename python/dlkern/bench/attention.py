"""``python -m dlkern bench attention``: dlkern's tiled attention beside PyTorch's
``torch.nn.functional.scaled_dot_product_attention`` (CPU).

Two groups, float32, D = 64:

* **sdpa**: (B, H, T, D) self-attention, full and causal, forward and forward+backward
  (dlkern: ``attention_forward`` then ``attention_backward``; PyTorch: SDPA then
  ``out.backward(g)`` on leaf tensors). GFLOP/s counts 4*B*H*Tq*Tk*D for the forward
  (halved when causal) and 2.5x that for forward+backward.
* **decode**: one new token of 12 query heads against a KV cache of ``length``
  positions (12 or 4 kv heads). dlkern reads the cache in place
  (``decode_attention``); PyTorch does what a user would: ``SDPA(q, k[:, :, :L],
  v[:, :, :L], enable_gqa=True)``. GB/s = bytes of K and V read / time.

Every result is checked against a float64 NumPy attention on the first batch entry and
kv-head group before timing. Speedup = PyTorch's time / dlkern's time.
"""

from __future__ import annotations

import time
from typing import Dict

import numpy as np

import dlkern

from . import common

DESCRIPTION = "tiled attention (SDPA fwd/bwd, KV-cache decode) against PyTorch SDPA"

SDPA_SHAPES = [(8, 12, 512, 64), (1, 12, 2048, 64)]
QUICK_SDPA_SHAPES = [(1, 2, 80, 16)]
DECODE_CASES = [(b, 12, hkv, length) for length in (1024, 4096) for hkv in (12, 4) for b in (1, 2, 4, 8)]
QUICK_DECODE_CASES = [(1, 4, 2, 100)]
DEFAULT_REPEATS = 5
QUICK_REPEATS = 2
DEFAULT_OUT = "bench/results/attention.md"
TARGET_SDPA = 1.2
TARGET_DECODE = 1.5
TARGET_BANDWIDTH = 0.70
L3_BYTES = 32 << 20
# DRAM read bandwidth of the benchmark machine (MACHINE.md, top of the measured range).
DRAM_GBS = {1: 26.0, 2: 33.0}
LABELS = {"dlkern": "dlkern", "torch": "PyTorch"}


def add_arguments(parser) -> None:
    parser.add_argument("--threads", default="1,2", help="thread counts, comma separated (default 1,2)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed samples per library (default {DEFAULT_REPEATS}, {QUICK_REPEATS} with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and few repeats: a smoke test")
    parser.add_argument("--only", default="sdpa,decode", help="groups to run: sdpa, decode (default both)")
    parser.add_argument("--min-sample-ms", type=float, default=common.DEFAULT_MIN_SAMPLE_S * 1e3)
    parser.add_argument("--settle-ms", type=float, default=common.DEFAULT_SETTLE_S * 1e3)
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"markdown report (default {DEFAULT_OUT})")


# ----------------------------------------------------------------------------- reference


def reference(q, k, v, causal, causal_offset=0, go=None):
    """float64 attention (and its gradients for cotangent go) of one (b, kv-group) slice."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    g = q.shape[0] // k.shape[0]
    kk, vv = np.repeat(k, g, 0), np.repeat(v, g, 0)
    s = q @ np.swapaxes(kk, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        Tq, Tk = s.shape[-2:]
        s = np.where(np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + causal_offset, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = p @ vv
    if go is None:
        return [out]
    go = np.asarray(go, np.float64)
    dp = go @ np.swapaxes(vv, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) / np.sqrt(q.shape[-1])
    fold = lambda x: x.reshape(k.shape[0], g, *x.shape[1:]).sum(1)  # noqa: E731
    return [out, ds @ kk, fold(np.swapaxes(ds, -1, -2) @ q), fold(np.swapaxes(p, -1, -2) @ go)]


def validate(label, got, want):
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, want):
        err = float(np.abs(np.asarray(a, np.float64) - b).max() / max(1.0, np.abs(b).max()))
        if not err <= 2e-4:
            raise common.BenchValidationError(f"{label}: {name} differs from float64 by {err:.3g}; not timing it")


def as_numpy(x):
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


# ----------------------------------------------------------------------------- contenders


def sdpa_contenders(shape, causal, backward, torch_module):
    B, H, T, D = shape
    rng = np.random.default_rng([B, H, T, D])
    q, k, v, go = (rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4))
    ops = dlkern.ops

    def run_dlkern():
        out, lse = ops.attention_forward(q, k, v, is_causal=causal)
        if not backward:
            return [out]
        return [out, *ops.attention_backward(go, q, k, v, out, lse, is_causal=causal)]

    found = [common.Contender("dlkern", run_dlkern)]
    if torch_module is not None:
        F = torch_module.nn.functional
        tq, tk, tv = (torch_module.from_numpy(a.copy()).requires_grad_(backward) for a in (q, k, v))
        tgo = torch_module.from_numpy(go)

        def run_torch():
            if not backward:
                with torch_module.no_grad():
                    return [F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)]
            for t in (tq, tk, tv):
                t.grad = None
            out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
            out.backward(tgo)
            return [out, tq.grad, tk.grad, tv.grad]

        found.append(common.Contender("torch", run_torch))
    want = reference(q[0, :1], k[0, :1], v[0, :1], causal, go=go[0, :1] if backward else None)
    check = lambda res: [as_numpy(r)[0, :1] for r in res]  # noqa: E731
    return found, want, check


def decode_contenders(case, torch_module):
    B, Hq, Hkv, L = case
    D, capacity = 64, case[3] + 64
    rng = np.random.default_rng(list(case))
    kc = rng.standard_normal((B, Hkv, capacity, D)).astype(np.float32)
    vc = rng.standard_normal((B, Hkv, capacity, D)).astype(np.float32)
    q = rng.standard_normal((B, Hq, 1, D)).astype(np.float32)
    found = [common.Contender("dlkern", lambda: [dlkern.ops.decode_attention(q, kc, vc, L)])]
    if torch_module is not None:
        F = torch_module.nn.functional
        tq, tk, tv = (torch_module.from_numpy(a) for a in (q, kc, vc))

        def run_torch():
            with torch_module.no_grad():
                return [F.scaled_dot_product_attention(tq, tk[:, :, :L], tv[:, :, :L], enable_gqa=Hq != Hkv)]

        found.append(common.Contender("torch", run_torch))
    g = Hq // Hkv
    want = reference(q[0, :g], kc[0, :1, :L], vc[0, :1, :L], False)
    check = lambda res: [as_numpy(r)[0, :g] for r in res]  # noqa: E731
    return found, want, check


def measure(found, want, check, label, n_threads, args, torch_module) -> Dict[str, common.Timing]:
    with common.pinned_threads(n_threads, torch_module):
        for c in found:
            validate(f"{LABELS[c.name]} {label}", check(c.run()), want)
        return common.measure_interleaved(found, args.repeats, n_threads, args.min_sample_ms / 1e3,
                                          args.settle_ms / 1e3)


def scaling_probe():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 4, 256, 64)).astype(np.float32) for _ in range(3))
    return lambda: dlkern.ops.attention_forward(q, k, v)


# ----------------------------------------------------------------------------- report


def sdpa_table(results):
    headers = ["case", "shape (B,H,T,D)", "threads", "dlkern ms", "PyTorch ms", "dlkern GFLOP/s",
               "PyTorch GFLOP/s", "dlkern/PyTorch", f"target >= {TARGET_SDPA}x"]
    rows = []
    for r in results:
        t = r["timings"]
        d = t["dlkern"].median
        tt = t["torch"].median if "torch" in t else None
        rows.append([r["label"], "x".join(map(str, r["shape"])), r["threads"], f"{d * 1e3:.2f}",
                     f"{tt * 1e3:.2f}" if tt else "-", f"{r['flops'] / d / 1e9:.0f}",
                     f"{r['flops'] / tt / 1e9:.0f}" if tt else "-", common.format_ratio(tt, d),
                     "-" if tt is None else ("met" if tt / d >= TARGET_SDPA else "MISSED")])
    return headers, rows


def decode_table(results):
    headers = ["B", "Hq/Hkv", "length", "threads", "K+V MiB", "dlkern us", "PyTorch us", "dlkern GB/s",
               "% of DRAM bw", "PyTorch GB/s", "dlkern/PyTorch", f"target >= {TARGET_DECODE}x",
               f"target >= {TARGET_BANDWIDTH:.0%} bw (> L3)"]
    rows = []
    for r in results:
        t = r["timings"]
        d = t["dlkern"].median
        tt = t["torch"].median if "torch" in t else None
        B, Hq, Hkv, L = r["case"]
        gbs = r["bytes"] / d / 1e9
        frac = gbs / DRAM_GBS.get(r["threads"], DRAM_GBS[2])
        rows.append([B, f"{Hq}/{Hkv}", L, r["threads"], f"{r['bytes'] / 2**20:.1f}", f"{d * 1e6:.0f}",
                     f"{tt * 1e6:.0f}" if tt else "-", f"{gbs:.1f}", f"{100 * frac:.0f}%",
                     f"{r['bytes'] / tt / 1e9:.1f}" if tt else "-", common.format_ratio(tt, d),
                     "-" if tt is None else ("met" if tt / d >= TARGET_DECODE else "MISSED"),
                     ("met" if frac >= TARGET_BANDWIDTH else "MISSED") if r["bytes"] > L3_BYTES else "-"])
    return headers, rows


def run(args) -> int:
    threads = [int(t) for t in str(args.threads).split(",") if t.strip()]
    groups = {g.strip() for g in str(args.only).split(",")}
    args.repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    torch_module, torch_missing = common.optional_import("torch")
    if torch_module is None:
        print(f"PyTorch not available ({torch_missing})")
    sdpa_shapes = QUICK_SDPA_SHAPES if args.quick else SDPA_SHAPES
    decode_cases = QUICK_DECODE_CASES if args.quick else DECODE_CASES
    notes, sdpa_results, decode_results = [], [], []
    started = time.perf_counter()

    def report(label, n, timings):
        d = timings["dlkern"].median
        print(f"[{n}T] {label}: " + " | ".join(
            f"{LABELS[k]} {v.median * 1e3:.3f} ms" + ("" if k == "dlkern" else f" ({v.median / d:.2f}x)")
            for k, v in timings.items()), flush=True)

    for n in threads:
        if n > 1:
            notes.append("Before: " + common.check_thread_scaling(scaling_probe(), n).describe())
            print(notes[-1], flush=True)
        if "sdpa" in groups:
            for shape in sdpa_shapes:
                for causal in (False, True):
                    for backward in (False, True):
                        label = f"sdpa {'causal' if causal else 'full'} {'fwd+bwd' if backward else 'fwd'}"
                        found, want, check = sdpa_contenders(shape, causal, backward, torch_module)
                        timings = measure(found, want, check, f"{label} {shape}", n, args, torch_module)
                        B, H, T, D = shape
                        flops = 4.0 * B * H * T * T * D / (2 if causal else 1) * (2.5 if backward else 1)
                        sdpa_results.append(dict(label=label, shape=shape, threads=n, timings=timings, flops=flops))
                        report(f"{label} {shape}", n, timings)
        if "decode" in groups:
            for case in decode_cases:
                found, want, check = decode_contenders(case, torch_module)
                timings = measure(found, want, check, f"decode {case}", n, args, torch_module)
                B, Hq, Hkv, L = case
                decode_results.append(dict(case=case, threads=n, timings=timings, bytes=2 * B * Hkv * L * 64 * 4))
                report(f"decode B{B} Hq{Hq} Hkv{Hkv} L{L}", n, timings)
        if n > 1:
            notes.append("After: " + common.check_thread_scaling(scaling_probe(), n).describe())
            print(notes[-1], flush=True)

    out_path = common.resolve_output_path(args.out)
    machine = common.describe_machine(torch_module, torch_missing)
    lines = [
        "# dlkern attention benchmark", "",
        f"- **date**: {common.timestamp()}",
        f"- **command**: `{common.command_line()}`",
        f"- **method**: float32, standard-normal inputs, D = 64; each library's result checked against float64 "
        f"NumPy attention (first batch entry, first kv-head group) first; median of {args.repeats} samples, each "
        f">= {args.min_sample_ms:g} ms of back-to-back calls; libraries alternate sample by sample.",
        "- **PyTorch**: `F.scaled_dot_product_attention` (forward under no_grad; fwd+bwd via `out.backward(g)`); "
        "decode: `SDPA(q, k[:, :, :L], v[:, :, :L], enable_gqa=True)` against a cache of capacity L + 64.",
        "- **speedup** dlkern/PyTorch = PyTorch's time / dlkern's time. Decode GB/s = bytes of K and V read / "
        f"time; % of the DRAM read bandwidth in MACHINE.md ({DRAM_GBS[1]:g} GB/s 1 thread, {DRAM_GBS[2]:g} GB/s "
        "2 threads); the bandwidth target applies once K+V exceed the 32 MiB L3.", "",
    ]
    lines += [f"> {note}\n" for note in notes]
    if sdpa_results:
        lines += ["## SDPA (self-attention, T x T)", ""] + common.markdown_table(*sdpa_table(sdpa_results)) + [""]
    if decode_results:
        lines += ["## Decode step (1 query token, KV cache)", ""]
        lines += common.markdown_table(*decode_table(decode_results)) + [""]
    lines += ["## Machine", ""] + common.machine_markdown(machine) + [""]
    out_path.write_text("\n".join(lines), encoding="utf-8")
    print()
    if sdpa_results:
        print(common.text_table(*sdpa_table(sdpa_results)))
    if decode_results:
        print(common.text_table(*decode_table(decode_results)))
    print(f"\n{time.perf_counter() - started:.1f} s; wrote {out_path}")
    return 0
