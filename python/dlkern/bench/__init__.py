"""Benchmarks behind ``python -m dlkern bench <what>``.

Every module in this package except ``common`` is a benchmark: it defines
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> exit status``, and its
file name is the name on the command line. Adding an op's benchmark is adding its
module. Shared machinery (thread pinning, interleaved timing, machine description)
is in :mod:`dlkern.bench.common`. Modules import their heavy peers (PyTorch,
matplotlib) only when run, so building the CLI stays cheap.
"""

import importlib
import pkgutil

_NOT_BENCHMARKS = {"common"}


def _discover():
    found = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name not in _NOT_BENCHMARKS and not module.name.startswith("_"):
            found[module.name] = f"{__name__}.{module.name}"
    return dict(sorted(found.items()))


BENCHMARKS = _discover()


def load_benchmark(name: str):
    """The module that implements ``python -m dlkern bench <name>``."""
    return importlib.import_module(BENCHMARKS[name])


__all__ = ["BENCHMARKS", "load_benchmark"]
