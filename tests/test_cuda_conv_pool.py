"""dlkern._C_cuda convolution and pooling: conv2d / conv1d / causal_conv1d (forward and
backward), max_pool2d, avg_pool2d, adaptive_avg_pool2d (forward and backward).

Host side (runs wherever the CUDA module is built, GPU or not): the plans bound as
testing aids (_conv2d_plan, _pool2d_plan) against the CPU ops' output shapes and error
messages, the chunking of the im2col buffer, and argument errors raised before any
device work. The float64 NumPy references below are themselves checked against the
CPU dlkern ops on the host, so the GPU tests that use them start from a tested oracle.
GPU tests (requires_gpu) compare the CUDA results with those references and with the
CPU ops.
"""
import zlib

import numpy as np
import pytest

from dlkern import ops

from cuda_support import argument_error_test, C, requires_gpu, requires_module  # noqa: E402

DTYPES = [np.float32, np.float64]


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def assert_near(got, want, dtype, k):
    """Max-norm check: error below tol * sqrt(k) * (1 + max|want|); k = terms per sum."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    if want.size == 0:
        return
    tol = (1e-6 if dtype == np.float32 else 1e-14) * max(k, 1) ** 0.5 * (1 + np.abs(want).max())
    err = np.abs(got - want).max()
    assert err <= tol, f"max error {err} > {tol}"


# ----------------------------------------------------------------------------- references


def conv_pads(x_shape, w_shape, stride, padding, dilation):
    """((top, bottom), (left, right)) as dlkern.ops.conv2d resolves padding."""
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(w_shape[2:], dilation))
    return tuple((p, p) for p in pair(padding))


def conv_patches(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """patch[r][q] = xp[:, :, r*dh + sh*i, q*dw + sw*j] for i < oh, j < ow."""
    return [[xp[:, :, r * dh:r * dh + sh * (oh - 1) + 1:sh, q * dw:q * dw + sw * (ow - 1) + 1:sw]
             for q in range(kw)] for r in range(kh)]


def conv2d_ref(x, w, b, stride, pads, dilation, groups):
    """float64 cross-correlation, tap by tap (einsum over channels per group)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    n, c, hp, wp = xp.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, oh, ow))
    patches = conv_patches(xp, kh, kw, sh, sw, dh, dw, oh, ow)
    for g in range(groups):
        for r in range(kh):
            for q in range(kw):
                y[:, g * og:(g + 1) * og] += np.einsum(
                    "nchw,oc->nohw", patches[r][q][:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, r, q])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def conv2d_backward_ref(dy, x, w, stride, pads, dilation, groups):
    """float64 (dx, dw, db) of conv2d_ref: each tap's patch gets W^T dy added back."""
    dy, x, w = dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64)
    (sh, sw), (dh, dw_) = stride, dilation
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dxp = np.zeros_like(xp)
    o, cg, kh, kw = w.shape
    og = o // groups
    oh, ow = dy.shape[2:]
    dw = np.zeros_like(w)
    patches = conv_patches(xp, kh, kw, sh, sw, dh, dw_, oh, ow)
    dpatches = conv_patches(dxp, kh, kw, sh, sw, dh, dw_, oh, ow)  # views into dxp
    for g in range(groups):
        go, gc = slice(g * og, (g + 1) * og), slice(g * cg, (g + 1) * cg)
        for r in range(kh):
            for q in range(kw):
                dpatches[r][q][:, gc] += np.einsum("nohw,oc->nchw", dy[:, go], w[go, :, r, q])
                dw[go, :, r, q] = np.einsum("nohw,nchw->oc", dy[:, go], patches[r][q][:, gc])
    dx = dxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def pool_out_size(n, k, s, p, d, ceil_mode):
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def max_pool_ref(x, k, s, p, d, ceil_mode):
    """(y, indices), float64, vectorised over the (n, c) planes: scan rows then columns,
    the first valid position starts, then a larger value or a NaN takes over."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(k), pair(s if s is not None else k), pair(p), pair(d)
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    oh_n, ow_n = pool_out_size(h, kh, sh, ph, dh, ceil_mode), pool_out_size(w, kw, sw, pw, dw, ceil_mode)
    y = np.full((n, c, oh_n, ow_n), -np.inf)
    idx = np.full((n, c, oh_n, ow_n), -1, np.int64)
    for oh in range(oh_n):
        for ow in range(ow_n):
            best, at = y[:, :, oh, ow], idx[:, :, oh, ow]  # views
            for r in range(kh):
                ih = oh * sh - ph + r * dh
                if not 0 <= ih < h:
                    continue
                for q in range(kw):
                    iw = ow * sw - pw + q * dw
                    if not 0 <= iw < w:
                        continue
                    v = x[:, :, ih, iw]
                    take = (at < 0) | (v > best) | np.isnan(v)
                    best[take] = v[take]
                    at[take] = ih * w + iw
    return y, idx


def max_pool_backward_ref(dy, idx, input_shape):
    n, c, h, w = input_shape
    dx = np.zeros((n * c, h * w))
    flat_dy, flat_idx = dy.reshape(n * c, -1).astype(np.float64), idx.reshape(n * c, -1)
    for plane in range(n * c):
        keep = flat_idx[plane] >= 0
        np.add.at(dx[plane], flat_idx[plane][keep], flat_dy[plane][keep])
    return dx.reshape(input_shape)


def avg_windows(h, w, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """[(oh, ow, rows slice, cols slice, divisor or None)] by PyTorch's avg_pool2d rule."""
    (kh, kw), (sh, sw), (ph, pw) = pair(k), pair(s if s is not None else k), pair(p)
    out = []
    for oh in range(pool_out_size(h, kh, sh, ph, 1, ceil_mode)):
        h0 = oh * sh - ph
        h1 = min(h0 + kh, h + ph)
        for ow in range(pool_out_size(w, kw, sw, pw, 1, ceil_mode)):
            w0 = ow * sw - pw
            w1 = min(w0 + kw, w + pw)
            rows, cols = slice(max(h0, 0), min(h1, h)), slice(max(w0, 0), min(w1, w))
            inside = (rows.stop - rows.start) * (cols.stop - cols.start)
            if rows.stop <= rows.start or cols.stop <= cols.start:
                div = None
            elif divisor_override:
                div = divisor_override
            else:
                div = (h1 - h0) * (w1 - w0) if count_include_pad else inside
            out.append((oh, ow, rows, cols, div))
    return out


