"""Float64 NumPy references for the fuzz suite (tests/test_fuzz_ops.py).

Written from the documented semantics (PyTorch's where dlkern follows it), never
calling dlkern. Each is small: forward ops as direct formulas, backward ops as the
analytic adjoint of the forward. ``test_fuzz_ops.py::test_reference_adjoints``
checks every adjoint here against central differences of its forward, so the
oracle itself is tested.
"""

import math

import numpy as np


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


# ----------------------------------------------------------------------------- matmul


def gemm(a, b, c, alpha, beta, trans_a, trans_b):
    a, b = f64(a), f64(b)
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    y = alpha * (a @ b)
    if c is not None and beta != 0:
        y = y + beta * f64(c)
    return y


# ----------------------------------------------------------------------------- conv


def _windows(size, k, s, d, before, after):
    return (size + before + after - d * (k - 1) - 1) // s + 1


def conv2d(x, w, b, stride, pads, dilation, groups):
    """x (N, C, H, W), w (O, C/g, kH, kW), pads ((top, bottom), (left, right))."""
    x, w = f64(x), f64(w)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho = _windows(h, kh, sh, dh, *pads[0])
    wo = _windows(wd, kw, sw, dw, *pads[1])
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    y = np.zeros((n, o, ho, wo))
    og = o // groups
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]
            for g in range(groups):
                y[:, g * og:(g + 1) * og] += np.einsum(
                    "nchw,oc->nohw", patch[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, i, j])
    if b is not None:
        y += f64(b)[None, :, None, None]
    return y


def conv2d_backward(g_out, x, w, stride, pads, dilation, groups):
    """(dx, dw, db): the adjoint of conv2d's linear maps, patch by patch."""
    g_out, x, w = f64(g_out), f64(x), f64(w)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (dh, dw_) = stride, dilation
    ho, wo = g_out.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    og = o // groups
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            cols = slice(j * dw_, j * dw_ + sw * (wo - 1) + 1, sw)
            for g in range(groups):
                cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
                dxp[:, cs, rows, cols] += np.einsum("nohw,oc->nchw", g_out[:, os_], w[os_, :, i, j])
                dw[os_, :, i, j] = np.einsum("nohw,nchw->oc", g_out[:, os_], xp[:, cs, rows, cols])
    dx = dxp[:, :, pads[0][0]: pads[0][0] + h, pads[1][0]: pads[1][0] + wd]
    return dx, dw, g_out.sum(axis=(0, 2, 3))


def conv1d(x, w, b, stride, pads, dilation, groups):
    """x (N, C, L), w (O, C/g, K), pads (before, after)."""
    y = conv2d(f64(x)[:, :, None], f64(w)[:, :, None], b, (1, stride), ((0, 0), pads), (1, dilation), groups)
    return y[:, :, 0]


def conv1d_backward(g_out, x, w, stride, pads, dilation, groups):
    dx, dw, db = conv2d_backward(f64(g_out)[:, :, None], f64(x)[:, :, None], f64(w)[:, :, None], (1, stride),
                                 ((0, 0), pads), (1, dilation), groups)
    return dx[:, :, 0], dw[:, :, 0], db


