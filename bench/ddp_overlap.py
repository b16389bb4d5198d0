"""DDP's compute/communication overlap: one MLP training step with the all-reduce started
from the gradient hooks (DistributedDataParallel's default) vs. the same buckets reduced
after the backward (its private ``_overlap=False`` switch), plus the step without any
communication and the all-reduce alone, for scale.

    mpirun -n 2 python bench/ddp_overlap.py [--hidden 1024 1024 1024] [--batch 64] [--bucket-mb 25 1]

Each rank uses one kernel thread. The variants run interleaved, a block of steps each in
turn, so that a noisy neighbour slows them alike; the median step over all blocks is
reported by rank 0. ``overlap_step_times`` is what ``bench ddp`` calls.
"""

import argparse
import time

import numpy as np

import dlkern
import dlkern.distributed as dist
import dlkern.nn.functional as F
from dlkern.models.mlp import MLP
from dlkern.nn.parallel import DistributedDataParallel


def _step(model, opt, x, y):
    # A bucket-view wrapper keeps its .grad views only when they are zeroed in place.
    opt.zero_grad(set_to_none=not getattr(model, "gradient_as_bucket_view", False))
    F.cross_entropy(model(x), y).backward()
    opt.step()


def overlap_step_times(hidden=(1024, 1024, 1024), batch=64, bucket_mb=25.0, blocks=6, steps=5, warmup=3):
    """Median seconds per training step on this rank for 'overlap', 'after_backward',
    'overlap_view' (overlap with gradient_as_bucket_view=True: no copies in or out),
    'local' (no DDP, no communication) and 'allreduce' (the gradients' all-reduce alone,
    one buffer). Every rank must call it with the same arguments."""
    dlkern.manual_seed(0)
    model = MLP(784, tuple(hidden), 10)
    rng = np.random.default_rng(dist.get_rank())
    x = dlkern.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = dlkern.tensor(rng.integers(0, 10, batch))
    opt = dlkern.optim.SGD(model.parameters(), lr=1e-3)
    # Two wrappers of one model: only the one whose forward ran reduces (the other's hooks
    # see no prepared backward), so the variants share weights, data and optimizer.
    runs = {"overlap": DistributedDataParallel(model, bucket_cap_mb=bucket_mb),
            "after_backward": DistributedDataParallel(model, bucket_cap_mb=bucket_mb, _overlap=False),
            "overlap_view": DistributedDataParallel(model, bucket_cap_mb=bucket_mb, gradient_as_bucket_view=True),
            "local": model}
    grads = np.zeros(sum(p.numel() for p in model.parameters()), np.float32)
    times = {name: [] for name in list(runs) + ["allreduce"]}
    for name, m in runs.items():
        for _ in range(warmup):
            _step(m, opt, x, y)
    for _ in range(blocks):
        for name, m in runs.items():
            for _ in range(steps):
                dist.barrier()
                t0 = time.perf_counter()
                _step(m, opt, x, y)
                times[name].append(time.perf_counter() - t0)
        for _ in range(steps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(grads, op=dist.ReduceOp.AVG)
            times["allreduce"].append(time.perf_counter() - t0)
    buckets = len(runs["overlap"]._buckets)
    return {name: float(np.median(t)) for name, t in times.items()}, buckets, grads.nbytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024, 1024])
    ap.add_argument("--batch", type=int, default=64, help="per-rank batch")
    ap.add_argument("--bucket-mb", type=float, nargs="+", default=[25.0, 1.0])
    ap.add_argument("--blocks", type=int, default=6)
    args = ap.parse_args()
    dlkern.set_num_threads(1)
    dist.init_process_group("mpi")
    rank, size = dist.get_rank(), dist.get_world_size()
    for cap in args.bucket_mb:
        t, buckets, nbytes = overlap_step_times(args.hidden, args.batch, cap, args.blocks)
        if rank == 0:
            print(f"{size} ranks x 1 thread, MLP 784-{'-'.join(map(str, args.hidden))}-10 float32, batch "
                  f"{args.batch}/rank, {nbytes / 2**20:.1f} MB of gradients in {buckets} buckets "
                  f"(bucket_cap_mb={cap:g}): step with overlap {t['overlap'] * 1e3:.1f} ms, all-reduce after "
                  f"backward {t['after_backward'] * 1e3:.1f} ms ({t['after_backward'] / t['overlap']:.2f}x), with "
                  f"overlap and gradient_as_bucket_view {t['overlap_view'] * 1e3:.1f} ms, "
                  f"no communication {t['local'] * 1e3:.1f} ms, all-reduce alone {t['allreduce'] * 1e3:.1f} ms",
                  flush=True)


if __name__ == "__main__":
    main()
