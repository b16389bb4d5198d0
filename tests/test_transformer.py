"""Attention and transformer layers: F.scaled_dot_product_attention and F.rope against
NumPy written here, float64 finite-difference gradients, KVCache, positional encodings,
MultiheadAttention and the encoder/decoder layers against NumPy computations from their
weights, clear errors, and (when torch is installed) PyTorch as an extra oracle."""

import math

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
import dlkern.nn.functional as F
from dlkern.functions.attention import ScaledDotProductAttention
from helpers import check_grads


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ------------------------------------------------------------------ NumPy references

def softmax_rows(s):
    """Softmax over the last axis; a row with every entry -inf gives 0 (the ops contract)."""
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    tot = e.sum(-1, keepdims=True)
    return np.where(tot > 0, e / np.where(tot > 0, tot, 1.0), 0.0)


def sdpa_ref(q, k, v, mask=None, causal=False, scale=None, causal_offset=0):
    """Naive attention in float64: query head h reads KV head h // (Hq // Hkv). mask: bool
    (True = attend) or float (added). causal keeps key j <= i + causal_offset."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    g = q.shape[-3] // k.shape[-3]
    k, v = np.repeat(k, g, axis=-3), np.repeat(v, g, axis=-3)
    s = q @ np.swapaxes(k, -1, -2) * (1 / math.sqrt(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        mask = np.asarray(mask)
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    if causal:
        tq, tk = s.shape[-2:]
        s = np.where(np.arange(tk)[None, :] <= np.arange(tq)[:, None] + causal_offset, s, -np.inf)
    return softmax_rows(s) @ v


def rope_ref(x, offset=0, base=10000.0):
    """Rotate-half RoPE: pair (i, i + D/2) of position p rotated by p * base^(-2i/D)."""
    x = np.asarray(x, np.float64)
    t, d = x.shape[-2:]
    ang = np.arange(offset, offset + t)[:, None] * base ** (-2.0 * np.arange(d // 2) / d)[None, :]
    a, b = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([a * np.cos(ang) - b * np.sin(ang), b * np.cos(ang) + a * np.sin(ang)], -1)


def layer_norm_ref(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + (0 if b is None else b)


def mha_ref(m, query, key, value, key_padding_mask=None, attn_mask=None, is_causal=False):
    """MultiheadAttention from its weights: inputs (N, L, E) batch-first float64 arrays;
    masks in PyTorch's convention (bool True = ignore, float added)."""
    e, h, kvh = m.embed_dim, m.num_heads, m.num_kv_heads
    hd, kv = e // h, kvh * (e // h)
    if m.in_proj_weight is not None:
        w = m.in_proj_weight.data.astype(np.float64)
        wq, wk, wv = w[:e], w[e:e + kv], w[e + kv:]
    else:
        wq, wk, wv = (p.data.astype(np.float64) for p in (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight))
    b = np.zeros(e + 2 * kv) if m.in_proj_bias is None else m.in_proj_bias.data.astype(np.float64)
    n, tq, ts = query.shape[0], query.shape[1], key.shape[1]
    q = (query @ wq.T + b[:e]).reshape(n, tq, h, hd).transpose(0, 2, 1, 3)
    k = (key @ wk.T + b[e:e + kv]).reshape(n, ts, kvh, hd).transpose(0, 2, 1, 3)
    v = (value @ wv.T + b[e + kv:]).reshape(n, ts, kvh, hd).transpose(0, 2, 1, 3)
    if m.rope:
        q, k = rope_ref(q), rope_ref(k)
    add = np.zeros((n, h, tq, ts))
    if attn_mask is not None:
        am = np.asarray(attn_mask)
        am = am.reshape(n, h, tq, ts) if am.ndim == 3 else am
        add = add + (np.where(am, -np.inf, 0.0) if am.dtype == bool else am)
    if key_padding_mask is not None:
        add = add + np.where(np.asarray(key_padding_mask), -np.inf, 0.0)[:, None, None, :]
    o = sdpa_ref(q, k, v, add, is_causal)
    o = o.transpose(0, 2, 1, 3).reshape(n, tq, e)
    out = o @ m.out_proj.weight.data.astype(np.float64).T
    return out if m.out_proj.bias is None else out + m.out_proj.bias.data


# ------------------------------------------------------------------ scaled_dot_product_attention

