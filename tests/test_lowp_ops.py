"""16-bit floats in dlkern.ops (issue 16): convert() bit for bit against NumPy's /
ml_dtypes' astype on every ISA, and gemm/matmul on bfloat16 and float16 operands against
an independent NumPy float64 product, with the error bound of K exact products summed
in float32 (gamma_s |A||B|, u = 2^-24) plus the one final rounding to the 16-bit output
(2^-8 relative for bfloat16, 2^-11 for float16), on every path (the public best path,
the float32-panel fallback, vdpbf16ps where the CPU has it, the scalar model) and
thread count."""
import ml_dtypes
import numpy as np
import pytest

import dlkern
from dlkern import _C, ops

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
HAS_DP = _C._bf16_has_dpbf16()
# Half an ulp of the 16-bit format, relative (round to nearest): 8 and 11 significant bits.
UNIT = {BF16: 2.0**-8, F16: 2.0**-11}


def bits(x):
    """The raw bits of an array (NaNs compared as bit patterns)."""
    return np.ascontiguousarray(x).view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def assert_bits(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(bits(got), bits(want))


def astype(x, dtype):
    with np.errstate(all="ignore"):
        return x.astype(dtype)


# ---- convert ---------------------------------------------------------------------------

def special_f32():
    """Every float32 class the conversions treat apart."""
    pats = [
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000,                        # zeros, infs
        0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FA00000, 0x7F8000FF,  # NaN payloads
        0x7FFFFFFF, 0x7F802000, 0x7F801FFF, 0xFFBFE000,
        0x00000001, 0x80000001, 0x007FFFFF, 0x00800000,                        # float32 subnormals
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001,            # bf16 top, overflow
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0xBF808000,            # bf16 ties
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0xC77FF000, 0x47800000,  # 65504 .. 65536
        0x38800000, 0x387FFFFF, 0x387FE000, 0x387FF000,                        # f16 min normal
        0x33800000, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33C00000, 0x33A00000,  # f16 min subnormal
        0x34400000, 0x34200000, 0x34600000, 0x80000000 | 0x33000001,           # subnormal ties
        0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F801001,                        # f16 ties at 1
    ]
    return np.array(pats, np.uint32).view(np.float32)


def random_f32(rng, n):
    return rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "f16"])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31, 1000])
def test_convert_f32_bit_exact(isa, dtype, n):
    rng = np.random.default_rng(n)
    x = np.concatenate([random_f32(rng, n), special_f32(), -special_f32()])
    # Every lane offset: the vector body and the scalar tail both see each special.
    for shift in range(9):
        xs = x[shift:]
        got = ops.convert(xs, dtype)
        assert_bits(got, astype(xs, dtype))
        assert_bits(ops.convert(got, F32), astype(got, F32))


def test_convert_special_values_spelled_out(isa):
    x = special_f32()
    h = bits(ops.convert(x, F16))
    idx = {p: i for i, p in enumerate(bits(x).tolist())}
    assert h[idx[0x7F800001]] == 0x7C01          # NaN, payload only in the low bits: stays a NaN
    assert h[idx[0x7FA00000]] == 0x7D00          # payload kept, quiet bit not forced (NumPy)
    assert h[idx[0x477FE000]] == 0x7BFF          # 65504, the largest half
    assert h[idx[0x477FEFFF]] == 0x7BFF and h[idx[0x477FF000]] == 0x7C00  # the tie at 65520 -> Inf
    assert h[idx[0x33000000]] == 0 and h[idx[0x33000001]] == 1  # 2^-25: tie to even 0; above: 2^-24
    assert h[idx[0x00000001]] == 0 and h[idx[0x80000001]] == 0x8000
    b = bits(ops.convert(x, BF16))
    assert b[idx[0x7FA00000]] == 0x7FC0 and b[idx[0xFFBFE000]] == 0xFFC0  # canonical, sign kept
    assert b[idx[0x7F7F8000]] == 0x7F80 and b[idx[0x3F808000]] == 0x3F80 and b[idx[0x3F818000]] == 0x3F82


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "f16"])
def test_convert_every_16bit_pattern(isa, dtype):
    h = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(dtype)
    for to in (F32, F64):
        assert_bits(ops.convert(h, to), astype(h, to))
    # bf16 <-> f16 go through float32 (exact, then one rounding): the NumPy composition.
    other = F16 if dtype == BF16 else BF16
    assert_bits(ops.convert(h, other), astype(astype(h, F32), other))
    assert_bits(ops.convert(h, dtype), h)  # same dtype: a copy
    assert not np.shares_memory(ops.convert(h, dtype), h)


