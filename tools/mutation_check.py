#!/usr/bin/env python3
"""Mutation check: does the test suite notice a deliberate breakage?

Each mutant below replaces one exact string in the Python package (so no rebuild is
needed) inside a scratch copy of this checkout, then runs the test files that should
catch it. A mutant is "killed" when at least one of those tests fails; one that leaves
them green "survives", and the script exits 1. The unmutated copy runs first and must
pass, or nothing a mutant shows would mean anything (exit 2). A target string that is
missing, or found more times than the table says, stops the script before any test runs
(exit 3): code that moved must have its row updated, never silently skipped.

    PYTHONPATH=python python tools/mutation_check.py            # every mutant
    PYTHONPATH=python python tools/mutation_check.py --list     # the table
    PYTHONPATH=python python tools/mutation_check.py sgd_step_sign   # some, by name
    python tools/mutation_check.py --check      # only: is every target still there?

The compiled extension is the one `import dlkern._C` finds (with PYTHONPATH=python, the
.so in python/dlkern/); it is copied beside the scratch package. The scratch copy holds
the working tree as it is (uncommitted edits included), minus git-ignored files.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

# --------------------------------------------------------------------------------------
# The mutants: name -> (file under python/dlkern, exact old text, new text, test files).
# When a refactor moves one of these strings, update its row here (the script says which).
MUTANTS = {
    "zeros_like_is_ones_like": (
        "creation.py",
        "return _from_host(np.zeros(t.shape, as_dtype(dtype) or t.dtype), t.device, requires_grad)",
        "return _from_host(np.ones(t.shape, as_dtype(dtype) or t.dtype), t.device, requires_grad)",
        ["tests/test_tensor.py"]),
    "rand_like_is_randn_like": (
        "random.py",
        "return rand(*t.shape, dtype=dtype or t.dtype",
        "return randn(*t.shape, dtype=dtype or t.dtype",
        ["tests/test_tensor.py"]),
    "decoder_drops_masks": (
        "nn/transformer.py",
        """x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)""",
        "x = layer(x, memory)",
        ["tests/test_transformer.py", "tests/test_model_reference.py"]),
    "gpt_block_not_causal": (
        "models/gpt.py",
        "is_causal=cache is None",
        "is_causal=False",
        ["tests/test_gpt.py", "tests/test_model_reference.py"]),
    "attention_ignores_key_padding": (
        "nn/attention.py",
        "mask = merge_masks(attn_mask, key_padding_mask, n, self.num_heads, tgt_len, src_len, query.dtype,",
        "mask = merge_masks(attn_mask, None, n, self.num_heads, tgt_len, src_len, query.dtype,",
        ["tests/test_transformer.py", "tests/test_model_reference.py"]),
    "cpu_device_loses_amin": (
        "devices/cpu.py",
        "    amin = staticmethod(np.amin)\n",
        "",
        ["tests/test_tensor.py", "tests/test_public_api.py"]),
    "ops_loses_cross_entropy_backward": (
        "ops/loss.py",
        '__all__ = ["cross_entropy", "cross_entropy_forward", "cross_entropy_backward"]',
        '__all__ = ["cross_entropy", "cross_entropy_forward"]',
        ["tests/test_losses.py", "tests/test_cross_entropy.py"]),
    "softmax_is_log_softmax": (
        "ops/softmax.py",
        'return _C.softmax(_contiguous(x), resolve_dim(dim, axis, "softmax"), out)',
        'return _C.log_softmax(_contiguous(x), resolve_dim(dim, axis, "softmax"), out)',
        ["tests/test_softmax.py"]),
    "sgd_step_sign": (
        "optim/sgd.py",
        "xp.multiply(g, -lr, out=w1)",
        "xp.multiply(g, lr, out=w1)",
        ["tests/test_optim.py", "tests/test_optim_kernels.py"]),  # the CPU composes only without the kernel
    "adam_bias_correction": (
        "optim/adam.py",
        "-lr / bias_correction1",
        "-lr * bias_correction1",
        ["tests/test_optim.py", "tests/test_optim_kernels.py"]),
    "steplr_period": (
        "optim/lr_scheduler.py",
        "self.last_epoch % self.step_size != 0",
        "self.last_epoch % (self.step_size + 1) != 0",
        ["tests/test_lr_scheduler.py"]),
    "enable_grad_disables": (
        "autograd/grad_mode.py",
        "class enable_grad(_GradModeContext):\n    mode = True",
        "class enable_grad(_GradModeContext):\n    mode = False",
        ["tests/test_autograd.py", "tests/test_public_api.py"]),
    "dropout_no_rescale": (
        "nn/functional.py",
        "input.dtype.type(1.0 / (1.0 - p))",
        "input.dtype.type(1.0)",
        ["tests/test_nn.py", "tests/test_nn_training.py"]),
    "named_modules_repeats_shared": (
        "nn/module.py",
        "if module is None or id(module) in memo:",
        "if module is None:",
        ["tests/test_public_api.py", "tests/test_nn.py"]),
    # --- issue 13: module hooks and dlkern.utils.summary
    "backward_hook_leaf_grad_shared": (
        "nn/hooks.py",
        "out.append(g.copy() if g is not None and p is not None and p.grad_fn is None else g)",
        "out.append(g)",
        ["tests/test_module_hooks.py"]),
    "summary_conv_ignores_groups": (
        "nn/layers.py",
        "math.prod(self.kernel_size) * (self.in_channels // self.groups)",
        "math.prod(self.kernel_size) * self.in_channels",
        ["tests/test_summary.py"]),
    # --- end issue 13
    # --- issue 13: interop (DLPack, dlkern.save/load, torch.save files)
    "save_stores_tied_twice": (
        "serialization.py",
        "key = self._by_memory.get(memory)",
        "key = None",
        ["tests/test_interop.py"]),
    "torch_zip_view_past_storage": (
        "_torch_zip.py",
        "if last >= storage.size:",
        "if last > storage.size:",
        ["tests/test_interop_torch_files.py"]),
    "torch_zip_bfloat16_shift": (
        "_torch_zip.py",
        "array = (array.astype(np.uint32) << 16).view(np.float32)",
        "array = (array.astype(np.uint32) << 8).view(np.float32)",
        ["tests/test_interop_torch_files.py"]),
    "dlpack_exports_requires_grad": (
        "tensor.py",
        "        if self.requires_grad:\n            raise BufferError(",
        "        if False:\n            raise BufferError(",
        ["tests/test_interop.py"]),
    # --- end interop
}
# How many times each old text must occur (default 1).
COUNTS = {}


def _repo_root():
    return Path(__file__).resolve().parent.parent


def _extension_files():
    """The compiled modules next to the _C this interpreter imports."""
    import dlkern._C as c

    here = Path(c.__file__).parent
    return sorted(p for p in here.iterdir() if p.name.startswith("_C") and p.suffix in (".so", ".pyd"))


def _scratch_copy(root, dest):
    """The working tree (tracked and untracked, not ignored files) copied into dest."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for so in _extension_files():
        shutil.copy2(so, dest / "python" / "dlkern" / so.name)


