"""``train --distributed``: what the training commands do differently on N MPI ranks.

Launched as ``mpirun -n N python -m dlkern train --distributed ...``. Every rank builds the
same model (DistributedDataParallel broadcasts rank 0's weights anyway), trains on its
own shard of the data with the per-rank ``--batch-size`` (the global batch is N times
that, PyTorch's convention), and averages gradients. Rank 0 alone prints, shows
progress and writes checkpoints (atomically), and checkpoints hold the unwrapped model's
weights: a run can resume on any number of ranks, one included.
"""

from __future__ import annotations

import os
import sys

import dlkern

from .. import distributed as dist


def add_distributed_argument(p) -> None:
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of an MPI job: mpirun -n N python -m dlkern train "
                        "--distributed ... (needs mpi4py + Open MPI: pip install 'dlkern[distributed]'); "
                        "--batch-size is per rank, BatchNorm becomes SyncBatchNorm, rank 0 logs and saves")


def _quiet(*args, **kwargs):
    pass


class Run:
    """The rank's view of a training run: who it is, what it prints, how it wraps the model."""

    def __init__(self, distributed: bool):
        self.distributed = distributed
        self.rank = dist.get_rank() if distributed else 0
        self.world_size = dist.get_world_size() if distributed else 1
        self.is_main = self.rank == 0
        self.print = print if self.is_main else _quiet

    def describe(self) -> str:
        if not self.distributed:
            return ""
        return f", {self.world_size} MPI rank(s) x {dlkern.get_num_threads()} thread(s)"

    def wrap(self, model):
        """The model as trained: SyncBatchNorm + DistributedDataParallel on several ranks."""
        if not self.distributed:
            return model
        from ..nn import SyncBatchNorm
        from ..nn.parallel import DistributedDataParallel
        model = SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model)

    def progress(self, no_progress: bool):
        """fit()'s progress argument: bars on rank 0 only (None: when on a terminal)."""
        return False if no_progress or not self.is_main else None


def _threads_per_rank(local_ranks: int) -> int:
    """Kernel threads for one rank: the cores the launcher bound it to, or, unbound, an
    even share of this host's cores among the ranks on it (never fewer than one)."""
    try:
        visible = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        visible = os.cpu_count() or 1
    if visible < (os.cpu_count() or visible):
        return max(1, visible)  # bound by mpirun (--bind-to core/socket): use what it gave
    return max(1, visible // max(1, local_ranks))


def start(args) -> Run | int:
    """Join the MPI job when args.distributed (and pick the per-rank thread count);
    returns the Run, or exit status 2 with a message when MPI is missing."""
    if not getattr(args, "distributed", False):
        if args.threads is not None:
            dlkern.set_num_threads(args.threads)
        return Run(False)
    if not dist.is_initialized():
        try:
            dist.init_process_group("mpi")
        except ImportError as exc:
            print(f"error: train --distributed: {exc}", file=sys.stderr)
            return 2
    dlkern.set_num_threads(args.threads if args.threads is not None else _threads_per_rank(dist.local_world_size()))
    return Run(True)
