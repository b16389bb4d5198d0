"""GFLOP/s of dlkern's GEMM at the recurrent per-step shapes of issue 14 (M = batch rows,
B = the recurrent weight) and at large shapes, 1 thread: plain `gemm` (B packed inside
every call) and, where the build has it, B packed once (`_gemm_pack_b`) and multiplied by
`_gemm_packed`, the C++ entry point the RNN layer loop calls.

    PYTHONPATH=python python bench/gemm_packed_probe.py              # this build
    python bench/gemm_packed_probe.py --compare "BEFORE_CMD" "AFTER_CMD" --rounds 5

--compare runs two interpreters alternately (each CMD runs this script against one
build, e.g. "PYTHONPATH=/old/python python bench/gemm_packed_probe.py"), so the load of
a shared host hits both alike, and prints per case the best GFLOP/s of each side.
Every figure is the minimum time over --repeats samples of >= --sample-ms each;
--cpu-clock times by the thread's CPU time, which on a loaded host leaves out the time
other processes held the core (the wall clock then mostly measures the load).
"""

import argparse
import json
import shlex
import subprocess
import time

import numpy as np

# (m, k, n, what): C (m, n) += A (m, k) @ B (k, n), beta = 1, as the layer calls it.
STEPS = [
    (32, 256, 1024, "LSTM fwd step, H=256"),
    (64, 512, 2048, "LSTM fwd step, H=512"),
    (32, 1024, 256, "LSTM bwd step, H=256 (B = W_hh as stored)"),
    (64, 2048, 512, "LSTM bwd step, H=512 (B = W_hh as stored)"),
    (32, 256, 768, "GRU fwd step, H=256"),
    (32, 256, 256, "RNN fwd step, H=256"),
]
LARGE = [(4096, 256, 1024, "input projection"), (512, 512, 512, "square"), (1024, 1024, 1024, "square")]


CLOCK = time.perf_counter


def best_time(fn, repeats, min_s=0.02):
    fn()
    t0 = CLOCK()
    fn()
    calls = max(1, int(min_s / max(CLOCK() - t0, 1e-7)) + 1)
    best = float("inf")
    for _ in range(repeats):
        t0 = CLOCK()
        for _ in range(calls):
            fn()
        best = min(best, (CLOCK() - t0) / calls)
    return best


def worker(repeats, min_s, isa, only):
    import dlkern
    from dlkern import _C

    dlkern.set_num_threads(1)
    if isa:
        dlkern.set_isa(isa)
    rng = np.random.default_rng(0)
    out = {}
    has_packed = hasattr(_C, "_gemm_pack_b")
    for m, k, n, _ in STEPS + LARGE:
        if only and f"{m}x{k}x{n}" not in only:
            continue
        a = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((k, n)).astype(np.float32)
        c = np.zeros((m, n), np.float32)
        ref = a.astype(np.float64) @ w.astype(np.float64)
        flop = 2.0 * m * n * k
        beta = 1.0 if (m, k, n) in [s[:3] for s in STEPS] else 0.0
        key = f"{m}x{k}x{n}"
        np.testing.assert_allclose(_C.gemm(a, w, np.zeros_like(c)), ref, rtol=1e-3, atol=1e-3 * np.sqrt(k))
        out[f"{key} plain"] = flop / best_time(lambda: _C.gemm(a, w, c, beta=beta), repeats, min_s) / 1e9
        if has_packed:
            pb = _C._gemm_pack_b(w)
            np.testing.assert_allclose(_C._gemm_packed(a, pb), ref, rtol=1e-3, atol=1e-3 * np.sqrt(k))
            out[f"{key} packed"] = flop / best_time(lambda: _C._gemm_packed(a, pb, c, beta=beta), repeats, min_s) / 1e9
    print(json.dumps(out))


def compare(before, after, rounds, extra):
    best = {"before": {}, "after": {}}
    for _ in range(rounds):
        for side, cmd in (("before", before), ("after", after)):
            res = json.loads(subprocess.run(f"{cmd} --worker {extra}", shell=True, check=True, capture_output=True,
                                            text=True).stdout.strip().splitlines()[-1])
            for key, g in res.items():
                best[side][key] = max(best[side].get(key, 0.0), g)
    keys = list(dict.fromkeys(list(best["before"]) + list(best["after"])))
    print(f"{'case':<24} {'before':>8} {'after':>8}  GFLOP/s (best of {rounds} rounds, 1 thread)")
    for key in keys:
        b, a = best["before"].get(key), best["after"].get(key)
        fmt = lambda x: f"{x:8.1f}" if x else f"{'-':>8}"  # noqa: E731
        print(f"{key:<24} {fmt(b)} {fmt(a)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help="time this build, print one JSON line")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE_CMD", "AFTER_CMD"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sample-ms", type=float, default=20.0,
                    help="least length of one sample (short ones dodge a loaded host's preemptions)")
    ap.add_argument("--isa", help="run this SIMD path (dlkern.set_isa) instead of the best one")
    ap.add_argument("--cpu-clock", action="store_true",
                    help="time by this thread's CPU time (1 thread: excludes the time other processes held the core)")
    ap.add_argument("--only", action="append", default=[], help="time only this MxKxN (repeatable)")
    args = ap.parse_args()
    if args.compare:
        extra = f"--repeats {args.repeats} --sample-ms {args.sample_ms}"
        extra += (f" --isa {args.isa}" if args.isa else "") + (" --cpu-clock" if args.cpu_clock else "")
        extra += "".join(f" --only {s}" for s in args.only)
        compare(*args.compare, args.rounds, extra)
    else:
        if args.cpu_clock:
            CLOCK = time.thread_time
        worker(args.repeats, args.sample_ms / 1000, args.isa, args.only)
