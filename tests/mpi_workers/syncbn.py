"""Worker for tests/test_sync_batchnorm.py: SyncBatchNorm on every rank against BatchNorm of
the CONCATENATED batch.

Every rank builds the same full batch from a shared seed, takes its own rows (per-rank
batch sizes from the layout argument, so they may differ), and checks what SyncBatchNorm
gives it against an independent float64 NumPy batch norm of the full batch: its slice of
the output and of dx, the running statistics, and dweight/dbias summed over the ranks.
Exits non-zero on any mismatch.

usage: syncbn.py LAYOUT   (even: 4 rows each; uneven: 2 + 3*rank rows; empty: rank 0 has none)
"""

import sys

import numpy as np

import dlkern
import dlkern.distributed as dist
from dlkern import nn

EPS = 1e-5


# ---------------------------------------------------------------- the reference (float64 NumPy)

def ref_bn(x, w, b, eps=EPS):
    """Training-mode batch norm of the full batch: (y, mean, biased var)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    xhat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    y = xhat if w is None else xhat * w.reshape(shape) + b.reshape(shape)
    return y, mean, var


def ref_bn_grads(x, w, g, eps=EPS):
    """(dx, dweight, dbias) of sum(bn(x) * g) over the full batch."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    n = x.size // x.shape[1]
    mean = x.mean(axis=axes).reshape(shape)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes).reshape(shape) + eps)
    xhat = (x - mean) * rstd
    ws = 1.0 if w is None else w.reshape(shape)
    dx = ws * rstd * (g - g.sum(axis=axes).reshape(shape) / n - xhat * (g * xhat).sum(axis=axes).reshape(shape) / n)
    return dx, (g * xhat).sum(axis=axes), g.sum(axis=axes)


# ---------------------------------------------------------------- helpers

def sizes_for(layout, size):
    if layout == "even":
        return [4] * size
    if layout == "uneven":
        return [2 + 3 * r for r in range(size)]
    if layout == "empty":
        return [0] + [3 + r for r in range(1, size)]
    raise SystemExit(f"unknown layout {layout}")


def my_rows(sizes, rank):
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def summed(a):
    """a summed over the ranks (float64 copy)."""
    a = np.ascontiguousarray(a, dtype=np.float64).copy()
    dist.all_reduce(a)
    return a


def same_on_all_ranks(a, what):
    """Every rank holds exactly the same bits of `a` (gathered, compared with rank 0's)."""
    a = np.ascontiguousarray(a)
    everyone = np.zeros((dist.get_world_size(),) + a.shape, a.dtype)
    dist.all_gather_into_tensor(everyone, a)
    for r in range(everyone.shape[0]):
        assert np.array_equal(everyone[r], everyone[0], equal_nan=True), f"{what} differs between rank 0 and {r}"