def conv_pads(size, k, stride, dilation, padding):
    """(before, after) for an int padding or 'valid'/'same' (extra element after, as PyTorch)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        total = dilation * (k - 1)
        return (total // 2, total - total // 2)
    return (padding, padding)


# ----------------------------------------------------------------------------- pooling


def pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    """(y, indices) on (N, C, H, W): first maximum in scan order; a NaN wins (the last one);
    a window on padding only gives -inf and index -1."""
    x = f64(x)
    n, c, h, w = x.shape
    ho = pool_out(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    wo = pool_out(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    y = np.full((n, c, ho, wo), -np.inf)
    idx = np.full((n, c, ho, wo), -1, np.int64)
    seen_nan = np.zeros((n, c, ho, wo), bool)
    for oh in range(ho):
        for ow in range(wo):
            for i in range(kernel[0]):
                ih = oh * stride[0] - padding[0] + i * dilation[0]
                if not 0 <= ih < h:
                    continue
                for j in range(kernel[1]):
                    iw = ow * stride[1] - padding[1] + j * dilation[1]
                    if not 0 <= iw < w:
                        continue
                    v = x[:, :, ih, iw]
                    cur = y[:, :, oh, ow]
                    isnan = np.isnan(v)
                    take = (isnan | ((v > cur) & ~seen_nan[:, :, oh, ow])) | (idx[:, :, oh, ow] < 0)
                    y[:, :, oh, ow] = np.where(take, v, cur)
                    idx[:, :, oh, ow] = np.where(take, ih * w + iw, idx[:, :, oh, ow])
                    seen_nan[:, :, oh, ow] |= isnan
    return y, idx


def max_pool2d_backward(g_out, indices, input_shape):
    g_out = f64(g_out)
    n, c, h, w = input_shape
    dx = np.zeros((n * c, h * w))
    ho, wo = g_out.shape[2:]
    g2, i2 = g_out.reshape(n * c, ho * wo), np.asarray(indices).reshape(n * c, ho * wo)
    for p in range(n * c):
        keep = i2[p] >= 0
        np.add.at(dx[p], i2[p][keep], g2[p][keep])
    return dx.reshape(n, c, h, w)


def _avg_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """[(oh, ow, row slice, col slice, divisor)] for avg_pool2d."""
    ho = pool_out(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    wo = pool_out(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    out = []
    for oh in range(ho):
        h0 = oh * stride[0] - padding[0]
        h1 = min(h0 + kernel[0], h + padding[0])
        for ow in range(wo):
            w0 = ow * stride[1] - padding[1]
            w1 = min(w0 + kernel[1], w + padding[1])
            pool_size = (h1 - h0) * (w1 - w0)
            r0, r1, c0, c1 = max(h0, 0), min(h1, h), max(w0, 0), min(w1, w)
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = pool_size
            else:
                div = (r1 - r0) * (c1 - c0)
            out.append((oh, ow, slice(r0, r1), slice(c0, c1), div))
    return ho, wo, out


def avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = f64(x)
    n, c, h, w = x.shape
    ho, wo, wins = _avg_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    y = np.zeros((n, c, ho, wo))
    for oh, ow, rs, cs, div in wins:
        s = x[:, :, rs, cs].sum(axis=(2, 3))
        y[:, :, oh, ow] = s / div if div else 0.0
    return y


def avg_pool2d_backward(g_out, input_shape, kernel, stride, padding, ceil_mode, count_include_pad,
                        divisor_override):
    g_out = f64(g_out)
    n, c, h, w = input_shape
    _, _, wins = _avg_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    dx = np.zeros((n, c, h, w))
    for oh, ow, rs, cs, div in wins:
        if div:
            dx[:, :, rs, cs] += (g_out[:, :, oh, ow] / div)[:, :, None, None]
    return dx


def _adaptive_bins(size, out):
    return [(i * size // out, -((-(i + 1) * size) // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    x = f64(x)
    n, c, h, w = x.shape
    y = np.zeros((n, c) + tuple(output_size))
    for oh, (r0, r1) in enumerate(_adaptive_bins(h, output_size[0])):
        for ow, (c0, c1) in enumerate(_adaptive_bins(w, output_size[1])):
            y[:, :, oh, ow] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(g_out, input_shape):
    g_out = f64(g_out)
    n, c, h, w = input_shape
    dx = np.zeros((n, c, h, w))
    ho, wo = g_out.shape[2:]
    for oh, (r0, r1) in enumerate(_adaptive_bins(h, ho)):
        for ow, (c0, c1) in enumerate(_adaptive_bins(w, wo)):
            dx[:, :, r0:r1, c0:c1] += (g_out[:, :, oh, ow] / ((r1 - r0) * (c1 - c0)))[:, :, None, None]
    return dx


# ----------------------------------------------------------------------------- softmax


def log_softmax(x, dim):
    """Max-subtracted; an all -inf slice gives -inf; a NaN anywhere in a slice gives NaN."""
    x = f64(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=dim, keepdims=True, initial=-np.inf)
        m_safe = np.where(np.isneginf(m), 0.0, m)
        lse = np.log(np.sum(np.exp(x - m_safe), axis=dim, keepdims=True)) + m_safe
        return x - np.where(np.isneginf(m), 0.0, lse)


def softmax(x, dim):
    x = f64(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.max(x, axis=dim, keepdims=True, initial=-np.inf)
        m_safe = np.where(np.isneginf(m), 0.0, m)
        e = np.exp(x - m_safe)
        s = np.sum(e, axis=dim, keepdims=True)
        return np.where(np.isneginf(m), 0.0, e / np.where(s == 0, 1.0, s))


def softmax_backward(g, y, dim):
    g, y = f64(g), f64(y)
    return y * (g - np.sum(g * y, axis=dim, keepdims=True))


def log_softmax_backward(g, y, dim):
    g, y = f64(g), f64(y)
    return g - np.exp(y) * np.sum(g, axis=dim, keepdims=True)


# ----------------------------------------------------------------------------- norms


def layer_norm(x, k, weight, bias, eps):
    """Over the last k dims: (y, mean, rstd), biased variance."""
    x = f64(x)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * f64(weight)
    if bias is not None:
        y = y + f64(bias)
    lead = x.shape[:x.ndim - k]
    return y, mean.reshape(lead), rstd.reshape(lead)


def _norm_dx(gw, xhat, rstd, axes, centered):
    """dx of y = xhat(x) for gradient gw w.r.t. xhat (mean-centred or RMS)."""
    a = np.mean(gw * xhat, axis=axes, keepdims=True)
    if centered:
        return rstd * (gw - np.mean(gw, axis=axes, keepdims=True) - xhat * a)
    return rstd * (gw - xhat * a)


def layer_norm_backward(g, x, k, weight, mean, rstd):
    g, x = f64(g), f64(x)
    axes = tuple(range(x.ndim - k, x.ndim))
    lead_axes = tuple(range(x.ndim - k))
    shape = x.shape[:x.ndim - k] + (1,) * k
    mean, rstd = f64(mean).reshape(shape), f64(rstd).reshape(shape)
    xhat = (x - mean) * rstd
    gw = g if weight is None else g * f64(weight)
    dx = _norm_dx(gw, xhat, rstd, axes, True)
    dw = None if weight is None else np.sum(g * xhat, axis=lead_axes)
    return dx, dw, np.sum(g, axis=lead_axes)


def rms_norm(x, k, weight, eps):
    x = f64(x)
    axes = tuple(range(x.ndim - k, x.ndim))
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps)
    y = x * rstd
    if weight is not None:
        y = y * f64(weight)
    return y, rstd.reshape(x.shape[:x.ndim - k])


def rms_norm_backward(g, x, k, weight, rstd):
    g, x = f64(g), f64(x)
    axes = tuple(range(x.ndim - k, x.ndim))
    rstd = f64(rstd).reshape(x.shape[:x.ndim - k] + (1,) * k)
    xhat = x * rstd
    gw = g if weight is None else g * f64(weight)
    dx = _norm_dx(gw, xhat, rstd, axes, False)
    dw = None if weight is None else np.sum(g * xhat, axis=tuple(range(x.ndim - k)))
    return dx, dw


def _channel(a, ndim):
    return f64(a).reshape((1, -1) + (1,) * (ndim - 2))


def group_norm(x, groups, weight, bias, eps):
    x = f64(x)
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, math.prod(x.shape[1:]) // groups)
    mean = xg.mean(axis=2, keepdims=True)
    rstd = 1.0 / np.sqrt(((xg - mean) ** 2).mean(axis=2, keepdims=True) + eps)
    y = ((xg - mean) * rstd).reshape(x.shape)
    if weight is not None:
        y = y * _channel(weight, x.ndim)
    if bias is not None:
        y = y + _channel(bias, x.ndim)
    return y, mean.reshape(n, groups), rstd.reshape(n, groups)


def group_norm_backward(g, x, groups, weight, mean, rstd):
    g, x = f64(g), f64(x)
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, math.prod(x.shape[1:]) // groups)
    mean, rstd = f64(mean).reshape(n, groups, 1), f64(rstd).reshape(n, groups, 1)
    xhat = (xg - mean) * rstd
    gw = g if weight is None else g * _channel(weight, x.ndim)
    dx = _norm_dx(gw.reshape(xg.shape), xhat, rstd, (2,), True).reshape(x.shape)
    red = (0,) + tuple(range(2, x.ndim))
    dw = None if weight is None else np.sum(g * xhat.reshape(x.shape), axis=red)
    return dx, dw, np.sum(g, axis=red)


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """(y, save_mean, save_rstd, new_running_mean, new_running_var)."""
    x = f64(x)
    red = (0,) + tuple(range(2, x.ndim))
    rm, rv = f64(running_mean), f64(running_var)
    if training:
        mean = x.mean(axis=red)
        var = ((x - _channel(mean, x.ndim)) ** 2).mean(axis=red)
        count = x.size // x.shape[1]
        if rm is not None:
            rm = (1 - momentum) * rm + momentum * mean
            rv = (1 - momentum) * rv + momentum * var * count / (count - 1)
    else:
        mean, var = rm, rv
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - _channel(mean, x.ndim)) * _channel(rstd, x.ndim)
    if weight is not None:
        y = y * _channel(weight, x.ndim)
    if bias is not None:
        y = y + _channel(bias, x.ndim)
    return y, mean, rstd, rm, rv


def batch_norm_backward(g, x, weight, save_mean, save_rstd, training):
    g, x = f64(g), f64(x)
    red = (0,) + tuple(range(2, x.ndim))
    mean, rstd = _channel(save_mean, x.ndim), _channel(save_rstd, x.ndim)
    xhat = (x - mean) * rstd
    gw = g if weight is None else g * _channel(weight, x.ndim)
    if training:
        dx = _norm_dx(gw, xhat, rstd, red, True)
    else:
        dx = gw * rstd
    dw = None if weight is None else np.sum(g * xhat, axis=red)
    return dx, dw, np.sum(g, axis=red)


# ----------------------------------------------------------------------------- cross-entropy


def _classes_last(x):
    """(N, C, d...) -> (N, d..., C)."""
    return np.moveaxis(f64(x), 1, -1)


def cross_entropy(x, target, weight, ignore_index, reduction, smoothing):
    """(loss, lse) with PyTorch's semantics; x (N, C, d...) batched."""
    z = _classes_last(x)
    c = z.shape[-1]
    t = np.asarray(target, np.int64)
    w = np.ones(c) if weight is None else f64(weight)
    m = z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=-1)) + m[..., 0]
    logp = z - lse[..., None]
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    wt = np.where(valid, w[ts], 0.0)
    nll = -np.take_along_axis(logp, ts[..., None], axis=-1)[..., 0] * wt
    smooth = np.where(valid, -(logp * w).sum(axis=-1), 0.0)
    per = (1 - smoothing) * nll + smoothing / c * smooth
    if reduction == "none":
        return per, lse
    if reduction == "sum":
        return np.asarray(per.sum()), lse
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(per.sum() / wt.sum()), lse


