"""Bad arguments to matmul/gemm raise TypeError/ValueError whose message names the op,
the argument and what was seen; odd but valid inputs work and crash nothing."""

import re

import numpy as np
import pytest

from dlkern.ops import gemm, matmul
from helpers import assert_close, dot_scale, rand, ref_matmul

F32 = np.float32
F64 = np.float64


def _ones(shape, dtype=F32):
    return np.ones(shape, dtype)


def _readonly(shape, dtype=F32):
    x = np.zeros(shape, dtype)
    x.flags.writeable = False
    return x


def _stride5_f32(n):
    """A float32 view with a 5-byte stride (a field of a packed record array)."""
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "u1")])
    return rec["x"]


# (id, call, exception type, regex the message must match)
MATMUL_ERRORS = [
    ("a_list", lambda: matmul([[1.0]], _ones((1, 1))), TypeError,
     r"^matmul: a must be a numpy\.ndarray, got list$"),
    ("b_python_float", lambda: matmul(_ones((2, 2)), 1.0), TypeError,
     r"^matmul: b must be a numpy\.ndarray, got float$"),
    ("a_None", lambda: matmul(None, _ones((2, 2))), TypeError,
     r"^matmul: a must be a numpy\.ndarray, got NoneType$"),
    ("b_numpy_scalar", lambda: matmul(_ones((2, 2)), np.float32(2.0)), TypeError,
     r"^matmul: b must be a numpy\.ndarray, got float32$"),
    ("a_int64", lambda: matmul(_ones((2, 3), np.int64), _ones((3, 2))), TypeError,
     r"^matmul: a has dtype int64; expected float32, float64, bfloat16 or float16$"),
    ("b_int32", lambda: matmul(_ones((2, 3)), _ones((3, 2), np.int32)), TypeError,
     r"^matmul: b has dtype int32; expected float32, float64, bfloat16 or float16$"),
    ("a_float16", lambda: matmul(_ones((2, 3), np.float16), _ones((3, 2))), TypeError,
     r"^matmul: a has dtype float16 but b has dtype float32; both must be the same float type$"),
    ("a_longdouble", lambda: matmul(_ones((2, 3), np.longdouble), _ones((3, 2), np.longdouble)), TypeError,
     r"^matmul: a has dtype float(128|96|64); expected float32, float64, bfloat16 or float16$"),
    ("a_complex64", lambda: matmul(_ones((2, 3), np.complex64), _ones((3, 2))), TypeError,
     r"^matmul: a has dtype complex64; expected float32, float64, bfloat16 or float16$"),
    ("b_complex128", lambda: matmul(_ones((2, 3), F64), _ones((3, 2), np.complex128)), TypeError,
     r"^matmul: b has dtype complex128; expected float32, float64, bfloat16 or float16$"),
    ("a_bool", lambda: matmul(_ones((2, 3), bool), _ones((3, 2))), TypeError,
     r"^matmul: a has dtype bool; expected float32, float64, bfloat16 or float16$"),
    ("b_object", lambda: matmul(_ones((2, 3)), _ones((3, 2), object)), TypeError,
     r"^matmul: b has dtype object; expected float32, float64, bfloat16 or float16$"),
    ("a_big_endian", lambda: matmul(_ones((2, 3), ">f4"), _ones((3, 2))), TypeError,
     r"^matmul: a has dtype >f4; expected float32, float64, bfloat16 or float16$"),
    ("mixed_f32_f64", lambda: matmul(_ones((2, 3)), _ones((3, 2), F64)), TypeError,
     r"^matmul: a has dtype float32 but b has dtype float64"),
    ("mixed_f64_f32", lambda: matmul(_ones((2, 3), F64), _ones((3, 2))), TypeError,
     r"^matmul: a has dtype float64 but b has dtype float32"),
    ("a_0d", lambda: matmul(np.array(2.0, F32), _ones((2, 2))), ValueError,
     r"^matmul: a is 0-d"),
    ("b_0d", lambda: matmul(_ones((2, 2)), np.array(2.0, F32)), ValueError,
     r"^matmul: b is 0-d"),
    ("inner_2d", lambda: matmul(_ones((3, 4)), _ones((5, 6))), ValueError,
     r"^matmul: inner dimensions differ: a has shape \(3, 4\) \(k=4\) and b has shape \(5, 6\) \(k=5\)$"),
    ("inner_1d", lambda: matmul(_ones(3), _ones(4)), ValueError,
     r"^matmul: inner dimensions differ: a has shape \(3,\) .* b has shape \(4,\)"),
    ("inner_batched", lambda: matmul(_ones((2, 3, 4)), _ones((2, 3, 4))), ValueError,
     r"^matmul: inner dimensions differ: a has shape \(2, 3, 4\) .* b has shape \(2, 3, 4\)"),
    ("batch_no_broadcast", lambda: matmul(_ones((2, 3, 4)), _ones((3, 4, 5))), ValueError,
     r"^matmul: batch dimensions do not broadcast: a has shape \(2, 3, 4\), b has shape \(3, 4, 5\)$"),
    ("batch_no_broadcast_0_vs_2", lambda: matmul(_ones((0, 3, 4)), _ones((2, 4, 5))), ValueError,
     r"^matmul: batch dimensions do not broadcast: a has shape \(0, 3, 4\), b has shape \(2, 4, 5\)$"),
    ("out_shape", lambda: matmul(_ones((3, 4)), _ones((4, 5)), out=np.empty((3, 4), F32)), ValueError,
     r"^matmul: out has shape \(3, 4\), expected \(3, 5\)$"),
    ("out_shape_1d", lambda: matmul(_ones((3, 4)), _ones(4), out=np.empty((3, 1), F32)), ValueError,
     r"^matmul: out has shape \(3, 1\), expected \(3,\)$"),
    ("out_shape_0d", lambda: matmul(_ones(4), _ones(4), out=np.empty(1, F32)), ValueError,
     r"^matmul: out has shape \(1,\), expected \(\)$"),
    ("out_shape_batched", lambda: matmul(_ones((2, 1, 3, 4)), _ones((5, 4, 6)), out=np.empty((5, 3, 6), F32)),
     ValueError, r"^matmul: out has shape \(5, 3, 6\), expected \(2, 5, 3, 6\)$"),
    ("out_dtype", lambda: matmul(_ones((3, 4)), _ones((4, 5)), out=np.empty((3, 5), F64)), TypeError,
     r"^matmul: out has dtype float64 but the inputs have dtype float32$"),
    ("out_int", lambda: matmul(_ones((3, 4)), _ones((4, 5)), out=np.empty((3, 5), np.int32)), TypeError,
     r"^matmul: out has dtype int32; expected float32, float64, bfloat16 or float16$"),
    ("out_readonly", lambda: matmul(_ones((3, 4)), _ones((4, 5)), out=_readonly((3, 5))), ValueError,
     r"^matmul: out is read-only$"),
    ("out_list", lambda: matmul(_ones((1, 1)), _ones((1, 1)), out=[[0.0]]), TypeError,
     r"^matmul: out must be a numpy\.ndarray, got list$"),
    ("out_misaligned", lambda: matmul(_ones((1, 6)), _ones((6, 6)), out=_stride5_f32(6)[None]), ValueError,
     r"^matmul: out is not aligned for its dtype, so it cannot be written in place"),
]


