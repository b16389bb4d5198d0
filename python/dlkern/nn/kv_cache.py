"""KVCache: one attention layer's keys and values for incremental decoding."""

import numpy as np

from ..device import array_namespace, device as _get_device
from ..dtypes import as_dtype as _as_dtype
from ..tensor import Tensor


class KVCache:
    """Preallocated key/value storage of one layer: ``k`` and ``v`` are arrays on `device`
    (batch_size, num_kv_heads, max_seq_len, head_dim); positions 0..offset-1 hold data.

    ``append`` writes new keys/values at ``offset`` (the device's ``kv_cache_append``)
    and advances it; ``attend`` runs the device's ``decode_attention`` on the storage in
    place (no copy or slice). Not a Module: it holds no parameters and is never saved.

    ``start`` (None, or a (batch_size,) int array) serves a ragged batch whose sequences
    are right-aligned in the slots: row b's slot s holds position s - start[b], and its
    slots before start[b] (padding) are never attended (MultiheadAttention reads it).
    """

    def __init__(self, batch_size, num_kv_heads, max_seq_len, head_dim, dtype=np.float32, device="cpu"):
        for name, n in (("batch_size", batch_size), ("num_kv_heads", num_kv_heads),
                        ("max_seq_len", max_seq_len), ("head_dim", head_dim)):
            if int(n) != n or n < 1:
                raise ValueError(f"KVCache: {name} must be a positive int, got {n!r}")
        dtype = _as_dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"KVCache: dtype must be floating point, got {dtype}")
        shape = (int(batch_size), int(num_kv_heads), int(max_seq_len), int(head_dim))
        self.device = _get_device(device)
        self.k = self.device.zeros(shape, dtype)
        self.v = self.device.zeros(shape, dtype)
        self.offset = 0
        self.start = None

    @property
    def shape(self):
        return self.k.shape

    @property
    def max_seq_len(self):
        return self.k.shape[2]

    @property
    def dtype(self):
        return self.k.dtype

    def __len__(self):
        return self.offset

    def _check(self, name, x):
        if isinstance(x, Tensor):
            if x.device != self.device:
                raise RuntimeError(f"KVCache.append: {name} is on {x.device} but the cache is on {self.device}")
            x = x.data
        try:
            where = array_namespace(x)
        except TypeError:  # host data that is not an array yet
            x = np.asarray(x)
            where = array_namespace(x)
        if where is not self.device and where != self.device:
            raise TypeError(f"KVCache.append: {name} is on {where} but the cache is on {self.device}")
        a = x
        b, h, _, d = self.k.shape
        if a.ndim != 4 or a.shape[0] != b or a.shape[1] != h or a.shape[3] != d:
            raise ValueError(f"KVCache.append: {name} has shape {tuple(a.shape)}, expected ({b}, {h}, T, {d})")
        if a.dtype != self.k.dtype:
            raise TypeError(f"KVCache.append: {name} has dtype {a.dtype}, the cache holds {self.k.dtype}")
        return a  # the append kernel reads strided views in place

    def append(self, k_new, v_new):
        """Write k_new, v_new (batch, kv_heads, T, head_dim) at positions offset..offset+T-1;
        returns the new offset. Overflow is a ValueError naming the cache size."""
        k_new, v_new = self._check("k_new", k_new), self._check("v_new", v_new)
        if k_new.shape != v_new.shape:
            raise ValueError(f"KVCache.append: k_new {k_new.shape} and v_new {v_new.shape} differ")
        t = k_new.shape[2]
        if self.offset + t > self.max_seq_len:
            raise ValueError(f"KVCache overflow: cannot append {t} positions at offset {self.offset} to a cache of "
                             f"max_seq_len={self.max_seq_len}; make the cache larger or trim it")
        self.device.kv_cache_append(self.k, k_new, self.offset)
        self.offset = int(self.device.kv_cache_append(self.v, v_new, self.offset))
        return self.offset

    def attend(self, q, attn_mask=None, scale=None):
        """decode_attention of q (batch, heads, Tq, head_dim), the queries of the last Tq
        cached positions, against the cache (causal); attn_mask broadcasts to
        (batch, heads, Tq, offset)."""
        return self.device.decode_attention(q, self.k, self.v, self.offset, attn_mask, scale)

    def padding_mask(self, length):
        """(batch, length) host bool array, True on the slots before each row's start (the
        key_padding_mask of attention against the first `length` slots), or None."""
        if self.start is None:
            return None
        return np.arange(length)[None, :] < np.asarray(self.start)[:, None]

    def reset(self):
        """Forget every position and the per-row starts (the storage is kept and
        overwritten later)."""
        self.offset = 0
        self.start = None

    def trim(self, length):
        """Keep positions 0..length-1 and drop the rest."""
        if not 0 <= length <= self.offset:
            raise ValueError(f"KVCache.trim: length must be in [0, {self.offset}] (the current length), got {length}")
        self.offset = int(length)

    def keys(self):
        """View of the cached keys (batch, kv_heads, offset, head_dim)."""
        return self.k[:, :, :self.offset]

    def values(self):
        return self.v[:, :, :self.offset]

    def __repr__(self):
        b, h, s, d = self.k.shape
        return (f"KVCache(batch_size={b}, num_kv_heads={h}, max_seq_len={s}, head_dim={d}, "
                f"dtype={self.k.dtype}, offset={self.offset}, device='{self.device}')")