def cross_entropy_backward(grad_loss, x, target, weight, ignore_index, reduction, smoothing):
    z = _classes_last(x)
    c = z.shape[-1]
    t = np.asarray(target, np.int64)
    w = np.ones(c) if weight is None else f64(weight)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    wt = np.where(valid, w[ts], 0.0)
    onehot = np.eye(c)[ts]
    d = (1 - smoothing) * wt[..., None] * (p - onehot) + smoothing / c * (w.sum() * p - w)
    gl = f64(grad_loss)
    if reduction == "none":
        d = d * gl[..., None]
    elif reduction == "sum":
        d = d * gl
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            d = d * (gl / wt.sum())
    # Ignored samples get exactly 0 (as PyTorch), even when "mean" divides by 0.
    return np.moveaxis(np.where(valid[..., None], d, 0.0), -1, 1)


# ----------------------------------------------------------------------------- attention


def attention_allowed(b, hq, tq, tk, attn_mask, causal_offset):
    """Bool (B, Hq, Tq, Tk): which keys each query may see (None offset: not causal)."""
    allowed = np.ones((b, hq, tq, tk), bool)
    if causal_offset is not None:
        allowed &= np.arange(tk)[None, :] <= np.arange(tq)[:, None] + causal_offset
    if attn_mask is not None and np.asarray(attn_mask).dtype == bool:
        allowed &= np.broadcast_to(attn_mask, allowed.shape)
    return allowed


