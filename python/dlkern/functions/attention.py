"""Attention ops on the attention kernels: scaled dot-product attention (the forward
saves out and the log-sum-exp, the backward recomputes the scores), rotary position
embedding, and attention against a KV cache (inference only). See dlkern.ops.attention
for the kernels' contract."""

from ..autograd import Function


class ScaledDotProductAttention(Function):
    """q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv) -> (B, Hq, Tq, Dv). The mask
    and the dropout seed are constants (no gradient through the mask). The kernels read
    strided views (heads split off a (B, T, H * D) projection) in place, so none is copied."""

    @staticmethod
    def forward(ctx, q, k, v, attn_mask, is_causal, scale, dropout_p, seed):
        out, lse = ctx.device.attention_forward(q, k, v, attn_mask, is_causal, scale, dropout_p, seed)
        ctx.saved = (q, k, v, out, lse)
        ctx.args = (attn_mask, is_causal, scale, dropout_p, seed)
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, out, lse = ctx.saved
        dq, dk, dv = ctx.device.attention_backward(g, q, k, v, out, lse, *ctx.args)
        return dq, dk, dv, None, None, None, None, None


class Rope(Function):
    """Rotary embedding of x (..., T, D) at positions offset..offset+T-1."""

    @staticmethod
    def forward(ctx, x, offset, base):
        ctx.args = (offset, base)
        return ctx.device.rope(ctx.device.contiguous(x), offset, base)

    @staticmethod
    def backward(ctx, g):
        return ctx.device.rope_backward(ctx.device.contiguous(g), *ctx.args), None, None


def _split_heads(q, k, v, heads, kv_heads):
    """Projections laid out (B, T, heads * D) -> strided head views (B, heads, T, D); a
    packed self-attention projection (B, T, (Hq + 2 Hkv) * D) comes as q with k = v = None."""
    b, tq = q.shape[0], q.shape[1]
    if k is None:
        d = q.shape[2] // (heads + 2 * kv_heads)
        x = q.reshape(b, tq, heads + 2 * kv_heads, d).transpose(0, 2, 1, 3)
        return x[:, :heads], x[:, heads:heads + kv_heads], x[:, heads + kv_heads:]
    return (q.reshape(b, tq, heads, -1).transpose(0, 2, 1, 3),
            k.reshape(b, k.shape[1], kv_heads, -1).transpose(0, 2, 1, 3),
            v.reshape(b, v.shape[1], kv_heads, -1).transpose(0, 2, 1, 3))


def _rope_slots(dev, x, offset, start, base):
    """RoPE of x (B, H, T, D) in cache slots offset..offset+T-1. With per-row starts (a
    ragged batch), row b's slot s is at position s - start[b] and its slots before
    start[b] (padding, never attended) are left as they are. (RoPE scores depend only on
    position differences, so the shift changes rounding only: it gives each row the
    rotations of its true positions, as when it is decoded alone.)"""
    if start is None:
        return dev.rope(dev.contiguous(x), offset, base)
    t = x.shape[2]
    rows = []
    for i, s in enumerate(int(v) for v in start):
        row = x[i:i + 1]
        j0 = min(max(s - offset, 0), t)
        if j0 < t:
            rotated = dev.rope(dev.contiguous(row[:, :, j0:]), offset + j0 - s, base)
            row = rotated if j0 == 0 else dev.concatenate([row[:, :, :j0], rotated], 2)
        rows.append(row)
    return dev.concatenate(rows, 0)


class DecodeAttention(Function):
    """The head-level part of attention against a KV cache (incremental decoding), on
    projections laid out as MultiHeadAttention's: split the heads, RoPE on queries and
    keys at the cache's slots (when rope_base is not None), append the keys and values to
    the cache, attend with the queries of the last Tq cache positions to every cached
    position (causal, bottom-right aligned, the device's decode_attention on the cache in
    place), merge the heads -> (B, Tq, Hq * Dv). One op per layer and step, as a decode
    step is a few microseconds per op. The cache is written in place, so no gradient can
    flow through it: this op is for inference (under no_grad)."""

    @staticmethod
    def forward(ctx, q, k, v, cache, heads, kv_heads, attn_mask, rope_base):
        dev = ctx.device
        b, tq = q.shape[0], q.shape[1]
        qh, kh, vh = _split_heads(q, k, v, heads, kv_heads)
        if rope_base is not None:
            qh = _rope_slots(dev, qh, cache.offset, cache.start, rope_base)
            kh = _rope_slots(dev, kh, cache.offset, cache.start, rope_base)
        length = cache.append(kh, vh)
        out = dev.decode_attention(dev.contiguous(qh), cache.k, cache.v, length, attn_mask, None)
        return dev.contiguous(out.transpose(0, 2, 1, 3)).reshape(b, tq, -1)

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("attention against a KV cache is inference-only (the cache is overwritten in place); "
                           "run cached decoding under dlkern.no_grad(), or call without a cache to train")


class MultiHeadAttention(Function):
    """The head-level part of multi-head attention on projections laid out (B, T, heads * D):
    split the heads, RoPE on queries and keys (when rope_offset is not None), attention,
    merge the heads -> (B, Tq, Hq * Dv). Packed self-attention passes one
    (B, T, (Hq + 2 Hkv) * D) projection as q with k = v = None, so its gradient is one
    array. The attention itself is ScaledDotProductAttention's forward and backward."""

    @staticmethod
    def forward(ctx, q, k, v, heads, kv_heads, attn_mask, is_causal, scale, dropout_p, seed, rope_offset,
                rope_base):
        dev = ctx.device
        b, tq = q.shape[0], q.shape[1]
        qh, kh, vh = _split_heads(q, k, v, heads, kv_heads)
        if rope_offset is not None:
            qh, kh = dev.rope(dev.contiguous(qh), rope_offset, rope_base), dev.rope(dev.contiguous(kh), rope_offset,
                                                                                   rope_base)
        ctx.packed, ctx.rope = k is None, (rope_offset, rope_base)
        out = ScaledDotProductAttention.forward(ctx, qh, kh, vh, attn_mask, is_causal, scale, dropout_p, seed)
        return dev.contiguous(out.transpose(0, 2, 1, 3)).reshape(b, tq, -1)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        b, tq = g.shape[0], g.shape[1]
        heads = ctx.saved[0].shape[1]
        go = g.reshape(b, tq, heads, -1).transpose(0, 2, 1, 3)
        dq, dk, dv = ScaledDotProductAttention.backward(ctx, go)[:3]
        offset, base = ctx.rope
        if offset is not None:
            dq, dk = dev.rope_backward(dq, offset, base), dev.rope_backward(dk, offset, base)
        rest = (None,) * 9
        if ctx.packed:
            kv = dk.shape[1]
            dx = dev.empty((b, tq, heads + 2 * kv, dq.shape[3]), dtype=dq.dtype)
            dx[:, :, :heads] = dq.transpose(0, 2, 1, 3)
            dx[:, :, heads:heads + kv] = dk.transpose(0, 2, 1, 3)
            dx[:, :, heads + kv:] = dv.transpose(0, 2, 1, 3)
            return (dx.reshape(b, tq, -1), None, None) + rest

        def merge(d):
            return dev.contiguous(d.transpose(0, 2, 1, 3)).reshape(d.shape[0], d.shape[2], -1)
        return (merge(dq), merge(dk), merge(dv)) + rest
