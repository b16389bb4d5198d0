"""bfloat16 kernels (csrc/cpu/bf16.h) through their test hooks in dlkern._C: the
float32 <-> bf16 conversions against a NumPy reference written here (nearest bf16 by
float64 distances, ties to even), and the bf16 GEMM on every ISA path (the float32
fallback everywhere, vdpbf16ps where the CPU has AVX-512 BF16) against the C++ scalar
model of vdpbf16ps, bit for bit, and against a float64 product with the error bound of
K-term float32 accumulation."""
import numpy as np
import pytest

import dlkern
from dlkern import _C

HAS_DP = _C._bf16_has_dpbf16()


# ---- NumPy references ------------------------------------------------------------------

def bits_to_f64(h):
    """float64 values of bf16 bit patterns; 0x7f80/0xff80 give +-inf."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(h, np.uint32) << 16).view(np.float32).astype(np.float64)


def ref_round(x):
    """Nearest bf16 of each float32 by float64 distances, ties to the even pattern;
    NaN -> the canonical quiet NaN 0x7fc0 with the sign kept (ml_dtypes' astype).
    Independent of the kernel's integer trick."""
    x = np.asarray(x, np.float32).ravel()
    u = x.view(np.uint32)
    lo = (u >> 16).astype(np.uint32)              # toward zero
    hi = lo + 1                                   # away from zero (0x7f80: the next "value" 2^128)
    with np.errstate(invalid="ignore"):
        xv = np.abs(x.astype(np.float64))
    lo_v = np.abs(bits_to_f64(lo & 0x7FFF))
    hi_bits = hi & 0x7FFF
    hi_v = np.where(hi_bits == 0x7F80, 2.0**128, np.abs(bits_to_f64(hi_bits)))
    with np.errstate(invalid="ignore"):
        d_lo, d_hi = xv - lo_v, hi_v - xv
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & ((lo & 1) == 1))
    out = np.where(pick_hi, hi, lo).astype(np.uint32)
    finite = np.isfinite(x)
    out = np.where(finite, out, lo)               # inf: exact
    out = np.where(np.isnan(x), (lo & 0x8000) | 0x7FC0, out)
    return out.astype(np.uint16)


def bf16_rand(rng, shape, scale=1.0):
    return ref_round((rng.standard_normal(shape) * scale).astype(np.float32)).reshape(shape)


def f32(h):
    return bits_to_f64(h).astype(np.float32)


# ---- conversions -----------------------------------------------------------------------

def special_floats():
    pats = [
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000,          # zeros, infs
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FA00000, 0x7F8000FF,  # NaNs (low payloads)
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001, 0x7F7EFFFF,  # near the top
        0x00000001, 0x80000001, 0x00007FFF, 0x00008000, 0x00018000, 0x00008001, 0x007FFFFF, 0x00800000,
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x3F800000, 0xBF808000, 0xBF818000,  # ties, neighbours
    ]
    return np.array(pats, np.uint32).view(np.float32)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 33, 1000])
def test_from_f32_matches_reference(isa, n):
    rng = np.random.default_rng(n)
    bits = rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), special_floats()])
    got = _C._bf16_from_f32(x)
    assert got.dtype == np.uint16 and got.shape == x.shape
    np.testing.assert_array_equal(got, ref_round(x))


def test_from_f32_special_values(isa):
    x = special_floats()
    got = _C._bf16_from_f32(np.concatenate([x] * 3))[: len(x)]  # vector lanes and tail
    back = f32(got)
    nan = np.isnan(x)
    assert np.all(np.isnan(back[nan])) and np.all(got[nan] & 0x7FFF == 0x7FC0)  # canonical quiet NaN
    assert np.all(np.signbit(back[nan]) == np.signbit(x[nan]))
    assert back[2] == np.inf and back[3] == -np.inf
    assert back[10] == np.inf and back[11] == -np.inf                       # FLT_MAX overflows
    assert got[12] == 0x7F7F                                                # max bf16 kept
    assert got[13] == 0x7F80                                                # tie at max -> inf (even)
    assert got[24] == 0x3F80 and got[25] == 0x3F82                          # ties to even
    assert got[16] == 0 and got[22] == 0x0080                               # denormals rounded, not flushed
    assert got[21] == 0x0001


def test_from_f32_shapes_and_strides(isa):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    np.testing.assert_array_equal(_C._bf16_from_f32(x[:, ::3]), ref_round(x[:, ::3]).reshape(5, 3))
    z = _C._bf16_from_f32(np.array(1.5, np.float32))
    assert z.shape == () and z == 0x3FC0
    assert _C._bf16_from_f32(np.zeros((0, 3), np.float32)).shape == (0, 3)


def test_to_f32_every_pattern(isa):
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    got = _C._bf16_to_f32(h)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), h.astype(np.uint32) << 16)
    # Round trip: bf16 -> f32 -> bf16 is the identity except NaNs, which become the
    # canonical quiet NaN of their sign.
    back = _C._bf16_from_f32(got)
    is_nan = np.isnan(got)
    np.testing.assert_array_equal(back[~is_nan], h[~is_nan])
    np.testing.assert_array_equal(back[is_nan], (h[is_nan] & 0x8000) | 0x7FC0)
    assert _C._bf16_to_f32(h[::-7]).shape == h[::-7].shape


