"""Safety of the attention family: masked keys contribute nothing (whatever their
values), caller-supplied offsets / lengths / positions are bounds-checked without
overflow, and malformed (0-d, 1-d) inputs raise errors that name the op.

The oracle here is a plain float64 loop that applies every mask by *excluding* keys
(a masked key is never read), so a NaN or Inf stored at a masked position cannot reach
it; an unmasked NaN/Inf still propagates as in NumPy (and PyTorch).
"""

import numpy as np
import pytest

import dlkern
import dlkern.nn.functional as F
from dlkern import ops

TS = [1, 5, 63, 64, 65, 130]   # 1, odd, tile-1, tile, tile+1, several tiles
BAD = [np.nan, np.inf, -np.inf]


# ---- float64 oracle by exclusion ----

def ref_attention(q, k, v, go, allowed, scale, add=None):
    """Forward and backward of softmax(q k^T * scale + add) v over the keys `allowed`
    (bool, (B, Hq, Tq, Tk)) only: masked keys are never read. Returns out, dq, dk, dv."""
    q, k, v, go = (np.asarray(a, np.float64) for a in (q, k, v, go))
    B, Hq, Tq, D = q.shape
    Hkv, Tk, Dv = k.shape[1], k.shape[2], v.shape[3]
    g = Hq // Hkv
    out = np.zeros((B, Hq, Tq, Dv))
    dq = np.zeros_like(q)
    dk = np.zeros((B, Hkv, Tk, D))
    dv = np.zeros((B, Hkv, Tk, Dv))
    with np.errstate(all="ignore"):
        for b in range(B):
            for h in range(Hq):
                hk = h // g
                for i in range(Tq):
                    idx = np.flatnonzero(allowed[b, h, i])
                    if idx.size == 0:
                        continue                      # no key left: out 0, no gradient
                    K, V = k[b, hk, idx], v[b, hk, idx]
                    s = K @ q[b, h, i] * scale
                    if add is not None:
                        s = s + add[b, h, i, idx]
                    e = np.exp(s - s.max())
                    p = e / e.sum()
                    o = p @ V
                    out[b, h, i] = o
                    dp = V @ go[b, h, i]
                    ds = p * (dp - go[b, h, i] @ o) * scale
                    dq[b, h, i] = ds @ K
                    dk[b, hk, idx] += np.outer(ds, q[b, h, i])
                    dv[b, hk, idx] += np.outer(p, go[b, h, i])
    return out, dq, dk, dv


def causal_allowed(B, Hq, Tq, Tk, offset=0):
    a = np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + offset
    return np.broadcast_to(a, (B, Hq, Tq, Tk))


def assert_matches(got, want, dtype, what):
    """Same finite / non-finite pattern, and close where finite."""
    got = np.asarray(got, np.float64)
    fin_got, fin_want = np.isfinite(got), np.isfinite(want)
    bad = np.argwhere(fin_got != fin_want)
    assert bad.size == 0, f"{what}: finiteness differs at {bad[:5].tolist()} (got {got[tuple(bad[0])]}, " \
                          f"want {want[tuple(bad[0])]})"
    tol = dict(rtol=2e-4, atol=5e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got[fin_got], want[fin_want], err_msg=what, **tol)


def run_and_check(q, k, v, allowed, dtype, *, add=None, **kw):
    rng = np.random.default_rng(99)
    scale = 1.0 / np.sqrt(q.shape[-1])
    go = rng.standard_normal(q.shape[:3] + (v.shape[3],)).astype(dtype)
    out, lse = ops.attention_forward(q, k, v, **kw)
    dq, dk, dv = ops.attention_backward(go, q, k, v, out, lse, **kw)
    r_out, r_dq, r_dk, r_dv = ref_attention(q, k, v, go, allowed, scale, add)
    assert_matches(out, r_out, dtype, "out")
    assert_matches(dq, r_dq, dtype, "dq")
    assert_matches(dk, r_dk, dtype, "dk")
    assert_matches(dv, r_dv, dtype, "dv")
    return out, dq, dk, dv


