"""The bf16 GEMM's operand layouts of a training step (issue 16): B = W^T with W
row-major (each column's pairs adjacent: packed by 16 x 16 transposes of 32-bit pairs),
A = G^T with G row-major (rows of A strided: packed by zipping two rows of G), and the
narrow tiles for n <= 16 and n <= 32. Every path bit for bit against the C++ scalar
model and, within one depth block, against a NumPy emulation of vdpbf16ps' order written
here (bf16 products are exact in float32, so acc + a * b in float32 is the FMA)."""
import numpy as np
import pytest

from dlkern import _C

HAS_DP = _C._bf16_has_dpbf16()


def bf16_rand(rng, shape):
    """Random bf16 bit patterns of normal values (float32 truncated: any bf16 will do)."""
    x = rng.standard_normal(shape).astype(np.float32)
    return (x.view(np.uint32) >> 16).astype(np.uint16)


def f32(h):
    return (np.asarray(h, np.uint32) << 16).view(np.float32)


def numpy_model(a, b):
    """C = A B (bf16 bits) in vdpbf16ps' order for k <= 768 (one depth block): per pair
    the odd element's product then the even's, each added in float32."""
    fa, fb = f32(a), f32(b)
    m, k = fa.shape
    acc = np.zeros((m, fb.shape[1]), np.float32)
    for e in range(0, k, 2):
        if e + 1 < k:
            acc = acc + np.outer(fa[:, e + 1], fb[e + 1]).astype(np.float32)
        acc = acc + np.outer(fa[:, e], fb[e]).astype(np.float32)
    return acc


def paths(isa):
    return ["best", "fallback"] + (["dpbf16"] if HAS_DP and isa == "avx512" else [])


def run(path, a, b, c=None, **kw):
    return _C._gemm_bf16(a, b, None if c is None else c.copy(), path=path, **kw)


def assert_same(got, want):
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


# (m, k, n): the MLP's shapes scaled down, k with whole and partial 16-pair blocks, odd k
# (a padded pair), k past one depth block (800: 2 blocks of 200 pairs), n on each side of
# the narrow tiles (16, 32) and of the 64-column panel, m not a multiple of any tile, and
# last column panels computed with fewer vectors.
SHAPES = [(37, 64, 10), (40, 70, 16), (23, 33, 17), (50, 96, 32), (19, 45, 33), (61, 800, 70), (13, 31, 130),
          (64, 784, 10), (1, 64, 40), (7, 2, 3),
          # a last column panel of whole vectors (16, 32, 48 of 64) or a partial one (36)
          (24, 46, 80), (18, 64, 96), (12, 40, 112), (18, 50, 100)]


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, True), (True, False), (True, True), (False, False)])
def test_layouts_match_model(isa, threads, m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(m * 7919 + k * 31 + n)
    a = bf16_rand(rng, (m, k))
    b = bf16_rand(rng, (k, n))
    sa = np.ascontiguousarray(a.T) if trans_a else a
    sb = np.ascontiguousarray(b.T) if trans_b else b
    want = run("model", a, b)
    if k <= 768:
        assert_same(want, numpy_model(a, b))
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    want_c = run("model", a, b, c0, alpha=0.5, beta=1.0)
    for path in paths(isa):
        assert_same(run(path, sa, sb, trans_a=trans_a, trans_b=trans_b), want)
        assert_same(run(path, sa, sb, c0, alpha=0.5, beta=1.0, trans_a=trans_a, trans_b=trans_b), want_c)


@pytest.mark.parametrize("trans_a,trans_b", [(False, True), (True, False)])
def test_transposed_operands_in_views(isa, threads, trans_a, trans_b):
    """Stored operands that are themselves views: odd offsets (pairs not 4-byte aligned),
    row strides past the width, a reversed axis."""
    rng = np.random.default_rng(11)
    m, k, n = 29, 66, 21
    a = bf16_rand(rng, (m, k))
    b = bf16_rand(rng, (k, n))
    want = run("model", a, b)
    big_a = bf16_rand(rng, (k + 5, m + 5) if trans_a else (m + 5, k + 5))
    big_b = bf16_rand(rng, (n + 5, k + 5) if trans_b else (k + 5, n + 5))
    va = big_a[1 : 1 + (k if trans_a else m), 3 : 3 + (m if trans_a else k)]
    vb = big_b[1 : 1 + (n if trans_b else k), 3 : 3 + (k if trans_b else n)]
    va[...] = a.T if trans_a else a
    vb[...] = b.T if trans_b else b
    rev = np.ascontiguousarray((a.T if trans_a else a)[::-1])[::-1]
    for path in paths(isa):
        assert_same(run(path, va, vb, trans_a=trans_a, trans_b=trans_b), want)
        assert_same(run(path, rev, vb, trans_a=trans_a, trans_b=trans_b), want)


def test_nan_inf_through_transposed_packing(isa):
    rng = np.random.default_rng(5)
    m, k, n = 9, 40, 12
    a = bf16_rand(rng, (m, k))
    b = bf16_rand(rng, (k, n))
    a[2, 7], b[5, 3], b[30, 11] = 0x7FC0, 0x7F80, 0xFF80  # NaN, +inf, -inf
    want = run("model", a, b)
    assert np.isnan(want[2]).all() and np.isinf(want[:, 3]).any()
    for path in paths(isa):
        got = run(path, np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), trans_a=True, trans_b=True)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])


@pytest.mark.parametrize("m,k,n", [(40, 70, 100), (37, 64, 10), (64, 33, 17), (9, 800, 70)])
def test_float16_transposed_operands(isa, threads, m, k, n):
    """float16 shares the loop nest (the float32 micro-kernel on widened panels) and so the
    transposed packing: stored transposes give the plain layout's result bit for bit, and
    that is the float64 product within K-term float32 accumulation."""
    import dlkern

    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    plain = dlkern.ops.gemm(a, b, out_dtype=np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    bound = k * np.finfo(np.float32).eps * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    assert np.all(np.abs(plain - ref) <= bound)
    for ta, tb in [(True, False), (False, True), (True, True)]:
        sa = np.ascontiguousarray(a.T) if ta else a
        sb = np.ascontiguousarray(b.T) if tb else b
        np.testing.assert_array_equal(dlkern.ops.gemm(sa, sb, trans_a=ta, trans_b=tb, out_dtype=np.float32), plain)
