"""The NumPy peers of the benchmarks: what a NumPy user would write for speed, in float32,
for the ops NumPy has no function for (normalisation, conv2d, pooling, cross-entropy).

These are timed, not trusted: the harness validates them like every other library against
``dlkern.reference`` (the float64 oracle) before timing them. They are not the oracle --
that one is written for plainness and upcasts to float64, so timing it would flatter
dlkern. Each function takes the same positional arguments as its ``dlkern.ops`` name (the
subset the benchmarks pass), so a case's chain runs on this module, on ``dlkern.ops`` or
on ``dlkern.reference`` alike. They compute in the dtype they are given; constants are
Python floats, so float32 inputs stay float32.

The leading underscore keeps this file out of ``python -m dlkern bench``'s list (it is a
helper, not a benchmark); case files load it with ``dlkern.bench.load_module``.
"""

from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------- normalisation
# Statistics keep their reduced axes (keepdims) so the backward can broadcast them; they only
# travel from a peer's forward to the same peer's backward.


def _normalise(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    rstd = 1.0 / np.sqrt((d * d).mean(axis=axes, keepdims=True) + eps)
    return d * rstd, mean, rstd


def _affine_backward(g, xhat, rstd, axes):
    """d x of y = xhat * w + b, with g = dy * w, xhat normalised over axes."""
    return rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))


def _channels(v, ndim):
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _not_channels(ndim):
    return (0,) + tuple(range(2, ndim))


def layer_norm_forward(x, normalized_shape, weight, bias, eps=1e-5):
    xhat, mean, rstd = _normalise(x, -1, eps)
    return xhat * weight + bias, mean, rstd


def layer_norm_backward(grad_out, x, normalized_shape, weight, mean, rstd):
    xhat = (x - mean) * rstd
    dx = _affine_backward(grad_out * weight, xhat, rstd, -1)
    return dx, (grad_out * xhat).sum(0), grad_out.sum(0)


def rms_norm_forward(x, normalized_shape, weight, eps=None):
    eps = np.finfo(x.dtype).eps if eps is None else eps
    rstd = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x * rstd * weight, rstd


def rms_norm_backward(grad_out, x, normalized_shape, weight, rstd):
    xhat, g = x * rstd, grad_out * weight
    return rstd * (g - xhat * (g * xhat).mean(-1, keepdims=True)), (grad_out * xhat).sum(0)


def group_norm_forward(x, num_groups, weight, bias, eps=1e-5):
    xhat, mean, rstd = _normalise(x.reshape(x.shape[0], num_groups, -1), -1, eps)
    return xhat.reshape(x.shape) * _channels(weight, x.ndim) + _channels(bias, x.ndim), mean, rstd


def group_norm_backward(grad_out, x, num_groups, weight, mean, rstd):
    xg = x.reshape(x.shape[0], num_groups, -1)
    xhat = (xg - mean) * rstd
    g = (grad_out * _channels(weight, x.ndim)).reshape(xg.shape)
    dx = _affine_backward(g, xhat, rstd, -1).reshape(x.shape)
    red = _not_channels(x.ndim)
    return dx, (grad_out * xhat.reshape(x.shape)).sum(red), grad_out.sum(red)


def batch_norm_forward(x, running_mean, running_var, weight, bias, training=True, eps=1e-5):
    """Training mode only (batch statistics); the running statistics are not updated."""
    xhat, mean, rstd = _normalise(x, _not_channels(x.ndim), eps)
    return xhat * _channels(weight, x.ndim) + _channels(bias, x.ndim), mean, rstd


def batch_norm_backward(grad_out, x, weight, mean, rstd, training=True):
    red = _not_channels(x.ndim)
    xhat = (x - mean) * rstd
    dx = _affine_backward(grad_out * _channels(weight, x.ndim), xhat, rstd, red)
    return dx, (grad_out * xhat).sum(red), grad_out.sum(red)


# ----------------------------------------------------------------------------- conv2d: im2col + BLAS


