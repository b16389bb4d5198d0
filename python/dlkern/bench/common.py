"""Benchmark machinery shared by every benchmark: thread pinning, interleaved timing,
machine description and table helpers. ``dlkern.bench.harness`` builds each row's
inputs, validates every library's result, then hands ``Contender``s to
``measure_interleaved``; the model-level benchmarks in bench/cases call it directly.

Timing rules (see DESIGN.md and MACHINE.md):
- every library runs at the same, fixed thread count (``pinned_threads``);
- warm-up first, then ``repeats`` samples per library, reported as the median;
- a sample repeats the call until it lasts at least ``min_sample_s``, so the timer's
  resolution and Python's call overhead do not dominate tiny ops;
- libraries alternate sample by sample, so a slow patch of the shared host hits all of
  them, and at more than one thread the harness pauses before switching library so
  the previous library's idle worker threads stop spinning (OpenBLAS workers spin
  about 0.1 s after a call; libgomp workers a few ms) and do not steal the cores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

import dlkern

DEFAULT_MIN_SAMPLE_S = 0.020
DEFAULT_SETTLE_S = 0.150
# Below this fraction of perfect scaling the host is probably sharing our cores.
SCALING_WARNING_FRACTION = 0.8
# Recorded if set; the harness only reads them, since they change what the peers run.
RECORDED_ENV_VARS = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "MKL_NUM_THREADS",
    "MKL_ENABLE_INSTRUCTIONS",
    "DLKERN_ISA",
)


class BenchValidationError(RuntimeError):
    """A library returned a wrong result; its timing would be meaningless."""


# ----------------------------------------------------------------------------- peers


def optional_import(module_name: str) -> Tuple[Optional[object], str]:
    """Import a peer library if it is installed; return (module or None, why not)."""
    try:
        return importlib.import_module(module_name), ""
    except Exception as exc:  # a broken install must skip the peer, not the benchmark
        return None, f"{type(exc).__name__}: {exc}"


def _threadpoolctl():
    module, _ = optional_import("threadpoolctl")
    return module


def blas_pinning_available() -> bool:
    return _threadpoolctl() is not None


@contextlib.contextmanager
def pinned_threads(n_threads: int, torch_module=None):
    """Run dlkern, NumPy's BLAS and (if given) PyTorch on exactly ``n_threads`` threads,
    restoring the previous settings afterwards."""
    previous_dlkern = dlkern.get_num_threads()
    with contextlib.ExitStack() as restore:
        dlkern.set_num_threads(n_threads)
        restore.callback(dlkern.set_num_threads, previous_dlkern)
        threadpoolctl = _threadpoolctl()
        if threadpoolctl is not None:
            # user_api="blas" leaves the OpenMP runtimes alone: dlkern's and torch's
            # thread counts are set through their own APIs above and below.
            restore.enter_context(threadpoolctl.threadpool_limits(limits=n_threads, user_api="blas"))
        if torch_module is not None:
            previous_torch = torch_module.get_num_threads()
            torch_module.set_num_threads(n_threads)
            restore.callback(torch_module.set_num_threads, previous_torch)
        yield


# ----------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Contender:
    """One library's way of running the op on the shared inputs."""

    name: str
    run: Callable[[], object]


