"""Training steps the scaling part of ``bench ddp`` times (see ddp_worker): the CLI's
MLP and LeNet-5 on one rank alone, and on every rank under DistributedDataParallel with
its bucketed overlap and with the all-reduce after the backward.

Every variant starts from the same weights (seed 0) and trains on its rank's own batch
(seeded by the rank), the CLI's optimizer for the model. Before timing, one step of each
multi-rank variant is checked: its gradients must equal the mean of the ranks' local
gradients, and its updated weights must agree on every rank.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List

import numpy as np

import dlkern
import dlkern.distributed as dist
from dlkern import nn, optim
from dlkern.models import LeNet5, MLP
from dlkern.nn.parallel import DistributedDataParallel

from .common import BenchValidationError

SYNCED = ("ddp", "after_backward")  # the variants that average gradients (the others exchange none)
SIDE = 28  # Fashion-MNIST's 28x28 images (train --dataset fashion), not the 8x8 digits


@dataclasses.dataclass
class Variant:
    name: str
    step: Callable[[], object]
    solo: bool          # rank 0 runs it alone
    model: object       # the module whose parameters the step updates
    n_params: int
    grad_bytes: int
    x: object           # this rank's batch
    y: object
    describe: str = ""
    buckets: int = 0    # DDP's buckets (0: no DDP)


def build(name: str):
    """The CLI's model and optimizer (train/cli.py, train/config.py DEFAULTS), seed 0."""
    dlkern.manual_seed(0)
    if name == "mlp":
        model = MLP(SIDE * SIDE, (256, 256), 10)
        return model, optim.Adam(model.parameters(), lr=1e-3), (SIDE * SIDE,)
    if name == "lenet":
        model = LeNet5(1, 10, input_size=SIDE)
        return model, optim.SGD(model.parameters(), lr=0.05), (1, SIDE, SIDE)
    raise SystemExit(f"bench ddp: unknown model {name!r}; choose mlp or lenet")


def batch(shape, n: int, rank: int):
    rng = np.random.default_rng(1 + rank)
    x = rng.standard_normal((n,) + tuple(shape)).astype(np.float32)
    return dlkern.from_numpy(x), dlkern.from_numpy(rng.integers(0, 10, n).astype(np.int64))


def plain_step(model, opt, x, y):
    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def lockstep(step):
    def run():
        step()
        dist.barrier()
    return run


def n_buckets(wrapped) -> int:
    return len(wrapped._buckets)  # private, but the number explains the overlap measured


def variant_name(kind: str, cap_mb: float, main_cap_mb: float) -> str:
    """``ddp`` / ``after_backward`` at the main bucket cap, ``ddp@0.1`` ... at another."""
    return kind if cap_mb == main_cap_mb else f"{kind}@{cap_mb:g}"


def build_variants(name: str, per_rank: int, comm, cap_mb: float = 25, extra_caps=()) -> List[Variant]:
    """single, no_comm, lockstep, then ddp and after_backward at ``cap_mb`` and at each of
    ``extra_caps`` (smaller buckets: several per model, so the overlap has something to hide)."""
    rank = comm.Get_rank()
    model, opt, shape = build(name)
    x, y = batch(shape, per_rank, rank)
    n_params = sum(int(p.numel()) for p in model.parameters())
    single = Variant("single", plain_step(model, opt, x, y), True, model, n_params, 4 * n_params, x, y)
    variants = [
        single,
        # The same step on every rank at once, nothing exchanged: what sharing the host
        # alone costs (memory bandwidth, caches, other processes), apart from DDP.
        dataclasses.replace(single, name="no_comm", solo=False, describe="every rank runs `single`'s plain step "
                            "at the same time, nothing exchanged: the host's own scaling"),
        # Lock-step without data: each step waits for the slowest rank, as DDP's does.
        dataclasses.replace(single, name="lockstep", step=lockstep(single.step), solo=False,
                            describe="`no_comm` plus a dlkern.distributed.barrier() after every step: the ranks wait "
                            "for each other as under DDP, but exchange no data")]
    for cap in (cap_mb, *extra_caps):
        for kind in ("ddp", "after_backward"):
            model, opt, shape = build(name)
            # DDP's private _overlap=False: same buckets, same copies, every all-reduce after the backward.
            wrapped = DistributedDataParallel(model, bucket_cap_mb=cap, _overlap=kind == "ddp")
            how = ("its buckets each all-reduced from the gradient hooks as soon as full, during the backward"
                   if kind == "ddp" else "with `_overlap=False`: its buckets all all-reduced after the backward")
            variants.append(Variant(variant_name(kind, cap, cap_mb), plain_step(wrapped, opt, x, y), False, model,
                                    n_params, 4 * n_params, x, y, f"DistributedDataParallel(bucket_cap_mb={cap:g}), "
                                    f"{how}", n_buckets(wrapped)))
    return variants


def validate(variants: List[Variant], comm) -> Dict[str, float]:
    """One step of each multi-rank variant against the mean of the local gradients
    (computed on the solo variant's model, which has the same initial weights)."""
    from mpi4py import MPI
    single = variants[0]
    model = single.model
    model.zero_grad()
    nn.functional.cross_entropy(model(single.x), single.y).backward()
    mean = []
    for p in model.parameters():
        g = np.ascontiguousarray(p.grad.numpy(), dtype=np.float64)
        comm.Allreduce(MPI.IN_PLACE, g, op=MPI.SUM)
        mean.append(g / comm.Get_size())
    model.zero_grad()
    checks = {}
    for v in variants:
        if not v.name.startswith(SYNCED):
            continue
        v.step()
        worst_grad = max(float(np.abs(p.grad.numpy() - m).max()) / max(float(np.abs(m).max()), 1e-12)
                         for p, m in zip(v.model.parameters(), mean))
        worst_rank = 0.0
        for p in v.model.parameters():
            w = np.ascontiguousarray(p.detach().numpy(), dtype=np.float64)
            lo, hi = w.copy(), w.copy()
            comm.Allreduce(MPI.IN_PLACE, lo, op=MPI.MIN)
            comm.Allreduce(MPI.IN_PLACE, hi, op=MPI.MAX)
            worst_rank = max(worst_rank, float((hi - lo).max(initial=0.0)))
        worst_grad = comm.allreduce(worst_grad, op=MPI.MAX)
        if not (worst_grad < 1e-4 and worst_rank == 0.0):
            raise BenchValidationError(f"bench ddp: {v.name}: gradients differ from the ranks' mean by "
                                       f"{worst_grad:.2e} (relative) or weights differ across ranks by "
                                       f"{worst_rank:.2e} "
                                       "after one step")
        checks[v.name] = worst_grad
    return checks

