"""dlkern._C_cuda kernels on DeviceArrays beyond the elementwise/row-wise foundation:
matmul / gemm (FP32 tiles and the TF32 tensor-core path).

Host-side logic (how matmul addresses strided operands and broadcasts batch axes, the
TF32 flag, argument errors raised before device work) runs on every machine with the
CUDA module built. Everything that needs a GPU is marked requires_gpu and compares
with NumPy references written here.
"""
import zlib

import numpy as np
import pytest

import dlkern
import dlkern.cuda
from dlkern.device import CUDADevice

from cuda_support import argument_error_test, C, requires_gpu, requires_module  # noqa: E402

DTYPES = [np.float32, np.float64]


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def fp_tol(dtype, k):
    # Summation error grows with the inner dimension k.
    eps = np.finfo(dtype).eps
    return dict(rtol=8 * eps * max(k, 1) ** 0.5 + 4 * eps, atol=4 * eps * max(k, 1))


# ---------------------------------------------------------------------------
# Host side: runs without a GPU
# ---------------------------------------------------------------------------

def elem_strides(x):
    return tuple(s // x.itemsize for s in x.strides)


def plan_of(a, b):
    return C._matmul_plan(a.shape, elem_strides(a), b.shape, elem_strides(b))


MATMUL_SHAPES = [
    ((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (7, 4, 2)), ((0, 3, 4), (4, 2)),
    ((3, 0), (0, 2)), ((6, 1, 2, 3), (1, 5, 3, 1)), ((1, 1), (1, 1)), ((2, 5, 1), (2, 1, 3)),
]


@requires_module
@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES, ids=str)
def test_matmul_plan_shapes_match_numpy(a_shape, b_shape):
    a, b = np.zeros(a_shape, np.float32), np.zeros(b_shape, np.float32)
    p = plan_of(a, b)
    want = np.matmul(a, b).shape
    assert p["out_shape"] == want
    m = 1 if a.ndim == 1 else a_shape[-2]
    n = 1 if b.ndim == 1 else b_shape[-1]
    assert p["mnk"] == (m, n, a_shape[-1])
    # Contiguous operands are addressed in place, never copied.
    assert p["a"] != "copy" and p["b"] != "copy"
    # The merged batch covers every output matrix exactly once.
    assert int(np.prod([ax[0] for ax in p["batch"]], dtype=np.int64)) * m * n == int(np.prod(want, dtype=np.int64))


@requires_module
def test_matmul_plan_layouts():
    a = np.zeros((6, 4), np.float32)
    b = np.zeros((8, 5), np.float32)
    # plain row-major, transposed view (unit stride along rows), padded rows, sliced
    assert plan_of(a, np.zeros((4, 5), np.float32))["a"] == (False, 4)
    assert plan_of(a.T, np.zeros((6, 2), np.float32))["a"] == (True, 4)
    assert plan_of(a[:, :3], np.zeros((3, 2), np.float32))["a"] == (False, 4)
    assert plan_of(a[:3, :3].T, np.zeros((3, 2), np.float32))["a"] == (True, 4)
    assert plan_of(a[:, ::2], np.zeros((2, 2), np.float32))["a"] == "copy"
    assert plan_of(np.zeros((3, 4), np.float32), b[::2])["b"] == (False, 10)  # every other row
    assert plan_of(np.zeros((3, 4), np.float32), np.zeros((4, 10), np.float32)[:, ::2])["b"] == "copy"
    assert plan_of(np.zeros((3, 5), np.float32), b.T)["b"] == (True, 5)
    # broadcast rows (stride 0) cannot be addressed: the rows would overlap
    assert plan_of(np.broadcast_to(np.zeros(4, np.float32), (3, 4)), np.zeros((4, 2), np.float32))["a"] == "copy"


@requires_module
def test_matmul_plan_batch_merging_and_broadcast():
    # contiguous batches merge into one strided batch
    p = plan_of(np.zeros((2, 3, 4, 5), np.float32), np.zeros((2, 3, 5, 6), np.float32))
    assert p["batch"] == [(6, 20, 30, 24)]
    # b broadcast over the batch: stride 0
    p = plan_of(np.zeros((2, 3, 4, 5), np.float32), np.zeros((5, 6), np.float32))
    assert p["batch"] == [(6, 20, 0, 24)]
    # a broadcast on the outer axis, b on the inner: two axes that cannot merge
    p = plan_of(np.zeros((3, 4, 5), np.float32), np.zeros((2, 1, 5, 6), np.float32))
    assert p["batch"] == [(2, 0, 30, 72), (3, 20, 0, 24)]
    # an operand that is copied gets the strides of its contiguous copy
    a = np.zeros((2, 4, 10), np.float32)[:, :, ::2]
    p = plan_of(a, np.zeros((5, 6), np.float32))
    assert p["a"] == "copy" and p["batch"] == [(2, 20, 0, 24)]


@requires_module
@pytest.mark.parametrize("a_shape, b_shape, pattern", [
    ((), (3,), r"^matmul: a is 0-d"),
    ((3,), (), r"^matmul: b is 0-d"),
    ((2, 3), (4, 5), r"^matmul: inner dimensions differ: a has shape \(2, 3\) \(k=3\) and b has shape \(4, 5\) \(k=4\)"),
    ((2, 2, 3), (3, 3, 4), r"^matmul: batch dimensions do not broadcast"),
])
def test_matmul_plan_errors(a_shape, b_shape, pattern):
    a, b = np.zeros(a_shape, np.float32), np.zeros(b_shape, np.float32)
    with pytest.raises(ValueError, match=pattern):
        plan_of(a, b)


test_matmul_argument_errors_before_device_work = argument_error_test([
    (lambda: C.matmul(np.ones((2, 2)), np.ones((2, 2))), TypeError, r"^matmul: a is a numpy.ndarray \(host memory\)"),
    (lambda: C.matmul([1.0], [1.0]), TypeError, r"^matmul: a must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.gemm([[1.0]], np.ones((1, 1))), TypeError, r"^gemm: a must be a numpy.ndarray, got list"),
])


def test_matmul_allow_tf32_flag():
    assert dlkern.cuda.matmul_allow_tf32 is False  # PyTorch's default
    try:
        dlkern.cuda.matmul_allow_tf32 = True
        assert dlkern.cuda.matmul_allow_tf32 is True
        if C is not None:
            assert C.get_matmul_allow_tf32() is True
    finally:
        dlkern.cuda.matmul_allow_tf32 = False
    assert dlkern.cuda.matmul_allow_tf32 is False
    if C is not None:
        assert C.get_matmul_allow_tf32() is False


@requires_module
def test_cuda_namespace_has_matmul_and_gemm():
    dev = CUDADevice(0)
    assert dev.matmul.__name__ == "matmul" and dev.gemm.__name__ == "gemm"
    with pytest.raises(TypeError, match=r"matmul on cuda:0: got a numpy.ndarray"):
        dev.matmul(np.ones((2, 2)), np.ones((2, 2)))


# ---------------------------------------------------------------------------
# On a device
# ---------------------------------------------------------------------------

def device_operand(host_shape, dtype, kind, key):
    """(host array, DeviceArray) with equal values: contiguous, transposed (last two axes
    swapped, a view) or sliced (every other row, a view)."""
    rng = rng_for("op", host_shape, kind, key)
    if kind == "contiguous":
        host = rng.uniform(-1, 1, host_shape).astype(dtype)
        return host, C.from_numpy(host)
    if kind == "transposed":
        swapped = host_shape[:-2] + (host_shape[-1], host_shape[-2]) if len(host_shape) >= 2 else host_shape
        base = rng.uniform(-1, 1, swapped).astype(dtype)
        if len(host_shape) < 2:
            return base, C.from_numpy(base)
        nd = len(host_shape)
        return np.swapaxes(base, -1, -2), C.from_numpy(base).transpose(nd - 2, nd - 1)
    big_shape = host_shape[:-1] + (2 * host_shape[-1],)
    big = rng.uniform(-1, 1, big_shape).astype(dtype)
    dev = C.from_numpy(big)
    strides = dev.strides[:-1] + (2 * dev.strides[-1],)
    return big[..., ::2], dev.as_strided(host_shape, strides, 0)


def ref_matmul(a, b):
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("a_kind", ["contiguous", "transposed", "sliced"])
@pytest.mark.parametrize("a_shape, b_shape", MATMUL_SHAPES + [((67, 129), (129, 131)), ((3, 130, 257), (257, 65))], ids=str)
def test_matmul_matches_numpy(a_shape, b_shape, a_kind, dtype):
    a, da = device_operand(a_shape, dtype, a_kind, "a")
    b, db = device_operand(b_shape, dtype, "contiguous", "b")
    got = C.matmul(da, db, allow_tf32=False)
    want = ref_matmul(a, b)
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got.numpy(), want, **fp_tol(dtype, a_shape[-1]))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matmul_out_and_transposed_b(dtype):
    a, da = device_operand((2, 33, 17), dtype, "contiguous", "a")
    b, db = device_operand((17, 40), dtype, "transposed", "b")
    out = C.zeros((2, 33, 40), dtype)
    assert C.matmul(da, db, out=out) is out
    np.testing.assert_allclose(out.numpy(), ref_matmul(a, b), **fp_tol(dtype, 17))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (7, 13, 5), (65, 129, 67), (128, 64, 0)], ids=str)