def make(rng, Hq, Hkv, Tq, Tk, D=8, dtype=np.float32):
    q = rng.standard_normal((1, Hq, Tq, D)).astype(dtype)
    k = rng.standard_normal((1, Hkv, Tk, D)).astype(dtype)
    v = rng.standard_normal((1, Hkv, Tk, D + 3)).astype(dtype)
    return q, k, v


# ---- is_causal: masked future keys contribute nothing ----

def test_issue_reproducer_causal_nan_value(isa):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 1, 4, 8)).astype(np.float32) for _ in range(3))
    v[:, :, 3] = np.nan
    out, _ = ops.attention_forward(q, k, v, is_causal=True)
    assert np.isfinite(out[0, 0, :3]).all(), out[0, 0, :, 0]
    assert np.isnan(out[0, 0, 3]).all()           # row 3 sees the NaN value: it propagates
    bmask = np.tril(np.ones((4, 4), bool))
    out_m, _ = ops.attention_forward(q, k, v, attn_mask=bmask)
    np.testing.assert_array_equal(out_m[0, 0, :3], out[0, 0, :3])


@pytest.mark.parametrize("gqa", [False, True], ids=["mha", "gqa"])
@pytest.mark.parametrize("T", TS)
def test_causal_nonfinite_future_keys_square(T, gqa, isa, threads):
    """Tq = Tk = T, a NaN/Inf key or value at position p: rows before p are exact."""
    rng = np.random.default_rng(T)
    Hq, Hkv = (4, 2) if gqa else (1, 1)
    p = T // 2 if T > 1 else 0
    for where in ("k", "v"):
        for bad in BAD:
            q, k, v = make(rng, Hq, Hkv, T, T)
            (k if where == "k" else v)[:, -1, p] = bad
            out, dq, _, _ = run_and_check(q, k, v, causal_allowed(1, Hq, T, T), np.float32, is_causal=True)
            g = Hq // Hkv
            assert np.isfinite(out[:, :, :p]).all() and np.isfinite(dq[:, :, :p]).all(), (where, bad)
            assert np.isfinite(out[:, :Hq - g]).all()   # heads of the clean kv head


@pytest.mark.parametrize("gqa", [False, True], ids=["mha", "gqa"])
@pytest.mark.parametrize("T", TS)
def test_causal_nonfinite_keys_masked_for_every_row(T, gqa, isa, threads):
    """Tk > Tq (top-left causal): keys T.. are masked for every row. NaN/Inf there must
    leave every output and gradient finite and exact, and their dk, dv exactly 0."""
    rng = np.random.default_rng(100 + T)
    Hq, Hkv = (4, 2) if gqa else (1, 1)
    Tk = T + 3
    for bad in BAD:
        q, k, v = make(rng, Hq, Hkv, T, Tk)
        k[:, :, T:] = bad
        v[:, :, T:] = bad
        k[:, :, T + 1, 0] = -bad if not np.isnan(bad) else 1.0
        out, dq, dk, dv = run_and_check(q, k, v, causal_allowed(1, Hq, T, Tk), np.float32, is_causal=True)
        for a in (out, dq, dk, dv):
            assert np.isfinite(a).all(), bad
        assert not dk[:, :, T:].any() and not dv[:, :, T:].any()


@pytest.mark.parametrize("T", [5, 65])
def test_causal_nonfinite_float64(T, isa, threads):
    rng = np.random.default_rng(7 + T)
    for bad in BAD:
        q, k, v = make(rng, 4, 2, T, T + 2, dtype=np.float64)
        p = T // 2
        k[:, 0, p + 1] = bad
        v[:, 1, p] = bad
        k[:, :, T:] = bad
        v[:, :, T:] = bad
        run_and_check(q, k, v, causal_allowed(1, 4, T, T + 2), np.float64, is_causal=True)