def attention(q, k, v, attn_mask, causal_offset, scale):
    """(out, lse, P). Masked keys take no part at all (their NaN does not leak); a row with
    no key left (or only -inf scores) gives out 0 and lse -inf."""
    q, k, v = f64(q), f64(k), f64(v)
    b, hq, tq, d = q.shape
    tk = k.shape[2]
    rep = hq // k.shape[1]
    kk, vv = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    allowed = attention_allowed(b, hq, tq, tk, attn_mask, causal_offset)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.einsum("bhid,bhjd->bhij", q, kk) * scale
        if attn_mask is not None and np.asarray(attn_mask).dtype != bool:
            s = s + np.broadcast_to(f64(attn_mask), s.shape)
        s = np.where(allowed, s, -np.inf)
        m = s.max(axis=-1, keepdims=True, initial=-np.inf)
        empty = np.isneginf(m)
        p = np.where(allowed & ~empty, np.exp(s - np.where(empty, 0.0, m)), 0.0)
        total = p.sum(axis=-1, keepdims=True)
        p = np.where(empty, 0.0, p / np.where(empty, 1.0, total))
        lse = np.where(empty, -np.inf, m + np.log(np.where(empty, 1.0, total)))[..., 0]
        contrib = np.where((p != 0)[..., None], p[..., None] * vv[:, :, None, :, :], 0.0)
        out = contrib.sum(axis=-2)
    return out, lse, p


