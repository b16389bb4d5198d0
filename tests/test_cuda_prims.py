"""dlkern._C_cuda elementwise primitives used by the autograd layer on CUDA: out=, the
bool dtype, the extra unary ops and logaddexp, int64 arithmetic with int scalars,
comparisons, logical ops, where, clip, astype, full, arange and fill_.

Host-side logic (out= aliasing classification, arange's length rule, argument errors
raised before any device work, signatures) runs wherever the CUDA module is built.
Everything that needs a GPU is marked requires_gpu and compares against NumPy
references computed here (in float64 where the op allows).
"""
import math
import zlib

import numpy as np
import pytest

from cuda_support import argument_error_test, C, no_gpu_only, requires_gpu, requires_module  # noqa: E402

FLOATS = [np.float32, np.float64]
ALL_DTYPES = [np.float32, np.float64, np.int64, np.bool_]
KINDS = ["contiguous", "transposed", "sliced"]


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def tol(dtype):
    # A few ulps of the result: CUDA's libm is within 1-2 ulps without fast-math.
    return dict(rtol=4e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)


def host_values(shape, dtype, rng, low=-2.0, high=2.0):
    if dtype == np.bool_:
        return rng.random(size=shape) < 0.5
    if dtype == np.int64:
        return rng.integers(-50, 50, size=shape).astype(np.int64)
    return np.asarray(rng.uniform(low, high, size=shape)).astype(dtype)


def make_input(shape, dtype, kind, seed=0, low=-2.0, high=2.0):
    """(host array, device array) with the same values: contiguous, transposed (a
    permuted view) or sliced (every other element of a larger array)."""
    rng = rng_for("prims-input", shape, np.dtype(dtype).name, kind, seed)
    if kind == "contiguous":
        host = host_values(shape, dtype, rng, low, high)
        return host, C.from_numpy(host)
    if kind == "transposed":
        base = host_values(shape[::-1], dtype, rng, low, high)
        dims = tuple(range(len(shape)))[::-1]
        return base.transpose(dims), C.from_numpy(base).permute(dims)
    big = host_values(tuple(2 * d for d in shape), dtype, rng, low, high)
    dev = C.from_numpy(big)
    view = dev.as_strided(shape, tuple(2 * s for s in dev.strides), 0)
    return big[tuple(slice(None, None, 2) for _ in shape)], view


# ---------------------------------------------------------------------------
# Host side: runs without a GPU
# ---------------------------------------------------------------------------

@requires_module
@pytest.mark.parametrize("shape, out, inp, want", [
    # (out_addr, out_strides, item), (in_addr, in_strides, item)
    ((4, 3), (1000, (3, 1), 4), (1000, (3, 1), 4), "same"),          # add(p, w, out=p)
    ((4, 3), (1000, (3, 1), 4), (2000, (3, 1), 4), "none"),          # disjoint buffers
    ((4, 3), (1000, (3, 1), 4), (1048, (3, 1), 4), "none"),          # adjacent, not overlapping
    ((4, 3), (1000, (3, 1), 4), (1044, (3, 1), 4), "partial"),       # last element shared
    ((4, 3), (1004, (3, 1), 4), (1000, (3, 1), 4), "partial"),       # shifted by one element
    ((4, 3), (1000, (3, 1), 4), (1000, (1, 4), 4), "partial"),       # transposed view of itself
    ((4, 3), (1000, (3, 1), 4), (1000, (0, 1), 4), "partial"),       # broadcast row read in place
    ((1, 3), (1000, (7, 1), 4), (1000, (3, 1), 4), "same"),          # size-1 axes: any stride
    ((4, 3), (1000, (3, 1), 1), (1000, (3, 1), 4), "partial"),       # bool out over float input
    ((0, 3), (1000, (3, 1), 4), (1000, (3, 1), 4), "none"),          # nothing is written
    ((3,), (1000, (-1,), 8), (984, (1,), 8), "partial"),             # negative strides: [984, 1008)
    ((3,), (1000, (-1,), 8), (1008, (1,), 8), "none"),
], ids=str)
def test_out_alias_classification(shape, out, inp, want):
    assert C._alias(shape, out[0], out[1], out[2], inp[0], inp[1], inp[2]) == want


INT_CMP = {"greater": lambda x, s: x > s, "greater_equal": lambda x, s: x >= s, "less": lambda x, s: x < s,
           "less_equal": lambda x, s: x <= s, "equal": lambda x, s: x == s, "not_equal": lambda x, s: x != s}


@requires_module
@pytest.mark.parametrize("name", sorted(INT_CMP))
@pytest.mark.parametrize("s", [2.5, -2.5, 3.0, -0.0, 0.5, float("nan"), float("inf"), -float("inf"), 1e19, -1e19,
                               2.0 ** 63, -(2.0 ** 63), 2.0 ** 62 + 0.0, 9007199254740993.0, -1e-300], ids=repr)
@pytest.mark.parametrize("scalar_on_left", [False, True])
def test_int64_compare_with_float_is_exact(name, s, scalar_on_left):
    # Python compares int and float exactly: the reference, even past 2**53 where NumPy
    # would round the int to float64 first.
    op, k = C._int_compare(name, s, scalar_on_left)
    xs = [-(2 ** 63), -(2 ** 63) + 1, -3, -2, -1, 0, 1, 2, 3, 2 ** 53 + 1, 2 ** 62 - 1, 2 ** 62, 2 ** 62 + 1,
          2 ** 63 - 1]
    for x in xs:
        want = INT_CMP[name](s, x) if scalar_on_left else INT_CMP[name](x, s)
        assert INT_CMP[op](x, k) == want, (x, op, k)


