#!/usr/bin/env python3
"""Crash-isolating runner for the fuzz suite (tests/test_fuzz_ops.py), for CI.

Splits the suite's tests into batches and runs each batch in its own pytest
subprocess with its own seed (seed + batch index), so a kernel that aborts or
segfaults takes down one batch, not the run. After a crash the runner names the test
that was running, the signal or exit code and the command that reproduces it, then
carries on with the rest of that batch in a fresh subprocess. Exits non-zero on any
failure or crash.

    python tests/fuzz_isolated.py                      # random seed, 8 batches, dev profile
    python tests/fuzz_isolated.py --seed 1234 --batches 4 --profile ci
    python tests/fuzz_isolated.py -k conv              # only tests matching a pytest -k expression

The environment is passed through unchanged (PYTHONPATH, DLKERN_ISA, LD_PRELOAD /
ASAN_OPTIONS of an AddressSanitizer build, ...); a sanitizer report in a batch's
output counts as a crash even when the exit code does not say so.
"""

import argparse
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUITE = os.path.join(HERE, "test_fuzz_ops.py")
ROOT = os.path.dirname(HERE)
OUTCOME = re.compile(r"\s(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
SANITIZER = re.compile(r"ERROR: (Address|Leak|UndefinedBehavior|Memory|Thread)Sanitizer|runtime error:")


def collect(k_expr):
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", SUITE]
    if k_expr:
        cmd += ["-k", k_expr]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    ids = [line.strip() for line in proc.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if proc.returncode not in (0, 5) or (not ids and proc.returncode != 5):
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"fuzz_isolated: collection failed (exit {proc.returncode})")
    return ids


def describe_exit(code):
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name} ({-code})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def reproduce(seed, profile, ids):
    shown = " ".join(shlex.quote(i) for i in ids[:3]) + (" ..." if len(ids) > 3 else "")
    return f"DLKERN_FUZZ_SEED={seed} DLKERN_FUZZ_PROFILE={profile} python -m pytest {shown}"


