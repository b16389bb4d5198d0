"""Fixtures that run a test on every ISA path this CPU supports and on 1 and 2 threads."""

import os
import sys
import tempfile
import zlib

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


@pytest.fixture
def corpus(tmp_path, request):
    """A text file holding the test module's CORPUS_TEXT (what its CLI runs train on)."""
    path = tmp_path / "corpus.txt"
    path.write_text(request.module.CORPUS_TEXT)
    return path


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


# --- Each test starts from the same random state --------------------------------------
# dlkern's generator (randn/rand, init, dropout) and NumPy's legacy global one are seeded
# from the test's id before every test, so a test's random draws do not depend on which
# tests ran before it (or on -k / -x / the file order) and a failure replays alone.
@pytest.fixture(autouse=True)
def _seed_per_test(request):
    seed = zlib.crc32(request.node.nodeid.encode())
    dlkern.manual_seed(seed)
    np.random.seed(seed)
    yield


# --- Tests that must not skip where their dependency is installed on purpose ----------
# CI installs the CPU PyTorch wheel and reruns the parity tests with
# DLKERN_REQUIRE_TORCH=1: any test (or module) skipped for lack of torch then fails the
# session, so a parity check can never go quiet by skipping on every run.
# bench/gpu_check.sh sets DLKERN_REQUIRE_CUDA=1 on a machine with a GPU: a test skipped
# because the CUDA module is missing or sees no device then fails the session (a build
# or driver problem must not pass as "skipped"). The phrases are those of the skip
# reasons in tests/cuda_support.py and test_cuda.py; the tests that skip *because* a GPU
# is present ("...of a machine without a GPU") do not match them.
_CUDA_SKIP_PHRASES = ("_c_cuda is not built", "_c_cuda is missing", "no usable cuda device",
                      "needs a cuda device")
_REQUIRED = {
    "DLKERN_REQUIRE_TORCH": ("torch", lambda text: "torch" in text),
    "DLKERN_REQUIRE_CUDA": ("CUDA", lambda text: any(p in text for p in _CUDA_SKIP_PHRASES)),
}
_required_skips = {env: [] for env in _REQUIRED}


def _note_skip(report):
    if not report.skipped:
        return
    text = str(report.longrepr).lower()
    for env, (_, matches) in _REQUIRED.items():
        if matches(text):
            _required_skips[env].append(report.nodeid)


def pytest_collectreport(report):
    _note_skip(report)


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_sessionfinish(session, exitstatus):
    for env, (what, _) in _REQUIRED.items():
        skips = _required_skips[env]
        if os.environ.get(env) == "1" and skips:
            print(f"\n{env}=1 but {len(skips)} tests skipped for {what}:")
            for nodeid in skips[:20]:
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
