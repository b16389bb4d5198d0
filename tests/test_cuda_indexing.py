"""dlkern._C_cuda indexing (take, take_along_axis, put_along_axis, add_at, argmax/argmin),
counter-based random numbers (rand/randn) and the fused GELU (tanh).

Host side (no GPU needed): argument errors raised before device work; the gather/scatter
and arg-reduction plans, checked by running the kernels' addressing in NumPy against
numpy.take & co.; the random-number formula, bit for bit against a Python rewrite of
the hash, and the statistics of its host twin. Everything that needs a GPU is marked
requires_gpu and compares with NumPy references written here (float64 where possible).
"""
import math
import zlib

import numpy as np
import pytest

import dlkern.ops

from cuda_support import argument_error_test, C, requires_gpu, requires_module  # noqa: E402

DTYPES = [np.float32, np.float64]


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def elem_strides(x):
    return tuple(s // x.itemsize for s in x.strides)


# ---------------------------------------------------------------------------
# Host side: argument errors before device work
# ---------------------------------------------------------------------------

test_argument_errors_before_device_work = argument_error_test([
    (lambda: C.take(np.ones(3), np.zeros(2, np.int64)), TypeError, r"^take: x is a numpy.ndarray \(host memory\)"),
    (lambda: C.take([1.0], None), TypeError, r"^take: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.take_along_axis(None, None, 0), TypeError,
     r"^take_along_axis: x must be a dlkern._C_cuda.DeviceArray, got NoneType"),
    (lambda: C.put_along_axis(np.ones(3), np.zeros(1, np.int64), 1.0, 0), TypeError,
     r"^put_along_axis: x is a numpy.ndarray"),
    (lambda: C.add_at(np.ones(3), np.zeros(1, np.int64), 1.0), TypeError, r"^add_at: x is a numpy.ndarray"),
    (lambda: C.argmax(np.ones(3)), TypeError, r"^argmax: x is a numpy.ndarray"),
    (lambda: C.argmin([1.0]), TypeError, r"^argmin: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.gelu_tanh(np.ones(3)), TypeError, r"^gelu_tanh: x is a numpy.ndarray"),
    (lambda: C.gelu_tanh_backward([1.0], np.ones(3)), TypeError,
     r"^gelu_tanh_backward: grad_out must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.rand((2, -1), 0), ValueError, r"^rand: negative dimension in shape \(2, -1\)"),
    (lambda: C.randn((2,), -1), ValueError, r"^randn: seed must be in \[0, 2\*\*64\), got -1"),
    (lambda: C.rand((2,), 2 ** 64), ValueError, r"^rand: seed must be in \[0, 2\*\*64\)"),
    (lambda: C.rand((2,), 1.5), TypeError, r"^rand: seed must be an int, got float"),
    (lambda: C.rand((2,), True), TypeError, r"^rand: seed must be an int, got bool"),
    (lambda: C.rand((2,), 0, dtype="int64"), TypeError, r"^rand: dtype int64 is not supported"),
    (lambda: C.randn((2,), 0, dtype="float16"), TypeError, r"^randn: dtype float16 is not supported"),
    (lambda: C.rand("ab", 0), TypeError, r"^rand: shape must be an int or a sequence of ints, got str"),
    (lambda: C._rand_host((3,), -5), ValueError, r"^_rand_host: seed must be in"),
])


# ---------------------------------------------------------------------------
# Host side: gather/scatter plans, run in NumPy
# ---------------------------------------------------------------------------

def loop_offsets(loop, i):
    """Offsets of linear loop position i for each operand (the kernels' offsets_of)."""
    sizes, strides = loop
    off = [0] * len(strides)
    for d in range(len(sizes) - 1, -1, -1):
        idx = i % sizes[d]
        i //= sizes[d]
        for k in range(len(strides)):
            off[k] += idx * strides[k][d]
    return off


def strided_view(shape, kind, key, dtype=np.float64, integers=None, scale=1.0):
    """(base 1-d storage, element offset, element strides, the view as NumPy sees it).
    kind: contiguous, transposed (reversed axes of a contiguous base), sliced (every
    other element of the last axis, from offset 1), broadcast (first axis stride 0)."""
    rng = rng_for("view", shape, kind, key)
    make = (lambda n: rng.integers(*integers, n)) if integers else (lambda n: rng.uniform(-scale, scale, n))
    shape = tuple(shape)
    if kind == "transposed":
        base = make(int(np.prod(shape, dtype=np.int64))).astype(dtype)
        view = base.reshape(shape[::-1]).transpose()
        return base, 0, elem_strides(view), view
    if kind == "sliced" and shape and shape[-1] > 0:
        big = shape[:-1] + (2 * shape[-1] + 1,)
        base = make(int(np.prod(big, dtype=np.int64))).astype(dtype)
        view = base.reshape(big)[..., 1::2]
        return base, 1, elem_strides(view), view
    if kind == "broadcast" and len(shape) >= 1:
        inner = shape[1:]
        base = make(int(np.prod(inner, dtype=np.int64))).astype(dtype)
        view = np.broadcast_to(base.reshape(inner), shape)
        return base, 0, elem_strides(view), view
    base = make(int(np.prod(shape, dtype=np.int64))).astype(dtype)
    view = base.reshape(shape)
    return base, 0, elem_strides(view), view


def emulate_gather(plan, x_base, x_off, i_base, i_off):
    out = np.zeros(plan["out_shape"], x_base.dtype)
    flat = out.reshape(-1)
    n = plan["axis_size"]
    for pos in range(flat.size):
        d, xo, io = loop_offsets(plan["loop"], pos)
        j = int(i_base[i_off + io])
        j = j + n if j < 0 else j
        assert 0 <= j < n
        flat[d] = x_base[x_off + xo + j * plan["axis_stride"]]
    return out


def emulate_scatter(plan, x_base, x_off, i_base, i_off, v_flat, accumulate):
    n = plan["axis_size"]
    for pos in range(int(np.prod(plan["out_shape"], dtype=np.int64))):
        d, xo, io = loop_offsets(plan["loop"], pos)
        j = int(i_base[i_off + io])
        j = j + n if j < 0 else j
        v = v_flat[d] if v_flat is not None else 1.5
        if accumulate:
            x_base[x_off + xo + j * plan["axis_stride"]] += v
        else:
            x_base[x_off + xo + j * plan["axis_stride"]] = v


TAKE_CASES = [  # (x shape, index shape, axis, x kind, index kind)
    ((5,), (3,), 0, "contiguous", "contiguous"),
    ((4, 5), (2, 3), 1, "transposed", "contiguous"),
    ((4, 5), (), 0, "contiguous", "contiguous"),
    ((3, 4, 5), (7,), 1, "sliced", "contiguous"),
    ((3, 4, 5), (2, 2), -1, "contiguous", "transposed"),
    ((2, 3, 4), (3, 2), 0, "broadcast", "sliced"),
    ((1, 6, 1), (4,), 1, "contiguous", "contiguous"),
    ((3, 0, 2), (2,), 2, "contiguous", "contiguous"),
    ((3, 4), (0,), 0, "contiguous", "contiguous"),
]


@requires_module
@pytest.mark.parametrize("xs, ins, axis, xk, ik", TAKE_CASES, ids=str)
def test_take_plan_matches_numpy(xs, ins, axis, xk, ik):
    xb, xo, xst, x = strided_view(xs, xk, "x")
    n = xs[axis]
    ib, io, ist, idx = strided_view(ins, ik, "i", np.int64, integers=(-n, n) if n else (0, 1))
    p = C._index_plan("take", xs, xst, ins, ist, axis)
    want = np.take(x, idx, axis=axis) if n or idx.size == 0 else np.zeros(p["out_shape"])
    assert p["out_shape"] == want.shape
    assert p["axis_size"] == n
    if n or idx.size == 0:
        np.testing.assert_array_equal(emulate_gather(p, xb, xo, ib, io), want)


@requires_module
def test_take_plan_merges_contiguous_dims():
    # contiguous x and index: the loop keeps (outer, index, inner), each merged to one dim
    p = C._index_plan("take", (2, 3, 5, 7), (105, 35, 7, 1), (4, 6), (6, 1), 2)
    assert p["out_shape"] == (2, 3, 4, 6, 7)
    sizes, (dense, xs, ix) = p["loop"]
    assert sizes == (6, 24, 7)
    assert xs == (35, 0, 1) and ix == (0, 1, 0) and dense == (168, 7, 1)
    assert p["axis_stride"] == 7


ALONG_CASES = [  # (x shape, index shape, axis, x kind)
    ((4, 5), (4, 3), 1, "contiguous"),
    ((4, 5), (2, 5), 0, "transposed"),
    ((4, 5), (1, 3), 1, "contiguous"),     # index broadcast over rows
    ((1, 5), (3, 2), 1, "contiguous"),     # x broadcast over rows
    ((2, 3, 4), (2, 3, 1), -1, "sliced"),
    ((2, 3, 4), (2, 6, 4), 1, "broadcast"),
    ((6,), (10,), 0, "contiguous"),
    ((3, 4), (3, 0), 1, "contiguous"),
]


@requires_module
@pytest.mark.parametrize("xs, ins, axis, xk", ALONG_CASES, ids=str)
def test_take_along_axis_plan_matches_numpy(xs, ins, axis, xk):
    xb, xo, xst, x = strided_view(xs, xk, "x")
    n = xs[axis]
    ib, io, ist, idx = strided_view(ins, "contiguous", "i", np.int64, integers=(-n, n))
    p = C._index_plan("take_along_axis", xs, xst, ins, ist, axis)
    want = np.take_along_axis(x, idx, axis=axis)
    assert p["out_shape"] == want.shape
    np.testing.assert_array_equal(emulate_gather(p, xb, xo, ib, io), want)


@requires_module
@pytest.mark.parametrize("xs, ins, axis, vshape", [
    ((4, 5), (4, 2), 1, (4, 2)), ((4, 5), (4, 2), 1, (1, 2)), ((4, 5), (4, 2), 1, ()),
    ((3, 4, 5), (3, 1, 5), 1, (5,)), ((3, 4, 5), (3, 4, 2), -1, None),
])
def test_put_along_axis_plan_matches_numpy(xs, ins, axis, vshape):
    rng = rng_for("put", xs, ins, axis)
    x = rng.uniform(-1, 1, xs)
    idx = distinct_along(rng, xs, ins, axis)
    v = rng.uniform(-1, 1, vshape) if vshape is not None else None
    # the dense operand is v's own contiguous storage, read with broadcast strides
    p = C._index_plan("put_along_axis", xs, elem_strides(x), ins, elem_strides(idx), axis, vshape)
    want = x.copy()
    np.put_along_axis(want, idx, v if v is not None else 1.5, axis)
    got = x.copy()
    emulate_scatter(p, got.reshape(-1), 0, idx.reshape(-1), 0, None if v is None else v.reshape(-1), accumulate=False)
    np.testing.assert_array_equal(got, want)


@requires_module
@pytest.mark.parametrize("xs, ins", [((5,), (8,)), ((5, 3), (7,)), ((4, 2, 3), (2, 3)), ((6, 1), ())])
def test_add_at_plan_matches_numpy(xs, ins):
    rng = rng_for("add_at", xs, ins)
    x = rng.uniform(-1, 1, xs)
    idx = rng.integers(-xs[0], xs[0], ins).astype(np.int64)  # with repeats
    space = ins + xs[1:]
    v = rng.uniform(-1, 1, space)
    p = C._index_plan("add_at", xs, elem_strides(x), ins, elem_strides(idx))
    assert p["out_shape"] == space
    want = x.copy()
    np.add.at(want, idx, v)
    got = x.copy()
    emulate_scatter(p, got.reshape(-1), 0, idx.reshape(-1), 0, v.reshape(-1), accumulate=True)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


@requires_module
@pytest.mark.parametrize("args, exc, pattern", [
    (("take_along_axis", (3, 4), (4, 1), (3,), (1,), 1), ValueError,
     r"^take_along_axis: indices has shape \(3,\) \(1 dimensions\) but x has shape \(3, 4\)"),
    (("take_along_axis", (3, 4), (4, 1), (2, 4), (4, 1), 1), ValueError,
     r"^take_along_axis: x of shape \(3, 4\) and indices of shape \(2, 4\) do not broadcast on axis 0"),
    (("put_along_axis", (3, 4), (4, 1), (3, 2), (2, 1), 1, (3, 3)), ValueError,
     r"^put_along_axis: values of shape \(3, 3\) cannot be broadcast to \(3, 2\)"),
    (("add_at", (5, 3), (3, 1), (4,), (1,), 0, (4, 2)), ValueError,
     r"^add_at: values of shape \(4, 2\) cannot be broadcast to \(4, 3\)"),
    (("add_at", (), (), (4,), (1,)), ValueError, r"^add_at: x is 0-d"),
    (("take", (3, 4), (4, 1), (2,), (1,), 2), IndexError, r"^take: axis 2 is out of range for an array of 2"),
    (("take", (3, 4), (4, 1), (2,), (1,), 1.0), TypeError, r"^take: axis must be an int, got float"),
    (("take", (2,) * 5, (1,) * 5, (2,) * 5, (16, 1, 8, 1, 4), 0), ValueError, r"^take: strided loop over"),
])
def test_index_plan_errors(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        C._index_plan(*args)


@requires_module
@pytest.mark.parametrize("shape, kind, axis, keepdims", [
    ((7,), "contiguous", None, False), ((4, 5), "transposed", None, True), ((4, 5), "transposed", 0, False),
    ((3, 4, 5), "sliced", 1, True), ((3, 4, 5), "transposed", -1, False), ((2, 1, 3), "contiguous", 1, False),
    ((3, 1), "broadcast", None, False), ((0, 3), "contiguous", 1, False),
])
def test_argreduce_plan_matches_numpy(shape, kind, axis, keepdims):
    # The reduce loop must number the reduced elements in C order of the logical array,
    # whatever the strides: argmax returns that position.
    xb, xo, xst, x = strided_view(shape, kind, "arg")
    p = C._argreduce_plan(shape, xst, axis, keepdims)
    assert p["out_shape"] == np.argmax(x, axis=axis, keepdims=keepdims).shape
    if axis is None:
        sizes, (strides,) = p["reduce_loop"]
        vals = [xb[xo + loop_offsets(p["reduce_loop"], r)[0]] for r in range(x.size)]
        np.testing.assert_array_equal(vals, x.reshape(-1))


@requires_module
def test_argreduce_plan_choice_and_errors():
    # many adjacent outputs, reduced axis strided: a thread per output
    assert C._argreduce_plan((100, 4096), (4096, 1), 0)["threads_per_output"] is True
    assert C._argreduce_plan((4096, 100), (100, 1), 1)["threads_per_output"] is False
    assert C._argreduce_plan((10, 50), (50, 1), 0)["threads_per_output"] is False  # too few outputs
    assert C._argreduce_plan((5000, 7), (7, 1), 1)["threads_per_output"] is True  # short rows
    with pytest.raises(ValueError, match=r"^argmax: attempt to get argmax of an empty sequence \(shape \(3, 0\)\)"):
        C._argreduce_plan((3, 0), (1, 1), 1)
    with pytest.raises(ValueError, match=r"^argmax: attempt to get argmax of an empty sequence"):
        C._argreduce_plan((0,), (1,), None)
    assert C._argreduce_plan((), (), None)["out_shape"] == ()
    assert C._argreduce_plan((3, 4), (4, 1), np.int64(-1), True)["out_shape"] == (3, 1)  # __index__ axes
    with pytest.raises(TypeError, match=r"^argmax: axis must be an int, got bool"):
        C._argreduce_plan((3, 4), (4, 1), True)


# ---------------------------------------------------------------------------
# Host side: the random-number formula and its statistics
# ---------------------------------------------------------------------------

M64 = (1 << 64) - 1


def mix(z):
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def key(seed, stream):
    return mix(mix((seed + 0x6A09E667F3BCC909) & M64) ^ stream)


def bits(k, c):
    return mix(mix((c + 0x9E3779B97F4A7C15) & M64) ^ k)


def py_rand(n, seed, dtype):
    k = key(seed, 0)
    if dtype == np.float32:
        return np.array([(bits(k, i) >> 40) * 2.0 ** -24 for i in range(n)], np.float32)
    return np.array([(bits(k, i) >> 11) * 2.0 ** -53 for i in range(n)], np.float64)


def py_randn(n, seed):
    k = key(seed, 1)
    out = []
    for p in range((n + 1) // 2):
        u1 = ((bits(k, 2 * p) >> 11) + 1) * 2.0 ** -53
        u2 = (bits(k, 2 * p + 1) >> 11) * 2.0 ** -53
        r = math.sqrt(-2.0 * math.log(u1))
        t = 6.283185307179586 * u2
        out += [r * math.cos(t), r * math.sin(t)]
    return np.array(out[:n])


@requires_module
def test_mixer_reference_values():
    # Pins the Python rewrite itself: splitmix64's published first outputs for state 0
    # are mix(k * 0x9E3779B97F4A7C15) for k = 1, 2, ...
    assert mix(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert mix((2 * 0x9E3779B97F4A7C15) & M64) == 0x6E789E6AA1B965F4


@requires_module
@pytest.mark.parametrize("seed", [0, 1, 12345, 2 ** 63, 2 ** 64 - 1])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_rand_host_is_the_formula_bit_for_bit(seed, dtype):
    got = C._rand_host((37,), seed, dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, py_rand(37, seed, dtype))


@requires_module
@pytest.mark.parametrize("seed", [0, 7, 2 ** 64 - 1])
def test_randn_host_is_the_formula(seed):
    got = C._randn_host((41,), seed, np.float64)
    # Same libm on both sides of the host comparison: equal up to the last bit.
    np.testing.assert_allclose(got, py_randn(41, seed), rtol=4e-16, atol=1e-300)
    np.testing.assert_array_equal(C._randn_host((41,), seed), py_randn(41, seed).astype(np.float32))


@requires_module
def test_rand_host_depends_on_seed_and_flat_index_only():
    a = C._rand_host((6, 7), 3)
    np.testing.assert_array_equal(a.reshape(-1), C._rand_host(42, 3))
    np.testing.assert_array_equal(C._rand_host((20,), 3)[:5], C._rand_host((5,), 3))
    np.testing.assert_array_equal(C._randn_host((2, 3, 5), 9, "float64").reshape(-1), C._randn_host(30, 9, "float64"))
    # an odd length keeps the even element of the last pair
    np.testing.assert_array_equal(C._randn_host((7,), 9), C._randn_host((8,), 9)[:7])
    assert C._rand_host((0, 3), 1).shape == (0, 3)
    assert C._rand_host((), 1).shape == ()
    assert not np.array_equal(C._rand_host(16, 1), C._rand_host(16, 2))
    # the uniform and normal streams of one seed are unrelated words
    u = C._rand_host(2 ** 14, 5, "float64")
    z = C._randn_host(2 ** 14, 5, "float64")
    assert abs(np.corrcoef(u, z)[0, 1]) < 5 / math.sqrt(u.size)


def ks_statistic(sample, cdf):
    s = np.sort(sample)
    n = s.size
    f = cdf(s)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


# Kolmogorov-Smirnov bound at significance ~1e-6: sqrt(-ln(1e-6 / 2) / 2) / sqrt(n).
def ks_bound(n):
    return math.sqrt(-math.log(0.5e-6) / 2) / math.sqrt(n)


@requires_module
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_rand_host_statistics(dtype):
    n = 2 ** 18
    for seed in (0, 1, 2 ** 40 + 3):
        u = C._rand_host(n, seed, dtype).astype(np.float64)
        assert u.min() >= 0.0 and u.max() < 1.0
        assert abs(u.mean() - 0.5) < 6 * math.sqrt(1 / 12 / n)
        assert abs(u.var() - 1 / 12) < 6 * math.sqrt(1 / 180 / n)  # var of (u - 1/2)^2 is 1/180
        assert ks_statistic(u, lambda s: s) < ks_bound(n)
        # neighbours, and pairs on a 16 x 16 grid (chi-square, 255 dof, far tail ~ 380)
        assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 6 / math.sqrt(n)
        cells = (np.floor(u[0::2] * 16) * 16 + np.floor(u[1::2] * 16)).astype(np.int64)
        counts = np.bincount(cells, minlength=256)
        expected = n / 2 / 256
        assert ((counts - expected) ** 2 / expected).sum() < 380
    if dtype == np.float32:  # 24-bit grid
        u = C._rand_host(4096, 0, dtype).astype(np.float64)
        assert np.all(u * 2 ** 24 == np.floor(u * 2 ** 24))
    # seeds next to each other give unrelated streams
    for s in (0, 1, 2 ** 63 - 1):
        a, b = C._rand_host(n, s, dtype), C._rand_host(n, s + 1, dtype)
        assert abs(np.corrcoef(a, b)[0, 1]) < 6 / math.sqrt(n)


@requires_module
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_randn_host_statistics(dtype):
    n = 2 ** 16
    normal_cdf = np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))))
    for seed in (0, 3, 2 ** 64 - 2):
        z = C._randn_host(n, seed, dtype).astype(np.float64)
        assert np.all(np.isfinite(z)) and np.abs(z).max() < 8.6  # sqrt(-2 log 2^-53)
        assert abs(z.mean()) < 6 / math.sqrt(n)
        assert abs(z.var() - 1) < 6 * math.sqrt(2 / n)
        assert abs(np.mean(z ** 3)) < 6 * math.sqrt(15 / n)  # skewness
        assert abs(np.mean(z ** 4) - 3) < 6 * math.sqrt(96 / n)  # kurtosis
        assert ks_statistic(z, normal_cdf) < ks_bound(n)
        # the cos and sin halves of a pair are uncorrelated
        assert abs(np.corrcoef(z[0::2], z[1::2])[0, 1]) < 6 / math.sqrt(n / 2)
    a, b = C._randn_host(n, 10, dtype), C._randn_host(n, 11, dtype)
    assert abs(np.corrcoef(a, b)[0, 1]) < 6 / math.sqrt(n)


# ---------------------------------------------------------------------------
# On a device: take, take_along_axis, put_along_axis, add_at
# ---------------------------------------------------------------------------

def device_view(base, offset, strides, shape):
    return C.from_numpy(base).as_strided(shape, strides, offset)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES + [np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("xs, ins, axis, xk, ik", TAKE_CASES + [
    ((1000, 64), (3, 517), 0, "contiguous", "contiguous"),   # an embedding lookup
    ((33, 70, 3), (129,), 1, "transposed", "sliced"),
], ids=str)
def test_take_matches_numpy(xs, ins, axis, xk, ik, dtype):
    xb, xo, xst, x = strided_view(xs, xk, "x", dtype, integers=(-50, 50) if dtype == np.int64 else None)
    n = xs[axis]
    if n == 0 and int(np.prod(ins)) > 0:
        pytest.skip("every index is out of range for an empty axis (tested in test_take_errors)")
    ib, io, ist, idx = strided_view(ins, ik, "i", np.int64, integers=(-n, n) if n else (0, 1))
    got = C.take(device_view(xb, xo, xst, xs), device_view(ib, io, ist, ins), axis)
    want = np.take(x, idx, axis=axis)
    assert got.shape == want.shape and got.is_contiguous()
    np.testing.assert_array_equal(got.numpy(), want)


@requires_gpu
def test_take_axis_none_and_errors():
    x = np.arange(12.0).reshape(3, 4)
    dx = C.from_numpy(x)
    idx = np.array([[0, -1], [5, 11]], np.int64)
    np.testing.assert_array_equal(C.take(dx, C.from_numpy(idx), None).numpy(), np.take(x, idx))
    np.testing.assert_array_equal(C.take(dx.transpose(0, 1), C.from_numpy(idx), None).numpy(), np.take(x.T, idx))
    with pytest.raises(IndexError, match=r"^take: index 4 is out of bounds for axis 1 with size 4"):
        C.take(dx, C.from_numpy(np.array([0, 4, 7], np.int64)), 1)
    with pytest.raises(IndexError, match=r"^take: index -4 is out of bounds for axis 0 with size 3"):
        C.take(dx, C.from_numpy(np.array([[1, 2], [-4, 0]], np.int64)), 0)
    with pytest.raises(IndexError, match=r"^take: index 0 is out of bounds for axis 0 with size 0"):
        C.take(C.from_numpy(np.zeros((0, 2))), C.from_numpy(np.zeros(3, np.int64)), 0)
    with pytest.raises(TypeError, match=r"^take: indices has dtype float32; expected int64"):
        C.take(dx, C.from_numpy(np.zeros(2, np.float32)))
    # the device is still usable after a reported out-of-range index
    np.testing.assert_array_equal(C.take(dx, C.from_numpy(np.array([2], np.int64))).numpy(), x[[2]])


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES + [np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("xs, ins, axis, xk", ALONG_CASES + [((64, 5000), (64, 1), 1, "contiguous")], ids=str)
def test_take_along_axis_matches_numpy(xs, ins, axis, xk, dtype):
    xb, xo, xst, x = strided_view(xs, xk, "x", dtype, integers=(-50, 50) if dtype == np.int64 else None)
    n = xs[axis]
    ib, io, ist, idx = strided_view(ins, "contiguous", "i", np.int64, integers=(-n, n))
    got = C.take_along_axis(device_view(xb, xo, xst, xs), C.from_numpy(idx), axis)
    np.testing.assert_array_equal(got.numpy(), np.take_along_axis(x, idx, axis=axis))


@requires_gpu
def test_take_along_axis_errors():
    dx = C.from_numpy(np.zeros((3, 4), np.float32))
    with pytest.raises(IndexError, match=r"^take_along_axis: index 4 is out of bounds for axis 1 with size 4"):
        C.take_along_axis(dx, C.from_numpy(np.array([[0], [4], [1]], np.int64)), 1)
    with pytest.raises(ValueError, match=r"^take_along_axis: indices has shape \(3,\)"):
        C.take_along_axis(dx, C.from_numpy(np.zeros(3, np.int64)), 1)
    with pytest.raises(TypeError, match=r"^take_along_axis: axis=None"):
        C.take_along_axis(dx, C.from_numpy(np.zeros((3, 1), np.int64)), None)


def distinct_along(rng, xs, ins, axis):
    """int64 indices of shape ins, distinct along `axis` (so the write order of
    put_along_axis does not matter), half of them negative."""
    axis %= len(xs)
    n = xs[axis]
    full = tuple(max(a, b) for a, b in zip(xs, ins))
    full = full[:axis] + (n,) + full[axis + 1:]
    perm = np.argsort(rng.uniform(size=full), axis=axis)
    idx = perm[tuple(slice(0, s) for s in ins)]
    return np.where(rng.uniform(size=idx.shape) < 0.5, idx - n, idx).astype(np.int64)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES + [np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("xs, ins, axis, vshape", [
    ((4, 5), (4, 2), 1, (4, 2)), ((4, 5), (4, 2), 1, (1, 2)), ((4, 5), (4, 2), 1, "scalar"),
    ((3, 4, 5), (3, 1, 5), 1, (5,)), ((3, 4, 5), (3, 4, 2), -1, (3, 4, 2)), ((7, 300), (7, 1), 1, (7, 1)),
], ids=str)
def test_put_along_axis_matches_numpy(xs, ins, axis, vshape, dtype):
    rng = rng_for("put", xs, ins, axis, vshape)
    x = (rng.uniform(-9, 9, xs)).astype(dtype)
    idx = distinct_along(rng, xs, ins, axis)
    v = 3 if vshape == "scalar" else rng.uniform(-9, 9, vshape).astype(dtype)
    want = x.copy()
    np.put_along_axis(want, idx, v, axis)
    dx = C.from_numpy(x)
    assert C.put_along_axis(dx, C.from_numpy(idx), v if vshape == "scalar" else C.from_numpy(v), axis) is None
    np.testing.assert_array_equal(dx.numpy(), want)


@requires_gpu
def test_put_along_axis_into_a_view_and_errors():
    base = np.zeros((5, 4))
    dbase = C.from_numpy(base)
    view = dbase.transpose(0, 1)  # (4, 5), strides (1, 4)
    idx = np.array([[4], [0], [2], [1]], np.int64)
    C.put_along_axis(view, C.from_numpy(idx), C.from_numpy(np.array([[1.0], [2.0], [3.0], [4.0]])), 1)
    want = base.copy()
    np.put_along_axis(want.T, idx, np.array([[1.0], [2.0], [3.0], [4.0]]), 1)
    np.testing.assert_array_equal(dbase.numpy(), want)
    with pytest.raises(TypeError, match=r"^put_along_axis: values has dtype float32 but x has dtype float64"):
        C.put_along_axis(view, C.from_numpy(idx), C.from_numpy(np.ones((4, 1), np.float32)), 1)
    with pytest.raises(ValueError, match=r"^put_along_axis: values of shape \(2,\) cannot be broadcast to \(4, 1\)"):
        C.put_along_axis(view, C.from_numpy(idx), C.from_numpy(np.ones(2)), 1)
    with pytest.raises(IndexError, match=r"^put_along_axis: index -6 is out of bounds for axis 1 with size 5"):
        C.put_along_axis(view, C.from_numpy(np.array([[0], [-6], [0], [0]], np.int64)), 0.0, 1)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ins, vshape", [
    ((5,), (8,), None), ((5, 3), (7,), None), ((4, 2, 3), (2, 3), None), ((6, 1), (), None),
    ((50, 16), (4000,), None),                     # many repeats per row: atomics collide
    ((10, 8), (3, 4), (8,)), ((10, 8), (12,), "scalar"), ((3,), (0,), None),
], ids=str)
def test_add_at_matches_numpy(xs, ins, vshape, dtype):
    rng = rng_for("add_at", xs, ins, vshape)
    x = rng.uniform(-1, 1, xs).astype(dtype)
    idx = rng.integers(-xs[0], xs[0], ins).astype(np.int64)
    space = tuple(ins) + tuple(xs[1:])
    if vshape == "scalar":
        v, dv = 0.25, 0.25
    else:
        v = rng.uniform(-1, 1, vshape or space).astype(dtype)
        dv = C.from_numpy(v)
    want = x.astype(np.float64)
    np.add.at(want, idx, np.asarray(v, np.float64))
    dx = C.from_numpy(x)
    assert C.add_at(dx, C.from_numpy(idx), dv) is None
    rows = np.where(idx < 0, idx + xs[0], idx).reshape(-1)
    repeats = int(np.bincount(rows, minlength=xs[0]).max()) if idx.size else 1
    # atomics add in any order: float error grows with the repeats (values are O(1))
    tol = 8 * np.finfo(dtype).eps * max(repeats, 1) ** 1.5
    np.testing.assert_allclose(dx.numpy(), want, rtol=tol, atol=tol)


@requires_gpu
def test_add_at_strided_x_and_errors():
    base = np.zeros((6, 4))
    dbase = C.from_numpy(base)
    col = dbase.as_strided((6,), (4,), 1)  # column 1
    idx = np.array([0, 5, 0, -1, 2], np.int64)
    C.add_at(col, C.from_numpy(idx), C.from_numpy(np.array([1.0, 2.0, 3.0, 4.0, 5.0])))
    want = base.copy()
    np.add.at(want[:, 1], idx, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(dbase.numpy(), want)
    with pytest.raises(IndexError, match=r"^add_at: index 6 is out of bounds for axis 0 with size 6"):
        C.add_at(col, C.from_numpy(np.array([6], np.int64)), 1.0)
    with pytest.raises(ValueError, match=r"^add_at: values of shape \(3,\) cannot be broadcast to \(5,\)"):
        C.add_at(col, C.from_numpy(idx), C.from_numpy(np.ones(3)))
    with pytest.raises(TypeError, match=r"^add_at: indices has dtype float64; expected int64"):
        C.add_at(col, C.from_numpy(np.ones(3)), 1.0)


# ---------------------------------------------------------------------------
# On a device: argmax / argmin
# ---------------------------------------------------------------------------

@requires_gpu
@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dtype", DTYPES + [np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("shape, kind, axis, keepdims", [
    ((7,), "contiguous", None, False), ((4, 5), "transposed", None, True), ((4, 5), "transposed", 0, False),
    ((3, 4, 5), "sliced", 1, True), ((3, 4, 5), "transposed", -1, False), ((2, 1, 3), "contiguous", 1, False),
    ((3, 1), "broadcast", None, False), ((0, 3), "contiguous", 1, False), ((), "contiguous", None, False),
    ((100003,), "contiguous", None, False),        # one block strides through many elements
    ((50, 4099), "contiguous", 0, False),          # thread per output
    ((4099, 50), "contiguous", 1, True), ((257, 3, 129), "transposed", 1, False),
    ((3001, 7), "contiguous", 1, False), ((7, 3001), "transposed", 0, True),  # thread per short row
], ids=str)
def test_argmax_argmin_match_numpy(name, dtype, shape, kind, axis, keepdims):
    # small integers: many ties, so "first occurrence" is exercised everywhere
    xb, xo, xst, x = strided_view(shape, kind, "argmax", dtype, integers=(-3, 4))
    got = getattr(C, name)(device_view(xb, xo, xst, shape), axis, keepdims)
    want = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert got.dtype == np.int64 and got.shape == want.shape
    np.testing.assert_array_equal(got.numpy(), want)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_argmax_nan_inf_and_errors(dtype):
    rng = rng_for("nan", dtype)
    x = rng.standard_normal((6, 1000)).astype(dtype)
    x[1, 700] = np.nan
    x[1, 900] = np.nan          # the first NaN wins
    x[2, :] = -np.inf           # all equal: position 0
    x[3, 5] = np.inf
    x[4, 999] = np.nan
    x[5, :] = np.nan
    dx = C.from_numpy(x)
    for name in ("argmax", "argmin"):
        for axis in (None, 1, 0):
            np.testing.assert_array_equal(getattr(C, name)(dx, axis).numpy(), getattr(np, name)(x, axis=axis))
        np.testing.assert_array_equal(getattr(C, name)(dx.transpose(0, 1), 0).numpy(), getattr(np, name)(x.T, axis=0))
    with pytest.raises(ValueError, match=r"^argmin: attempt to get argmin of an empty sequence"):
        C.argmin(C.from_numpy(np.zeros((2, 0), dtype)), 1)
    with pytest.raises(IndexError, match=r"^argmax: axis 2 is out of range"):
        C.argmax(dx, 2)


@requires_gpu
def test_bool_take_put_add_at_and_argmax_refused():
    # The bindings' dtype switches had no bool case: take returned uninitialised memory,
    # put_along_axis/add_at wrote nothing, argmax returned garbage.
    x = np.array([[True, False, True], [False, False, True]])
    idx = np.array([2, 0, 1, 1], np.int64)
    dx, di = C.from_numpy(x), C.from_numpy(idx)
    np.testing.assert_array_equal(C.take(dx, di, 1).numpy(), np.take(x, idx, 1))
    np.testing.assert_array_equal(C.take(dx, di, None).numpy(), np.take(x, idx))
    y = np.zeros((2, 3), bool)
    dy = C.from_numpy(y)
    ia = np.array([[1], [2]], np.int64)
    C.put_along_axis(dy, C.from_numpy(ia), True, 1)
    np.put_along_axis(y, ia, True, 1)
    np.testing.assert_array_equal(dy.numpy(), y)
    z = np.zeros(4, bool)
    dz = C.from_numpy(z)
    ai = np.array([1, 1, 3], np.int64)
    av = np.array([True, False, False])
    C.add_at(dz, C.from_numpy(ai), C.from_numpy(av))
    np.add.at(z, ai, av)
    np.testing.assert_array_equal(dz.numpy(), z)
    with pytest.raises(TypeError, match=r"^argmax: x has dtype bool"):
        C.argmax(dx)


# ---------------------------------------------------------------------------
# On a device: rand / randn
# ---------------------------------------------------------------------------

@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (1000, 1001), (2, 3, 4, 5), (0, 4), (1 << 21,)], ids=str)
def test_rand_device_equals_host_twin(shape, dtype):
    for seed in (0, 99, 2 ** 64 - 1):
        got = C.rand(shape, seed, dtype)
        assert got.shape == shape and got.dtype == dtype
        np.testing.assert_array_equal(got.numpy(), C._rand_host(shape, seed, dtype))  # integer math: bit-exact
        z = C.randn(shape, seed, dtype)
        tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(z.numpy(), C._randn_host(shape, seed, dtype), **tol)


