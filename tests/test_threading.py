"""Threading robustness: small ops stay on one thread, loops handed out dynamically give
the same results at 1 and 2 threads, and OpenMP spins only briefly unless the user chose.
No wall-clock assertions: the busy-core timings are bench/busy_core.py's job."""

import contextlib
import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import dlkern
from dlkern import ops
from helpers import num_threads

_C = dlkern._C


@contextlib.contextmanager
def min_work_scale(scale):
    prev = _C.get_min_work_scale()
    _C.set_min_work_scale(scale)
    try:
        yield
    finally:
        _C.set_min_work_scale(prev)


@pytest.fixture(params=[0.0, 1.0], ids=["split-everything", "default-thresholds"])
def work_scale(request):
    """0: every input big enough to split is split at 2 threads (exercises the parallel
    paths on small shapes); 1: the shipped thresholds."""
    with min_work_scale(request.param):
        yield request.param


def at_threads(fn, counts=(1, 2)):
    out = []
    for n in counts:
        with num_threads(n):
            res = fn()
        out.append(res if isinstance(res, tuple) else (res,))
    return out


def assert_same_at_1_and_2_threads(fn, exact=True, rtol=1e-6):
    one, two = at_threads(fn)
    for a, b in zip(one, two):
        if a is None:
            assert b is None
        elif exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def randn(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------- the work threshold

def test_small_ops_do_not_fork():
    rng = np.random.default_rng(0)
    a = randn(rng, 32, 32)
    x4 = randn(rng, 2, 3, 8, 8)
    q = randn(rng, 1, 2, 8, 16)
    small = [
        lambda: ops.matmul(a, a),
        lambda: ops.matmul(randn(rng, 4, 8, 8), randn(rng, 4, 8, 8)),
        lambda: ops.softmax(a),
        lambda: ops.layer_norm(a, (32,)),
        lambda: ops.gelu_tanh(a),
        lambda: ops.cross_entropy(a, np.arange(32) % 32),
        lambda: ops.conv2d(x4, randn(rng, 4, 3, 3, 3)),
        lambda: ops.max_pool2d(x4, 2),
        lambda: ops.attention_forward(q, q, q),
    ]
    with num_threads(2):
        before = _C.parallel_decisions()
        for op in small:
            op()
        assert _C.parallel_decisions() == before, "a small op chose 2 threads"
        # ~500 MFLOP: worth a second thread even when other processes hold the CPUs.
        ops.matmul(randn(rng, 640, 640), randn(rng, 640, 640))
        assert _C.parallel_decisions() > before


def test_one_thread_never_forks():
    rng = np.random.default_rng(1)
    with num_threads(1):
        before = _C.parallel_decisions()
        ops.matmul(randn(rng, 256, 256), randn(rng, 256, 256))
        ops.gelu_tanh(randn(rng, 1 << 20))
        assert _C.parallel_decisions() == before


def test_contention_info():
    info = _C.contention_info()
    assert set(info) == {"adaptive", "contended", "others_busy_cpus"}
    assert info["adaptive"] is True and isinstance(info["contended"], bool)
    proc = run_python("import dlkern; print(dlkern.threading_info()['adaptive'])", DLKERN_ADAPTIVE_THREADS="0")
    assert proc.stdout.strip() == "False"


def test_min_work_scale_rejects_negative():
    with pytest.raises(ValueError, match="set_min_work_scale"):
        _C.set_min_work_scale(-1.0)


def test_threading_info():
    info = dlkern.threading_info()
    assert info["num_threads"] == dlkern.get_num_threads()
    assert isinstance(info["parallel_decisions"], int)
    assert info["omp_wait_policy"] == dlkern.build_info()["omp_wait_policy"]
    assert info["wait_policy_source"]


# ---------------------------------------------------------------------------- same results at 1 and 2 threads
# Each loop below is handed out in dynamic chunks; every row / plane / channel is still
# computed by one thread in one order, so 1 and 2 threads agree exactly.

def softmax_ref(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


@pytest.mark.parametrize("shape,dim", [((300, 129), -1), ((7, 40, 37), 1), ((600, 1024), -1)],
                         ids=["rows", "strided", "large"])
def test_softmax(work_scale, shape, dim):
    x = randn(np.random.default_rng(2), *shape)
    assert_same_at_1_and_2_threads(lambda: ops.softmax(x, dim))
    assert_same_at_1_and_2_threads(lambda: ops.log_softmax(x, dim))
    y = ops.softmax(x, dim)
    g = randn(np.random.default_rng(3), *shape)
    assert_same_at_1_and_2_threads(lambda: ops.softmax_backward(g, y, dim))
    with num_threads(2):
        np.testing.assert_allclose(ops.softmax(x, dim), softmax_ref(x, dim), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", [(300, 101), (9, 13, 5), (2000, 1000)], ids=["rows", "strided", "large"])
def test_cross_entropy(work_scale, shape):
    rng = np.random.default_rng(4)
    x = randn(rng, *shape)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:]).astype(np.int64)
    w = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)

    def run():
        loss, lse = ops.cross_entropy_forward(x, t, w, reduction="none", label_smoothing=0.1)
        dx = ops.cross_entropy_backward(np.ones_like(loss), x, t, lse, w, reduction="none", label_smoothing=0.1)
        return loss, lse, dx
    assert_same_at_1_and_2_threads(run)
    with num_threads(2):
        lse = ops.cross_entropy_forward(x, t, reduction="none")[1]
    x64 = x.astype(np.float64)
    ref = np.log(np.exp(x64 - x64.max(1, keepdims=True)).sum(1)) + x64.max(1)
    np.testing.assert_allclose(lse, ref, rtol=1e-5)