def close(got, want, tol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    err = np.max(np.abs(got - want) / (1.0 + np.abs(want))) if want.size else 0.0
    assert err <= tol, f"{what}: max relative error {err:.3g} > {tol:g} (rank {dist.get_rank()})"


# ---------------------------------------------------------------- the checks

def check_layer(sizes, rank, trailing, dtype=np.float64, offset=0.0, tol=1e-12, affine=True, momentum=0.1,
                steps=2, seed=0):
    """Training steps of SyncBatchNorm on this rank's rows vs the full-batch reference."""
    c = 3
    rng = np.random.default_rng(seed)
    total = sum(sizes)
    mod = nn.SyncBatchNorm(c, momentum=momentum, affine=affine, dtype=np.float64 if dtype == np.float64 else None)
    w = b = None
    if affine:
        w, b = rng.standard_normal(c), rng.standard_normal(c)
        mod.weight.data[...] = w
        mod.bias.data[...] = b
        w, b = mod.weight.data.astype(np.float64), mod.bias.data.astype(np.float64)
    rm, rv = np.zeros(c), np.ones(c)
    what = f"{np.dtype(dtype).name} {(total, c) + trailing} sizes {sizes}"
    for step in range(steps):
        full = (rng.standard_normal((total, c) + trailing) * rng.uniform(0.5, 2.0, c).reshape((1, c) + (1,) * len(
            trailing)) + offset).astype(dtype)
        g = rng.standard_normal(full.shape)
        x = dlkern.tensor(full[my_rows(sizes, rank)].copy(), requires_grad=True)
        y = mod(x)
        assert y.dtype == dtype, f"{what}: output dtype {y.dtype}"
        (y * dlkern.tensor(g[my_rows(sizes, rank)].astype(dtype))).sum().backward()
        full64 = full.astype(np.float64)
        y_ref, mean, var = ref_bn(full64, w, b)
        close(y.detach().numpy(), y_ref[my_rows(sizes, rank)], tol, f"{what} step {step} output")
        factor = (1.0 / (step + 1)) if momentum is None else momentum
        rm = (1 - factor) * rm + factor * mean
        count = total * int(np.prod(trailing))  # values per channel in the full batch
        rv = (1 - factor) * rv + factor * var * count / (count - 1)
        close(mod.running_mean.numpy(), rm, tol, f"{what} step {step} running_mean")
        close(mod.running_var.numpy(), rv, tol, f"{what} step {step} running_var")
        assert int(mod.num_batches_tracked.numpy()) == step + 1
        same_on_all_ranks(mod.running_mean.numpy(), f"{what} running_mean")
        same_on_all_ranks(mod.running_var.numpy(), f"{what} running_var")
        dx_ref, dw_ref, db_ref = ref_bn_grads(full64, w, g)
        close(x.grad.numpy(), dx_ref[my_rows(sizes, rank)], tol, f"{what} step {step} dx")
        if affine:
            # Each rank's dweight/dbias is its own share (DDP averages them later).
            close(summed(mod.weight.grad.numpy()), dw_ref, tol, f"{what} step {step} dweight summed")
            close(summed(mod.bias.grad.numpy()), db_ref, tol, f"{what} step {step} dbias summed")
            mod.zero_grad()
    # Eval mode: the (shared) running statistics, no cross-rank reduction.
    mod.eval()
    full = rng.standard_normal((total, c) + trailing).astype(dtype)
    mine = full[my_rows(sizes, rank)].astype(np.float64)
    shape = (1, c) + (1,) * len(trailing)
    want = (mine - rm.reshape(shape)) / np.sqrt(rv.reshape(shape) + EPS)
    if affine:
        want = want * w.reshape(shape) + b.reshape(shape)
    close(mod(dlkern.tensor(full[my_rows(sizes, rank)])).detach().numpy(), want, tol, f"{what} eval")


def check_no_running_stats(sizes, rank):
    """track_running_stats=False: global batch statistics in training and in eval."""
    rng = np.random.default_rng(7)
    total = sum(sizes)
    mod = nn.SyncBatchNorm(2, track_running_stats=False, dtype=np.float64)
    full = rng.standard_normal((total, 2, 5)) * 3 + 1
    y_ref, _, _ = ref_bn(full, np.ones(2), np.zeros(2))
    close(mod(dlkern.tensor(full[my_rows(sizes, rank)])).detach().numpy(), y_ref[my_rows(sizes, rank)], 1e-12,
          "track_running_stats=False output")
    assert mod.running_mean is None
    # eval with no running statistics: each rank its own batch (PyTorch: no sync in eval)
    mod.eval()
    mine = full[my_rows(sizes, rank)]
    if mine.shape[0] * mine.shape[2] > 1:
        y_local, _, _ = ref_bn(mine, np.ones(2), np.zeros(2))
        close(mod(dlkern.tensor(mine)).detach().numpy(), y_local, 1e-12, "track_running_stats=False eval (local batch)")


def check_converted_model(sizes, rank):
    """A model converted with convert_sync_batchnorm, on this rank's rows, equals the plain
    BatchNorm model on the full batch: outputs, and parameter gradients summed over ranks."""
    def build():
        dlkern.manual_seed(3)
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 5 * 5, 6), nn.BatchNorm1d(6)).double()
    plain = build()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(build())
    assert isinstance(synced[1], nn.SyncBatchNorm) and isinstance(synced[5], nn.SyncBatchNorm)
    rng = np.random.default_rng(11)
    total = sum(sizes)
    full = rng.standard_normal((total, 2, 5, 5))
    g = rng.standard_normal((total, 6))
    out_full = plain(dlkern.tensor(full))
    (out_full * dlkern.tensor(g)).sum().backward()
    out = synced(dlkern.tensor(full[my_rows(sizes, rank)]))
    (out * dlkern.tensor(g[my_rows(sizes, rank)])).sum().backward()
    close(out.detach().numpy(), out_full.detach().numpy()[my_rows(sizes, rank)], 1e-11, "converted model output")
    for (name, p), q in zip(plain.named_parameters(), synced.parameters()):
        close(summed(q.grad.numpy()), p.grad.numpy(), 1e-11, f"converted model grad {name}")
    for (name, a), b in zip(plain.named_buffers(), synced.buffers()):
        close(b.numpy(), a.numpy(), 1e-12, f"converted model buffer {name}")


def check_too_few_values(rank, size):
    """One value per channel over all ranks: every rank raises (none is left waiting in a
    collective), and the group still works afterwards."""
    mod = nn.SyncBatchNorm(2)
    x = dlkern.zeros(1 if rank == 0 else 0, 2)
    try:
        mod(x)
    except ValueError as e:
        assert "more than 1 value per channel" in str(e) and "SyncBatchNorm" in str(e), str(e)
    else:
        raise AssertionError("SyncBatchNorm accepted 1 value per channel over all ranks")
    a = np.ones(2)
    dist.all_reduce(a)
    assert (a == size).all()


def main():
    layout = sys.argv[1]
    dist.init_process_group("mpi", timeout=60)
    rank, size = dist.get_rank(), dist.get_world_size()
    sizes = sizes_for(layout, size)
    for trailing in ((), (5,), (3, 4), (2, 2, 3)):
        check_layer(sizes, rank, trailing)
    check_layer(sizes, rank, (3,), affine=False, momentum=None, steps=3, seed=1)
    # |mean| >> std: a float64 sum / sum-of-squares form would lose ~1e-10 here.
    check_layer(sizes, rank, (4,), offset=1e3, tol=1e-11, seed=2)
    check_layer(sizes, rank, (3, 3), dtype=np.float32, offset=10.0, tol=2e-5, seed=4)
    check_layer(sizes, rank, (3, 3), dtype=dlkern.bfloat16, tol=4e-2, seed=5)
    check_no_running_stats(sizes, rank)
    check_converted_model(sizes, rank)
    check_too_few_values(rank, size)
    dist.barrier()
    print(f"rank {rank}/{size}: syncbn {layout} ok", flush=True)


if __name__ == "__main__":
    main()
