"""GFLOP/s at 1 thread of the eight bf16 GEMMs of an autocast training step of the MLP
784-1024-1024-10 at batch 256 (issue 16): dlkern against torch.matmul on bf16 tensors.

    python bench/bf16_mlp_gemm_shapes.py [--cpu-clock] [--repeats 5]

Columns: `ops` = dlkern.ops.gemm on bf16 arrays with bf16 output (what autocast's linear
runs: the kernel into a float32 scratch, then one rounding pass); `kernel` = _C._gemm_bf16
alone (float32 output into a preallocated C); `f32` = dlkern's float32 GEMM on the same
shape; `torch` = torch.matmul of bf16 tensors (bf16 output), transposes as views. Every
figure is the best time over --repeats samples of >= 0.2 s each; --cpu-clock times by the
thread's CPU time (on a loaded host the wall clock mostly measures the load).
"""

import argparse

import numpy as np
from bf16_gemm_probe import best_time, setup  # same timing rule (run as a script: bench/ is on sys.path)

# (name, stored A shape, stored B shape, trans_a, trans_b): the forward x @ W^T (W
# row-major (out, in)), the backward's input gradients g @ W and weight gradients g^T @ x.
CASES = [
    ("fwd  x@W1^T", (256, 784), (1024, 784), False, True),
    ("fwd  h@W2^T", (256, 1024), (1024, 1024), False, True),
    ("fwd  h@W3^T", (256, 1024), (10, 1024), False, True),
    ("bwd  g@W2", (256, 1024), (1024, 1024), False, False),
    ("bwd  g@W3", (256, 10), (10, 1024), False, False),
    ("bwd  g^T@x", (256, 1024), (256, 784), True, False),
    ("bwd  g^T@h", (256, 1024), (256, 1024), True, False),
    ("bwd  g^T@h3", (256, 10), (256, 1024), True, False),
]


def main():
    args, clock, torch = setup(argparse.ArgumentParser())
    import ml_dtypes

    import dlkern
    from dlkern import _C

    print(f"isa={dlkern.get_isa()} clock={'thread cpu' if args.cpu_clock else 'wall'}  (GFLOP/s; ms in the totals)")
    print(f"{'shape':>12} {'m x k x n':>15} {'ops':>7} {'kernel':>7} {'f32':>7} {'torch':>7} {'ops/torch':>9}")
    rng = np.random.default_rng(0)
    totals = dict(ops=0.0, kernel=0.0, f32=0.0, torch=0.0)
    for name, sa, sb, ta, tb in CASES:
        a32 = rng.standard_normal(sa).astype(np.float32)
        b32 = rng.standard_normal(sb).astype(np.float32)
        a16, b16 = a32.astype(ml_dtypes.bfloat16), b32.astype(ml_dtypes.bfloat16)
        ua, ub = a16.view(np.uint16), b16.view(np.uint16)
        m, k = (sa[1], sa[0]) if ta else sa
        n = sb[0] if tb else sb[1]
        c = np.empty((m, n), np.float32)
        times = {
            "ops": best_time(lambda: dlkern.ops.gemm(a16, b16, trans_a=ta, trans_b=tb), clock, args.repeats),
            "kernel": best_time(lambda: _C._gemm_bf16(ua, ub, c, trans_a=ta, trans_b=tb), clock, args.repeats),
            "f32": best_time(lambda: dlkern.ops.gemm(a32, b32, trans_a=ta, trans_b=tb), clock, args.repeats),
            "torch": float("nan"),
        }
        if torch is not None:
            tA, tB = torch.from_numpy(a32).bfloat16(), torch.from_numpy(b32).bfloat16()
            tA, tB = (tA.t() if ta else tA), (tB.t() if tb else tB)
            times["torch"] = best_time(lambda: torch.matmul(tA, tB), clock, args.repeats)
        for key, t in times.items():
            totals[key] += t * 1e3
        g = {key: 2.0 * m * n * k / t / 1e9 for key, t in times.items()}
        print(f"{name:>12} {f'{m}x{k}x{n}':>15} {g['ops']:7.1f} {g['kernel']:7.1f} {g['f32']:7.1f} "
              f"{g['torch']:7.1f} {g['ops'] / g['torch']:9.2f}")
    print("total ms: " + "  ".join(f"{key} {v:.2f}" for key, v in totals.items()))


if __name__ == "__main__":
    main()
