"""``python -m dlkern <command>`` (or the ``dlkern`` console script): the command-line
entry point. Its help text is DESCRIPTION below (plain text: no reST markup)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional

from ._cli import FAILURE, USAGE, DefaultsHelpFormatter, RunError, UsageError

DESCRIPTION = """\
dlkern: deep-learning kernels in C++ under a PyTorch-shaped autograd layer. Build
information, training (MLP, LeNet-5, GPT, LSTM, GRU), text generation, plots of a
training run, benchmarks.
"""
EPILOG = """\
'<command> --help' lists a command's options with their defaults.
exit status: 0 done; 1 the command failed while running (a missing or damaged file or
checkpoint, a missing data set, a diverged loss); 2 the command line is wrong (a bad
value, an option that does not apply or does not combine); 130 interrupted.
"""


def flatten(info: Dict, prefix: str = "") -> List[tuple]:
    """Nested build_info() as (dotted.key, readable value) pairs."""
    pairs = []
    for key, value in info.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs += flatten(value, name + ".")
        elif isinstance(value, (list, tuple)):
            pairs.append((name, ", ".join(str(v) for v in value) or "-"))
        else:
            pairs.append((name, str(value)))
    return pairs


def run_info(args) -> int:
    import dlkern

    info = dlkern.build_info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=False))
        return 0
    print(f"dlkern {info.get('version', dlkern.__version__)}")
    pairs = [pair for pair in flatten(info) if pair[0] != "version"]
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        print(f"  {key.ljust(width)}  {value}")
    return 0


def add_info_command(commands) -> None:
    parser = commands.add_parser("info", help="print build information (version, ISA paths, OpenMP, CUDA)",
                                 description="Print dlkern.build_info() as text, or as JSON with --json.",
                                 formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run_info)


def add_bench_command(commands) -> None:
    from .bench import CASES_ENV, benchmarks, load_benchmark

    found = benchmarks()
    parser = commands.add_parser("bench", help="benchmark an op against NumPy/PyTorch",
                                 description="Validate, then time dlkern beside its peers in one process.")
    if not found:
        # A wheel ships the tables as dlkern/bench/cases (see dlkern.bench); an install
        # without them (a package copied by hand) can still point at a checkout.
        def missing(args) -> int:
            print(f"error: bench: no benchmark tables found: this dlkern has no dlkern/bench/cases "
                  f"and no checkout's bench/cases is in reach (set {CASES_ENV} to one)", file=sys.stderr)
            return 1
        parser.set_defaults(handler=missing)
        return
    what = parser.add_subparsers(dest="what", metavar="what", required=True, help="one of: " + ", ".join(found))
    for name in found:
        bench = load_benchmark(name)
        sub = what.add_parser(name, help=bench.DESCRIPTION, description=getattr(bench, "doc", bench.__doc__),
                              formatter_class=DefaultsHelpFormatter)
        bench.add_arguments(sub)
        sub.set_defaults(handler=bench.run)


def add_train_command(commands) -> None:
    from .train.cli import add_train_command as add

    add(commands)


def add_generate_command(commands) -> None:
    from .train.lm import add_generate_command as add

    add(commands)


def add_plot_command(commands) -> None:
    from .train.plot import add_plot_command as add

    add(commands)


def _version() -> str:
    """The version of the dlkern that runs (its compiled module's), or, when that does
    not import (a broken build), the installed package's metadata."""
    try:
        import dlkern
        return dlkern.__version__
    except ImportError:
        from importlib.metadata import version
        return version("dlkern")


class _VersionAction(argparse.Action):
    """--version: print `dlkern <version>` and exit 0 (the version looked up only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"dlkern {_version()}")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    # `dlkern ...` from the console script, `python -m dlkern ...` otherwise
    prog = "dlkern" if os.path.basename(sys.argv[0]) == "dlkern" else "python -m dlkern"
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    add_info_command(commands)
    add_train_command(commands)
    add_generate_command(commands)
    add_plot_command(commands)
    add_bench_command(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one command; returns its exit status (0 done, 1 failed while running, 2 a wrong
    command line; argparse's own usage errors exit 2 through SystemExit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # (what train records in its history)
    from .bench.common import BenchValidationError
    from .train.checkpoint import CheckpointError

    def fail(status: int, exc) -> int:
        print(f"error: {args.command}: {exc}", file=sys.stderr)
        return status

    try:
        return args.handler(args)
    except UsageError as exc:
        return fail(USAGE, exc)
    except (RunError, BenchValidationError, CheckpointError) as exc:
        # a wrong benchmark result; a checkpoint that is missing, damaged or of another
        # model (2 is kept for what the command line alone shows to be wrong)
        return fail(FAILURE, exc)
    except OSError as exc:
        # missing data sets and text files, unwritable outputs: say what, no traceback
        return fail(FAILURE, f"{exc.filename}: {exc.strerror}" if exc.strerror and exc.filename else exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
