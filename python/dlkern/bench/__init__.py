"""Benchmarks behind ``python -m dlkern bench <what>``.

Layout (what ships, what stays in the source tree):

- shipped, in this package: the harness and the kernel benchmarks, so an installed
  ``dlkern[bench]`` can measure its kernels against NumPy and PyTorch:
  :mod:`.common` (thread pinning, interleaved timing, machine description, tables),
  :mod:`.harness` (the ``Case`` row and the runner that validates, times and reports
  rows), :mod:`.references` (the NumPy oracles, one per kernel name, reached through
  ``harness._reference``), and the rows themselves in :mod:`.kernels` (matmul,
  softmax, cross_entropy, gelu) and :mod:`.layers` (norm, conv, pool, attention);
- source tree only, ``bench/cases/<name>.py`` beside ``python/``: the model-level
  benchmarks (autograd, gpt, optim, train), which carry PyTorch twins of whole models
  and are for developing dlkern rather than for measuring an install. They are found
  through ``$DLKERN_BENCH_CASES``, else the checkout this package was imported from
  (editable install or ``PYTHONPATH=python``), else ``./bench/cases`` under the current
  directory; where none exists they are simply not offered.

A benchmark is an object with ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(args) -> exit status`` (a ``harness.Bench``, or a module in bench/cases).
Reports go to ``--out``, by default ``./bench-results/<name>.md``; the tracked reports
under bench/results/ change only when ``--out`` names them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Dict, Optional

from .kernels import CROSS_ENTROPY, GELU, MATMUL, SOFTMAX
from .layers import ATTENTION, CONV, NORM, POOL

SHIPPED = {b.name: b for b in (MATMUL, SOFTMAX, CROSS_ENTROPY, GELU, NORM, CONV, POOL, ATTENTION)}


def source_cases_dir() -> Optional[Path]:
    candidates = [os.environ.get("DLKERN_BENCH_CASES"), Path(__file__).resolve().parents[3] / "bench" / "cases",
                  Path.cwd() / "bench" / "cases"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def _source_benchmarks() -> Dict[str, Path]:
    found = source_cases_dir()
    if found is None:
        return {}
    return {p.stem: p for p in sorted(found.glob("*.py")) if not p.stem.startswith("_")}


BENCHMARKS = dict(sorted({**{name: f"{__name__}.{name}" for name in SHIPPED},
                          **{name: str(path) for name, path in _source_benchmarks().items()}}.items()))


def load_benchmark(name: str):
    """The benchmark behind ``python -m dlkern bench <name>``."""
    if name in SHIPPED:
        return SHIPPED[name]
    module_name = f"dlkern_bench_cases.{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS[name])
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


__all__ = ["BENCHMARKS", "load_benchmark"]