def test_gemm_device_arrays(m, n, k, trans_a, trans_b, dtype):
    rng = rng_for("gemm", m, n, k, trans_a, trans_b)
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.uniform(-1, 1, (m, n)).astype(dtype)
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    dc = C.from_numpy(c0)
    got = C.gemm(C.from_numpy(a), C.from_numpy(b), dc, alpha=0.5, beta=-2.0, trans_a=trans_a, trans_b=trans_b,
                 allow_tf32=False)
    assert got is dc
    want = 0.5 * ref_matmul(opa, opb) - 2.0 * c0
    np.testing.assert_allclose(dc.numpy(), want, **fp_tol(dtype, k))
    fresh = C.gemm(C.from_numpy(a), C.from_numpy(b), trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(fresh.numpy(), ref_matmul(opa, opb), **fp_tol(dtype, k))


@requires_gpu
def test_gemm_device_argument_errors():
    a = C.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"^gemm: inner dimensions differ"):
        C.gemm(a, C.zeros((4, 5), np.float32))
    with pytest.raises(TypeError, match=r"^gemm: a has dtype float32 but b has dtype float64"):
        C.gemm(a, C.zeros((3, 5), np.float64))
    with pytest.raises(ValueError, match=r"^gemm: beta=1 needs an input c"):
        C.gemm(a, C.zeros((3, 5), np.float32), beta=1.0)
    with pytest.raises(ValueError, match=r"^gemm: c has shape \(5, 2\), expected \(2, 5\)"):
        C.gemm(a, C.zeros((3, 5), np.float32), C.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"^gemm: c must have unit stride"):
        C.gemm(a, C.zeros((3, 5), np.float32), C.zeros((5, 2), np.float32).transpose(0, 1))
    with pytest.raises(ValueError, match=r"^gemm: the rows of c overlap"):
        C.gemm(C.zeros((2, 3), np.float32), C.zeros((3, 1), np.float32), C.zeros((1, 1), np.float32).as_strided((2, 1), (0, 1), 0))
    with pytest.raises(ValueError, match=r"^gemm: c shares memory with an input"):
        sq = C.zeros((3, 3), np.float32)
        C.gemm(sq, sq, sq)


