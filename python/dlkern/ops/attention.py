"""Attention family: scaled dot-product attention (forward saving the log-sum-exp,
backward recomputing scores), KV-cache append, decode attention against a cache, and
rotary position embedding (RoPE).

Shapes follow PyTorch: q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv). Hq must
be a multiple of Hkv (grouped-query / multi-query attention: query head h reads KV head
h // (Hq // Hkv); K and V are never repeated in memory).

Masks: ``attn_mask`` broadcastable to (B, Hq, Tq, Tk); a bool mask marks the positions
that take part (True = attend, as PyTorch); a float mask is added to the scaled scores.
``is_causal`` masks key j > query i (top-left aligned, as PyTorch's SDPA). A query row
with no key left gives out = 0 and lse = -inf (PyTorch would give NaN). A masked key
(past the causal limit, False in a bool mask, -inf in a float mask, or past ``length`` in
decode_attention) contributes nothing to the output or to any gradient, whatever K and V
hold there (NaN and Inf included); a NaN or Inf in a key, value or query that a row does
take part in propagates to that row.

Offsets, lengths and positions must be integers that fit in int64; they are range-checked
without overflow (ValueError naming the op and the argument). ``scale`` must be finite.

Dropout on the attention weights (``dropout_p`` > 0) keeps weight (b, h, i, j) when a
counter-based hash of (seed, b, h, i, j) (splitmix64 steps, 53-bit uniform) is >= dropout_p
and scales kept weights by 1 / (1 - dropout_p). The kernel computes it on the fly, so the
backward regenerates the forward's keep mask from ``seed`` without storing it; the same
seed gives the same mask for any thread count or ISA. (Unlike NumPy's generator, the mask
of one element does not depend on the shape of the whole tensor.)

The kernels are tiled (flash-style): scores are computed tile by tile with an online
softmax and never materialised as a (Tq, Tk) matrix; the forward saves the log-sum-exp
and the backward recomputes the tiles. q, k, v, grad_out and out may be strided views
(e.g. (B, T, H, D) transposed to (B, H, T, D)) and are read in place; only an array whose
last axis is not unit-stride is copied once, here. Masks are read through broadcast
strides, never expanded. A float mask must have q's dtype. float32 attention weights
below the smallest normal float (~1.2e-38 relative to the row's largest) are flushed to
0, as are those of masked positions.

Threads: the forward runs (batch, kv head, tile of 64 query rows) tasks, splitting the
keys too when there are fewer tasks than threads (flash-decoding); the backward runs one
task per (batch, kv head), each owning its dQ/dK/dV, and splits the keys round robin when
there are fewer of those than threads. Results agree across thread counts to rounding.
"""

import numpy as np

from .. import _C

__all__ = [
    "attention_forward",
    "attention_backward",
    "kv_cache_append",
    "decode_attention",
    "rope",
    "rope_backward",
]


def _unit_last(a):
    # The kernels take any strides but a unit-stride last axis; anything else is copied
    # once here. Non-arrays and 0-d arrays reach the binding, which names them in its error.
    if isinstance(a, np.ndarray) and a.ndim and a.size and a.shape[-1] > 1 and a.strides[-1] != a.itemsize:
        return np.ascontiguousarray(a)
    return a


def _contiguous(a):
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def _seed(seed):
    return int(seed) & 0xFFFFFFFFFFFFFFFF


def _scale(scale):
    return None if scale is None else float(scale)


def attention_forward(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0, seed=0):
    """Returns (out (B, Hq, Tq, Dv), lse (B, Hq, Tq)): softmax(q k^T * scale + mask) v.

    ``scale`` defaults to 1/sqrt(D). lse is the log-sum-exp of each row's scaled, masked
    scores (-inf for a row with no key left, whose out is 0).
    """
    return _C.attention_forward(_unit_last(q), _unit_last(k), _unit_last(v), attn_mask, bool(is_causal),
                                _scale(scale), dropout_p, _seed(seed))


def attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0,
                       seed=0):
    """Returns (dq, dk, dv) from the forward's out and lse (scores are recomputed).

    Pass the same attn_mask, is_causal, scale, dropout_p and seed as the forward.
    """
    return _C.attention_backward(_unit_last(grad_out), _unit_last(q), _unit_last(k), _unit_last(v),
                                 _unit_last(out), _contiguous(lse), attn_mask, bool(is_causal), _scale(scale),
                                 dropout_p, _seed(seed))


def kv_cache_append(cache, new, offset):
    """Writes new (B, H, T, D) into cache (B, H, S, D) at positions offset..offset+T-1,
    in place; returns offset + T. A negative offset or an overflow (offset > S - T) is a
    ValueError, and the cache is left untouched."""
    return _C.kv_cache_append(cache, _unit_last(new), offset)


def decode_attention(q, k_cache, v_cache, length, attn_mask=None, scale=None):
    """q (B, Hq, Tq, D): the queries of positions length-Tq .. length-1 (causal among
    themselves, bottom-right aligned) against the first ``length`` cache positions of
    k_cache/v_cache (B, Hkv, S, D); attn_mask broadcastable to (B, Hq, Tq, length).
    Reads the cache in place (no copy or slice). Returns out (B, Hq, Tq, Dv)."""
    return _C.decode_attention(_unit_last(q), k_cache, v_cache, length, attn_mask, _scale(scale))


def rope(x, offset=0, base=10000.0):
    """Rotary embedding of x (..., T, D), D even, positions offset..offset+T-1 (offset >= 0
    and offset + T - 1 within int64); pairs are (i, i + D/2) (the "rotate half" layout).
    Angles are computed in double. Returns a new array."""
    return _C.rope(_contiguous(x), offset, base)


def rope_backward(grad_out, offset=0, base=10000.0):
    """Gradient of rope: the inverse rotation applied to grad_out."""
    return _C.rope_backward(_contiguous(grad_out), offset, base)