@requires_module
def test_loops_take_four_operands_for_where():
    # (out, cond, a, b): a contiguous where collapses to one flat dimension ...
    assert C._make_loop((2, 3, 4), [(12, 4, 1)] * 4) == ((24,), [(1,)] * 4)
    # ... and broadcast operands keep the dimensions they do not step through
    assert C._make_loop((2, 3, 4), [(12, 4, 1), (0, 1, 0), (12, 4, 1), (0, 0, 1)]) == \
        ((2, 3, 4), [(12, 4, 1), (0, 1, 0), (12, 4, 1), (0, 0, 1)])
    with pytest.raises(ValueError, match=r"make_loop: too many operands"):
        C._make_loop((2, 3), [(3, 1)] * 5)


@requires_module
@pytest.mark.parametrize("args", [
    (0, 10, 1), (0, 10, 3), (10, 0, -3), (-1, 0, 3), (0, -1, 3), (5, 5, 1), (5, 5, -1), (3, 7, -1),
    (-7, 7, 7), (-7, 8, 7), (7, -7, -2), (1, 2, 100), (-(2 ** 62), 2 ** 62, 2 ** 61 + 1),
], ids=str)
def test_arange_length_matches_numpy(args):
    assert C._arange_length(*args) == len(np.arange(*args))


@requires_module
def test_arange_length_no_int64_overflow():
    # stop - start overflows int64; the count does not.
    assert C._arange_length(-(2 ** 63), 2 ** 63 - 1, 2 ** 62) == 4
    assert C._arange_length(2 ** 63 - 1, -(2 ** 63), -(2 ** 63 - 1)) == 3


UNARY = ["negative", "neg", "exp", "log", "sqrt", "abs", "tanh", "sigmoid", "relu", "sin", "cos", "sign",
         "log1p", "expm1", "erf", "square", "reciprocal"]
BINARY = ["add", "subtract", "sub", "multiply", "mul", "divide", "div", "maximum", "minimum", "power", "pow",
          "logaddexp"]
COMPARE = ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"]


@requires_module
def test_every_elementwise_op_takes_out():
    for name in UNARY + BINARY + COMPARE + ["logical_not", "logical_and", "logical_or", "where", "clip"]:
        assert "out: object = None" in getattr(C, name).__doc__, name
    assert "full(shape: object, value: object, dtype: object = 'float32', device: object = None, " \
           "stream: object = None)" in C.full.__doc__
    assert "arange(start: object, stop: object = None, step: object = 1, dtype: object = None" in C.arange.__doc__
    assert "fill_(x: object, value: object)" in C.fill_.__doc__
    assert "astype(x: object, dtype: object)" in C.astype.__doc__


HOST_ARRAY = np.ones(3)


