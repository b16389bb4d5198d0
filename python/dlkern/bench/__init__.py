"""Benchmarks behind ``python -m dlkern bench <what>``.

Each entry names a module with ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(args) -> exit status``; adding an op's benchmark is one line here plus its
module. Shared machinery (thread pinning, interleaved timing, machine description)
is in :mod:`dlkern.bench.common`. Modules import their heavy peers (PyTorch,
matplotlib) only when run, so building the CLI stays cheap.
"""

import importlib

BENCHMARKS = {
    "matmul": "dlkern.bench.matmul",
}


def load_benchmark(name: str):
    """The module that implements ``python -m dlkern bench <name>``."""
    return importlib.import_module(BENCHMARKS[name])


__all__ = ["BENCHMARKS", "load_benchmark"]