def test_matmul_reads_misaligned_inputs_through_a_copy():
    # A packed record field (5-byte stride) is legal NumPy but misaligned for float32:
    # reading it in place is undefined behaviour in C++ (UBSan), so the binding reads an
    # aligned copy and the result is NumPy's.
    x = _stride5_f32(6)
    x[:] = np.arange(1, 7, dtype=np.float32)
    m = np.arange(36, dtype=np.float32).reshape(6, 6)
    assert not x.flags.aligned
    np.testing.assert_array_equal(matmul(x, m), np.asarray(x, np.float64) @ m)
    np.testing.assert_array_equal(matmul(m, x), m @ np.asarray(x, np.float64))

GEMM_ERRORS = [
    ("a_list", lambda: gemm([[1.0]], _ones((1, 1))), TypeError,
     r"^gemm: a must be a numpy\.ndarray, got list$"),
    ("b_python_int", lambda: gemm(_ones((1, 1)), 3), TypeError,
     r"^gemm: b must be a numpy\.ndarray, got int$"),
    ("a_1d", lambda: gemm(_ones(3), _ones((3, 2))), ValueError,
     r"^gemm: a must be 2-D, got shape \(3,\)$"),
    ("b_3d", lambda: gemm(_ones((2, 4)), _ones((2, 4, 3))), ValueError,
     r"^gemm: b must be 2-D, got shape \(2, 4, 3\)$"),
    ("a_0d", lambda: gemm(np.array(1.0, F32), _ones((2, 2))), ValueError,
     r"^gemm: a must be 2-D, got shape \(\)$"),
    ("a_int", lambda: gemm(_ones((2, 3), np.int64), _ones((3, 2))), TypeError,
     r"^gemm: a has dtype int64; expected float32, float64, bfloat16 or float16$"),
    ("b_float16", lambda: gemm(_ones((2, 3)), _ones((3, 2), np.float16)), TypeError,
     r"^gemm: a has dtype float32 but b has dtype float16; both must be the same float type$"),
    ("a_complex", lambda: gemm(_ones((2, 3), np.complex128), _ones((3, 2))), TypeError,
     r"^gemm: a has dtype complex128; expected float32, float64, bfloat16 or float16$"),
    ("mixed", lambda: gemm(_ones((2, 3), F64), _ones((3, 2))), TypeError,
     r"^gemm: a has dtype float64 but b has dtype float32"),
    ("inner", lambda: gemm(_ones((3, 4)), _ones((5, 6))), ValueError,
     r"^gemm: inner dimensions differ: op\(a\) is \(3, 4\) from a of shape \(3, 4\), "
     r"op\(b\) is \(5, 6\) from b of shape \(5, 6\)$"),
    ("inner_transposed", lambda: gemm(_ones((3, 4)), _ones((3, 4)), trans_a=True, trans_b=True), ValueError,
     r"^gemm: inner dimensions differ: op\(a\) is \(4, 3\) from a of shape \(3, 4\) transposed, "
     r"op\(b\) is \(4, 3\) from b of shape \(3, 4\) transposed$"),
    ("beta_without_c", lambda: gemm(_ones((2, 3)), _ones((3, 2)), beta=0.5), ValueError,
     r"^gemm: beta=0\.5 needs an input c, but c is None$"),
    ("c_shape", lambda: gemm(_ones((3, 4)), _ones((4, 5)), np.empty((3, 4), F32)), ValueError,
     r"^gemm: c has shape \(3, 4\), expected \(3, 5\)$"),
    ("c_shape_transposed", lambda: gemm(_ones((4, 3)), _ones((4, 5)), np.empty((4, 5), F32), trans_a=True),
     ValueError, r"^gemm: c has shape \(4, 5\), expected \(3, 5\)$"),
    ("c_1d", lambda: gemm(_ones((3, 4)), _ones((4, 5)), np.empty(15, F32)), ValueError,
     r"^gemm: c has shape \(15,\), expected \(3, 5\)$"),
    ("c_dtype", lambda: gemm(_ones((3, 4)), _ones((4, 5)), np.empty((3, 5), F64)), TypeError,
     r"^gemm: c has dtype float64 but a and b have dtype float32$"),
    ("c_int", lambda: gemm(_ones((3, 4)), _ones((4, 5)), np.empty((3, 5), np.int64)), TypeError,
     r"^gemm: c has dtype int64; expected float32, float64, bfloat16 or float16$"),
    ("c_list", lambda: gemm(_ones((1, 1)), _ones((1, 1)), [[0.0]]), TypeError,
     r"^gemm: c must be a numpy\.ndarray, got list$"),
    ("c_readonly", lambda: gemm(_ones((3, 4)), _ones((4, 5)), _readonly((3, 5))), ValueError,
     r"^gemm: c is read-only$"),
    ("c_column_stride", lambda: gemm(_ones((3, 4)), _ones((4, 5)), np.empty((3, 10), F32)[:, ::2]), ValueError,
     r"^gemm: c must have unit stride along its last axis \(got 8 bytes\)"),
    ("c_fortran", lambda: gemm(_ones((3, 4)), _ones((4, 5)), np.empty((3, 5), F32, order="F")), ValueError,
     r"^gemm: c must have unit stride along its last axis \(got 12 bytes\)"),
]


