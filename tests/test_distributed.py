"""dlkern.distributed collectives, run on 2 and 3 MPI ranks (tests/mpi_workers/collectives.py
checks each rank's result against NumPy), plus the single-process behaviour."""

import numpy as np
import pytest

import dlkern.distributed as dist
from mpi_support import check_ok, run_mpi

CASES = ["all_reduce", "async", "broadcast", "all_gather", "reduce_scatter", "errors"]


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("case", CASES)
def test_collective(case, n):
    out = check_ok(run_mpi("collectives.py", n, case))
    assert out.count(f"{case} ok") == n, out


def test_timeout_names_the_call_and_ends_the_job():
    proc = run_mpi("collectives.py", 2, "timeout", 3, timeout=90)
    assert proc.returncode != 0
    assert "all_reduce: no completion after 3 s on rank 0 of 2" in proc.stdout, proc.stdout + proc.stderr


def test_dead_rank_ends_the_job():
    # The launcher sees rank 1 exit, ends rank 0 (blocked in all_reduce) and says which rank
    # failed with what status; run_mpi fails the test on a hang.
    proc = run_mpi("collectives.py", 2, "rank_dies", 20, timeout=90)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 9, out
    assert "exited with non-zero status" in out and "Exit code:    9" in out, out
    assert "collectives kept completing" not in out


def test_uninitialized_calls_name_the_fix():
    assert not dist.is_initialized()
    assert dist.get_rank() == 0 and dist.get_world_size() == 1
    with pytest.raises(dist.DistributedError, match="init_process_group"):
        dist.all_reduce(np.zeros(2))
    with pytest.raises(ValueError, match="backend must be 'mpi'"):
        dist.init_process_group("nccl")
    with pytest.raises(ValueError, match="timeout must be positive"):
        dist.init_process_group("mpi", timeout=0)