@requires_gpu
def test_rand_device_args():
    a = C.rand(5, 1, device=0)
    assert a.device == 0 and a.shape == (5,) and a.dtype == np.float32
    s = C.Stream()
    b = C.randn((4, 4), 2, "float64", None, s)
    assert b.stream == s
    np.testing.assert_allclose(b.numpy(), C._randn_host((4, 4), 2, "float64"), rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------
# On a device: fused GELU (tanh)
# ---------------------------------------------------------------------------

def gelu_ref(x):
    x = x.astype(np.float64)
    z = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return 0.5 * x * (1 + np.tanh(z))


def gelu_grad_ref(dy, x):
    x = x.astype(np.float64)
    z = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    t = np.tanh(z)
    dz = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x ** 2)
    return dy.astype(np.float64) * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * dz)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("shape, kind", [
    ((), "contiguous"), ((1,), "contiguous"), ((1023,), "contiguous"), ((17, 33), "transposed"),
    ((4, 5, 6), "sliced"), ((3, 64, 257), "contiguous"), ((0, 5), "contiguous"), ((6, 8), "broadcast"),
], ids=str)
def test_gelu_tanh_matches_cpu_op_and_reference(shape, kind, dtype):
    # [-6, 6]: both saturated tails and the curved middle
    xb, xo, xst, x = strided_view(shape, kind, "gelu", dtype, scale=6.0)
    gb, go, gst, g = strided_view(shape, "contiguous", "gelu-g", dtype)
    dx_view = device_view(xb, xo, xst, shape)
    y = C.gelu_tanh(dx_view)
    dgrad = C.gelu_tanh_backward(device_view(gb, go, gst, shape), dx_view)
    assert y.shape == shape and y.is_contiguous() and dgrad.shape == shape
    xc = np.ascontiguousarray(x)
    cpu_y = dlkern.ops.gelu_tanh(xc)
    cpu_g = dlkern.ops.gelu_tanh_backward(np.ascontiguousarray(g), xc)
    # Against the CPU op: the same float formula, only exp differs (a few ulp). Against the
    # float64 reference: float32 rounding of z is amplified by exp (~2e-6 relative at
    # |x| = 6), and the tanh form of the reference cancels in the negative tail.
    if dtype == np.float32:
        cpu_tol, ref_tol = dict(rtol=2e-6, atol=1e-6), dict(rtol=6e-6, atol=2e-6)
    else:
        cpu_tol, ref_tol = dict(rtol=1e-13, atol=2e-14), dict(rtol=1e-13, atol=2e-14)
    np.testing.assert_allclose(y.numpy(), cpu_y, **cpu_tol)
    np.testing.assert_allclose(dgrad.numpy(), cpu_g, **cpu_tol)
    np.testing.assert_allclose(y.numpy(), gelu_ref(x), **ref_tol)
    np.testing.assert_allclose(dgrad.numpy(), gelu_grad_ref(g, x), **ref_tol)


