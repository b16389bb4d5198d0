"""TransformerDecoder and models.GPT against an independent float64 forward in NumPy.

The other transformer tests check shapes, gradients' presence and PyTorch parity (which
skips without torch); a forward that silently ignored its masks or causal flag passed
them. Here every weight is drawn at random (layer norms included), copied into a small
NumPy model written from the papers' formulas (embedding, scaled dot-product attention
with its masks, layer norm, MLP; no dlkern op), and the outputs must agree to float64
rounding. Each case is also run without its masks: the masks must change the output,
so a case cannot pass because its mask happens to be a no-op.
"""

import math

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.models import GPT

RTOL, ATOL = 1e-9, 1e-11  # float64 on both sides: only summation order differs


def _randomize(module, rng, scale=0.3):
    """Every parameter to fresh random values (layer norm weights around 1), in place."""
    for p in module.parameters():
        p.data[...] = scale * rng.standard_normal(p.shape)
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data += 1.0


def _a(p):
    return None if p is None else np.array(p.data, dtype=np.float64)


# ----------------------------------------------------------------- the NumPy reference
def ref_linear(x, w, b=None):
    return x @ w.T + (0.0 if b is None else b)


def ref_layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + (0.0 if b is None else b)


def ref_gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def ref_rope(x, base=10000.0):
    """Rotate-half RoPE of x (N, H, T, D) at positions 0..T-1."""
    d = x.shape[-1]
    theta = base ** (-np.arange(d // 2) * 2.0 / d)
    ang = np.arange(x.shape[-2])[:, None] * theta[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def ref_attention(xq, xkv, w, b, wo, bo, heads, kv_heads, causal=False, blocked=None, additive=None, rope=False):
    """Multi-head attention, batch first: xq (N, T, E), xkv (N, S, E). w, b: the packed
    in-projection (q rows, then k, then v). blocked (broadcast to (N, H, T, S)) True =
    may not attend; additive is added to the scores; causal blocks keys after the query."""
    n, t, e = xq.shape
    s_len = xkv.shape[1]
    hd = e // heads
    kvd = kv_heads * hd
    bq, bk, bv = (None, None, None) if b is None else (b[:e], b[e:e + kvd], b[e + kvd:])
    q = ref_linear(xq, w[:e], bq).reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
    k = ref_linear(xkv, w[e:e + kvd], bk).reshape(n, s_len, kv_heads, hd).transpose(0, 2, 1, 3)
    v = ref_linear(xkv, w[e + kvd:], bv).reshape(n, s_len, kv_heads, hd).transpose(0, 2, 1, 3)
    if rope:
        q, k = ref_rope(q), ref_rope(k)
    group = heads // kv_heads           # query head i reads key/value head i // group
    k, v = k[:, np.arange(heads) // group], v[:, np.arange(heads) // group]
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    if additive is not None:
        scores = scores + additive
    if blocked is not None:
        scores = np.where(blocked, -np.inf, scores)
    if causal:
        scores = np.where(np.arange(s_len)[None, :] > np.arange(t)[:, None], -np.inf, scores)
    scores = scores - scores.max(-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(-1, keepdims=True)
    out = (p @ v).transpose(0, 2, 1, 3).reshape(n, t, e)
    return ref_linear(out, wo, bo)


def ref_decoder_layer(layer, x, mem, heads, tgt_causal, tgt_blocked, mem_blocked, mem_additive, tgt_additive):
    """One TransformerDecoderLayer (ReLU, dropout off), post-LN or pre-LN."""
    sa, ca = layer.self_attn, layer.multihead_attn

    def self_attn(h):
        return ref_attention(h, h, _a(sa.in_proj_weight), _a(sa.in_proj_bias), _a(sa.out_proj.weight),
                             _a(sa.out_proj.bias), heads, heads, tgt_causal, tgt_blocked, tgt_additive)

    def cross_attn(h):
        return ref_attention(h, mem, _a(ca.in_proj_weight), _a(ca.in_proj_bias), _a(ca.out_proj.weight),
                             _a(ca.out_proj.bias), heads, heads, False, mem_blocked, mem_additive)

    def ff(h):
        hidden = np.maximum(ref_linear(h, _a(layer.linear1.weight), _a(layer.linear1.bias)), 0.0)
        return ref_linear(hidden, _a(layer.linear2.weight), _a(layer.linear2.bias))

    def norm(m, h):
        return ref_layer_norm(h, _a(m.weight), _a(m.bias), m.eps)

    if layer.norm_first:
        x = x + self_attn(norm(layer.norm1, x))
        x = x + cross_attn(norm(layer.norm2, x))
        return x + ff(norm(layer.norm3, x))
    x = norm(layer.norm1, x + self_attn(x))
    x = norm(layer.norm2, x + cross_attn(x))
    return norm(layer.norm3, x + ff(x))


# ----------------------------------------------------------------- TransformerDecoder
T, S, N, E, H = 5, 6, 3, 16, 4


def _decoder_masks(rng):
    """Masks in PyTorch's convention (bool True = masked out, float added)."""
    causal = np.triu(np.ones((T, T), bool), 1)
    tgt_pad = np.zeros((N, T), bool)
    tgt_pad[1, 3:] = True               # row 1's last two target positions are padding
    mem_pad = np.zeros((N, S), bool)
    mem_pad[0, 4:] = True               # row 0 sees only the first four memory positions
    mem_pad[2, 0] = True
    mem_float = rng.standard_normal((T, S))
    return causal, tgt_pad, mem_pad, mem_float


# (kwargs for the decoder, what the reference applies): every mask kind, alone and together
_CASES = {
    "causal_flag": lambda m: (dict(tgt_is_causal=True), dict(tgt_causal=True)),
    "causal_mask": lambda m: (dict(tgt_mask=m[0]), dict(tgt_blocked=m[0])),
    "tgt_padding": lambda m: (dict(tgt_key_padding_mask=m[1]), dict(tgt_blocked=m[1][:, None, None, :])),
    "memory_padding": lambda m: (dict(memory_key_padding_mask=m[2]), dict(mem_blocked=m[2][:, None, None, :])),
    "memory_float_mask": lambda m: (dict(memory_mask=m[3]), dict(mem_additive=m[3])),
    "tgt_float_mask": lambda m: (dict(tgt_mask=m[3][:, :T]), dict(tgt_additive=m[3][:, :T])),
    "all": lambda m: (dict(tgt_is_causal=True, tgt_key_padding_mask=m[1], memory_key_padding_mask=m[2],
                           memory_mask=m[3]),
                      dict(tgt_causal=True, tgt_blocked=m[1][:, None, None, :], mem_blocked=m[2][:, None, None, :],
                           mem_additive=m[3])),
}


def _decoder(norm_first, batch_first, rng):
    layer = nn.TransformerDecoderLayer(E, H, dim_feedforward=24, dropout=0.0, batch_first=batch_first,
                                       norm_first=norm_first, dtype=np.float64)
    dec = nn.TransformerDecoder(layer, num_layers=2, norm=nn.LayerNorm(E, dtype=np.float64))
    _randomize(dec, rng)
    return dec.eval()


def _decoder_reference(dec, tgt, mem, **masks):
    args = dict(tgt_causal=False, tgt_blocked=None, mem_blocked=None, mem_additive=None, tgt_additive=None)
    args.update(masks)
    x = tgt
    for layer in dec.layers:
        x = ref_decoder_layer(layer, x, mem, H, **args)
    return ref_layer_norm(x, _a(dec.norm.weight), _a(dec.norm.bias), dec.norm.eps)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("case", sorted(_CASES))
def test_transformer_decoder_matches_numpy(case, norm_first, batch_first):
    rng = np.random.default_rng(12)
    dec = _decoder(norm_first, batch_first, rng)
    tgt, mem = rng.standard_normal((N, T, E)), rng.standard_normal((N, S, E))
    kwargs, ref_masks = _CASES[case](_decoder_masks(rng))

    def run(**kw):
        def layout(a):
            return a if batch_first else a.transpose(1, 0, 2)

        with dlkern.no_grad():
            out = dec(dlkern.tensor(layout(tgt)), dlkern.tensor(layout(mem)), **kw)
        return layout(np.asarray(out.data))

    want = _decoder_reference(dec, tgt, mem, **ref_masks)
    np.testing.assert_allclose(run(**kwargs), want, rtol=RTOL, atol=ATOL)
    # The case's masks matter: without them both sides give another answer.
    unmasked = _decoder_reference(dec, tgt, mem)
    assert np.abs(unmasked - want).max() > 1e-3
    np.testing.assert_allclose(run(), unmasked, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------- models.GPT
def ref_gpt_logits(model, idx):
    """GPT forward: token + position embeddings, pre-LN blocks of causal self-attention and
    a tanh-GELU MLP, final LayerNorm, logits against the (tied) output head."""
    t = idx.shape[1]
    h, kv = model.n_head, model.n_kv_head
    x = _a(model.wte.weight)[idx]
    if model.pos_encoding == "learned":
        x = x + _a(model.wpe.weight)[:t]
    elif model.pos_encoding == "sinusoidal":
        d = model.d_model
        pos = np.arange(t)[:, None]
        freq = 10000.0 ** (-np.arange(0, d, 2) / d)
        table = np.zeros((t, d))
        table[:, 0::2], table[:, 1::2] = np.sin(pos * freq), np.cos(pos * freq)
        x = x + table
    additive = None
    if model.pos_encoding == "alibi":   # heads a power of two: slopes 2^(-8(i+1)/h)
        slopes = 2.0 ** (-8.0 * np.arange(1, h + 1) / h)
        additive = -slopes[:, None, None] * (np.arange(t)[:, None] - np.arange(t)[None, :])
    for blk in model.blocks:
        a, fc, proj = blk.attn, blk.mlp[0], blk.mlp[2]
        y = ref_layer_norm(x, _a(blk.ln_1.weight), _a(blk.ln_1.bias), blk.ln_1.eps)
        x = x + ref_attention(y, y, _a(a.in_proj_weight), _a(a.in_proj_bias), _a(a.out_proj.weight),
                              _a(a.out_proj.bias), h, kv, causal=True, additive=additive,
                              rope=model.pos_encoding == "rope")
        y = ref_layer_norm(x, _a(blk.ln_2.weight), _a(blk.ln_2.bias), blk.ln_2.eps)
        x = x + ref_linear(ref_gelu_tanh(ref_linear(y, _a(fc.weight), _a(fc.bias))), _a(proj.weight), _a(proj.bias))
    x = ref_layer_norm(x, _a(model.ln_f.weight), _a(model.ln_f.bias), model.ln_f.eps)
    return x @ _a(model.lm_head.weight).T


VOCAB = 13


def _gpt(pos_encoding, n_kv_head=None, tie_weights=True):
    model = GPT(VOCAB, block_size=12, n_layer=2, n_head=4, d_model=16, n_kv_head=n_kv_head,
                pos_encoding=pos_encoding, tie_weights=tie_weights, dtype=np.float64)
    _randomize(model, np.random.default_rng(5))
    return model.eval()


_GPT_CASES = [("learned", None, True), ("learned", 2, False), ("rope", None, True), ("rope", 1, True),
              ("sinusoidal", None, True), ("alibi", 2, True)]


@pytest.mark.parametrize("pos_encoding,n_kv_head,tie", _GPT_CASES)
def test_gpt_forward_matches_numpy(pos_encoding, n_kv_head, tie):
    model = _gpt(pos_encoding, n_kv_head, tie)
    idx = np.random.default_rng(1).integers(0, VOCAB, (3, 9))
    with dlkern.no_grad():
        got = np.asarray(model(idx).data)
    want = ref_gpt_logits(model, idx)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    # causality: a later token does not change earlier logits (in the reference too)
    idx2 = idx.copy()
    idx2[:, -1] = (idx2[:, -1] + 1) % VOCAB
    with dlkern.no_grad():
        got2 = np.asarray(model(idx2).data)
    np.testing.assert_allclose(got2[:, :-1], want[:, :-1], rtol=RTOL, atol=ATOL)
    assert np.abs(got2[:, -1] - want[:, -1]).max() > 1e-6


def _ref_greedy(model, prompt, steps):
    seq = list(prompt)
    for _ in range(steps):
        seq.append(int(np.argmax(ref_gpt_logits(model, np.array([seq]))[0, -1])))
    return seq


@pytest.mark.parametrize("pos_encoding,n_kv_head", [("learned", None), ("rope", 2), ("alibi", None)])
def test_gpt_generate_greedy_matches_numpy(pos_encoding, n_kv_head):
    """The KV-cache inference path (arrays, ops directly) against the reference, with
    right-padded prompts of different lengths in one batch."""
    model = _gpt(pos_encoding, n_kv_head)
    prompts = np.random.default_rng(2).integers(0, VOCAB, (2, 5))
    lengths = np.array([5, 3])
    out = model.generate(prompts, 4, temperature=0.0, prompt_lengths=lengths)
    for row, n in enumerate(lengths):
        assert out[row, :n + 4].tolist() == _ref_greedy(model, prompts[row, :n].tolist(), 4)
