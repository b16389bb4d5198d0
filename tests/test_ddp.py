"""DistributedDataParallel on 1, 2 and 3 MPI ranks (tests/mpi_workers/ddp.py compares each
rank with the single-process reference it trains itself), the engine's queue_callback it
relies on, and the single-process behaviour."""

import numpy as np
import pytest

import dlkern
import dlkern.distributed as dist
import dlkern.nn as nn
from dlkern.autograd.engine import queue_callback
from dlkern.nn.parallel import DistributedDataParallel
from mpi_support import check_ok, run_mpi


def _run(n, *cases):
    out = check_ok(run_mpi("ddp.py", n, *cases, timeout=240))
    for case in cases:
        assert out.count(f"{case} ok") == n, out


@pytest.mark.parametrize("n", [2, 3])
def test_n_ranks_equal_one_process_with_the_full_batch(n):
    _run(n, "equal", "no_sync")


def test_overlap_checkpoint_unused_buffers_and_errors_on_2_ranks():
    _run(2, "overlap", "checkpoint", "unused", "buffers", "errors")


def test_one_rank_group_is_a_plain_step():
    _run(1, "one_rank", "unused", "errors")


def test_uninitialized_group_names_init_process_group():
    assert not dist.is_initialized()
    with pytest.raises(dist.DistributedError, match="init_process_group"):
        DistributedDataParallel(nn.Linear(2, 2))
    assert nn.parallel.DistributedDataParallel is DistributedDataParallel


def test_queue_callback_runs_after_the_backward():
    w = nn.Parameter(dlkern.tensor(np.array([1.0, 2.0])))
    seen = []

    def hook(p):
        seen.append(("hook", p.grad.detach().numpy().tolist()))
        queue_callback(lambda: seen.append(("callback", p.grad.detach().numpy().tolist())))
        if len(seen) == 1:
            queue_callback(lambda: queue_callback(lambda: seen.append(("nested",))))
    h = w.register_post_accumulate_grad_hook(hook)
    ((w * w).sum() + w.sum()).backward()
    assert seen == [("hook", [3.0, 5.0]), ("callback", [3.0, 5.0]), ("nested",)]
    # with create_graph too (the recording engine path)
    seen.clear()
    w.grad = None
    (w * w).sum().backward(create_graph=True)
    assert seen[1] == ("callback", [2.0, 4.0])
    h.remove()
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        queue_callback(lambda: None)


def test_queue_callback_in_a_nested_backward_waits_for_the_outer_one():
    # checkpoint's recomputation runs a backward inside the backward: a callback queued
    # from a hook there runs when the whole (outer) backward is done.
    from dlkern.utils.checkpoint import checkpoint
    inner = nn.Linear(2, 2)
    outer = nn.Parameter(dlkern.tensor(np.array([3.0, 4.0], np.float32)))
    order = []
    inner.weight.register_post_accumulate_grad_hook(
        lambda p: (order.append("inner hook"), queue_callback(lambda: order.append(("callback", outer.grad)))))
    outer.register_post_accumulate_grad_hook(lambda p: order.append("outer hook"))
    x = dlkern.ones(1, 2)
    (checkpoint(inner, x * outer) * 2).sum().backward()
    assert [o if isinstance(o, str) else o[0] for o in order] == ["inner hook", "outer hook", "callback"]
    assert order[2][1] is not None


def test_queue_callback_not_run_when_the_backward_raises():
    w = nn.Parameter(dlkern.tensor(np.array([1.0])))
    ran = []

    def hook(p):
        queue_callback(lambda: ran.append(1))
        raise ValueError("hook failed")
    w.register_post_accumulate_grad_hook(hook)
    with pytest.raises(ValueError, match="hook failed"):
        (w * 2).sum().backward()
    assert ran == []
