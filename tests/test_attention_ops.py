"""Attention family (dlkern.ops.attention) against the naive float64 NumPy oracle dlkern.reference.

Covers every mask kind and broadcast shape, GQA/MQA, odd and tile-straddling lengths,
Tq != Tk, fully masked rows, every ISA path and 1/2 threads, float32 and float64;
gradients by finite differences (small) and the analytic oracle (larger); dropout,
decode against a KV cache, KV append, RoPE, and the argument errors.
"""

import numpy as np
import pytest

import dlkern
from dlkern import ops
from dlkern import reference as R

from helpers import check_grads, num_threads, raises_each, using_isa


# ---- the oracle: dense float64 attention (dlkern.reference) ----

def ref_attention(q, k, v, mask=None, causal=False, scale=None, causal_offset=0):
    """(out, lse, p) in float64; a row with no key left: out 0, lse -inf, p 0. causal:
    key j is seen by query i when j <= i + causal_offset."""
    return R.attention_probs(q, k, v, mask, causal_offset if causal else None, scale)


def ref_backward(go, q, k, v, mask=None, causal=False, scale=None):
    return R.attention_grads(go, q, k, v, mask, 0 if causal else None, scale)


def tol(dtype):
    return dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


def make(rng, B, Hq, Hkv, Tq, Tk, D, Dv=None, dtype=np.float64):
    Dv = D if Dv is None else Dv
    q = rng.standard_normal((B, Hq, Tq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, Tk, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, Tk, Dv)).astype(dtype)
    return q, k, v


def check_all(q, k, v, dtype, mask=None, causal=False, scale=None, rng=None):
    out, lse = ops.attention_forward(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)
    r_out, r_lse, _ = ref_attention(q, k, v, mask, causal, scale)
    assert out.dtype == dtype and lse.dtype == dtype
    assert out.shape == r_out.shape and lse.shape == r_lse.shape
    assert not np.isnan(out).any() and not np.isnan(lse).any()
    np.testing.assert_allclose(out, r_out, **tol(dtype))
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(r_lse))
    fin = np.isfinite(r_lse)
    np.testing.assert_allclose(lse[fin], r_lse[fin], **tol(dtype))
    rng = rng or np.random.default_rng(1)
    go = rng.standard_normal(out.shape).astype(dtype)
    dq, dk, dv = ops.attention_backward(go, q, k, v, out, lse, attn_mask=mask, is_causal=causal, scale=scale)
    for got, want in zip((dq, dk, dv), ref_backward(go, q, k, v, mask, causal, scale)):
        assert got.dtype == dtype and got.shape == want.shape
        assert not np.isnan(got).any()
        t = tol(dtype)
        np.testing.assert_allclose(got, want, rtol=t["rtol"] * 5, atol=t["atol"] * 10 * max(1.0, np.abs(want).max()))


# ---- forward + backward against the oracle ----