def attention_backward(g, q, k, v, attn_mask, causal_offset, scale):
    """(dq, dk, dv) for finite inputs."""
    g, q, k, v = f64(g), f64(q), f64(k), f64(v)
    b, hq, tq, d = q.shape
    hkv = k.shape[1]
    rep = hq // hkv
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    out, _, p = attention(q, k, v, attn_mask, causal_offset, scale)
    kk, vv = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    dvv = np.einsum("bhij,bhie->bhje", p, g)
    dp = np.einsum("bhie,bhje->bhij", g, vv)
    ds = p * (dp - np.sum(g * out, axis=-1, keepdims=True))
    dq = np.einsum("bhij,bhjd->bhid", ds, kk) * scale
    dkk = np.einsum("bhij,bhid->bhjd", ds, q) * scale
    dk = dkk.reshape(b, hkv, rep, *dkk.shape[2:]).sum(axis=2)
    dv = dvv.reshape(b, hkv, rep, *dvv.shape[2:]).sum(axis=2)
    return dq, dk, dv


def rope(x, offset, base, inverse=False):
    x = f64(x)
    t, d = x.shape[-2:]
    half = d // 2
    inv = base ** (-(2.0 * np.arange(half)) / d)
    ang = (offset + np.arange(t, dtype=np.float64))[:, None] * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    if inverse:
        sin = -sin
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


# ----------------------------------------------------------------------------- activation

_C0 = math.sqrt(2.0 / math.pi)


def gelu_tanh(x):
    x = f64(x)
    return 0.5 * x * (1.0 + np.tanh(_C0 * (x + 0.044715 * x ** 3)))


def gelu_tanh_backward(g, x):
    g, x = f64(g), f64(x)
    t = np.tanh(_C0 * (x + 0.044715 * x ** 3))
    return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _C0 * (1.0 + 3 * 0.044715 * x * x))


def causal_conv1d(x, w, b, dilation, groups):
    """y[t] = sum_k w[k] x[t - (K-1-k) dilation] (zeros before the start); any dilation, 2**63-1 included."""
    x, w = f64(x), f64(w)
    n, c, length = x.shape
    o, cg, k = w.shape
    og = o // groups
    y = np.zeros((n, o, length))
    for j in range(k):
        shift = (k - 1 - j) * dilation
        if shift >= length:
            continue
        for g in range(groups):
            y[:, g * og:(g + 1) * og, shift:] += np.einsum(
                "ncl,oc->nol", x[:, g * cg:(g + 1) * cg, :length - shift], w[g * og:(g + 1) * og, :, j])
    if b is not None:
        y += f64(b)[None, :, None]
    return y


def causal_conv1d_backward(g_out, x, w, dilation, groups):
    g_out, x, w = f64(g_out), f64(x), f64(w)
    n, c, length = x.shape
    o, cg, k = w.shape
    og = o // groups
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for j in range(k):
        shift = (k - 1 - j) * dilation
        if shift >= length:
            continue
        for g in range(groups):
            cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
            dx[:, cs, :length - shift] += np.einsum("nol,oc->ncl", g_out[:, os_, shift:], w[os_, :, j])
            dw[os_, :, j] = np.einsum("nol,ncl->oc", g_out[:, os_, shift:], x[:, cs, :length - shift])
    return dx, dw, g_out.sum(axis=(0, 2))
