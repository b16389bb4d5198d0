"""dlkern.ops.matmul and dlkern.ops.gemm against a float64 NumPy reference.

Register tiles (MR x NR) are 6x64 f32 / 8x16 f64 (avx512), 6x16 / 6x8 (avx2) and
4x8 / 4x4 (generic), with half-width kernels for thin right edges; cache blocks are
KC=256..384, MC=64..192, NC=2048 (f64) / 4096 (f32), NC halved per thread on 2 threads.
Shapes are chosen to be 1, prime, exact tile multiples and one off them, and to cross
KC, MC and NC. A single product takes a second thread only above ~4 MFLOP, so small
single products are run on every ISA but not on 2 threads (it would be the same run);
the `threads` fixture drives the large, batched, out= and gemm cases, and
test_thread_counts_agree compares 1, 2 and 3 threads on every threaded path.
"""

import concurrent.futures

import numpy as np
import pytest

import dlkern
from dlkern import reference
from dlkern.ops import gemm, matmul
from helpers import (DTYPES, as64, assert_close, check_matmul, dot_scale, num_threads, rand,
                     ref_matmul, using_isa)


def _ids(cases):
    return [c[0] for c in cases]


# ---------------------------------------------------------------------------- 2-D shapes

SHAPES_2D = [
    (1, 1, 1),
    (2, 3, 5),
    (7, 13, 11),     # primes, smaller than every tile
    (13, 17, 37),    # primes, crossing NR of the small tiles
    (24, 9, 96),     # exact multiples of every MR (4, 6, 8) and NR (4 .. 32)
    (25, 10, 97),    # one past them
    (23, 8, 95),     # one short of them
    (5, 257, 3),     # k just past KC (256)
    (5, 385, 3),     # k just past KC (384)
    (12, 9, 128),    # exact multiples of the 6x64 tile
    (13, 10, 129),   # one past them
    (11, 8, 95),     # a right edge narrower than half a 64-wide panel
    (17, 2, 130),
]


@pytest.mark.parametrize("mkn", SHAPES_2D, ids=lambda s: "x".join(map(str, s)))
def test_matmul_2d(mkn, dtype, isa):
    m, k, n = mkn
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    result = check_matmul(rand(rng, (m, k), dtype), rand(rng, (k, n), dtype), dtype)
    assert result.flags.c_contiguous and result.flags.writeable and result.flags.owndata


LARGE_2D = [
    (301, 300, 290),   # crosses KC, the f64/avx2/generic MC, many tiles; rows split on 2 threads
    (520, 40, 33),     # crosses MC on every path (f32 avx512 MC=128)
    (10, 256, 1500),   # too few row panels for 2 threads: columns are split instead
    (9, 7, 4200),      # crosses NC (4096 f32, 2048 f64)
]


@pytest.mark.parametrize("mkn", LARGE_2D, ids=lambda s: "x".join(map(str, s)))
def test_matmul_2d_large(mkn, dtype, isa, threads):
    m, k, n = mkn
    rng = np.random.default_rng(m + k + n)
    check_matmul(rand(rng, (m, k), dtype), rand(rng, (k, n), dtype), dtype)


# ---------------------------------------------------------------------------- zero sizes

ZERO_SIZE = [
    ((0, 3), (3, 4)),
    ((3, 4), (4, 0)),
    ((3, 0), (0, 4)),          # k = 0: zeros
    ((0,), (0,)),              # 0-d zero
    ((0,), (0, 5)),
    ((4, 0), (0,)),
    ((2, 0, 3), (3, 4)),
    ((0, 3, 4), (4, 5)),
    ((2, 3, 0), (2, 0, 4)),
    ((0, 1, 3, 4), (5, 4, 2)),
    ((2, 0, 3, 4), (1, 4, 5)),
    ((3, 4), (0, 4, 5)),
    ((0, 3, 4), (0, 4, 5)),
]