def avg_pool_ref(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    x = x.astype(np.float64)
    n, c, h, w = x.shape
    wins = avg_windows(h, w, k, s, p, ceil_mode, count_include_pad, divisor_override)
    y = np.zeros((n, c, wins[-1][0] + 1, wins[-1][1] + 1))
    for oh, ow, rows, cols, div in wins:
        if div is not None:
            y[:, :, oh, ow] = x[:, :, rows, cols].sum(axis=(2, 3)) / div
    return y


def avg_pool_backward_ref(dy, input_shape, k, s, p, ceil_mode, count_include_pad, divisor_override):
    dx = np.zeros(input_shape)
    for oh, ow, rows, cols, div in avg_windows(*input_shape[2:], k, s, p, ceil_mode, count_include_pad,
                                               divisor_override):
        if div is not None:
            dx[:, :, rows, cols] += dy[:, :, oh, ow, None, None].astype(np.float64) / div
    return dx


def adaptive_windows(h, w, oh_n, ow_n):
    for oh in range(oh_n):
        rows = slice(oh * h // oh_n, -(-(oh + 1) * h // oh_n))
        for ow in range(ow_n):
            yield oh, ow, rows, slice(ow * w // ow_n, -(-(ow + 1) * w // ow_n))


def adaptive_ref(x, size):
    x = x.astype(np.float64)
    y = np.zeros(x.shape[:2] + tuple(size))
    for oh, ow, rows, cols in adaptive_windows(*x.shape[2:], *size):
        y[:, :, oh, ow] = x[:, :, rows, cols].mean(axis=(2, 3))
    return y


def adaptive_backward_ref(dy, input_shape):
    dx = np.zeros(input_shape)
    for oh, ow, rows, cols in adaptive_windows(*input_shape[2:], *dy.shape[2:]):
        area = (rows.stop - rows.start) * (cols.stop - cols.start)
        dx[:, :, rows, cols] += dy[:, :, oh, ow, None, None].astype(np.float64) / area
    return dx


# ----------------------------------------------------------------------------- cases

# (x shape, weight shape, stride, padding, dilation, groups)
CONV_CASES = [
    ((2, 3, 7, 9), (4, 3, 3, 3), 1, 0, 1, 1),
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0, 1, 1),
    ((3, 4, 11, 6), (6, 2, 3, 2), (2, 1), (1, 2), (1, 2), 2),
    ((2, 6, 8, 8), (6, 1, 3, 3), 1, "same", 1, 6),          # depthwise
    ((2, 4, 7, 10), (5, 4, 2, 4), 1, "same", (2, 1), 1),     # even kernel: asymmetric padding
    ((2, 5, 13, 5), (7, 5, 5, 1), 3, 2, 1, 1),
    ((2, 8, 5, 7), (6, 8, 1, 1), 1, 0, 1, 1),                # 1x1: x is the column matrix
    ((3, 6, 5, 7), (9, 2, 1, 1), 1, "valid", 1, 3),          # 1x1 grouped
    ((2, 4, 9, 9), (4, 4, 3, 3), 2, 1, 2, 1),
    ((4, 2, 6, 5), (4, 1, 2, 2), 1, 1, 1, 2),                # fewer groups than images
    ((1, 6, 6, 6), (6, 2, 3, 3), 1, 1, 1, 3),                # more groups than images
    ((0, 3, 5, 5), (2, 3, 3, 3), 1, 1, 1, 1),                # empty batch
    ((2, 3, 4, 4), (0, 3, 3, 3), 1, 1, 1, 1),                # no output channels
]


def case_id(case):
    return "x{}-w{}-s{}-p{}-d{}-g{}".format(*case).replace(" ", "")


# (x shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    ((2, 3, 8, 8), 2, None, 0, 1, False),
    ((1, 2, 7, 9), 3, 2, 1, 1, False),
    ((1, 2, 7, 9), 3, 2, 1, 1, True),
    ((2, 1, 10, 11), (3, 2), (2, 3), (1, 1), (2, 1), True),
    ((1, 3, 5, 5), 3, 1, 1, 2, False),     # dilated with padding: some windows are all padding
    ((3, 2, 1, 6), (1, 3), 1, 0, 1, False),
    ((2, 3, 4, 4), 4, None, 0, 1, False),  # global
]

# (x shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CASES = [
    ((2, 3, 8, 8), 2, None, 0, False, True, None),
    ((1, 2, 7, 9), 3, 2, 1, False, True, None),
    ((1, 2, 7, 9), 3, 2, 1, True, False, None),
    ((2, 2, 9, 6), (3, 2), (2, 1), (1, 1), True, True, None),
    ((1, 3, 6, 7), 3, 2, 1, True, True, 5),
    ((2, 1, 5, 5), 5, 3, 2, True, False, None),
]

