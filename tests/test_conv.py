"""conv2d / conv1d / causal_conv1d / Conv1dStream against float64 NumPy references
(dlkern.reference: a loop over kernel taps + einsum), every ISA path and 1 and 2 threads; float64
finite-difference gradient checks; argument errors."""

import zlib

import numpy as np
import pytest

import dlkern
from dlkern import ops
from dlkern import reference as R
from helpers import assert_close, check_grads, num_threads


# ----------------------------------------------------------------------------- references


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


class Geometry:
    """Explicit (top, bottom, left, right) padding, stride, dilation, and the sizes the
    tolerances need (channels and output positions per group)."""

    def __init__(self, x_shape, w_shape, stride=1, pads=(0, 0, 0, 0), dilation=1, groups=1):
        self.stride, self.dil, self.pads, self.groups = _pair(stride), _pair(dilation), pads, groups
        o, cg, kh, kw = w_shape
        self.og, self.cg, self.kernel = o // groups, cg, (kh, kw)

    def args(self):
        """(stride, [(top, bottom), (left, right)], dilation, groups) for dlkern.reference."""
        return self.stride, [self.pads[:2], self.pads[2:]], self.dil, self.groups


def ref_conv2d(x, w, b, geo):
    return R.conv2d(x, w, b, *geo.args())


def ref_conv2d_backward(gy, x, w, geo):
    return R.conv2d_backward(gy, x, w, *geo.args())


def check_conv2d(x, w, b, geo, call_kwargs, dtype, rng):
    """Forward and all three gradients against the references, with a rounding budget
    from the same products on squared operands (the size of each reduction's terms)."""
    y = ops.conv2d(x, w, b, **call_kwargs)
    k = geo.cg * geo.kernel[0] * geo.kernel[1] + 1
    assert_close(y, ref_conv2d(x, w, b, geo), k, dtype,
                 np.sqrt(ref_conv2d(np.square(x, dtype=np.float64), np.square(w, dtype=np.float64), None, geo)) + 1)
    gy = rng.uniform(-1, 1, y.shape).astype(dtype)
    dx, dw, db = ops.conv2d_backward(gy, x, w, **call_kwargs)
    rdx, rdw, rdb = ref_conv2d_backward(gy, x, w, geo)
    sdx, sdw, _ = ref_conv2d_backward(np.square(gy, dtype=np.float64), np.square(x, dtype=np.float64),
                                      np.square(w, dtype=np.float64), geo)
    reduction = y.shape[0] * y.shape[2] * y.shape[3]
    assert_close(dx, rdx, geo.og * geo.kernel[0] * geo.kernel[1], dtype, np.sqrt(sdx))
    assert_close(dw, rdw, reduction, dtype, np.sqrt(sdw))
    assert_close(db, rdb, reduction, dtype, np.sqrt(np.square(gy, dtype=np.float64).sum(axis=(0, 2, 3))))
    return y, (dx, dw, db)


# ----------------------------------------------------------------------------- conv2d cases