def run_chunk(ids, seed, profile, timeout, log_dir, tag, extra):
    """One pytest subprocess over ids -> (exit code or None on timeout, output, crashed test or None,
    ids that never ran)."""
    env = os.environ.copy()
    env["DLKERN_FUZZ_SEED"] = str(seed)
    env["DLKERN_FUZZ_PROFILE"] = profile
    env.setdefault("PYTHONFAULTHANDLER", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    trace_path = os.path.join(log_dir, f"{tag}.trace")
    env["DLKERN_FUZZ_TRACE"] = trace_path  # each call is appended before it runs
    # -s: a sanitizer report or abort goes straight to the log; with pytest capturing
    # it would die with the captured output of the test that crashed.
    cmd = [sys.executable, "-m", "pytest", "-v", "-s", "-p", "no:cacheprovider", "--tb=short", "-rfE", *extra, *ids]
    log_path = os.path.join(log_dir, f"{tag}.log")
    with open(log_path, "w+") as log:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
        log.seek(0)
        output = log.read()
    started, finished = [], set()
    for line in output.splitlines():
        for node in ids:
            if line.startswith(node + " ") or line == node:
                started.append(node)
                if OUTCOME.search(line[len(node):]):
                    finished.add(node)
    sanitizer = SANITIZER.search(output)
    crashed = code is None or code < 0 or code > 5 or sanitizer is not None
    culprit = None
    if crashed:
        pending = [n for n in started if n not in finished]
        culprit = pending[-1] if pending else (started[-1] if started else None)
    never_ran = [n for n in ids if n not in set(started)]
    last_call = None
    if crashed and os.path.exists(trace_path):
        with open(trace_path) as f:
            lines = f.read().splitlines()
        last_call = lines[-1] if lines else None
    late = crashed and culprit is not None and culprit in finished
    return code, output, crashed, (None if late else culprit), never_ran, log_path, last_call


def report_crash(problems, tag, seed, profile, code, output, culprit, log_path, last_call, took):
    what = "timed out" if code is None else describe_exit(code)
    if SANITIZER.search(output):
        what += " with a sanitizer report"
    print(f"[{tag}] seed={seed} CRASHED ({what}) in {culprit or 'an unknown test'} ({took:.1f}s)", flush=True)
    if last_call:
        print(f"    last call: {last_call}")
    # The kernel's own words (glibc, sanitizer, faulthandler), without pytest's frames.
    lines = [ln for ln in output.splitlines() if ln.strip() and "site-packages" not in ln and "<frozen" not in ln]
    print("    " + "\n    ".join(lines[-12:]))
    print(f"    reproduce: {reproduce(seed, profile, [culprit] if culprit else [])}")
    problems.append(("crashed", tag, seed, [culprit, what, last_call], log_path))


def hunt(tests, seed, tag, args, log_dir, problems):
    """Run tests in pytest subprocesses until each has run; a crash inside a test is
    reported and the rest go on in a new subprocess; a crash after the tests (heap
    damage noticed at exit, say) is bisected down to the test that causes it."""
    todo, part = list(tests), 0
    while todo:
        sub = tag + (f"-part{part}" if part else "")
        part += 1
        t0 = time.time()
        code, output, crashed, culprit, never_ran, log_path, last_call = run_chunk(
            todo, seed, args.profile, args.timeout, log_dir, sub, args.pytest_args)
        took = time.time() - t0
        if not crashed:
            failed = [line for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]
            status = "ok" if code in (0, 5) else f"{len(failed)} failed"
            print(f"[{sub}] seed={seed} {len(todo)} tests: {status} ({took:.1f}s)", flush=True)
            if code not in (0, 5):
                for line in failed:
                    print(f"    {line}")
                print(f"    reproduce: {reproduce(seed, args.profile, [f.split()[1] for f in failed] or todo)}")
                problems.append(("failed", sub, seed, failed, log_path))
            return
        if culprit is None and len(todo) == 1:
            culprit = todo[0]
        if culprit is None:
            what = "timed out" if code is None else describe_exit(code)
            print(f"[{sub}] seed={seed} crashed ({what}) after its {len(todo)} tests ran; bisecting ({took:.1f}s)",
                  flush=True)
            half = len(todo) // 2
            hunt(todo[:half], seed, sub + "a", args, log_dir, problems)
            hunt(todo[half:], seed, sub + "b", args, log_dir, problems)
            return
        if culprit != todo[0] and len(todo) > 1:
            # Heap damage often surfaces in a later test: does this one crash on its own?
            alone = run_chunk([culprit], seed, args.profile, args.timeout, log_dir, sub + "-alone", args.pytest_args)
            if not alone[2]:
                what = "timed out" if code is None else describe_exit(code)
                print(f"[{sub}] seed={seed} crashed ({what}) in {culprit}, which passes or fails cleanly on its "
                      f"own: bisecting the tests that ran before it ({took:.1f}s)", flush=True)
                if alone[0] not in (0, 5):
                    print(f"[{sub}-alone] seed={seed} {culprit}: failed")
                    problems.append(("failed", sub + "-alone", seed, [culprit], alone[5]))
                before = todo[:todo.index(culprit)]
                hunt(before, seed, sub + "a", args, log_dir, problems)
                todo = [t for t in todo if t in never_ran and t != culprit]
                continue
        report_crash(problems, sub, seed, args.profile, code, output, culprit, log_path, last_call, took)
        # Carry on with the tests that had not run yet.
        rest = [t for t in todo if t in never_ran and t != culprit]
        todo = rest if len(rest) < len(todo) else todo[1:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=8, help="number of subprocess batches (default 8)")
    ap.add_argument("--seed", type=int, default=None, help="base seed; batch i uses seed+i (default: random)")
    ap.add_argument("--profile", default=os.environ.get("DLKERN_FUZZ_PROFILE", "dev"),
                    help="hypothesis profile: smoke, dev (default) or ci")
    ap.add_argument("-k", dest="k_expr", default=None, help="pytest -k expression selecting tests")
    ap.add_argument("--timeout", type=float, default=240,
                    help="seconds per subprocess before it counts as hung (default 240)")
    ap.add_argument("--log-dir", default=None, help="keep each subprocess's output here (default: a temp dir)")
    ap.add_argument("pytest_args", nargs="*", help="extra arguments for each pytest subprocess")
    args = ap.parse_args(argv)

    base = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="dlkern-fuzz-")
    os.makedirs(log_dir, exist_ok=True)
    ids = collect(args.k_expr)
    if not ids:
        print("fuzz_isolated: no tests selected")
        return 0
    n = max(1, min(args.batches, len(ids)))
    batches = [ids[i::n] for i in range(n)]
    print(f"fuzz_isolated: {len(ids)} tests in {n} batches, base seed {base}, profile {args.profile}, "
          f"logs in {log_dir}", flush=True)

    problems = []
    t_start = time.time()
    for b, batch in enumerate(batches):
        hunt(batch, (base + b) % 2 ** 32, f"batch{b:02d}", args, log_dir, problems)

    print(f"fuzz_isolated: {len(ids)} tests, {len(problems)} problem(s), {time.time() - t_start:.0f}s, "
          f"base seed {base}")
    for kind, tag, seed, detail, log_path in problems:
        print(f"  {kind}: {tag} seed={seed} {detail if kind == 'crashed' else len(detail)} (log: {log_path})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