ADAPTIVE_CASES = [((2, 3, 8, 8), (1, 1)), ((1, 2, 7, 9), (3, 4)), ((2, 2, 5, 6), (5, 6)),
                  ((1, 3, 10, 7), (4, 9)), ((3, 1, 1, 1), (2, 3))]


# ----------------------------------------------------------------------------- host: references vs CPU ops


@pytest.mark.parametrize("case", CONV_CASES[:11], ids=case_id)
def test_reference_conv_matches_cpu_op(case):
    xs, ws, stride, padding, dilation, groups = case
    rng = rng_for("ref-conv", case)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    pads = conv_pads(xs, ws, pair(stride), padding, pair(dilation))
    y = conv2d_ref(x, w, b, pair(stride), pads, pair(dilation), groups)
    np.testing.assert_allclose(y, ops.conv2d(x, w, b, stride, padding, dilation, groups), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    want = ops.conv2d_backward(dy, x, w, stride, padding, dilation, groups)
    for got, exp in zip(conv2d_backward_ref(dy, x, w, pair(stride), pads, pair(dilation), groups), want):
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", MAX_CASES, ids=str)
def test_reference_max_pool_matches_cpu_op(case):
    xs, k, s, p, d, cm = case
    x = rng_for("ref-max", case).standard_normal(xs)
    x.reshape(-1)[::7] = x.reshape(-1)[3]  # ties
    x.reshape(-1)[5::29] = np.nan          # NaN wins its window (the GPU test relies on this rule)
    y, idx = max_pool_ref(x, k, s, p, d, cm)
    y_cpu, idx_cpu = ops.max_pool2d_forward(x, k, s, p, d, cm)
    np.testing.assert_array_equal(y, y_cpu)
    np.testing.assert_array_equal(idx, idx_cpu)
    dy = rng_for("ref-max-dy", case).standard_normal(y.shape)
    np.testing.assert_allclose(max_pool_backward_ref(dy, idx, xs), ops.max_pool2d_backward(dy, idx, xs),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_reference_avg_pool_matches_cpu_op(case):
    xs, k, s, p, cm, cip, div = case
    x = rng_for("ref-avg", case).standard_normal(xs)
    y = avg_pool_ref(x, k, s, p, cm, cip, div)
    np.testing.assert_allclose(y, ops.avg_pool2d(x, k, s, p, cm, cip, div), rtol=1e-12, atol=1e-12)
    dy = rng_for("ref-avg-dy", case).standard_normal(y.shape)
    np.testing.assert_allclose(avg_pool_backward_ref(dy, xs, k, s, p, cm, cip, div),
                               ops.avg_pool2d_backward(dy, xs, k, s, p, cm, cip, div), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_reference_adaptive_matches_cpu_op(case):
    xs, size = case
    x = rng_for("ref-adaptive", case).standard_normal(xs)
    y = adaptive_ref(x, size)
    np.testing.assert_allclose(y, ops.adaptive_avg_pool2d(x, size), rtol=1e-12, atol=1e-12)
    dy = rng_for("ref-adaptive-dy", case).standard_normal(y.shape)
    np.testing.assert_allclose(adaptive_backward_ref(dy, xs), ops.adaptive_avg_pool2d_backward(dy, xs),
                               rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- host: plans and errors


@requires_module
@pytest.mark.parametrize("case", CONV_CASES + [((2, 3, 9, 8), (4, 3, 4, 3), 1, "same", (1, 2), 1)], ids=case_id)
def test_conv2d_plan_shapes_match_cpu_op(case):
    xs, ws, stride, padding, dilation, groups = case
    plan = C._conv2d_plan(xs, ws, stride, padding, dilation, groups)
    want = ops.conv2d(np.zeros(xs), np.zeros(ws), None, stride, padding, dilation, groups).shape
    assert plan["out_shape"] == want
    (pt, pb), (pl, pr) = conv_pads(xs, ws, pair(stride), padding, pair(dilation))
    assert plan["padding"] == (pt, pb, pl, pr)
    assert plan["gemm_k"] == ws[1] * ws[2] * ws[3]
    assert plan["gemm_n"] == want[2] * want[3]
    one_by_one = ws[2:] == (1, 1) and pair(stride) == (1, 1) and (pt, pb, pl, pr) == (0, 0, 0, 0)
    assert plan["direct"] == one_by_one
    if one_by_one or xs[0] == 0:
        assert plan["column_bytes"] == 0
    if xs[0] > 0:
        assert plan["chunks"] * plan["images_per_chunk"] >= xs[0] > (plan["chunks"] - 1) * plan["images_per_chunk"]


@requires_module
@pytest.mark.parametrize("n, max_bytes, itemsize", [(8, 10_000, 4), (8, 10_000, 8), (5, 1, 4), (7, 10**12, 4),
                                                    (64, 300_000, 4)])
def test_conv2d_plan_bounds_the_column_buffer(n, max_bytes, itemsize):
    xs, ws = (n, 6, 10, 9), (4, 3, 3, 2)
    plan = C._conv2d_plan(xs, ws, 1, 1, 1, 2, itemsize, max_bytes)
    oh, ow = plan["out_shape"][2:]
    image_bytes = 6 * 3 * 2 * oh * ow * itemsize
    per_chunk = plan["images_per_chunk"]
    assert plan["column_bytes"] == per_chunk * image_bytes
    assert per_chunk == 1 or plan["column_bytes"] <= max_bytes  # one image always fits, even over budget
    assert per_chunk == max(1, min(n, max_bytes // image_bytes))
    assert plan["chunks"] == -(-n // per_chunk)
    # one launch per group when that is fewer than one per image
    assert plan["loop"] == ("groups" if 2 <= per_chunk else "images")


def cpu_error(fn):
    with pytest.raises((TypeError, ValueError)) as info:
        fn()
    return info.type, str(info.value)


CONV_ERRORS = [
    # (x shape, weight shape, stride, padding, dilation, groups)
    ((2, 3, 5), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3), 1, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, 0),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, 1.5),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, True),
    ((2, 4, 5, 5), (4, 3, 3, 3), 1, 0, 1, 3),
    ((2, 6, 5, 5), (4, 3, 3, 3), 1, 0, 1, 3),
    ((2, 6, 5, 5), (4, 2, 3, 3), 1, 0, 1, 2),
    ((2, 3, 5, 5), (4, 3, 0, 3), 1, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 0, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), (1, 0), 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), (1, 2, 3), 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1.0, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, (1, 0), 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 2, "same", 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, "full", 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, -1, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, (0, -2), 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, [0], 1, 1),
    ((2, 3, 2, 5), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, (1, 0), (1, 3), 1),
]


@requires_module
@pytest.mark.parametrize("case", CONV_ERRORS, ids=case_id)
def test_conv2d_plan_errors_match_cpu_op(case):
    xs, ws, stride, padding, dilation, groups = case
    want_type, want_msg = cpu_error(lambda: ops.conv2d(np.zeros(xs), np.zeros(ws), None, stride, padding, dilation,
                                                       groups))
    with pytest.raises(want_type) as info:
        C._conv2d_plan(xs, ws, stride, padding, dilation, groups)
    assert str(info.value) == want_msg


POOL_ERRORS = [
    # (kind, x shape, kernel_size, stride, padding, dilation, ceil_mode)
    ("max", (2, 3, 5, 5), 0, None, 0, 1, False),
    ("max", (2, 3, 5, 5), 2, (1, 0), 0, 1, False),
    ("max", (2, 3, 5, 5), 2, None, 0, 0, False),
    ("max", (2, 3, 5, 5), 2, None, 2, 1, False),
    ("max", (2, 3, 5, 5), 2, None, -1, 1, False),
    ("max", (2, 3, 5, 5), (2, 2, 2), None, 0, 1, False),
    ("max", (2, 3, 5, 5), 2.0, None, 0, 1, False),
    ("max", (2, 3, 5, 5), (2, True), None, 0, 1, False),
    ("max", (2, 3, 2, 5), 3, None, 0, 1, False),
    ("max", (3, 5), 2, None, 0, 1, False),
    ("max", (2, 3, 0, 5), 2, None, 0, 1, False),
    ("avg", (2, 3, 5, 5), 0, None, 0, 1, False),
    ("avg", (2, 3, 5, 5), 3, 1, 2, 1, False),
    ("avg", (2, 3, 2, 2), (3, 1), None, 0, 1, False),
]


def cpu_pool(kind, x, k, s, p, d, cm):
    if kind == "max":
        return ops.max_pool2d_forward(x, k, s, p, d, cm)[0]
    return ops.avg_pool2d(x, k, s, p, cm)


@requires_module
@pytest.mark.parametrize("case", POOL_ERRORS, ids=str)
def test_pool2d_plan_errors_match_cpu_op(case):
    kind, xs, k, s, p, d, cm = case
    want_type, want_msg = cpu_error(lambda: cpu_pool(kind, np.zeros(xs), k, s, p, d, cm))
    with pytest.raises(want_type) as info:
        C._pool2d_plan(kind, xs, k, s, p, d, cm)
    assert str(info.value) == want_msg


@requires_module
@pytest.mark.parametrize("case", [("max",) + c[:5] + (c[5],) for c in MAX_CASES] +
                         [("avg", c[0], c[1], c[2], c[3], 1, c[4]) for c in AVG_CASES] +
                         [("max", (3, 7, 7), (3,), [2], 1, 1, True), ("avg", (2, 6, 5), [2, 3], None, 0, 1, True)],
                         ids=str)
def test_pool2d_plan_shapes_match_cpu_op(case):
    kind, xs, k, s, p, d, cm = case
    assert C._pool2d_plan(kind, xs, k, s, p, d, cm)["out_shape"] == cpu_pool(kind, np.zeros(xs), k, s, p, d, cm).shape


test_argument_errors_before_device_work = argument_error_test([
    (lambda: C.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 1, 1))), TypeError,
     r"^conv2d: x is a numpy.ndarray \(host memory\)"),
    (lambda: C.conv2d([1.0], None), TypeError, r"^conv2d: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.conv2d_backward(None, np.ones((1, 1, 3, 3)), None), TypeError,
     r"^conv2d_backward: x is a numpy.ndarray \(host memory\)"),
    (lambda: C.conv1d(np.ones((1, 1, 3)), None), TypeError, r"^conv1d: x is a numpy.ndarray"),
    (lambda: C.conv1d_backward(None, [1.0], None), TypeError,
     r"^conv1d_backward: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.causal_conv1d(np.ones((1, 1, 3)), None), TypeError, r"^causal_conv1d: x is a numpy.ndarray"),
    (lambda: C.causal_conv1d_backward(None, None, None), TypeError,
     r"^causal_conv1d_backward: x must be a dlkern._C_cuda.DeviceArray, got NoneType"),
    (lambda: C.max_pool2d_forward(np.ones((1, 1, 4, 4)), 2), TypeError, r"^max_pool2d: x is a numpy.ndarray"),
    (lambda: C.max_pool2d(np.ones((1, 1, 4, 4)), 2), TypeError, r"^max_pool2d: x is a numpy.ndarray"),
    (lambda: C.max_pool2d_forward(None, 2.5), TypeError,
     r"^max_pool2d: kernel_size must be an int or a pair of ints, got 2.5"),
    (lambda: C.max_pool2d_backward(np.ones((1, 1, 2, 2)), None, (1, 1, 4, 4)), TypeError,
     r"^max_pool2d_backward: grad_out is a numpy.ndarray"),
    (lambda: C.avg_pool2d([1.0], 2), TypeError, r"^avg_pool2d: x must be a dlkern._C_cuda.DeviceArray, got list"),
    (lambda: C.avg_pool2d(None, 2, divisor_override=1.5), TypeError,
     r"^avg_pool2d: divisor_override must be an int or a pair of ints, got 1.5"),
    (lambda: C.avg_pool2d(None, 2, divisor_override=0), ValueError, r"^avg_pool2d: divisor_override must not be zero"),
    (lambda: C.avg_pool2d_backward(None, (1, 1, 4, 4), 2), TypeError,
     r"^avg_pool2d_backward: grad_out must be a dlkern._C_cuda.DeviceArray, got NoneType"),
    (lambda: C.adaptive_avg_pool2d(np.ones((1, 1, 4, 4)), 2), TypeError,
     r"^adaptive_avg_pool2d: x is a numpy.ndarray"),
    (lambda: C.adaptive_avg_pool2d_backward(None, (1, 1, 4, 4)), TypeError,
     r"^adaptive_avg_pool2d_backward: grad_out must be a dlkern._C_cuda.DeviceArray"),
])