SHAPES = [  # B, Hq, Hkv, Tq, Tk, D, Dv
    (1, 1, 1, 1, 1, 16, 16),
    (2, 3, 3, 17, 17, 16, 16),
    (1, 4, 2, 65, 130, 64, 64),    # GQA, Tq < Tk, neither a multiple of a tile
    (2, 4, 1, 70, 33, 16, 24),     # MQA, Tq > Tk, Dv != D
    (1, 2, 2, 9, 200, 1, 1),       # D = 1
    (1, 2, 1, 31, 31, 80, 80),
    (1, 2, 1, 3, 200, 16, 16),     # one tile for two threads: keys split and merged
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_matches_oracle(shape, causal, isa, threads, dtype):
    rng = np.random.default_rng(hash(shape) % 2**32)
    q, k, v = make(rng, *shape, dtype=dtype)
    check_all(q, k, v, dtype, causal=causal)


MASK_SHAPES = [(17, 23), (2, 1, 1, 23), (1, 3, 17, 1), (2, 3, 17, 23), (23,)]


@pytest.mark.parametrize("mshape", MASK_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masks(mshape, kind, isa, threads, dtype):
    rng = np.random.default_rng(7)
    q, k, v = make(rng, 2, 3, 3, 17, 23, 16, dtype=dtype)
    if kind == "bool":
        mask = rng.random(mshape) > 0.3
    else:
        mask = (rng.standard_normal(mshape) * 2).astype(dtype)
    check_all(q, k, v, dtype, mask=mask, causal=kind == "bool")


def test_mask_views_and_neg_inf(isa, dtype):
    rng = np.random.default_rng(8)
    q, k, v = make(rng, 2, 4, 2, 9, 70, 16, dtype=dtype)
    fmask = rng.standard_normal((70, 9)).astype(dtype).T          # a transposed view
    fmask[:, :5] = -np.inf
    check_all(q, k, v, dtype, mask=fmask)
    bmask = np.broadcast_to(rng.random((1, 1, 1, 70)) > 0.5, (2, 4, 9, 70))  # stride-0 view
    check_all(q, k, v, dtype, mask=bmask, causal=True, scale=0.3)


def test_fully_masked_rows(isa, threads, dtype):
    rng = np.random.default_rng(9)
    q, k, v = make(rng, 1, 2, 1, 5, 7, 16, dtype=dtype)
    mask = np.ones((5, 7), bool)
    mask[1] = False
    mask[3, :] = False
    check_all(q, k, v, dtype, mask=mask)
    out, lse = ops.attention_forward(q, k, v, attn_mask=mask)
    assert (out[:, :, [1, 3]] == 0).all() and np.isneginf(lse[:, :, [1, 3]]).all()
    dq, dk, dv = ops.attention_backward(np.ones_like(out), q, k, v, out, lse, attn_mask=mask)
    assert (dq[:, :, [1, 3]] == 0).all()
    # causal with Tq > Tk rows still all see key 0; an empty key set masks every row
    out, lse = ops.attention_forward(q, k[:, :, :0], v[:, :, :0])
    assert (out == 0).all() and np.isneginf(lse).all()
    dq, dk, dv = ops.attention_backward(np.ones_like(out), q, k[:, :, :0], v[:, :, :0], out, lse)
    assert (dq == 0).all() and dk.shape == (1, 1, 0, 16)


@pytest.mark.parametrize("shape", [(0, 2, 1, 3, 4), (1, 0, 1, 3, 4), (1, 2, 1, 0, 4), (2, 2, 2, 3, 0)])
def test_empty_shapes(shape, threads):
    B, Hq, Hkv, Tq, Tk = shape
    rng = np.random.default_rng(25)
    q, k, v = make(rng, B, Hq, Hkv, Tq, Tk, 8)
    out, lse = ops.attention_forward(q, k, v, is_causal=True)
    assert out.shape == (B, Hq, Tq, 8) and lse.shape == (B, Hq, Tq)
    dq, dk, dv = ops.attention_backward(np.ones_like(out), q, k, v, out, lse, is_causal=True)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape
    assert not dk.any() and not dv.any() and not dq.any()


def test_nan_propagates(isa, dtype):
    rng = np.random.default_rng(26)
    q, k, v = make(rng, 1, 2, 1, 6, 70, 16, dtype=dtype)
    q[0, 1, 2, 3] = np.nan
    out, lse = ops.attention_forward(q, k, v)
    assert np.isnan(out[0, 1, 2]).all() and np.isnan(lse[0, 1, 2])
    out[0, 1, 2] = 0
    assert np.isfinite(out).all()
    out = ops.decode_attention(q[:, :, 2:3], k, v, 70)
    assert np.isnan(out[0, 1]).all() and np.isfinite(out[0, 0]).all()


def test_scale_and_large_logits(isa, dtype):
    rng = np.random.default_rng(10)
    q, k, v = make(rng, 1, 2, 2, 20, 40, 16, dtype=dtype)
    check_all(q * 30, k * 30, v, dtype, scale=1.0)   # scores in the hundreds: the online max matters
    check_all(q, k, v, dtype, scale=0.05, causal=True)


def test_strided_views(isa, threads, dtype):
    """(B, T, H, D) transposed to (B, H, T, D), as MultiheadAttention produces, read in place."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 37, 3 * 4 * 16)).astype(dtype)
    q, k, v = (x[..., i * 64:(i + 1) * 64].reshape(2, 37, 4, 16).transpose(0, 2, 1, 3) for i in range(3))
    assert not q.flags.c_contiguous
    check_all(q, k, v, dtype, causal=True)
    qn = np.asarray(q)[..., ::-1]  # a reversed last axis is copied once in Python
    check_all(qn, k, v, dtype)


def test_threads_and_isas_agree(dtype):
    rng = np.random.default_rng(12)
    q, k, v = make(rng, 2, 4, 2, 100, 100, 32, dtype=dtype)
    results = []
    for isa in dlkern.supported_isas():
        for n in (1, 2):
            with using_isa(isa), num_threads(n):
                results.append(ops.attention_forward(q, k, v, is_causal=True)[0])
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], **tol(dtype))


def test_matches_torch_when_available():
    """Same semantics as PyTorch's SDPA: causal alignment with Tq != Tk, GQA, bool and float masks."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(24)
    for (Tq, Tk), causal, mask_kind in [((7, 19), True, None), ((19, 7), True, None), ((9, 9), False, "bool"),
                                        ((9, 13), False, "float")]:
        q, k, v = make(rng, 2, 4, 2, Tq, Tk, 16)
        mask = None
        if mask_kind == "bool":
            mask = rng.random((Tq, Tk)) > 0.3
            mask[:, 0] = True  # PyTorch gives NaN for a fully masked row
        elif mask_kind == "float":
            mask = rng.standard_normal((2, 1, Tq, Tk))
        go = rng.standard_normal((2, 4, Tq, 16))
        tq, tk, tv = (torch.from_numpy(a).requires_grad_(True) for a in (q, k, v))
        tout = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=None if mask is None else torch.from_numpy(mask),
                                              is_causal=causal, enable_gqa=True)
        tout.backward(torch.from_numpy(go))
        out, lse = ops.attention_forward(q, k, v, attn_mask=mask, is_causal=causal)
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
        grads = ops.attention_backward(go, q, k, v, out, lse, attn_mask=mask, is_causal=causal)
        for got, t in zip(grads, (tq, tk, tv)):
            np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-9, atol=1e-11)