@pytest.mark.parametrize("shapes", ZERO_SIZE, ids=lambda s: f"{s[0]}@{s[1]}")
def test_matmul_zero_size(shapes, dtype):
    a = np.ones(shapes[0], dtype)
    b = np.ones(shapes[1], dtype)
    expected = np.matmul(a, b)
    result = matmul(a, b)
    assert result.shape == expected.shape
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("shapes", [((3, 0), (0, 4)), ((2, 3, 0), (2, 0, 4)), ((0,), (0,))],
                         ids=["2d", "batched", "vec"])
def test_matmul_k0_overwrites_out(shapes, dtype):
    a, b = np.ones(shapes[0], dtype), np.ones(shapes[1], dtype)
    out = np.full(np.matmul(a, b).shape, np.nan, dtype)
    assert matmul(a, b, out=out) is out
    np.testing.assert_array_equal(out, np.zeros_like(out))


# ---------------------------------------------------------------------------- GEMV shapes

K_GEMV = 83  # 64 + 16 + 3: the 4-vector, 1-vector and scalar loops of every path
GEMV_CASES = [
    ("mat@col", lambda R: (R(45, K_GEMV), R(K_GEMV, 1))),
    ("vec@mat", lambda R: (R(K_GEMV), R(K_GEMV, 45))),
    ("mat@vec", lambda R: (R(45, K_GEMV), R(K_GEMV))),
    ("vec@vec", lambda R: (R(K_GEMV), R(K_GEMV))),
    ("vec@matT", lambda R: (R(K_GEMV), R(45, K_GEMV).T)),
    ("stridedvec@matT", lambda R: (R(2 * K_GEMV)[::-2], R(45, K_GEMV).T)),
    ("mat@stridedvec", lambda R: (R(45, K_GEMV), R(3 * K_GEMV)[::3])),
    ("matT@vec", lambda R: (R(K_GEMV, 45).T, R(K_GEMV))),
    ("vec@batch", lambda R: (R(K_GEMV), R(3, K_GEMV, 45))),
    ("batch@vec", lambda R: (R(3, 45, K_GEMV), R(K_GEMV))),
]


@pytest.mark.parametrize("case", GEMV_CASES, ids=_ids(GEMV_CASES))
def test_matmul_gemv(case, dtype, isa):
    rng = np.random.default_rng(7)
    a, b = case[1](lambda *s: rand(rng, s, dtype))
    check_matmul(a, b, dtype)


# ---------------------------------------------------------------------------- batched

BATCH_CASES = [
    ((2, 1, 5, 7), (3, 7, 4)),
    ((5, 7), (4, 7, 6)),
    ((3, 1, 4, 5), (1, 2, 5, 3)),
    ((6, 9, 13), (6, 13, 11)),       # more items than threads: one item per thread
    ((2, 3, 4, 5, 6), (4, 6, 2)),
    ((500, 1, 3), (500, 3, 1)),      # many tiny GEMV items shared among threads
]


@pytest.mark.parametrize("shapes", BATCH_CASES, ids=lambda s: f"{s[0]}@{s[1]}")
def test_matmul_batched(shapes, dtype, isa, threads):
    rng = np.random.default_rng(11)
    check_matmul(rand(rng, shapes[0], dtype), rand(rng, shapes[1], dtype), dtype)


def test_matmul_batched_large_items(dtype, isa, threads):
    # Items big enough to thread individually: each runs with all threads, one after another.
    rng = np.random.default_rng(12)
    check_matmul(rand(rng, (3, 150, 140), dtype), rand(rng, (140, 130), dtype), dtype)


# ---------------------------------------------------------------------------- views

def _misaligned(R, shape, dtype):
    """An array whose data pointer is 1 byte off the dtype's alignment."""
    count = int(np.prod(shape))
    buf = bytearray(count * np.dtype(dtype).itemsize + 1)
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=1).reshape(shape)
    arr[...] = R(*shape)
    return arr