def tf32_tol(a, b):
    """|error| bound for TF32 operands (relative rounding 2^-11 each) summed in float32:
    per element, (2 * 2^-11 + k * 2^-24) * (|a| @ |b|), with a margin."""
    k = a.shape[-1]
    mag = np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
    return 1.5 * (2 * 2.0 ** -11 + k * 2.0 ** -24) * mag + 1e-30


@requires_gpu
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (17, 33, 9), (64, 64, 16), (129, 65, 257), (300, 200, 1000)], ids=str)
def test_gemm_tf32_matches_numpy_within_tf32_rounding(m, n, k, trans_a, trans_b):
    rng = rng_for("tf32", m, n, k, trans_a, trans_b)
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (m, n)).astype(np.float32)
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    dc = C.from_numpy(c0)
    C.gemm(C.from_numpy(a), C.from_numpy(b), dc, alpha=1.5, beta=0.5, trans_a=trans_a, trans_b=trans_b,
           allow_tf32=True)
    want = 1.5 * ref_matmul(opa, opb) + 0.5 * c0
    err = np.abs(dc.numpy() - want)
    assert np.all(err <= 1.5 * tf32_tol(opa, opb) + 1e-6), float(err.max())


@requires_gpu
def test_matmul_copied_operand_on_another_stream_is_not_reused_early():
    # b (a strided view, so matmul copies it) lives on s2, a on s1: the GEMM runs on s1.
    # The copy used to be made on s2 and returned to s2's free list when matmul returned,
    # so a zeros() of the same size on s2 could reuse and clear it while the GEMM still
    # read it. Now the copy is made on s1 (contiguous_on in bind/cuda_common.h).
    s1, s2 = C.Stream(), C.Stream()
    rng = rng_for("two streams")
    a = rng.uniform(-1, 1, (1536, 1024))
    big = rng.uniform(-1, 1, (1024, 2048))
    da = C.from_numpy(a, stream=s1)
    dbig = C.from_numpy(big, stream=s2)
    db = dbig.as_strided((1024, 1024), (dbig.strides[0], 2 * dbig.strides[1]), 0)
    want = ref_matmul(a, big[:, ::2])
    for _ in range(3):
        got = C.matmul(da, db)
        clobber = C.zeros((1024, 1024), np.float64, stream=s2)  # noqa: F841
        np.testing.assert_allclose(got.numpy(), want, **fp_tol(np.float64, 1024))


