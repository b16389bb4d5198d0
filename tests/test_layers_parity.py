"""Transposed convolution and interpolation (nearest, linear, bilinear).

Each op is checked against a float64 NumPy reference written here (a scatter loop over
taps for the transposed convolution, PyTorch's documented index and weight formulas for
interpolation), its gradients by central finite differences in float64, its errors, and,
when torch is installed, against PyTorch with the same weights (outputs and
input/weight/bias gradients). The new ops of this issue item also run on the CUDA
device namespace, checked here on the host twin of the CUDA module. Pooling, pixel
shuffle, Unflatten and Embedding: test_layers_parity_pool.py; ReduceLROnPlateau and
LambdaLR: test_lr_plateau.py."""

import math

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.device import CUDADevice
from dlkern.nn import functional as F

import host_cuda
from helpers import numeric_grad


def rng(seed=0):
    return np.random.default_rng(seed)


def tensors(*arrays, grad=True):
    return [dlkern.tensor(a, requires_grad=grad) for a in arrays]


def _torch():
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------- references (float64)

def conv_transpose_ref(x, w, b, stride, padding, output_padding, dilation, groups):
    """x (N, Cin, H, W), w (Cin, Cout/groups, kH, kW): every input element scatters
    x * w[tap] to output position i * stride + tap * dilation - padding."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    canvas = np.zeros((n, cog * groups, ph + oh + dh * kh + sh * h, pw + ow + dw * kw + sw * wd))
    cig = cin // groups
    for g in range(groups):
        for i in range(h):
            for j in range(wd):
                for r in range(kh):
                    for q in range(kw):
                        canvas[:, g * cog:(g + 1) * cog, i * sh + r * dh, j * sw + q * dw] += \
                            x[:, g * cig:(g + 1) * cig, i, j] @ w[g * cig:(g + 1) * cig, :, r, q]
    y = canvas[:, :, ph:ph + oh, pw:pw + ow]
    return y if b is None else y + b.astype(np.float64)[None, :, None, None]


def source_scale(n_in, n_out, scale_factor, align_corners):
    if align_corners:
        return (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    return 1.0 / scale_factor if scale_factor is not None else n_in / n_out


def nearest_ref(x, sizes, scale_factors):
    """out[..., d] = x[..., min(floor(d * s), in - 1)], s = 1/scale_factor or in/out, in
    float32 as PyTorch computes it; each spatial axis in turn."""
    out = x.astype(np.float64)
    for k, (n_out, f) in enumerate(zip(sizes, scale_factors)):
        axis = out.ndim - len(sizes) + k
        n_in = out.shape[axis]
        s = np.float32(source_scale(n_in, n_out, f, False))
        src = [min(int(math.floor(np.float32(d) * s)), n_in - 1) for d in range(n_out)]
        out = np.take(out, src, axis=axis)
    return out


def linear_weights(n_in, n_out, scale_factor, align_corners):
    """For each output index: (i0, i1, lambda) by the formula, in float64."""
    s = source_scale(n_in, n_out, scale_factor, align_corners)
    rows = []
    for d in range(n_out):
        src = s * d if align_corners else max(s * (d + 0.5) - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        rows.append((i0, min(i0 + 1, n_in - 1), min(max(src - i0, 0.0), 1.0)))
    return rows


def bilinear_ref(x, size, scale_factors, align_corners):
    """Each output pixel from its four neighbours, weights (1-ly)(1-lx), (1-ly)lx, ..."""
    x = x.astype(np.float64)
    ys = linear_weights(x.shape[-2], size[0], scale_factors[0], align_corners)
    xs = linear_weights(x.shape[-1], size[1], scale_factors[1], align_corners)
    out = np.zeros(x.shape[:-2] + tuple(size))
    for a, (y0, y1, ly) in enumerate(ys):
        for b, (x0, x1, lx) in enumerate(xs):
            out[..., a, b] = ((1 - ly) * ((1 - lx) * x[..., y0, x0] + lx * x[..., y0, x1])
                              + ly * ((1 - lx) * x[..., y1, x0] + lx * x[..., y1, x1]))
    return out


def linear_ref(x, size, scale_factor, align_corners):
    x = x.astype(np.float64)
    cols = [(1 - lam) * x[..., i0] + lam * x[..., i1]
            for i0, i1, lam in linear_weights(x.shape[-1], size, scale_factor, align_corners)]
    return np.stack(cols, axis=-1)


# ----------------------------------------------------------------------------- transposed convolution

CONV_T_CASES = [  # (x shape, weight shape, stride, padding, output_padding, dilation, groups)
    ((2, 4, 5, 5), (4, 3, 3, 3), 1, 0, 0, 1, 1),
    ((2, 4, 4, 5), (4, 3, 3, 2), 2, 1, 1, 1, 2),
    ((1, 2, 3, 4), (2, 2, 2, 3), (2, 3), (0, 1), (1, 2), 1, 1),
    ((2, 4, 5, 4), (4, 1, 3, 3), 1, 1, (1, 0), (2, 1), 4),   # output_padding >= stride, < dilation
    ((1, 3, 4, 4), (3, 2, 1, 1), 3, 0, 2, 1, 1),
    ((0, 2, 3, 3), (2, 2, 2, 2), 2, 0, 0, 1, 1),             # empty batch
]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("case", CONV_T_CASES, ids=range(len(CONV_T_CASES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_transpose2d_matches_scatter_reference(case, dtype):
    xs, ws, s, p, op, d, g = case
    r = rng(1)
    x, w, b = r.standard_normal(xs).astype(dtype), r.standard_normal(ws).astype(dtype), \
        r.standard_normal(ws[1] * g).astype(dtype)
    y = F.conv_transpose2d(*tensors(x, w, b, grad=False), s, p, op, g, d)
    want = conv_transpose_ref(x, w, b, _pair(s), _pair(p), _pair(op), _pair(d), g)
    assert y.dtype == dtype and y.shape == want.shape
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("case", CONV_T_CASES[:5], ids=range(5))
def test_conv_transpose2d_gradients_by_finite_differences(case):
    xs, ws, s, p, op, d, g = case
    r = rng(2)
    xs = (1,) + xs[1:]
    x, w, b = r.standard_normal(xs), r.standard_normal(ws), r.standard_normal(ws[1] * g)
    X, W, B = tensors(x, w, b)
    y = F.conv_transpose2d(X, W, B, s, p, op, g, d)
    cot = r.standard_normal(y.shape)
    (y * dlkern.tensor(cot)).sum().backward()

    def loss():
        return float(np.sum(conv_transpose_ref(x, w, b, _pair(s), _pair(p), _pair(op), _pair(d), g) * cot))
    for arr, t in ((x, X), (w, W), (b, B)):
        np.testing.assert_allclose(t.grad.detach().numpy(), numeric_grad(loss, arr), rtol=1e-6, atol=1e-8)


def test_conv_transpose1d_is_the_unit_height_2d_and_unbatched_works():
    r = rng(3)
    x, w, b = r.standard_normal((2, 4, 7)), r.standard_normal((4, 3, 3)), r.standard_normal(6)
    y = F.conv_transpose1d(*tensors(x, w, b, grad=False), stride=2, padding=1, output_padding=1, groups=2,
                           dilation=2)
    want = conv_transpose_ref(x[:, :, None], w[:, :, None], b, (1, 2), (0, 1), (0, 1), (1, 2), 2)[:, :, 0]
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    single = F.conv_transpose1d(*tensors(x[1], w, b, grad=False), 2, 1, 1, 2, 2)
    np.testing.assert_allclose(single.detach().numpy(), want[1], rtol=1e-12, atol=1e-12)
    x2 = r.standard_normal((4, 3, 5))
    single2 = F.conv_transpose2d(*tensors(x2, r.standard_normal((4, 2, 2, 2)), grad=False), stride=2)
    assert single2.shape == (2, 6, 10)


def test_conv_transpose_non_contiguous_input():
    r = rng(4)
    x = r.standard_normal((2, 5, 5, 4)).transpose(0, 3, 1, 2)   # (2, 4, 5, 5), strided
    w = r.standard_normal((4, 2, 3, 3))
    y = F.conv_transpose2d(dlkern.tensor(x), dlkern.tensor(w), stride=2)
    np.testing.assert_allclose(y.detach().numpy(), conv_transpose_ref(x, w, None, (2, 2), (0, 0), (0, 0), (1, 1), 1),
                               rtol=1e-12, atol=1e-12)


def test_conv_transpose_module_shapes_init_and_output_size():
    m = nn.ConvTranspose2d(4, 6, (3, 2), stride=2, groups=2, dtype=np.float64)
    assert m.weight.shape == (4, 3, 3, 2) and m.bias.shape == (6,)
    bound = 1 / math.sqrt(3 * 3 * 2)   # kaiming_uniform(a=sqrt(5)): 1/sqrt(fan_in), fan_in = out/g * k
    assert np.abs(m.weight.detach().numpy()).max() <= bound and np.abs(m.weight.detach().numpy()).max() > 0.5 * bound
    assert np.abs(m.bias.detach().numpy()).max() <= bound
    x = dlkern.tensor(rng(5).standard_normal((1, 4, 5, 5)))
    assert m(x).shape == (1, 6, 11, 10)
    assert m(x, output_size=(12, 11)).shape == (1, 6, 12, 11)
    assert m(x, output_size=[1, 6, 12, 10]).shape == (1, 6, 12, 10)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: requested an output size"):
        m(x, output_size=(13, 10))
    m1 = nn.ConvTranspose1d(3, 2, 4, bias=False)
    assert m1.weight.shape == (3, 2, 4) and m1.bias is None
    assert m1(dlkern.tensor(np.ones((3, 5), np.float32))).shape == (2, 8)
    assert "ConvTranspose2d(4, 6, kernel_size=(3, 2), stride=(2, 2), groups=2)" in repr(m)


def test_conv_transpose_errors():
    x, w = dlkern.tensor(np.zeros((1, 2, 4, 4))), dlkern.tensor(np.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="conv_transpose2d: output padding must be smaller than either stride"):
        F.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d: input has 3 channels .* expects 2"):
        F.conv_transpose2d(dlkern.tensor(np.zeros((1, 3, 4, 4))), w)
    with pytest.raises(ValueError, match="conv_transpose2d: expected a 3-D .* or 4-D"):
        F.conv_transpose2d(dlkern.tensor(np.zeros((4, 4))), w)
    with pytest.raises(ValueError, match="conv_transpose2d: groups=3"):
        F.conv_transpose2d(x, w, groups=3)
    with pytest.raises(ValueError, match="conv_transpose2d: stride must be >= 1"):
        F.conv_transpose2d(x, w, stride=0)
    with pytest.raises(ValueError, match="conv_transpose2d: the output size -2 along spatial dimension 0"):
        F.conv_transpose2d(x, w, padding=4)
    with pytest.raises(ValueError, match=r"conv_transpose2d: bias must have shape \(2,\)"):
        F.conv_transpose2d(x, w, dlkern.tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="conv_transpose2d: dtype mismatch"):
        F.conv_transpose2d(x, dlkern.tensor(np.zeros((2, 2, 3, 3), np.float32)))
    with pytest.raises(ValueError, match="ConvTranspose2d: groups=2"):
        nn.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.ConvTranspose1d(2, 2, 3, padding_mode="reflect")


@pytest.mark.parametrize("case", CONV_T_CASES, ids=range(len(CONV_T_CASES)))
def test_conv_transpose2d_module_matches_torch(case):
    torch = _torch()
    xs, ws, s, p, op, d, g = case
    tm = torch.nn.ConvTranspose2d(ws[0], ws[1] * g, ws[2:], s, p, op, g, True, d).double()
    m = nn.ConvTranspose2d(ws[0], ws[1] * g, ws[2:], s, p, op, g, True, d, dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng(6).standard_normal(xs)
    X, Xt = dlkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = m(X), tm(Xt)
    cot = rng(7).standard_normal(tuple(yt.shape))
    y.backward(dlkern.tensor(cot))
    yt.backward(torch.tensor(cot))
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(X.grad.detach().numpy(), Xt.grad.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.weight.grad.detach().numpy(), tm.weight.grad.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.bias.grad.detach().numpy(), tm.bias.grad.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_conv_transpose1d_functional_matches_torch():
    torch = _torch()
    r = rng(8)
    x, w, b = r.standard_normal((3, 4, 6)), r.standard_normal((4, 1, 3)), r.standard_normal(2)
    got = F.conv_transpose1d(*tensors(x, w, b, grad=False), 3, 1, 2, 2, 1)
    want = torch.nn.functional.conv_transpose1d(*map(torch.tensor, (x, w, b)), 3, 1, 2, 2, 1)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- interpolation

INTERP_2D = [  # (kwargs, reference)
    (dict(scale_factor=2), "nearest"), (dict(size=(3, 4)), "nearest"), (dict(scale_factor=(1.7, 0.6)), "nearest"),
    (dict(size=(9, 13), mode="bilinear"), "bilinear"),
    (dict(size=(9, 13), mode="bilinear", align_corners=True), "bilinear"),
    (dict(scale_factor=2.3, mode="bilinear"), "bilinear"), (dict(size=(2, 3), mode="bilinear"), "bilinear"),
    (dict(size=1, mode="bilinear", align_corners=True), "bilinear"),
    (dict(scale_factor=(0.5, 1.5), mode="bilinear", align_corners=False), "bilinear"),
]


def _interp_ref(x, kw):
    dims = x.ndim - 2
    sf = kw.get("scale_factor")
    sfs = (None,) * dims if sf is None else ((sf,) * dims if np.isscalar(sf) else tuple(sf))
    size = kw.get("size")
    sizes = tuple(int(math.floor(n * f)) for n, f in zip(x.shape[2:], sfs)) if size is None else \
        ((size,) * dims if np.isscalar(size) else tuple(size))
    mode = kw.get("mode", "nearest")
    if mode == "nearest":
        return nearest_ref(x, sizes, sfs)
    if mode == "linear":
        return linear_ref(x, sizes[0], sfs[0], kw.get("align_corners", False))
    return bilinear_ref(x, sizes, sfs, kw.get("align_corners", False))


@pytest.mark.parametrize("kw", [c[0] for c in INTERP_2D], ids=range(len(INTERP_2D)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_interpolate_4d_matches_formula(kw, dtype):
    x = rng(9).standard_normal((2, 3, 5, 7)).astype(dtype)
    y = F.interpolate(dlkern.tensor(x), **kw)
    want = _interp_ref(x, kw)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(size=4, mode="linear"),
                                dict(scale_factor=1.3, mode="linear", align_corners=True),
                                dict(size=17, mode="linear")])
def test_interpolate_3d_matches_formula(kw):
    x = rng(10).standard_normal((2, 3, 11))
    np.testing.assert_allclose(F.interpolate(dlkern.tensor(x), **kw).detach().numpy(), _interp_ref(x, kw), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("kw", [dict(scale_factor=1.5), dict(size=(4, 6), mode="bilinear"),
                                dict(size=(7, 3), mode="bilinear", align_corners=True),
                                dict(size=5, mode="linear")])
def test_interpolate_gradients_by_finite_differences(kw):
    x = rng(11).standard_normal((1, 2, 3, 4) if kw.get("mode") != "linear" else (1, 2, 4))
    X = dlkern.tensor(x, requires_grad=True)
    y = F.interpolate(X, **kw)
    cot = rng(12).standard_normal(y.shape)
    (y * dlkern.tensor(cot)).sum().backward()
    num = numeric_grad(lambda: float(np.sum(_interp_ref(x, kw) * cot)), x)
    np.testing.assert_allclose(X.grad.detach().numpy(), num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape,kw", [((1, 2, 1, 2), dict(size=(40, 3))),            # 40 readers per input
                                      ((1, 2, 2), dict(size=90, mode="linear")),
                                      ((1, 1, 2, 3), dict(size=(70, 5), mode="bilinear", align_corners=True))])
def test_interpolate_extreme_upsampling_gradients(shape, kw):
    """Inputs read by more than 32 outputs take the scatter-add backward."""
    x = rng(31).standard_normal(shape)
    X = dlkern.tensor(x, requires_grad=True)
    y = F.interpolate(X, **kw)
    np.testing.assert_allclose(y.detach().numpy(), _interp_ref(x, kw), rtol=1e-12, atol=1e-12)
    cot = rng(32).standard_normal(y.shape)
    y.backward(dlkern.tensor(cot))
    num = numeric_grad(lambda: float(np.sum(_interp_ref(x, kw) * cot)), x)
    np.testing.assert_allclose(X.grad.detach().numpy(), num, rtol=1e-6, atol=1e-8)


def test_interpolate_gradient_leaves_unread_inputs_alone():
    """Downsampling skips inputs: their gradient is exactly 0 even when the output
    gradient holds inf and NaN (no 0 * inf)."""
    X = dlkern.tensor(np.ones((1, 1, 9)), requires_grad=True)
    y = F.interpolate(X, size=3)                      # reads inputs 0, 3, 6
    y.backward(dlkern.tensor(np.array([[[np.inf, np.nan, 1.0]]])))
    g = X.grad.detach().numpy()[0, 0]
    assert g[0] == np.inf and np.isnan(g[3]) and g[6] == 1.0
    assert np.all(g[[1, 2, 4, 5, 7, 8]] == 0)


def test_interpolate_empty_batch_non_contiguous_and_upsample_modules():
    x = rng(13).standard_normal((2, 5, 4, 3)).transpose(0, 3, 2, 1)   # (2, 3, 4, 5), strided
    kw = dict(size=(6, 7), mode="bilinear", align_corners=True)
    np.testing.assert_allclose(nn.Upsample(**kw)(dlkern.tensor(x)).detach().numpy(), _interp_ref(x, kw), rtol=1e-12)
    np.testing.assert_allclose(nn.UpsamplingBilinear2d(size=(6, 7))(dlkern.tensor(x)).detach().numpy(),
                               _interp_ref(x, kw), rtol=1e-12)
    np.testing.assert_allclose(nn.UpsamplingNearest2d(scale_factor=2)(dlkern.tensor(x)).detach().numpy(),
                               _interp_ref(x, dict(scale_factor=2)), rtol=0)
    assert F.interpolate(dlkern.tensor(np.zeros((0, 3, 4, 4))), scale_factor=2).shape == (0, 3, 8, 8)


def test_interpolate_errors():
    x = dlkern.tensor(np.zeros((1, 1, 4, 4)))
    cases = [
        (ValueError, "only one of size or scale_factor", dict(size=2, scale_factor=2)),
        (ValueError, "either size or scale_factor", dict()),
        (ValueError, "align_corners can only be set", dict(size=2, align_corners=True)),
        (ValueError, "greater than 0", dict(size=(0, 3))),
        (ValueError, "size must be an int or a tuple of 2", dict(size=(2, 2, 2))),
        (ValueError, "scale_factor .* must be a number or have 2 entries", dict(scale_factor=(2, 2, 2))),
        (NotImplementedError, "mode 'bicubic' is not implemented", dict(size=2, mode="bicubic")),
        (ValueError, "unknown mode 'cubic'", dict(size=2, mode="cubic")),
        (NotImplementedError, "mode 'linear' needs a 3-D input", dict(size=2, mode="linear")),
    ]
    for exc, pattern, kw in cases:
        with pytest.raises(exc, match="^interpolate: .*" + pattern):
            F.interpolate(x, **kw)
    with pytest.raises(NotImplementedError, match="mode 'bilinear' needs a 4-D input"):
        F.interpolate(dlkern.tensor(np.zeros((1, 1, 4))), size=2, mode="bilinear")


@pytest.mark.parametrize("kw", [c[0] for c in INTERP_2D] + [dict(scale_factor=0.3, mode="bilinear",
                                                                  recompute_scale_factor=True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_interpolate_matches_torch(kw, dtype):
    torch = _torch()
    x = rng(14).standard_normal((2, 3, 5, 7)).astype(dtype)
    X, Xt = dlkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = F.interpolate(X, **kw), torch.nn.functional.interpolate(Xt, **kw)
    cot = rng(15).standard_normal(tuple(yt.shape)).astype(dtype)
    y.backward(dlkern.tensor(cot))
    yt.backward(torch.tensor(cot))
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(X.grad.detach().numpy(), Xt.grad.detach().numpy(), rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- CUDA namespace (host twin)

def test_new_ops_on_the_cuda_namespace_host_twin():
    dev = CUDADevice(0, module=host_cuda)
    r = rng(30)
    x4, x3 = r.standard_normal((2, 4, 5, 6)), r.standard_normal((2, 4, 7))
    w2, w1 = r.standard_normal((4, 3, 3, 3)), r.standard_normal((4, 1, 3))
    calls = [
        (x4, lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), w2),
        (x4, lambda x, w: F.conv_transpose2d(x, w, dilation=2, output_padding=1), w2),
        (x3, lambda x, w: F.conv_transpose1d(x, w, stride=2, groups=2), w1),
        (x4, lambda x, w: F.interpolate(x, scale_factor=1.5), None),
        (x4, lambda x, w: F.interpolate(x, size=(7, 9), mode="bilinear"), None),
        (x4[:, :, :1], lambda x, w: F.interpolate(x, size=(40, 3)), None),   # scatter-add backward
        (x4, lambda x, w: F.interpolate(x, size=(2, 3)), None),             # inputs left unread
        (x3, lambda x, w: F.interpolate(x, size=9, mode="linear", align_corners=True), None),
        (x4, lambda x, w: F.adaptive_max_pool2d(x, (3, 4)), None),
        (x4, lambda x, w: F.pixel_shuffle(x, 2), None),
        (x3, lambda x, w: F.max_pool1d(x, 3, 2, 1, return_indices=True)[0], None),
        (x3, lambda x, w: F.avg_pool1d(x, 2), None),
    ]
    for i, (x, fn, w) in enumerate(calls):
        outs, grads = [], []
        for device in ("cpu", dev):
            X = dlkern.tensor(x).to(device).requires_grad_(True)
            W = None if w is None else dlkern.tensor(w).to(device).requires_grad_(True)
            y = fn(X, W)
            assert y.device == device
            (y * y).sum().backward()
            outs.append(y.detach().detach().cpu().numpy())
            grads.append([X.grad.detach().cpu().numpy()] + ([] if W is None else [W.grad.detach().cpu().numpy()]))
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-12, err_msg=f"call {i}")
        for a, b in zip(grads[1], grads[0]):
            np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=f"call {i}")