VIEW_CASES = [
    ("aT_bT", lambda R, dt: (R(13, 7).T, R(11, 13).T)),
    ("a_rows_step2_b_cols_step3", lambda R, dt: (R(14, 13)[::2], R(13, 33)[:, ::3])),
    ("a_cols_step3_b_negative", lambda R, dt: (R(7, 39)[:, ::3], R(13, 11)[::-1, ::-1])),
    ("a_negative_rows_b_fortran", lambda R, dt: (R(7, 13)[::-1], np.asfortranarray(R(13, 11)))),
    ("negative_steps", lambda R, dt: (R(9, 40)[:, ::-3], R(28, 10)[::-2])),
    ("broadcast_to", lambda R, dt: (np.broadcast_to(R(1, 13), (7, 13)), np.broadcast_to(R(13, 1), (13, 11)))),
    ("byte_misaligned", lambda R, dt: (_misaligned(R, (7, 13), dt), _misaligned(R, (13, 11), dt))),
    ("big_strided_a_transposed_b", lambda R, dt: (R(140, 600)[::2, ::2], R(95, 300).T)),
    ("big_transposed_a_negative_b", lambda R, dt: (R(300, 70).T, R(300, 95)[:, ::-1])),
    ("batch_transposed_b_broadcast", lambda R, dt: (R(5, 4, 6, 7).transpose(1, 0, 2, 3), np.broadcast_to(R(7, 3), (5, 7, 3)))),
    ("batch_step_and_negative", lambda R, dt: (R(6, 5, 7)[::2], R(3, 7, 4)[::-1])),
    ("batch_swapaxes_sliced", lambda R, dt: (np.swapaxes(R(4, 7, 5), -1, -2)[:, 1:, ::2], np.swapaxes(R(4, 6, 9), -1, -2)[:, 2:6])),
]


@pytest.mark.parametrize("case", VIEW_CASES, ids=_ids(VIEW_CASES))
def test_matmul_views(case, dtype, isa):
    rng = np.random.default_rng(13)
    a, b = case[1](lambda *s: rand(rng, s, dtype), dtype)
    check_matmul(a, b, dtype)


# ---------------------------------------------------------------------------- out=

def _out_in(base_shape, dtype, view):
    """out = view(base); base is filled with a sentinel that must survive, out with NaN."""
    base = np.full(base_shape, 7.0, dtype)
    out = view(base)
    out[...] = np.nan
    keep = np.ones(base_shape, bool)
    view(keep)[...] = False
    return out, base, keep


def _alias_partial(R, dt):
    buf = R(10, 9)
    return buf[:-1], R(9, 9), buf[1:], None, None


def _adjacent(R, dt):
    buf = np.empty((2, 9, 9), dt)
    buf[0] = R(9, 9)
    buf[1] = np.nan
    return buf[0], R(9, 9), buf[1], None, None


def _alias(which, a_shape, b_shape):
    def make(R, dt):
        a, b = R(*a_shape), R(*b_shape)
        return a, b, (a if which == "a" else b), None, None
    return make


def _into(a_shape, b_shape, base_shape, view):
    def make(R, dt):
        return (R(*a_shape), R(*b_shape)) + _out_in(base_shape, dt, view)
    return make


OUT_CASES = [
    ("contiguous", _into((7, 13), (13, 11), (7, 11), lambda x: x)),
    ("row_padded", _into((7, 13), (13, 11), (7, 20), lambda x: x[:, 3:14])),
    ("strided", _into((7, 13), (13, 11), (14, 33), lambda x: x[::2, ::3])),
    ("fortran", _into((7, 13), (13, 11), (11, 7), lambda x: x.T)),
    ("negative", _into((7, 13), (13, 11), (7, 11), lambda x: x[::-1, ::-1])),
    ("alias_a", _alias("a", (9, 9), (9, 9))),
    ("alias_b", _alias("b", (9, 9), (9, 9))),
    ("alias_a_batched", _alias("a", (3, 9, 9), (9, 9))),
    ("partial_overlap", _alias_partial),
    ("adjacent_no_overlap", _adjacent),
    ("batch_permuted", _into((3, 1, 7, 13), (5, 13, 11), (5, 3, 7, 11), lambda x: x.transpose(1, 0, 2, 3))),
    ("batch_negative", _into((3, 7, 13), (13, 11), (3, 7, 11), lambda x: x[::-1])),
    ("matvec_strided", _into((7, 13), (13,), (14,), lambda x: x[::2])),
    ("vecmat_negative", _into((13,), (13, 11), (11,), lambda x: x[::-1])),
    ("vecvec_0d", _into((13,), (13,), (), lambda x: x[...])),
    ("batch_matvec_strided", _into((3, 7, 13), (13,), (3, 14), lambda x: x[:, ::2])),
]

