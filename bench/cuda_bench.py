"""Times dlkern's CUDA kernels beside PyTorch CUDA (when torch is importable) and writes
a Markdown table. Each op is checked against PyTorch (or NumPy) before it is timed:
warm-up, then the median of repeats, each timed from synchronize to synchronize.

    python bench/cuda_bench.py --out results.md [--repeats 20]
"""
import argparse
import statistics
import time

import numpy as np

import dlkern._C_cuda as C

try:
    import torch
    if not torch.cuda.is_available():
        torch = None
except ImportError:
    torch = None


def median_seconds(fn, sync, repeats, inner=10):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def cases():
    """(name, bytes moved, dlkern fn of device arrays, torch fn of tensors, numpy reference, inputs)"""
    rng = np.random.default_rng(0)
    big = rng.standard_normal((4096, 4096)).astype(np.float32)
    row = rng.standard_normal(4096).astype(np.float32)
    logits = rng.standard_normal((8192, 1024)).astype(np.float32)
    w = rng.standard_normal(1024).astype(np.float32)
    b = rng.standard_normal(1024).astype(np.float32)
    f = 4
    yield ("add (4096x4096 + row)", 2 * big.size * f, C.add, torch and torch.add, np.add, (big, row))
    yield ("exp (4096x4096)", 2 * big.size * f, C.exp, torch and torch.exp, np.exp, (big,))
    yield ("sum axis=-1 (4096x4096)", big.size * f, lambda x: C.sum(x, axis=-1),
           torch and (lambda x: torch.sum(x, dim=-1)), lambda x: x.sum(-1, dtype=np.float64), (big,))
    yield ("softmax (8192x1024)", 2 * logits.size * f, lambda x: C.softmax(x, -1),
           torch and (lambda x: torch.softmax(x, -1)), None, (logits,))
    yield ("layer_norm (8192x1024)", 2 * logits.size * f,
           lambda x, w, b: C.layer_norm_forward(x, (1024,), w, b, 1e-5)[0],
           torch and (lambda x, w, b: torch.nn.functional.layer_norm(x, (1024,), w, b, 1e-5)), None,
           (logits, w, b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not C.is_available():
        print("cuda_bench: no usable CUDA device (dlkern._C_cuda.is_available() is False)")
        return 1
    rows = ["| op | dlkern ms | dlkern GB/s | torch ms | torch GB/s |", "|---|---|---|---|---|"]
    failures = 0
    for name, nbytes, ours, theirs, ref_fn, host in cases():
        dev = [C.from_numpy(h) for h in host]
        got = ours(*dev).numpy()
        if theirs is not None:
            want = theirs(*[torch.from_numpy(h).cuda() for h in host]).cpu().numpy()
        elif ref_fn is not None:
            want = ref_fn(*host)
        else:
            want = None
        if want is not None and not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            print(f"MISMATCH {name}: max error {np.abs(got - want).max():.3g}")
            failures += 1
            continue
        t_ours = median_seconds(lambda: ours(*dev), C.synchronize, args.repeats)
        cells = [f"{t_ours * 1e3:.3f}", f"{nbytes / t_ours / 1e9:.0f}"]
        if theirs is not None:
            tdev = [torch.from_numpy(h).cuda() for h in host]
            t_theirs = median_seconds(lambda: theirs(*tdev), torch.cuda.synchronize, args.repeats)
            cells += [f"{t_theirs * 1e3:.3f}", f"{nbytes / t_theirs / 1e9:.0f}"]
        else:
            cells += ["-", "-"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    note = "" if torch is not None else "\ntorch with CUDA is not importable here: dlkern only.\n"
    with open(args.out, "w") as f:
        f.write("# dlkern CUDA kernels\n\n" + "\n".join(rows) + "\n" + note)
    print("\n".join(rows) + note)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