@requires_gpu
def test_matmul_out_on_another_stream():
    # The product goes to a temporary on a's stream (s1), then is copied into out on s2;
    # the temporary's block must not be reused on s1 before that copy has read it.
    s1, s2 = C.Stream(), C.Stream()
    rng = rng_for("out on another stream")
    a = rng.uniform(-1, 1, (1024, 1024))
    b = rng.uniform(-1, 1, (1024, 1024))
    da, db = C.from_numpy(a, stream=s1), C.from_numpy(b, stream=s1)
    want = ref_matmul(a, b)
    for _ in range(3):
        out = C.empty((1024, 1024), np.float64, stream=s2)
        assert C.matmul(da, db, out=out) is out
        clobber = C.zeros((1024, 1024), np.float64, stream=s1)  # noqa: F841
        np.testing.assert_allclose(out.numpy(), want, **fp_tol(np.float64, 1024))


@requires_gpu
def test_matmul_tf32_flag_selects_tensor_cores():
    a, da = device_operand((4, 96, 512), np.float32, "contiguous", "a")
    b, db = device_operand((512, 80), np.float32, "transposed", "b")
    want = ref_matmul(a, b)
    exact = np.abs(C.matmul(da, db).numpy() - want).max()  # flag off by default
    try:
        dlkern.cuda.matmul_allow_tf32 = True
        got = C.matmul(da, db).numpy()
    finally:
        dlkern.cuda.matmul_allow_tf32 = False
    err = np.abs(got - want)
    assert np.all(err <= tf32_tol(a, b) + 1e-6)
    if C._tf32_supported(0):
        # TF32 keeps 10 mantissa bits: its error is far above float32's on sm_80+.
        assert err.max() > 4 * exact, (err.max(), exact)


# ---------------------------------------------------------------------------
# Cross-entropy
# ---------------------------------------------------------------------------

def ce_ref(x, t, w, ignore_index, reduction, eps):
    """NumPy float64 reference of PyTorch's cross_entropy with class-index targets and
    its gradient for a unit cotangent: (loss, lse, dx). x (N, C, ...) or (C,)."""
    x = x.astype(np.float64)
    unbatched = x.ndim == 1
    if unbatched:
        x, t = x[None], np.asarray(t).reshape(1)
    xm = np.moveaxis(x, 1, -1)                     # (N, ..., C)
    c = xm.shape[-1]
    wv = np.ones(c) if w is None else w.astype(np.float64)
    m = xm.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(xm - m).sum(-1, keepdims=True)))[..., 0]
    logp = xm - lse[..., None]
    valid = t != ignore_index
    tt = np.where(valid, t, 0)
    nll = -np.take_along_axis(logp, tt[..., None], -1)[..., 0] * wv[tt]
    smooth = -(logp * wv).sum(-1)
    per = np.where(valid, (1 - eps) * nll + eps / c * smooth, 0.0)
    div = np.where(valid, wv[tt], 0.0).sum()
    # gradient of sum(per) (then scaled for mean)
    p = np.exp(logp)
    onehot = np.eye(c)[tt]
    target_dist = (1 - eps) * onehot * wv[tt][..., None] + eps / c * wv
    dxm = p * target_dist.sum(-1, keepdims=True) - target_dist
    dxm = np.where(valid[..., None], dxm, 0.0)
    if reduction == "none":
        loss = per
    elif reduction == "sum":
        loss = per.sum()
    else:
        loss = per.sum() / div
        dxm = dxm / div
    dx = np.moveaxis(dxm, -1, 1)
    if unbatched:
        return np.asarray(loss).reshape(()) if reduction != "none" else per.reshape(()), lse.reshape(()), dx[0]
    return loss, lse, dx


