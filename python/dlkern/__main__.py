"""``python -m dlkern <command>``: the command-line entry point.

Commands:
  info            what was built and what runs here (dlkern.build_info())
  train           train a model on a real data set (default: an MLP on the 8x8 digits;
                  --model gpt: a character-level GPT on a text)
  generate        sample text from a GPT checkpoint with the KV cache
  bench <what>    benchmarks against NumPy/PyTorch; ``bench --help`` lists them
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, List, Optional


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
                                 description="Print dlkern.build_info() as text, or as JSON with --json.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run_info)


def add_bench_command(commands) -> None:
    from .bench import CASES_ENV, benchmarks, load_benchmark

    found = benchmarks()
    parser = commands.add_parser("bench", help="benchmark an op against NumPy/PyTorch",
                                 description="Validate, then time dlkern beside its peers in one process.")
    if not found:
        # The benchmark tables live in a source checkout (see dlkern.bench), not in the wheel.
        def missing(args) -> int:
            print(f"error: bench: no benchmarks found; they live in a dlkern checkout's bench/cases "
                  f"(run from the checkout, or set {CASES_ENV})", file=sys.stderr)
            return 2
        parser.set_defaults(handler=missing)
        return
    what = parser.add_subparsers(dest="what", metavar="what", required=True, help="one of: " + ", ".join(found))
    for name in found:
        bench = load_benchmark(name)
        sub = what.add_parser(name, help=bench.DESCRIPTION, description=getattr(bench, "doc", bench.__doc__),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        bench.add_arguments(sub)
        sub.set_defaults(handler=bench.run)


def add_train_command(commands) -> None:
    from .train.cli import add_train_command as add

    add(commands)


def add_generate_command(commands) -> None:
    from .train.lm import add_generate_command as add

    add(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dlkern", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    add_info_command(commands)
    add_train_command(commands)
    add_generate_command(commands)
    add_bench_command(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .bench.common import BenchValidationError
    from .train.checkpoint import CheckpointError

    try:
        return args.handler(args)
    except BenchValidationError as exc:
        # A wrong result must stop the run loudly, but as a message, not a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CheckpointError as exc:
        # A missing, damaged or mismatched checkpoint is a bad argument: one line, exit 2
        # as argparse's errors (the same for train and generate).
        print(f"error: {args.command}: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        # Missing data sets: say what, not where.
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
