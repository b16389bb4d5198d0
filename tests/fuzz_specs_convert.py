"""Fuzz case builder of dlkern.ops.convert (csrc/cpu/f16.h), kept beside tests/fuzz_specs.py,
which registers it with its ``builder``.

A drawn call: a source dtype among float32, float64, bfloat16 and float16 (the WRONG_DTYPES
mutations cover the rest), any shape and layout, values over many binades with NaN, Inf,
signed zeros and values past the 16-bit formats' range; a target dtype among the four; out
absent, fresh, or a strided view. The result must be, bit for bit, NumPy's / ml_dtypes'
astype of the same values.
"""
import ml_dtypes
import numpy as np

from fuzz_cases import F32, F64, Case, arrange, choice, rng, size

BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
FORMATS = (F32, F64, BF16, F16)


def _bits(a):
    return np.ascontiguousarray(a).view(np.dtype(f"u{a.dtype.itemsize}"))


def build(data, name):
    src, dst = choice(data, FORMATS, "src_dtype"), choice(data, FORMATS, "dst_dtype")
    shape = tuple(size(data, zero=True, label=f"dim{i}") for i in range(choice(data, [0, 1, 2, 3], "ndim")))
    r = rng(data)
    # magnitudes from 2^-140 (bf16 subnormals, float16 underflow) to 2^130 (float32 overflow
    # to Inf is not reachable from float32 itself, but float64 -> 16 bits overflows)
    mags = np.exp2(r.uniform(-140, 130, size=shape)) * r.choice([-1.0, 1.0], size=shape)
    special = r.choice([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], size=shape)
    vals = np.where(r.random(shape) < 0.1, special, mags)
    with np.errstate(over="ignore"):
        x = arrange(data, vals.astype(src))
        exp = np.asarray(x).astype(dst)
    kwargs = dict(x=x, dtype=dst)
    mode = choice(data, ["none", "fresh", "strided"], "out_mode")
    if mode == "fresh":
        kwargs["out"] = np.zeros(shape, dst)
    elif mode == "strided":
        kwargs["out"] = np.zeros(shape + (2,), dst)[..., 0]

    def check(res):
        assert isinstance(res, np.ndarray) and res.dtype == dst and res.shape == shape, f"{name}: {res!r}"
        np.testing.assert_array_equal(_bits(res), _bits(exp), err_msg=f"{name}: {src} -> {dst}")
        if mode != "none":
            assert res is kwargs["out"], f"{name}: out was not returned"

    bad = {"dtype int32": dict(dtype=np.int32), "dtype None": dict(dtype=None), "dtype str": dict(dtype="abc"),
           "out wrong shape": dict(out=np.zeros(shape + (2,), dst)),
           "out wrong dtype": dict(out=np.zeros(shape, F64 if dst != F64 else F32)),
           "x list": dict(x=[1.0])}
    return Case(name, kwargs, check, inplace=() if mode == "none" else ("out",), floats=("x",), required=("x",),
                bad=bad)


def register(builder):
    builder("convert")(build)
