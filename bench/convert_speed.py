"""GB/s (of float32) of dlkern.ops.convert at 1 thread on every ISA this CPU supports:
float32 <-> bfloat16 and float32 <-> float16 over 4 Mi elements into a preallocated out,
then float64 -> bfloat16 (scalar) and NumPy's / ml_dtypes' own astype for scale.

    python bench/convert_speed.py [--repeats 15]

Every figure is the best of --repeats calls (on a loaded host the best is the least
disturbed).
"""

import argparse
import time

import ml_dtypes
import numpy as np

import dlkern
from dlkern import ops

BF16, F16 = np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)


def best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    dlkern.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal(1 << 22).astype(np.float32)
    gbs = lambda s: f"{x.size * 4 / s / 1e9:.1f}"  # noqa: E731
    print("| ISA | f32 -> bf16 | bf16 -> f32 | f32 -> f16 | f16 -> f32 |\n|---|---|---|---|---|")
    for isa in dlkern.supported_isas():
        dlkern.set_isa(isa)
        cells = []
        for dt in (BF16, F16):
            out, h, back = np.empty(x.shape, dt), x.astype(dt), np.empty(x.shape, np.float32)
            cells += [gbs(best(lambda: ops.convert(x, dt, out=out), args.repeats)),
                      gbs(best(lambda: ops.convert(h, np.float32, out=back), args.repeats))]
        print(f"| {isa} | " + " | ".join(cells) + " |")
    d, o = x.astype(np.float64), np.empty(x.shape, BF16)
    print(f"\nfloat64 -> bf16: {best(lambda: ops.convert(d, BF16, out=o), 5) * 1e3:.2f} ms; "
          f"NumPy astype(float16): {best(lambda: x.astype(F16), 5) * 1e3:.2f} ms; "
          f"ml_dtypes astype(bfloat16): {best(lambda: x.astype(BF16), 5) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
