"""The second half of dlkern.reference: convolution, pooling, cross-entropy and attention
as plain float64 NumPy (see dlkern/reference.py; import them from there)."""

import math

import numpy as np

__all__ = [
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "causal_conv1d", "causal_conv1d_backward",
    "conv_pads", "pool_out", "max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d",
    "avg_pool2d_backward", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "cross_entropy", "cross_entropy_forward", "cross_entropy_backward",
    "attention_allowed", "attention_probs", "attention_grads", "attention_forward", "attention_backward",
    "decode_attention", "dropout_keep", "kv_cache_append", "rope", "rope_backward",
]


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _pair(v, n=2):
    return (int(v),) * n if np.ndim(v) == 0 else tuple(int(a) for a in v)


# ----------------------------------------------------------------------------- conv


def conv_pads(kernel, dilation, padding):
    """[(before, after)] per spatial dim for an int, a per-dim sequence of ints or of
    (before, after) pairs, or 'valid'/'same' (the odd element after, as PyTorch)."""
    nd = len(kernel)
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]
    if np.ndim(padding) == 0:
        return [(int(padding), int(padding))] * nd
    return [(int(p), int(p)) if np.ndim(p) == 0 else (int(p[0]), int(p[1])) for p in padding]


def _geometry(w, stride, padding, dilation, nd):
    stride, dilation = _pair(stride, nd), _pair(dilation, nd)
    return stride, conv_pads(w.shape[2:], dilation, padding), dilation


def _out_size(size, k, s, d, before, after):
    return (size + before + after - d * (k - 1) - 1) // s + 1


def _taps(xp, i, j, stride, dilation, ho, wo):
    """The (N, C, ho, wo) slice of the padded input that tap (i, j) of every window reads."""
    (sh, sw), (dh, dw) = stride, dilation
    return xp[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """x (N, C, H, W), weight (O, C/groups, kH, kW): a sum over kernel taps. Each tap's
    channel contraction is the same float64 sum either way; optimize=True only lets einsum
    hand it to BLAS (tensordot), so validating a ResNet-sized bench case takes seconds."""
    x, w = f64(x), f64(weight)
    stride, pads, dilation = _geometry(w, stride, padding, dilation, 2)
    n, o, (kh, kw) = x.shape[0], w.shape[0], w.shape[2:]
    ho = _out_size(x.shape[2], kh, stride[0], dilation[0], *pads[0])
    wo = _out_size(x.shape[3], kw, stride[1], dilation[1], *pads[1])
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    y = np.zeros((n, o, ho, wo))
    cg, og = w.shape[1], o // groups
    for i in range(kh):
        for j in range(kw):
            patch = _taps(xp, i, j, stride, dilation, ho, wo)
            for g in range(groups):
                y[:, g * og:(g + 1) * og] += np.einsum(
                    "nchw,oc->nohw", patch[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og, :, i, j], optimize=True)
    if bias is not None:
        y += f64(bias)[None, :, None, None]
    return y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True)):
    """(dx, dweight, dbias), None where need is False: the adjoint of conv2d, tap by tap."""
    g_out, x, w = f64(grad_out), f64(x), f64(weight)
    stride, pads, dilation = _geometry(w, stride, padding, dilation, 2)
    h, wd = x.shape[2:]
    o, cg, kh, kw = w.shape
    ho, wo = g_out.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), pads[0], pads[1]))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    og = o // groups
    for i in range(kh):
        for j in range(kw):
            dpatch = _taps(dxp, i, j, stride, dilation, ho, wo)  # a view: += writes into dxp
            patch = _taps(xp, i, j, stride, dilation, ho, wo)
            for g in range(groups):
                cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
                dpatch[:, cs] += np.einsum("nohw,oc->nchw", g_out[:, os_], w[os_, :, i, j], optimize=True)
                dw[os_, :, i, j] = np.einsum("nohw,nchw->oc", g_out[:, os_], patch[:, cs], optimize=True)
    dx = dxp[:, :, pads[0][0]: pads[0][0] + h, pads[1][0]: pads[1][0] + wd]
    grads = (dx, dw, g_out.sum(axis=(0, 2, 3)))
    return tuple(a if keep else None for a, keep in zip(grads, need))


