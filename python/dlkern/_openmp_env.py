"""The OpenMP wait policy dlkern's kernels run with.

By default libgomp keeps an idle thread spinning for about 300,000 spins after every
parallel region. On a machine where another process holds a core, a spinning thread
steals the time slice of the thread doing the work, and small ops at 2 threads were
measured up to 70x slower than at 1. Fully passive waiting (sleep at once) fixes that
but makes every parallel region pay a futex wake-up on an idle machine (measured here:
2-thread MLP/LeNet training steps 20-30% slower, a small max-pool slower at 2 threads
than at 1). So dlkern asks for a short bounded spin, ``GOMP_SPINCOUNT=10000`` (some
microseconds), after which idle threads sleep: back-to-back regions on an idle machine
still find their threads awake, and a busy machine never sees a thread spin for long
(bench/results/busy_core.md has both). Nothing is set when the user chose a policy.

libgomp reads OMP_WAIT_POLICY / GOMP_SPINCOUNT once, when it is loaded, which is when
``dlkern._C`` is imported (unless something else loaded it before): ``load_extension``
sets the default just around that import and then restores the environment, so child
processes and libraries loaded later see the user's environment unchanged.
"""

import ctypes
import os

# Either one set by the user means the user chose: dlkern then sets nothing.
USER_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
DEFAULT_SPINCOUNT = "10000"
_LIBGOMP = "libgomp.so.1"

_state = {}


def _libgomp_loaded():
    """Whether the libgomp that dlkern._C links (by soname) is already in the process."""
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None:
        return False
    try:
        ctypes.CDLL(_LIBGOMP, mode=noload | os.RTLD_LAZY)
        return True
    except OSError:
        return False


def _openmp_libraries():
    """Paths of the OpenMP runtimes mapped into this process (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libgomp" in line or "libomp" in line or "libiomp" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def load_extension(import_c):
    """Run ``import_c()`` (which imports dlkern._C) with dlkern's default wait policy
    in the environment when the user set none; returns what it returns."""
    user = {k: os.environ[k] for k in USER_KEYS if k in os.environ}
    preloaded = _libgomp_loaded()
    set_default = not user
    if set_default:
        os.environ["GOMP_SPINCOUNT"] = DEFAULT_SPINCOUNT
    try:
        module = import_c()
    finally:
        if set_default:
            os.environ.pop("GOMP_SPINCOUNT", None)
    if preloaded:
        # libgomp had already read the environment: whatever was set then applies.
        source = "environment, read when libgomp was loaded before dlkern"
        policy = user.get("OMP_WAIT_POLICY")
    elif user:
        source = "environment"
        policy = user.get("OMP_WAIT_POLICY")
    else:
        source = "dlkern default"
        policy = f"spin {DEFAULT_SPINCOUNT}, then sleep"
        user = {"GOMP_SPINCOUNT": DEFAULT_SPINCOUNT}
    _state.update(policy=policy.strip().lower() if policy else "unset (runtime default: spin, then sleep)",
                  spincount=user.get("GOMP_SPINCOUNT"), source=source)
    return module


def info():
    """The wait policy in effect and where it came from, plus the OpenMP runtimes loaded."""
    return {
        "omp_wait_policy": _state.get("policy"),
        "gomp_spincount": _state.get("spincount"),
        "wait_policy_source": _state.get("source"),
        "openmp_libraries": _openmp_libraries(),
    }