def test_conversion_errors():
    with pytest.raises(TypeError, match="_bf16_from_f32: x must have dtype float32, got float64"):
        _C._bf16_from_f32(np.zeros(3))
    with pytest.raises(TypeError, match="_bf16_to_f32: x must have dtype uint16, got int16"):
        _C._bf16_to_f32(np.zeros(3, np.int16))
    with pytest.raises(TypeError, match="_bf16_from_f32"):
        _C._bf16_from_f32([1.0])


# ---- GEMM ------------------------------------------------------------------------------

def paths_for(isa):
    paths = ["best", "fallback"]
    if HAS_DP and isa == "avx512":
        paths.append("dpbf16")
    return paths


# (m, k, n): empty, tiny, odd and prime sizes, odd k (a padded last pair: A is packed),
# even k (rows of A read in place by the vdpbf16ps kernel, the last partial row panel
# packed), k past one depth block (384 pairs: 777, 800 and 1601 give 2, 2 and 3 blocks),
# partial tiles on every ISA.
SHAPES = [
    (0, 5, 7), (5, 0, 7), (5, 7, 0), (1, 1, 1), (1, 2, 1), (2, 3, 5), (7, 13, 17),
    (6, 64, 64), (13, 31, 67), (31, 37, 131), (50, 1601, 20), (97, 777, 130), (1, 385, 200), (200, 9, 1),
    (13, 40, 67), (97, 800, 130), (200, 10, 3),
]


def run(path, a, b, c=None, **kw):
    return _C._gemm_bf16(a, b, None if c is None else c.copy(), path=path, **kw)