@pytest.mark.parametrize("T", [5, 65])
def test_causal_nonfinite_masked_keys_with_dropout(T, isa, threads):
    """With dropout (same seed, so the same keep mask) NaN/Inf in keys masked for every
    row must give what the same inputs with those keys zeroed give."""
    rng = np.random.default_rng(11 + T)
    q, k, v = make(rng, 4, 2, T, T + 4)
    go = rng.standard_normal((1, 4, T, v.shape[3])).astype(np.float32)
    kw = dict(is_causal=True, dropout_p=0.3, seed=1234)

    def run(k, v):
        out, lse = ops.attention_forward(q, k, v, **kw)
        return (out, lse) + tuple(ops.attention_backward(go, q, k, v, out, lse, **kw))

    clean = run(k, v)
    k[:, :, T:], v[:, :, T:] = np.nan, np.inf
    k[:, 1, T + 1] = -np.inf
    poisoned = run(k, v)
    for a, b, name in zip(poisoned, clean, ("out", "lse", "dq", "dk", "dv")):
        assert np.isfinite(a).all(), name
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not poisoned[3][:, :, T:].any() and not poisoned[4][:, :, T:].any()
    # square: rows before p never see key p, so their out and dq cannot depend on it
    q, k, v = make(rng, 4, 2, T, T)
    p = T // 2
    clean = run(k, v)
    k[:, 0, p], v[:, 1, p] = np.nan, np.inf
    poisoned = run(k, v)
    for i, name in ((0, "out"), (1, "lse"), (2, "dq")):
        assert np.isfinite(poisoned[i][:, :, :p]).all(), name
        np.testing.assert_allclose(poisoned[i][:, :, :p], clean[i][:, :, :p], rtol=1e-5, atol=1e-6, err_msg=name)


def test_causal_unmasked_nan_still_propagates(isa, threads):
    rng = np.random.default_rng(3)
    q, k, v = make(rng, 2, 1, 70, 70)
    q[0, 1, 40, 2] = np.nan
    k[0, 0, 10, 1] = np.nan      # seen by rows 10.. of both heads
    out, _ = ops.attention_forward(q, k, v, is_causal=True)
    assert np.isfinite(out[0, :, :10]).all()
    assert np.isnan(out[0, :, 10:]).all()


# ---- explicit masks: a masked key contributes nothing ----

