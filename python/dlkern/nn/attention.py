"""MultiheadAttention (torch.nn.MultiheadAttention's parameters, call and masks) with
grouped-query heads, optional RoPE and incremental decoding against a KVCache."""

import math

import numpy as np

from .. import ops
from ..device import array_namespace, device as _get_device
from ..functions import attention as _FA
from ..dtypes import as_dtype as _as_dtype
from ..tensor import Tensor
from . import functional as F
from . import init
from .kv_cache import KVCache
from .layers import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["MultiheadAttention", "merge_masks"]


def merge_masks(attn_mask, key_padding_mask, batch, heads, tgt_len, src_len, dtype, op="MultiheadAttention",
                device=None):
    """PyTorch's MultiheadAttention masks -> one scaled_dot_product_attention mask
    broadcastable to (batch, heads, tgt_len, src_len), or None.

    attn_mask: (tgt_len, src_len), (batch * heads, tgt_len, src_len) or anything that
    broadcasts to (batch, heads, tgt_len, src_len); key_padding_mask: (batch, src_len).
    Bool True means "do not attend" (PyTorch's convention, the opposite of SDPA's); float
    is added to the scores. Two bool masks stay bool; otherwise the result is float with
    -inf where a bool mask was True. device: where the result goes (host masks are copied
    to a GPU device); default: where the masks are.
    """
    full = (batch, heads, tgt_len, src_len)
    masks = []
    if attn_mask is not None:
        m = F._array(attn_mask)
        if m.ndim == 3 and m.shape == (batch * heads, tgt_len, src_len):
            m = m.reshape(full)
        elif m.ndim == 2 and m.shape == (tgt_len, src_len):
            pass
        elif m.ndim != 4:
            raise ValueError(f"{op}: attn_mask has shape {tuple(m.shape)}, expected ({tgt_len}, {src_len}) or "
                             f"({batch * heads}, {tgt_len}, {src_len}) (batch * num_heads, target length, source "
                             f"length)")
        masks.append(F._attention_mask(m, dtype, full, op, "attn_mask", device=device or array_namespace(m)))
    if key_padding_mask is not None:
        m = F._array(key_padding_mask)
        if m.shape != (batch, src_len):
            raise ValueError(f"{op}: key_padding_mask has shape {tuple(m.shape)}, expected ({batch}, {src_len}) "
                             f"(batch, source length)")
        masks.append(F._attention_mask(m[:, None, None, :], dtype, full, op, "key_padding_mask",
                                       device=device or array_namespace(m)))
    if not masks:
        return None
    dev = array_namespace(masks[0])
    if any(array_namespace(m) is not dev for m in masks):
        raise RuntimeError(f"{op}: attn_mask and key_padding_mask are on different devices")
    if all(m.dtype == np.bool_ for m in masks):
        out = ~masks[0]
        for m in masks[1:]:
            out = out & ~m
        return dev.contiguous(out)
    out = 0
    for m in masks:
        out = out + (dev.where(m, dev.full((), -np.inf, dtype), 0) if m.dtype == np.bool_ else m)
    return dev.contiguous(out)


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention with grouped-query attention, RoPE and a KV cache.

    Parameters as PyTorch's (so its state_dict loads): ``in_proj_weight``
    ((embed_dim + 2 * kv_dim), embed_dim) and ``in_proj_bias`` when kdim == vdim ==
    embed_dim, else ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight``; ``out_proj``
    (Linear). ``kv_dim = num_kv_heads * head_dim``: num_kv_heads < num_heads gives
    multi-query / grouped-query attention. ``rope=True`` rotates queries and keys (RoPE,
    "rotate half", positions from 0 or from the cache's offset). add_bias_kv and
    add_zero_attn are not supported.

    forward(query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None,
    average_attn_weights=True, is_causal=False, cache=None) -> (attn_output, weights).
    Shapes (L, N, E) or, with batch_first, (N, L, E); unbatched (L, E) works too. Masks use
    PyTorch's convention (bool True = masked out, float added); is_causal applies the
    causal mask itself (combined with attn_mask if one is given). need_weights=True also
    returns the attention weights, computed naively in NumPy from the same projections
    (no gradient, before dropout), averaged over heads unless average_attn_weights=False;
    the default False returns None as the second item.

    cache (a KVCache of (N, num_kv_heads, max_seq, head_dim)): self-attention decoding.
    The new keys/values are appended to the cache and the queries attend causally to every
    cached position (ops.decode_attention on the cache in place); inference only (under
    no_grad). Masks then cover the whole cache: key_padding_mask (N, cache length).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, num_kv_heads=None, rope=False, rope_base=10000.0,
                 device=None, dtype=None):
        super().__init__()
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not supported")
        _get_device(device)
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(f"MultiheadAttention: num_heads ({num_heads}) must be divisible by num_kv_heads "
                             f"({num_kv_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        if rope and self.head_dim % 2:
            raise ValueError(f"MultiheadAttention: rope needs an even head_dim, got {self.head_dim}")
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.dropout, self.batch_first = dropout, batch_first
        self.rope, self.rope_base = bool(rope), rope_base
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        dt = _as_dtype(dtype) or np.float32
        kv_dim = num_kv_heads * self.head_dim
        self.kv_dim = kv_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((embed_dim + 2 * kv_dim, embed_dim), dt))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(np.empty((embed_dim, embed_dim), dt))
            self.k_proj_weight = Parameter(np.empty((kv_dim, self.kdim), dt))
            self.v_proj_weight = Parameter(np.empty((kv_dim, self.vdim), dt))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(np.empty(embed_dim + 2 * kv_dim, dt))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dt)
        self.reset_parameters()

    def reset_parameters(self):
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _weights(self):
        """(w_q, w_k, w_v) and (b_q, b_k, b_v): views of the packed parameters or the separate ones."""
        e, kv = self.embed_dim, self.kv_dim
        b = self.in_proj_bias
        bs = (None,) * 3 if b is None else (b[:e], b[e:e + kv], b[e + kv:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            return (w[:e], w[e:e + kv], w[e + kv:]), bs
        return (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight), bs

    def _check_inputs(self, query, key, value):
        name = type(self).__name__
        args = (("query", query, self.embed_dim),)
        if query is key and key is value and self._qkv_same_embed_dim:
            single = True  # self-attention: key and value are the query, checked once (each decode step)
        else:
            single = False
            args += (("key", key, self.kdim), ("value", value, self.vdim))
        for arg, t, dim in args:
            if not isinstance(t, Tensor):
                raise TypeError(f"{name}: {arg} must be a Tensor, got {type(t).__name__}")
            if t.ndim not in (2, 3) or t.shape[-1] != dim:
                raise ValueError(f"{name}: {arg} has shape {tuple(t.shape)}, expected (L, N, {dim}), (N, L, {dim}) "
                                 f"with batch_first, or unbatched (L, {dim})")
            if t.ndim != query.ndim:
                raise ValueError(f"{name}: query {tuple(query.shape)} and {arg} {tuple(t.shape)} must both be "
                                 f"batched or both unbatched")
        if single:
            return
        bdim = 0 if (self.batch_first or query.ndim == 2) else 1
        if query.ndim == 3 and not (query.shape[bdim] == key.shape[bdim] == value.shape[bdim]):
            raise ValueError(f"{name}: query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                             f"{tuple(value.shape)} have different batch sizes")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"{name}: key {tuple(key.shape)} and value {tuple(value.shape)} must have the same "
                             f"source length")

    def count_macs(self, args, kwargs, output):
        """Multiply-adds of one call (dlkern.utils.summary): the q/k/v projections
        (T * E * E + 2 * S * E_kv * kdim per sample) plus QK^T and AV, 2 * T * S * head_dim
        per head (4 * T^2 * head_dim FLOPs for self-attention; a causal mask is not
        discounted). out_proj is a child Linear and counts there."""
        query = args[0]
        key = args[1] if len(args) > 1 else kwargs.get("key", query)
        batched = query.ndim == 3
        seq_axis = 1 if batched and self.batch_first else 0
        n = query.shape[1 - seq_axis] if batched else 1
        t = query.shape[seq_axis]
        cache = kwargs.get("cache", args[8] if len(args) > 8 else None)
        if cache is not None:
            s, kdim = cache.offset, self.embed_dim  # (after the call: the new positions included)
        else:
            s, kdim = key.shape[seq_axis], self.kdim
        projections = n * (t * self.embed_dim * self.embed_dim + 2 * s * self.kv_dim * kdim)
        return projections + n * self.num_heads * 2 * t * s * self.head_dim

    def forward(self, query, key, value, key_padding_mask=None, need_weights=False, attn_mask=None,
                average_attn_weights=True, is_causal=False, cache=None):
        self._check_inputs(query, key, value)
        unbatched = query.ndim == 2

        packed = self._qkv_same_embed_dim and query is key and key is value
        q_in, k_in, v_in = self._to_batch_first(query, unbatched), None, None
        if not packed:
            k_in = q_in if key is query else self._to_batch_first(key, unbatched)
            v_in = k_in if value is key else self._to_batch_first(value, unbatched)
        if unbatched and key_padding_mask is not None:
            key_padding_mask = F._array(key_padding_mask)[None]
        n, tgt_len = q_in.shape[0], q_in.shape[1]
        if cache is not None:
            out = self._cached(q_in, k_in, v_in, packed, cache, key_padding_mask, attn_mask)
        else:
            src_len = tgt_len if packed else k_in.shape[1]
            mask = merge_masks(attn_mask, key_padding_mask, n, self.num_heads, tgt_len, src_len, query.dtype,
                               device=query.device)
            dropout_p = self.dropout if self.training else 0.0
            out = _FA.MultiHeadAttention.apply(*self._project(q_in, k_in, v_in, packed), self.num_heads, self.num_kv_heads, mask, bool(is_causal), None,
                                               float(dropout_p), F._attention_seed(dropout_p),
                                               0 if self.rope else None, float(self.rope_base))
        out = self.out_proj(out)
        weights = None
        if need_weights:
            weights = self._attention_weights(q_in, q_in if packed else k_in, attn_mask, key_padding_mask,
                                              is_causal, average_attn_weights, cache)
            if unbatched:
                weights = weights[0]
        if unbatched:
            out = out[0]
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights

    def _to_batch_first(self, t, unbatched):
        if unbatched:
            return t.unsqueeze(0)
        return t if self.batch_first else t.transpose(0, 1)

    def _project(self, q_in, k_in, v_in, packed):
        """The q, k, v projections (N, T, heads * head_dim); packed self-attention is one
        projection (N, T, (heads + 2 * kv_heads) * head_dim) with None for k and v."""
        if packed:
            return F.linear(q_in, self.in_proj_weight, self.in_proj_bias), None, None
        (wq, wk, wv), (bq, bk, bv) = self._weights()
        return F.linear(q_in, wq, bq), F.linear(k_in, wk, bk), F.linear(v_in, wv, bv)

    def _cached(self, q_in, k_in, v_in, packed, cache, key_padding_mask, attn_mask):
        if not isinstance(cache, KVCache):
            raise TypeError(f"MultiheadAttention: cache must be a KVCache, got {type(cache).__name__}")
        h, kv = self.num_heads, self.num_kv_heads
        offset = cache.offset
        n, tgt_len = q_in.shape[0], q_in.shape[1]
        if cache.start is not None:
            if key_padding_mask is not None:
                raise ValueError("MultiheadAttention: a cache with per-row starts masks its padding itself; "
                                 "pass no key_padding_mask")
            key_padding_mask = cache.padding_mask(offset + tgt_len)
        mask = None  # (the common decode step: no masks, no call)
        if attn_mask is not None or key_padding_mask is not None:
            mask = merge_masks(attn_mask, key_padding_mask, n, h, tgt_len, offset + tgt_len, q_in.dtype,
                               device=q_in.device)
        proj = self._project(q_in, k_in, v_in, packed)
        return _FA.DecodeAttention.apply(*proj, cache, h, kv, mask, self.rope_base if self.rope else None)

    def _attention_weights(self, q_in, k_in, attn_mask, key_padding_mask, is_causal, average, cache):
        """softmax(q k^T / sqrt(d) + masks) from the same projections, in NumPy (no gradient)."""
        (wq, wk, _), (bq, bk, _) = self._weights()
        n, tgt_len = q_in.shape[0], q_in.shape[1]

        def heads(x, w, b, h, offset):
            y = x.data @ w.data.T + (0 if b is None else b.data)
            y = np.ascontiguousarray(y.reshape(n, x.shape[1], h, -1).transpose(0, 2, 1, 3))
            return ops.rope(y, offset, self.rope_base) if self.rope else y

        start = 0 if cache is None else cache.offset - tgt_len
        q = heads(q_in, wq, bq, self.num_heads, start)
        if cache is None:
            k = heads(k_in, wk, bk, self.num_kv_heads, 0)
        else:
            k = cache.keys()
        k = np.repeat(k, self.num_heads // self.num_kv_heads, axis=1)
        src_len = k.shape[2]
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(self.head_dim)
        mask = merge_masks(attn_mask, key_padding_mask, n, self.num_heads, tgt_len, src_len, s.dtype)
        if mask is not None:
            s = np.where(mask, s, -np.inf) if mask.dtype == np.bool_ else s + mask
        if is_causal or cache is not None:
            keep = np.arange(src_len)[None, :] <= np.arange(start, start + tgt_len)[:, None]
            s = np.where(keep, s, -np.inf)
        s = s - np.max(s, axis=-1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(-1, keepdims=True)
        return Tensor(p.mean(1) if average else p)

    def extra_repr(self):
        s = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.num_kv_heads != self.num_heads:
            s += f", num_kv_heads={self.num_kv_heads}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.rope:
            s += ", rope=True"
        return s