OUT_CASES_LARGE = [  # large enough for 2 threads
    ("row_padded", _into((130, 140), (140, 150), (130, 160), lambda x: x[:, 5:155])),
    ("strided", _into((130, 140), (140, 150), (260, 150), lambda x: x[::-2])),
]


def _check_out_case(case, dtype):
    rng = np.random.default_rng(17)
    a, b, out, base, keep = case[1](lambda *s: rand(rng, s, dtype), dtype)
    expected, scale = ref_matmul(a, b), dot_scale(a, b)  # before the call: out may alias a or b
    result = matmul(a, b, out=out)
    assert result is out
    assert_close(out, expected, a.shape[-1], dtype, scale)
    if base is not None:
        np.testing.assert_array_equal(base[keep], np.full(int(keep.sum()), 7.0, dtype),
                                      err_msg="matmul wrote outside out")


@pytest.mark.parametrize("case", OUT_CASES, ids=_ids(OUT_CASES))
def test_matmul_out(case, dtype):
    _check_out_case(case, dtype)


@pytest.mark.parametrize("case", OUT_CASES_LARGE, ids=_ids(OUT_CASES_LARGE))
def test_matmul_out_large(case, dtype, isa, threads):
    _check_out_case(case, dtype)


# ---------------------------------------------------------------------------- non-finite

def test_matmul_propagates_nonfinite(dtype, isa):
    rng = np.random.default_rng(19)
    a, b = rand(rng, (9, 13), dtype), rand(rng, (13, 35), dtype)
    a[2, 3] = np.nan
    b[1, 4] = np.inf
    b[5, 30] = -np.inf
    expected = ref_matmul(a, b)
    assert np.isnan(expected).any() and np.isinf(expected).any()  # the pattern is non-trivial
    with np.errstate(invalid="ignore"):
        scale = dot_scale(np.nan_to_num(a), np.nan_to_num(b, posinf=1.0, neginf=1.0))
    assert_close(matmul(a, b), expected, 13, dtype, scale)


# ---------------------------------------------------------------------------- gemm

def _gemm_ref(a, b, c, alpha, beta, trans_a, trans_b):
    """(dlkern.reference.gemm's float64 result, its rounding scale, the depth k)."""
    opa, opb = (as64(a).T if trans_a else as64(a)), (as64(b).T if trans_b else as64(b))
    expected = reference.gemm(a, b, None if beta == 0 else as64(c), alpha, beta, trans_a, trans_b)
    scale = abs(alpha) * dot_scale(opa, opb)
    if beta != 0:
        scale = scale + abs(beta) * np.abs(as64(c))
    return expected, scale, opa.shape[1]


def _stored(R, rows, cols, trans, layout):
    """An operand whose op() is (rows, cols): stored transposed when `trans`."""
    shape = (cols, rows) if trans else (rows, cols)
    if layout == "contiguous":
        return R(*shape)
    return R(2 * shape[0], 3 * shape[1])[::-2, ::3]  # negative row step, strided columns


@pytest.mark.parametrize("trans_a,trans_b,layout", [
    (False, False, "contiguous"), (True, True, "contiguous"),
    (False, True, "strided"), (True, False, "strided")], ids=["NN", "TT", "NT_strided", "TN_strided"])
def test_gemm_trans(trans_a, trans_b, layout, dtype, isa):
    m, k, n = 29, 41, 37
    rng = np.random.default_rng(23)
    R = lambda *s: rand(rng, s, dtype)  # noqa: E731
    a, b = _stored(R, m, k, trans_a, layout), _stored(R, k, n, trans_b, layout)
    result = gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    expected, scale, kk = _gemm_ref(a, b, None, 1.0, 0.0, trans_a, trans_b)
    assert_close(result, expected, kk, dtype, scale)