def _as_2d_args(w, stride, padding, dilation):
    pads = conv_pads(f64(w).shape[2:], _pair(dilation, 1), padding)
    return (1, _pair(stride, 1)[0]), [(0, 0), pads[0]], (1, _pair(dilation, 1)[0])


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """x (N, C, L), weight (O, C/groups, K): conv2d over a height of 1."""
    s, p, d = _as_2d_args(weight, stride, padding, dilation)
    return conv2d(f64(x)[:, :, None], f64(weight)[:, :, None], bias, s, p, d, groups)[:, :, 0]


def conv1d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True)):
    s, p, d = _as_2d_args(weight, stride, padding, dilation)
    dx, dw, db = conv2d_backward(f64(grad_out)[:, :, None], f64(x)[:, :, None], f64(weight)[:, :, None], s, p, d,
                                 groups, need)
    return None if dx is None else dx[:, :, 0], None if dw is None else dw[:, :, 0], db


def causal_conv1d(x, weight, bias=None, dilation=1, groups=1):
    """y[t] = sum_k w[k] x[t - (K-1-k) dilation] (zeros before the start); any dilation."""
    x, w = f64(x), f64(weight)
    dilation = _pair(dilation, 1)[0]
    n, _, length = x.shape
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
    if bias is not None:
        y += f64(bias)[None, :, None]
    return y


def causal_conv1d_backward(grad_out, x, weight, dilation=1, groups=1, need=(True, True, True)):
    g_out, x, w = f64(grad_out), f64(x), f64(weight)
    dilation = _pair(dilation, 1)[0]
    length = x.shape[2]
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
    return tuple(a if keep else None for a, keep in zip((dx, dw, g_out.sum(axis=(0, 2))), need))


# ----------------------------------------------------------------------------- pooling
# Every pooling op takes (N, C, H, W) or unbatched (C, H, W), as the CPU ops.


def _batched(fn):
    def op(x, *args, **kwargs):
        r = fn(_as4(x), *args, **kwargs)
        if np.ndim(x) == 4:
            return r
        return tuple(a[0] for a in r) if isinstance(r, tuple) else r[0]
    op.__name__, op.__doc__ = fn.__name__, fn.__doc__
    return op


def _as4(a):
    a = f64(a)
    return a if a.ndim == 4 else a[None]


def _batched_shape(input_shape):
    return tuple(input_shape) if len(input_shape) == 4 else (1,) + tuple(input_shape)


def pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input or left padding
        out -= 1
    return out


def _pool_args(kernel_size, stride, padding):
    kernel = _pair(kernel_size)
    return kernel, kernel if stride is None else _pair(stride), _pair(padding)


@_batched
def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices): the first maximum in scan order; a NaN wins (the last one); a window
    on padding only gives -inf and index -1. Indices are flat within each (H, W) plane."""
    kernel, stride, padding = _pool_args(kernel_size, stride, padding)
    dilation = _pair(dilation)
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
                for j in range(kernel[1]):
                    iw = ow * stride[1] - padding[1] + j * dilation[1]
                    if not (0 <= ih < h and 0 <= iw < w):
                        continue
                    v, cur = x[:, :, ih, iw], y[:, :, oh, ow]
                    isnan = np.isnan(v)
                    take = (isnan | ((v > cur) & ~seen_nan[:, :, oh, ow])) | (idx[:, :, oh, ow] < 0)
                    y[:, :, oh, ow] = np.where(take, v, cur)
                    idx[:, :, oh, ow] = np.where(take, ih * w + iw, idx[:, :, oh, ow])
                    seen_nan[:, :, oh, ow] |= isnan
    return y, idx


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    y, idx = max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, indices, input_shape):
    """grad_out added into a zero dx at the forward's indices (-1: nowhere)."""
    g_out = f64(grad_out)
    shape = _batched_shape(input_shape)
    n, c, h, w = shape
    plane = math.prod(np.shape(grad_out)[-2:])
    g2, i2 = g_out.reshape(n * c, plane), np.asarray(indices).reshape(n * c, plane)
    dx = np.zeros((n * c, h * w))
    for p in range(n * c):
        keep = i2[p] >= 0
        np.add.at(dx[p], i2[p][keep], g2[p][keep])
    return dx.reshape(tuple(input_shape))


