"""The packed-B GEMM (csrc/cpu/gemm.h: gemm_pack_b / gemm_packed) through its test-only
bindings dlkern._C._gemm_pack_b / _gemm_packed: B packed once, multiplied many times,
against an independent float64 reference (explicit sums of products, so NaN/Inf follow
IEEE arithmetic term by term), on every ISA path and at 1 and 2 threads."""
import numpy as np
import pytest

import dlkern
from dlkern import _C

pack, packed = _C._gemm_pack_b, _C._gemm_packed

# (m, k, n): tiny, odd and prime sizes, empty ones, the RNN step shapes (m = 32: a short
# last row panel on every tile), k beyond every ISA's depth block (256 / 384) so several
# packed depth blocks are read, n with a partial last panel, and a tall thin product
# (few column panels: the 2-thread run splits rows).
SHAPES = [
    (1, 1, 1), (2, 3, 5), (7, 13, 17), (31, 37, 67), (32, 64, 130),
    (0, 5, 7), (5, 0, 7), (5, 7, 0), (0, 0, 0),
    (6, 700, 65), (13, 1031, 97), (50, 40, 20), (64, 257, 33),
]


def reference(a, b, alpha=1.0, beta=0.0, c0=None):
    """alpha * a @ b + beta * c0 in float64, each dot product summed term by term."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        prod = (a64[:, :, None] * b64[None, :, :]).sum(axis=1) if a.shape[1] else np.zeros((a.shape[0], b.shape[1]))
        out = alpha * prod
        if beta != 0.0:
            out = out + beta * c0.astype(np.float64)
    return out


def check_close(got, a, b, alpha=1.0, beta=0.0, c0=None):
    """Error within the forward error bound of a k-term sum in got's precision."""
    ref = reference(a, b, alpha, beta, c0)
    bound = abs(alpha) * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))
    if beta != 0.0:
        bound = bound + abs(beta) * np.abs(c0.astype(np.float64))
    eps = np.finfo(got.dtype).eps
    tol = (a.shape[1] + 2) * eps * bound + np.finfo(got.dtype).tiny
    assert got.shape == ref.shape
    err = np.abs(got.astype(np.float64) - ref)
    assert np.all(err <= tol), f"max err {err.max()} vs tol {tol.ravel()[np.argmax(err - tol)]}"


def rand(shape, dtype):
    return np.random.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_packed_matches_reference(isa, threads, dtype, m, k, n):
    a, b = rand((m, k), dtype), rand((k, n), dtype)
    pb = pack(b)
    assert (pb.k, pb.n, pb.isa) == (k, n, isa)
    check_close(packed(a, pb), a, b)
    # Reused: the same packed operand against a new A and an accumulating C.
    a2, c0 = rand((m, k), dtype), rand((m, n), dtype)
    got = packed(a2, pb, c0.copy(), alpha=2.5, beta=-0.5)
    check_close(got, a2, b, 2.5, -0.5, c0)


@pytest.mark.parametrize("m,k,n", [(32, 300, 70), (7, 13, 17), (5, 0, 7)])
def test_beta_zero_ignores_c_and_beta_one_accumulates(isa, threads, dtype, m, k, n):
    a, b = rand((m, k), dtype), rand((k, n), dtype)
    pb = pack(b)
    c = np.full((m, n), np.nan, dtype)
    got = packed(a, pb, c, beta=0.0)
    assert got is c or np.shares_memory(got, c)
    assert not np.isnan(c).any()
    check_close(c, a, b)
    c0 = rand((m, n), dtype)
    c = c0.copy()
    packed(a, pb, c, beta=1.0)
    check_close(c, a, b, 1.0, 1.0, c0)


@pytest.mark.parametrize("layout", ["trans_b", "strided", "reversed", "trans_strided"])
def test_b_of_any_strides(isa, threads, dtype, layout):
    m, k, n = 32, 403, 75
    a = rand((m, k), dtype)
    if layout == "trans_b":  # W as stored (n, k), op(B) = W^T
        w = rand((n, k), dtype)
        pb, b = pack(w, trans_b=True), w.T
    elif layout == "strided":
        big = rand((2 * k, 3 * n), dtype)
        b = big[::2, ::3]
        pb = pack(b)
    elif layout == "reversed":
        b = rand((k, n), dtype)[::-1, ::-1]
        pb = pack(b)
    else:
        w = rand((3 * n, k + 5), dtype)[::3, 5:]
        pb, b = pack(w, trans_b=True), w.T
    check_close(packed(a, pb), a, b)


def test_a_transposed_and_strided(isa, threads, dtype):
    k, n = 129, 66
    b = rand((k, n), dtype)
    pb = pack(b)
    at = rand((k, 23), dtype)
    check_close(packed(at, pb, trans_a=True), at.T, b)
    big = rand((40, 2 * k), dtype)
    a = big[::2, ::2]
    check_close(packed(a, pb), a, b)


