"""The MPI side of ``python -m dlkern bench ddp``: run on every rank by
``mpirun -n 2 python -m dlkern.bench.ddp_worker --out RESULT.json ...``.

The benchmark command itself is one ordinary process (bench/cases/ddp.py); it launches
this module under ``mpirun``, and rank 0 writes what the ranks measured as JSON for it to
model and report. This file ships in the package (a wheel has no bench/ directory) and
measures only; the model lives in :mod:`dlkern.bench.scaling_model`.

Parts (``--parts``):
  allreduce  dlkern.distributed.all_reduce beside raw mpi4py ``comm.Allreduce(MPI.IN_PLACE,
             buf, op=MPI.SUM)`` on the same buffers, each validated first
  latency    both again over message sizes from 4 B to the largest, for the alpha-beta fit
  scaling    training steps of the MLP and LeNet-5: one rank alone (the other idle) beside
             all ranks under DistributedDataParallel, with its overlap and without

Timing: every sample starts at a barrier and lasts the slowest rank's time; contenders
alternate sample by sample (rotating who goes first) so a noisy patch of the shared host
hits them all; medians over ``--repeats``; every rank runs one kernel thread.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence

import numpy as np

from .common import BenchValidationError

MB = 2**20
# An idle rank polls its barrier this rarely: it must leave its core to the busy rank.
IDLE_POLL_S = 0.002


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m dlkern.bench.ddp_worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file rank 0 writes")
    p.add_argument("--parts", default="allreduce,latency,scaling")
    p.add_argument("--sizes-mb", default="1,4,16,64,100", help="all-reduce sizes in MiB (float32 buffers)")
    p.add_argument("--latency-points", type=int, default=16, help="log-spaced sizes from 4 B to the largest")
    p.add_argument("--models", default="mlp,lenet")
    p.add_argument("--batch", default="64", help="per-rank batches of the scaling part (comma list)")
    p.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP's bucket_cap_mb in the scaling part")
    p.add_argument("--small-buckets-mb", default="0.1",
                   help="more bucket caps for the overlap comparison (comma list, may be empty)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-sample-ms", type=float, default=20.0)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- timing


class Timer:
    """Collective sampling: every rank runs the same number of calls (decided from the
    slowest rank) and a sample is the slowest rank's seconds per call."""

    def __init__(self, comm, min_sample_s: float):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.min_sample_s = min_sample_s

    def idle_wait(self):
        """A rank left out of a solo sample waits here without holding its core."""
        request = self.comm.Ibarrier()
        while not request.Test():
            time.sleep(IDLE_POLL_S)

    def sample(self, run: Callable[[], object], calls: int, solo: bool = False) -> float:
        """Seconds per call; ``solo``: rank 0 runs alone while the others idle."""
        from mpi4py import MPI
        self.comm.Barrier()
        seconds = 0.0
        if solo and self.rank != 0:
            self.idle_wait()
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                run()
            seconds = (time.perf_counter() - t0) / calls
            if solo:
                self.comm.Ibarrier().Wait()  # release the idle ranks
        return self.comm.allreduce(seconds, op=MPI.MAX)

    def calls_for(self, seconds_per_call: float) -> int:
        return max(1, math.ceil(self.min_sample_s / max(seconds_per_call, 1e-9)))

    def interleaved(self, contenders: Sequence[tuple], repeats: int) -> Dict[str, List[float]]:
        """``contenders``: (name, run, solo). Samples per name, alternating names."""
        calls = {}
        for name, run, solo in contenders:
            warm = min(self.sample(run, 1, solo) for _ in range(3))
            calls[name] = self.calls_for(warm)
        samples = {name: [] for name, _, _ in contenders}
        for repeat in range(repeats):
            shift = repeat % len(contenders)
            for name, run, solo in list(contenders[shift:]) + list(contenders[:shift]):
                per_call = self.sample(run, calls[name], solo)
                samples[name].append(per_call)
                calls[name] = max(calls[name], self.calls_for(per_call))
        return samples


def summary(samples: List[float]) -> Dict[str, float]:
    median = statistics.median(samples)
    return {"median_s": median, "min_s": min(samples), "max_s": max(samples),
            "spread": (max(samples) - min(samples)) / median, "samples": samples}


# ----------------------------------------------------------------------------- all-reduce


def pattern(n: int, rank: int) -> np.ndarray:
    """Rank-distinct small integers: their float32 sum over ranks is exact."""
    return ((np.arange(n, dtype=np.int64) % 251) + 3 * rank).astype(np.float32)