@requires_module
def test_cuda_module_has_the_cpu_op_names():
    for name in ("conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "causal_conv1d",
                 "causal_conv1d_backward", "max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d",
                 "avg_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"):
        assert callable(getattr(C, name)), name
        assert callable(getattr(ops, name)), name


# ----------------------------------------------------------------------------- GPU: convolution


def to_dev(a):
    return C.from_numpy(np.ascontiguousarray(a))


def host(a):
    return None if a is None else a.numpy()


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_conv2d_matches_numpy_and_cpu(case, with_bias, dtype):
    xs, ws, stride, padding, dilation, groups = case
    rng = rng_for("conv", case, with_bias)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if with_bias else None
    pads = conv_pads(xs, ws, pair(stride), padding, pair(dilation))
    want = conv2d_ref(x, w, b, pair(stride), pads, pair(dilation), groups)
    y = C.conv2d(to_dev(x), to_dev(w), None if b is None else to_dev(b), stride, padding, dilation, groups)
    assert y.shape == want.shape and y.dtype == np.dtype(dtype)
    k = ws[1] * ws[2] * ws[3]
    assert_near(host(y), want, dtype, k)
    assert_near(host(y), ops.conv2d(x, w, b, stride, padding, dilation, groups), dtype, k)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
def test_conv2d_backward_matches_numpy_and_cpu(case, dtype):
    xs, ws, stride, padding, dilation, groups = case
    rng = rng_for("conv-bwd", case)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    pads = conv_pads(xs, ws, pair(stride), padding, pair(dilation))
    out_shape = conv2d_ref(x[:0], w, None, pair(stride), pads, pair(dilation), groups).shape[1:]
    dy = rng.standard_normal((xs[0],) + out_shape).astype(dtype)
    want = conv2d_backward_ref(dy, x, w, pair(stride), pads, pair(dilation), groups)
    cpu = ops.conv2d_backward(dy, x, w, stride, padding, dilation, groups)
    got = C.conv2d_backward(to_dev(dy), to_dev(x), to_dev(w), stride, padding, dilation, groups)
    terms = [ws[0] // groups * ws[2] * ws[3], xs[0] * out_shape[1] * out_shape[2], xs[0] * out_shape[1] * out_shape[2]]
    for g, r, c, k in zip(got, want, cpu, terms):
        assert_near(host(g), r, dtype, k)
        assert_near(host(g), c, dtype, k)


@requires_gpu
@pytest.mark.parametrize("need", [(True, False, False), (False, True, False), (False, False, True),
                                  (False, False, False), (True, True, False), [1, 0, 1]], ids=str)
def test_conv2d_backward_need_selects_outputs(need):
    xs, ws = (3, 4, 6, 5), (6, 2, 3, 3)
    rng = rng_for("need", tuple(need))
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    dy = rng.standard_normal((3, 6, 4, 5))
    want = conv2d_backward_ref(dy, x, w, (1, 1), ((0, 0), (1, 1)), (1, 1), 2)
    got = C.conv2d_backward(to_dev(dy), to_dev(x), to_dev(w), 1, (0, 1), 1, 2, need)
    for flag, g, r in zip(need, got, want):
        if flag:
            assert_near(host(g), r, np.float64, 100)
        else:
            assert g is None


@requires_gpu
def test_conv2d_in_several_chunks():
    # 64 channels * 3x3 taps * 128x128 outputs * 4 bytes = 37.7 MB of columns per image,
    # so 8 images need two chunks of the 256 MiB buffer; dweight sums across chunks.
    xs, ws = (8, 64, 128, 128), (4, 64, 3, 3)
    plan = C._conv2d_plan(xs, ws, 1, 1, 1, 1)
    assert plan["chunks"] >= 2
    rng = rng_for("chunks")
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    y = C.conv2d(to_dev(x), to_dev(w), to_dev(b), 1, 1)
    k = 64 * 9
    assert_near(host(y), ops.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1),
                np.float32, k)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = C.conv2d_backward(to_dev(dy), to_dev(x), to_dev(w), 1, 1)
    want = ops.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, 1)
    for g, r, terms in zip(got, want, (4 * 9, 8 * 128 * 128, 8 * 128 * 128)):
        assert_near(host(g), r, np.float32, terms)


