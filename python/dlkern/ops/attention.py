"""Attention family: scaled dot-product attention (forward saving the log-sum-exp,
backward recomputing scores), KV-cache append, decode attention against a cache, and
rotary position embedding (RoPE).

Shapes follow PyTorch: q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv). Hq must
be a multiple of Hkv (grouped-query / multi-query attention: query head h reads KV head
h // (Hq // Hkv); K and V are never repeated in memory).

Masks: ``attn_mask`` broadcastable to (B, Hq, Tq, Tk); a bool mask marks the positions
that take part (True = attend, as PyTorch); a float mask is added to the scaled scores.
``is_causal`` masks key j > query i (top-left aligned, as PyTorch's SDPA). A query row
with no key left gives out = 0 and lse = -inf (PyTorch would give NaN).

Dropout on the attention weights uses a counter-based hash of (seed, b, h, i, j), so the
backward regenerates the forward's mask from ``seed`` without storing it.

NOTE: this first version is a NumPy reference with the final signatures; the C++
kernels replace the bodies.
"""

import numpy as np

__all__ = [
    "attention_forward",
    "attention_backward",
    "kv_cache_append",
    "decode_attention",
    "rope",
    "rope_backward",
]


def _scores(q, k, scale, attn_mask, is_causal):
    B, Hq, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    g = Hq // Hkv
    kk = np.repeat(k, g, axis=1)
    s = np.matmul(q, np.swapaxes(kk, -1, -2)) * scale
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.dtype == np.bool_:
            s = np.where(m, s, -np.inf)
        else:
            s = s + m
    if is_causal:
        s = np.where(np.tril(np.ones((Tq, Tk), dtype=bool)), s, -np.inf)
    return s


def _keep(seed, shape, p):
    rng = np.random.default_rng(seed)
    return rng.random(shape) >= p


def attention_forward(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0, seed=0):
    """Returns (out (B, Hq, Tq, Dv), lse (B, Hq, Tq)): softmax(q k^T * scale + mask) v."""
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = _scores(q, k, scale, attn_mask, is_causal)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    tot = e.sum(-1, keepdims=True)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)
    lse = np.where(tot[..., 0] > 0, np.log(np.where(tot > 0, tot, 1))[..., 0] + m[..., 0], -np.inf)
    if dropout_p > 0:
        p = p * _keep(seed, p.shape, dropout_p) / (1 - dropout_p)
    vv = np.repeat(v, q.shape[1] // v.shape[1], axis=1)
    return np.matmul(p, vv).astype(q.dtype), lse.astype(q.dtype)


def attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0,
                       seed=0):
    """Returns (dq, dk, dv) from the forward's out and lse (scores are recomputed)."""
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    g = q.shape[1] // k.shape[1]
    s = _scores(q, k, scale, attn_mask, is_causal)
    lse_ = np.where(np.isfinite(lse), lse, 0)[..., None]
    p = np.where(np.isfinite(lse)[..., None], np.exp(s - lse_), 0)
    kk = np.repeat(k, g, axis=1)
    vv = np.repeat(v, g, axis=1)
    if dropout_p > 0:
        keep = _keep(seed, p.shape, dropout_p) / (1 - dropout_p)
    else:
        keep = 1.0
    pd = p * keep
    dv = np.matmul(np.swapaxes(pd, -1, -2), grad_out)
    dpd = np.matmul(grad_out, np.swapaxes(vv, -1, -2))
    dp = dpd * keep
    delta = (grad_out * out).sum(-1, keepdims=True)
    ds = p * (dp - delta) * scale
    dq = np.matmul(ds, kk)
    dk = np.matmul(np.swapaxes(ds, -1, -2), q)
    B, Hkv = k.shape[0], k.shape[1]
    dk = dk.reshape(B, Hkv, g, *dk.shape[2:]).sum(2)
    dv = dv.reshape(B, Hkv, g, *dv.shape[2:]).sum(2)
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype)


def kv_cache_append(cache, new, offset):
    """Writes new (B, H, T, D) into cache (B, H, S, D) at positions offset..offset+T-1,
    in place; returns offset + T. Overflow (offset + T > S) is a ValueError."""
    T = new.shape[2]
    if offset + T > cache.shape[2]:
        raise ValueError(f"kv_cache_append: cache overflow: offset {offset} + {T} new > capacity {cache.shape[2]}")
    cache[:, :, offset:offset + T] = new
    return offset + T


def decode_attention(q, k_cache, v_cache, length, attn_mask=None, scale=None):
    """q (B, Hq, Tq, D): the queries of positions length-Tq .. length-1 (causal among
    themselves, bottom-right aligned) against the first ``length`` cache positions of
    k_cache/v_cache (B, Hkv, S, D); attn_mask broadcastable to (B, Hq, Tq, length).
    Reads the cache in place (no copy or slice). Returns out (B, Hq, Tq, Dv)."""
    Tq = q.shape[2]
    k = k_cache[:, :, :length]
    v = v_cache[:, :, :length]
    causal = np.arange(length)[None, :] <= (length - Tq + np.arange(Tq))[:, None]
    if attn_mask is None:
        mask = causal
    else:
        m = np.asarray(attn_mask)
        mask = (causal & m) if m.dtype == np.bool_ else np.where(causal, m, -np.inf)
    return attention_forward(q, k, v, attn_mask=mask, scale=scale)[0]


def _rope_angles(T, D, offset, base, dtype):
    half = D // 2
    inv = base ** (-np.arange(half, dtype=np.float64) * 2 / D)
    pos = np.arange(offset, offset + T, dtype=np.float64)
    ang = pos[:, None] * inv[None, :]
    return np.cos(ang).astype(dtype), np.sin(ang).astype(dtype)


def rope(x, offset=0, base=10000.0):
    """Rotary embedding of x (..., T, D), D even, positions offset..offset+T-1; pairs are
    (i, i + D/2) (the "rotate half" layout). Returns a new array."""
    T, D = x.shape[-2], x.shape[-1]
    c, s = _rope_angles(T, D, offset, base, x.dtype)
    a, b = x[..., : D // 2], x[..., D // 2:]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def rope_backward(grad_out, offset=0, base=10000.0):
    """Gradient of rope: the inverse rotation applied to grad_out."""
    T, D = grad_out.shape[-2], grad_out.shape[-1]
    c, s = _rope_angles(T, D, offset, base, grad_out.dtype)
    a, b = grad_out[..., : D // 2], grad_out[..., D // 2:]
    return np.concatenate([a * c + b * s, b * c - a * s], axis=-1)
