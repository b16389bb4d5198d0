"""GFLOP/s at 1 thread of dlkern's bf16 GEMM (_C._gemm_bf16: bf16 inputs as uint16 bits,
float32 output) against dlkern's float32 GEMM (_C.gemm) and torch.matmul on bf16
tensors (bf16 output), issue 16's targets: >= 1.9x the first, >= 1.05x the second.

    python bench/bf16_gemm_probe.py [--cpu-clock] [--repeats 5] [--path best|fallback]

Every figure is the best time over --repeats samples of >= 0.2 s each; --cpu-clock times
by the thread's CPU time (on a loaded host the wall clock mostly measures the load).
"""

import argparse
import time

import numpy as np

SHAPES = [(512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048), (4096, 768, 3072)]


def best_time(fn, clock, repeats, min_s=0.2):
    fn()
    t0 = clock()
    fn()
    calls = max(1, int(min_s / max(clock() - t0, 1e-7)) + 1)
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - t0) / calls)
    return best


def setup(ap):
    """The probes' common command line (--cpu-clock, --repeats, --no-torch) parsed, one
    thread pinned for dlkern and torch: -> (args, clock, torch or None)."""
    ap.add_argument("--cpu-clock", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    import dlkern

    dlkern.set_num_threads(1)
    torch = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(1)
    return args, time.thread_time if args.cpu_clock else time.perf_counter, torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", default="best")
    args, clock, torch = setup(ap)

    import dlkern
    from dlkern import _C
    print(f"isa={dlkern.get_isa()} dpbf16={_C._bf16_has_dpbf16()} path={args.path} "
          f"clock={'thread cpu' if args.cpu_clock else 'wall'}")
    print(f"{'m x k x n':>18} {'bf16':>8} {'f32':>8} {'torch':>8} {'/f32':>6} {'/torch':>6}  (GFLOP/s)")
    rng = np.random.default_rng(0)
    for m, k, n in SHAPES:
        a32 = rng.standard_normal((m, k)).astype(np.float32)
        b32 = rng.standard_normal((k, n)).astype(np.float32)
        a16, b16 = _C._bf16_from_f32(a32), _C._bf16_from_f32(b32)
        c = np.empty((m, n), np.float32)
        ref = _C._bf16_to_f32(a16).astype(np.float64) @ _C._bf16_to_f32(b16).astype(np.float64)
        got = _C._gemm_bf16(a16, b16, c, path=args.path)
        assert np.abs(got - ref).max() <= 1e-5 * np.sqrt(k) * np.abs(ref).max(), "bf16 GEMM is wrong"
        flop = 2.0 * m * n * k
        g_bf = flop / best_time(lambda: _C._gemm_bf16(a16, b16, c, path=args.path), clock, args.repeats) / 1e9
        g_32 = flop / best_time(lambda: _C.gemm(a32, b32, c), clock, args.repeats) / 1e9
        g_t = float("nan")
        if torch is not None:
            ta, tb = torch.from_numpy(a32).bfloat16(), torch.from_numpy(b32).bfloat16()
            g_t = flop / best_time(lambda: torch.matmul(ta, tb), clock, args.repeats) / 1e9
        print(f"{f'{m}x{k}x{n}':>18} {g_bf:8.1f} {g_32:8.1f} {g_t:8.1f} {g_bf / g_32:6.2f} {g_bf / g_t:6.2f}")


if __name__ == "__main__":
    main()