ALPHA_BETA = [(1.0, 0.0, False), (2.5, 0.0, True), (1.0, 1.0, False), (-0.5, 2.0, True),
              (1.5, -1.0, False), (0.0, 3.0, True), (0.0, 0.0, False)]


@pytest.mark.parametrize("alpha,beta,trans_a", ALPHA_BETA)
def test_gemm_alpha_beta(alpha, beta, trans_a, dtype, isa):
    # k=300 > KC: beta must be applied once, on the first depth block only.
    m, k, n = 19, 300, 23
    rng = np.random.default_rng(29)
    a = rand(rng, (k, m) if trans_a else (m, k), dtype)
    b, c = rand(rng, (k, n), dtype), rand(rng, (m, n), dtype)
    expected, scale, _ = _gemm_ref(a, b, c, alpha, beta, trans_a, False)
    result = gemm(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a)
    assert result is c
    assert_close(c, expected, k, dtype, scale)


def test_gemm_k0_scales_c(dtype):
    c = np.arange(6, dtype=dtype).reshape(2, 3)
    expected = 0.5 * np.arange(6, dtype=np.float64).reshape(2, 3)
    assert gemm(np.ones((2, 0), dtype), np.ones((0, 3), dtype), c, alpha=2.0, beta=0.5) is c
    np.testing.assert_array_equal(c, expected.astype(dtype))


BETA0_NAN_CASES = [  # (name, (m, k, n), trans_b, alpha)
    ("tiles", (7, 13, 11), False, 1.0),
    ("row_gemv_axpy", (1, 83, 45), False, 1.0),
    ("row_gemv_dot", (1, 83, 45), True, 1.0),
    ("col_gemv_dot", (45, 83, 1), False, 1.0),
    ("k_crossing_KC", (10, 300, 40), False, 1.0),
    ("k0", (6, 0, 5), False, 1.0),
    ("alpha0", (7, 13, 11), False, 0.0),
]


@pytest.mark.parametrize("case", BETA0_NAN_CASES, ids=_ids(BETA0_NAN_CASES))
def test_gemm_beta0_ignores_nan_in_c(case, dtype, isa):
    _, (m, k, n), trans_b, alpha = case
    rng = np.random.default_rng(31)
    a = rand(rng, (m, k), dtype)
    b = rand(rng, (n, k) if trans_b else (k, n), dtype)
    c = np.full((m, n), np.nan, dtype)
    c[0, 0] = np.inf
    result = gemm(a, b, c, alpha=alpha, beta=0.0, trans_b=trans_b)
    assert result is c
    expected, scale, _ = _gemm_ref(a, b, None, alpha, 0.0, False, trans_b)
    assert np.isfinite(c).all()
    assert_close(c, expected, k, dtype, scale)


def test_gemm_beta_keeps_nan_in_c(dtype, isa):
    rng = np.random.default_rng(37)
    a, b, c = rand(rng, (7, 13), dtype), rand(rng, (13, 11), dtype), rand(rng, (7, 11), dtype)
    c[3, 4] = np.nan
    expected, scale, _ = _gemm_ref(a, b, c, 1.0, 0.5, False, False)
    gemm(a, b, c, beta=0.5)
    assert_close(c, expected, 13, dtype, scale)


@pytest.mark.parametrize("c_view", ["row_padded", "column_of_wider"])
def test_gemm_c_view(c_view, dtype, isa):
    rng = np.random.default_rng(41)
    m, k = 9, 17
    n = 13 if c_view == "row_padded" else 1
    a, b = rand(rng, (m, k), dtype), rand(rng, (k, n), dtype)
    base = np.full((m, 20), 7.0, dtype)
    c = base[:, 3:3 + n]
    c[...] = rand(rng, (m, n), dtype)
    expected, scale, _ = _gemm_ref(a, b, c, 2.0, -1.0, False, False)
    assert gemm(a, b, c, alpha=2.0, beta=-1.0) is c
    assert_close(c, expected, k, dtype, scale)
    outside = np.ones(base.shape, bool)
    outside[:, 3:3 + n] = False
    assert (base[outside] == 7.0).all(), "gemm wrote outside c"