@pytest.mark.parametrize("dtype", [BF16, F16, F32], ids=["bf16", "f16", "f32"])
def test_convert_f64_rounds_once(isa, dtype):
    """float64 -> 16 bits equals the direct astype (double rounding through float32's
    RNE would differ on the values between a 16-bit tie and the float32 next to it)."""
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 2**64, size=3000, dtype=np.uint64).view(np.float64)
    near = rng.standard_normal(3000) * np.exp2(rng.integers(-30, 20, 3000))
    base = astype(rng.standard_normal(500), dtype).astype(np.float64)
    eps = UNIT.get(dtype, 2.0**-24)
    ties = np.concatenate([base * (1 + eps), base * (1 + eps + 2.0**-45), base * (1 + eps - 2.0**-45),
                           base * (1 - eps / 2 + 2.0**-50)])
    nans = np.array([0x7FF0000000000001, 0x7FF4000000000000, 0xFFF8000000000001], np.uint64).view(np.float64)
    x = np.concatenate([raw, near, ties, nans, [1e300, -1e300, 65519.99, 65520.0, 2.0**-25, 2.0**-25 * 1.0000001]])
    assert_bits(ops.convert(x, dtype), astype(x, dtype))
    # The cases double rounding gets wrong are in there.
    assert np.any(bits(astype(astype(x, F32), dtype)) != bits(astype(x, dtype))) or dtype == F32


def test_convert_layouts_threads_and_out(threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 700)).astype(np.float32)  # 210 000: several threads' blocks
    for dtype in (BF16, F16):
        want = astype(x, dtype)
        assert_bits(ops.convert(x, dtype), want)
        view = x[::-2, 3::3]  # negative and non-unit strides
        assert_bits(ops.convert(view, dtype), astype(view, dtype))
        assert_bits(ops.convert(x.T, dtype), astype(x.T, dtype))
        out = np.empty(x.shape, dtype)
        assert ops.convert(x, dtype, out=out) is out
        assert_bits(out, want)
        strided = np.zeros((300, 1400), dtype)[:, ::2]  # a non-contiguous out
        assert ops.convert(x, dtype, out=strided) is strided
        np.testing.assert_array_equal(bits(strided), bits(want))
    z = ops.convert(np.array(1.5, np.float32), BF16)
    assert z.shape == () and z.dtype == BF16 and float(z) == 1.5
    e = ops.convert(np.zeros((0, 4), np.float32), "float16")
    assert e.shape == (0, 4) and e.dtype == F16
    assert ops.convert(np.ones(3, np.float32), "bfloat16").dtype == BF16
    assert ops.convert(np.ones(3, np.float32), dlkern.float32 if hasattr(dlkern, "float32") else F32).dtype == F32


def test_convert_out_aliasing_input():
    x = np.arange(8, dtype=np.float16)
    y = ops.convert(x, F16, out=x)  # same buffer: read through a copy first
    assert y is x
    np.testing.assert_array_equal(x, np.arange(8))


def test_convert_errors():
    x = np.ones(3, np.float32)
    with pytest.raises(TypeError, match=r"^convert: x has dtype int32; expected float32, float64, bfloat16"):
        ops.convert(np.ones(3, np.int32), F16)
    with pytest.raises(TypeError, match=r"^convert: x must be a numpy\.ndarray, got list"):
        ops.convert([1.0], F16)
    with pytest.raises(TypeError, match=r"^convert: dtype must be a float dtype .* got dtype\('int64'\)"):
        ops.convert(x, np.dtype(np.int64))
    with pytest.raises(TypeError, match=r"^convert: dtype must be a float dtype .* got 'nope'"):
        ops.convert(x, "nope")
    with pytest.raises(TypeError, match=r"^convert: dtype must be a float dtype .* got None"):
        ops.convert(x, None)
    with pytest.raises(ValueError, match=r"^convert: out has shape \(4,\) but x has shape \(3,\)"):
        ops.convert(x, F16, out=np.empty(4, F16))
    with pytest.raises(TypeError, match=r"^convert: out has dtype float32 but dtype is float16"):
        ops.convert(x, F16, out=np.empty(3, F32))
    ro = np.empty(3, F16)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"^convert: out is read-only"):
        ops.convert(x, F16, out=ro)