test_argument_errors_before_device_work = argument_error_test([
    (lambda: C.sin(1.0), TypeError, r"^sin: x must be a dlkern._C_cuda.DeviceArray, got a Python number"),
    (lambda: C.erf(HOST_ARRAY), TypeError, r"^erf: x is a numpy.ndarray \(host memory\)"),
    (lambda: C.exp([1.0]), TypeError, r"^exp: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.logaddexp(1.0, 2), TypeError, r"^logaddexp: at least one operand must be a dlkern._C_cuda.DeviceArray"),
    (lambda: C.add(1, "x"), TypeError, r"^add: b must be a dlkern._C_cuda.DeviceArray, got str"),
    (lambda: C.greater(1, 2.0), TypeError, r"^greater: at least one operand must be"),
    (lambda: C.equal(HOST_ARRAY, 1), TypeError, r"^equal: a is a numpy.ndarray"),
    (lambda: C.logical_not(True), TypeError, r"^logical_not: at least one operand must be"),
    (lambda: C.logical_or(True, None), TypeError, r"^logical_or: b must be a dlkern._C_cuda.DeviceArray, got NoneType"),
    (lambda: C.where(True, 1.0, 2.0), TypeError, r"^where: cond must be a bool DeviceArray, got a Python number"),
    (lambda: C.where(HOST_ARRAY > 0, 1.0, 2.0), TypeError, r"^where: cond is a numpy.ndarray"),
    (lambda: C.clip(1.0, 0, 1), TypeError, r"^clip: x must be a dlkern._C_cuda.DeviceArray, got a Python number"),
    (lambda: C.clip(HOST_ARRAY, 0, 1), TypeError, r"^clip: x is a numpy.ndarray"),
    (lambda: C.zeros_like(HOST_ARRAY), TypeError, r"^zeros_like: x is a numpy.ndarray"),
    (lambda: C.full_like(1.0, 2.0), TypeError, r"^full_like: x must be a dlkern._C_cuda.DeviceArray, got float"),
    (lambda: C.ones((2,), "int16"), TypeError, r"^ones: dtype int16 is not supported"),
    (lambda: C.astype([1.0], "float32"), TypeError, r"^astype: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.fill_(HOST_ARRAY, 1.0), TypeError, r"^fill_: x is a numpy.ndarray"),
    (lambda: C.full((2,), "x"), TypeError, r"^full: value must be a Python number, got str"),
    (lambda: C.full((2,), 1.0, "int32"), TypeError, r"^full: dtype int32 is not supported on CUDA \(float32, float64, int64 or bool\)"),
    (lambda: C.full((2,), 2.0 ** 70, "int64"), ValueError, r"^full: value 1.18\d*e\+21 cannot be converted to int64"),
    (lambda: C.full((2,), float("nan"), np.int64), ValueError, r"^full: value nan cannot be converted to int64"),
    (lambda: C.full((2,), 2 ** 64, np.int64), ValueError, r"^full: value .* does not fit in int64"),
    (lambda: C.full((-1,), 1.0), ValueError, r"^full: negative size in shape \(-1,\)"),
    (lambda: C.full((2,), 1.0, stream=0), TypeError, r"^full: stream must be a dlkern._C_cuda.Stream or None, got int"),
    (lambda: C.arange(0, 10, 0), ValueError, r"^arange: step must not be zero"),
    (lambda: C.arange(0.5, 3, dtype="int64"), TypeError, r"^arange: float start/stop/step with dtype int64"),
    (lambda: C.arange(3, dtype=bool), TypeError, r"^arange: dtype bool is not supported"),
    (lambda: C.arange(3, dtype="float16"), TypeError, r"^arange: dtype float16 is not supported on CUDA"),
    (lambda: C.arange(0, float("inf")), ValueError, r"^arange: the length of arange\(0, inf, 1\) is not finite"),
    (lambda: C.arange(0.0, 1e300, 1.0), ValueError, r"^arange: arange\(0, 1e\+300, 1\) is too long"),
    (lambda: C.arange("a"), TypeError, r"^arange: stop must be a Python number, got str"),
    (lambda: C.full((2,), object()), TypeError, r"^full: value must be a Python number, got object"),
    # NumPy scalars count as numbers: the call gets as far as the dtype
    (lambda: C.arange(np.int64(3), np.float32(5.0), dtype="float16"), TypeError, r"^arange: dtype float16"),
    (lambda: C.arange(0, 2 ** 70), ValueError, r"^arange: stop does not fit in int64"),
    (lambda: C.arange(0, 3, stream=1), TypeError, r"^arange: stream must be a dlkern._C_cuda.Stream or None"),
    (lambda: C.zeros(3, "int8"), TypeError, r"^zeros: dtype int8 is not supported on CUDA \(float32, float64, int64 or bool\)"),
    (lambda: C.from_numpy(np.ones(2, np.uint8)), TypeError, r"^from_numpy: dtype uint8 is not supported"),
], ids=lambda v: v if isinstance(v, str) else None)


@no_gpu_only
@pytest.mark.parametrize("call, op", [
    (lambda: C.zeros(3, bool), "zeros"), (lambda: C.empty((2, 2), np.bool_), "empty"),
    (lambda: C.from_numpy(np.ones(3, bool)), "from_numpy"), (lambda: C.full((2,), True, "bool"), "full"),
    (lambda: C.full((2,), 7.9, "int64"), "full"), (lambda: C.arange(5), "arange"),
    (lambda: C.arange(0.5, 2, 0.25, dtype="float64"), "arange"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_valid_arguments_reach_the_device(call, op):
    # The arguments pass every check; only the missing GPU stops the call.
    with pytest.raises(RuntimeError, match=rf"^{op}: CUDA failed to find a usable device"):
        call()


# ---------------------------------------------------------------------------
# Device side: needs a GPU
# ---------------------------------------------------------------------------

def np_erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


UNARY_REF = {
    "sin": np.sin, "cos": np.cos, "sign": np.sign, "log1p": np.log1p, "expm1": np.expm1, "erf": np_erf,
    "square": np.square, "reciprocal": lambda x: 1.0 / x,
}


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", sorted(UNARY_REF))
@pytest.mark.parametrize("shape", [(), (1,), (37,), (3, 5), (2, 3, 4)], ids=str)
def test_new_unary_ops_match_numpy(name, kind, dtype, shape):
    # (-0.9, 4): inside log1p's domain, away from reciprocal's pole in most draws.
    host, dev = make_input(shape, dtype, kind, seed=1, low=-0.9, high=4.0)
    got = getattr(C, name)(dev)
    assert got.dtype == np.dtype(dtype) and got.shape == shape and got.is_contiguous()
    want = UNARY_REF[name](host.astype(np.float64))
    np.testing.assert_allclose(got.numpy(), want, **tol(dtype))


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_unary_special_values(dtype):
    x = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, -1e-30, 30.0, -30.0], dtype)
    d = C.from_numpy(x)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(C.sign(d).numpy(), np.sign(x))
        # assert_array_equal takes -0.0 == 0.0: compare the sign bits too (np.sign(-0.0) is +0.0).
        np.testing.assert_array_equal(np.signbit(C.sign(d).numpy()), np.signbit(np.sign(x)))
        np.testing.assert_array_equal(C.square(d).numpy(), np.square(x))
        np.testing.assert_array_equal(C.reciprocal(d).numpy(), (1 / x).astype(dtype))
        np.testing.assert_allclose(C.log1p(d).numpy(), np.log1p(x), rtol=4e-6)
        np.testing.assert_allclose(C.expm1(d).numpy(), np.expm1(x), rtol=4e-6)
        np.testing.assert_array_equal(np.isnan(C.sin(d).numpy()), np.isnan(np.sin(x)))
    np.testing.assert_allclose(C.erf(d).numpy(), np_erf(x.astype(np.float64)), rtol=4e-6, atol=0)


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["exp", "neg", "tanh", "sqrt", "erf", "square"])
def test_unary_out_in_place_and_strided(name, dtype):
    host, dev = make_input((4, 6), dtype, "contiguous", seed=2, low=0.1, high=2.0)
    want = getattr(C, name)(dev).numpy()
    # in place: out is x itself
    x = C.from_numpy(host)
    assert getattr(C, name)(x, out=x) is x
    np.testing.assert_array_equal(x.numpy(), want)
    # out a transposed view: the values land at the right positions
    base = C.zeros((6, 4), dtype)
    out = base.permute(1, 0)
    assert getattr(C, name)(dev, out=out) is out
    np.testing.assert_array_equal(out.numpy(), want)
    np.testing.assert_array_equal(base.numpy(), want.T)
    # out a strided slice: the elements in between stay untouched
    big = C.full((4, 12), -7.0, dtype)
    view = big.as_strided((4, 6), (12, 2), 1)
    getattr(C, name)(dev, view)  # positional out, as numpy
    b = big.numpy()
    np.testing.assert_array_equal(b[:, 1::2], want)
    assert (b[:, 0::2] == -7.0).all()


@requires_gpu
def test_out_argument_errors():
    x = C.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"^exp: out has shape \(3, 2\) but the result has shape \(2, 3\)"):
        C.exp(x, out=C.zeros((3, 2), np.float32))
    with pytest.raises(TypeError, match=r"^exp: out has dtype float64 but the result has dtype float32"):
        C.exp(x, out=C.zeros((2, 3), np.float64))
    with pytest.raises(TypeError, match=r"^add: out must be a dlkern._C_cuda.DeviceArray or None, got ndarray"):
        C.add(x, 1.0, out=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^add: out has shape \(3,\) but the result has shape \(2, 3\)"):
        C.add(x, C.zeros(3, np.float32), out=C.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"^greater: out has dtype float32 but the result has dtype bool"):
        C.greater(x, 0.0, out=x)
    with pytest.raises(TypeError, match=r"^where: out has dtype bool but the result has dtype float32"):
        C.where(C.greater(x, 0.0), x, 1.0, out=C.zeros((2, 3), bool))
    with pytest.raises(ValueError, match=r"^clip: out has shape \(2, 1\)"):
        C.clip(x, 0, 1, out=C.zeros((2, 1), np.float32))


def binary_ref(name, a, b):
    fn = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
          "maximum": np.maximum, "minimum": np.minimum, "power": np.power, "logaddexp": np.logaddexp}[name]
    return fn(a, b)


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "maximum", "power", "logaddexp"])
def test_binary_out_in_place_like_the_optimizer(name, dtype):
    # p = op(p, w) written into p (numpy's out=p), with w broadcast along rows.
    hp, p = make_input((5, 7), dtype, "contiguous", seed=3, low=0.5, high=2.0)
    hw, w = make_input((7,), dtype, "contiguous", seed=4, low=0.5, high=2.0)
    want = binary_ref(name, hp.astype(np.float64), hw.astype(np.float64))
    assert getattr(C, name)(p, w, out=p) is p
    np.testing.assert_allclose(p.numpy(), want, **tol(dtype))
    # and with the array on the right and a scalar on the left
    hq, q = make_input((5, 7), dtype, "transposed", seed=5, low=0.5, high=2.0)
    assert getattr(C, name)(1.5, q, out=q) is q
    np.testing.assert_allclose(q.numpy(), binary_ref(name, 1.5, hq.astype(np.float64)), **tol(dtype))


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_binary_out_overlapping_inputs_goes_through_a_temporary(dtype):
    host = np.arange(10, dtype=dtype)
    buf = C.from_numpy(host)
    a = buf.as_strided((9,), (1,), 0)     # elements 0..8
    out = buf.as_strided((9,), (1,), 1)   # elements 1..9: overlaps a shifted by one
    C.add(a, 100.0, out=out)
    want = host.copy()
    want[1:] = host[:9] + 100  # numpy semantics: as if the inputs were read first
    np.testing.assert_array_equal(buf.numpy(), want)
    # a reversed view of itself
    buf = C.from_numpy(host)
    rev = buf.as_strided((10,), (-1,), 9)
    C.multiply(rev, 2.0, out=buf)
    np.testing.assert_array_equal(buf.numpy(), host[::-1] * 2)
    # a broadcast row of the output read while the output is written
    m = C.from_numpy(np.arange(12, dtype=dtype).reshape(3, 4))
    row = m.as_strided((3, 4), (0, 1), 0)
    C.add(m, row, out=m)
    hm = np.arange(12, dtype=dtype).reshape(3, 4)
    np.testing.assert_array_equal(m.numpy(), hm + hm[0])


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
@pytest.mark.parametrize("a_shape, b_shape", [((), ()), ((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((5,), ()),
                                              ((1, 6), (2, 1, 1)), ((0, 3), (3,))], ids=str)
def test_logaddexp_matches_numpy(a_shape, b_shape, dtype):
    ha, a = make_input(a_shape, dtype, "contiguous", seed=6, low=-30, high=30)
    hb, b = make_input(b_shape, dtype, "transposed", seed=7, low=-30, high=30)
    got = C.logaddexp(a, b)
    assert got.shape == np.broadcast_shapes(a_shape, b_shape)
    np.testing.assert_allclose(got.numpy(), np.logaddexp(ha.astype(np.float64), hb.astype(np.float64)), **tol(dtype))


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_logaddexp_is_stable(dtype):
    big = 80.0 if dtype == np.float32 else 700.0  # exp overflows well before 2 * big
    a = np.array([big * 2, -big * 2, 0.0, np.inf, -np.inf, np.inf, -np.inf, np.nan, 1.0, 3.0], dtype)
    b = np.array([big * 2, -big * 2, -big * 3, np.inf, -np.inf, -np.inf, 5.0, 1.0, np.nan, -1e4], dtype)
    with np.errstate(invalid="ignore"):  # NaN inputs in the reference
        want = np.logaddexp(a.astype(np.float64), b.astype(np.float64))
        want0 = np.logaddexp(a.astype(np.float64), 0.0)
    np.testing.assert_allclose(C.logaddexp(C.from_numpy(a), C.from_numpy(b)).numpy(), want, **tol(dtype))
    np.testing.assert_allclose(C.logaddexp(C.from_numpy(a), 0.0).numpy(), want0, **tol(dtype))


I64_OPS = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "maximum": np.maximum,
           "minimum": np.minimum}


@requires_gpu
@pytest.mark.parametrize("name", sorted(I64_OPS))
@pytest.mark.parametrize("kind", KINDS)
def test_int64_arithmetic_with_int_scalars(name, kind):
    ha, a = make_input((4, 5), np.int64, kind, seed=8)
    hb, b = make_input((5,), np.int64, "contiguous", seed=9)
    fn = getattr(C, name)
    for got, want in [(fn(a, b), I64_OPS[name](ha, hb)), (fn(a, 3), I64_OPS[name](ha, 3)),
                      (fn(-7, a), I64_OPS[name](-7, ha)), (fn(a, True), I64_OPS[name](ha, 1)),
                      (fn(a, np.int64(2)), I64_OPS[name](ha, 2))]:
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got.numpy(), want)
    out = C.zeros((4, 5), np.int64)
    assert fn(a, b, out=out) is out
    np.testing.assert_array_equal(out.numpy(), I64_OPS[name](ha, hb))