def _c_is_a():
    a = _ones((3, 3))
    return gemm(a, _ones((3, 3)), a)


def _c_is_b():
    b = _ones((3, 3))
    return gemm(_ones((3, 3)), b, b)


def _c_overlaps_a():
    buf = _ones((4, 3))
    return gemm(buf[:3], _ones((3, 3)), buf[1:])


GEMM_ERRORS += [
    ("c_is_a", _c_is_a, ValueError, r"^gemm: c shares memory with an input"),
    ("c_is_b", _c_is_b, ValueError, r"^gemm: c shares memory with an input"),
    ("c_overlaps_a", _c_overlaps_a, ValueError, r"^gemm: c shares memory with an input"),
]


@pytest.mark.parametrize("case", MATMUL_ERRORS, ids=[c[0] for c in MATMUL_ERRORS])
def test_matmul_errors(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


@pytest.mark.parametrize("case", GEMM_ERRORS, ids=[c[0] for c in GEMM_ERRORS])
def test_gemm_errors(case):
    _, call, exc, pattern = case
    with pytest.raises(exc, match=pattern):
        call()


def test_rejected_out_and_c_are_untouched():
    out = np.full((3, 4), 7.0, F32)
    with pytest.raises(ValueError, match=re.escape("expected (3, 5)")):
        matmul(_ones((3, 4)), _ones((4, 5)), out=out)
    c = np.full((3, 5), 7.0, F32)
    with pytest.raises(TypeError, match="float64"):
        gemm(_ones((3, 4), F64), _ones((4, 5), F64), c, beta=1.0)
    assert (out == 7.0).all() and (c == 7.0).all()


# ---------------------------------------------------------------------------- nothing crashes

def _huge_stride_on_size1_axes(dtype):
    # A size-1 axis may carry any stride; it must never be stepped along.
    item = np.dtype(dtype).itemsize
    rng = np.random.default_rng(3)
    a_data, b_data = rand(rng, 7, dtype), rand(rng, 7, dtype)
    a = np.lib.stride_tricks.as_strided(a_data, shape=(1, 1, 7), strides=(2**50, 2**40, item))
    b = np.lib.stride_tricks.as_strided(b_data, shape=(7, 1), strides=(item, -(2**40)))
    return a, b


def _big_strides(dtype):
    rng = np.random.default_rng(4)
    base = rand(rng, (9, 100_000), dtype)          # 3.6 MB (float32) rows
    a = base[:, ::20_000]                           # (9, 5), strides 400 kB x 80 kB
    b = base[:5, ::-9_001][:, :3]                   # (5, 3), negative column stride
    return a, b


@pytest.mark.parametrize("make", [_huge_stride_on_size1_axes, _big_strides], ids=["size1_axes", "big"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_huge_stride_views(make, dtype):
    a, b = make(dtype)
    assert_close(matmul(a, b), ref_matmul(a, b), a.shape[-1], dtype, dot_scale(a, b))


@pytest.mark.parametrize("shapes", [((2, 0, 3), (2, 3, 4)), ((3, 2, 0), (3, 0, 5)),
                                    ((0, 3, 4), (0, 4, 5)), ((2, 3, 4), (2, 4, 0)),
                                    ((2, 0, 3), (3,)), ((3,), (4, 3, 0))])
def test_zero_size_with_batch(shapes):
    a, b = np.ones(shapes[0], F32), np.ones(shapes[1], F32)
    expected = np.matmul(a, b)
    result = matmul(a, b)
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("value", [True, 1, 1.5, 2j, "x", b"x", (1.0,), None],
                         ids=["bool", "int", "float", "complex", "str", "bytes", "tuple", "None"])
def test_python_scalars_and_sequences_are_type_errors(value):
    name = type(value).__name__
    with pytest.raises(TypeError, match=rf"^matmul: a must be a numpy\.ndarray, got {name}$"):
        matmul(value, _ones((1, 1)))
    with pytest.raises(TypeError, match=rf"^gemm: b must be a numpy\.ndarray, got {name}$"):
        gemm(_ones((1, 1)), value)


@pytest.mark.parametrize("dtype", [bool, object, "U3", "datetime64[s]", [("x", "f4")]],
                         ids=["bool", "object", "str", "datetime", "record"])
def test_non_float_arrays_are_type_errors(dtype):
    odd = np.zeros((2, 2), dtype)
    with pytest.raises(TypeError, match=r"^matmul: b has dtype .*; expected float32, float64, bfloat16 or float16$"):
        matmul(_ones((2, 2)), odd)
    with pytest.raises(TypeError, match=r"^gemm: a has dtype .*; expected float32, float64, bfloat16 or float16$"):
        gemm(odd, _ones((2, 2)))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_matrix_subclass_is_read_as_an_array():
    a = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    b = np.matrix([[5.0], [6.0]])
    np.testing.assert_array_equal(np.asarray(matmul(a, b)), [[17.0], [39.0]])
    np.testing.assert_array_equal(np.asarray(gemm(a, b)), [[17.0], [39.0]])


def test_readonly_inputs_are_fine():
    rng = np.random.default_rng(5)
    a, b = rand(rng, (6, 5), F32), rand(rng, (5, 4), F32)
    a.flags.writeable = False
    b.flags.writeable = False
    assert_close(matmul(a, b), ref_matmul(a, b), 5, F32, dot_scale(a, b))
    assert_close(gemm(a, b), ref_matmul(a, b), 5, F32, dot_scale(a, b))
