"""Worker for tests/test_ddp.py: one named case of DistributedDataParallel on every rank.

Each rank also trains the single-process reference itself (same seed, the full batch of
all ranks together), so it compares its own DDP result with it and exits non-zero on a
mismatch."""

import sys

import numpy as np

import dlkern
import dlkern.distributed as dist
import dlkern.nn as nn
import dlkern.nn.functional as F
from dlkern.data import DataLoader, DistributedSampler, TensorDataset
from dlkern.nn.parallel import DistributedDataParallel as DDP
from worker_checks import expect

B = 4  # per-rank batch
STEPS = 5
TOL = 1e-10
CAP_MB = 1000 / 2 ** 20  # ~1 KB: the MLP below splits into several buckets


def mlp(seed):
    dlkern.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(),
                         nn.Linear(8, 3)).double()


def data(size, steps=STEPS):
    """Batches for every step: the full batch of all ranks (rank r's share is rows r::size)."""
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((size * B, 6)), rng.standard_normal((size * B, 3))) for _ in range(steps)]


def optimizer(kind, params):
    if kind == "sgd":
        return dlkern.optim.SGD(params, lr=0.1, momentum=0.9)
    return dlkern.optim.Adam(params, lr=0.01)


def weights(model):
    return [p.detach().numpy().copy() for p in model.parameters()]


def train_reference(kind, batches):
    model = mlp(0)
    opt = optimizer(kind, model.parameters())
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = F.mse_loss(model(dlkern.tensor(x)), dlkern.tensor(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, weights(model)


def mean_over_ranks(value):
    a = np.array([value])
    dist.all_reduce(a, op=dist.ReduceOp.AVG)
    return a[0]


def check_close(got, want, what):
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=0, atol=TOL, err_msg=f"{what} [{i}]")


def train_ddp(kind, batches, rank, size, **kwargs):
    """The same training, each rank on its share (picked by a DistributedSampler)."""
    model = mlp(rank)  # different on every rank: the wrap must broadcast rank 0's
    ddp = DDP(model, bucket_cap_mb=CAP_MB, **kwargs)
    assert len(ddp._buckets) >= 3, [b.indices for b in ddp._buckets]
    check_close(weights(model), weights(mlp(0)), "parameters after the wrap")
    opt = optimizer(kind, ddp.parameters())
    sampler = DistributedSampler(range(size * B), shuffle=False)
    losses = []
    for x, y in batches:
        loader = DataLoader(TensorDataset(x, y), batch_size=B, sampler=sampler)
        (xb, yb), = list(loader)
        opt.zero_grad()
        loss = F.mse_loss(ddp(xb), yb)
        loss.backward()
        opt.step()
        losses.append(mean_over_ranks(loss.item()))
    return ddp, losses, weights(model)


def case_equal(rank, size):
    """N ranks x batch B == 1 process x batch N*B (SGD with momentum, Adam; with and
    without gradient_as_bucket_view; with the reduction after the backward)."""
    batches = data(size)
    for kind in ("sgd", "adam"):
        ref_losses, ref_weights = train_reference(kind, batches)
        for kwargs in ({}, {"gradient_as_bucket_view": True}, {"_overlap": False}):
            ddp, losses, got = train_ddp(kind, batches, rank, size, **kwargs)
            what = f"{kind} {kwargs}"
            np.testing.assert_allclose(losses, ref_losses, rtol=0, atol=TOL, err_msg=what + " losses")
            check_close(got, ref_weights, what + " weights")
            if kwargs.get("gradient_as_bucket_view"):
                for i, p in enumerate(ddp._params):
                    assert p.grad.data is ddp._views[i], f"{what}: grad of {ddp._names[i]} is not its bucket view"


def case_overlap(rank, size):
    """With overlap the first bucket starts before the last gradient arrives; without,
    only once all have."""
    x, y = data(size, 1)[0]
    for overlap in (True, False):
        ddp = DDP(mlp(0), bucket_cap_mb=CAP_MB, _overlap=overlap)
        ready_at_launch = []
        launch = ddp._launch

        def spy():
            ready_at_launch.append(sum(ddp._ready))
            launch()
        ddp._launch = spy
        F.mse_loss(ddp(dlkern.tensor(x[rank::size])), dlkern.tensor(y[rank::size])).backward()
        n = len(ddp._params)
        first = ready_at_launch[0]
        assert (first < n) == overlap, f"overlap={overlap}: first bucket started with {first} of {n} ready"


def case_no_sync(rank, size):
    """Two micro-batches, the first under no_sync: equal to one step on the sum of both
    micro-batches' full-batch gradients."""
    (x1, y1), (x2, y2) = data(size, 2)
    ref = mlp(0)
    opt = dlkern.optim.SGD(ref.parameters(), lr=0.1)
    for x, y in ((x1, y1), (x2, y2)):
        F.mse_loss(ref(dlkern.tensor(x)), dlkern.tensor(y)).backward()
    opt.step()
    for as_view in (False, True):
        model = mlp(rank)
        ddp = DDP(model, bucket_cap_mb=CAP_MB, gradient_as_bucket_view=as_view)
        opt = dlkern.optim.SGD(ddp.parameters(), lr=0.1)
        with ddp.no_sync():
            F.mse_loss(ddp(dlkern.tensor(x1[rank::size])), dlkern.tensor(y1[rank::size])).backward()
        local = model[0].weight.grad.numpy().copy()
        everyone = [np.zeros_like(local) for _ in range(size)]
        dist.all_gather(everyone, local)
        assert size == 1 or not np.allclose(everyone[0], everyone[1]), "no_sync communicated"
        F.mse_loss(ddp(dlkern.tensor(x2[rank::size])), dlkern.tensor(y2[rank::size])).backward()
        opt.step()
        check_close(weights(model), weights(ref), f"no_sync as_view={as_view}")


class Checkpointed(nn.Module):
    """The MLP with its last layers under activation checkpointing: their parameters get
    their gradients (the backward's first) in a backward nested inside the outer one."""

    def __init__(self, seed):
        super().__init__()
        self.net = mlp(seed)

    def forward(self, x):
        from dlkern.utils.checkpoint import checkpoint
        h = self.net[3](self.net[2](self.net[1](self.net[0](x))))
        return checkpoint(lambda t: self.net[6](self.net[5](self.net[4](t))), h)


def case_checkpoint(rank, size):
    (x, y), = data(size, 1)
    ref = Checkpointed(0)
    F.mse_loss(ref(dlkern.tensor(x)), dlkern.tensor(y)).backward()
    model = Checkpointed(rank)
    ddp = DDP(model, bucket_cap_mb=CAP_MB)
    F.mse_loss(ddp(dlkern.tensor(x[rank::size])), dlkern.tensor(y[rank::size])).backward()
    check_close([p.grad.numpy() for p in model.parameters()], [p.grad.numpy() for p in ref.parameters()],
                "gradients through checkpoint")


class Branches(nn.Module):
    """`used` always takes part; `sometimes` only when forward is told so."""

    def __init__(self):
        super().__init__()
        self.used = nn.Linear(3, 2).double()
        self.sometimes = nn.Linear(3, 2).double()
        self.never = nn.Linear(3, 2).double()

    def forward(self, x, with_sometimes=True):
        out = self.used(x)
        return out + self.sometimes(x) if with_sometimes else out


def case_unused(rank, size):
    x = dlkern.tensor(np.random.default_rng(rank).standard_normal((4, 3)))
    dlkern.manual_seed(0)
    ddp = DDP(Branches())
    expect(RuntimeError, "never.weight, never.bias", lambda: ddp(x).sum().backward())
    # find_unused_parameters=True: `never` keeps no gradient; `sometimes` is used by rank
    # 0 only, so every rank gets rank 0's gradient / size (the others count as zeros).
    dlkern.manual_seed(0)
    model = Branches()
    for as_view in (False, True):
        ddp = DDP(model, find_unused_parameters=True, gradient_as_bucket_view=as_view)
        model.zero_grad()
        ddp(x, with_sometimes=rank == 0).sum().backward()
        assert model.never.weight.grad is None and model.never.bias.grad is None
        xs = [np.random.default_rng(r).standard_normal((4, 3)) for r in range(size)]
        want_used = sum(np.ones((4, 2)).T @ xr for xr in xs) / size
        np.testing.assert_allclose(model.used.weight.grad.numpy(), want_used, rtol=1e-13)
        np.testing.assert_allclose(model.sometimes.weight.grad.numpy(), np.ones((4, 2)).T @ xs[0] / size, rtol=1e-13)
        np.testing.assert_allclose(model.sometimes.bias.grad.numpy(), np.full(2, 4.0 / size), rtol=1e-13)


def case_buffers(rank, size):
    """broadcast_buffers: rank 0's BatchNorm running statistics reach every rank at each
    forward; without it each rank keeps its own."""
    x = dlkern.tensor(np.random.default_rng(rank).standard_normal((5, 3)))
    for broadcast in (True, False):
        dlkern.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).double()
        ddp = DDP(model, broadcast_buffers=broadcast)
        bn = model[1]
        bn.running_mean.data[...] = 100.0 * rank  # a rank that drifted
        bn.num_batches_tracked.data[...] = 7 * rank
        h = model[0](x).detach().numpy()
        ddp(x).sum().backward()
        base = 0.0 if broadcast else 100.0 * rank
        np.testing.assert_allclose(bn.running_mean.numpy(), 0.9 * base + 0.1 * h.mean(0), rtol=1e-12)
        assert int(bn.num_batches_tracked.item()) == (0 if broadcast else 7 * rank) + 1