SDPA_SHAPES = [  # (B, Hq, Hkv, Tq, Tk, D, Dv)
    (1, 1, 1, 1, 1, 1, 1),
    (2, 4, 2, 5, 7, 8, 8),
    (1, 6, 1, 3, 3, 4, 5),
    (3, 3, 3, 7, 5, 6, 6),
]


@pytest.mark.parametrize("shape", SDPA_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mask_kind", ["none", "bool2d", "float4d", "bool_heads"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_sdpa_matches_numpy(rng, shape, mask_kind, causal, dtype):
    b, hq, hkv, tq, tk, d, dv = shape
    q = rng.standard_normal((b, hq, tq, d)).astype(dtype)
    k = rng.standard_normal((b, hkv, tk, d)).astype(dtype)
    v = rng.standard_normal((b, hkv, tk, dv)).astype(dtype)
    mask = {"none": None,
            "bool2d": rng.random((tq, tk)) > 0.3,
            "float4d": rng.standard_normal((b, 1, tq, tk)).astype(dtype),
            "bool_heads": rng.random((hq, 1, tk)) > 0.5}[mask_kind]
    out = F.scaled_dot_product_attention(dlkern.tensor(q), dlkern.tensor(k), dlkern.tensor(v), attn_mask=mask,
                                         is_causal=causal, enable_gqa=hq != hkv)
    assert out.shape == (b, hq, tq, dv) and out.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.data, sdpa_ref(q, k, v, mask, causal), rtol=tol, atol=tol)


def test_sdpa_scale_3d_and_extra_batch_dims(rng):
    q, k, v = (rng.standard_normal((2, 3, 4, 5, 6)) for _ in range(3))
    mask = rng.standard_normal((4, 5, 5))
    out = F.scaled_dot_product_attention(dlkern.tensor(q), dlkern.tensor(k), dlkern.tensor(v), attn_mask=mask,
                                         scale=0.3)
    np.testing.assert_allclose(out.data, sdpa_ref(q, k, v, mask, scale=0.3), rtol=1e-12, atol=1e-12)
    out3 = F.scaled_dot_product_attention(dlkern.tensor(q[0, 0]), dlkern.tensor(k[0, 0]), dlkern.tensor(v[0, 0]),
                                          is_causal=True)
    assert out3.shape == (4, 5, 6)
    np.testing.assert_allclose(out3.data, sdpa_ref(q[0, 0], k[0, 0], v[0, 0], causal=True), rtol=1e-12, atol=1e-12)


def test_sdpa_mask_tensor_and_fully_masked_row(rng):
    q, k, v = (rng.standard_normal((1, 2, 3, 4)) for _ in range(3))
    mask = np.ones((3, 3), bool)
    mask[1] = False
    out = F.scaled_dot_product_attention(dlkern.tensor(q), dlkern.tensor(k), dlkern.tensor(v),
                                         attn_mask=dlkern.tensor(mask))
    np.testing.assert_array_equal(out.data[:, :, 1], 0.0)
    np.testing.assert_allclose(out.data, sdpa_ref(q, k, v, mask), rtol=1e-12, atol=1e-12)


def _grad_fn(fn, n_inputs):
    """forward/backward pair for check_grads over Tensor function fn(*tensors)."""
    def forward(*arrays):
        return fn(*(dlkern.tensor(a) for a in arrays)).data

    def backward(w, *arrays):
        ts = [dlkern.tensor(a, requires_grad=True) for a in arrays]
        fn(*ts).backward(w)
        return tuple(t.grad.data for t in ts[:n_inputs])
    return forward, backward


@pytest.mark.parametrize("case", ["plain", "gqa_causal_mask", "cross_float_mask"])
def test_sdpa_gradients(rng, case):
    if case == "plain":
        shapes, kwargs = [(1, 2, 3, 4), (1, 2, 3, 4), (1, 2, 3, 4)], {}
    elif case == "gqa_causal_mask":
        shapes = [(2, 4, 4, 3), (2, 2, 4, 3), (2, 2, 4, 2)]
        kwargs = dict(is_causal=True, enable_gqa=True, attn_mask=rng.random((4, 4)) > 0.2)
    else:
        shapes = [(1, 3, 2, 4), (1, 3, 5, 4), (1, 3, 5, 3)]
        kwargs = dict(attn_mask=rng.standard_normal((1, 3, 2, 5)), scale=0.7)
    inputs = [rng.standard_normal(s) for s in shapes]
    forward, backward = _grad_fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **kwargs), 3)
    check_grads(forward, backward, inputs, rng)