# ---- gradients ----

def check_attention_grads(q, k, v, rng, **kw):
    """attention_backward against float64 central differences of attention_forward."""
    def fwd(q, k, v):
        return ops.attention_forward(q, k, v, **kw)[0]

    def bwd(w, q, k, v):
        out, lse = ops.attention_forward(q, k, v, **kw)
        return ops.attention_backward(w, q, k, v, out, lse, **kw)

    check_grads(fwd, bwd, [q, k, v], rng, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", [
    dict(shape=(1, 2, 1, 3, 5, 4), causal=False, mask=None),
    dict(shape=(1, 2, 2, 4, 3, 3), causal=True, mask=None),
    dict(shape=(2, 2, 1, 3, 4, 2), causal=False, mask="float"),
])
def test_finite_differences(case, isa):
    rng = np.random.default_rng(13)
    q, k, v = make(rng, *case["shape"])
    mask = rng.standard_normal((case["shape"][3], case["shape"][4])) if case["mask"] else None
    check_attention_grads(q, k, v, rng, attn_mask=mask, is_causal=case["causal"], scale=0.7)


# ---- dropout ----

def test_dropout_determinism_and_rate(isa, threads):
    rng = np.random.default_rng(14)
    q, k, v = make(rng, 2, 2, 1, 64, 96, 8)
    v_id = np.broadcast_to(np.eye(96), (2, 1, 96, 96)).copy()  # out = the dropped-out weights
    a = ops.attention_forward(q, k, v_id, dropout_p=0.25, seed=5)[0]
    b = ops.attention_forward(q, k, v_id, dropout_p=0.25, seed=5)[0]
    c = ops.attention_forward(q, k, v_id, dropout_p=0.25, seed=6)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    keep = a != 0
    assert abs(keep.mean() - 0.75) < 0.01
    p = ref_attention(q, k, v_id)[2]
    np.testing.assert_allclose(a[keep], p[keep] / 0.75, rtol=1e-12)
    lse0 = ops.attention_forward(q, k, v)[1]
    lse1 = ops.attention_forward(q, k, v, dropout_p=0.25, seed=5)[1]
    np.testing.assert_allclose(lse1, lse0, rtol=1e-13)  # the normaliser ignores dropout


