"""CUDA backend: dlkern._C_cuda.gemm against a float64 NumPy reference.

Skipped as a whole when the CUDA module was not built. When it was built but no GPU
(or no driver) is present, only the checks that need no device run: the runtime
queries must answer without crashing, argument errors must be raised before any
device work, and device work must fail with a RuntimeError naming the op.
"""
import math
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

try:
    import dlkern._C_cuda as _C_cuda
except ModuleNotFoundError as exc:
    # Only a missing module means "not built"; one that exists but fails to load is a
    # real error and must fail the run.
    if exc.name != "dlkern._C_cuda":
        raise
    pytest.skip(
        "dlkern._C_cuda is not built (CUDA was off or nvcc was not found); "
        "rebuild with DLKERN_CUDA=ON to test the CUDA kernels",
        allow_module_level=True,
    )

HAS_GPU = _C_cuda.is_available()
requires_gpu = pytest.mark.skipif(
    not HAS_GPU,
    reason="dlkern._C_cuda is built but no usable CUDA device/driver is present "
    f"(is_available() is False, device_count() = {_C_cuda.device_count()})",
)

DTYPES = [np.float32, np.float64]


def rng_for(*key):
    # crc32 rather than hash(): str hashes change from run to run.
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def operands(shape_a, shape_b, dtype, seed):
    rng = rng_for("operands", shape_a, shape_b, seed)
    a = rng.uniform(-1, 1, size=shape_a).astype(dtype)
    b = rng.uniform(-1, 1, size=shape_b).astype(dtype)
    return a, b


