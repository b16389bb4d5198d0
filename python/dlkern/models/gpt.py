"""A GPT (decoder-only transformer language model) in the style of GPT-2, with a KV
cache for generation.

Token embeddings plus learned (default), sinusoidal, rotary (RoPE) or ALiBi positions;
n_layer pre-LN blocks of causal self-attention (grouped-query with n_kv_head) and a GELU
MLP (4 * d_model, tanh GELU as GPT-2); a final LayerNorm; an output head whose weight is
the token embedding's (tie_weights). Initialised as GPT-2: normal(0, 0.02) weights, zero
biases, residual output projections scaled by 1/sqrt(2 * n_layer).

``generate`` prefills the prompts in one forward and then decodes one token per step
against the per-layer KVCaches: the same forward as training, on any device, under
no_grad; only each step's last logits come to the host to be sampled.
"""

import math

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..device import array_namespace
from ..dtypes import as_dtype as _as_dtype
from ..generator import RNG as _RNG
from ..tensor import Tensor
from ..nn import functional as F

__all__ = ["GPT"]

_POS_ENCODINGS = ("learned", "rope", "sinusoidal", "alibi")


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, d_model, n_head, n_kv_head, dropout, bias, rope, dtype):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model, bias=bias, dtype=dtype)
        self.attn = nn.MultiheadAttention(d_model, n_head, dropout=dropout, bias=bias, batch_first=True,
                                          num_kv_heads=n_kv_head, rope=rope, dtype=dtype)
        self.ln_2 = nn.LayerNorm(d_model, bias=bias, dtype=dtype)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model, bias=bias, dtype=dtype),
                                 nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * d_model, d_model, bias=bias, dtype=dtype))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, cache=None, attn_mask=None):
        h = self.ln_1(x)
        a = self.attn(h, h, h, attn_mask=attn_mask, is_causal=cache is None, cache=cache)[0]
        x = x + self.dropout(a)
        return x + self.dropout(self.mlp(self.ln_2(x)))