@requires_gpu
def test_int64_arithmetic_wraps_like_numpy():
    big = np.array([2 ** 62, -(2 ** 63), 2 ** 63 - 1], np.int64)
    d = C.from_numpy(big)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(C.add(d, d).numpy(), big + big)
        np.testing.assert_array_equal(C.multiply(d, 3).numpy(), big * 3)
        np.testing.assert_array_equal(C.subtract(0, d).numpy(), 0 - big)


@requires_gpu
def test_dtype_rules_for_arithmetic():
    i = C.from_numpy(np.arange(4, dtype=np.int64))
    f = C.from_numpy(np.ones(4, np.float32))
    d = C.from_numpy(np.ones(4, np.float64))
    b = C.from_numpy(np.ones(4, bool))
    with pytest.raises(TypeError, match=r"^add: b is a Python float but a has dtype int64"):
        C.add(i, 1.5)
    with pytest.raises(TypeError, match=r"^multiply: a is a Python float but b has dtype int64"):
        C.multiply(0.5, i)
    with pytest.raises(ValueError, match=r"^add: b = .* does not fit in int64"):
        C.add(i, 2 ** 64)
    for name in ["divide", "power", "logaddexp"]:
        with pytest.raises(TypeError, match=rf"^{name}: operands have dtype int64; CUDA {name} supports float32"):
            getattr(C, name)(i, 2)
    with pytest.raises(TypeError, match=r"^add: operands have dtype bool"):
        C.add(b, b)
    with pytest.raises(TypeError, match=r"^subtract: a has dtype float32 but b has dtype float64"):
        C.subtract(f, d)
    with pytest.raises(TypeError, match=r"^add: a has dtype int64 but b has dtype float32"):
        C.add(i, f)
    with pytest.raises(TypeError, match=r"^exp: x has dtype bool; CUDA exp supports float32 and float64"):
        C.exp(b)
    with pytest.raises(TypeError, match=r"^sin: x has dtype int64"):
        C.sin(i)
    with pytest.raises(TypeError, match=r"^sum: x has dtype bool"):
        C.sum(b)
    # Python ints and NumPy scalars with float arrays are fine
    np.testing.assert_array_equal(C.add(f, 2).numpy(), np.full(4, 3, np.float32))
    np.testing.assert_array_equal(C.add(d, np.float32(0.5)).numpy(), np.full(4, 1.5))
    assert C.add(f, 2 ** 70).dtype == np.float32


