"""Worker for tests/test_distributed.py: one named case of the collectives on every rank.

Each rank computes the expected result itself, in NumPy, from what every rank sends
(which is a function of the rank alone), and exits non-zero on a mismatch."""

import sys
import time

import numpy as np

import dlkern
import dlkern.distributed as dist
from worker_checks import expect


def sent(rank, shape=(3, 5), dtype=np.float64):
    """What rank `rank` contributes: distinct per rank and element."""
    n = int(np.prod(shape))
    return (np.arange(n, dtype=np.float64).reshape(shape) * (rank + 1) + 0.25 * rank).astype(dtype)


def case_all_reduce(rank, size):
    everyone = [sent(r) for r in range(size)]
    for op, ref in (("sum", sum(everyone)), ("avg", sum(everyone) / size), ("max", np.maximum.reduce(everyone)),
                    ("min", np.minimum.reduce(everyone)), ("product", np.prod(everyone, axis=0))):
        t = dlkern.tensor(sent(rank))
        dist.all_reduce(t, op=op)
        np.testing.assert_allclose(t.numpy(), ref, rtol=1e-15, err_msg=op)
    for dtype in (np.float32, np.int64, np.int32, np.uint8):
        a = sent(rank, (7,), dtype)
        dist.all_reduce(a)
        np.testing.assert_array_equal(a, sum(sent(r, (7,), dtype) for r in range(size)).astype(dtype))
    # NaN propagates as in a plain sum; a 0-d and an empty tensor work.
    a = np.array([1.0, np.nan if rank == 0 else 2.0, np.inf])
    dist.all_reduce(a)
    assert np.isnan(a[1]) and a[2] == np.inf and a[0] == size
    z = np.array(float(rank))
    dist.all_reduce(z)
    assert z == sum(range(size))
    e = np.zeros((0, 4), np.float32)
    dist.all_reduce(e)


def case_async(rank, size):
    big = sent(rank, (1 << 18,), np.float32)
    work = dist.all_reduce(big, op=dist.ReduceOp.AVG, async_op=True)
    assert isinstance(work, dist.Work)
    work.wait()
    assert work.is_completed()
    np.testing.assert_allclose(big, sum(sent(r, (1 << 18,), np.float64) for r in range(size)) / size, rtol=1e-6)
    # A Work dropped without wait keeps its buffer alive until MPI is done with it.
    dist.all_reduce(np.ones(1 << 20, np.float32), async_op=True)
    dist.barrier()


def case_broadcast(rank, size):
    for src in range(size):
        t = dlkern.tensor(sent(rank, (4, 2), np.float32))
        dist.broadcast(t, src=src)
        np.testing.assert_array_equal(t.numpy(), sent(src, (4, 2), np.float32))


def case_all_gather(rank, size):
    mine = sent(rank, (2, 3), np.float32)
    # Chunks of one buffer (gathered in place) and separate tensors (through staging).
    out = np.zeros((size * 2, 3), np.float32)
    dist.all_gather([out[2 * r:2 * r + 2] for r in range(size)], mine)
    np.testing.assert_array_equal(out, np.concatenate([sent(r, (2, 3), np.float32) for r in range(size)]))
    outs = [dlkern.zeros(2, 3) for _ in range(size)]
    dist.all_gather(outs, dlkern.tensor(mine))
    for r in range(size):
        np.testing.assert_array_equal(outs[r].numpy(), sent(r, (2, 3), np.float32))
    flat = np.zeros(size * 6, np.float32)
    dist.all_gather_into_tensor(flat, mine)
    np.testing.assert_array_equal(flat.reshape(size, 2, 3), np.stack([sent(r, (2, 3), np.float32) for r in range(size)]))


def case_reduce_scatter(rank, size):
    # rank r sends block b = sent(r)[b]; rank b receives the sum over r of those.
    full = [sent(r, (size, 4)) for r in range(size)]
    out = np.zeros(4)
    dist.reduce_scatter(out, [full[rank][b].copy() for b in range(size)])
    np.testing.assert_allclose(out, sum(f[rank] for f in full), rtol=1e-15)
    out2 = np.zeros(4)
    dist.reduce_scatter_tensor(out2, full[rank], op="avg")
    np.testing.assert_allclose(out2, sum(f[rank] for f in full) / size, rtol=1e-15)


def case_errors(rank, size):
    expect(TypeError, "dtype bfloat16", dist.all_reduce, np.zeros(3, dlkern.bfloat16))
    expect(ValueError, "contiguous", dist.all_reduce, np.zeros((4, 4))[:, ::2])
    frozen = np.zeros(4)
    frozen.flags.writeable = False
    expect(ValueError, "read-only", dist.all_reduce, frozen)
    expect(ValueError, "op must be", dist.all_reduce, np.zeros(3), op="mean")
    expect(TypeError, "AVG needs a floating", dist.all_reduce, np.zeros(3, np.int64), op="avg")
    expect(TypeError, "Tensor or a numpy.ndarray", dist.all_reduce, [1.0, 2.0])
    expect(ValueError, "src must be a rank", dist.broadcast, np.zeros(2), src=size)
    expect(ValueError, "list of world_size", dist.all_gather, [np.zeros(2)] * (size + 1), np.zeros(2))
    expect(ValueError, "must match the input", dist.all_gather, [np.zeros(3)] * size, np.zeros(2))
    expect(ValueError, "world_size * input", dist.all_gather_into_tensor, np.zeros(1), np.zeros(2))
    expect(dist.DistributedError, "already initialized", dist.init_process_group, "mpi")
    # After the refusals the group still works.
    a = np.ones(2)
    dist.all_reduce(a)
    assert (a == size).all()


def case_timeout(rank, size):
    # Rank 1 stops answering; rank 0's all_reduce must give up after the timeout with a
    # clear error, and the job must end (not hang) because the group aborts at exit.
    if rank == 1:
        time.sleep(600)
    try:
        dist.all_reduce(np.ones(3))
    except dist.DistributedTimeoutError as e:
        print(f"rank {rank}: {e}", flush=True)
        raise SystemExit(3)
    raise AssertionError("all_reduce returned although rank 1 never joined")


def case_rank_dies(rank, size):
    # Rank 1 dies mid-run without a word (as a killed process would); the others are
    # inside a collective and must not hang.
    a = np.ones(3)
    dist.all_reduce(a)
    if rank == 1:
        import os
        os._exit(9)
    for _ in range(100):
        dist.all_reduce(a)
    raise AssertionError("collectives kept completing although rank 1 died")


if __name__ == "__main__":
    case = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else None
    dist.init_process_group("mpi", timeout=timeout)
    rank, size = dist.get_rank(), dist.get_world_size()
    globals()["case_" + case](rank, size)
    dist.barrier()
    print(f"rank {rank}/{size}: {case} ok", flush=True)