def target_problems(root, names=None):
    """What is out of date in the table for the checkout at root: a file gone, a target
    string missing or found more often than COUNTS says, a test file gone."""
    problems = []
    for name in names or MUTANTS:
        rel, old, _, tests = MUTANTS[name]
        path = root / "python" / "dlkern" / rel
        if not path.is_file():
            problems.append(f"{name}: python/dlkern/{rel} does not exist")
            continue
        found, want = path.read_text().count(old), COUNTS.get(name, 1)
        if found != want:
            problems.append(f"{name}: python/dlkern/{rel} holds the target {found} times, expected {want}:\n"
                            f"    {old!r}")
        problems += [f"{name}: test file {t} does not exist" for t in tests if not (root / t).is_file()]
    return problems


def _check_targets(root, names):
    """A loud stop when any target is out of date."""
    problems = target_problems(root, names)
    if problems:
        print("mutation targets out of date (update MUTANTS in tools/mutation_check.py):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        sys.exit(3)


def _run_tests(scratch, tests, env, report):
    """pytest on the test files in the scratch copy -> (failed + errors, total, seconds,
    process); failed is None when pytest could not even collect (an import error)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--junitxml", str(report), *tests]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if not report.is_file():
        # No report: pytest stopped before running tests (the package or a conftest
        # failed to import); every test counts as failed.
        return None, 0, seconds, proc
    suites = ET.parse(report).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    total = sum(int(s.get("tests", 0)) for s in suites)
    report.unlink()
    return failed, total, seconds, proc


def _failed_text(failed, total):
    return "import error" if failed is None else f"{failed} / {total}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--list", action="store_true", help="print the mutants and exit")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is printed)")
    ap.add_argument("--check", action="store_true", help="only check that every target is found, run nothing")
    args = ap.parse_args()
    if args.list:
        for name, (rel, _, _, tests) in MUTANTS.items():
            print(f"{name:32} python/dlkern/{rel:24} {' '.join(tests)}")
        return 0
    unknown = [n for n in args.names if n not in MUTANTS]
    if unknown:
        sys.exit(f"unknown mutants: {', '.join(unknown)} (see --list)")
    names = args.names or list(MUTANTS)
    if args.check:
        _check_targets(_repo_root(), names)
        print(f"all {len(names)} mutation targets found")
        return 0

    root = _repo_root()
    scratch = Path(tempfile.mkdtemp(prefix="dlkern-mutants-"))
    try:
        _scratch_copy(root, scratch)
        pkg = scratch / "python" / "dlkern"
        _check_targets(scratch, names)
        env = dict(os.environ, PYTHONPATH=str(scratch / "python"), PYTHONDONTWRITEBYTECODE="1")
        found = subprocess.run([sys.executable, "-c", "import dlkern, dlkern._C; print(dlkern.__file__)"],
                               cwd=scratch, env=env, capture_output=True, text=True)
        if not found.stdout.strip().startswith(str(pkg)):
            sys.exit(f"the scratch copy's dlkern is not the one imported ({found.stdout.strip() or found.stderr}); "
                     "an installed dlkern (an editable install's import hook) shadows PYTHONPATH: run this "
                     "where dlkern is not installed")
        report = scratch / "report.xml"

        all_tests = sorted({t for n in names for t in MUTANTS[n][3]})
        failed, total, secs, proc = _run_tests(scratch, all_tests, env, report)
        print(f"baseline (no mutation): {total} tests in {len(all_tests)} files, {failed} failed, {secs:.0f} s")
        if failed is None or failed or proc.returncode:
            print(proc.stdout[-4000:])
            print("the unmutated code must pass these tests first", file=sys.stderr)
            return 2

        rows = []
        for name in names:
            rel, old, new, tests = MUTANTS[name]
            path = pkg / rel
            original = path.read_text()
            path.write_text(original.replace(old, new))
            try:
                failed, total, secs, _ = _run_tests(scratch, tests, env, report)
            finally:
                path.write_text(original)
            rows.append((name, rel, failed, total, secs))
            print(f"  {name}: {_failed_text(failed, total)} ({secs:.0f} s)", flush=True)

        print()
        print(f"| {'mutant':32} | {'file (python/dlkern/)':22} | {'tests failed':>14} | verdict  |")
        print(f"|{'-' * 34}|{'-' * 24}|{'-' * 16}|----------|")
        for name, rel, failed, total, _ in rows:
            verdict = "SURVIVED" if failed == 0 else "killed"
            print(f"| {name:32} | {rel:22} | {_failed_text(failed, total):>14} | {verdict:8} |")
        survivors = [r[0] for r in rows if r[2] == 0]
        if survivors:
            print(f"\n{len(survivors)} mutant(s) survived: {', '.join(survivors)}: no test noticed the breakage")
            return 1
        print(f"\nall {len(rows)} mutants killed")
        return 0
    finally:
        if args.keep:
            print(f"scratch copy kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