CMP_REF = {"greater": np.greater, "greater_equal": np.greater_equal, "less": np.less,
           "less_equal": np.less_equal, "equal": np.equal, "not_equal": np.not_equal}


@requires_gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=["f32", "f64", "i64", "bool"])
@pytest.mark.parametrize("name", sorted(CMP_REF))
@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((5,), ())], ids=str)
def test_comparisons_match_numpy(name, dtype, a_shape, b_shape):
    ha, a = make_input(a_shape, dtype, "transposed", seed=10)
    hb = make_input(b_shape, dtype, "contiguous", seed=11)[0]
    if b_shape == a_shape:
        hb = hb.copy()
        hb[..., ::2] = ha[..., ::2]  # equal values at every other position
    b = C.from_numpy(np.array(hb))
    fn = getattr(C, name)
    got = fn(a, b)
    assert got.dtype == np.bool_ and got.shape == np.broadcast_shapes(a_shape, b_shape)
    np.testing.assert_array_equal(got.numpy(), CMP_REF[name](ha, hb))
    scalar = {np.bool_: True, np.int64: 3}.get(dtype, 0.25)
    np.testing.assert_array_equal(fn(a, scalar).numpy(), CMP_REF[name](ha, scalar))
    np.testing.assert_array_equal(fn(scalar, a).numpy(), CMP_REF[name](scalar, ha))
    out = C.zeros(np.broadcast_shapes(a_shape, b_shape), bool)
    assert fn(a, b, out=out) is out
    np.testing.assert_array_equal(out.numpy(), CMP_REF[name](ha, hb))


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_comparisons_with_nan_and_int_scalars(dtype):
    x = np.array([np.nan, 1.0, -np.inf, np.inf, 0.0, -0.0], dtype)
    d = C.from_numpy(x)
    for name, fn in CMP_REF.items():
        np.testing.assert_array_equal(getattr(C, name)(d, d).numpy(), fn(x, x), err_msg=name)
        np.testing.assert_array_equal(getattr(C, name)(d, 0).numpy(), fn(x, 0), err_msg=name)
        np.testing.assert_array_equal(getattr(C, name)(d, float("nan")).numpy(), fn(x, np.nan), err_msg=name)
    # int64 arrays compare exactly with Python floats (rewritten to int comparisons)
    hi = np.array([-3, -2, 0, 1, 2, 3, 2 ** 62], np.int64)
    i = C.from_numpy(hi)
    for s in [2.5, -2.5, 2.0, 0.0, float("nan"), float("inf"), -float("inf"), 1e30]:
        for name, fn in CMP_REF.items():
            np.testing.assert_array_equal(getattr(C, name)(i, s).numpy(), fn(hi, s), err_msg=f"{name} {s}")
            np.testing.assert_array_equal(getattr(C, name)(s, i).numpy(), fn(s, hi), err_msg=f"{s} {name}")
    b = C.from_numpy(np.array([True, False]))
    with pytest.raises(TypeError, match=r"^equal: b is a Python number but a has dtype bool; pass True or False"):
        C.equal(b, 1)