def test_convert_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.standard_normal(999).astype(np.float32) * 1e3, special_f32()])
    x = x[~np.isnan(x)]  # torch's bf16 NaN is 0x7fc0 whatever the sign; the finite values agree
    for dtype, tdt in ((BF16, torch.bfloat16), (F16, torch.float16)):
        want = torch.from_numpy(x).to(tdt).view(torch.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(bits(ops.convert(x, dtype)), want)


# ---- GEMM: the error bound -------------------------------------------------------------

def rand(rng, shape, dtype):
    return astype(rng.standard_normal(shape).astype(np.float32), dtype)


def exact(a, b):
    """Independent float64 product of the 16-bit inputs (their products are exact)."""
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def bound(a, b, k, out_dtype):
    """gamma_s |A||B| for the float32 accumulation, where s counts the roundings on an
    element's path: k additions, one per depth block (384 pairs) merged into C and the
    alpha product (cpu/bf16.h's order); plus the final rounding to a 16-bit output,
    u16 |C32| <= u16 (|C| + gamma_s |A||B|), and half the smallest float16 subnormal."""
    s = k + (k + 767) // 768 + 2
    u = 2.0**-24
    g = s * u / (1 - s * u) * np.matmul(np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64)))
    if out_dtype == F32:
        return g
    ref = np.abs(exact(a, b))
    return g + UNIT[out_dtype] * (ref + g) + (2.0**-25 if out_dtype == F16 else 0.0)


def check_bound(got, a, b, k, out_dtype, what):
    assert got.dtype == out_dtype, (what, got.dtype)
    err = np.abs(got.astype(np.float64) - exact(a, b))
    lim = bound(a, b, k, out_dtype)
    assert np.all(err <= lim), (what, float(np.max(err / np.maximum(lim, 1e-300))))


def lowp_paths(isa):
    """The bf16 hook paths to check on this ISA besides the public one."""
    paths = ["fallback", "model", "model_noflush"]
    if HAS_DP and isa == "avx512":
        paths.append("dpbf16")
    return paths


K_SIZES = [1, 2, 3, 7, 16, 65, 383, 768, 769, 1537, 4097]


@pytest.mark.parametrize("k", K_SIZES)
def test_bf16_gemm_error_bound_every_path(isa, threads, k):
    rng = np.random.default_rng(k)
    m, n = (9, 21) if k > 1000 else (13, 37)
    a, b = rand(rng, (m, k), BF16), rand(rng, (k, n), BF16)
    for out_dtype in (BF16, F32):
        check_bound(ops.matmul(a, b, out_dtype=out_dtype), a, b, k, out_dtype, ("matmul", out_dtype))
        check_bound(ops.gemm(a, b, out_dtype=out_dtype), a, b, k, out_dtype, ("gemm", out_dtype))
    ua, ub = a.view(np.uint16), b.view(np.uint16)
    for path in lowp_paths(isa):
        check_bound(_C._gemm_bf16(ua, ub, path=path), a, b, k, F32, path)
    # The public float32 result is the best hook path's, bit for bit; the bf16 result is
    # that rounded once (RNE), not a second accumulation.
    c32 = ops.matmul(a, b, out_dtype=np.float32)
    assert_bits(c32, _C._gemm_bf16(ua, ub, path="best"))
    assert_bits(ops.matmul(a, b), astype(c32, BF16))


@pytest.mark.parametrize("k", K_SIZES)
def test_f16_gemm_error_bound(isa, threads, k):
    rng = np.random.default_rng(k + 1)
    m, n = (9, 21) if k > 1000 else (13, 37)
    a, b = rand(rng, (m, k), F16), rand(rng, (k, n), F16)
    c32 = ops.matmul(a, b, out_dtype="float32")
    check_bound(c32, a, b, k, F32, "f16 -> f32")
    got = ops.matmul(a, b)
    check_bound(got, a, b, k, F16, "f16 -> f16")
    assert_bits(got, astype(c32, F16))
    assert_bits(ops.gemm(a, b), got)