class GPT(nn.Module):
    """GPT(vocab_size, block_size=128, n_layer=6, n_head=6, d_model=192, n_kv_head=None,
    pos_encoding="learned"|"rope"|"sinusoidal"|"alibi", dropout=0.0, bias=True,
    tie_weights=True, dtype=np.float32).

    ``gpt(idx)``: logits (B, T, vocab) for int tokens idx (B, T), T <= block_size.
    ``gpt(idx, cache=caches)``: logits of the new positions, appended to the caches
    (``make_cache``), inference only; caches with per-row starts (KVCache.start) hold
    right-aligned sequences of a ragged batch, each row at its own positions.
    ``GPT(**gpt.config)`` rebuilds the architecture.
    ``gpt.checkpoint_activations = True``: in training mode each block runs under
    dlkern.utils.checkpoint (its activations recomputed in the backward; a run-time
    setting, not part of the config).
    """

    checkpoint_activations = False

    def __init__(self, vocab_size, block_size=128, n_layer=6, n_head=6, d_model=192, n_kv_head=None,
                 pos_encoding="learned", dropout=0.0, bias=True, tie_weights=True, dtype=np.float32):
        super().__init__()
        if pos_encoding not in _POS_ENCODINGS:
            raise ValueError(f"GPT: pos_encoding must be one of {_POS_ENCODINGS}, got {pos_encoding!r}")
        if d_model % n_head:
            raise ValueError(f"GPT: d_model ({d_model}) must be divisible by n_head ({n_head})")
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        if n_kv_head < 1 or n_head % n_kv_head:
            raise ValueError(f"GPT: n_head ({n_head}) must be divisible by n_kv_head ({n_kv_head})")
        dt = _as_dtype(dtype) or np.dtype(np.float32)
        self.config = dict(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                           d_model=d_model, n_kv_head=None if n_kv_head == n_head else n_kv_head,
                           pos_encoding=pos_encoding, dropout=dropout, bias=bias, tie_weights=tie_weights,
                           dtype=dt.name)
        self.vocab_size, self.block_size, self.n_layer = vocab_size, block_size, n_layer
        self.n_head, self.n_kv_head, self.d_model = n_head, n_kv_head, d_model
        self.head_dim = d_model // n_head
        self.pos_encoding = pos_encoding
        self.wte = nn.Embedding(vocab_size, d_model, dtype=dt)
        if pos_encoding == "learned":
            self.wpe = nn.LearnedPositionalEmbedding(block_size, d_model, dtype=dt)
        elif pos_encoding == "sinusoidal":
            self.wpe = nn.SinusoidalPositionalEncoding(d_model, block_size, dtype=dt)
        else:
            self.wpe = None
        self.alibi_slopes = nn.alibi_slopes(n_head) if pos_encoding == "alibi" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_head, n_kv_head, dropout, bias, pos_encoding == "rope", dt)
                                    for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model, bias=bias, dtype=dt)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False, dtype=dt)
        if tie_weights:
            self.lm_head.weight = self.wte.weight
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.MultiheadAttention):
                nn.init.normal_(m.in_proj_weight, 0.0, 0.02)
                if m.in_proj_bias is not None:
                    nn.init.zeros_(m.in_proj_bias)
        residual_std = 0.02 / math.sqrt(2 * self.n_layer)
        for blk in self.blocks:
            nn.init.normal_(blk.attn.out_proj.weight, 0.0, residual_std)
            nn.init.normal_(blk.mlp[2].weight, 0.0, residual_std)

    # ------------------------------------------------------------------ Tensor forward
    def _tokens(self, idx):
        a = idx.data if isinstance(idx, Tensor) else np.asarray(idx)
        if a.ndim != 2 or a.dtype.kind not in "iu":
            raise ValueError(f"GPT: idx must be an int array (batch, seq), got shape {a.shape} dtype {a.dtype}")
        # (tokens on a GPU are bounds-checked by the embedding's gather kernel instead)
        bounds = array_namespace(a).host_bounds(a)
        if bounds is not None and (bounds[0] < 0 or bounds[1] >= self.vocab_size):
            raise ValueError(f"GPT: token ids must be in [0, {self.vocab_size}), got min {bounds[0]} "
                             f"max {bounds[1]}")
        return a

    def _check_positions(self, t, offset):
        if t > self.block_size:
            raise ValueError(f"GPT: sequence length {t} exceeds block_size={self.block_size}")
        if self.wpe is not None and offset + t > self.block_size:
            raise ValueError(f"GPT: positions {offset}..{offset + t - 1} exceed block_size={self.block_size} "
                             f"({self.pos_encoding} positions)")

    def _alibi(self, t, length, dtype):
        if self.alibi_slopes is None:
            return None
        return nn.alibi_bias(self.n_head, t, length, slopes=self.alibi_slopes, dtype=dtype)[None]

    def forward(self, idx, cache=None):
        return self._forward(self._tokens(idx), cache)

    def count_macs(self, args, kwargs, output):
        """Multiply-adds of the GPT's own computation in one call (dlkern.utils.summary): the
        output head (F.linear on the tied embedding, not a call of lm_head), T * d_model *
        vocab per sample; its blocks count for themselves."""
        return math.prod(output.shape[:-1]) * self.d_model * self.vocab_size

    def _forward(self, tokens, cache):
        # The forward on checked host (or device) int tokens (B, T); generate's sampled
        # tokens are in range by construction and come here without a second check.
        t = tokens.shape[1]
        if cache is not None and len(cache) != self.n_layer:
            raise ValueError(f"GPT: cache must be a list of {self.n_layer} KVCache (one per layer), got {len(cache)}")
        offset = 0 if cache is None else cache[0].offset
        self._check_positions(t, offset)
        x = self.wte(tokens)
        if self.wpe is not None:
            start = None if cache is None else cache[0].start
            if start is None:
                x = self.wpe(x, offset)
            else:  # a ragged batch: row b's slot s is at position s - start[b] (padding at 0)
                slots = np.arange(offset, offset + t)[None, :] - np.asarray(start)[:, None]
                x = self.wpe(x, positions=np.maximum(slots, 0))
        x = self.drop(x)
        mask = self._alibi(t, offset + t, x.dtype)
        if self.checkpoint_activations and cache is None and self.training:
            # ---- robust training (issue 15): each block's activations recomputed in the backward
            from ..utils.checkpoint import checkpoint
            for blk in self.blocks:
                x = checkpoint(blk, x, None, mask)
        else:
            for i, blk in enumerate(self.blocks):
                x = blk(x, None if cache is None else cache[i], mask)
        return F.linear(self.ln_f(x), self.lm_head.weight)

    def make_cache(self, batch_size, max_seq_len=None):
        """One KVCache per layer, (batch_size, n_kv_head, max_seq_len or block_size, head_dim)."""
        size = self.block_size if max_seq_len is None else max_seq_len
        return [nn.KVCache(batch_size, self.n_kv_head, size, self.head_dim, self.wte.weight.dtype,
                           device=self.wte.weight.device) for _ in range(self.n_layer)]

    # ------------------------------------------------------------------ generation
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, rng=None, prompt_lengths=None):
        """Continue each prompt by max_new_tokens tokens -> int64 array (B, T0 + max_new_tokens).

        idx (B, T0) int tokens. prompt_lengths (B,) (optional): row b's prompt is
        idx[b, :prompt_lengths[b]] (right padding); its result is out[b, :len_b + max_new_tokens]
        (the same tokens as generating that prompt alone), the rest of the row is 0.
        temperature 0 is greedy (argmax); otherwise logits / temperature are sampled, from
        the top_k most likely tokens if top_k is given. rng: a numpy Generator or seed
        (default: dlkern's generator, so dlkern.manual_seed makes it reproducible).

        Prefills every prompt in one forward, then one forward per new token against the
        KV caches, under no_grad, on the model's device; only each step's last logits
        (B, vocab) come to the host to be sampled. With learned or sinusoidal positions the
        total T0 + max_new_tokens must fit in block_size (ValueError; no cropping); RoPE
        and ALiBi models may run past it.
        """
        device = self.wte.weight.device
        prompts = self._tokens(idx.cpu() if isinstance(idx, Tensor) else idx)
        b, t0 = prompts.shape
        rng = _generate_args("GPT", t0, max_new_tokens, temperature, top_k, rng)
        total = t0 + max_new_tokens
        if self.wpe is not None and total > self.block_size:
            raise ValueError(f"GPT.generate: prompt length {t0} + max_new_tokens {max_new_tokens} = {total} exceeds "
                             f"block_size={self.block_size} ({self.pos_encoding} positions); shorten the prompt")
        if t0 > self.block_size:
            raise ValueError(f"GPT.generate: prompt length {t0} exceeds block_size={self.block_size}")
        start = None
        lengths = np.full(b, t0)
        tokens = prompts
        if prompt_lengths is not None:
            lengths = np.asarray(prompt_lengths, dtype=np.int64).reshape(-1)
            if lengths.shape != (b,) or lengths.min() < 1 or lengths.max() > t0:
                raise ValueError(f"GPT.generate: prompt_lengths must hold {b} values in [1, {t0}], got "
                                 f"{np.asarray(prompt_lengths).tolist()}")
            if (lengths != t0).any():
                # Right-align the prompts in the cache slots; the pad slots are never attended.
                start = t0 - lengths
                cols = np.arange(t0)[None, :] - start[:, None]
                tokens = np.where(cols >= 0, np.take_along_axis(prompts, np.maximum(cols, 0), 1), 0)
        out = np.zeros((b, total), np.int64)
        out[:, :t0] = prompts
        if max_new_tokens == 0:
            return out
        caches = self.make_cache(b, total)
        for cache in caches:
            cache.start = start
        rows = np.arange(b)
        with no_grad():
            # host tokens go in as they are: the embedding copies them to the device
            logits = self(tokens, cache=caches)
            for step in range(max_new_tokens):
                nxt = _sample(device.to_host(logits.data[:, -1]), temperature, top_k, rng)
                out[rows, lengths + step] = nxt
                if step + 1 < max_new_tokens:
                    logits = self._forward(nxt[:, None].astype(np.int64), caches)
        return out


def _generate_args(model, t0, max_new_tokens, temperature, top_k, rng):
    """Check the arguments every model's generate takes (ValueError naming
    `model`.generate) and return the numpy Generator that rng names (None: dlkern's)."""
    if max_new_tokens < 0:
        raise ValueError(f"{model}.generate: max_new_tokens must be >= 0, got {max_new_tokens}")
    if t0 < 1:
        raise ValueError(f"{model}.generate: the prompt must hold at least one token")
    if temperature < 0:
        raise ValueError(f"{model}.generate: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"{model}.generate: top_k must be >= 1, got {top_k}")
    if rng is None:
        return _RNG.generator
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _sample(logits, temperature, top_k, rng):
    """Next token per row of logits (B, vocab): argmax at temperature 0, else a draw."""
    if temperature == 0:
        return np.argmax(logits, axis=-1)
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = np.partition(z, -top_k, axis=-1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    z -= z.max(-1, keepdims=True)
    p = np.exp(z)
    cdf = np.cumsum(p, axis=-1)
    u = rng.random(z.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((cdf < u).sum(-1), z.shape[-1] - 1)
