"""Fixtures that run a test on every ISA path this CPU supports and on 1 and 2 threads."""

import os
import sys
import tempfile

import numpy as np
import pytest

import dlkern

# tests/helpers.py is imported as `helpers` whatever pytest's import mode.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import assert_close  # noqa: E402,F401  (re-exported for tests)


@pytest.fixture(params=dlkern.supported_isas())
def isa(request):
    """Each supported SIMD path in turn; the previous one is restored afterwards."""
    prev = dlkern.get_isa()
    dlkern.set_isa(request.param)
    yield request.param
    dlkern.set_isa(prev)


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}thr")
def threads(request):
    """1 and 2 kernel threads; the previous count is restored afterwards. At 2 threads
    the per-thread work thresholds are off, so small test inputs take the parallel paths."""
    prev, prev_scale = dlkern.get_num_threads(), dlkern._C.get_min_work_scale()
    dlkern.set_num_threads(request.param)
    dlkern._C.set_min_work_scale(0.0 if request.param > 1 else prev_scale)
    yield request.param
    dlkern.set_num_threads(prev)
    dlkern._C.set_min_work_scale(prev_scale)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


# --- PyTorch parity must not skip where PyTorch is installed on purpose -------------
# CI installs the CPU PyTorch wheel and reruns the parity tests with
# DLKERN_REQUIRE_TORCH=1: any test (or module) skipped for lack of torch then fails the
# session, so a parity check can never go quiet by skipping on every run.
_torch_skips = []


def _skipped_for_torch(report):
    return report.skipped and "torch" in str(report.longrepr).lower()


def pytest_collectreport(report):
    if _skipped_for_torch(report):
        _torch_skips.append(report.nodeid)


def pytest_runtest_logreport(report):
    if _skipped_for_torch(report):
        _torch_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("DLKERN_REQUIRE_TORCH") == "1" and _torch_skips:
        print(f"\nDLKERN_REQUIRE_TORCH=1 but {len(_torch_skips)} tests skipped for torch:")
        for nodeid in _torch_skips[:20]:
            print("  ", nodeid)
        session.exitstatus = 1


# ----------------------------------------------------------------------------- fuzz suite
# The fuzz tests (test_fuzz_ops.py) draw a fresh seed per run: show it in the header
# and under every failing fuzz test, so any failure can be replayed. Hypothesis keeps
# its caches outside the checkout (its example database is off in the fuzz profiles).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "dlkern-hypothesis"))


def pytest_report_header(config):
    import fuzz_seed

    return fuzz_seed.describe()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "fuzz" in item.nodeid:
        import fuzz_seed

        report.sections.append(("dlkern fuzz seed", fuzz_seed.describe()))