def test_dropout_zero_is_identity(dtype):
    rng = np.random.default_rng(15)
    q, k, v = make(rng, 1, 2, 2, 10, 10, 8, dtype=dtype)
    np.testing.assert_array_equal(ops.attention_forward(q, k, v, dropout_p=0.0, seed=3)[0],
                                  ops.attention_forward(q, k, v)[0])


@pytest.mark.parametrize("shape", [(2, 4, 2, 70, 130), (1, 2, 1, 5, 300)], ids=["groups", "split-keys"])
def test_dropout_same_mask_for_any_thread_count_and_isa(shape):
    rng = np.random.default_rng(16)
    q, k, v = make(rng, *shape, 16)
    go = rng.standard_normal((shape[0], shape[1], shape[3], 16))
    results = []
    for isa in dlkern.supported_isas():
        for n in (1, 2):
            with using_isa(isa), num_threads(n):
                out, lse = ops.attention_forward(q, k, v, dropout_p=0.4, seed=9, is_causal=True)
                grads = ops.attention_backward(go, q, k, v, out, lse, dropout_p=0.4, seed=9, is_causal=True)
                results.append((out, *grads))
    for r in results[1:]:
        for got, want in zip(r, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


def test_dropout_gradient_finite_differences(isa):
    rng = np.random.default_rng(17)
    q, k, v = make(rng, 1, 2, 1, 4, 5, 3)
    check_attention_grads(q, k, v, rng, dropout_p=0.3, seed=11, is_causal=True)


# ---- KV cache and decode ----

@pytest.mark.parametrize("B,Hq,Hkv,Tq,length", [(1, 1, 1, 1, 1), (2, 4, 2, 1, 70), (1, 12, 4, 1, 300),
                                                 (3, 6, 1, 5, 129), (2, 2, 2, 3, 3),
                                                 (1, 4, 1, 1, 300), (1, 3, 1, 2, 129)])  # split keys
def test_decode_matches_full_attention(B, Hq, Hkv, Tq, length, isa, threads, dtype):
    rng = np.random.default_rng(18)
    S = length + 7
    kc = rng.standard_normal((B, Hkv, S, 16)).astype(dtype)
    vc = rng.standard_normal((B, Hkv, S, 16)).astype(dtype)
    q = rng.standard_normal((B, Hq, Tq, 16)).astype(dtype)
    kc_before = kc.copy()
    out = ops.decode_attention(q, kc, vc, length)
    want = ref_attention(q, kc[:, :, :length], vc[:, :, :length], causal=True, causal_offset=length - Tq)[0]
    np.testing.assert_allclose(out, want, **tol(dtype))
    np.testing.assert_array_equal(kc, kc_before)
    if Tq == 1:  # one new token: the same as full attention over the prefix
        full = ops.attention_forward(q, kc[:, :, :length], vc[:, :, :length])[0]
        np.testing.assert_allclose(out, full, **tol(dtype))


def test_decode_left_padding_mask(isa, threads, dtype):
    rng = np.random.default_rng(19)
    B, Hq, Hkv, length = 3, 4, 2, 50
    kc, vc = (rng.standard_normal((B, Hkv, 64, 8)).astype(dtype) for _ in range(2))
    q = rng.standard_normal((B, Hq, 2, 8)).astype(dtype)
    pad = np.array([0, 5, 49])
    mask = (np.arange(length)[None, :] >= pad[:, None])[:, None, None, :]   # (B, 1, 1, length)
    out = ops.decode_attention(q, kc, vc, length, attn_mask=mask, scale=0.5)
    want = ref_attention(q, kc[:, :, :length], vc[:, :, :length], mask=mask, causal=True,
                         causal_offset=length - 2, scale=0.5)[0]
    np.testing.assert_allclose(out, want, **tol(dtype))


def test_kv_cache_append(dtype):
    rng = np.random.default_rng(20)
    cache = np.zeros((2, 3, 10, 4), dtype)
    a = rng.standard_normal((2, 3, 4, 4)).astype(dtype)
    assert ops.kv_cache_append(cache, a, 0) == 4
    b = rng.standard_normal((2, 5, 3, 4)).astype(dtype).transpose(0, 2, 1, 3)  # strided (B, T, H, D) view
    assert ops.kv_cache_append(cache, b, 4) == 9
    np.testing.assert_array_equal(cache[:, :, :4], a)
    np.testing.assert_array_equal(cache[:, :, 4:9], b)
    assert (cache[:, :, 9:] == 0).all()
    c = rng.standard_normal((2, 3, 1, 8)).astype(dtype)[..., ::2]   # non-unit last stride: copied once
    assert ops.kv_cache_append(cache, c, 9) == 10
    np.testing.assert_array_equal(cache[:, :, 9:], c)
    with pytest.raises(ValueError, match=r"kv_cache_append: cache overflow: offset 9 \+ 4 new > capacity 10"):
        ops.kv_cache_append(cache, a, 9)


def test_generation_loop_with_cache(isa):
    """Prompt then tokens one by one: each step equals causal attention over the prefix."""
    rng = np.random.default_rng(21)
    B, Hq, Hkv, D, S = 2, 4, 2, 8, 20
    q, k, v = make(rng, B, Hq, Hkv, 12, 12, D)
    kc, vc = np.zeros((B, Hkv, S, D)), np.zeros((B, Hkv, S, D))
    full = ops.attention_forward(q, k, v, is_causal=True)[0]
    n = ops.kv_cache_append(kc, k[:, :, :5], 0)
    ops.kv_cache_append(vc, v[:, :, :5], 0)
    np.testing.assert_allclose(ops.decode_attention(q[:, :, :5], kc, vc, n), full[:, :, :5], rtol=1e-12)
    for t in range(5, 12):
        ops.kv_cache_append(vc, v[:, :, t:t + 1], n)
        n = ops.kv_cache_append(kc, k[:, :, t:t + 1], n)
        np.testing.assert_allclose(ops.decode_attention(q[:, :, t:t + 1], kc, vc, n), full[:, :, t:t + 1],
                                   rtol=1e-12, atol=1e-14)


# ---- RoPE ----

ref_rope = R.rope


@pytest.mark.parametrize("shape", [(1, 2), (3, 7, 16), (2, 3, 5, 64)])
def test_rope(shape, dtype):
    rng = np.random.default_rng(22)
    x = rng.standard_normal(shape).astype(dtype)
    for offset, base in [(0, 10000.0), (13, 500.0)]:
        y = ops.rope(x, offset, base)
        assert y.dtype == dtype and y.shape == x.shape
        np.testing.assert_allclose(y, ref_rope(x, offset, base), **tol(dtype))
    # an offset equals slicing the full-sequence rope
    full = ops.rope(x, 0)
    np.testing.assert_allclose(ops.rope(x[..., 2:, :], offset=2), full[..., 2:, :], **tol(dtype))
    # the backward is the adjoint: <rope(x), g> == <x, rope_backward(g)>
    g = rng.standard_normal(shape).astype(dtype)
    lhs = float(np.sum(ops.rope(x, 5).astype(np.float64) * g))
    rhs = float(np.sum(x.astype(np.float64) * ops.rope_backward(g, 5)))
    assert abs(lhs - rhs) <= (1e-4 if dtype == np.float32 else 1e-11) * (1 + abs(lhs))
    np.testing.assert_allclose(ops.rope_backward(ops.rope(x, 3), 3), x, **tol(dtype))


def test_rope_non_contiguous_and_threads(threads):
    rng = np.random.default_rng(23)
    x = rng.standard_normal((4, 300, 2, 32)).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(ops.rope(x, 7), ref_rope(x, 7, 10000.0), rtol=1e-12, atol=1e-12)


# ---- errors ----

f32 = lambda *s: np.ones(s, np.float32)   # noqa: E731
f64 = lambda *s: np.ones(s, np.float64)   # noqa: E731
fwd = ops.attention_forward

ERRORS = [
    ("ndim", lambda: fwd(f32(2, 3, 4), f32(2, 3, 4), f32(2, 3, 4)), ValueError,
     r"attention_forward: q must be 4-D \(B, Hq, Tq, D\), got shape \(2, 3, 4\)"),
    ("head_dim", lambda: fwd(f32(1, 2, 3, 4), f32(1, 2, 3, 5), f32(1, 2, 3, 5)), ValueError,
     r"attention_forward: head_dim mismatch: q has shape \(1, 2, 3, 4\) but k has shape \(1, 2, 3, 5\)"),
    ("kv_shape", lambda: fwd(f32(1, 2, 3, 4), f32(1, 2, 3, 4), f32(1, 2, 5, 4)), ValueError,
     r"attention_forward: k has shape \(1, 2, 3, 4\) but v has shape \(1, 2, 5, 4\)"),
    ("groups", lambda: fwd(f32(1, 3, 3, 4), f32(1, 2, 3, 4), f32(1, 2, 3, 4)), ValueError,
     r"attention_forward: q has 3 heads .* not a multiple of the 2 kv heads"),
    ("batch", lambda: fwd(f32(2, 2, 3, 4), f32(1, 2, 3, 4), f32(1, 2, 3, 4)), ValueError,
     r"attention_forward: batch mismatch"),
    ("mask_shape", lambda: fwd(f32(1, 2, 3, 4), f32(1, 2, 5, 4), f32(1, 2, 5, 4), attn_mask=np.ones((3, 4), bool)),
     ValueError, r"attention_forward: attn_mask of shape \(3, 4\) is not broadcastable to \(B, Hq, Tq, Tk\) = "
                 r"\(1, 2, 3, 5\)"),
    ("mask_ndim", lambda: fwd(f32(1, 2, 3, 4), f32(1, 2, 5, 4), f32(1, 2, 5, 4), attn_mask=np.ones((1, 1, 1, 3, 5),
                                                                                                    bool)),
     ValueError, r"not broadcastable"),
    ("mask_dtype", lambda: fwd(f32(1, 2, 3, 4), f32(1, 2, 5, 4), f32(1, 2, 5, 4), attn_mask=np.ones((3, 5), np.int32)),
     TypeError, r"attention_forward: attn_mask has dtype int32; expected bool or the dtype of q \(float32\)"),
    ("mask_float_mix", lambda: fwd(f32(1, 2, 3, 4), f32(1, 2, 5, 4), f32(1, 2, 5, 4), attn_mask=f64(3, 5)),
     TypeError, r"attention_forward: attn_mask has dtype float64 but q has dtype float32"),
    ("dtype_mix", lambda: fwd(f32(1, 2, 3, 4), f64(1, 2, 3, 4), f32(1, 2, 3, 4)), TypeError,
     r"attention_forward: k has dtype float64 but q has dtype float32"),
    ("int_dtype", lambda: fwd(np.ones((1, 1, 2, 2), np.int64), f32(1, 1, 2, 2), f32(1, 1, 2, 2)), TypeError,
     r"attention_forward: q has dtype int64; expected float32 or float64"),
    ("not_array", lambda: fwd([[1.0]], f32(1, 1, 1, 1), f32(1, 1, 1, 1)), TypeError,
     r"attention_forward: q must be a numpy.ndarray, got list"),
    ("dropout_high", lambda: fwd(f32(1, 1, 2, 2), f32(1, 1, 2, 2), f32(1, 1, 2, 2), dropout_p=1.0), ValueError,
     r"attention_forward: dropout_p must be in \[0, 1\), got 1"),
    ("dropout_neg", lambda: fwd(f32(1, 1, 2, 2), f32(1, 1, 2, 2), f32(1, 1, 2, 2), dropout_p=-0.1), ValueError,
     r"dropout_p must be in \[0, 1\)"),
    ("bwd_grad_shape", lambda: ops.attention_backward(f32(1, 1, 3, 2), f32(1, 1, 2, 2), f32(1, 1, 2, 2),
                                                      f32(1, 1, 2, 2), f32(1, 1, 2, 2), f32(1, 1, 2)), ValueError,
     r"attention_backward: grad_out has shape \(1, 1, 3, 2\), expected \(1, 1, 2, 2\)"),
    ("bwd_lse_shape", lambda: ops.attention_backward(f32(1, 1, 2, 2), f32(1, 1, 2, 2), f32(1, 1, 2, 2),
                                                     f32(1, 1, 2, 2), f32(1, 1, 2, 2), f32(1, 1, 3)), ValueError,
     r"attention_backward: lse has shape \(1, 1, 3\), expected \(1, 1, 2\)"),
    ("bwd_dtype", lambda: ops.attention_backward(f64(1, 1, 2, 2), f32(1, 1, 2, 2), f32(1, 1, 2, 2),
                                                 f32(1, 1, 2, 2), f32(1, 1, 2, 2), f32(1, 1, 2)), TypeError,
     r"attention_backward: grad_out has dtype float64 but q has dtype float32"),
    ("cache_overflow", lambda: ops.kv_cache_append(f32(1, 2, 4, 3), f32(1, 2, 5, 3), 0), ValueError,
     r"kv_cache_append: cache overflow: offset 0 \+ 5 new > capacity 4"),
    ("cache_shape", lambda: ops.kv_cache_append(f32(1, 2, 4, 3), f32(1, 3, 1, 3), 0), ValueError,
     r"kv_cache_append: new has shape \(1, 3, 1, 3\) but cache has shape \(1, 2, 4, 3\)"),
    ("cache_dtype", lambda: ops.kv_cache_append(f32(1, 2, 4, 3), f64(1, 2, 1, 3), 0), TypeError,
     r"kv_cache_append: new has dtype float64 but cache has dtype float32"),
    ("cache_offset", lambda: ops.kv_cache_append(f32(1, 2, 4, 3), f32(1, 2, 1, 3), -1), ValueError,
     r"kv_cache_append: offset must be >= 0, got -1"),
    ("decode_length", lambda: ops.decode_attention(f32(1, 2, 1, 4), f32(1, 2, 8, 4), f32(1, 2, 8, 4), 9), ValueError,
     r"decode_attention: length 9 exceeds the cache capacity 8"),
    ("decode_negative", lambda: ops.decode_attention(f32(1, 2, 0, 4), f32(1, 2, 8, 4), f32(1, 2, 8, 4), -1),
     ValueError, r"decode_attention: length must be >= 0, got -1"),
    ("decode_short", lambda: ops.decode_attention(f32(1, 2, 3, 4), f32(1, 2, 8, 4), f32(1, 2, 8, 4), 2), ValueError,
     r"decode_attention: length 2 is less than the 3 query positions"),
    ("decode_groups", lambda: ops.decode_attention(f32(1, 3, 1, 4), f32(1, 2, 8, 4), f32(1, 2, 8, 4), 2),
     ValueError, r"decode_attention: q has 3 heads"),
    ("decode_mask", lambda: ops.decode_attention(f32(1, 2, 1, 4), f32(1, 2, 8, 4), f32(1, 2, 8, 4), 5,
                                                 attn_mask=np.ones((1, 8), bool)),
     ValueError, r"decode_attention: attn_mask of shape \(1, 8\) is not broadcastable to .* \(1, 2, 1, 5\)"),
    ("rope_odd", lambda: ops.rope(f32(2, 3, 5)), ValueError, r"rope: the last dim of x must be even, got shape"),
    ("rope_ndim", lambda: ops.rope(f32(4)), ValueError, r"rope: x must be \(\.\.\., T, D\)"),
    ("rope_dtype", lambda: ops.rope_backward(np.ones((2, 4), np.int32)), TypeError,
     r"rope_backward: grad_out has dtype int32"),
]


test_errors = raises_each(ERRORS)


def test_read_only_cache_rejected():
    cache = f32(1, 2, 4, 3)
    cache.flags.writeable = False
    with pytest.raises(ValueError, match=r"kv_cache_append: cache is read-only"):
        ops.kv_cache_append(cache, f32(1, 2, 1, 3), 0)