def validate_allreduce(comm, buf: np.ndarray, contenders) -> None:
    size = comm.Get_size()
    expected = None
    for name, run, _ in contenders:
        buf[...] = pattern(buf.size, comm.Get_rank())
        run()
        if expected is None:
            expected = size * pattern(buf.size, 0) + np.float32(3 * sum(range(size)))
        if not np.array_equal(buf, expected):
            bad = int(np.flatnonzero(buf != expected)[0])
            raise BenchValidationError(f"bench ddp: {name} all-reduce of {buf.nbytes} bytes is wrong on rank "
                             f"{comm.Get_rank()} at element {bad}: {buf[bad]} != {expected[bad]}")


def allreduce_contenders(comm, buf):
    from mpi4py import MPI

    import dlkern.distributed as dist

    return [("dlkern", lambda: dist.all_reduce(buf), False),
            ("mpi4py", lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM), False)]


def part_allreduce(comm, timer: Timer, args) -> List[Dict]:
    rows = []
    for mb in [float(s) for s in args.sizes_mb.split(",")]:
        buf = np.empty(int(mb * MB) // 4, np.float32)
        contenders = allreduce_contenders(comm, buf)
        validate_allreduce(comm, buf, contenders)
        buf[...] = 0.0  # sums of zeros stay finite however often they repeat
        samples = timer.interleaved(contenders, args.repeats)
        rows.append({"mb": mb, "bytes": buf.nbytes, **{name: summary(s) for name, s in samples.items()}})
        if timer.rank == 0:
            d, m = rows[-1]["dlkern"]["median_s"], rows[-1]["mpi4py"]["median_s"]
            print(f"all-reduce {mb:g} MiB: dlkern {d * 1e3:.2f} ms, mpi4py {m * 1e3:.2f} ms, "
                  f"dlkern/mpi4py throughput {m / d:.2f}", flush=True)
        del buf
    return rows


def latency_sizes(largest_bytes: int, points: int) -> List[int]:
    """Log-spaced message sizes from 4 B to ``largest_bytes``, whole float32 elements."""
    raw = np.geomspace(4, largest_bytes, max(points, 2))
    return sorted({int(max(1, round(b / 4))) * 4 for b in raw})


def part_latency(comm, timer: Timer, args) -> List[Dict]:
    largest = int(max(float(s) for s in args.sizes_mb.split(",")) * MB)
    rows = []
    for n_bytes in latency_sizes(largest, args.latency_points):
        buf = np.empty(n_bytes // 4, np.float32)
        contenders = allreduce_contenders(comm, buf)
        validate_allreduce(comm, buf, contenders)
        buf[...] = 0.0
        samples = timer.interleaved(contenders, args.repeats)
        rows.append({"bytes": n_bytes, **{name: summary(s) for name, s in samples.items()}})
    if timer.rank == 0:
        print(f"latency sweep: {len(rows)} sizes from {rows[0]['bytes']} B to {rows[-1]['bytes']} B", flush=True)
    return rows


# ----------------------------------------------------------------------------- scaling

def part_scaling(comm, timer: Timer, args) -> Dict:
    from . import ddp_steps
    extra_caps = [float(c) for c in args.small_buckets_mb.split(",") if c.strip()]
    out = {"bucket_cap_mb": args.bucket_cap_mb, "small_buckets_mb": extra_caps, "runs": []}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for per_rank in [int(b) for b in args.batch.split(",")]:
            variants = ddp_steps.build_variants(name, per_rank, comm, args.bucket_cap_mb, extra_caps)
            checks = ddp_steps.validate(variants, comm)
            samples = timer.interleaved([(v.name, v.step, v.solo) for v in variants], args.repeats)
            out["runs"].append({"model": name, "batch": per_rank, "checks": checks, "params": variants[0].n_params,
                                "grad_bytes": variants[0].grad_bytes, "methods": {v.name: v.describe for v in variants},
                                "buckets": {v.name: v.buckets for v in variants if v.buckets},
                                **{v: summary(s) for v, s in samples.items()}})
            if timer.rank == 0:
                med = {v: statistics.median(s) for v, s in samples.items()}
                print(f"{name} batch {per_rank}: " + ", ".join(f"{v} {t * 1e3:.2f} ms/step" for v, t in med.items()),
                      flush=True)
    return out


PARTS = {"allreduce": part_allreduce, "latency": part_latency, "scaling": part_scaling}


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"bench ddp worker: unknown part(s) {unknown}; choose from {sorted(PARTS)}")
    import dlkern
    import dlkern.distributed as dist

    dlkern.set_num_threads(1)
    dist.init_process_group("mpi")
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    timer = Timer(comm, args.min_sample_ms / 1e3)
    library = MPI.Get_library_version().replace("\0", "").strip()  # Open MPI's ends in a NUL
    result = {"world_size": comm.Get_size(), "mpi": library.splitlines()[0].strip(),
              "mpi4py": __import__("mpi4py").__version__, "threads_per_rank": dlkern.get_num_threads()}
    for part in parts:
        result[part] = PARTS[part](comm, timer, args)
    if comm.Get_rank() == 0:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
