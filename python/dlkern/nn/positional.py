"""Positional encodings: sinusoidal (fixed table), learned (an Embedding over
positions), rotary (RoPE, on queries and keys) and ALiBi (a per-head linear bias on the
scores). Each takes the position ``offset`` of its first entry, so incremental decoding
with a KV cache sees the same positions as a full forward."""

import math

import numpy as np

from ..dtypes import as_dtype as _as_dtype
from ..tensor import Tensor
from . import functional as F
from .layers import Embedding
from .module import Module


def _check_span(op, offset, length, max_len):
    if offset < 0 or offset + length > max_len:
        raise ValueError(f"{op}: positions {offset}..{offset + length - 1} are outside the table of "
                         f"max_len={max_len}")


def sinusoidal_table(max_len, d_model, base=10000.0, dtype=np.float32):
    """(max_len, d_model): sin(p / base^(2i/d)) at column 2i, cos at 2i+1 (Vaswani et al.)."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    freq = base ** (-np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    table = np.zeros((max_len, d_model))
    table[:, 0::2] = np.sin(pos * freq)
    table[:, 1::2] = np.cos(pos * freq[: d_model // 2])
    return table.astype(_as_dtype(dtype) or np.float32)


class SinusoidalPositionalEncoding(Module):
    """x (..., T, d_model) -> x + table[offset:offset+T], or x + table[positions] for
    positions (B, T) ints (each row's own positions). The table is a fixed,
    non-persistent buffer (not in the state_dict)."""

    def __init__(self, d_model, max_len=5000, base=10000.0, dtype=None):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", Tensor(sinusoidal_table(max_len, d_model, base, dtype)), persistent=False)

    def encoding(self, length, offset=0):
        _check_span(type(self).__name__, offset, length, self.max_len)
        return self.pe.data[offset:offset + length]

    def forward(self, x, offset=0, positions=None):
        if positions is not None:
            return x + _gather_rows(self.pe, positions, self.max_len, type(self).__name__)
        return x + self.encoding(x.shape[-2], offset).astype(x.dtype, copy=False)

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"


def _gather_rows(table, positions, max_len, op):
    """table[positions] for a (B, T) host int array, on the table's device."""
    positions = np.asarray(positions)
    if positions.size and (positions.min() < 0 or positions.max() >= max_len):
        raise ValueError(f"{op}: positions {positions.min()}..{positions.max()} are outside the table of "
                         f"max_len={max_len}")
    return F.embedding(positions.astype(np.int64, copy=False), table)


class LearnedPositionalEmbedding(Embedding):
    """An Embedding over positions 0..max_len-1: forward(x, offset) -> x + weight[offset:offset+T]
    for x (..., T, d_model), or x + weight[positions] for positions (B, T) ints; the
    gradient reaches the rows used."""

    def __init__(self, max_len, d_model, dtype=None):
        super().__init__(max_len, d_model, dtype=dtype)

    def forward(self, x, offset=0, positions=None):
        if positions is not None:
            return x + _gather_rows(self.weight, positions, self.num_embeddings, type(self).__name__)
        t = x.shape[-2]
        _check_span(type(self).__name__, offset, t, self.num_embeddings)
        # rows offset..offset+t-1 as a slice (checked above): one op, no index array to bounds-check
        return x + self.weight[offset:offset + t]


class RotaryEmbedding(Module):
    """RoPE (Su et al.) on queries and keys (batch, heads, T, head_dim) at positions
    offset..offset+T-1 (dlkern.nn.functional.rope: "rotate half" pairs (i, i + D/2))."""

    def __init__(self, head_dim, base=10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RotaryEmbedding: head_dim must be even, got {head_dim}")
        self.head_dim, self.base = head_dim, base

    def forward(self, q, k, offset=0):
        return F.rope(q, offset, self.base), F.rope(k, offset, self.base)

    def extra_repr(self):
        return f"head_dim={self.head_dim}, base={self.base}"


def alibi_slopes(num_heads):
    """Per-head slopes of ALiBi (Press et al.): the geometric sequence 2^(-8/n), 2^(-16/n), ...
    for n heads a power of two; otherwise those of the nearest smaller power of two m,
    followed by every other slope of 2m heads."""
    def geometric(n):
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if num_heads < 1:
        raise ValueError(f"alibi_slopes: num_heads must be positive, got {num_heads}")
    m = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = geometric(m)
    if m < num_heads:
        slopes += geometric(2 * m)[0::2][: num_heads - m]
    return np.array(slopes, dtype=np.float64)


def alibi_bias(num_heads, q_len, k_len, offset=None, causal=False, dtype=np.float32, slopes=None):
    """Additive float mask (num_heads, q_len, k_len): -slope_h * (i_pos - j) for query
    position i_pos = offset + i and key position j. offset defaults to k_len - q_len (the
    queries are the last positions, as with a KV cache). causal=True also puts -inf on
    keys after the query. Use it as attn_mask (it broadcasts over the batch)."""
    if offset is None:
        offset = k_len - q_len
    slopes = alibi_slopes(num_heads) if slopes is None else np.asarray(slopes, np.float64)
    dist = (np.arange(k_len)[None, :] - np.arange(offset, offset + q_len)[:, None]).astype(np.float64)
    bias = slopes[:, None, None] * dist[None]
    if causal:
        bias = np.where(dist[None] > 0, -np.inf, bias)
    return bias.astype(_as_dtype(dtype) or np.float32)


class ALiBi(Module):
    """Module form of alibi_bias for num_heads heads: forward(q_len, k_len, offset=None)."""

    def __init__(self, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.slopes = alibi_slopes(num_heads)

    def forward(self, q_len, k_len, offset=None, causal=False, dtype=np.float32):
        return alibi_bias(self.num_heads, q_len, k_len, offset, causal, dtype, self.slopes)

    def extra_repr(self):
        return f"num_heads={self.num_heads}"
