"""dlkern float32 GEMM at 1 thread as a fraction of the FMA peak measured in the same
process (issue 16: >= 93% at 512-2048), beside torch.mm, interleaved.

    python bench/f32_gemm_peak_probe.py [--repeats 7] [--shapes 512,1024,1536,2048]

The peak is a register-only loop of independent FMA chains (24 zmm, or 12 ymm without
AVX-512; C source below, compiled with the system cc into a temporary directory and
loaded with ctypes), timed like the GEMMs: each round times the peak loop, dlkern and torch back to back, and the
medians over --repeats rounds are reported, by wall clock and by thread CPU time (the
host is shared: the CPU clock excludes time the thread was descheduled).
"""

import argparse
import ctypes
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np

SHAPES = [(s, s, s) for s in (512, 1024, 1536, 2048)] + [(4096, 768, 3072), (4096, 3072, 768), (2048, 192, 768)]

FMA_LOOP = r"""
#include <immintrin.h>
#include <stdint.h>
// Independent accumulator chains, more than FMA latency x FMA issue per cycle (4 x 2 on
// Zen 4 and Skylake-X), so the loop runs at the FMA issue rate: 24 zmm (of 32 registers)
// with AVX-512, 12 ymm (of 16) with AVX2. Returns a lane sum so the work cannot be
// removed (no -ffast-math: the FMAs cannot be folded).
#if defined(__AVX512F__)
#define CHAINS 24
#define VEC __m512
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define LANES 16
#else
#define CHAINS 12
#define VEC __m256
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define LANES 8
#endif
int64_t fma_flop_per_iter(void) { return CHAINS * LANES * 2; }
float fma_peak(int64_t iters) {
  VEC acc[CHAINS];
  const VEC x = SET1(0.999999f), y = SET1(1e-7f);
  for (int i = 0; i < CHAINS; ++i) acc[i] = SET1((float)i);
  for (int64_t t = 0; t < iters; ++t) {
#pragma GCC unroll 24
    for (int i = 0; i < CHAINS; ++i) acc[i] = FMA(acc[i], x, y);
  }
  VEC s = acc[0];
  for (int i = 1; i < CHAINS; ++i) s = ADD(s, acc[i]);
  float lanes[LANES], sum = 0;
  __builtin_memcpy(lanes, &s, sizeof(lanes));
  for (int i = 0; i < LANES; ++i) sum += lanes[i];
  return sum;
}
"""


def load_fma_peak():
    """(fn(iters), FLOP per iteration), built for AVX-512 where the CPU has it, else AVX2."""
    with open("/proc/cpuinfo") as f:
        avx512 = " avx512f" in f.read()
    d = tempfile.mkdtemp(prefix="dlkern_fma_")
    src, lib = os.path.join(d, "fma.c"), os.path.join(d, "fma.so")
    with open(src, "w") as f:
        f.write(FMA_LOOP)
    isa = ["-mavx512f", "-mfma"] if avx512 else ["-mavx2", "-mfma"]
    subprocess.check_call(["cc", "-O2", *isa, "-shared", "-fPIC", src, "-o", lib])
    so = ctypes.CDLL(lib)  # stays mapped after its files are removed
    shutil.rmtree(d)
    fn, per = so.fma_peak, so.fma_flop_per_iter
    fn.argtypes, fn.restype = [ctypes.c_int64], ctypes.c_float
    per.argtypes, per.restype = [], ctypes.c_int64
    return fn, per()


def timed(fn, calls):
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - w0) / calls, (time.thread_time() - c0) / calls


def calls_for(fn, min_s):
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, int(min_s / max(time.perf_counter() - t0, 1e-7)) + 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-s", type=float, default=0.15, help="seconds per sample")
    ap.add_argument("--shapes", default=None, help="N or MxKxN, comma separated")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    shapes = SHAPES
    if args.shapes:
        shapes = []
        for t in args.shapes.split(","):
            s = [int(v) for v in t.split("x")]
            shapes.append(tuple(s * 3 if len(s) == 1 else s))

    import dlkern
    from dlkern import ops

    dlkern.set_num_threads(1)
    torch = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(1)
    peak, flop_per_iter = load_fma_peak()
    iters = 2_000_000
    peak_fn = lambda: peak(iters)
    print(f"isa={dlkern.get_isa()} load={os.getloadavg()} repeats={args.repeats} (medians; GFLOP/s wall / cpu)")
    print(f"{'m x k x n':>16} {'peak':>13} {'dlkern':>13} {'torch':>13} {'dl %peak':>14} {'torch %peak':>14}")
    rng = np.random.default_rng(0)
    for m, k, n in shapes:
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        ops.matmul(a, b, out=c)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        assert np.abs(c - ref).max() <= 1e-5 * np.sqrt(k) * np.abs(ref).max() + 1e-6, "dlkern GEMM is wrong"
        flop = 2.0 * m * n * k
        fns = {"peak": (peak_fn, flop_per_iter * iters), "dlkern": (lambda: ops.matmul(a, b, out=c), flop)}
        if torch is not None:
            ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty((m, n))
            fns["torch"] = (lambda: torch.mm(ta, tb, out=tc), flop)
        calls = {name: calls_for(fn, args.min_s) for name, (fn, _) in fns.items()}
        samples = {name: [] for name in fns}
        for _ in range(args.repeats):
            for name, (fn, work) in fns.items():
                w, cpu = timed(fn, calls[name])
                samples[name].append((work / w / 1e9, work / cpu / 1e9))
        med = {name: np.median(np.array(s), axis=0) for name, s in samples.items()}
        pk = med["peak"]
        tr = med.get("torch", np.array([np.nan, np.nan]))
        fmt = lambda v: f"{v[0]:6.1f}/{v[1]:6.1f}"
        pct = lambda v: f"{100 * v[0] / pk[0]:6.1f}/{100 * v[1] / pk[1]:6.1f}"
        print(f"{f'{m}x{k}x{n}':>16} {fmt(pk):>13} {fmt(med['dlkern']):>13} {fmt(tr):>13} "
              f"{pct(med['dlkern']):>14} {pct(tr):>14}", flush=True)


if __name__ == "__main__":
    main()