def assert_same(got, want):
    """Bit-identical floats (NaNs compared as NaNs)."""
    assert got.shape == want.shape
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan], want[~nan])


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_gemm_matches_model(isa, threads, m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b = bf16_rand(rng, (m, k)), bf16_rand(rng, (k, n))
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    for path in paths_for(isa):
        for alpha, beta, c in [(1.0, 0.0, None), (0.5, 1.0, c0), (-2.0, 0.0, np.full((m, n), np.nan, np.float32))]:
            want = run("model", a, b, c, alpha=alpha, beta=beta)
            assert_same(run(path, a, b, c, alpha=alpha, beta=beta), want)
    if m and n:
        want = run("model", a, b)
        assert np.all(np.isfinite(want))
        if k == 0:
            assert np.all(want == 0)


@pytest.mark.parametrize("k", [45, 46])
@pytest.mark.parametrize("trans_a,trans_b", [(False, True), (True, False), (True, True)])
def test_gemm_transposes_and_strides(isa, threads, trans_a, trans_b, k):
    rng = np.random.default_rng(7)
    m, n = 23, 70
    a = bf16_rand(rng, (k, m) if trans_a else (m, k))
    b = bf16_rand(rng, (n, k) if trans_b else (k, n))
    oa, ob = (a.T if trans_a else a), (b.T if trans_b else b)
    want = run("model", np.ascontiguousarray(oa), np.ascontiguousarray(ob))
    for path in paths_for(isa):
        assert_same(run(path, a, b, trans_a=trans_a, trans_b=trans_b), want)
    # Non-contiguous, reversed and broadcast (stride 0) operands.
    big = bf16_rand(rng, (2 * m, 3 * k))
    a2 = big[::2, ::3][::-1]
    b2 = np.broadcast_to(bf16_rand(rng, (1, n)), (k, n))
    want = run("model", np.ascontiguousarray(a2), np.ascontiguousarray(b2))
    # Rows read in place from an odd offset and an odd row stride (pairs not 4-byte aligned).
    a3 = bf16_rand(rng, (m, k + 3))[:, 1 : k + 1]
    b3 = np.ascontiguousarray(b2)
    want3 = run("model", np.ascontiguousarray(a3), b3)
    cbig = np.zeros((m, 2 * n), np.float32)
    for path in paths_for(isa):
        assert_same(run(path, a2, b2), want)
        out = _C._gemm_bf16(a2, b2, cbig[:, :n], path=path)  # c with a row stride 2n
        assert_same(out, want)
        assert_same(run(path, a3, b3), want3)


def test_gemm_nan_inf(isa, threads):
    rng = np.random.default_rng(3)
    m, k, n = 9, 19, 70
    a, b = bf16_rand(rng, (m, k)), bf16_rand(rng, (k, n))
    a[2, 5] = 0x7FC0                 # NaN: row 2 all NaN
    b[7, 3] = 0x7F80                 # +inf: column 3 inf or NaN
    a[4, 7] = 0                      # 0 * inf -> NaN at (4, 3)
    want = run("model", a, b)
    assert np.all(np.isnan(want[2])) and np.isnan(want[4, 3]) and np.isinf(want[0, 3])
    for path in paths_for(isa):
        assert_same(run(path, a, b), want)


def test_gemm_denormals(isa):
    """vdpbf16ps reads denormal inputs as zero and flushes denormal results (DAZ/FTZ);
    the fallback's FMAs do not, and each matches the model run that way."""
    rng = np.random.default_rng(4)
    m, k, n = 7, 10, 66
    a = bf16_rand(rng, (m, k), scale=1e-20)
    b = bf16_rand(rng, (k, n), scale=1e-19)
    a[0, :] = 0x0041                 # denormal bf16 inputs (~6e-39)
    b[:, 64:] = bf16_rand(rng, (k, 2), scale=1e30)
    noflush = run("model_noflush", a, b)
    flushed = run("model", a, b)
    # Denormal inputs times 1e30: normal products, unless the inputs read as zero.
    assert np.all(flushed[0, 64:] == 0) and np.all(noflush[0, 64:] != 0)
    # Normal inputs whose products (~1e-39) are denormal: flushed, or kept.
    assert np.all(flushed[1:, :64] == 0) and np.all(noflush[1:, :64] != 0)
    assert np.all(flushed[1:, 64:] == noflush[1:, 64:])
    if isa == "generic":
        # No fused multiply-add on the portable path: a product in the denormal range is
        # rounded before the addition, so each step may differ by a denormal ulp.
        for path in ("fallback", "best"):
            np.testing.assert_allclose(run(path, a, b), noflush, rtol=0, atol=k * 2.0**-149)
        assert np.all(run("fallback", a, b)[1:, 64:] == noflush[1:, 64:])
    else:
        assert_same(run("fallback", a, b), noflush)
    if HAS_DP and isa == "avx512":
        assert_same(run("dpbf16", a, b), flushed)
        assert_same(run("best", a, b), flushed)
    elif isa != "generic":
        assert_same(run("best", a, b), noflush)


@pytest.mark.parametrize("m,k,n", [(33, 1000, 70), (64, 2049, 65)])
def test_gemm_error_bound(isa, m, k, n):
    """|C - A B| <= gamma_s |A| |B| against float64 of the bf16 inputs, where s counts
    the float32 roundings on an element's path: k additions, one per depth block
    (merging into C) and alpha's product."""
    rng = np.random.default_rng(k)
    a, b = bf16_rand(rng, (m, k)), bf16_rand(rng, (k, n))
    a64, b64 = bits_to_f64(a), bits_to_f64(b)
    ref = a64 @ b64
    s = k + (k + 767) // 768 + 2
    u = 2.0**-24
    bound = s * u / (1 - s * u) * (np.abs(a64) @ np.abs(b64))
    for path in paths_for(isa) + ["model"]:
        got = run(path, a, b).astype(np.float64)
        err = np.abs(got - ref)
        assert np.all(err <= bound), (path, float((err / bound).max()))
        assert np.any(err > 0)  # float32 accumulation does round


def test_gemm_dpbf16_unavailable():
    prev = dlkern.get_isa()
    try:
        dlkern.set_isa("generic")
        a = np.zeros((2, 2), np.uint16)
        with pytest.raises(ValueError, match="_gemm_bf16: .*vdpbf16ps path cannot run on ISA 'generic'"):
            _C._gemm_bf16(a, a, path="dpbf16")
    finally:
        dlkern.set_isa(prev)


def test_gemm_errors():
    a = np.zeros((2, 3), np.uint16)
    with pytest.raises(TypeError, match="_gemm_bf16: a must have dtype uint16, got float32"):
        _C._gemm_bf16(a.astype(np.float32), a.T)
    with pytest.raises(ValueError, match="_gemm_bf16: op\\(a\\) has 3 columns but op\\(b\\) has 2 rows"):
        _C._gemm_bf16(a, a)
    with pytest.raises(ValueError, match="_gemm_bf16: b must be 2-D"):
        _C._gemm_bf16(a, np.zeros(3, np.uint16))
    with pytest.raises(ValueError, match="_gemm_bf16: beta=1 needs a c to scale"):
        _C._gemm_bf16(a, a.T, beta=1.0)
    with pytest.raises(ValueError, match="_gemm_bf16: c has shape \\(3, 3\\), expected \\(2, 2\\)"):
        _C._gemm_bf16(a, a.T, np.zeros((3, 3), np.float32))
    with pytest.raises(TypeError, match="_gemm_bf16: c must have dtype float32"):
        _C._gemm_bf16(a, a.T, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="_gemm_bf16: path must be"):
        _C._gemm_bf16(a, a.T, path="fast")
    with pytest.raises(ValueError, match="_gemm_bf16: c must have unit stride"):
        _C._gemm_bf16(a, a.T, np.zeros((2, 4), np.float32)[:, ::2])


def test_hooks_not_public_kernels():
    for name in ("_gemm_bf16", "_bf16_from_f32", "_bf16_to_f32", "_bf16_has_dpbf16"):
        assert name not in _C.KERNELS