def _avg_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """(ho, wo, [(oh, ow, row slice, col slice, divisor)]) for avg_pool2d."""
    ho = pool_out(h, kernel[0], stride[0], padding[0], 1, ceil_mode)
    wo = pool_out(w, kernel[1], stride[1], padding[1], 1, ceil_mode)
    out = []
    for oh in range(ho):
        h0 = oh * stride[0] - padding[0]
        h1 = min(h0 + kernel[0], h + padding[0])
        for ow in range(wo):
            w0 = ow * stride[1] - padding[1]
            w1 = min(w0 + kernel[1], w + padding[1])
            r0, r1, c0, c1 = max(h0, 0), min(h1, h), max(w0, 0), min(w1, w)
            if divisor_override:
                div = divisor_override
            elif count_include_pad:
                div = (h1 - h0) * (w1 - w0)  # the window clipped to the padded input
            else:
                div = (r1 - r0) * (c1 - c0)
            out.append((oh, ow, slice(r0, r1), slice(c0, c1), div))
    return ho, wo, out


@_batched
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    kernel, stride, padding = _pool_args(kernel_size, stride, padding)
    n, c, h, w = x.shape
    ho, wo, wins = _avg_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    y = np.zeros((n, c, ho, wo))
    for oh, ow, rs, cs, div in wins:
        y[:, :, oh, ow] = x[:, :, rs, cs].sum(axis=(2, 3)) / div if div else 0.0
    return y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    kernel, stride, padding = _pool_args(kernel_size, stride, padding)
    g_out = _as4(grad_out)
    n, c, h, w = _batched_shape(input_shape)
    _, _, wins = _avg_windows(h, w, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    dx = np.zeros((n, c, h, w))
    for oh, ow, rs, cs, div in wins:
        if div:
            dx[:, :, rs, cs] += (g_out[:, :, oh, ow] / div)[:, :, None, None]
    return dx.reshape(tuple(input_shape))


def _adaptive_bins(size, out):
    """PyTorch's bins: [floor(i size / out), ceil((i + 1) size / out))."""
    return [(i * size // out, -((-(i + 1) * size) // out)) for i in range(out)]


@_batched
def adaptive_avg_pool2d(x, output_size):
    n, c, h, w = x.shape
    size = (output_size,) * 2 if np.ndim(output_size) == 0 else output_size
    size = tuple(x.shape[2 + a] if s is None else int(s) for a, s in enumerate(size))
    y = np.zeros((n, c) + size)
    for oh, (r0, r1) in enumerate(_adaptive_bins(h, size[0])):
        for ow, (c0, c1) in enumerate(_adaptive_bins(w, size[1])):
            y[:, :, oh, ow] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    g_out = _as4(grad_out)
    n, c, h, w = _batched_shape(input_shape)
    dx = np.zeros((n, c, h, w))
    ho, wo = g_out.shape[2:]
    for oh, (r0, r1) in enumerate(_adaptive_bins(h, ho)):
        for ow, (c0, c1) in enumerate(_adaptive_bins(w, wo)):
            dx[:, :, r0:r1, c0:c1] += (g_out[:, :, oh, ow] / ((r1 - r0) * (c1 - c0)))[:, :, None, None]
    return dx.reshape(tuple(input_shape))


# ----------------------------------------------------------------------------- cross-entropy


def _ce_parts(x, target, weight, ignore_index):
    """Logits with classes last (N, d..., C), targets, class weights, valid mask, the
    target's weight (0 where ignored) and the targets with ignored ones set to 0."""
    x = f64(x)
    z = x[None] if x.ndim == 1 else np.moveaxis(x, 1, -1)  # (C,) unbatched: one sample
    t = np.asarray(target, np.int64).reshape(z.shape[:-1])
    w = np.ones(z.shape[-1]) if weight is None else f64(weight)
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    return z, w, valid, np.where(valid, w[ts], 0.0), ts


def cross_entropy_forward(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """(loss, lse) with PyTorch's semantics; input (N, C, d...) or unbatched (C,)."""
    z, w, valid, wt, ts = _ce_parts(input, target, weight, ignore_index)
    c = z.shape[-1]
    m = z.max(axis=-1, keepdims=True)
    log_s = np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    lse = (m + log_s)[..., 0]
    logp = (z - m) - log_s  # not z - lse, which rounds at the size of m
    nll = -np.take_along_axis(logp, ts[..., None], axis=-1)[..., 0] * wt
    per = (1 - label_smoothing) * nll
    if label_smoothing > 0:  # as PyTorch: no smoothing term at all otherwise (a -inf logit gives no NaN)
        per = per + label_smoothing / c * np.where(valid, -(logp * w).sum(axis=-1), 0.0)
    per = np.where(valid, per, 0.0)
    if np.ndim(input) == 1:
        per, lse = per[0], lse[0]
    if reduction == "none":
        return per, lse
    if reduction == "sum":
        return np.asarray(per.sum()), lse
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(per.sum() / wt.sum()), lse


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    return cross_entropy_forward(input, target, weight, ignore_index, reduction, label_smoothing)[0]


def cross_entropy_backward(grad_loss, input, target, lse=None, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, out=None):
    """d loss / d input (lse is accepted for the kernel's signature and recomputed)."""
    z, w, valid, wt, ts = _ce_parts(input, target, weight, ignore_index)
    c = z.shape[-1]
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    # The one-hot as a comparison, not np.eye(c)[ts]: a C x C identity is 8 GB at C = 32000.
    onehot = np.arange(c) == ts[..., None]
    d = (1 - label_smoothing) * wt[..., None] * (p - onehot) + label_smoothing / c * (w.sum() * p - w)
    gl = f64(grad_loss)
    if reduction == "none":
        d = d * gl.reshape(wt.shape)[..., None]
    elif reduction == "sum":
        d = d * gl
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            d = d * (gl / wt.sum())
    # Ignored samples get exactly 0 (as PyTorch), even when "mean" divides by 0.
    d = np.where(valid[..., None], d, 0.0)
    d = d[0] if np.ndim(input) == 1 else np.moveaxis(d, -1, 1)
    if out is None:
        return d
    out[...] = d
    return out


# ----------------------------------------------------------------------------- attention


def attention_allowed(b, hq, tq, tk, attn_mask, causal_offset):
    """Bool (B, Hq, Tq, Tk): which keys each query may see (causal_offset None: not causal;
    else key j is seen by query i when j <= i + causal_offset)."""
    allowed = np.ones((b, hq, tq, tk), bool)
    if causal_offset is not None:
        allowed &= np.arange(tk)[None, :] <= np.arange(tq)[:, None] + causal_offset
    if attn_mask is not None and np.asarray(attn_mask).dtype == bool:
        allowed &= np.broadcast_to(attn_mask, allowed.shape)
    return allowed


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x):
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def dropout_keep(seed, b, h, tq, tk, dropout_p):
    """(B, H, Tq, Tk) keep factors 0 or 1/(1-p): weight (b, h, i, j) is kept when the
    counter hash of (seed, b, h, i, j) (53-bit uniform) is >= p, as ops/attention.py says."""
    if dropout_p == 0:
        return np.ones((b, h, tq, tk))
    with np.errstate(over="ignore"):
        bi, hi, ii, jj = (a.astype(np.uint64) for a in np.indices((b, h, tq, tk)))
        x = _mix64(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) + _GOLDEN)
        x = _mix64(_mix64(_mix64(x ^ bi) ^ hi) ^ ii)
        u = (_mix64(x + jj * _GOLDEN) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return np.where(u >= dropout_p, 1.0 / (1.0 - dropout_p), 0.0)


def attention_probs(q, k, v, attn_mask=None, causal_offset=None, scale=None, keep=None):
    """(out, lse, P): masked keys take no part at all (their NaN does not leak); a row with
    no key left (or only -inf scores) gives out 0 and lse -inf. keep: dropout factors on P."""
    q, k, v = f64(q), f64(k), f64(v)
    b, hq, tq, d = q.shape
    tk, rep = k.shape[2], hq // k.shape[1]
    kk, vv = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)  # query head h reads KV head h // rep
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
        pd = p if keep is None else p * keep
        out = np.where((pd != 0)[..., None], pd[..., None] * vv[:, :, None, :, :], 0.0).sum(axis=-2)
    return out, lse, p


def attention_forward(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0, seed=0):
    """(out, lse); is_causal is top-left aligned (key j <= query i), as PyTorch's SDPA."""
    b, hq, tq, _ = np.shape(q)
    keep = dropout_keep(seed, b, hq, tq, np.shape(k)[2], dropout_p)
    out, lse, _ = attention_probs(q, k, v, attn_mask, 0 if is_causal else None, scale, keep)
    return out, lse


def attention_grads(grad_out, q, k, v, attn_mask=None, causal_offset=None, scale=None, keep=None):
    """(dq, dk, dv) of attention_probs' out for finite inputs; keep: dropout factors on P."""
    g, q, k, v = f64(grad_out), f64(q), f64(k), f64(v)
    b, hq, tq, d = q.shape
    hkv = k.shape[1]
    rep = hq // hkv
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    keep = 1.0 if keep is None else keep
    out, _, p = attention_probs(q, k, v, attn_mask, causal_offset, scale, keep)
    kk, vv = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    dvv = np.einsum("bhij,bhie->bhje", p * keep, g)
    dp = np.einsum("bhie,bhje->bhij", g, vv) * keep
    ds = p * (dp - np.sum(g * out, axis=-1, keepdims=True))  # sum_j P z dP = g . out
    dq = np.einsum("bhij,bhjd->bhid", ds, kk) * scale
    dkk = np.einsum("bhij,bhid->bhjd", ds, q) * scale
    dk = dkk.reshape(b, hkv, rep, *dkk.shape[2:]).sum(axis=2)  # a KV head's gradient sums its query heads
    dv = dvv.reshape(b, hkv, rep, *dvv.shape[2:]).sum(axis=2)
    return dq, dk, dv


def attention_backward(grad_out, q, k, v, out=None, lse=None, attn_mask=None, is_causal=False, scale=None,
                       dropout_p=0.0, seed=0):
    """(dq, dk, dv) for finite inputs (out and lse are recomputed)."""
    b, hq, tq, _ = np.shape(q)
    keep = dropout_keep(seed, b, hq, tq, np.shape(k)[2], dropout_p)
    return attention_grads(grad_out, q, k, v, attn_mask, 0 if is_causal else None, scale, keep)


def decode_attention(q, k_cache, v_cache, length, attn_mask=None, scale=None):
    """q's Tq rows are positions length-Tq .. length-1 (causal, bottom-right aligned) over
    the first `length` cache positions."""
    tq = np.shape(q)[2]
    return attention_probs(q, f64(k_cache)[:, :, :length], f64(v_cache)[:, :, :length], attn_mask, length - tq,
                           scale)[0]


def kv_cache_append(cache, new, offset):
    """cache[:, :, offset:offset+T] = new, in place; returns offset + T."""
    t = np.shape(new)[2]
    if offset < 0 or offset + t > cache.shape[2]:
        raise ValueError(f"kv_cache_append: offset {offset} + {t} new positions overflow a cache of "
                         f"{cache.shape[2]}")
    cache[:, :, offset:offset + t] = new
    return offset + t


def rope(x, offset=0, base=10000.0, inverse=False):
    """Rotate pairs (i, i + D/2) of x (..., T, D) by angle (offset + t) base^(-2i/D)."""
    x = f64(x)
    t, d = x.shape[-2:]
    half = d // 2
    inv = base ** (-(2.0 * np.arange(half)) / d)
    ang = (offset + np.arange(t, dtype=np.float64))[:, None] * inv[None, :]
    cos, sin = np.cos(ang), -np.sin(ang) if inverse else np.sin(ang)
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rope_backward(grad_out, offset=0, base=10000.0):
    """The inverse rotation (rope is orthogonal)."""
    return rope(grad_out, offset, base, inverse=True)