def test_gemm_c_negative_row_stride(dtype):
    rng = np.random.default_rng(43)
    a, b = rand(rng, (7, 13), dtype), rand(rng, (13, 11), dtype)
    c = np.zeros((7, 11), dtype)[::-1]
    expected, scale, _ = _gemm_ref(a, b, None, 1.0, 0.0, False, False)
    assert gemm(a, b, c) is c
    assert_close(c, expected, 13, dtype, scale)


def test_gemm_large(dtype, isa, threads):
    m, k, n = 200, 300, 150
    rng = np.random.default_rng(47)
    a, b, c = rand(rng, (k, m), dtype), rand(rng, (n, k), dtype), rand(rng, (m, n), dtype)
    expected, scale, _ = _gemm_ref(a, b, c, -1.5, 0.5, True, True)
    gemm(a, b, c, alpha=-1.5, beta=0.5, trans_a=True, trans_b=True)
    assert_close(c, expected, k, dtype, scale)


# ---------------------------------------------------------------------------- agreement

AGREE_CASES = [
    ("gemm_301x300x290", lambda R: (R(301, 300), R(300, 290))),
    ("columns_split", lambda R: (R(10, 256), R(256, 1500))),
    ("batched_small", lambda R: (R(16, 9, 13), R(16, 13, 11))),
    ("gemv_mat@vec", lambda R: (R(2100, 1000), R(1000))),
    ("gemv_row@mat", lambda R: (R(1, 1000), R(1000, 2100))),
    ("gemv_vec@matT", lambda R: (R(1000), R(2100, 1000).T)),
]


@pytest.mark.parametrize("case", AGREE_CASES, ids=_ids(AGREE_CASES))
def test_thread_counts_agree(case, dtype, isa):
    rng = np.random.default_rng(53)
    a, b = case[1](lambda *s: rand(rng, s, dtype))
    expected, scale, k = ref_matmul(a, b), dot_scale(a, b), a.shape[-1]
    results = {}
    for n in (1, 2, 3):
        with num_threads(n):
            results[n] = matmul(a, b)
        assert_close(results[n], expected, k, dtype, scale)
    for n in (2, 3):  # each within tol of the reference, so within 2*tol of each other
        assert_close(results[n], as64(results[1]), k, dtype, 2 * scale)


@pytest.mark.parametrize("case", AGREE_CASES, ids=_ids(AGREE_CASES))
def test_isas_agree(case, dtype):
    rng = np.random.default_rng(59)
    a, b = case[1](lambda *s: rand(rng, s, dtype))
    expected, scale, k = ref_matmul(a, b), dot_scale(a, b), a.shape[-1]
    results = {}
    for name in dlkern.supported_isas():
        with using_isa(name):
            results[name] = matmul(a, b)
        assert_close(results[name], expected, k, dtype, scale)
    first = dlkern.supported_isas()[0]
    for name, r in results.items():
        assert_close(r, as64(results[first]), k, dtype, 2 * scale)


def test_concurrent_python_threads(isa):
    # Kernels release the GIL; calls from two Python threads must not share scratch buffers.
    rng = np.random.default_rng(61)
    jobs = [(rand(rng, (200, 190), dt), rand(rng, (190, 210), dt), dt)
            for dt in DTYPES for _ in range(2)]
    jobs.append((rand(rng, (1, 900), np.float32), rand(rng, (900, 2500), np.float32), np.float32))

    def run(job):
        a, b, _ = job
        return [matmul(a, b) for _ in range(3)]

    with num_threads(2), concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        all_results = list(pool.map(run, jobs))
    for (a, b, dt), results in zip(jobs, all_results):
        expected, scale = ref_matmul(a, b), dot_scale(a, b)
        for r in results:
            assert_close(r, expected, a.shape[-1], dt, scale)

