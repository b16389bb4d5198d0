"""Benchmarks behind ``python -m dlkern bench <what>``.

What ships and what does not: this package holds the machinery only --
:mod:`.common` (thread pinning, interleaved timing, machine description, tables),
:mod:`.harness` (the ``Case`` row, and the runner that validates each row against its
float64 reference from :mod:`dlkern.reference`, times it and writes the report). The
benchmarks themselves -- tables of rows with their shapes, peers and targets, and the
model-level comparisons with PyTorch twins of whole models -- are developer tables and
live in the source tree, one file per subcommand: ``bench/cases/<name>.py``. Adding an
op's benchmark is adding rows there (or a file whose ``BENCH`` is a ``harness.Bench``).
The wheel ships a copy of them as ``dlkern/bench/cases`` (CMakeLists.txt installs it).

The case files are found through ``$DLKERN_BENCH_CASES``, else the checkout this package
was imported from (editable install or ``PYTHONPATH=python``), else the copy installed
with the package, else ``./bench/cases`` under the current directory. The installed copy
comes before the working directory so a wheel runs its own tables, not those of whatever
checkout the shell happens to be in.

A benchmark is ``module.BENCH`` (a ``harness.Bench``) or the module itself; either has
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> exit status``. Files whose
name starts with ``_`` are helpers the case files share (``_numpy_peers``: the float32
NumPy peers), loaded with ``load_module``. Reports go
to ``--out``, by default ``./bench-results/<name>.md``; the tracked reports under
bench/results/ change only when ``--out`` names them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Dict, Optional

CASES_ENV = "DLKERN_BENCH_CASES"


def source_cases_dir() -> Optional[Path]:
    here = Path(__file__).resolve()
    candidates = [os.environ.get(CASES_ENV), here.parents[3] / "bench" / "cases", here.parent / "cases",
                  Path.cwd() / "bench" / "cases"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def benchmarks() -> Dict[str, Path]:
    """name -> case file, looked up afresh (the environment variable may change)."""
    found = source_cases_dir()
    if found is None:
        return {}
    return {p.stem: p for p in sorted(found.glob("*.py")) if not p.stem.startswith("_")}


BENCHMARKS = benchmarks()


def load_module(name: str):
    """The case file behind ``python -m dlkern bench <name>``, or a helper the case files
    share (``bench/cases/_<name>.py``, left out of the benchmark list), imported once."""
    module_name = f"dlkern_bench_cases.{name}"
    if module_name not in sys.modules:
        found = source_cases_dir()
        helper = found / f"{name}.py" if found is not None and name.startswith("_") else None
        path = helper if helper is not None and helper.is_file() else benchmarks().get(name) or BENCHMARKS[name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    return sys.modules[module_name]


def load_benchmark(name: str):
    """The benchmark behind ``python -m dlkern bench <name>``."""
    module = load_module(name)
    return getattr(module, "BENCH", module)


__all__ = ["BENCHMARKS", "CASES_ENV", "benchmarks", "load_benchmark", "load_module", "source_cases_dir"]