test_cross_entropy_argument_errors_before_device_work = argument_error_test([
    (lambda: C.cross_entropy_forward(np.ones((2, 3)), np.zeros(2, np.int64)), TypeError,
     r"^cross_entropy: input is a numpy.ndarray \(host memory\)"),
    (lambda: C.cross_entropy_backward(1.0, [1.0], None, None), TypeError,
     r"^cross_entropy_backward: input must be a dlkern._C_cuda.DeviceArray, got list"),
])


@requires_module
def test_cuda_namespace_has_cross_entropy():
    dev = CUDADevice(0)
    assert dev.cross_entropy_forward.__name__ == "cross_entropy_forward"
    assert dev.cross_entropy_backward.__name__ == "cross_entropy_backward"


CE_CASES = [
    # (input shape, weighted, ignore some, reduction, label_smoothing)
    ((4, 7), False, False, "mean", 0.0),
    ((1, 1), False, False, "sum", 0.0),
    ((5, 3), True, True, "mean", 0.1),
    ((6, 1000), True, False, "none", 0.0),
    ((3, 513), False, True, "sum", 0.25),
    ((2, 5, 3, 4), True, True, "mean", 0.05),
    ((2, 4, 7), False, False, "none", 0.3),
    ((11,), True, False, "mean", 0.1),
    ((0, 4), False, False, "sum", 0.0),
]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape, weighted, ignore, reduction, eps", CE_CASES, ids=str)
def test_cross_entropy_matches_numpy(shape, weighted, ignore, reduction, eps, dtype):
    rng = rng_for("ce", shape, weighted, ignore, reduction, eps)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    c = shape[0] if len(shape) == 1 else shape[1]
    sample = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, c, sample).astype(np.int64)
    if ignore and t.size > 1:
        t.reshape(-1)[::3] = -100
    w = rng.uniform(0.5, 2.0, c).astype(dtype) if weighted else None
    want_loss, want_lse, want_dx = ce_ref(x, t, w, -100, reduction, eps)
    dx_, dt_ = C.from_numpy(x), C.from_numpy(t)
    dw = C.from_numpy(w) if weighted else None
    loss, lse = C.cross_entropy_forward(dx_, dt_, dw, -100, reduction, eps)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    assert loss.shape == np.shape(want_loss) and lse.shape == np.shape(want_lse)
    np.testing.assert_allclose(loss.numpy(), want_loss, **tol)
    np.testing.assert_allclose(lse.numpy(), want_lse, **tol)
    grad = C.from_numpy(np.ones(np.shape(want_loss), dtype)) if reduction == "none" else 1.0
    dx = C.cross_entropy_backward(grad, dx_, dt_, lse, dw, -100, reduction, eps)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx.numpy(), want_dx, **tol)
    if reduction != "none":  # a one-element DeviceArray cotangent, scaled
        dx2 = C.cross_entropy_backward(C.from_numpy(np.array(2.0, dtype)), dx_, dt_, lse, dw, -100, reduction, eps)
        np.testing.assert_allclose(dx2.numpy(), 2 * want_dx, **tol)


