"""Memory safety of convolution and pooling where the dilated kernel is larger than the
input (TCN / WaveNet-style dilation on short sequences), and refusal of absurd sizes.

The kernels once wrote past their buffers for such geometries (the issue's three
reproducers below printed a result, then glibc aborted). Everything is checked against
float64 NumPy references (dlkern.reference): a direct loop over kernel taps with explicit
zero padding for convolution, and the exact adjoint of that loop for its gradients
(itself checked against finite differences here). Inputs are small integers, so every sum is
exact in float32 too and any indexing slip shows as an O(1) error.
"""

import numpy as np
import pytest

import dlkern
from dlkern import nn, ops
from dlkern import reference as R

SEED = 20261206
N_CONV_CASES = 200
N_POOL_CASES = 200


def _ints(rng, shape, dtype, lo=-3, hi=3):
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def _close(got, want, what):
    want = np.asarray(want, np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-5, err_msg=what)


# ----------------------------------------------------------------------------- conv reference


def _out_size(size, k, s, d, before, after):
    return (size + before + after - d * (k - 1) - 1) // s + 1


def ref_conv2d(x, w, b, stride, pads, dil, groups):
    """dlkern.reference.conv2d with pads (top, bottom, left, right)."""
    return R.conv2d(x, w, b, stride, [pads[:2], pads[2:]], dil, groups)


def ref_conv2d_backward(dy, x, w, stride, pads, dil, groups):
    """The exact adjoint of ref_conv2d: (dx, dweight, dbias)."""
    return R.conv2d_backward(dy, x, w, stride, [pads[:2], pads[2:]], dil, groups)


def _check_conv2d_case(x, w, b, stride, pads, dil, groups, got_y, got_grads, what):
    y = ref_conv2d(x, w, b, stride, pads, dil, groups)
    _close(got_y, y, f"{what}: y")
    dy = np.asarray(got_grads[0], np.float64)
    want = ref_conv2d_backward(dy, x, w, stride, pads, dil, groups)
    for name, got, ref in zip(("dx", "dweight", "dbias"), got_grads[1:], want):
        _close(got, ref, f"{what}: {name}")


def test_reference_adjoint_matches_finite_differences():
    """The backward reference is the derivative of the forward one (float64 central differences)."""
    rng = np.random.default_rng(SEED)
    x, w = rng.standard_normal((2, 4, 2, 3)), rng.standard_normal((4, 2, 2, 3))
    args = ((2, 1), (1, 2, 5, 4), (3, 4), 2)
    y = ref_conv2d(x, w, None, *args)
    dy = rng.standard_normal(y.shape)
    dx, dw, _ = ref_conv2d_backward(dy, x, w, *args)
    eps = 1e-6
    for arr, grad in ((x, dx), (w, dw)):
        for flat in rng.choice(arr.size, 12, replace=False):
            idx = np.unravel_index(flat, arr.shape)
            old = arr[idx]
            arr[idx] = old + eps
            up = np.sum(ref_conv2d(x, w, None, *args) * dy)
            arr[idx] = old - eps
            down = np.sum(ref_conv2d(x, w, None, *args) * dy)
            arr[idx] = old
            assert abs((up - down) / (2 * eps) - grad[idx]) < 1e-6


# ----------------------------------------------------------------------------- the issue's reproducers


def test_issue_conv1d_padding_50_dilation_100(isa, threads):
    x, w = np.ones((1, 1, 1), np.float32), np.ones((1, 1, 2), np.float32)
    y = ops.conv1d(x, w, padding=50, dilation=100)
    ref = ref_conv2d(x[:, :, None], w[:, :, None], None, (1, 1), (0, 0, 50, 50), (1, 100), 1)[:, :, 0]
    assert y.shape == (1, 1, 1)
    _close(y, ref, "conv1d")
    dy = np.full(y.shape, 2.0, np.float32)
    dx, dw, db = ops.conv1d_backward(dy, x, w, padding=50, dilation=100)
    rdx, rdw, rdb = ref_conv2d_backward(dy[:, :, None], x[:, :, None], w[:, :, None], (1, 1), (0, 0, 50, 50),
                                        (1, 100), 1)
    _close(dx, rdx[:, :, 0], "dx")
    _close(dw, rdw[:, :, 0], "dw")
    _close(db, rdb, "db")