def test_bound_is_tight_enough_to_fail():
    """The bound would catch an accumulation in the 16-bit format: summing in bfloat16
    (NumPy, rounding after every addition) breaks it."""
    rng = np.random.default_rng(3)
    k = 512
    a, b = rand(rng, (4, k), BF16), rand(rng, (k, 4), BF16)
    acc = np.zeros((4, 4), BF16)
    for t in range(k):
        acc = astype(acc.astype(np.float32) + np.outer(a[:, t], b[t]).astype(np.float32), BF16)
    err = np.abs(acc.astype(np.float64) - exact(a, b))
    assert np.any(err > bound(a, b, k, BF16))


# ---- GEMM: shapes, layouts, dtypes -----------------------------------------------------

@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "f16"])
def test_matmul_batches_strides_and_vectors(threads, dtype):
    rng = np.random.default_rng(7)
    a = rand(rng, (2, 3, 11, 40), dtype)
    b = rand(rng, (3, 40, 13), dtype)
    got = ops.matmul(a, b)
    assert got.shape == (2, 3, 11, 13) and got.dtype == dtype
    for i in range(2):
        for j in range(3):  # each batch item is the 2-D product, bit for bit
            assert_bits(got[i, j], ops.matmul(a[i, j], b[j]))
    check_bound(got, a, b, 40, dtype, "batched")
    # Transposed and strided views are read in place; the result is the same.
    at = np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    assert_bits(ops.matmul(at, b), got)
    bs = np.zeros((3, 40, 26), dtype)
    bs[..., ::2] = b
    assert_bits(ops.matmul(a, bs[..., ::2]), got)
    # 1-D operands, empty and k = 0.
    v = rand(rng, (40,), dtype)
    check_bound(ops.matmul(v, b[0])[None], v[None], b[0], 40, dtype, "vector")
    assert ops.matmul(v, v).shape == () and ops.matmul(v, v).dtype == dtype
    assert ops.matmul(np.zeros((0, 40), dtype), b[0]).shape == (0, 13)
    z = ops.matmul(np.zeros((3, 0), dtype), np.zeros((0, 5), dtype))
    assert z.dtype == dtype and np.all(z.astype(np.float32) == 0)


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "f16"])
def test_matmul_out(dtype):
    rng = np.random.default_rng(8)
    a, b = rand(rng, (2, 9, 30), dtype), rand(rng, (30, 12), dtype)
    want = ops.matmul(a, b)
    out = np.empty((2, 9, 12), dtype)
    assert ops.matmul(a, b, out=out) is out
    assert_bits(out, want)
    holder = np.zeros((2, 9, 24), dtype)
    strided = holder[..., ::2]
    assert ops.matmul(a, b, out=strided) is strided
    np.testing.assert_array_equal(bits(np.ascontiguousarray(strided)), bits(want))
    out32 = np.empty((2, 9, 12), np.float32)
    assert ops.matmul(a, b, out=out32, out_dtype=np.float32) is out32
    assert_bits(astype(out32, dtype), want)


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "f16"])
def test_gemm_c_beta_alpha_transposes(threads, dtype):
    rng = np.random.default_rng(9)
    m, k, n = 17, 45, 23
    a, b = rand(rng, (k, m), dtype), rand(rng, (n, k), dtype)  # read transposed
    ref = exact(a.T, b.T)
    c0 = rand(rng, (m, n), dtype)
    # c in float32: updated in place, beta in float32.
    c = c0.astype(np.float32)
    assert ops.gemm(a, b, c, alpha=-0.5, beta=2.0, trans_a=True, trans_b=True) is c
    lim = bound(a.T, b.T, k, F32) * 0.5 + 2.0**-23 * np.abs(2.0 * c0.astype(np.float64) - 0.5 * ref)
    assert np.all(np.abs(c - (2.0 * c0.astype(np.float64) - 0.5 * ref)) <= lim)
    # c in the inputs' dtype: the same float32 computation rounded once into c.
    c16 = c0.copy()
    assert ops.gemm(a, b, c16, alpha=-0.5, beta=2.0, trans_a=True, trans_b=True) is c16
    assert_bits(c16, astype(c, dtype))
    # beta = 0 ignores c's contents (NaNs included).
    cn = np.full((m, n), np.nan, dtype)
    ops.gemm(a, b, cn, trans_a=True, trans_b=True)
    assert_bits(cn, ops.gemm(a, b, trans_a=True, trans_b=True))
    assert ops.gemm(a, b, trans_a=True, trans_b=True, out_dtype=np.float32).dtype == F32