@requires_gpu
def test_logical_ops():
    ha, a = make_input((3, 1, 5), np.bool_, "transposed", seed=13)
    hb, b = make_input((4, 1), np.bool_, "sliced", seed=14)
    np.testing.assert_array_equal(C.logical_and(a, b).numpy(), np.logical_and(ha, hb))
    np.testing.assert_array_equal(C.logical_or(a, b).numpy(), np.logical_or(ha, hb))
    np.testing.assert_array_equal(C.logical_not(a).numpy(), np.logical_not(ha))
    np.testing.assert_array_equal(C.logical_and(a, True).numpy(), ha)
    np.testing.assert_array_equal(C.logical_or(False, a).numpy(), ha)
    x = C.from_numpy(ha.copy())
    assert C.logical_not(x, out=x) is x
    np.testing.assert_array_equal(x.numpy(), ~ha)
    out = C.zeros((3, 4, 5), bool)
    assert C.logical_or(a, b, out=out) is out
    np.testing.assert_array_equal(out.numpy(), ha | hb)
    with pytest.raises(TypeError, match=r"^logical_and: b has dtype float32; CUDA logical_and takes bool arrays"):
        C.logical_and(a, C.zeros(5, np.float32))
    with pytest.raises(TypeError, match=r"^logical_not: x has dtype int64"):
        C.logical_not(C.zeros(5, np.int64))
    with pytest.raises(TypeError, match=r"^logical_or: b is a Python number but a has dtype bool"):
        C.logical_or(a, 1)


@requires_gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=["f32", "f64", "i64", "bool"])
def test_where_matches_numpy(dtype):
    hc, cond = make_input((3, 1, 5), np.bool_, "transposed", seed=15)
    ha, a = make_input((4, 5), dtype, "sliced", seed=16)
    hb, b = make_input((4, 1), dtype, "contiguous", seed=17)
    got = C.where(cond, a, b)
    assert got.dtype == np.dtype(dtype) and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got.numpy(), np.where(hc, ha, hb))
    s = {np.bool_: True, np.int64: -4}.get(dtype, 0.5)
    np.testing.assert_array_equal(C.where(cond, a, s).numpy(), np.where(hc, ha, np.asarray(s, dtype)))
    np.testing.assert_array_equal(C.where(cond, s, b).numpy(), np.where(hc, np.asarray(s, dtype), hb))
    out = C.empty((3, 4, 5), dtype)
    assert C.where(cond, a, b, out=out) is out
    np.testing.assert_array_equal(out.numpy(), np.where(hc, ha, hb))


@requires_gpu
@pytest.mark.parametrize("dtype", FLOATS, ids=["f32", "f64"])
def test_where_in_place_masks_like_relu_backward(dtype):
    hx, x = make_input((6, 7), dtype, "contiguous", seed=18)
    mask = C.greater(x, 0.0)
    assert C.where(mask, x, 0.0, out=x) is x
    np.testing.assert_array_equal(x.numpy(), np.where(hx > 0, hx, 0))


@requires_gpu
def test_where_errors():
    x = C.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"^where: cond must be a bool DeviceArray, got dtype float32"):
        C.where(x, x, x)
    c = C.greater(x, 0.0)
    with pytest.raises(TypeError, match=r"^where: a has dtype float32 but b has dtype float64"):
        C.where(c, x, C.zeros((2, 3), np.float64))
    with pytest.raises(TypeError, match=r"^where: at least one operand must be a dlkern._C_cuda.DeviceArray \(a, b"):
        C.where(c, 1.0, 0.0)
    with pytest.raises(TypeError, match=r"^where: b is a Python float but a has dtype int64"):
        C.where(c, C.zeros((2, 3), np.int64), 0.5)
    with pytest.raises(ValueError, match=r"^where: shapes .* cannot be broadcast together \(operands: cond \(2, 3\), "
                                         r"a \(2, 3\), b \(4,\)\)"):
        C.where(c, x, C.zeros(4, np.float32))


@requires_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64], ids=["f32", "f64", "i64"])
@pytest.mark.parametrize("lo, hi", [(-1, 1), (None, 0), (0, None), (None, None), (2, -2)], ids=str)
def test_clip_matches_numpy(dtype, lo, hi):
    hx, x = make_input((5, 6), dtype, "transposed", seed=19)
    got = C.clip(x, lo, hi)
    assert got.dtype == np.dtype(dtype)
    want = np.clip(hx, lo, hi)  # min(max(x, lo), hi): hi wins when lo > hi
    np.testing.assert_array_equal(got.numpy(), want.astype(dtype))
    y = C.from_numpy(np.ascontiguousarray(hx))
    assert C.clip(y, lo, hi, out=y) is y
    np.testing.assert_array_equal(y.numpy(), want.astype(dtype))


@requires_gpu
def test_clip_nan_and_errors():
    x = np.array([np.nan, -3.0, 0.5, 3.0], np.float32)
    d = C.from_numpy(x)
    np.testing.assert_array_equal(C.clip(d, -1.0, 1.0).numpy(), np.clip(x, -1.0, 1.0))
    np.testing.assert_array_equal(C.clip(d, np.float32(-1), None).numpy(), np.maximum(x, -1))
    assert np.isnan(C.clip(d, float("nan"), 1.0).numpy()).all()
    with pytest.raises(TypeError, match=r"^clip: lo is a Python float but x has dtype int64"):
        C.clip(C.zeros(3, np.int64), 0.5, 2)
    with pytest.raises(TypeError, match=r"^clip: x has dtype bool"):
        C.clip(C.zeros(3, bool), 0, 1)
    with pytest.raises(TypeError, match=r"^clip: hi must be a Python number, got DeviceArray"):
        C.clip(d, 0, d)