def test_issue_causal_conv1d_dilation_19(isa, threads):
    x, w = np.ones((1, 1, 1), np.float32), np.ones((1, 1, 2), np.float32)
    y = ops.causal_conv1d(x, w, dilation=19)
    assert y.shape == (1, 1, 1)
    ref = ref_conv2d(x[:, :, None], w[:, :, None], None, (1, 1), (0, 0, 19, 0), (1, 19), 1)[:, :, 0]
    _close(y, ref, "causal_conv1d")
    dy = np.full(y.shape, 3.0, np.float32)
    dx, dw, db = ops.causal_conv1d_backward(dy, x, w, dilation=19)
    rdx, rdw, rdb = ref_conv2d_backward(dy[:, :, None], x[:, :, None], w[:, :, None], (1, 1), (0, 0, 19, 0),
                                        (1, 19), 1)
    _close(dx, rdx[:, :, 0], "dx")
    _close(dw, rdw[:, :, 0], "dw")
    _close(db, rdb, "db")


def _np(t):
    """A Tensor's (or a gradient's) values as a NumPy array."""
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def test_issue_nn_conv1d_dilation_100(isa, threads):
    rng = np.random.default_rng(SEED + 1)
    m = nn.Conv1d(4, 4, 3, dilation=100, padding=100)
    xv = _ints(rng, (1, 4, 6), np.float32)
    x = dlkern.Tensor(xv, requires_grad=True)
    y = m(x)
    assert tuple(y.shape) == (1, 4, 6)
    w, b = _np(m.weight), _np(m.bias)
    pads, dil = (0, 0, 100, 100), (1, 100)
    ref = ref_conv2d(xv[:, :, None], w[:, :, None], b, (1, 1), pads, dil, 1)[:, :, 0]
    _close(_np(y), ref, "nn.Conv1d forward")
    gv = _ints(rng, ref.shape, np.float32)
    (y * dlkern.Tensor(gv)).sum().backward()
    rdx, rdw, rdb = ref_conv2d_backward(gv[:, :, None], xv[:, :, None], w[:, :, None], (1, 1), pads, dil, 1)
    _close(_np(x.grad), rdx[:, :, 0], "x.grad")
    _close(_np(m.weight.grad), rdw[:, :, 0], "weight.grad")
    _close(_np(m.bias.grad), rdb, "bias.grad")


# ----------------------------------------------------------------------------- randomized conv sweep