def test_packed_copy_is_independent_of_b(dtype):
    a, b = rand((9, 20), dtype), rand((20, 11), dtype)
    pb = pack(b)
    b_orig = b.copy()
    b[:] = 0.0
    del b
    check_close(packed(a, pb), a, b_orig)


def test_nan_and_inf_propagate(isa, threads, dtype):
    m, k, n = 32, 500, 70
    a, b = rand((m, k), dtype), rand((k, n), dtype)
    a[3, 17] = np.nan       # row 3 of C is NaN
    a[30, 499] = np.inf     # row 30: +-inf, NaN where b's row 499 is 0
    b[499, :5] = 0.0
    b[250, 64] = np.nan     # column 64 (second panel on AVX-512) NaN
    b[0, 69] = np.inf       # column 69 (the last, partial panel): +-inf
    pb = pack(b)
    for beta, c in ((0.0, np.full((m, n), np.nan, dtype)), (1.0, np.zeros((m, n), dtype))):
        got = packed(a, pb, c, beta=beta)
        ref = reference(a, b)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
        assert np.isnan(got[3]).all() and np.isnan(got[:, 64]).all()
        fin = np.isfinite(ref)
        assert fin.sum() > m * n // 2
        np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-3 if dtype == np.float32 else 1e-10, atol=1e-3)


def test_nan_in_c_survives_beta_one(dtype):
    a, b = rand((8, 9), dtype), rand((9, 70), dtype)
    c = np.zeros((8, 70), dtype)
    c[2, 65] = np.nan
    packed(a, pack(b), c, beta=1.0)
    assert np.isnan(c[2, 65]) and np.isnan(c).sum() == 1


@pytest.mark.parametrize("m,k,n", [(32, 700, 130), (7, 13, 17)])
def test_isa_switched_between_pack_and_use(threads, dtype, m, k, n):
    """A packed operand keeps the layout of the ISA that packed it: used under every
    other ISA it gives the same bits as under its own."""
    isas = dlkern.supported_isas()
    prev = dlkern.get_isa()
    a, b = rand((m, k), dtype), rand((k, n), dtype)
    try:
        for packer in isas:
            dlkern.set_isa(packer)
            pb = pack(b)
            assert pb.isa == packer
            own = packed(a, pb)
            check_close(own, a, b)
            for user in isas:
                dlkern.set_isa(user)
                got = packed(a, pb)
                np.testing.assert_array_equal(got, own)
                assert pack(b).isa == user
    finally:
        dlkern.set_isa(prev)


def test_k_zero_scales_c(dtype):
    pb = pack(np.zeros((0, 6), dtype))
    c = np.full((4, 6), 3.0, dtype)
    packed(np.zeros((4, 0), dtype), pb, c, beta=0.5)
    np.testing.assert_array_equal(c, np.full((4, 6), 1.5, dtype))
    c[:] = np.nan
    packed(np.zeros((4, 0), dtype), pb, c, beta=0.0)
    np.testing.assert_array_equal(c, np.zeros((4, 6), dtype))


def test_errors():
    pb = pack(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="_gemm_packed.*3 rows"):
        packed(np.ones((2, 5), np.float32), pb)
    with pytest.raises(TypeError, match="_gemm_packed.*dtype"):
        packed(np.ones((2, 3), np.float64), pb)
    with pytest.raises(ValueError, match="_gemm_packed: c has shape"):
        packed(np.ones((2, 3), np.float32), pb, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="beta"):
        packed(np.ones((2, 3), np.float32), pb, beta=1.0)
    with pytest.raises(ValueError, match="_gemm_pack_b: b must be 2-D"):
        pack(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="_gemm_pack_b"):
        pack(np.ones((3, 3), np.int64))


def test_hooks_are_not_public_kernels():
    assert "_gemm_packed" not in _C.KERNELS and "_gemm_pack_b" not in _C.KERNELS
    assert not hasattr(dlkern.ops, "_gemm_packed")


@pytest.mark.parametrize("trans_a", [False, True], ids=["a_in_place", "a_packed"])
def test_plain_gemm_short_row_panels(isa, threads, dtype, trans_a):
    """Every count of rows left over by the register tile (MR is 4 to 8), on full and
    partial column panels, through plain gemm: row-major A reads the last rows in place,
    a transposed A reads them from the zero-padded packed panel."""
    for m in range(1, 12):
        for k, n in ((300, 64), (29, 97)):
            a, b = rand((m, k), dtype), rand((k, n), dtype)
            c0 = rand((m, n), dtype)
            a_arg = np.ascontiguousarray(a.T) if trans_a else a
            got = _C.gemm(a_arg, b, c0.copy(), alpha=1.5, beta=0.5, trans_a=trans_a)
            check_close(got, a, b, 1.5, 0.5, c0)