@pytest.mark.parametrize("T", [5, 64, 130])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_explicit_mask_nonfinite_masked_keys(T, kind, isa, threads):
    rng = np.random.default_rng(200 + T)
    Hq, Hkv = 4, 2
    allowed = rng.random((1, Hq, T, T)) > 0.3
    allowed[..., 0] = True
    part = T // 2 + 1                       # masked for the first T // 2 rows only
    allowed[:, :, : T // 2, part] = False
    allowed[:, :, T // 2:, part] = True
    cols = [1, T // 2, T - 1]
    allowed[..., cols] = False             # these keys are masked for every row
    if kind == "bool":
        mask, add = allowed, None
    else:
        add = np.where(allowed, rng.standard_normal(allowed.shape) * 0.1, -np.inf)
        mask = add.astype(np.float32)
        add = mask.astype(np.float64)
    for bad in BAD:
        q, k, v = make(rng, Hq, Hkv, T, T)
        k[:, :, cols] = bad
        v[:, :, cols] = bad
        out, dq, dk, dv = run_and_check(q, k, v, allowed, np.float32, add=add, attn_mask=mask)
        assert not dk[:, :, cols].any() and not dv[:, :, cols].any()
        for a in (out, dq, dk, dv):
            assert np.isfinite(a).all()
        if T > 3:   # key `part` is bad only for the rows that may see it
            q, k, v = make(rng, Hq, Hkv, T, T)
            v[:, 1, part] = bad
            out, _, _, _ = run_and_check(q, k, v, allowed, np.float32, add=add, attn_mask=mask)
            assert np.isfinite(out[:, :, :T // 2]).all()


def test_fully_masked_rows_keep_zero_output():
    rng = np.random.default_rng(5)
    q, k, v = make(rng, 2, 2, 6, 9)
    allowed = np.ones((1, 2, 6, 9), bool)
    allowed[:, :, 2] = False
    k[:, :, 4] = np.nan
    v[:, :, 4] = np.inf
    allowed[..., 4] = False
    out, lse = ops.attention_forward(q, k, v, attn_mask=allowed)
    assert not out[:, :, 2].any() and np.isneginf(lse[:, :, 2]).all()
    run_and_check(q, k, v, allowed, np.float32, attn_mask=allowed)


# ---- F.scaled_dot_product_attention ----

@pytest.mark.parametrize("T", [5, 65, 130])
def test_sdpa_is_causal_nonfinite_future(T, isa, threads):
    rng = np.random.default_rng(300 + T)
    p = T // 2
    for bad in BAD:
        q, k, v = make(rng, 4, 2, T, T)
        k[:, 0, p] = bad
        v[:, 1, p] = bad
        go = rng.standard_normal((1, 4, T, v.shape[3])).astype(np.float32)
        ts = [dlkern.tensor(a, requires_grad=True) for a in (q, k, v)]
        out = F.scaled_dot_product_attention(*ts, is_causal=True, enable_gqa=True)
        out.backward(go)
        r_out, r_dq, r_dk, r_dv = ref_attention(q, k, v, go, causal_allowed(1, 4, T, T), 1 / np.sqrt(8))
        assert np.isfinite(out.data[:, :, :p]).all() and np.isfinite(ts[0].grad.data[:, :, :p]).all()
        for got, want, name in zip((out.data, ts[0].grad.data, ts[1].grad.data, ts[2].grad.data),
                                   (r_out, r_dq, r_dk, r_dv), ("out", "dq", "dk", "dv")):
            assert_matches(got, want, np.float32, name)


# ---- decode_attention: n query tokens, future cache positions hold NaN/Inf ----

@pytest.mark.parametrize("n,length", [(1, 1), (3, 5), (5, 64), (4, 65), (7, 130)])
def test_decode_nonfinite_future_positions(n, length, isa, threads):
    rng = np.random.default_rng(400 + length)
    Hq, Hkv, S = 4, 2, length + 6
    for bad in BAD:
        q = rng.standard_normal((1, Hq, n, 8)).astype(np.float32)
        kc = rng.standard_normal((1, Hkv, S, 8)).astype(np.float32)
        vc = rng.standard_normal((1, Hkv, S, 8)).astype(np.float32)
        kc[:, :, length:] = bad            # past `length`: never read
        vc[:, :, length:] = bad
        allowed = causal_allowed(1, Hq, n, length, length - n)
        out = ops.decode_attention(q, kc, vc, length)
        go = np.zeros((1, Hq, n, 8), np.float32)
        r_out = ref_attention(q, kc[:, :, :length], vc[:, :, :length], go, allowed, 1 / np.sqrt(8))[0]
        assert np.isfinite(out).all()
        assert_matches(out, r_out, np.float32, "decode out")
        if n > 1:   # the last position is in the future of every query row but the last
            kc[:, 0, length - 1] = bad
            vc[:, 1, length - 1] = bad
            out = ops.decode_attention(q, kc, vc, length)
            r_out = ref_attention(q, kc[:, :, :length], vc[:, :, :length], go, allowed, 1 / np.sqrt(8))[0]
            assert np.isfinite(out[:, :, :n - 1]).all()
            assert_matches(out, r_out, np.float32, "decode out")


# ---- offsets, lengths, positions: bounds without overflow ----

CAP, TNEW = 8, 2


@pytest.mark.parametrize("offset", [2**63 - 1, 2**62, 2**63 - 2, -1, -2**63, CAP - TNEW + 1, CAP, 2**63, 2**64 + 1])
def test_kv_cache_append_rejects_bad_offset(offset):
    cache = np.zeros((1, 1, CAP, 4), np.float32)
    new = np.ones((1, 1, TNEW, 4), np.float32)
    before = cache.copy()
    with pytest.raises(ValueError, match=r"kv_cache_append: .*offset"):
        ops.kv_cache_append(cache, new, offset)
    np.testing.assert_array_equal(cache, before)


def test_kv_cache_append_last_fit_succeeds():
    cache = np.zeros((1, 1, CAP, 4), np.float32)
    new = np.ones((1, 1, TNEW, 4), np.float32)
    assert ops.kv_cache_append(cache, new, CAP - TNEW) == CAP
    assert (cache[:, :, CAP - TNEW:] == 1).all() and not cache[:, :, :CAP - TNEW].any()
    assert ops.kv_cache_append(cache, np.ones((1, 1, 0, 4), np.float32), CAP) == CAP


def test_kv_cache_append_new_longer_than_cache():
    cache = np.zeros((1, 1, 2, 4), np.float32)
    with pytest.raises(ValueError, match="kv_cache_append"):
        ops.kv_cache_append(cache, np.ones((1, 1, 3, 4), np.float32), 0)
    assert not cache.any()


@pytest.mark.parametrize("offset", [2**63 - 1, 2**63 - 2, -1, -2**63, 2**63])
@pytest.mark.parametrize("op", ["rope", "rope_backward"])
def test_rope_rejects_out_of_range_offset(op, offset):
    x = np.ones((1, 4, 8), np.float32)
    with pytest.raises(ValueError, match=rf"{op}: offset"):
        getattr(ops, op)(x, offset=offset)


def test_rope_large_valid_offset():
    x = np.ones((1, 2, 4), np.float32)
    y = ops.rope(x, offset=2**40)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("length", [2**63 - 1, 2**62, -1, -2**63, 2**63, 2**64])
def test_decode_rejects_bad_length(length):
    q = np.ones((1, 1, 1, 4), np.float32)
    kc = np.ones((1, 1, 8, 4), np.float32)
    with pytest.raises(ValueError, match=r"decode_attention: length"):
        ops.decode_attention(q, kc, kc, length)


@pytest.mark.parametrize("scale", [np.nan, np.inf, -np.inf, 1e39])
@pytest.mark.parametrize("op", ["attention_forward", "attention_backward", "decode_attention"])
def test_non_finite_scale_rejected(op, scale):
    a = np.ones((1, 1, 2, 4), np.float32)
    calls = {
        "attention_forward": lambda: ops.attention_forward(a, a, a, scale=scale),
        "attention_backward": lambda: ops.attention_backward(a, a, a, a, a, np.zeros((1, 1, 2), np.float32),
                                                             scale=scale),
        "decode_attention": lambda: ops.decode_attention(a, a, a, 2, scale=scale),
    }
    with pytest.raises(ValueError, match=rf"{op}: scale"):
        calls[op]()


# ---- 0-d and 1-d inputs: clear errors naming the op ----

def _bad_inputs():
    x4 = np.ones((1, 1, 2, 4), np.float32)
    lse = np.zeros((1, 1, 2), np.float32)
    cache = np.zeros((1, 1, 4, 4), np.float32)
    cases = []
    for nd, bad in (("0d", np.array(1.0, np.float32)), ("1d", np.ones(4, np.float32))):
        for i, name in enumerate("qkv"):
            args = [x4, x4, x4]
            args[i] = bad
            cases.append((f"attention_forward-{name}-{nd}", "attention_forward",
                          lambda args=args: ops.attention_forward(*args)))
            cases.append((f"decode_attention-{name}-{nd}", "decode_attention",
                          lambda args=args: ops.decode_attention(*args, 1)))
        for i, name in enumerate(["grad_out", "q", "k", "v", "out", "lse"]):
            args = [x4, x4, x4, x4, x4, lse]
            args[i] = bad
            cases.append((f"attention_backward-{name}-{nd}", "attention_backward",
                          lambda args=args: ops.attention_backward(*args)))
        cases.append((f"kv_cache_append-cache-{nd}", "kv_cache_append",
                      lambda bad=bad: ops.kv_cache_append(bad, x4, 0)))
        cases.append((f"kv_cache_append-new-{nd}", "kv_cache_append",
                      lambda bad=bad: ops.kv_cache_append(cache, bad, 0)))
        cases.append((f"rope-{nd}", "rope", lambda bad=bad: ops.rope(bad)))
        cases.append((f"rope_backward-{nd}", "rope_backward", lambda bad=bad: ops.rope_backward(bad)))
        for i, name in enumerate(["query", "key", "value"]):
            def sdpa(i=i, bad=bad):
                ts = [dlkern.tensor(x4) for _ in range(3)]
                ts[i] = dlkern.tensor(bad)
                return F.scaled_dot_product_attention(*ts)
            cases.append((f"sdpa-{name}-{nd}", "scaled_dot_product_attention", sdpa))
    return cases


BAD_INPUTS = _bad_inputs()


@pytest.mark.parametrize("name,op,call", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_low_ndim_inputs_raise_naming_the_op(name, op, call):
    with pytest.raises((ValueError, TypeError), match=op):
        call()