def _conv_cases():
    """(kind, dict) geometries, most with the dilated kernel larger than the input."""
    rng = np.random.default_rng(SEED)
    cases = []
    for k in range(N_CONV_CASES):
        kind = ("conv1d", "conv2d", "causal", "stream")[k % 4]
        # Every fifth case has 16+ channels per group and a wide padded row, the shape
        # that takes the shifted-window (channels-last) path; groups == channels is the
        # depthwise path; the rest im2col + GEMM.
        wide = k % 5 == 0
        groups = int(rng.choice([1, 1, 2, 3]))
        cg = int(rng.integers(16, 18)) if wide else int(rng.integers(1, 4))
        og = int(rng.integers(1, 4))
        if not wide and rng.random() < 0.25:
            groups, cg = int(rng.integers(2, 5)), 1  # depthwise
        if wide:
            groups = 1
        c, o = groups * cg, groups * og
        n = int(rng.integers(1, 4))
        kw = int(rng.integers(1, 5))
        dw = int(rng.integers(1, 13))
        w_in = int(rng.integers(1, 7))
        span_w = dw * (kw - 1) + 1
        sw = 1 if kind in ("causal", "stream") else int(rng.integers(1, 4))
        pw = int(rng.integers(0, span_w + 3))
        if wide:
            # Padding enough that the garbage columns of the shifted-window path stay
            # under its share limit (1/8 at stride 1, 1/12 otherwise), so it is the path
            # taken even though the kernel spans more than the input.
            extra, share = dw * (kw - 1) // sw, 8 if sw == 1 else 12
            need = ((share - 1) * extra - 1) * sw + span_w - w_in
            pw = max(0, -(-need // 2)) + int(rng.integers(0, 6))
        case = dict(n=n, c=c, o=o, groups=groups, w=w_in, kw=kw, dw=dw, sw=sw, pw=pw, bias=bool(rng.random() < 0.7))
        if kind == "conv2d":
            case.update(h=int(rng.integers(1, 4)), kh=int(rng.integers(1, 4)), dh=int(rng.integers(1, 9)),
                        sh=1 if wide else int(rng.integers(1, 3)))
            case["ph"] = int(rng.integers(0, case["dh"] * (case["kh"] - 1) + 3))
            if rng.random() < 0.15 and case["sh"] == 1 and sw == 1:
                case["same"] = True
        if kind == "stream":
            case["chunks"] = [int(v) for v in rng.integers(1, 4, size=int(rng.integers(1, 4)))]
        cases.append((kind, case))
    return cases


CONV_CASES = _conv_cases()


def _run_conv_case(kind, cs, dtype, seed):
    rng = np.random.default_rng(seed)
    n, c, o, groups = cs["n"], cs["c"], cs["o"], cs["groups"]
    what = f"{kind} {cs} {np.dtype(dtype).name}"
    if kind == "conv2d":
        x = _ints(rng, (n, c, cs["h"], cs["w"]), dtype)
        w = _ints(rng, (o, c // groups, cs["kh"], cs["kw"]), dtype)
    else:
        x = _ints(rng, (n, c, cs["w"]), dtype)
        w = _ints(rng, (o, c // groups, cs["kw"]), dtype)
    b = _ints(rng, (o,), dtype) if cs["bias"] else None

    if kind == "conv2d":
        stride, dil = (cs["sh"], cs["sw"]), (cs["dh"], cs["dw"])
        if cs.get("same"):
            padding = "same"
            tot = [d * (k - 1) for d, k in zip(dil, (cs["kh"], cs["kw"]))]
            pads = (tot[0] // 2, tot[0] - tot[0] // 2, tot[1] // 2, tot[1] - tot[1] // 2)
        else:
            padding = (cs["ph"], cs["pw"])
            pads = (cs["ph"], cs["ph"], cs["pw"], cs["pw"])
        x4, w4 = x, w
        call = lambda: ops.conv2d(x, w, b, stride, padding, dil, groups)  # noqa: E731
        back = lambda dy: ops.conv2d_backward(dy, x, w, stride, padding, dil, groups)  # noqa: E731
        op = "conv2d"
    else:
        x4, w4 = x[:, :, None], w[:, :, None]
        dil = (1, cs["dw"])
        if kind == "conv1d":
            stride, pads = (1, cs["sw"]), (0, 0, cs["pw"], cs["pw"])
            call = lambda: ops.conv1d(x, w, b, cs["sw"], cs["pw"], cs["dw"], groups)  # noqa: E731
            back = lambda dy: ops.conv1d_backward(dy, x, w, cs["sw"], cs["pw"], cs["dw"], groups)  # noqa: E731
            op = "conv1d"
        else:
            stride, pads = (1, 1), (0, 0, cs["dw"] * (cs["kw"] - 1), 0)
            call = lambda: ops.causal_conv1d(x, w, b, cs["dw"], groups)  # noqa: E731
            back = lambda dy: ops.causal_conv1d_backward(dy, x, w, cs["dw"], groups)  # noqa: E731
            op = "causal_conv1d"

    out = [_out_size(x4.shape[2], w4.shape[2], stride[0], dil[0], pads[0], pads[1]),
           _out_size(x4.shape[3], w4.shape[3], stride[1], dil[1], pads[2], pads[3])]
    if min(out) < 1:
        with pytest.raises(ValueError, match=op):
            call()
        return

    if kind == "stream":
        stream = ops.Conv1dStream(w, b, dilation=cs["dw"], groups=groups)
        ys, start = [], 0
        for length in cs["chunks"] + [x.shape[2]]:  # the rest of the sequence last
            piece = x[:, :, start:start + length]
            start += piece.shape[2]
            ys.append(stream.step(np.ascontiguousarray(piece)))
            if start >= x.shape[2]:
                break
        y = np.concatenate(ys, axis=2)
        ref = ref_conv2d(x4, w4, b, stride, pads, dil, groups)[:, :, 0]
        _close(y, ref, what)
        return

    y = call()
    dy = _ints(rng, y.shape, dtype)
    dx, dwt, db = back(dy)
    if kind != "conv2d":
        y, dy, dx, dwt = y[:, :, None], dy[:, :, None], dx[:, :, None], dwt[:, :, None]
    _check_conv2d_case(x4, w4, b, stride, pads, dil, groups, y, (dy, dx, dwt, db), what)


@pytest.mark.parametrize("kind", ["conv1d", "conv2d", "causal", "stream"])
def test_conv_sweep_dilated_kernel_larger_than_input(kind, isa, threads):
    for k, (kd, cs) in enumerate(CONV_CASES):
        if kd != kind:
            continue
        for dtype in (np.float32, np.float64):
            _run_conv_case(kd, cs, dtype, SEED + k)


def test_conv_sweep_mostly_has_kernel_larger_than_input():
    """The sweep is about the geometry of the issue: check it really exercises it."""
    larger = sum(cs["dw"] * (cs["kw"] - 1) + 1 > cs["w"] for _, cs in CONV_CASES)
    assert larger >= N_CONV_CASES // 2


# ----------------------------------------------------------------------------- pooling reference


# dlkern.reference's (same argument order); the adaptive backward takes the output size too.
_pool_out, ref_max_pool, ref_avg_pool = R.pool_out, R.max_pool2d_forward, R.avg_pool2d
ref_avg_pool_backward, ref_adaptive = R.avg_pool2d_backward, R.adaptive_avg_pool2d


def ref_adaptive_backward(dy, shape, out):
    return R.adaptive_avg_pool2d_backward(dy, shape)


def _pool_cases():
    rng = np.random.default_rng(SEED + 7)
    cases = []
    for t in range(N_POOL_CASES):
        kind = ("max", "avg", "adaptive")[t % 3]
        planes = (int(rng.integers(1, 3)), int(rng.integers(1, 4)))
        # Some rows wider than a vector (16 float lanes) so the SIMD interior runs too.
        h = int(rng.integers(1, 5))
        w = int(rng.integers(1, 8)) if rng.random() < 0.7 else int(rng.integers(17, 45))
        cs = dict(shape=planes + (h, w))
        if kind == "adaptive":
            cs["out"] = (int(rng.integers(1, 2 * h + 3)), int(rng.integers(1, 2 * w + 3)))
        else:
            k = (int(rng.integers(1, 5)), int(rng.integers(1, 6)))
            d = (int(rng.integers(1, 5)), int(rng.integers(1, 5))) if kind == "max" else (1, 1)
            eff = [(kk - 1) * dd + 1 for kk, dd in zip(k, d)]
            cs.update(k=k, d=d, s=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                      p=(int(rng.integers(0, eff[0] // 2 + 1)), int(rng.integers(0, eff[1] // 2 + 1))),
                      ceil=bool(rng.random() < 0.4))
            if kind == "avg":
                cs.update(cip=bool(rng.random() < 0.5), div=int(rng.integers(1, 5)) if rng.random() < 0.2 else None)
        cases.append((kind, cs))
    return cases


POOL_CASES = _pool_cases()


def _run_pool_case(kind, cs, dtype, seed):
    rng = np.random.default_rng(seed)
    shape = cs["shape"]
    what = f"{kind} {cs} {np.dtype(dtype).name}"
    if kind == "max":
        # Distinct values: the maximum of every window (and so its index) is unique.
        x = (rng.permutation(int(np.prod(shape))).reshape(shape) - 50).astype(dtype)
        k, s, p, d, ceil = cs["k"], cs["s"], cs["p"], cs["d"], cs["ceil"]
        out = [_pool_out(shape[2 + a], k[a], s[a], p[a], d[a], ceil) for a in range(2)]
        if min(out) < 1:
            with pytest.raises(ValueError, match="max_pool2d"):
                ops.max_pool2d(x, k, s, p, d, ceil)
            return
        y, idx = ops.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        ry, ridx = ref_max_pool(x, k, s, p, d, ceil)
        np.testing.assert_array_equal(np.asarray(y, np.float64), ry, err_msg=what)
        np.testing.assert_array_equal(idx, ridx, err_msg=what)
        np.testing.assert_array_equal(np.asarray(ops.max_pool2d(x, k, s, p, d, ceil), np.float64), ry, err_msg=what)
        dy = _ints(rng, y.shape, dtype)
        dx = ops.max_pool2d_backward(dy, idx, shape)
        rdx = np.zeros(shape).reshape(shape[0] * shape[1], -1)
        flat_dy, flat_idx = dy.reshape(len(rdx), -1).astype(np.float64), ridx.reshape(len(rdx), -1)
        for plane in range(len(rdx)):
            keep = flat_idx[plane] >= 0
            np.add.at(rdx[plane], flat_idx[plane][keep], flat_dy[plane][keep])
        _close(dx, rdx.reshape(shape), what + ": dx")
    elif kind == "avg":
        x = _ints(rng, shape, dtype)
        k, s, p, ceil, cip, div = cs["k"], cs["s"], cs["p"], cs["ceil"], cs["cip"], cs["div"]
        out = [_pool_out(shape[2 + a], k[a], s[a], p[a], 1, ceil) for a in range(2)]
        if min(out) < 1:
            with pytest.raises(ValueError, match="avg_pool2d"):
                ops.avg_pool2d(x, k, s, p, ceil, cip, div)
            return
        y = ops.avg_pool2d(x, k, s, p, ceil, cip, div)
        _close(y, ref_avg_pool(x, k, s, p, ceil, cip, div), what)
        dy = _ints(rng, y.shape, dtype)
        dx = ops.avg_pool2d_backward(dy, shape, k, s, p, ceil, cip, div)
        _close(dx, ref_avg_pool_backward(dy, shape, k, s, p, ceil, cip, div), what + ": dx")
    else:
        x = _ints(rng, shape, dtype)
        y = ops.adaptive_avg_pool2d(x, cs["out"])
        _close(y, ref_adaptive(x, cs["out"]), what)
        dy = _ints(rng, y.shape, dtype)
        dx = ops.adaptive_avg_pool2d_backward(dy, shape)
        _close(dx, ref_adaptive_backward(dy, shape, cs["out"]), what + ": dx")


@pytest.mark.parametrize("kind", ["max", "avg", "adaptive"])
def test_pool_sweep_window_larger_than_input(kind, isa, threads):
    for t, (kd, cs) in enumerate(POOL_CASES):
        if kd == kind:
            for dtype in (np.float32, np.float64):
                _run_pool_case(kd, cs, dtype, SEED + 1000 + t)


# ----------------------------------------------------------------------------- absurd sizes

_X1 = np.ones((1, 1, 4), np.float32)
_W1 = np.ones((1, 1, 2), np.float32)
_X2 = np.ones((1, 1, 4, 4), np.float32)
_W2 = np.ones((1, 1, 2, 2), np.float32)
HUGE = [2**31 + 1, 2**62, 2**63 - 1, 2**63, 2**64]

ABSURD = [
    ("conv1d_padding", lambda v: ops.conv1d(_X1, _W1, padding=v), r"conv1d: padding"),
    ("conv1d_dilation", lambda v: ops.conv1d(_X1, _W1, padding=1, dilation=v), r"conv1d: dilation"),
    ("conv1d_stride", lambda v: ops.conv1d(_X1, _W1, stride=v), r"conv1d: stride"),
    ("conv1d_backward_padding", lambda v: ops.conv1d_backward(_X1, _X1, _W1, padding=v),
     r"conv1d_backward: padding"),
    ("conv2d_padding", lambda v: ops.conv2d(_X2, _W2, padding=(1, v)), r"conv2d: padding"),
    ("conv2d_dilation", lambda v: ops.conv2d(_X2, _W2, dilation=(v, 1)), r"conv2d: dilation"),
    ("conv2d_stride", lambda v: ops.conv2d(_X2, _W2, stride=(1, v)), r"conv2d: stride"),
    ("conv2d_same_dilation", lambda v: ops.conv2d(_X2, _W2, padding="same", dilation=v), r"conv2d: dilation"),
    ("causal_dilation", lambda v: ops.causal_conv1d(_X1, _W1, dilation=v), r"causal_conv1d: dilation"),
    ("stream_dilation", lambda v: ops.Conv1dStream(_W1, dilation=v), r"Conv1dStream: dilation"),
    ("max_pool_padding", lambda v: ops.max_pool2d(_X2, 2, padding=(0, v)), r"max_pool2d: padding"),
    ("max_pool_dilation", lambda v: ops.max_pool2d(_X2, 2, dilation=v), r"max_pool2d: dilation"),
    ("max_pool_stride", lambda v: ops.max_pool2d(_X2, 2, stride=v), r"max_pool2d: stride"),
    ("max_pool_kernel", lambda v: ops.max_pool2d(_X2, v), r"max_pool2d: kernel_size"),
    ("avg_pool_stride", lambda v: ops.avg_pool2d(_X2, 2, stride=(v, 1)), r"avg_pool2d: stride"),
    ("adaptive_output_size", lambda v: ops.adaptive_avg_pool2d(_X2, (1, v)), r"adaptive_avg_pool2d: output_size"),
]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("call,pattern", [a[1:] for a in ABSURD], ids=[a[0] for a in ABSURD])
def test_absurd_sizes_are_refused(call, pattern, value):
    with pytest.raises(ValueError, match=pattern):
        call(value)


# The raw kernel entry (dlkern._C.conv2d, which dlkern.ops.conv2d calls after making its
# arrays contiguous) refuses absurd values itself, before any arithmetic on them.
RAW_ABSURD = [
    ("padding", lambda v: dlkern._C.conv2d(_X2, _W2, None, (1, 1), (v, v)), r"conv2d: padding"),
    ("dilation", lambda v: dlkern._C.conv2d(_X2, _W2, None, (1, 1), 0, (1, v)), r"conv2d: dilation"),
    ("stride", lambda v: dlkern._C.conv2d_backward(np.ones((1, 1, 3, 1), np.float32), _X2, _W2, (1, v)),
     r"conv2d_backward: stride"),
    ("extent", lambda v: dlkern._C.conv2d(_X2, np.ones((1, 1, 1, 4), np.float32), None, (1, 1),
                                          (0, 2**31), (1, v // 2)), r"conv2d: dilation"),
]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("call,pattern", [a[1:] for a in RAW_ABSURD], ids=[a[0] for a in RAW_ABSURD])
def test_absurd_sizes_are_refused_by_the_kernel_entry(call, pattern, value):
    with pytest.raises(ValueError, match=pattern):
        call(value)


def test_large_but_sane_padding_with_large_stride_works():
    """A big padding is not refused by itself: with a stride as big, the output is tiny."""
    y = ops.conv1d(_X1, _W1, padding=10**6, stride=10**6)
    assert y.shape == (1, 1, 3)
    np.testing.assert_array_equal(y, ref_conv2d(_X1[:, :, None], _W1[:, :, None], None, (1, 10**6),
                                                (0, 0, 10**6, 10**6), (1, 1), 1)[:, :, 0])