@requires_gpu
@pytest.mark.parametrize("src", ALL_DTYPES, ids=["f32", "f64", "i64", "bool"])
@pytest.mark.parametrize("dst", ALL_DTYPES, ids=["f32", "f64", "i64", "bool"])
@pytest.mark.parametrize("kind", KINDS)
def test_astype_matches_numpy(src, dst, kind):
    # floats of both signs with fractions (truncation), ints around 0 (to bool)
    hx, x = make_input((4, 3, 5), src, kind, seed=20, low=-100.0, high=100.0)
    got = C.astype(x, dst)
    assert got.dtype == np.dtype(dst) and got.shape == hx.shape and got.is_contiguous()
    np.testing.assert_array_equal(got.numpy(), hx.astype(dst))


@requires_gpu
def test_astype_dtype_spellings_and_truncation():
    x = C.from_numpy(np.array([-2.7, -0.5, 0.0, -0.0, 0.5, 2.7, 1e10]))
    for spelling in [np.int64, "int64", np.dtype("int64"), "i8"]:
        np.testing.assert_array_equal(C.astype(x, spelling).numpy(), [-2, 0, 0, 0, 0, 2, 10 ** 10])
    want = [True, True, False, False, True, True, True]
    np.testing.assert_array_equal(C.astype(x, bool).numpy(), want)
    np.testing.assert_array_equal(C.astype(x, "bool").numpy(), want)
    np.testing.assert_array_equal(C.astype(C.astype(x, np.float32), np.bool_).numpy(), want)
    assert C.astype(x, np.float32).dtype == np.float32
    same = C.astype(x, np.float64)
    assert same.data_ptr != x.data_ptr  # always a copy, as numpy's astype
    with pytest.raises(TypeError, match=r"^astype: dtype int32 is not supported on CUDA"):
        C.astype(x, np.int32)


@requires_gpu
@pytest.mark.parametrize("dtype, value, want", [
    ("float32", 1.5, 1.5), ("float64", -2, -2.0), ("int64", 7, 7), ("int64", -7.9, -7), ("int64", True, 1),
    ("bool", 0.0, False), ("bool", 2, True), ("bool", True, True), (np.float32, np.float64(0.25), 0.25),
    ("int64", 2 ** 62, 2 ** 62),
], ids=str)
def test_full(dtype, value, want):
    x = C.full((3, 4), value, dtype)
    assert x.dtype == np.dtype(dtype) and x.shape == (3, 4) and x.is_contiguous()
    np.testing.assert_array_equal(x.numpy(), np.full((3, 4), want, dtype))
    assert C.full((), value, dtype).numpy() == np.asarray(want, dtype)
    assert C.full((0, 2), value, dtype).shape == (0, 2)


@requires_gpu
def test_ones_and_like_constructors():
    s = C.Stream()
    x = C.full((2, 3), 1.0, np.float64, stream=s).permute(1, 0)
    np.testing.assert_array_equal(C.ones((2, 2)).numpy(), np.ones((2, 2), np.float32))
    assert C.ones(3, np.int64).dtype == np.int64
    for name, want in [("zeros_like", 0.0), ("ones_like", 1.0)]:
        y = getattr(C, name)(x)
        assert y.shape == (3, 2) and y.dtype == np.float64 and y.is_contiguous() and y.stream == s
        np.testing.assert_array_equal(y.numpy(), np.full((3, 2), want))
        assert getattr(C, name)(x, bool).dtype == np.bool_
    np.testing.assert_array_equal(C.full_like(x, -2.5).numpy(), np.full((3, 2), -2.5))
    np.testing.assert_array_equal(C.full_like(x, 7.9, dtype="int64").numpy(), np.full((3, 2), 7))


@requires_gpu
def test_full_default_dtype_stream_and_device():
    s = C.Stream()
    x = C.full(5, 2.0, stream=s, device=0)
    assert x.dtype == np.float32 and x.stream == s and x.device == 0
    np.testing.assert_array_equal(x.numpy(), np.full(5, 2.0, np.float32))


@requires_gpu
@pytest.mark.parametrize("args, kwargs", [
    ((5,), {}), ((2, 9), {}), ((2, 9, 3), {}), ((9, 2, -3), {}), ((3, 3), {}), ((3, 1), {}),
    ((0.0, 1.0, 0.1), {}), ((1, 2.5), {}), ((-1.5, 1.5, 0.25), {}), ((5,), {"dtype": "float64"}),
    ((0, 1, 0.1), {"dtype": np.float64}), ((10, 0, -1.5), {}), ((7,), {"dtype": np.int64}),
    ((2, 1000003, 7), {}), ((0.0, 100000.0, 0.5), {"dtype": "float32"}),
], ids=str)
def test_arange_matches_numpy(args, kwargs):
    got = C.arange(*args, **kwargs)
    any_float = any(isinstance(a, float) for a in args)
    dtype = np.dtype(kwargs.get("dtype", np.float32 if any_float else np.int64))
    want = np.arange(*args, dtype=np.float64 if dtype.kind == "f" else np.int64)
    assert got.dtype == dtype and got.shape == want.shape
    if dtype.kind == "f":
        # start + i * step in double, rounded once to the dtype
        np.testing.assert_allclose(got.numpy(), want.astype(dtype), rtol=0, atol=0)
    else:
        np.testing.assert_array_equal(got.numpy(), want)


