"""1-D and adaptive max pooling, pixel (un)shuffle, Unflatten and Embedding's index
checks: window loops and index formulas written here as float64 references, gradients
by central finite differences, errors, and PyTorch (when installed) as a second oracle.
(Transposed convolution and interpolation are in test_layers_parity.py.)"""

import math

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.nn import functional as F

from helpers import numeric_grad


def rng(seed=0):
    return np.random.default_rng(seed)


def _torch():
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------- references (float64)

def adaptive_max_ref(x, oh, ow):
    """Window [floor(i*in/out), ceil((i+1)*in/out)); the first maximum in scan order."""
    *lead, h, w = x.shape
    y, idx = np.zeros(tuple(lead) + (oh, ow)), np.zeros(tuple(lead) + (oh, ow), np.int64)
    for pos in np.ndindex(*lead):
        for i in range(oh):
            hs, he = (i * h) // oh, math.ceil((i + 1) * h / oh)
            for j in range(ow):
                ws, we = (j * w) // ow, math.ceil((j + 1) * w / ow)
                win = x[pos][hs:he, ws:we]
                k = int(np.argmax(win))
                y[pos + (i, j)] = win.flat[k]
                idx[pos + (i, j)] = (hs + k // win.shape[1]) * w + ws + k % win.shape[1]
    return y, idx


def pool1d_ref(x, k, s, p, d, ceil_mode, kind, count_include_pad=True):
    """Windows over L; max: the first maximum (index along L); avg: sum / k or / the
    number of non-padding elements."""
    length = x.shape[-1]
    span = d * (k - 1) + 1
    num = length + 2 * p - span
    n_out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (n_out - 1) * s >= length + p:
        n_out -= 1
    ys, idx = [], []
    for o in range(n_out):
        taps = [o * s - p + t * d for t in range(k)]
        inside = [t for t in taps if 0 <= t < length]
        if kind == "max":
            vals = np.stack([x[..., t] for t in inside], -1)
            a = np.argmax(vals, -1)
            ys.append(np.take_along_axis(vals, a[..., None], -1)[..., 0])
            idx.append(np.asarray(inside)[a])
        else:
            end = min(o * s - p + k, length + p)
            div = (end - (o * s - p)) if count_include_pad else len(inside)
            ys.append(sum(x[..., t] for t in inside) / div)
    return np.stack(ys, -1), (np.stack(idx, -1) if idx else None)


def pixel_shuffle_ref(x, r):
    *lead, c, h, w = x.shape
    out = np.zeros(tuple(lead) + (c // (r * r), h * r, w * r))
    for ch in range(c // (r * r)):
        for i in range(r):
            for j in range(r):
                out[..., ch, i::r, j::r] = x[..., ch * r * r + i * r + j, :, :]
    return out


# ----------------------------------------------------------------------------- pooling

POOL1D = [(3, None, 0, 1, False), (3, 2, 1, 2, True), (2, 1, 1, 1, False), (4, 3, 2, 1, True)]


@pytest.mark.parametrize("k,s,p,d,ceil", POOL1D)
def test_max_and_avg_pool1d_match_window_loops(k, s, p, d, ceil):
    x = rng(16).standard_normal((2, 3, 11))
    y, idx = F.max_pool1d(dlkern.tensor(x), k, s, p, d, ceil, return_indices=True)
    want, want_idx = pool1d_ref(x, k, s or k, p, d, ceil, "max")
    np.testing.assert_array_equal(y.detach().numpy(), want)
    np.testing.assert_array_equal(idx.detach().numpy(), want_idx)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(F.max_pool1d(dlkern.tensor(x[0]), k, s, p, d, ceil).detach().numpy(), want[0])
    if d == 1:
        for cip in (True, False):
            got = F.avg_pool1d(dlkern.tensor(x), k, s, p, ceil, cip)
            np.testing.assert_allclose(got.detach().numpy(), pool1d_ref(x, k, s or k, p, 1, ceil, "avg", cip)[0],
                                       rtol=1e-12)
            assert nn.AvgPool1d(k, s, p, ceil, cip)(dlkern.tensor(x[1])).shape == got.shape[1:]


def test_pool1d_gradients_by_finite_differences_and_modules():
    x = rng(17).standard_normal((1, 2, 9))
    for fn, kw in ((F.max_pool1d, dict(kernel_size=3, stride=2, padding=1)),
                   (F.avg_pool1d, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False))):
        X = dlkern.tensor(x, requires_grad=True)
        y = fn(X, **kw)
        cot = rng(18).standard_normal(y.shape)
        (y * dlkern.tensor(cot)).sum().backward()
        num = numeric_grad(lambda: float(np.sum(fn(dlkern.tensor(x), **kw).detach().numpy() * cot)), x)
        np.testing.assert_allclose(X.grad.detach().numpy(), num, rtol=1e-6, atol=1e-8)
    m = nn.MaxPool1d(3, 2, 1, return_indices=True)
    y, idx = m(dlkern.tensor(x))
    assert y.shape == idx.shape == (1, 2, 5) and m.stride == 2 and nn.MaxPool1d(4).stride == 4
    with pytest.raises(ValueError, match="max_pool1d: expected a 2-D"):
        F.max_pool1d(dlkern.tensor(np.zeros((1, 1, 1, 4))), 2)
    with pytest.raises(ValueError, match="max_pool1d: kernel_size must be >= 1"):
        F.max_pool1d(dlkern.tensor(x), 0)
    with pytest.raises(ValueError, match="^max_pool1d: "):
        F.max_pool1d(dlkern.tensor(x), 3, padding=2)   # padding above half the kernel
    with pytest.raises(ValueError, match="^avg_pool1d: "):
        F.avg_pool1d(dlkern.tensor(x), 2, padding=2)


@pytest.mark.parametrize("out", [(3, 4), 1, (None, 3), (7, 10), (10, 13), (2, 7)])
def test_adaptive_max_pool2d_matches_window_loops(out):
    x = rng(19).standard_normal((2, 3, 7, 10))
    y, idx = F.adaptive_max_pool2d(dlkern.tensor(x), out, return_indices=True)
    pair = (out, out) if isinstance(out, int) else out
    oh, ow = (x.shape[2 + i] if v is None else v for i, v in enumerate(pair))
    want, want_idx = adaptive_max_ref(x, oh, ow)
    np.testing.assert_array_equal(y.detach().numpy(), want)
    np.testing.assert_array_equal(idx.detach().numpy(), want_idx)
    np.testing.assert_array_equal(nn.AdaptiveMaxPool2d(out)(dlkern.tensor(x[1])).detach().numpy(), want[1])


def test_adaptive_max_pool2d_ties_gradients_empty_and_errors():
    x = np.zeros((1, 1, 3, 5))
    x[0, 0, 1, 3] = x[0, 0, 2, 0] = 1.0       # ties: the first in scan order wins
    y, idx = F.adaptive_max_pool2d(dlkern.tensor(x), 1, return_indices=True)
    assert idx.detach().numpy().item() == 8 and y.detach().numpy().item() == 1.0
    x = rng(20).standard_normal((1, 2, 5, 6))
    X = dlkern.tensor(x, requires_grad=True)
    y = F.adaptive_max_pool2d(X, (3, 4))
    cot = rng(21).standard_normal(y.shape)
    (y * dlkern.tensor(cot)).sum().backward()
    num = numeric_grad(lambda: float(np.sum(adaptive_max_ref(x, 3, 4)[0] * cot)), x)
    np.testing.assert_allclose(X.grad.detach().numpy(), num, rtol=1e-6, atol=1e-8)
    assert F.adaptive_max_pool2d(dlkern.tensor(np.zeros((0, 2, 4, 4))), 2).shape == (0, 2, 2, 2)
    assert F.adaptive_max_pool2d(dlkern.tensor(np.zeros((1, 2, 4, 4))), 0).shape == (1, 2, 0, 0)
    with pytest.raises(ValueError, match="adaptive_max_pool2d: expected input to have non-zero size"):
        F.adaptive_max_pool2d(dlkern.tensor(np.zeros((1, 2, 0, 4))), 2)
    with pytest.raises(ValueError, match="adaptive_max_pool2d: expected a 3-D"):
        F.adaptive_max_pool2d(dlkern.tensor(np.zeros((4, 4))), 2)
    with pytest.raises(ValueError, match="adaptive_max_pool2d: output_size must be an int or a pair"):
        F.adaptive_max_pool2d(dlkern.tensor(np.zeros((1, 4, 4))), (1, 2, 3))


def test_pools_match_torch():
    torch = _torch()
    TF = torch.nn.functional
    x = rng(22).standard_normal((2, 3, 13))
    for k, s, p, d, ceil in POOL1D:
        for name, kw in (("max_pool1d", dict(dilation=d, return_indices=True)),
                         ("avg_pool1d", dict(count_include_pad=False))):
            X, Xt = dlkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            got = getattr(F, name)(X, k, s, p, ceil_mode=ceil, **kw)
            want = getattr(TF, name)(Xt, k, s, p, ceil_mode=ceil, **kw)
            if name == "max_pool1d":
                np.testing.assert_array_equal(got[1].detach().numpy(), want[1].detach().numpy())
                got, want = got[0], want[0]
            got.sum().backward()
            want.sum().backward()
            np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12)
            np.testing.assert_allclose(X.grad.detach().numpy(), Xt.grad.detach().numpy(), rtol=1e-12)
    x = rng(23).standard_normal((2, 3, 7, 10))
    for out in [(3, 4), 1, (None, 3), (10, 13)]:
        X, Xt = dlkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        (y, i), (yt, it) = F.adaptive_max_pool2d(X, out, True), TF.adaptive_max_pool2d(Xt, out, True)
        np.testing.assert_array_equal(y.detach().numpy(), yt.detach().numpy())
        np.testing.assert_array_equal(i.detach().numpy(), it.detach().numpy())
        cot = rng(24).standard_normal(tuple(yt.shape))
        y.backward(dlkern.tensor(cot))
        yt.backward(torch.tensor(cot))
        np.testing.assert_allclose(X.grad.detach().numpy(), Xt.grad.detach().numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------- pixel shuffle, Unflatten

def test_pixel_shuffle_and_unshuffle():
    x = rng(25).standard_normal((2, 1, 12, 3, 4))
    y = nn.PixelShuffle(2)(dlkern.tensor(x))
    np.testing.assert_array_equal(y.detach().numpy(), pixel_shuffle_ref(x, 2))
    np.testing.assert_array_equal(nn.PixelUnshuffle(2)(y).detach().numpy(), x)
    np.testing.assert_array_equal(F.pixel_shuffle(dlkern.tensor(x[0, 0]), 2).detach().numpy(), pixel_shuffle_ref(x[0, 0], 2))
    X = dlkern.tensor(x, requires_grad=True)
    cot = rng(26).standard_normal(y.shape)
    (F.pixel_shuffle(X, 2) * dlkern.tensor(cot)).sum().backward()
    np.testing.assert_array_equal(X.grad.detach().numpy(), F.pixel_unshuffle(dlkern.tensor(cot), 2).detach().numpy())
    assert F.pixel_shuffle(dlkern.tensor(np.zeros((0, 9, 2, 2))), 3).shape == (0, 1, 6, 6)
    with pytest.raises(ValueError, match="pixel_shuffle: the channel dimension 5 .* upscale_factor\\*\\*2 = 4"):
        F.pixel_shuffle(dlkern.tensor(np.zeros((1, 5, 2, 2))), 2)
    with pytest.raises(ValueError, match="pixel_unshuffle: the spatial size \\(3, 4\\)"):
        F.pixel_unshuffle(dlkern.tensor(np.zeros((1, 1, 3, 4))), 2)
    with pytest.raises(ValueError, match="pixel_shuffle: upscale_factor must be positive"):
        F.pixel_shuffle(dlkern.tensor(np.zeros((1, 4, 2, 2))), 0)
    with pytest.raises(ValueError, match="pixel_shuffle: expected an input of at least 3 dimensions"):
        F.pixel_shuffle(dlkern.tensor(np.zeros((4, 2))), 1)


def test_pixel_shuffle_matches_torch():
    torch = _torch()
    x = rng(27).standard_normal((2, 18, 3, 4))
    np.testing.assert_array_equal(F.pixel_shuffle(dlkern.tensor(x), 3).detach().numpy(),
                                  torch.nn.functional.pixel_shuffle(torch.tensor(x), 3).detach().numpy())
    np.testing.assert_array_equal(F.pixel_unshuffle(dlkern.tensor(x), 1).detach().numpy(), x)
    x = rng(28).standard_normal((2, 3, 6, 4))
    np.testing.assert_array_equal(F.pixel_unshuffle(dlkern.tensor(x), 2).detach().numpy(),
                                  torch.nn.functional.pixel_unshuffle(torch.tensor(x), 2).detach().numpy())


def test_unflatten():
    x = rng(29).standard_normal((2, 12, 3))
    assert nn.Unflatten(1, (3, 4))(dlkern.tensor(x)).shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(nn.Unflatten(-2, (2, -1, 3))(dlkern.tensor(x)).detach().numpy(), x.reshape(2, 2, 2, 3, 3))
    X = dlkern.tensor(x, requires_grad=True)
    nn.Unflatten(2, (1, 3))(X).sum().backward()
    np.testing.assert_array_equal(X.grad.detach().numpy(), np.ones_like(x))
    with pytest.raises(ValueError, match=r"Unflatten: sizes \[5, 2\] don't multiply up to the size of dim 1 \(12\)"):
        nn.Unflatten(1, (5, 2))(X)
    with pytest.raises(ValueError, match="Unflatten: sizes"):
        nn.Unflatten(1, (-1, -1))(X)
    with pytest.raises(IndexError, match="Unflatten: dim 3 is out of range"):
        nn.Unflatten(3, (1,))(X)
    with pytest.raises(TypeError, match="Unflatten: unflattened_size"):
        nn.Unflatten(1, ())


# ----------------------------------------------------------------------------- Embedding indices

def test_embedding_refuses_negative_and_out_of_range_indices():
    emb = nn.Embedding(5, 3)
    for bad in ([0, -1], [5], [[1, -5]]):
        with pytest.raises(IndexError, match=r"embedding: index out of range in self.*\[0, 5\)"):
            emb(dlkern.tensor(np.array(bad)))
    assert emb(dlkern.tensor(np.array([0, 4]))).shape == (2, 3)


def test_embedding_negative_index_raises_in_torch_too():
    torch = _torch()
    with pytest.raises(IndexError):
        torch.nn.functional.embedding(torch.tensor([-1]), torch.zeros(5, 3))