@pytest.mark.parametrize("rows,cols", [(300, 67), (1024, 1024)], ids=["small", "large"])
def test_layer_and_rms_norm_forward(work_scale, rows, cols):
    rng = np.random.default_rng(5)
    x, w, b = randn(rng, rows, cols), randn(rng, cols), randn(rng, cols)
    assert_same_at_1_and_2_threads(lambda: ops.layer_norm_forward(x, (cols,), w, b))
    assert_same_at_1_and_2_threads(lambda: ops.rms_norm_forward(x, (cols,), w))
    with num_threads(2):
        y = ops.layer_norm(x, (cols,))
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_layer_norm_backward(work_scale):
    # Weight/bias gradients are per-thread partial sums: equal to float tolerance.
    rng = np.random.default_rng(6)
    x, w, g = randn(rng, 257, 96), randn(rng, 96), randn(rng, 257, 96)
    _, mean, rstd = ops.layer_norm_forward(x, (96,), w)
    assert_same_at_1_and_2_threads(lambda: ops.layer_norm_backward(g, x, (96,), w, mean, rstd),
                                   exact=False, rtol=1e-5)


def test_group_norm(work_scale):
    rng = np.random.default_rng(7)
    x, w, b = randn(rng, 6, 12, 9, 7), randn(rng, 12), randn(rng, 12)
    g = randn(rng, *x.shape)
    assert_same_at_1_and_2_threads(lambda: ops.group_norm_forward(x, 4, w, b))
    _, mean, rstd = ops.group_norm_forward(x, 4, w, b)
    assert_same_at_1_and_2_threads(lambda: ops.group_norm_backward(g, x, 4, w, mean, rstd))


def test_batch_norm(work_scale):
    rng = np.random.default_rng(8)
    x, w, b = randn(rng, 5, 24, 11, 9), randn(rng, 24), randn(rng, 24)
    g = randn(rng, *x.shape)

    def fwd():
        rm, rv = np.zeros(24, np.float32), np.ones(24, np.float32)
        return ops.batch_norm_forward(x, rm, rv, w, b, training=True) + (rm, rv)
    assert_same_at_1_and_2_threads(fwd)
    _, mean, rstd = ops.batch_norm_forward(x, np.zeros(24, np.float32), np.ones(24, np.float32), w, b,
                                           training=True)[:3]
    assert_same_at_1_and_2_threads(lambda: ops.batch_norm_backward(g, x, w, mean, rstd, True))


@pytest.mark.parametrize("n", [1000, 70001, 1 << 20])
def test_gelu_tanh(work_scale, n):
    rng = np.random.default_rng(9)
    x, g = randn(rng, n), randn(rng, n)
    assert_same_at_1_and_2_threads(lambda: ops.gelu_tanh(x), exact=False, rtol=1e-6)
    assert_same_at_1_and_2_threads(lambda: ops.gelu_tanh_backward(g, x), exact=False, rtol=1e-6)
    with num_threads(2):
        y = ops.gelu_tanh(x)
    x64 = x.astype(np.float64)
    ref = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_depthwise_conv(work_scale):
    rng = np.random.default_rng(10)
    x, w, b = randn(rng, 3, 8, 13, 11), randn(rng, 16, 1, 3, 3), randn(rng, 16)
    assert_same_at_1_and_2_threads(lambda: ops.conv2d(x, w, b, 1, 1, 1, 8))
    g = randn(rng, *ops.conv2d(x, w, b, 1, 1, 1, 8).shape)
    assert_same_at_1_and_2_threads(lambda: ops.conv2d_backward(g, x, w, 1, 1, 1, 8))