@requires_gpu
def test_arange_empty_and_stream():
    assert C.arange(5, 2).shape == (0,)
    assert C.arange(0.0, -1.0, 0.5).shape == (0,)
    s = C.Stream()
    x = C.arange(4, stream=s)
    assert x.stream == s
    np.testing.assert_array_equal(x.numpy(), np.arange(4))


@requires_gpu
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=["f32", "f64", "i64", "bool"])
def test_fill_in_place_on_strided_views(dtype):
    value = {np.bool_: True, np.int64: -3}.get(dtype, 2.5)
    base = C.zeros((4, 6), dtype)
    view = base.as_strided((3, 2), (1, 12), 1)  # a transposed, strided corner
    assert C.fill_(view, value) is view
    want = np.zeros((4, 6), dtype)
    want.reshape(-1)[np.array([1, 2, 3, 13, 14, 15])] = value
    np.testing.assert_array_equal(base.numpy(), want)
    np.testing.assert_array_equal(C.fill_(base, value).numpy(), np.full((4, 6), value, dtype))
    # a broadcast (stride 0) view: every element is the one storage element
    one = C.zeros(1, dtype)
    C.fill_(one.as_strided((5, 3), (0, 0), 0), value)
    np.testing.assert_array_equal(one.numpy(), np.full(1, value, dtype))
    assert C.fill_(C.zeros((0, 3), dtype), value).shape == (0, 3)


@requires_gpu
def test_fill_value_conversion():
    x = C.zeros(3, np.int64)
    np.testing.assert_array_equal(C.fill_(x, -2.9).numpy(), [-2, -2, -2])
    b = C.zeros(3, bool)
    np.testing.assert_array_equal(C.fill_(b, 0.5).numpy(), [True] * 3)
    with pytest.raises(TypeError, match=r"^fill_: value must be a Python number, got DeviceArray"):
        C.fill_(x, x)


# ---------------------------------------------------------------------------
# bool arrays: transfers, views, copies, DLPack
# ---------------------------------------------------------------------------

@requires_gpu
@pytest.mark.parametrize("shape", [(), (0,), (1,), (7,), (3, 5), (2, 3, 4)], ids=str)
def test_bool_round_trip_and_views(shape):
    host = rng_for("bool", shape).random(shape) < 0.5
    dev = C.from_numpy(host)
    assert dev.dtype == np.bool_ and dev.itemsize == 1 and dev.nbytes == host.size and dev.shape == shape
    back = dev.numpy()
    assert back.dtype == np.bool_
    np.testing.assert_array_equal(back, host)
    np.testing.assert_array_equal(dev.clone().numpy(), host)
    if len(shape) >= 2:
        t = dev.permute(tuple(range(len(shape)))[::-1])
        np.testing.assert_array_equal(t.numpy(), host.T)
        np.testing.assert_array_equal(t.contiguous().numpy(), host.T)
    assert C.zeros(shape, bool).numpy().sum() == 0
    assert C.empty(shape, np.bool_).dtype == np.bool_
    assert "dtype=bool" in repr(dev)


@requires_gpu
def test_bool_strided_copy():
    host = rng_for("bool-copy").random((5, 8)) < 0.5
    src = C.from_numpy(host)
    dst = C.zeros((8, 5), bool)
    dst.permute(1, 0).copy_(src)
    np.testing.assert_array_equal(dst.numpy(), host.T)
    row = C.from_numpy(np.array([True, False, True]))
    m = C.zeros((4, 6), bool)
    m.as_strided((4, 3), (6, 2), 1).copy_(row)  # broadcast into every other column
    want = np.zeros((4, 6), bool)
    want[:, 1::2] = [True, False, True]
    np.testing.assert_array_equal(m.numpy(), want)
    with pytest.raises(ValueError, match=r"copy_: dtype bool cannot be copied into float32"):
        C.zeros(3, np.float32).copy_(row)


@requires_gpu
def test_bool_arrays_never_reach_float_kernels():
    # Other op families check for int64 only; a shared guard stops bool at the dispatch.
    b = C.zeros((2, 4, 4, 8), bool)
    m = C.zeros((4, 4), bool)
    for call in [lambda: C.matmul(m, m), lambda: C.softmax(b), lambda: C.layer_norm_forward(b, (8,)),
                 lambda: C.rope(b), lambda: C.mean(b)]:
        with pytest.raises(TypeError, match=r"bool"):
            call()


@requires_gpu
def test_out_on_another_stream():
    s1, s2 = C.Stream(), C.Stream()
    host = rng_for("streams").uniform(-1, 1, size=(64, 33)).astype(np.float32)
    x = C.from_numpy(host, stream=s1)
    y = C.exp(x)                      # queued on x's stream
    out = C.zeros((64, 33), np.float32, stream=s2)
    assert C.add(y, x, out=out) is out  # runs on out's stream, after s1's work
    assert out.stream == s2
    np.testing.assert_allclose(out.numpy(), np.exp(host) + host, **tol(np.float32))


@requires_gpu
def test_bool_dlpack():
    host = np.array([[True, False, True], [False, False, True]])
    x = C.from_numpy(host)
    y = C.from_dlpack(x.__dlpack__())  # through a capsule: DLPack's bool code and back
    assert y.dtype == np.bool_ and y.data_ptr == x.data_ptr
    np.testing.assert_array_equal(y.numpy(), host)


@requires_gpu
def test_bool_dlpack_with_torch():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA support here")
    host = np.array([[True, False, True], [False, False, True]])
    x = C.from_numpy(host)
    t = torch.from_dlpack(x)
    assert t.dtype == torch.bool
    np.testing.assert_array_equal(t.cpu().numpy(), host)
    back = C.from_dlpack(torch.tensor([True, False, False], device="cuda"))
    assert back.dtype == np.bool_
    np.testing.assert_array_equal(back.numpy(), [True, False, False])