# (id, x shape, w shape, kwargs for ops.conv2d, explicit pads (t, b, l, r))
CASES = [
    ("3x3_pad1", (2, 3, 7, 9), (4, 3, 3, 3), dict(padding=1), (1, 1, 1, 1)),
    ("kernel_equals_input", (2, 3, 5, 4), (2, 3, 5, 4), {}, (0, 0, 0, 0)),
    ("stride_gt_kernel", (2, 2, 11, 10), (3, 2, 2, 2), dict(stride=3), (0, 0, 0, 0)),
    ("pad_half_kernel", (1, 2, 6, 7), (3, 2, 5, 3), dict(padding=(2, 1)), (2, 2, 1, 1)),
    ("pointwise_1x1", (3, 6, 5, 7), (4, 6, 1, 1), {}, (0, 0, 0, 0)),
    ("1x1_stride2_pad1", (2, 5, 6, 5), (3, 5, 1, 1), dict(stride=2, padding=1), (1, 1, 1, 1)),
    ("depthwise", (2, 4, 8, 7), (4, 1, 3, 3), dict(padding=1, groups=4), (1, 1, 1, 1)),
    ("depthwise_x2_stride2_dil2", (2, 3, 11, 9), (6, 1, 3, 2), dict(stride=2, padding=(2, 1), dilation=2, groups=3),
     (2, 2, 1, 1)),
    ("groups2", (2, 4, 7, 6), (6, 2, 3, 3), dict(padding=1, groups=2), (1, 1, 1, 1)),
    ("odd_batch1", (1, 3, 11, 13), (5, 3, 3, 3), dict(stride=2), (0, 0, 0, 0)),
    ("dilation2", (2, 2, 9, 10), (3, 2, 3, 3), dict(dilation=2, padding=2), (2, 2, 2, 2)),
    ("non_square_all", (2, 3, 9, 7), (5, 3, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
     (1, 1, 0, 0)),
    ("same_even_kernel", (2, 2, 6, 7), (3, 2, 4, 2), dict(padding="same"), (1, 2, 0, 1)),
    ("lenet_c1", (3, 1, 12, 12), (6, 1, 5, 5), {}, (0, 0, 0, 0)),
    # Wide rows with 16+ channels per group take the stride-1 shifted-window path
    # (no im2col); with fewer channels the same geometry goes through im2col.
    ("wide_shifted_c16", (2, 16, 6, 40), (4, 16, 3, 3), dict(padding=1), (1, 1, 1, 1)),
    ("wide_shifted_groups_dil_c16", (2, 32, 7, 45), (6, 16, 3, 2), dict(padding=(1, 2), dilation=(2, 3), groups=2),
     (1, 1, 2, 2)),
    ("wide_shifted_same_even_c16", (2, 16, 5, 40), (3, 16, 4, 2), dict(padding="same"), (1, 2, 0, 1)),
    ("lenet_c1_padded_wide", (2, 1, 28, 28), (6, 1, 5, 5), dict(padding=2), (2, 2, 2, 2)),
    ("wide_shifted", (2, 3, 6, 40), (4, 3, 3, 3), dict(padding=1), (1, 1, 1, 1)),
    ("wide_shifted_groups_dil", (2, 4, 7, 45), (6, 2, 3, 2), dict(padding=(1, 2), dilation=(2, 3), groups=2),
     (1, 1, 2, 2)),
    ("wide_shifted_1x3", (1, 5, 3, 33), (3, 5, 1, 3), dict(padding=(0, 1)), (0, 0, 1, 1)),
    ("wide_shifted_same_even", (2, 2, 5, 40), (3, 2, 4, 2), dict(padding="same"), (1, 2, 0, 1)),
    ("wide_shifted_unpadded", (2, 3, 6, 41), (2, 3, 2, 3), {}, (0, 0, 0, 0)),
    # One group: the taps of a kernel row run as one deeper GEMM, split where the depth
    # would pass 512 (200 channels: two taps, then one).
    ("wide_shifted_c200_split_runs", (1, 200, 3, 20), (4, 200, 3, 3), dict(padding=1), (1, 1, 1, 1)),
    # Strides other than 1 on wide rows: the polyphase split of the same path.
    ("wide_stride2", (2, 3, 7, 66), (4, 3, 3, 3), dict(stride=2, padding=1), (1, 1, 1, 1)),
    ("wide_stride_2x3_dil2", (2, 4, 11, 80), (5, 4, 3, 2), dict(stride=(2, 3), padding=(2, 1), dilation=2),
     (2, 2, 1, 1)),
    ("wide_1x1_stride2", (2, 6, 5, 40), (3, 6, 1, 1), dict(stride=2), (0, 0, 0, 0)),
    ("wide_stride3_k2_groups", (1, 4, 8, 50), (4, 2, 2, 2), dict(stride=3, groups=2), (0, 0, 0, 0)),
    # ... and with 16+ channels per group and rows wide enough (garbage <= 1/12) the
    # polyphase split runs: odd and even sizes, padding 0/1/2, stride 3, 1x1 stride 2 (one
    # phase), kernel 5, groups, dilation (only even phases read), a stride along H only,
    # batch 1; 8 channels, or a 7-wide stride-2 output, stay on im2col.
    ("stride2_c16_odd", (2, 16, 9, 23), (5, 16, 3, 3), dict(stride=2, padding=1), (1, 1, 1, 1)),
    ("stride2_c16_even_unpadded_batch1", (1, 16, 10, 24), (4, 16, 3, 3), dict(stride=2), (0, 0, 0, 0)),
    ("stride2_k5_pad2_c16", (2, 16, 11, 44), (3, 16, 5, 5), dict(stride=2, padding=2), (2, 2, 2, 2)),
    ("stride3_c16", (2, 16, 13, 40), (4, 16, 3, 3), dict(stride=3, padding=1), (1, 1, 1, 1)),
    ("stride3_k5_c16", (1, 17, 14, 50), (3, 17, 5, 4), dict(stride=3, padding=(2, 1)), (2, 2, 1, 1)),
    ("1x1_stride2_c16", (2, 16, 7, 12), (5, 16, 1, 1), dict(stride=2), (0, 0, 0, 0)),
    ("1x1_stride2_pad1_c16", (2, 16, 6, 9), (3, 16, 1, 1), dict(stride=2, padding=1), (1, 1, 1, 1)),
    ("stride2_groups2_c16", (2, 32, 8, 22), (6, 16, 3, 3), dict(stride=2, padding=1, groups=2), (1, 1, 1, 1)),
    ("stride2_dil2_c16", (2, 16, 11, 44), (3, 16, 3, 3), dict(stride=2, padding=2, dilation=2), (2, 2, 2, 2)),
    ("stride_2x1_c16", (2, 16, 9, 26), (4, 16, 3, 3), dict(stride=(2, 1), padding=1), (1, 1, 1, 1)),
    ("stride_1x2_c16", (2, 16, 5, 21), (4, 16, 2, 3), dict(stride=(1, 2), padding=(0, 1)), (0, 0, 1, 1)),
    ("stride2_c8_im2col", (2, 8, 9, 20), (4, 8, 3, 3), dict(stride=2, padding=1), (1, 1, 1, 1)),
    ("stride2_narrow_c16_im2col", (2, 16, 14, 14), (4, 16, 3, 3), dict(stride=2, padding=1), (1, 1, 1, 1)),
    ("threaded_stride2_c16", (4, 16, 17, 30), (8, 16, 3, 3), dict(stride=2, padding=1), (1, 1, 1, 1)),
    # Big enough that 2 threads split the images; several im2col chunks per image.
    ("threaded_chunks", (4, 16, 20, 20), (8, 16, 3, 3), dict(padding=1, stride=(1, 2)), (1, 1, 1, 1)),
    ("threaded_shifted", (4, 8, 24, 64), (8, 8, 3, 3), dict(padding=1), (1, 1, 1, 1)),
    ("threaded_shifted_c16", (4, 16, 24, 64), (8, 16, 3, 3), dict(padding=1), (1, 1, 1, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conv2d_matches_reference(case, isa, threads):
    _, xs, ws, kwargs, pads = case
    rng = np.random.default_rng(zlib.crc32(case[0].encode()))
    x = rng.uniform(-1, 1, xs).astype(np.float32)
    w = rng.uniform(-1, 1, ws).astype(np.float32)
    b = rng.uniform(-1, 1, ws[0]).astype(np.float32)
    geo = Geometry(xs, ws, kwargs.get("stride", 1), pads, kwargs.get("dilation", 1), kwargs.get("groups", 1))
    x_before, w_before = x.copy(), w.copy()
    check_conv2d(x, w, b, geo, kwargs, np.float32, rng)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(w, w_before)


@pytest.mark.parametrize("case", CASES[::3], ids=[c[0] for c in CASES[::3]])
def test_conv2d_float64(case):
    _, xs, ws, kwargs, pads = case
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    geo = Geometry(xs, ws, kwargs.get("stride", 1), pads, kwargs.get("dilation", 1), kwargs.get("groups", 1))
    check_conv2d(x, w, None, geo, kwargs, np.float64, rng)


def test_threads_agree():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 16, 18, 40)).astype(np.float32)
    w = rng.standard_normal((12, 16, 3, 3)).astype(np.float32)
    results = []
    for n in (1, 2):
        with num_threads(n):
            y = ops.conv2d(x, w, padding=1)
            results.append((y,) + ops.conv2d_backward(np.ones_like(y), x, w, padding=1))
    for one, two in zip(*results):
        np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-4)


def test_non_contiguous_inputs_and_need():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 12))[:, :, :, ::2]   # strided view
    w = np.asfortranarray(rng.standard_normal((4, 3, 3, 3)))
    geo = Geometry(x.shape, w.shape, 1, (1, 1, 1, 1))
    np.testing.assert_allclose(ops.conv2d(x, w, padding=1), ref_conv2d(x, w, None, geo), rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal((2, 4, 8, 6))
    dx, dw, db = ops.conv2d_backward(gy, x, w, padding=1, need=(False, True, False))
    assert dx is None and db is None
    np.testing.assert_allclose(dw, ref_conv2d_backward(gy, x, w, geo)[1], rtol=1e-12, atol=1e-12)


def test_empty_batch():
    x = np.zeros((0, 3, 5, 5), np.float32)
    w = np.ones((2, 3, 3, 3), np.float32)
    y = ops.conv2d(x, w)
    assert y.shape == (0, 2, 3, 3)
    dx, dw, db = ops.conv2d_backward(y, x, w)
    assert dx.shape == x.shape and not dw.any() and not db.any()


# ----------------------------------------------------------------------------- gradients

GRAD_CASES = [
    ("3x3_pad1", (2, 2, 5, 4), (3, 2, 3, 3), dict(padding=1)),
    ("stride2_groups2", (1, 4, 6, 5), (4, 2, 3, 2), dict(stride=2, padding=(1, 0), groups=2)),
    ("depthwise_dil2", (2, 3, 6, 6), (3, 1, 3, 3), dict(padding=2, dilation=2, groups=3)),
    ("pointwise", (2, 3, 3, 4), (2, 3, 1, 1), {}),
    ("shifted", (1, 2, 3, 18), (2, 2, 3, 3), dict(padding=1)),
    ("shifted_c16", (1, 16, 3, 18), (2, 16, 3, 3), dict(padding=1)),
    ("shifted_stride2", (1, 2, 5, 34), (2, 2, 3, 3), dict(padding=1, stride=2)),
    ("shifted_stride2_c16", (1, 16, 5, 22), (2, 16, 3, 3), dict(padding=1, stride=2)),
    ("shifted_1x1_stride2_c16", (2, 16, 5, 6), (2, 16, 1, 1), dict(stride=2)),
]


@pytest.mark.parametrize("case", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_conv2d_gradients_finite_differences(case):
    _, xs, ws, kwargs = case
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    check_grads(lambda x, w, b: ops.conv2d(x, w, b, **kwargs),
                lambda gy, x, w, b: ops.conv2d_backward(gy, x, w, **kwargs),
                [x, w, b], rng)


def test_conv1d_and_causal_gradients_finite_differences():
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((2, 4, 9)), rng.standard_normal((6, 2, 3)), rng.standard_normal(6)
    kw = dict(stride=2, padding=1, dilation=2, groups=2)
    check_grads(lambda x, w, b: ops.conv1d(x, w, b, **kw),
                lambda gy, x, w, b: ops.conv1d_backward(gy, x, w, **kw), [x, w, b], rng)
    check_grads(lambda x, w, b: ops.causal_conv1d(x, w, b, dilation=2, groups=2),
                lambda gy, x, w, b: ops.causal_conv1d_backward(gy, x, w, dilation=2, groups=2), [x, w, b], rng)


# ----------------------------------------------------------------------------- conv1d


def ref_conv1d(x, w, b, stride, left, right, dilation, groups):
    geo = Geometry((x.shape[0], x.shape[1], 1, x.shape[2]), (w.shape[0], w.shape[1], 1, w.shape[2]),
                   (1, stride), (0, 0, left, right), (1, dilation), groups)
    return ref_conv2d(x[:, :, None, :], w[:, :, None, :], b, geo)[:, :, 0, :], geo


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 3, 1, 1), (1, 2, 2, 3), (3, 1, 2, 1)])
def test_conv1d(stride, padding, dilation, groups, isa, threads):
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (3, 6, 29)).astype(np.float32)
    w = rng.uniform(-1, 1, (9, 6 // groups, 4)).astype(np.float32)
    b = rng.uniform(-1, 1, 9).astype(np.float32)
    y = ops.conv1d(x, w, b, stride, padding, dilation, groups)
    ref, geo = ref_conv1d(x, w, b, stride, padding, padding, dilation, groups)
    assert_close(y, ref, w.shape[1] * 4 + 1, np.float32, 1 + np.sqrt(np.abs(ref) + 4 * w.shape[1]))
    gy = rng.uniform(-1, 1, y.shape).astype(np.float32)
    dx, dw, db = ops.conv1d_backward(gy, x, w, stride, padding, dilation, groups)
    rdx, rdw, rdb = ref_conv2d_backward(gy[:, :, None, :], x[:, :, None, :], w[:, :, None, :], geo)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (9,)
    assert_close(dx, rdx[:, :, 0, :], 9 * 4, np.float32, 3.0)
    assert_close(dw, rdw[:, :, 0, :], y.shape[0] * y.shape[2], np.float32, 1.0)
    assert_close(db, rdb, y.shape[0] * y.shape[2], np.float32, 1.0)


@pytest.mark.parametrize("dilation,groups", [(1, 1), (3, 1), (2, 2)])
def test_causal_conv1d(dilation, groups, isa, threads):
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, (2, 4, 23)).astype(np.float32)
    w = rng.uniform(-1, 1, (6, 4 // groups, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, 6).astype(np.float32)
    y = ops.causal_conv1d(x, w, b, dilation=dilation, groups=groups)
    ref, _ = ref_conv1d(x, w, b, 1, 2 * dilation, 0, dilation, groups)
    assert y.shape == (2, 6, 23)
    assert_close(y, ref, 13, np.float32, 4.0)
    # Causality: changing the future leaves the past alone.
    x2 = x.copy()
    x2[:, :, 15:] += 1
    np.testing.assert_array_equal(ops.causal_conv1d(x2, w, b, dilation=dilation, groups=groups)[:, :, :15],
                                  y[:, :, :15])


@pytest.mark.parametrize("chunks", [[1] * 17, [5, 5, 5, 2], [17], [2, 7, 1, 1, 6], [3, 0, 14]],
                         ids=["ones", "fives", "whole", "mixed", "with_empty"])
@pytest.mark.parametrize("dilation,groups,kernel", [(1, 1, 3), (2, 2, 4), (1, 1, 1)])
def test_conv1d_stream_equals_whole(chunks, dilation, groups, kernel):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 17)).astype(np.float32)
    w = rng.standard_normal((6, 4 // groups, kernel)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    whole = ops.causal_conv1d(x, w, b, dilation=dilation, groups=groups)
    stream = ops.Conv1dStream(w, b, dilation=dilation, groups=groups)
    for repeat in range(2):  # reset() starts a fresh sequence
        pieces, t = [], 0
        for length in chunks:
            out = stream.step(x[:, :, t:t + length])
            assert out.shape == (2, 6, length)
            pieces.append(out)
            t += length
        np.testing.assert_allclose(np.concatenate(pieces, axis=2), whole, rtol=1e-5, atol=1e-5)
        stream.reset()


def test_conv1d_stream_batch_change_needs_reset():
    w = np.ones((2, 2, 3), np.float32)
    stream = ops.Conv1dStream(w)
    stream.step(np.ones((1, 2, 4), np.float32))
    with pytest.raises(ValueError, match="reset"):
        stream.step(np.ones((3, 2, 4), np.float32))
    stream.reset()
    assert stream.step(np.ones((3, 2, 4), np.float32)).shape == (3, 2, 4)


# ----------------------------------------------------------------------------- errors

F32 = np.float32


def _x(shape=(1, 2, 5, 5), dtype=F32):
    return np.ones(shape, dtype)


ERRORS = [
    ("stride0", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), stride=0), ValueError, r"conv2d: stride"),
    ("dilation_neg", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), dilation=(1, -1)), ValueError, r"conv2d: dilation"),
    ("padding_neg", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), padding=-1), ValueError, r"conv2d: padding"),
    ("padding_bad_str", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), padding="full"), ValueError, r"padding"),
    ("same_strided", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), padding="same", stride=2), ValueError,
     r"'same'.*stride"),
    ("kernel_too_big", lambda: ops.conv2d(_x(), _x((1, 2, 6, 3))), ValueError, r"conv2d: kernel size 6"),
    ("dilated_kernel_too_big", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), dilation=3), ValueError,
     r"conv2d: kernel size 3 with dilation 3"),
    ("groups_channels", lambda: ops.conv2d(_x((1, 3, 5, 5)), _x((2, 1, 3, 3)), groups=2), ValueError,
     r"conv2d: groups=2 does not divide the 3 input channels"),
    ("groups_out_channels", lambda: ops.conv2d(_x((1, 4, 5, 5)), _x((3, 2, 3, 3)), groups=2), ValueError,
     r"conv2d: groups=2 does not divide the 3 output channels"),
    ("groups_zero", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), groups=0), ValueError, r"conv2d: groups"),
    ("weight_channels", lambda: ops.conv2d(_x((1, 4, 5, 5)), _x((2, 3, 3, 3))), ValueError,
     r"conv2d: weight .* C/groups = 4"),
    ("x_ndim", lambda: ops.conv2d(_x((2, 5, 5)), _x((1, 2, 3, 3))), ValueError, r"conv2d: x must be 4-D"),
    ("w_ndim", lambda: ops.conv2d(_x(), _x((2, 3, 3))), ValueError, r"conv2d: weight must be 4-D"),
    ("dtype_mismatch", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3), np.float64)), TypeError,
     r"conv2d: x has dtype float32 but weight has dtype float64"),
    ("int_dtype", lambda: ops.conv2d(_x(dtype=np.int32), _x((1, 2, 3, 3), np.int32)), TypeError,
     r"conv2d: x has dtype int32"),
    ("not_array", lambda: ops.conv2d([[1.0]], _x((1, 2, 3, 3))), TypeError, r"conv2d: x must be a numpy.ndarray"),
    ("bias_shape", lambda: ops.conv2d(_x(), _x((3, 2, 3, 3)), np.ones(2, F32)), ValueError,
     r"conv2d: bias has shape \(2,\), expected \(3,\)"),
    ("bias_dtype", lambda: ops.conv2d(_x(), _x((3, 2, 3, 3)), np.ones(3)), TypeError, r"conv2d: bias has dtype"),
    ("stride_triple", lambda: ops.conv2d(_x(), _x((1, 2, 3, 3)), stride=(1, 1, 1)), TypeError, r"conv2d: stride"),
    ("grad_out_shape", lambda: ops.conv2d_backward(_x((1, 1, 2, 2)), _x(), _x((1, 2, 3, 3))), ValueError,
     r"conv2d_backward: grad_out has shape \(1, 1, 2, 2\), expected the output shape \(1, 1, 3, 3\)"),
    ("conv1d_ndim", lambda: ops.conv1d(_x(), _x((1, 2, 3))), ValueError, r"conv1d: x must be 3-D"),
    ("conv1d_kernel_too_big", lambda: ops.conv1d(_x((1, 2, 4)), _x((1, 2, 5))), ValueError,
     r"conv1d: kernel size 5"),
    ("conv1d_stride0", lambda: ops.conv1d(_x((1, 2, 4)), _x((1, 2, 3)), stride=0), ValueError, r"conv1d: stride"),
    ("causal_dilation0", lambda: ops.causal_conv1d(_x((1, 2, 4)), _x((1, 2, 3)), dilation=0), ValueError,
     r"causal_conv1d: dilation"),
    ("stream_channels", lambda: ops.Conv1dStream(_x((2, 2, 3))).step(_x((1, 3, 4))), ValueError,
     r"Conv1dStream.step: x_chunk .* has 3 channels"),
    ("stream_dtype", lambda: ops.Conv1dStream(_x((2, 2, 3))).step(_x((1, 2, 4), np.float64)), TypeError,
     r"Conv1dStream.step: x_chunk has dtype float64"),
    # The raw kernel entry validates too.
    ("C_padding_neg", lambda: dlkern._C.conv2d(_x(), _x((1, 2, 3, 3)), None, (1, 1), (0, -1)),
     ValueError, r"conv2d: padding must be non-negative"),
    ("C_kernel_too_big", lambda: dlkern._C.conv2d(_x(), _x((1, 2, 7, 3))), ValueError,
     r"conv2d: kernel .* larger than the padded input"),
    ("C_non_contiguous", lambda: dlkern._C.conv2d(_x((1, 2, 5, 10))[..., ::2], _x((1, 2, 3, 3))),
     ValueError, r"conv2d: x must be C-contiguous"),
]


@pytest.mark.parametrize("call,exc,pattern", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_conv1d_stream_takes_a_reversed_channels_last_chunk():
    # A chunk with negative strides and channels fastest: np.concatenate with the state
    # keeps that layout, and the kernel (C-contiguous only) refused the window (fuzz seed
    # 1966490672). Reference: the causal K=2 convolution written out in float64.
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 6, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((1, 8, 6)).astype(np.float32).transpose(0, 2, 1)[::-1, ::-1, ::-1]
    assert not x.flags.c_contiguous and x.strides[2] < 0
    y = ops.Conv1dStream(w, b).step(x)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    prev = np.concatenate([np.zeros((1, 6, 1)), x64[:, :, :-1]], axis=2)
    want = np.einsum("oc,nct->not", w64[:, :, 0], prev) + np.einsum("oc,nct->not", w64[:, :, 1], x64) + b[None, :, None]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