def check_gemm(got, a, b, c0, alpha, beta, trans_a, trans_b):
    """got must equal alpha*op(a)@op(b) + beta*c0 within a rounding bound that grows
    like sqrt(k) (a random walk of k rounding errors) times the magnitudes summed."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    oa = a64.T if trans_a else a64
    ob = b64.T if trans_b else b64
    want = alpha * (oa @ ob)
    magnitude = abs(alpha) * (np.abs(oa) @ np.abs(ob)) * math.sqrt(max(oa.shape[1], 1))
    if beta != 0:
        want = want + beta * c0.astype(np.float64)
        magnitude = magnitude + np.abs(beta * c0.astype(np.float64))
    eps = np.finfo(got.dtype).eps
    bound = 16 * eps * magnitude + np.finfo(got.dtype).tiny
    err = np.abs(got.astype(np.float64) - want)
    assert got.shape == want.shape
    assert np.all(err <= bound), (
        f"max error {err.max():.3g} exceeds bound at {np.unravel_index(np.argmax(err - bound), err.shape)}"
    )


# ---------------------------------------------------------------------------
# No device needed
# ---------------------------------------------------------------------------


def test_runtime_queries_do_not_crash():
    assert isinstance(_C_cuda.is_available(), bool)
    count = _C_cuda.device_count()
    assert isinstance(count, int) and count >= 0
    assert _C_cuda.is_available() == (count > 0)
    # Asking again after a failed query must give the same answer (no stale error state).
    assert _C_cuda.device_count() == count


def test_build_info():
    info = _C_cuda.build_info()
    assert info["version"]
    assert info["cuda_version"]
    assert info["cuda_architectures"] and all(a.strip() for a in info["cuda_architectures"])
    assert info["cuda_runtime_version"]


@pytest.mark.skipif(HAS_GPU, reason="checks the failure path of a machine without a GPU")
def test_device_work_without_gpu_raises_runtime_error():
    a = np.ones((2, 3), np.float32)
    b = np.ones((3, 4), np.float32)
    with pytest.raises(RuntimeError, match=r"^gemm: CUDA failed"):
        _C_cuda.gemm(a, b)
    with pytest.raises(RuntimeError, match=r"^synchronize: "):
        _C_cuda.synchronize()
    # Still answering, not poisoned by the failures above.
    assert _C_cuda.is_available() is False


def _f32(*shape):
    return np.ones(shape, np.float32)


# Argument errors are raised before any device work, so these run with or without a GPU.
@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(a=[[1.0]], b=_f32(1, 1)), TypeError, r"gemm: a must be a numpy.ndarray, got list"),
        (dict(a=_f32(1, 1), b=None), TypeError, r"gemm: b must be a numpy.ndarray, got NoneType"),
        (dict(a=np.ones((2, 2), np.int64), b=_f32(2, 2)), TypeError, r"gemm: a has dtype int64"),
        (dict(a=np.ones((2, 2), np.float16), b=np.ones((2, 2), np.float16)), TypeError, r"gemm: a has dtype float16"),
        (dict(a=_f32(2, 2), b=np.ones((2, 2))), TypeError, r"gemm: a has dtype float32 but b has dtype float64"),
        (dict(a=np.ones((2, 2), ">f4"), b=_f32(2, 2)), TypeError, r"gemm: a has dtype >f4"),
        (dict(a=_f32(3), b=_f32(3, 1)), ValueError, r"gemm: a must be 2-D, got shape \(3,\)"),
        (dict(a=_f32(3, 1), b=_f32(1, 1, 1)), ValueError, r"gemm: b must be 2-D, got shape \(1, 1, 1\)"),
        (dict(a=_f32(2, 3), b=_f32(4, 5)), ValueError, r"gemm: inner dimensions differ: op\(a\) is \(2, 3\).*op\(b\) is \(4, 5\)"),
        (dict(a=_f32(2, 3), b=_f32(2, 5), trans_a=True, trans_b=True), ValueError, r"gemm: inner dimensions differ.*transposed"),
        (dict(a=_f32(4, 6)[:, ::2], b=_f32(3, 2)), ValueError, r"gemm: a of shape \(4, 3\) is not C-contiguous"),
        (dict(a=_f32(2, 3), b=_f32(5, 3).T), ValueError, r"gemm: b of shape \(3, 5\) is not C-contiguous"),
        (dict(a=_f32(2, 3), b=_f32(3, 4), beta=1.0), ValueError, r"gemm: beta=1 needs an input c, but c is None"),
        (dict(a=_f32(2, 3), b=_f32(3, 4), c=_f32(4, 2)), ValueError, r"gemm: c has shape \(4, 2\), expected \(2, 4\)"),
        (dict(a=_f32(2, 3), b=_f32(3, 4), c=np.ones((2, 4))), TypeError, r"gemm: c has dtype float64 but a and b have dtype float32"),
        (dict(a=_f32(2, 3), b=_f32(3, 4), c=_f32(4, 2).T), ValueError, r"gemm: c of shape \(2, 4\) is not C-contiguous"),
        (dict(a=_f32(2, 3), b=_f32(3, 4), c=np.broadcast_to(_f32(1, 4), (2, 4))), ValueError, r"gemm: c is read-only"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_gemm_argument_errors(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _C_cuda.gemm(**kwargs)


def test_gemm_rejects_output_sharing_memory_with_input():
    buf = np.ones(16, np.float32)
    a, c = buf[:8].reshape(2, 4), buf[4:12].reshape(2, 4)  # both contiguous, overlapping
    with pytest.raises(ValueError, match=r"gemm: c shares memory with an input"):
        _C_cuda.gemm(a, np.ones((4, 4), np.float32), c=c)
    square = np.ones((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"gemm: c shares memory with an input"):
        _C_cuda.gemm(square, np.ones((3, 3), np.float32), c=square)


# ---------------------------------------------------------------------------
# On a device
# ---------------------------------------------------------------------------

# 1, odd, prime, around and across the 64/128 tile sizes and the BK = 8/16 K steps,
# skinny in every direction. (2100, 2100) has enough 128x128 tiles to take the
# large-tile path on a big GPU.
SHAPES = [
    (1, 1, 1),
    (1, 1, 37),
    (1, 53, 1),
    (41, 1, 3),
    (3, 5, 7),
    (17, 19, 23),
    (63, 65, 15),
    (64, 64, 16),
    (65, 63, 17),
    (127, 129, 9),
    (128, 128, 128),
    (131, 257, 67),
    (1, 1000, 999),
    (997, 3, 1000),
    (2100, 2100, 40),
]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("trans_a", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["N", "T"])
@pytest.mark.parametrize("m, n, k", SHAPES, ids=lambda v: str(v))
def test_gemm_matches_numpy(m, n, k, trans_a, trans_b, dtype):
    shape_a = (k, m) if trans_a else (m, k)
    shape_b = (n, k) if trans_b else (k, n)
    a, b = operands(shape_a, shape_b, dtype, 0)
    got = _C_cuda.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert got.dtype == dtype and got.shape == (m, n) and got.flags.c_contiguous
    check_gemm(got, a, b, None, 1.0, 0.0, trans_a, trans_b)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, 2.0), (-1.5, 0.25), (2.0, -1.0), (0.0, 0.5), (0.0, 0.0), (1.0, 0.0)])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (33, 70, 19), (200, 131, 65)], ids=lambda v: str(v))
def test_gemm_alpha_beta_updates_c_in_place(m, n, k, alpha, beta, dtype):
    a, b = operands((m, k), (n, k), dtype, 1)
    c0 = rng_for("c", m, n).uniform(-1, 1, size=(m, n)).astype(dtype)
    c = c0.copy()
    out = _C_cuda.gemm(a, b, c=c, alpha=alpha, beta=beta, trans_b=True)
    assert out is c
    check_gemm(c, a, b, c0, alpha, beta, False, True)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_beta_zero_ignores_nan_in_c(dtype):
    a, b = operands((70, 30), (30, 90), dtype, 2)
    c = np.full((70, 90), np.nan, dtype)
    _C_cuda.gemm(a, b, c=c, beta=0.0)
    assert np.isfinite(c).all()
    check_gemm(c, a, b, None, 1.0, 0.0, False, False)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gemm_alpha_zero_does_not_read_a_or_b(dtype):
    # As in BLAS: with alpha == 0 the product is not formed, so NaN in a or b stays out.
    a = np.full((5, 4), np.nan, dtype)
    b = np.full((4, 6), np.inf, dtype)
    c = np.ones((5, 6), dtype)
    _C_cuda.gemm(a, b, c=c, alpha=0.0, beta=3.0)
    np.testing.assert_array_equal(c, np.full((5, 6), 3.0, dtype))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("m, n, k", [(0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 6, 0)], ids=lambda v: str(v))
def test_gemm_zero_size(m, n, k, dtype):
    a, b = operands((m, k), (k, n), dtype, 3)
    got = _C_cuda.gemm(a, b)
    assert got.shape == (m, n) and got.dtype == dtype
    np.testing.assert_array_equal(got, np.zeros((m, n), dtype))
    c0 = np.full((m, n), 2.0, dtype)
    c = c0.copy()
    _C_cuda.gemm(a, b, c=c, alpha=3.0, beta=0.5)
    np.testing.assert_array_equal(c, np.full((m, n), 1.0, dtype))


@requires_gpu
def test_gemm_from_several_threads():
    # The GIL is released around device work; concurrent callers must not mix results.
    cases = [operands((97 + i, 45), (45, 61 + i), np.float32, i) for i in range(8)]

    def run(ab):
        return _C_cuda.gemm(*ab)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, cases))
    for (a, b), got in zip(cases, results):
        check_gemm(got, a, b, None, 1.0, 0.0, False, False)


@requires_gpu
def test_runtime_on_device():
    assert _C_cuda.device_count() >= 1
    _C_cuda.synchronize()
    info = _C_cuda.build_info()
    assert info["cuda_driver_version"]


@requires_gpu
def test_valid_call_after_errors():
    # Failed validation must leave no state behind that breaks the next call.
    with pytest.raises(ValueError):
        _C_cuda.gemm(_f32(2, 3), _f32(4, 5))
    a, b = operands((9, 8), (8, 7), np.float64, 4)
    check_gemm(_C_cuda.gemm(a, b), a, b, None, 1.0, 0.0, False, False)