@requires_gpu
def test_conv2d_strided_inputs_are_copied():
    rng = rng_for("strided")
    x = rng.standard_normal((2, 3, 8, 12))
    w = rng.standard_normal((4, 3, 3, 3))
    xd = to_dev(x).as_strided((2, 3, 8, 6), (288, 96, 12, 2))  # every other column
    want = conv2d_ref(x[:, :, :, ::2], w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    assert_near(host(C.conv2d(xd, to_dev(w), None, 1, 1)), want, np.float64, 27)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", [
    ((2, 3, 17), (4, 3, 5), 1, 2, 1, 1),
    ((3, 4, 20), (6, 2, 3), 2, 1, 3, 2),
    ((1, 4, 9), (4, 1, 4), 1, "same", 1, 4),
    ((2, 2, 6), (3, 2, 1), 1, "valid", 1, 1),
])
def test_conv1d_matches_cpu(xs, ws, stride, padding, dilation, groups, dtype):
    rng = rng_for("conv1d", xs, ws, stride, padding, dilation, groups)
    x, w = rng.standard_normal(xs).astype(dtype), rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    want = ops.conv1d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), stride, padding, dilation,
                      groups)
    y = C.conv1d(to_dev(x), to_dev(w), to_dev(b), stride, padding, dilation, groups)
    assert_near(host(y), want, dtype, ws[1] * ws[2])
    dy = rng.standard_normal(want.shape).astype(dtype)
    want_g = ops.conv1d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), stride, padding,
                                 dilation, groups)
    got = C.conv1d_backward(to_dev(dy), to_dev(x), to_dev(w), stride, padding, dilation, groups)
    for g, r in zip(got, want_g):
        assert_near(host(g), r, dtype, 64)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("dilation, groups", [(1, 1), (3, 2)])