def _im2col(x, k, stride, padding):
    """(C*k*k, N*Ho*Wo) columns, rows ordered (c, i, j) as the weight flattens."""
    n, c = x.shape[:2]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = win.shape[2:4]
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(c * k * k, n * ho * wo), ho, wo


def conv2d(x, weight, bias=None, stride=1, padding=0):
    cols, ho, wo = _im2col(x, weight.shape[2], stride, padding)
    y = (weight.reshape(weight.shape[0], -1) @ cols).reshape(weight.shape[0], x.shape[0], ho, wo)
    y = y.transpose(1, 0, 2, 3)
    return y if bias is None else y + bias[None, :, None, None]


def conv2d_backward(grad_out, x, weight, stride=1, padding=0):
    """(dx, dweight, dbias): both weight-side products are BLAS matmuls on the columns;
    dx scatters the column gradient back tap by tap (col2im)."""
    o, c, k, _ = weight.shape
    n, _, h, w = x.shape
    cols, ho, wo = _im2col(x, k, stride, padding)
    g2 = grad_out.transpose(1, 0, 2, 3).reshape(o, -1)
    dcols = (weight.reshape(o, -1).T @ g2).reshape(c, k, k, n, ho, wo)
    dxp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), x.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride] += \
                dcols[:, i, j].transpose(1, 0, 2, 3)
    dx = dxp[:, :, padding:padding + h, padding:padding + w]
    return dx, (g2 @ cols.T).reshape(weight.shape), grad_out.sum(axis=(0, 2, 3))


# ----------------------------------------------------------------------------- pooling: strided windows


def _windows(x, k, s, p, fill):
    """The k*k strided views (N, C, OH, OW) of the padded input, in window scan order:
    whole-array elementwise ops per tap instead of a loop over windows."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=fill) if p else x
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return [xp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] for i in range(k) for j in range(k)]


def max_pool2d(x, kernel_size, stride, padding=0, return_indices=False):
    """With return_indices, the flat h*w index of each window's first maximum."""
    k, s, p = kernel_size, stride, padding
    views = _windows(x, k, s, p, -np.inf)
    y = views[0].copy()
    for v in views[1:]:
        np.maximum(y, v, out=y)
    if not return_indices:
        return y
    first = np.argmax(np.stack(views), axis=0)
    oh, ow = y.shape[2:]
    ih = np.arange(oh)[:, None] * s - p + first // k
    iw = np.arange(ow)[None, :] * s - p + first % k
    return y, ih * x.shape[3] + iw


def max_pool2d_backward(grad_out, indices, input_shape):
    n, c, h, w = input_shape
    dx = np.zeros((n * c, h * w), grad_out.dtype)
    planes = np.broadcast_to(np.arange(n * c).reshape(n, c, 1, 1), indices.shape)
    np.add.at(dx, (planes, indices), grad_out)  # overlapping windows may share a maximum
    return dx.reshape(input_shape)


def avg_pool2d(x, kernel_size, stride, padding=0):
    views = _windows(x, kernel_size, stride, padding, 0)
    y = views[0].copy()
    for v in views[1:]:
        y += v
    return y / (kernel_size * kernel_size)  # count_include_pad=True, no ceil_mode: always k*k


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride, padding=0):
    k, s, p = kernel_size, stride, padding
    n, c, h, w = input_shape
    dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), grad_out.dtype)
    oh, ow = grad_out.shape[2:]
    share = grad_out / (k * k)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s] += share
    return dxp[:, :, p:p + h, p:p + w]


# ----------------------------------------------------------------------------- cross-entropy


def cross_entropy_forward(x, target):
    """(mean loss, per-row log-sum-exp), reduction='mean'; the row max keeps exp finite."""
    m = x.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[:, 0]
    return (lse - x[np.arange(len(x)), target]).mean(), lse


def cross_entropy_backward(grad_loss, x, target, lse):
    p = np.exp(x - lse[:, None])
    p[np.arange(len(x)), target] -= 1
    return p * (grad_loss / len(x))