@pytest.mark.parametrize("dtype", [BF16, F16], ids=["bf16", "f16"])
def test_nan_inf_propagate(dtype):
    a = np.ones((3, 4), dtype)
    b = np.ones((4, 5), dtype)
    a[1, 2] = np.nan
    b[0, 3] = np.inf
    got = ops.matmul(a, b).astype(np.float64)
    want = exact(a, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(got[~np.isnan(want)], want[~np.isnan(want)])


def test_f16_overflow_to_inf():
    a = np.full((2, 4), 200.0, F16)
    b = np.full((4, 2), 200.0, F16)  # 160 000 > 65504
    assert np.all(np.isinf(ops.matmul(a, b)))
    np.testing.assert_array_equal(ops.matmul(a, b, out_dtype=np.float32), 160000.0)


def test_matmul_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    for dtype, tdt in ((BF16, torch.bfloat16), (F16, torch.float16)):
        a, b = rand(rng, (3, 20, 300), dtype), rand(rng, (300, 30), dtype)
        ta = torch.from_numpy(a.astype(np.float32)).to(tdt)
        tb = torch.from_numpy(b.astype(np.float32)).to(tdt)
        t = torch.matmul(ta, tb).float().numpy().astype(np.float64)
        got = ops.matmul(a, b).astype(np.float64)
        # Both within the bound of the exact product, so within twice of each other.
        assert np.all(np.abs(got - t) <= 2 * bound(a, b, 300, dtype))


def test_gemm_matmul_errors():
    f32 = np.ones((2, 2), np.float32)
    bf = np.ones((2, 2), BF16)
    hf = np.ones((2, 2), F16)
    with pytest.raises(TypeError, match=r"^matmul: a has dtype bfloat16 but b has dtype float32; both must"):
        ops.matmul(bf, f32)
    with pytest.raises(TypeError, match=r"^matmul: a has dtype float16 but b has dtype bfloat16"):
        ops.matmul(hf, bf)
    with pytest.raises(TypeError, match=r"^gemm: a has dtype float32 but b has dtype bfloat16"):
        ops.gemm(f32, bf)
    with pytest.raises(TypeError, match=r"^matmul: a has dtype int64; expected float32, float64, bfloat16"):
        ops.matmul(np.ones((2, 2), np.int64), bf)
    with pytest.raises(TypeError, match=r"^matmul: out_dtype float64 is not available for bfloat16 inputs"):
        ops.matmul(bf, bf, out_dtype=np.float64)
    with pytest.raises(TypeError, match=r"^matmul: out_dtype float16 is not available for bfloat16 inputs"):
        ops.matmul(bf, bf, out_dtype=np.float16)
    with pytest.raises(TypeError, match=r"^matmul: out_dtype bfloat16 is not available for float32 inputs"):
        ops.matmul(f32, f32, out_dtype="bfloat16")
    with pytest.raises(TypeError, match=r"^gemm: out_dtype must be a float dtype .* got 'int8'"):
        ops.gemm(bf, bf, out_dtype="int8")
    with pytest.raises(TypeError, match=r"^matmul: out has dtype bfloat16 but out_dtype is float32"):
        ops.matmul(bf, bf, out=np.empty((2, 2), BF16), out_dtype=np.float32)
    with pytest.raises(TypeError, match=r"^matmul: out has dtype float32 but the inputs have dtype bfloat16"):
        ops.matmul(bf, bf, out=np.empty((2, 2), np.float32))
    with pytest.raises(TypeError, match=r"^gemm: c has dtype float64 but a and b have dtype float16 \(c may be"):
        ops.gemm(hf, hf, np.zeros((2, 2)))
    with pytest.raises(TypeError, match=r"^gemm: out_dtype is float32 but c has dtype float16"):
        ops.gemm(hf, hf, np.zeros((2, 2), F16), out_dtype=np.float32)
    with pytest.raises(ValueError, match=r"^gemm: beta=1 needs an input c"):
        ops.gemm(bf, bf, beta=1.0)
    # float32 / float64 keep taking out_dtype=None or their own dtype.
    assert ops.matmul(f32, f32, out_dtype=np.float32).dtype == F32