def test_batched_small_matmul(work_scale):
    rng = np.random.default_rng(11)
    a, b = randn(rng, 37, 9, 13), randn(rng, 37, 13, 7)
    assert_same_at_1_and_2_threads(lambda: ops.matmul(a, b))
    with num_threads(2):
        c = ops.matmul(a, b)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_max_pool(work_scale):
    x = randn(np.random.default_rng(12), 4, 7, 12, 10)
    assert_same_at_1_and_2_threads(lambda: ops.max_pool2d(x, 2, return_indices=True))
    np.testing.assert_array_equal(ops.max_pool2d(x, 2), x.reshape(4, 7, 6, 2, 5, 2).max(axis=(3, 5)))


def test_attention_and_rope(work_scale):
    rng = np.random.default_rng(13)
    q, k, v = randn(rng, 2, 4, 33, 16), randn(rng, 2, 4, 45, 16), randn(rng, 2, 4, 45, 16)
    assert_same_at_1_and_2_threads(lambda: ops.attention_forward(q, k, v))
    assert_same_at_1_and_2_threads(lambda: ops.rope(q))


# ---------------------------------------------------------------------------- OpenMP wait policy

def run_python(code, **env):
    """`code` in a fresh interpreter, OMP_WAIT_POLICY / GOMP_SPINCOUNT unset unless given."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    full_env.update(env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True,
                          text=True, timeout=600)  # a hang guard; a busy machine is slow
    assert proc.returncode == 0, proc.stderr
    return proc


REPORT = """
    import os, dlkern
    info = dlkern.threading_info()
    print(info["omp_wait_policy"], "|", info["wait_policy_source"], "|", os.environ.get("OMP_WAIT_POLICY"))
"""


def displayed(proc, name):
    """The value the OpenMP runtime itself reports for `name` (OMP_DISPLAY_ENV), or None.
    libgomp prints e.g. "  OMP_WAIT_POLICY = 'PASSIVE'" (gcc >= 12: "  [host] ...")."""
    match = re.search(rf"^\s*(?:\[\w+\]\s*)?{name}\s*=\s*'([^']*)'", proc.stderr + proc.stdout, re.M)
    return match.group(1) if match else None


def test_default_wait_policy_is_a_short_spin():
    proc = run_python(REPORT, OMP_DISPLAY_ENV="VERBOSE")
    policy, source, env_after = [s.strip() for s in proc.stdout.strip().splitlines()[-1].split("|")]
    assert (policy, source) == ("spin 10000, then sleep", "dlkern default")
    assert env_after == "None", "dlkern must not leave OMP_WAIT_POLICY in the environment"
    # What the runtime read when it initialised (libgomp prints its settings on
    # OMP_DISPLAY_ENV): 300000 spins by default, 10000 as dlkern asks.
    spin = displayed(proc, "GOMP_SPINCOUNT")
    if spin is None:
        pytest.skip("the OpenMP runtime is not libgomp, or did not display its environment")
    assert spin == "10000"


def test_default_spincount_is_not_left_in_the_environment():
    proc = run_python("import os, dlkern; print(os.environ.get('GOMP_SPINCOUNT'))")
    assert proc.stdout.strip().splitlines()[-1] == "None"


@pytest.mark.parametrize("value", ["active", "PASSIVE"])
def test_user_wait_policy_is_respected(value):
    proc = run_python(REPORT, OMP_DISPLAY_ENV="VERBOSE", OMP_WAIT_POLICY=value)
    policy, source, env_after = [s.strip() for s in proc.stdout.strip().splitlines()[-1].split("|")]
    assert (policy, source, env_after) == (value.lower(), "environment", value)
    shown = displayed(proc, "OMP_WAIT_POLICY")
    if shown is not None:
        assert shown == value.upper()
    if value == "active" and displayed(proc, "GOMP_SPINCOUNT") is not None:
        assert int(displayed(proc, "GOMP_SPINCOUNT")) > 300000


def test_user_spincount_is_respected():
    proc = run_python(REPORT, OMP_DISPLAY_ENV="VERBOSE", GOMP_SPINCOUNT="1000")
    policy, source, env_after = [s.strip() for s in proc.stdout.strip().splitlines()[-1].split("|")]
    assert source == "environment" and env_after == "None"
    if displayed(proc, "GOMP_SPINCOUNT") is not None:
        assert displayed(proc, "GOMP_SPINCOUNT") == "1000"