def test_sdpa_dropout_gradient_and_seed(rng):
    """With a fixed seed the dropout mask is a constant, so the gradient is checkable; the
    functional form draws the seed from dlkern's generator."""
    inputs = [rng.standard_normal((1, 2, 4, 3)) for _ in range(3)]
    forward, backward = _grad_fn(
        lambda q, k, v: ScaledDotProductAttention.apply(q, k, v, None, True, None, 0.4, 1234), 3)
    check_grads(forward, backward, inputs, rng)
    q, k, v = (dlkern.tensor(a) for a in inputs)
    no_drop = F.scaled_dot_product_attention(q, k, v).data
    dlkern.manual_seed(3)
    a = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).data
    dlkern.manual_seed(3)
    b = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5).data
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, no_drop)


def test_sdpa_errors(rng):
    t = lambda *s: dlkern.tensor(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    with pytest.raises(ValueError, match="scaled_dot_product_attention: head_dim mismatch"):
        F.scaled_dot_product_attention(t(1, 2, 3, 4), t(1, 2, 3, 5), t(1, 2, 3, 5))
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(t(1, 4, 3, 4), t(1, 2, 3, 4), t(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"query heads \(6\) must be divisible by key/value heads \(4\)"):
        F.scaled_dot_product_attention(t(1, 6, 3, 4), t(1, 4, 3, 4), t(1, 4, 3, 4), enable_gqa=True)
    with pytest.raises(ValueError, match="scaled_dot_product_attention: attn_mask has shape \\(3, 4\\)"):
        F.scaled_dot_product_attention(t(1, 2, 3, 4), t(1, 2, 3, 4), t(1, 2, 3, 4), attn_mask=np.ones((3, 4), bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or floating"):
        F.scaled_dot_product_attention(t(1, 2, 3, 4), t(1, 2, 3, 4), t(1, 2, 3, 4), attn_mask=np.ones((3, 3), int))
    with pytest.raises(ValueError, match="batch dims of query .* do not broadcast"):
        F.scaled_dot_product_attention(t(3, 2, 3, 4), t(2, 2, 3, 4), t(2, 2, 3, 4))


# ------------------------------------------------------------------ RoPE and positions

def test_rope_matches_formula_offset_and_gradient(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    full = F.rope(dlkern.tensor(x)).data
    np.testing.assert_allclose(full, rope_ref(x), rtol=1e-12, atol=1e-12)
    part = F.rope(dlkern.tensor(x[:, :, 4:7]), offset=4).data
    np.testing.assert_allclose(part, full[:, :, 4:7], rtol=1e-12, atol=1e-12)
    rot = nn.RotaryEmbedding(8, base=500.0)
    q2, k2 = rot(dlkern.tensor(x), dlkern.tensor(x[:, :, :2]), offset=7)
    np.testing.assert_allclose(q2.data, rope_ref(x, 7, 500.0), rtol=1e-12, atol=1e-12)
    forward, backward = _grad_fn(lambda a: F.rope(a, offset=3), 1)
    check_grads(forward, backward, [rng.standard_normal((1, 2, 3, 4))], rng)
    with pytest.raises(ValueError, match="even"):
        F.rope(dlkern.tensor(np.zeros((2, 3))))


def test_alibi_slopes_and_bias():
    np.testing.assert_allclose(nn.alibi_slopes(8), 2.0 ** -np.arange(1, 9))
    np.testing.assert_allclose(nn.alibi_slopes(4), 2.0 ** (-2.0 * np.arange(1, 5)))
    # 6 heads: the 4-head slopes, then every other slope of 8 heads
    np.testing.assert_allclose(nn.alibi_slopes(6), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])
    slopes = nn.alibi_slopes(6)
    bias = nn.alibi_bias(6, 2, 7)          # the last 2 of 7 positions (a cache at offset 5)
    assert bias.shape == (6, 2, 7) and bias.dtype == np.float32
    for h in range(6):
        for i in range(2):
            for j in range(7):
                assert bias[h, i, j] == np.float32(-slopes[h] * ((5 + i) - j))
    causal = nn.alibi_bias(6, 3, 3, causal=True, dtype=np.float64)
    assert np.isneginf(causal[:, 0, 1:]).all() and np.isfinite(causal[:, 2]).all()
    np.testing.assert_array_equal(nn.ALiBi(6)(2, 7), bias)


def test_sinusoidal_and_learned_positions(rng):
    pe = nn.SinusoidalPositionalEncoding(6, max_len=10, dtype=np.float64)
    for p in range(10):
        for i in range(3):
            assert pe.pe.data[p, 2 * i] == pytest.approx(math.sin(p / 10000 ** (2 * i / 6)))
            assert pe.pe.data[p, 2 * i + 1] == pytest.approx(math.cos(p / 10000 ** (2 * i / 6)))
    x = rng.standard_normal((2, 3, 6))
    np.testing.assert_allclose(pe(dlkern.tensor(x), offset=4).data, x + pe.pe.data[4:7])
    assert "pe" not in pe.state_dict()
    with pytest.raises(ValueError, match="max_len=10"):
        pe(dlkern.tensor(x), offset=8)
    lp = nn.LearnedPositionalEmbedding(10, 6, dtype=np.float64)
    xt = dlkern.tensor(x, requires_grad=True)
    y = lp(xt, offset=2)
    np.testing.assert_allclose(y.data, x + lp.weight.data[2:5])
    y.sum().backward()
    np.testing.assert_array_equal(lp.weight.grad.data[2:5], 2.0)
    np.testing.assert_array_equal(lp.weight.grad.data[5:], 0.0)


# ------------------------------------------------------------------ KVCache

def test_kv_cache_append_reset_trim_overflow(rng):
    c = nn.KVCache(2, 3, 6, 4)
    assert c.k.shape == c.v.shape == (2, 3, 6, 4) and c.k.dtype == np.float32 and c.offset == 0
    k1, v1 = (rng.standard_normal((2, 3, 4, 4)).astype(np.float32) for _ in range(2))
    assert c.append(k1, v1) == 4
    k2, v2 = (rng.standard_normal((2, 3, 2, 4)).astype(np.float32) for _ in range(2))
    c.append(dlkern.tensor(k2), dlkern.tensor(v2))
    np.testing.assert_array_equal(c.keys(), np.concatenate([k1, k2], 2))
    np.testing.assert_array_equal(c.values(), np.concatenate([v1, v2], 2))
    assert len(c) == 6
    with pytest.raises(ValueError, match="max_seq_len=6"):
        c.append(k2[:, :, :1], v2[:, :, :1])
    assert c.offset == 6
    c.trim(3)
    assert c.offset == 3
    c.append(k2, v2)
    np.testing.assert_array_equal(c.keys()[:, :, 3:], k2)
    with pytest.raises(ValueError, match="trim"):
        c.trim(7)
    c.reset()
    assert c.offset == 0 and c.keys().shape == (2, 3, 0, 4)
    with pytest.raises(ValueError, match=r"expected \(2, 3, T, 4\)"):
        c.append(np.zeros((2, 2, 1, 4), np.float32), np.zeros((2, 2, 1, 4), np.float32))
    with pytest.raises(TypeError, match="float64"):
        c.append(np.zeros((2, 3, 1, 4)), np.zeros((2, 3, 1, 4)))


def test_kv_cache_attend_is_causal_over_prefix(rng):
    c = nn.KVCache(1, 2, 8, 4, dtype=np.float64)
    k, v = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((1, 2, 5, 4))
    c.append(k, v)
    q = rng.standard_normal((1, 4, 2, 4))       # queries of positions 3 and 4, 4 heads on 2 KV heads
    np.testing.assert_allclose(c.attend(q), sdpa_ref(q, k, v, causal=True, causal_offset=3), rtol=1e-12,
                               atol=1e-12)


# ------------------------------------------------------------------ MultiheadAttention

def _as_batch_first(x, batch_first):
    return x if batch_first else x.transpose(1, 0, 2)


@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("kind", ["self", "self_gqa_rope", "cross_kdim"])
def test_mha_matches_numpy(rng, batch_first, kind):
    n, tq, ts, e = 2, 5, 4, 12
    kw = {"self": {}, "self_gqa_rope": dict(num_kv_heads=1, rope=True),
          "cross_kdim": dict(kdim=7, vdim=5)}[kind]
    m = nn.MultiheadAttention(e, 3, batch_first=batch_first, dtype=np.float64, **kw)
    if m.in_proj_bias is not None:
        m.in_proj_bias.data[...] = rng.standard_normal(m.in_proj_bias.shape)
    q = rng.standard_normal((n, tq, e))
    if kind == "cross_kdim":
        k, v = rng.standard_normal((n, ts, 7)), rng.standard_normal((n, ts, 5))
        kpm = np.array([[False, True, False, False], [False, False, False, True]])
        am = rng.standard_normal((tq, ts))
    else:
        k = v = q
        kpm = np.array([[False] * 4 + [True], [False] * 5])
        am = rng.random((n * 3, tq, tq)) > 0.3
        am[:, :, 0] = False
    qt = dlkern.tensor(_as_batch_first(q, batch_first))
    kt = qt if k is q else dlkern.tensor(_as_batch_first(k, batch_first))
    vt = kt if v is k else dlkern.tensor(_as_batch_first(v, batch_first))
    for args in [{}, dict(key_padding_mask=kpm), dict(attn_mask=am), dict(key_padding_mask=kpm, attn_mask=am),
                 dict(is_causal=True)]:
        if kind == "cross_kdim" and "is_causal" in args:
            continue
        out, w = m(qt, kt, vt, **args)
        assert w is None
        ref = mha_ref(m, q, k, v, **args)
        np.testing.assert_allclose(out.data, _as_batch_first(ref, batch_first), rtol=1e-10, atol=1e-12,
                                   err_msg=str(args.keys()))


def test_mha_unbatched_need_weights_and_float32(rng):
    m = nn.MultiheadAttention(8, 2, dtype=np.float64)
    x = rng.standard_normal((5, 8))
    out, w = m(dlkern.tensor(x), dlkern.tensor(x), dlkern.tensor(x), need_weights=True)
    np.testing.assert_allclose(out.data, mha_ref(m, x[None], x[None], x[None])[0], rtol=1e-10, atol=1e-12)
    assert w.shape == (5, 5)
    np.testing.assert_allclose(w.data.sum(-1), 1.0)
    _, w4 = m(dlkern.tensor(x[:, None]), dlkern.tensor(x[:, None]), dlkern.tensor(x[:, None]), need_weights=True,
              average_attn_weights=False, is_causal=True)
    assert w4.shape == (1, 2, 5, 5) and np.all(np.triu(w4.data[0, 0], 1) == 0)
    m32 = nn.MultiheadAttention(8, 2, batch_first=True)
    x32 = dlkern.randn(2, 3, 8)
    assert m32(x32, x32, x32)[0].dtype == np.float32


def test_mha_gradients(rng):
    m = nn.MultiheadAttention(8, 2, batch_first=True, num_kv_heads=1, rope=True, dtype=np.float64)
    m.in_proj_bias.data[...] = rng.standard_normal(m.in_proj_bias.shape)
    kpm = np.array([[False, False, True], [False, False, False]])
    params = [p for p in m.parameters()]
    x = rng.standard_normal((2, 3, 8))

    def forward(x, *ps):
        return m(dlkern.tensor(x), dlkern.tensor(x), dlkern.tensor(x), key_padding_mask=kpm, is_causal=True)[0].data

    def backward(w, x, *ps):
        m.zero_grad()
        xt = dlkern.tensor(x, requires_grad=True)
        m(xt, xt, xt, key_padding_mask=kpm, is_causal=True)[0].backward(w)
        return (xt.grad.data,) + tuple(p.grad.data for p in params)
    check_grads(forward, backward, [x] + [p.data for p in params], rng)
    # cross-attention with separate projections
    c = nn.MultiheadAttention(4, 2, kdim=3, vdim=5, dtype=np.float64)
    q, k, v = rng.standard_normal((2, 1, 4)), rng.standard_normal((3, 1, 3)), rng.standard_normal((3, 1, 5))
    forward, backward = _grad_fn(lambda q, k, v: c(q, k, v)[0], 3)
    check_grads(forward, backward, [q, k, v], rng)


def test_mha_cache_decoding_matches_full(rng):
    m = nn.MultiheadAttention(8, 4, batch_first=True, num_kv_heads=2, rope=True)
    x = dlkern.randn(2, 6, 8)
    full = m(x, x, x, is_causal=True)[0].data
    cache = nn.KVCache(2, 2, 10, 2)
    with dlkern.no_grad():
        first = m(x[:, :4], x[:, :4], x[:, :4], cache=cache)[0].data
        rest = [m(x[:, i:i + 1], x[:, i:i + 1], x[:, i:i + 1], cache=cache)[0].data for i in (4, 5)]
    np.testing.assert_allclose(np.concatenate([first] + rest, 1), full, rtol=1e-5, atol=1e-6)
    # a key padding mask covers the whole cache
    kpm = np.zeros((2, 6), bool)
    kpm[1, [0, 4]] = True
    full_kpm = m(x, x, x, is_causal=True, key_padding_mask=kpm)[0].data
    cache.reset()
    with dlkern.no_grad():
        parts = [m(x[:, :4], x[:, :4], x[:, :4], cache=cache, key_padding_mask=kpm[:, :4])[0].data]
        parts += [m(x[:, i:i + 1], x[:, i:i + 1], x[:, i:i + 1], cache=cache, key_padding_mask=kpm[:, :i + 1])[0].data
                  for i in (4, 5)]
        with pytest.raises(ValueError, match="key_padding_mask"):
            m(x[:, :1], x[:, :1], x[:, :1], cache=cache, key_padding_mask=kpm)
    assert cache.offset == 6
    np.testing.assert_allclose(np.concatenate(parts, 1), full_kpm, rtol=1e-5, atol=1e-6)
    # key is query but value differs: the cache path keeps them apart
    v = dlkern.randn(2, 6, 8)
    full = m(x, x, v, is_causal=True)[0].data
    cache.reset()
    with dlkern.no_grad():
        got = m(x, x, v, cache=cache)[0].data
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-6)
    xg = dlkern.randn(2, 1, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        m(xg, xg, xg, cache=cache)[0].sum().backward()


def test_mha_errors():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(10, 3)
    with pytest.raises(ValueError, match=r"num_heads \(4\) must be divisible by num_kv_heads \(3\)"):
        nn.MultiheadAttention(8, 4, num_kv_heads=3)
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    x = dlkern.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"MultiheadAttention: attn_mask has shape \(4, 4\)"):
        m(x, x, x, attn_mask=np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(3, 3\), expected \(2, 3\)"):
        m(x, x, x, key_padding_mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match=r"query has shape \(2, 3, 5\)"):
        m(dlkern.randn(2, 3, 5), x, x)


# ------------------------------------------------------------------ encoder / decoder layers

def _linear(x, lin):
    y = x @ lin.weight.data.T
    return y if lin.bias is None else y + lin.bias.data


def _ln(x, norm):
    return layer_norm_ref(x, norm.weight.data, None if norm.bias is None else norm.bias.data, norm.eps)


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def encoder_ref(layer, x, act, mask=None, kpm=None, causal=False):
    def sa(y):
        return mha_ref(layer.self_attn, y, y, y, kpm, mask, causal)

    def ff(y):
        return _linear(act(_linear(y, layer.linear1)), layer.linear2)
    if layer.norm_first:
        x = x + sa(_ln(x, layer.norm1))
        return x + ff(_ln(x, layer.norm2))
    x = _ln(x + sa(x), layer.norm1)
    return _ln(x + ff(x), layer.norm2)


def decoder_ref(layer, x, mem, act, tgt_causal=False, mem_kpm=None):
    def sa(y):
        return mha_ref(layer.self_attn, y, y, y, None, None, tgt_causal)

    def ca(y):
        return mha_ref(layer.multihead_attn, y, mem, mem, mem_kpm)

    def ff(y):
        return _linear(act(_linear(y, layer.linear1)), layer.linear2)
    if layer.norm_first:
        x = x + sa(_ln(x, layer.norm1))
        x = x + ca(_ln(x, layer.norm2))
        return x + ff(_ln(x, layer.norm3))
    x = _ln(x + sa(x), layer.norm1)
    x = _ln(x + ca(x), layer.norm2)
    return _ln(x + ff(x), layer.norm3)


def _randomise(module, rng):
    for p in module.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.3


@pytest.mark.parametrize("norm_first", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_and_decoder_layers_match_numpy(rng, norm_first, activation):
    act = (lambda y: np.maximum(y, 0)) if activation == "relu" else _gelu
    enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=activation, batch_first=True,
                                     norm_first=norm_first, dtype=np.float64)
    _randomise(enc, rng)
    x = rng.standard_normal((2, 5, 8))
    kpm = np.array([[False] * 5, [False] * 3 + [True] * 2])
    out = enc(dlkern.tensor(x), src_key_padding_mask=kpm, is_causal=True)
    np.testing.assert_allclose(out.data, encoder_ref(enc, x, act, kpm=kpm, causal=True), rtol=1e-9, atol=1e-10)
    dec = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, activation=activation, norm_first=norm_first,
                                     dtype=np.float64)
    _randomise(dec, rng)
    mem = rng.standard_normal((2, 4, 8))
    mkpm = np.array([[False, False, True, False], [False] * 4])
    out = dec(dlkern.tensor(x.transpose(1, 0, 2)), dlkern.tensor(mem.transpose(1, 0, 2)), tgt_is_causal=True,
              memory_key_padding_mask=mkpm)
    ref = decoder_ref(dec, x, mem, act, tgt_causal=True, mem_kpm=mkpm)
    np.testing.assert_allclose(out.data, ref.transpose(1, 0, 2), rtol=1e-9, atol=1e-10)


def test_encoder_decoder_stacks(rng):
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, dtype=np.float64)
    enc = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(8, dtype=np.float64))
    assert len(enc.layers) == 3
    assert enc.layers[0].linear1.weight is not enc.layers[1].linear1.weight
    np.testing.assert_array_equal(enc.layers[0].linear1.weight.data, enc.layers[2].linear1.weight.data)
    _randomise(enc, rng)
    x = rng.standard_normal((2, 4, 8))
    y = x
    for lay in enc.layers:
        y = encoder_ref(lay, y, lambda a: np.maximum(a, 0), causal=True)
    out = enc(dlkern.tensor(x), is_causal=True)
    np.testing.assert_allclose(out.data, _ln(y, enc.norm), rtol=1e-9, atol=1e-10)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.1, batch_first=True), 2)
    xt = dlkern.randn(2, 3, 8, requires_grad=True)
    dec(xt, dlkern.randn(2, 4, 8), tgt_is_causal=True).sum().backward()
    assert xt.grad.shape == (2, 3, 8)
    with pytest.raises(ValueError, match="activation"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")


# ------------------------------------------------------------------ PyTorch oracle (optional)

def test_mha_and_encoder_layer_match_torch(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=True).double()
    m = nn.MultiheadAttention(8, 2, batch_first=True, dtype=np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = rng.standard_normal((2, 5, 8))
    kpm = np.array([[False] * 5, [False] * 3 + [True] * 2])
    tout, tw = tm(torch.from_numpy(x), torch.from_numpy(x), torch.from_numpy(x),
                  key_padding_mask=torch.from_numpy(kpm))
    out, w = m(dlkern.tensor(x), dlkern.tensor(x), dlkern.tensor(x), key_padding_mask=kpm, need_weights=True)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-10, atol=1e-12)
    for norm_first in (False, True):
        tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", norm_first=norm_first,
                                              batch_first=True).double()
        lay = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", norm_first=norm_first,
                                         batch_first=True, dtype=np.float64)
        lay.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
        mask = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
        tout = tl(torch.from_numpy(x), src_mask=mask)
        out = lay(dlkern.tensor(x), src_mask=mask.numpy())
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-9, atol=1e-10)
    tdec = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=True).double()
    dec = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, norm_first=True, dtype=np.float64)
    dec.load_state_dict({k: v.detach().numpy() for k, v in tdec.state_dict().items()})
    tgt, mem = rng.standard_normal((4, 2, 8)), rng.standard_normal((6, 2, 8))
    mkpm = np.array([[False] * 6, [False] * 4 + [True] * 2])
    tmask = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64)
    tout = tdec(torch.from_numpy(tgt), torch.from_numpy(mem), tgt_mask=tmask,
                memory_key_padding_mask=torch.from_numpy(mkpm))
    out = dec(dlkern.tensor(tgt), dlkern.tensor(mem), tgt_mask=tmask.numpy(), memory_key_padding_mask=mkpm)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-9, atol=1e-10)


def test_mha_attention_dropout_only_in_training():
    m = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = dlkern.randn(2, 5, 8)
    m.eval()
    a, b = m(x, x, x)[0].data, m(x, x, x)[0].data
    np.testing.assert_array_equal(a, b)
    m.train()
    dlkern.manual_seed(1)
    c = m(x, x, x)[0].data
    dlkern.manual_seed(1)
    np.testing.assert_array_equal(m(x, x, x)[0].data, c)
    assert not np.allclose(a, c)