@requires_gpu
def test_cross_entropy_errors_and_edges():
    x = C.from_numpy(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"^cross_entropy: target at flat index 1 is out of range for 4 classes"):
        C.cross_entropy_forward(x, C.from_numpy(np.array([0, 4, -1], np.int64)))
    with pytest.raises(TypeError, match=r"^cross_entropy: target has dtype float32"):
        C.cross_entropy_forward(x, C.from_numpy(np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match=r"^cross_entropy: target has shape \(4,\), expected \(3,\)"):
        C.cross_entropy_forward(x, C.from_numpy(np.zeros(4, np.int64)))
    with pytest.raises(ValueError, match=r"^cross_entropy: reduction must be"):
        C.cross_entropy_forward(x, C.from_numpy(np.zeros(3, np.int64)), reduction="avg")
    # every target ignored: mean is NaN, as PyTorch
    loss, _ = C.cross_entropy_forward(x, C.from_numpy(np.full(3, -100, np.int64)))
    assert np.isnan(loss.numpy())
    # large logits stay accurate (shifted by the max)
    big = np.array([[1e4, 0.0, -1e4]], np.float32)
    loss, _ = C.cross_entropy_forward(C.from_numpy(big), C.from_numpy(np.array([1], np.int64)), reduction="sum")
    np.testing.assert_allclose(loss.numpy(), 1e4, rtol=1e-6)


# ---------------------------------------------------------------------------
# RoPE, KV cache, decode attention
# ---------------------------------------------------------------------------

def rope_ref(x, offset, base, inverse=False):
    x = x.astype(np.float64)
    t_len, d = x.shape[-2], x.shape[-1]
    half = d // 2
    pos = offset + np.arange(t_len)[:, None]
    ang = pos * base ** (-2.0 * np.arange(half) / d)
    c, s = np.cos(ang), np.sin(ang) * (-1 if inverse else 1)
    lo, hi = x[..., :half], x[..., half:]
    return np.concatenate([lo * c - hi * s, hi * c + lo * s], axis=-1)


def decode_ref(q, k, v, length, mask=None, scale=None):
    """float64 NumPy: q (B, Hq, Tq, D) at positions length-Tq.. against k/v[:, :, :length]."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    B, Hq, Tq, D = q.shape
    g = Hq // k.shape[1]
    k = np.repeat(k[:, :, :length], g, axis=1)
    v = np.repeat(v[:, :, :length], g, axis=1)
    scale = 1 / np.sqrt(D) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = s + mask
    i = np.arange(Tq)[:, None] + length - Tq
    s = np.where(np.arange(length)[None, :] <= i, s, -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    den = p.sum(-1, keepdims=True)
    out = (p @ v) / np.where(den > 0, den, 1)
    return np.where(den > 0, out, 0)


@requires_module
@pytest.mark.parametrize("B, Hkv, rows, length, D, Dv, nbytes, sms", [
    (1, 1, 8, 4096, 128, 128, 4, 132), (32, 8, 4, 4096, 128, 128, 4, 132), (1, 1, 1, 1, 256, 256, 8, 132),
    (2, 2, 20, 100, 64, 64, 4, 132), (1, 4, 1, 7, 3, 5, 8, 1), (64, 32, 1, 10000, 64, 64, 2, 108),
])
def test_decode_plan_covers_the_keys(B, Hkv, rows, length, D, Dv, nbytes, sms):
    p = C._decode_plan(B, Hkv, rows, length, D, Dv, nbytes, sms)
    assert p["row_groups"] * 8 >= rows > (p["row_groups"] - 1) * 8
    assert p["smem_bytes"] == p["tile_keys"] * (D + Dv) * nbytes <= 48 * 1024
    assert p["chunk"] % p["tile_keys"] == 0
    # every key in exactly one split, no empty split
    assert p["splits"] * p["chunk"] >= length > (p["splits"] - 1) * p["chunk"]
    if B * Hkv * p["row_groups"] >= 2 * sms:
        assert p["splits"] == 1  # enough blocks without splitting
    if B * Hkv == 1 and length >= 4 * 2 * sms * p["tile_keys"]:
        assert p["splits"] >= 2 * sms  # flash-decoding fills the GPU


@requires_module
def test_attention_argument_errors_before_device_work():
    with pytest.raises(TypeError, match=r"^rope: x is a numpy.ndarray"):
        C.rope(np.ones((2, 4)))
    with pytest.raises(TypeError, match=r"^decode_attention: q must be a dlkern._C_cuda.DeviceArray, got list"):
        C.decode_attention([1.0], None, None, 1)
    with pytest.raises(TypeError, match=r"^kv_cache_append: cache must be a dlkern._C_cuda.DeviceArray, got NoneType"):
        C.kv_cache_append(None, None, 0)


@requires_module
def test_cuda_namespace_has_attention_ops():
    dev = CUDADevice(0)
    for name in ("rope", "rope_backward", "kv_cache_append", "decode_attention"):
        assert getattr(dev, name).__name__ == name


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape, offset", [((5, 8), 0), ((2, 3, 7, 6), 11), ((1, 2), 3), ((2, 0, 4), 0)], ids=str)
def test_rope_matches_numpy(shape, offset, dtype):
    x = rng_for("rope", shape).standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    y = C.rope(C.from_numpy(x), offset, 500.0)
    np.testing.assert_allclose(y.numpy(), rope_ref(x, offset, 500.0), **tol)
    back = C.rope_backward(y, offset, 500.0)
    np.testing.assert_allclose(back.numpy(), x, **tol)
    # a transposed view is read correctly
    xt = C.from_numpy(np.ascontiguousarray(np.swapaxes(x, -1, -2)))
    nd = len(shape)
    np.testing.assert_allclose(C.rope(xt.transpose(nd - 2, nd - 1), offset, 500.0).numpy(),
                               rope_ref(x, offset, 500.0), **tol)


@requires_gpu
def test_rope_errors():
    with pytest.raises(ValueError, match=r"^rope: the last dim of x must be even"):
        C.rope(C.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^rope_backward: base must be > 0"):
        C.rope_backward(C.zeros((2, 4), np.float32), 0, 0.0)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_kv_cache_append(dtype):
    rng = rng_for("kv")
    cache_h = np.zeros((2, 3, 10, 4), dtype)
    cache = C.from_numpy(cache_h)
    new = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    assert C.kv_cache_append(cache, C.from_numpy(new), 5) == 9
    cache_h[:, :, 5:9] = new
    # a strided (transposed-layout) new is copied correctly too
    new2 = rng.standard_normal((2, 1, 3, 4)).astype(dtype)
    nt = C.from_numpy(np.ascontiguousarray(new2.transpose(0, 2, 1, 3))).permute(0, 2, 1, 3)
    assert C.kv_cache_append(cache, nt, 0) == 1
    cache_h[:, :, 0:1] = new2
    np.testing.assert_array_equal(cache.numpy(), cache_h)
    with pytest.raises(ValueError, match=r"^kv_cache_append: cache overflow: offset 8 \+ 4 new > capacity 10"):
        C.kv_cache_append(cache, C.from_numpy(new), 8)
    with pytest.raises(ValueError, match=r"^kv_cache_append: new has shape"):
        C.kv_cache_append(cache, C.zeros((2, 2, 1, 4), dtype), 0)


DECODE_CASES = [
    # (B, Hq, Hkv, Tq, S, length, D, Dv)
    (1, 1, 1, 1, 8, 5, 4, 4),
    (2, 8, 2, 1, 40, 33, 64, 64),
    (1, 4, 1, 3, 300, 257, 32, 48),     # MQA, a few query positions, causal among them
    (1, 2, 2, 1, 5000, 4099, 128, 128),  # long cache, few (b, kv head) pairs: split keys
    (3, 12, 4, 2, 17, 17, 7, 9),         # odd head dims
    (1, 16, 1, 1, 70, 64, 256, 256),     # 16 query rows: two row groups; largest head dim
]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("B, Hq, Hkv, Tq, S, length, D, Dv", DECODE_CASES, ids=str)
def test_decode_attention_matches_numpy(B, Hq, Hkv, Tq, S, length, D, Dv, dtype):
    rng = rng_for("decode", B, Hq, Hkv, Tq, S, length, D, Dv)
    q = rng.standard_normal((B, Hq, Tq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, S, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, S, Dv)).astype(dtype)
    # garbage beyond `length` must never be read into the result
    k[:, :, length:] = np.nan
    v[:, :, length:] = np.nan
    got = C.decode_attention(C.from_numpy(q), C.from_numpy(k), C.from_numpy(v), length)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    assert got.shape == (B, Hq, Tq, Dv)
    np.testing.assert_allclose(got.numpy(), decode_ref(q, k, v, length), **tol)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_decode_attention_mask_scale_and_strided_q(dtype):
    rng = rng_for("decode-mask")
    B, Hq, Hkv, Tq, S, length, D = 2, 4, 2, 2, 30, 21, 16
    q = rng.standard_normal((B, Tq, Hq, D)).astype(dtype)     # (B, T, H, D) layout, viewed as (B, H, T, D)
    k = rng.standard_normal((B, Hkv, S, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, S, D)).astype(dtype)
    mask = np.where(rng.uniform(size=(1, Hq, 1, length)) < 0.3, -np.inf, rng.standard_normal((1, Hq, 1, length)))
    mask = mask.astype(dtype)
    mask[0, 0, 0, :] = -np.inf  # head 0 sees no key: out 0
    dq = C.from_numpy(q).permute(0, 2, 1, 3)
    got = C.decode_attention(dq, C.from_numpy(k), C.from_numpy(v), length, C.from_numpy(mask), 0.3)
    want = decode_ref(q.transpose(0, 2, 1, 3), k, v, length, mask, 0.3)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(got.numpy(), want, **tol)
    assert not got.numpy()[:, 0].any()


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_decode_attention_nan_propagates_as_on_the_cpu(dtype):
    # A NaN score (here a NaN mask entry / a NaN query) gives a NaN row on the CPU; the
    # kernel used to skip it like a masked key and return a finite (or zero) row.
    from dlkern.ops import attention as cpu_attention
    rng = rng_for("decode-nan")
    B, Hq, Hkv, Tq, S, length, D = 1, 2, 1, 1, 600, 600, 8  # long enough to split the keys
    q = rng.standard_normal((B, Hq, Tq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, S, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, S, D)).astype(dtype)
    q[0, 1, 0, 3] = np.nan
    mask = np.zeros((1, Hq, 1, length), dtype)
    mask[0, 0, 0, 7] = np.nan
    got = C.decode_attention(C.from_numpy(q), C.from_numpy(k), C.from_numpy(v), length, C.from_numpy(mask)).numpy()
    want = cpu_attention.decode_attention(q, k, v, length, attn_mask=mask)
    assert np.isnan(want).all() and np.isnan(got).all()


@requires_gpu
def test_decode_attention_more_row_blocks_than_grid_y_allows():
    # B * Hkv * row_groups > 65535 blocks: they now go on grid.x (grid.y holds the splits).
    rng = rng_for("decode-wide")
    B, Hq, Hkv, Tq, S, length, D = 65537, 1, 1, 1, 2, 2, 2
    q = rng.standard_normal((B, Hq, Tq, D)).astype(np.float32)
    k = rng.standard_normal((B, Hkv, S, D)).astype(np.float32)
    v = rng.standard_normal((B, Hkv, S, D)).astype(np.float32)
    got = C.decode_attention(C.from_numpy(q), C.from_numpy(k), C.from_numpy(v), length)
    np.testing.assert_allclose(got.numpy(), decode_ref(q, k, v, length), rtol=2e-5, atol=2e-5)


@requires_gpu
def test_decode_attention_errors():
    q = C.zeros((1, 3, 1, 4), np.float32)
    kv = C.zeros((1, 2, 8, 4), np.float32)
    with pytest.raises(ValueError, match=r"^decode_attention: q has 3 heads .* not a multiple of the 2 kv heads"):
        C.decode_attention(q, kv, kv, 4)
    q = C.zeros((1, 2, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"^decode_attention: length 9 exceeds the cache capacity 8"):
        C.decode_attention(q, kv, kv, 9)
    with pytest.raises(ValueError, match=r"^decode_attention: length 1 is less than the 2 query positions"):
        C.decode_attention(q, kv, kv, 1)
    with pytest.raises(TypeError, match=r"^decode_attention: attn_mask has dtype int64"):
        C.decode_attention(q, kv, kv, 4, C.zeros((1, 1, 1, 4), np.int64))
    with pytest.raises(ValueError, match=r"^decode_attention: attn_mask of shape \(1, 1, 1, 5\) does not broadcast"):
        C.decode_attention(q, kv, kv, 4, C.zeros((1, 1, 1, 5), np.float32))