def test_causal_conv1d_matches_cpu(dilation, groups, dtype):
    rng = rng_for("causal", dilation, groups)
    x, w = rng.standard_normal((2, 4, 13)).astype(dtype), rng.standard_normal((6, 4 // groups, 3)).astype(dtype)
    want = ops.causal_conv1d(x.astype(np.float64), w.astype(np.float64), None, dilation, groups)
    y = C.causal_conv1d(to_dev(x), to_dev(w), None, dilation, groups)
    assert y.shape == (2, 6, 13)
    assert_near(host(y), want, dtype, 12)
    dy = rng.standard_normal(want.shape).astype(dtype)
    want_g = ops.causal_conv1d_backward(dy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), dilation,
                                        groups)
    for g, r in zip(C.causal_conv1d_backward(to_dev(dy), to_dev(x), to_dev(w), dilation, groups), want_g):
        assert_near(host(g), r, dtype, 64)


@requires_gpu
def test_conv_device_argument_errors():
    x32 = to_dev(np.zeros((2, 3, 5, 5), np.float32))
    w32 = to_dev(np.zeros((4, 3, 3, 3), np.float32))
    w64 = to_dev(np.zeros((4, 3, 3, 3)))
    with pytest.raises(TypeError, match=r"^conv2d: x has dtype float32 but weight has dtype float64; both must"):
        C.conv2d(x32, w64)
    with pytest.raises(TypeError, match=r"^conv2d: x has dtype int64; expected float32 or float64"):
        C.conv2d(to_dev(np.zeros((2, 3, 5, 5), np.int64)), w32)
    with pytest.raises(ValueError, match=r"^conv2d: bias has shape \(3,\), expected \(4,\)"):
        C.conv2d(x32, w32, to_dev(np.zeros(3, np.float32)))
    with pytest.raises(TypeError, match=r"^conv2d: bias has dtype float64 but x has dtype float32"):
        C.conv2d(x32, w32, to_dev(np.zeros(4)))
    with pytest.raises(TypeError, match=r"^conv2d: bias must be a dlkern._C_cuda.DeviceArray or None, got list"):
        C.conv2d(x32, w32, [0.0] * 4)
    with pytest.raises(ValueError, match=r"^conv2d_backward: grad_out has shape \(2, 4, 5, 5\), expected the output "
                                         r"shape \(2, 4, 3, 3\)"):
        C.conv2d_backward(to_dev(np.zeros((2, 4, 5, 5), np.float32)), x32, w32)
    with pytest.raises(ValueError, match=r"^conv2d_backward: need must be three booleans"):
        C.conv2d_backward(to_dev(np.zeros((2, 4, 3, 3), np.float32)), x32, w32, need=(True, True))
    with pytest.raises(ValueError, match=r"^causal_conv1d: x \(2, 3, 0\) has no time steps"):
        C.causal_conv1d(to_dev(np.zeros((2, 3, 0), np.float32)), to_dev(np.zeros((4, 3, 2), np.float32)))


# ----------------------------------------------------------------------------- GPU: pooling


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", MAX_CASES, ids=str)
def test_max_pool2d_matches_numpy_and_cpu(case, dtype):
    xs, k, s, p, d, cm = case
    rng = rng_for("max", case)
    x = rng.standard_normal(xs).astype(dtype)
    flat = x.reshape(-1)
    flat[::5] = flat[2]          # ties: the first in scan order wins
    flat[7::23] = np.nan         # NaN wins its window
    want_y, want_i = max_pool_ref(x, k, s, p, d, cm)
    y, idx = C.max_pool2d_forward(to_dev(x), k, s, p, d, cm)
    assert idx.dtype == np.dtype(np.int64)
    np.testing.assert_array_equal(host(y), want_y.astype(dtype))
    np.testing.assert_array_equal(host(idx), want_i)
    cpu_y, cpu_i = ops.max_pool2d_forward(x, k, s, p, d, cm)
    np.testing.assert_array_equal(host(y), cpu_y)
    np.testing.assert_array_equal(host(idx), cpu_i)
    np.testing.assert_array_equal(host(C.max_pool2d(to_dev(x), k, s, p, d, cm)), cpu_y)
    dy = rng.standard_normal(want_y.shape).astype(dtype)
    dx = C.max_pool2d_backward(to_dev(dy), idx, xs)
    assert_near(host(dx), max_pool_backward_ref(dy, want_i, xs), dtype, 16)
    assert_near(host(dx), ops.max_pool2d_backward(dy, cpu_i, xs), dtype, 16)


@requires_gpu
def test_max_pool2d_unbatched_and_bad_index():
    x = rng_for("max3d").standard_normal((3, 6, 7))
    y, idx = C.max_pool2d_forward(to_dev(x), (2, 3), None, 0, 1, True)
    want_y, want_i = ops.max_pool2d_forward(x, (2, 3), None, 0, 1, True)
    assert y.shape == want_y.shape == (3, 3, 3)
    np.testing.assert_array_equal(host(y), want_y)
    dy = np.ones(want_y.shape)
    np.testing.assert_allclose(host(C.max_pool2d_backward(to_dev(dy), idx, (3, 6, 7))),
                               ops.max_pool2d_backward(dy, want_i, (3, 6, 7)))
    bad = want_i.copy()
    bad[1, 2, 0] = 42
    with pytest.raises(ValueError, match=r"^max_pool2d_backward: indices holds 42, outside \[0, 42\) for input "
                                         r"planes of \(6, 7\)"):
        C.max_pool2d_backward(to_dev(dy), to_dev(bad), (3, 6, 7))
    with pytest.raises(TypeError, match=r"^max_pool2d_backward: indices has dtype float64; expected int64"):
        C.max_pool2d_backward(to_dev(dy), to_dev(dy), (3, 6, 7))
    with pytest.raises(ValueError, match=r"^max_pool2d_backward: input_shape \(6, 7\) has 2 entries but grad_out "
                                         r"is 3-D"):
        C.max_pool2d_backward(to_dev(dy), idx, (6, 7))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", AVG_CASES, ids=str)
def test_avg_pool2d_matches_numpy_and_cpu(case, dtype):
    xs, k, s, p, cm, cip, div = case
    rng = rng_for("avg", case)
    x = rng.standard_normal(xs).astype(dtype)
    want = avg_pool_ref(x, k, s, p, cm, cip, div)
    y = C.avg_pool2d(to_dev(x), k, s, p, cm, cip, div)
    kk = int(np.prod(pair(k)))
    assert_near(host(y), want, dtype, kk)
    assert_near(host(y), ops.avg_pool2d(x, k, s, p, cm, cip, div), dtype, kk)
    dy = rng.standard_normal(want.shape).astype(dtype)
    dx = C.avg_pool2d_backward(to_dev(dy), xs, k, s, p, cm, cip, div)
    assert_near(host(dx), avg_pool_backward_ref(dy, xs, k, s, p, cm, cip, div), dtype, kk)
    assert_near(host(dx), ops.avg_pool2d_backward(dy, xs, k, s, p, cm, cip, div), dtype, kk)


@requires_gpu
def test_avg_pool2d_unbatched_and_grad_shape_error():
    x = rng_for("avg3d").standard_normal((2, 5, 6))
    np.testing.assert_allclose(host(C.avg_pool2d(to_dev(x), 2, 1, 1)), ops.avg_pool2d(x, 2, 1, 1), rtol=1e-12)
    with pytest.raises(ValueError, match=r"^avg_pool2d_backward: grad_out has shape \(1, 2, 3, 3\), expected "
                                         r"\(1, 2, 2, 3\) for these pooling arguments"):
        C.avg_pool2d_backward(to_dev(np.zeros((2, 3, 3))), (2, 5, 6), 2)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool2d_matches_numpy_and_cpu(case, dtype):
    xs, size = case
    rng = rng_for("adaptive", case)
    x = rng.standard_normal(xs).astype(dtype)
    want = adaptive_ref(x, size)
    y = C.adaptive_avg_pool2d(to_dev(x), size)
    terms = xs[2] * xs[3]
    assert_near(host(y), want, dtype, terms)
    assert_near(host(y), ops.adaptive_avg_pool2d(x, size), dtype, terms)
    dy = rng.standard_normal(want.shape).astype(dtype)
    dx = C.adaptive_avg_pool2d_backward(to_dev(dy), xs)
    assert_near(host(dx), adaptive_backward_ref(dy, xs), dtype, 4)
    assert_near(host(dx), ops.adaptive_avg_pool2d_backward(dy, xs), dtype, 4)


@requires_gpu
def test_adaptive_avg_pool2d_none_and_errors():
    x = rng_for("adaptive-none").standard_normal((2, 5, 7))
    y = C.adaptive_avg_pool2d(to_dev(x), (None, 3))
    np.testing.assert_allclose(host(y), ops.adaptive_avg_pool2d(x, (None, 3)), rtol=1e-12)
    with pytest.raises(ValueError, match=r"^adaptive_avg_pool2d: output_size must be at least 1, got \(0, 3\)"):
        C.adaptive_avg_pool2d(to_dev(x), (0, 3))
    with pytest.raises(ValueError, match=r"^adaptive_avg_pool2d: output_size must be an int or a pair"):
        C.adaptive_avg_pool2d(to_dev(x), (1, 2, 3))
