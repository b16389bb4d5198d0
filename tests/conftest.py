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
    """1 and 2 kernel threads; the previous count is restored afterwards."""
    prev = dlkern.get_num_threads()
    dlkern.set_num_threads(request.param)
    yield request.param
    dlkern.set_num_threads(prev)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


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