def case_errors(rank, size):
    expect(ValueError, "device_ids", DDP, mlp(0), device_ids=[0])
    expect(ValueError, "bucket_cap_mb", DDP, mlp(0), bucket_cap_mb=0)
    expect(TypeError, "dlkern.nn.Module", DDP, lambda x: x)
    frozen = mlp(0).requires_grad_(False)
    expect(RuntimeError, "doesn't have any parameter", DDP, frozen)
    expect(TypeError, "float32 or float64", DDP, nn.Linear(2, 2).half())
    if size > 1:
        expect(RuntimeError, "different models", DDP, nn.Linear(2, 2 + rank))
    # state_dict keys as PyTorch's, loadable into the bare module
    ddp = DDP(mlp(0))
    sd = ddp.state_dict()
    assert list(sd) == ["module." + k for k in ddp.module.state_dict()], list(sd)
    ddp.load_state_dict(sd)
    # no group reduction for a module wrapped twice in a row: the first wrapper is gone
    del ddp


def case_one_rank(rank, size):
    assert size == 1
    case_equal(rank, size)
    case_no_sync(rank, size)


if __name__ == "__main__":
    dist.init_process_group("mpi", timeout=60)
    rank, size = dist.get_rank(), dist.get_world_size()
    for case in sys.argv[1:]:
        globals()["case_" + case](rank, size)
        dist.barrier()
        print(f"rank {rank}/{size}: {case} ok", flush=True)