@requires_gpu
def test_gelu_tanh_edges_and_errors():
    x = np.array([np.nan, np.inf, 1e4, -1e4, 0.0, 30.0, -30.0], np.float32)
    y = C.gelu_tanh(C.from_numpy(x)).numpy()
    assert np.isnan(y[0])  # NaN stays NaN; saturated tails are exactly x and 0
    np.testing.assert_array_equal(y[1:], np.array([np.inf, 1e4, 0.0, 0.0, 30.0, 0.0], np.float32))
    g = C.gelu_tanh_backward(C.from_numpy(np.ones(3, np.float32)), C.from_numpy(np.array([0.0, 30.0, -30.0], np.float32)))
    np.testing.assert_array_equal(g.numpy(), [0.5, 1.0, 0.0])
    dx = C.from_numpy(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^gelu_tanh_backward: grad_out has shape \(3,\) but x has shape \(2, 3\)"):
        C.gelu_tanh_backward(C.from_numpy(np.ones(3)), dx)
    with pytest.raises(TypeError, match=r"^gelu_tanh_backward: grad_out has dtype float32 but x has dtype float64"):
        C.gelu_tanh_backward(C.from_numpy(np.ones((2, 3), np.float32)), dx)
    with pytest.raises(TypeError, match=r"^gelu_tanh: x has dtype int64"):
        C.gelu_tanh(C.from_numpy(np.ones(3, np.int64)))