@dataclasses.dataclass
class Timing:
    """Seconds per call, one entry per sample."""

    samples: List[float]
    calls_per_sample: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median: how much the host disturbed this measurement."""
        return (max(self.samples) - min(self.samples)) / self.median


def warm_up(run: Callable[[], object], min_calls: int = 2, min_seconds: float = 0.05) -> float:
    """Call ``run`` until caches, packing buffers and thread pools are warm; return the
    fastest call in seconds (used to size the samples)."""
    fastest = math.inf
    calls = 0
    started = time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        run()
        fastest = min(fastest, time.perf_counter() - t0)
        calls += 1
        if calls >= 1000:
            break
    return fastest


def calls_for_sample(seconds_per_call: float, min_sample_s: float) -> int:
    return max(1, math.ceil(min_sample_s / max(seconds_per_call, 1e-9)))


def time_sample(run: Callable[[], object], calls: int) -> float:
    """Seconds per call, averaged over ``calls`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - t0) / calls


def settle_seconds(n_threads: int, settle_s: float) -> float:
    """Pause only matters when worker threads exist that could keep spinning."""
    return settle_s if n_threads > 1 else 0.0


def measure_interleaved(
    contenders: Sequence[Contender],
    repeats: int,
    n_threads: int,
    min_sample_s: float = DEFAULT_MIN_SAMPLE_S,
    settle_s: float = DEFAULT_SETTLE_S,
) -> Dict[str, Timing]:
    """Time every contender, alternating them sample by sample (rotating who goes first)
    so drifting host noise lands on all of them. Call inside ``pinned_threads``."""
    pause = settle_seconds(n_threads, settle_s)
    calls = {}
    for contender in contenders:
        time.sleep(pause)
        calls[contender.name] = calls_for_sample(warm_up(contender.run), min_sample_s)
    samples = {contender.name: [] for contender in contenders}
    for repeat in range(repeats):
        shift = repeat % len(contenders)
        for contender in list(contenders[shift:]) + list(contenders[:shift]):
            time.sleep(pause)
            per_call = time_sample(contender.run, calls[contender.name])
            samples[contender.name].append(per_call)
            # A warm-up slowed by the host undercounts calls; grow them (never shrink) so
            # later samples still last min_sample_s.
            calls[contender.name] = max(calls[contender.name], calls_for_sample(per_call, min_sample_s))
    return {name: Timing(samples[name], calls[name]) for name in samples}


@dataclasses.dataclass
class ThreadScaling:
    n_threads: int
    one_thread_s: float
    n_threads_s: float

    @property
    def speedup(self) -> float:
        return self.one_thread_s / self.n_threads_s

    @property
    def trustworthy(self) -> bool:
        return self.speedup >= SCALING_WARNING_FRACTION * self.n_threads

    def describe(self) -> str:
        text = (
            f"{self.n_threads} threads ran the scaling probe at {self.speedup:.2f}x the speed of 1 thread "
            f"({self.one_thread_s * 1e3:.3f} ms -> {self.n_threads_s * 1e3:.3f} ms)"
        )
        if not self.trustworthy:
            text = (
                f"WARNING: {text}, below {SCALING_WARNING_FRACTION * self.n_threads:.1f}x: the host "
                f"is probably not giving us {self.n_threads} full cores right now (see MACHINE.md); "
                f"distrust the {self.n_threads}-thread figures and prefer 1-thread ratios."
            )
        return text


def check_thread_scaling(probe: Callable[[], object], n_threads: int, repeats: int = 3,
                         settle_s: float = DEFAULT_SETTLE_S) -> ThreadScaling:
    """Time dlkern's ``probe`` on 1 thread and on ``n_threads``, interleaved."""
    previous = dlkern.get_num_threads()
    best = {}
    try:
        for threads in (1, n_threads):
            dlkern.set_num_threads(threads)
            best[threads] = calls_for_sample(warm_up(probe), DEFAULT_MIN_SAMPLE_S)
        samples = {1: [], n_threads: []}
        for _ in range(repeats):
            for threads in (1, n_threads):
                dlkern.set_num_threads(threads)
                time.sleep(settle_s)
                samples[threads].append(time_sample(probe, best[threads]))
    finally:
        dlkern.set_num_threads(previous)
    return ThreadScaling(n_threads, statistics.median(samples[1]), statistics.median(samples[n_threads]))


# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """Model name plus family/model numbers: a VM may only say "AMD EPYC", and the
    numbers tell the generation apart (family 25 model 17 is Zen 4 Genoa)."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    numbers = ", ".join(f"{key} {fields[key]}" for key in ("cpu family", "model", "stepping") if key in fields)
    return f"{fields['model name']} ({numbers})" if numbers else fields["model name"]


def usable_cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def numpy_blas_description() -> str:
    """NumPy's BLAS as loaded (threadpoolctl knows the kernel architecture OpenBLAS picked
    at run time); falls back to NumPy's build record."""
    threadpoolctl = _threadpoolctl()
    if threadpoolctl is not None:
        found = []
        for pool in threadpoolctl.threadpool_info():
            if pool.get("user_api") != "blas":
                continue
            parts = [pool.get("internal_api", "?"), str(pool.get("version"))]
            if pool.get("architecture"):
                parts.append(f"kernels {pool['architecture']}")
            if pool.get("threading_layer"):
                parts.append(f"threading {pool['threading_layer']}")
            parts.append(os.path.basename(pool.get("filepath", "")))
            found.append(", ".join(parts))
        if found:
            return "; ".join(found)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} (build record; threadpoolctl not installed)"
    except Exception:
        return "unknown (threadpoolctl not installed)"


def torch_description(torch_module) -> str:
    config = torch_module.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", config)
    parts = [f"PyTorch {torch_module.__version__}"]
    parts.append(f"BLAS {blas.group(1) if blas else 'unknown'}" + (f" {mkl.group(1)}" if mkl else ""))
    capability = getattr(getattr(torch_module.backends, "cpu", None), "get_cpu_capability", None)
    if capability is not None:
        parts.append(f"CPU capability {capability()}")
    return ", ".join(parts)


def recorded_environment() -> Dict[str, str]:
    return {name: os.environ[name] for name in RECORDED_ENV_VARS if name in os.environ}


def describe_machine(torch_module=None, torch_missing_reason: str = "") -> Dict[str, object]:
    """What a reader needs to reproduce or judge the numbers."""
    description = {
        "CPU": cpu_model(),
        "usable cores": f"{usable_cpu_count()} (os.cpu_count() = {os.cpu_count()})",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "NumPy": f"{np.__version__}, BLAS: {numpy_blas_description()}",
        "PyTorch": torch_description(torch_module) if torch_module is not None
        else f"not used ({torch_missing_reason or 'not requested'})",
        "dlkern": f"{dlkern.__version__}, active ISA {dlkern.get_isa()}",
        "dlkern build_info": dlkern.build_info(),
        "environment": recorded_environment() or "none of " + ", ".join(RECORDED_ENV_VARS) + " set",
    }
    if not blas_pinning_available():
        description["WARNING"] = "threadpoolctl is not installed: NumPy's BLAS threads were NOT pinned"
    return description


def machine_markdown(description: Dict[str, object]) -> List[str]:
    lines = []
    for key, value in description.items():
        if isinstance(value, dict):
            flat = ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
            lines.append(f"- **{key}**: {flat}")
        else:
            lines.append(f"- **{key}**: {value}")
    return lines


def _compact(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "/".join(str(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------- reports


def command_line() -> str:
    """The command as typed, with the recorded env vars in front so it reproduces."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in recorded_environment().items())
    program = sys.argv[0]
    if program.endswith(os.path.join("dlkern", "__main__.py")) or program == "-m":
        program = "python -m dlkern"
    return " ".join(part for part in (env, program, shlex.join(sys.argv[1:])) if part)


def timestamp() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def resolve_output_path(path: str) -> Path:
    """Relative paths are relative to where the user runs the command; parents are made."""
    resolved = Path(path).expanduser()
    if not resolved.is_absolute():
        resolved = Path.cwd() / resolved
    resolved.parent.mkdir(parents=True, exist_ok=True)
    return resolved


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    def line(cells):
        return "  ".join(str(cell).rjust(width) for cell, width in zip(cells, widths))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(row) for row in rows])


def format_ratio(peer_seconds: Optional[float], dlkern_seconds: float) -> str:
    """Speedup of dlkern over a peer: peer time / dlkern time (> 1: dlkern is faster)."""
    if peer_seconds is None:
        return "-"
    return f"{peer_seconds / dlkern_seconds:.2f}x"
