"""dlkern._C_cuda.attention_forward / attention_backward (flash attention on DeviceArrays).

Host side (runs wherever the CUDA module is built, GPU or not): the launch plan
(_attention_plan), the dropout hash port (_dropout_keep) against the CPU kernel's
dropout, and argument errors raised before any device work. GPU tests compare with a
float64 NumPy reference written here (forward and backward) and with the CPU ops
(dlkern.ops.attention_forward / attention_backward), including dropout with the same seed.
"""
import zlib

import numpy as np
import pytest

import dlkern.ops as ops

from cuda_support import C, requires_gpu, requires_module  # noqa: E402

DTYPES = [np.float32, np.float64]
H200_SMEM = 232448  # opt-in shared memory per block (227 KiB) on H100/H200
A100_SMEM = 166912  # 163 KiB
ADA_SMEM = 101376   # 99 KiB (sm_86 / sm_89)


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ---------------------------------------------------------------------------
# float64 NumPy reference
# ---------------------------------------------------------------------------

def keep_mask(B, Hq, Tq, Tk, p, seed):
    """(B, Hq, Tq, Tk) dropout keep mask from the bound hash (checked against the CPU op
    on the host by test_dropout_hash_matches_the_cpu_kernel)."""
    keep = np.ones((B, Hq, Tq, Tk), dtype=bool)
    if p > 0:
        for idx in np.ndindex(B, Hq, Tq, Tk):
            keep[idx] = C._dropout_keep(seed, *idx, p)
    return keep


def ref_forward(q, k, v, mask=None, causal=False, scale=None, keep=None, p=0.0):
    """Returns out, lse and what the reference backward needs; float64 throughout."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    B, Hq, Tq, D = q.shape
    Tk = k.shape[2]
    g = Hq // k.shape[1]
    K, V = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    scale = 1 / np.sqrt(D) if scale is None else scale
    s = q @ np.swapaxes(K, -1, -2) * scale
    if mask is not None:
        s = s + np.asarray(mask, dtype=np.float64)
    if causal:
        s = np.where(np.arange(Tk)[None, :] <= np.arange(Tq)[:, None], s, -np.inf)
    m = s.max(-1, keepdims=True) if Tk else np.full(s.shape[:-1] + (1,), -np.inf)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(s - m)
    den = e.sum(-1, keepdims=True)
    P = e / np.where(den > 0, den, 1)
    lse = np.where(den > 0, m + np.log(np.where(den > 0, den, 1)), -np.inf)[..., 0]
    Z = keep / (1 - p) if keep is not None else np.ones_like(P)
    out = (P * Z) @ V
    return out, lse, dict(q=q, K=K, V=V, P=P, Z=Z, scale=scale, g=g)


def ref_backward(dout, saved):
    dout = np.asarray(dout, dtype=np.float64)
    q, K, V, P, Z, scale, g = (saved[x] for x in ("q", "K", "V", "P", "Z", "scale", "g"))
    dV = np.swapaxes(P * Z, -1, -2) @ dout
    dP = (dout @ np.swapaxes(V, -1, -2)) * Z
    dS = P * (dP - (P * dP).sum(-1, keepdims=True))
    dq = dS @ K * scale
    dK = np.swapaxes(dS, -1, -2) @ q * scale
    B, Hq = q.shape[:2]

    def group_sum(x):  # sum the query heads of each kv head
        return x.reshape(B, Hq // g, g, *x.shape[2:]).sum(2)
    return dq, group_sum(dK), group_sum(dV)


def assert_close(got, want, dtype, what=""):
    got = np.asarray(got)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert not np.isnan(got).any(), what
    tol = 2e-4 if dtype == np.float32 else 1e-10
    scale = 1.0 + np.abs(want).max() if want.size else 1.0
    err = np.abs(got.astype(np.float64) - want).max() if want.size else 0.0
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol * scale:.3g}"


def check_forward_backward(qkv, ddout, dout, ref, dtype, *args, out_view=lambda out: out, **kwargs):
    """Run attention_forward and attention_backward on the device arrays `qkv` (with the
    further `args`/`kwargs` of both) and compare out, lse and the three gradients with the
    reference `ref` (ref_forward's result); the backward gets ``out_view(out)``.
    Returns (out, lse)."""
    want_out, want_lse, saved = ref
    out, lse = C.attention_forward(*qkv, *args, **kwargs)
    assert_close(out.numpy(), want_out, dtype, "out")
    assert_close(lse.numpy(), want_lse, dtype, "lse")
    grads = C.attention_backward(ddout, *qkv, out_view(out), lse, *args, **kwargs)
    for name, got, want in zip(("dq", "dk", "dv"), grads, ref_backward(dout, saved)):
        assert_close(got.numpy(), want, dtype, name)
    return out, lse


def inputs(rng, B, Hq, Hkv, Tq, Tk, D, Dv, dtype):
    q = rng.standard_normal((B, Hq, Tq, D)).astype(dtype)
    k = rng.standard_normal((B, Hkv, Tk, D)).astype(dtype)
    v = rng.standard_normal((B, Hkv, Tk, Dv)).astype(dtype)
    return q, k, v


def dev(*arrays):
    return [C.from_numpy(np.ascontiguousarray(a)) for a in arrays]


# ---------------------------------------------------------------------------
# Host side: runs without a GPU
# ---------------------------------------------------------------------------

@requires_module
@pytest.mark.parametrize("B, Hq, Hkv, Tq, Tk, D, Dv, nbytes, smem, tile", [
    (8, 12, 12, 512, 512, 64, 64, 4, H200_SMEM, 64),
    (1, 32, 8, 2048, 2048, 128, 128, 4, H200_SMEM, 64),
    (1, 32, 8, 2048, 2048, 128, 128, 4, A100_SMEM, 32),  # tile 64 needs 165 KiB for dK/dV
    (1, 32, 8, 2048, 2048, 128, 128, 4, ADA_SMEM, 32),
    (2, 4, 2, 100, 37, 128, 128, 8, H200_SMEM, 32),
    (2, 4, 2, 100, 37, 128, 128, 8, ADA_SMEM, 16),
    (1, 1, 1, 1, 1, 1, 1, 8, 48 * 1024, 32),
    (3, 6, 1, 65, 129, 3, 5, 4, 48 * 1024, 64),
    (1, 2, 1, 0, 5, 16, 16, 4, H200_SMEM, 64),
    (1, 2, 1, 5, 0, 16, 0, 4, H200_SMEM, 64),
    (1, 32, 1, 512, 512, 64, 64, 4, H200_SMEM, 64),  # MQA: dK/dV heads split over blocks
    (2, 6, 2, 300, 300, 32, 32, 8, H200_SMEM, 32),
])
def test_attention_plan(B, Hq, Hkv, Tq, Tk, D, Dv, nbytes, smem, tile):
    sms = 132
    p = C._attention_plan(B, Hq, Hkv, Tq, Tk, D, Dv, nbytes, smem, sms)
    assert p["tile"] == tile
    assert p["threads"] == 256 and (tile // 16) * 16 == tile  # 16 x 16 threads, tile/16 rows each
    t = tile
    assert p["q_tiles"] * t >= Tq > (p["q_tiles"] - 1) * t or Tq == p["q_tiles"] == 0
    assert p["k_tiles"] * t >= Tk > (p["k_tiles"] - 1) * t or Tk == p["k_tiles"] == 0
    assert p["fwd_blocks"] == p["dq_blocks"] == B * Hq * p["q_tiles"]
    # K/V tiles per kv head (never repeated for GQA), times the head splits of a group
    g, splits, heads = Hq // Hkv, p["dkdv_splits"], p["dkdv_heads"]
    assert p["dkdv_blocks"] == B * Hkv * p["k_tiles"] * splits
    assert 1 <= splits <= g and splits * heads >= g > (splits - 1) * heads  # no empty split
    if B * Hkv * p["k_tiles"] >= 2 * sms or Tq == 0:
        assert splits == 1
    elif g > 1 and Tk > 0:
        assert splits > 1 and (splits == g or B * Hkv * p["k_tiles"] * splits >= 2 * sms)
    for kind in ("fwd_smem", "dkdv_smem", "dq_smem"):
        assert p[kind] <= smem, kind
    # at least the staged tiles: forward Q, K (D) and V (Dv) rows plus the probabilities
    assert p["fwd_smem"] >= t * (2 * D + Dv + t) * nbytes
    # backward: K, Q, V, dO tiles (and P^T, dS^T for dK/dV)
    assert p["dkdv_smem"] >= t * (2 * D + 2 * Dv + 2 * t) * nbytes
    assert p["dq_smem"] >= t * (2 * D + 2 * Dv + t) * nbytes
    if t < (32 if nbytes == 8 else 64):  # a smaller tile only when the larger does not fit
        bigger = C._attention_plan(B, Hq, Hkv, Tq, Tk, D, Dv, nbytes, 10 ** 9, sms)
        assert max(bigger["fwd_smem"], bigger["dkdv_smem"], bigger["dq_smem"]) > smem


@requires_module
def test_attention_plan_errors():
    with pytest.raises(ValueError, match=r"^_attention_plan: CUDA flash attention supports head dims 1..128 "
                                         r"\(got D=129, Dv=64\)"):
        C._attention_plan(1, 1, 1, 4, 4, 129, 64, 4, H200_SMEM, 132)
    with pytest.raises(ValueError, match=r"Dv=200"):
        C._attention_plan(1, 1, 1, 4, 4, 64, 200, 4, H200_SMEM, 132)
    with pytest.raises(ValueError, match=r"need more shared memory than the device's 49152 bytes"):
        C._attention_plan(1, 1, 1, 4, 4, 128, 128, 8, 48 * 1024, 132)


@requires_module
@pytest.mark.parametrize("p, seed", [(0.1, 1234567), (0.5, 0), (0.9, 2 ** 64 - 1), (0.25, 2 ** 63 + 12345)])
def test_dropout_hash_matches_the_cpu_kernel(p, seed):
    # q = 0 makes every weight 1/Tk; v = identity then puts weight (i, j) in out[..., i, j],
    # so the CPU op's output reveals its keep mask.
    B, H, T = 2, 3, 23
    q = np.zeros((B, H, T, 4))
    k = np.random.default_rng(0).standard_normal((B, H, T, 4))
    v = np.broadcast_to(np.eye(T), (B, H, T, T)).copy()
    out = ops.attention_forward(q, k, v, dropout_p=p, seed=seed)[0]
    cpu_keep = out > 0
    np.testing.assert_allclose(out[cpu_keep], 1 / (T * (1 - p)), rtol=1e-12)
    assert (keep_mask(B, H, T, T, p, seed) == cpu_keep).all()
    assert 0.5 * (1 - p) < cpu_keep.mean() < 1.5 * (1 - p) + 0.05


@requires_module
def test_dropout_threshold_is_exact():
    # keep <=> uniform >= p: p = 0 keeps all; the keep fraction tracks 1 - p.
    assert all(C._dropout_keep(7, 0, 0, 0, j, 0.0) for j in range(100))
    kept = np.mean([C._dropout_keep(7, 1, 2, 3, j, 0.3) for j in range(4000)])
    assert abs(kept - 0.7) < 0.03


@requires_module
def test_attention_argument_errors_before_device_work():
    with pytest.raises(TypeError, match=r"^attention_forward: q is a numpy.ndarray"):
        C.attention_forward(np.ones((1, 1, 2, 4)), None, None)
    with pytest.raises(TypeError, match=r"^attention_forward: q must be a dlkern._C_cuda.DeviceArray, got list"):
        C.attention_forward([1.0], None, None, is_causal=True)
    with pytest.raises(TypeError, match=r"^attention_backward: grad_out must be a dlkern._C_cuda.DeviceArray, "
                                        r"got NoneType"):
        C.attention_backward(None, None, None, None, None, None)


@requires_module
def test_attention_ops_are_bound_with_the_cpu_signatures():
    import dlkern._C as CPU
    for name in ("attention_forward", "attention_backward"):
        ours, cpu = getattr(C, name).__doc__.splitlines()[0], getattr(CPU, name).__doc__.splitlines()[0]
        # pybind11 signature line: same parameter names, order and defaults
        params = lambda line: [p.split(":")[0].strip() + ("=" + p.split("=")[1].strip() if "=" in p else "")
                               for p in line[line.index("(") + 1:line.index(") ->")].split(", ")]
        assert params(ours) == params(cpu), (ours, cpu)


# ---------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------

SHAPES = [  # B, Hq, Hkv, Tq, Tk, D, Dv
    (2, 4, 2, 37, 37, 16, 16),       # GQA, one partial tile
    (1, 3, 1, 1, 1, 8, 8),           # T = 1, MQA
    (2, 2, 2, 70, 45, 32, 24),       # Tq > Tk (causal rows past Tk see every key)
    (1, 2, 2, 45, 130, 64, 64),      # Tq < Tk
    (1, 8, 2, 65, 65, 128, 128),     # largest head dim, T = tile + 1
    (1, 2, 1, 129, 131, 3, 5),       # odd head dims, several partial tiles
    (1, 1, 1, 200, 200, 64, 32),     # several causal tiles (skipping)
    (20, 4, 2, 450, 450, 16, 16),    # GQA with enough blocks that dK/dV heads are not split
]


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_backward_match_numpy(shape, causal, dtype):
    B, Hq, Hkv, Tq, Tk, D, Dv = shape
    rng = rng_for("fwd-bwd", shape, causal)
    q, k, v = inputs(rng, B, Hq, Hkv, Tq, Tk, D, Dv, dtype)
    dout = rng.standard_normal((B, Hq, Tq, Dv)).astype(dtype)
    out, lse = check_forward_backward(dev(q, k, v), C.from_numpy(dout), dout, ref_forward(q, k, v, causal=causal),
                                      dtype, is_causal=causal)
    assert out.shape == (B, Hq, Tq, Dv) and lse.shape == (B, Hq, Tq)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_matches_cpu_ops(causal, dtype):
    B, Hq, Hkv, Tq, Tk, D, Dv = 2, 6, 3, 77, 90, 40, 48
    rng = rng_for("cpu", causal)
    q, k, v = inputs(rng, B, Hq, Hkv, Tq, Tk, D, Dv, dtype)
    mask = rng.standard_normal((1, Hq, Tq, Tk)).astype(dtype)
    dout = rng.standard_normal((B, Hq, Tq, Dv)).astype(dtype)
    cpu_out, cpu_lse = ops.attention_forward(q, k, v, mask, causal, 0.2)
    cpu_grads = ops.attention_backward(dout, q, k, v, cpu_out, cpu_lse, mask, causal, 0.2)
    d = dev(q, k, v)
    dm = C.from_numpy(mask)
    out, lse = C.attention_forward(*d, dm, causal, 0.2)
    assert_close(out.numpy(), cpu_out.astype(np.float64), dtype, "out")
    assert_close(lse.numpy(), cpu_lse.astype(np.float64), dtype, "lse")
    grads = C.attention_backward(C.from_numpy(dout), *d, out, lse, dm, causal, 0.2)
    for name, got, want in zip(("dq", "dk", "dv"), grads, cpu_grads):
        assert_close(got.numpy(), want.astype(np.float64), dtype, name)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("mask_shape", [(19,), (1, 4, 1, 19), (2, 1, 13, 19), (2, 4, 13, 19), (13, 1)], ids=str)
def test_float_masks_broadcast(mask_shape, dtype):
    B, Hq, Hkv, Tq, Tk, D = 2, 4, 2, 13, 19, 16
    rng = rng_for("mask", mask_shape)
    q, k, v = inputs(rng, B, Hq, Hkv, Tq, Tk, D, D, dtype)
    mask = np.where(rng.uniform(size=mask_shape) < 0.3, -np.inf, rng.standard_normal(mask_shape)).astype(dtype)
    dout = rng.standard_normal((B, Hq, Tq, D)).astype(dtype)
    for causal in (False, True):
        want_out, want_lse, saved = ref_forward(q, k, v, mask, causal)
        d = dev(q, k, v)
        out, lse = C.attention_forward(*d, C.from_numpy(mask), causal)
        assert_close(out.numpy(), want_out, dtype, "out")
        got_lse = lse.numpy()
        assert (np.isneginf(got_lse) == np.isneginf(want_lse)).all()
        fin = np.isfinite(want_lse)
        assert_close(got_lse[fin], want_lse[fin], dtype, "lse")
        grads = C.attention_backward(C.from_numpy(dout), *d, out, lse, C.from_numpy(mask), causal)
        for name, got, want in zip(("dq", "dk", "dv"), grads, ref_backward(dout, saved)):
            assert_close(got.numpy(), want, dtype, name)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_fully_masked_rows_give_zero(dtype):
    B, Hq, Hkv, Tq, Tk, D = 1, 2, 1, 70, 70, 8
    rng = rng_for("masked-rows")
    q, k, v = inputs(rng, B, Hq, Hkv, Tq, Tk, D, D, dtype)
    mask = np.zeros((B, Hq, Tq, Tk), dtype)
    mask[0, 0, 5] = -np.inf   # row 5 of head 0 sees nothing
    mask[0, 1, 66] = -np.inf  # and a row in the second tile of head 1
    d = dev(q, k, v)
    out, lse = C.attention_forward(*d, C.from_numpy(mask))
    o, ls = out.numpy(), lse.numpy()
    assert not np.isnan(o).any() and not o[0, 0, 5].any() and not o[0, 1, 66].any()
    assert np.isneginf(ls[0, 0, 5]) and np.isneginf(ls[0, 1, 66]) and np.isfinite(np.delete(ls[0, 0], 5)).all()
    cpu_out, cpu_lse = ops.attention_forward(q, k, v, mask)
    assert_close(o, cpu_out.astype(np.float64), dtype, "out")
    dout = rng.standard_normal(o.shape).astype(dtype)
    dq, dk, dv = (g.numpy() for g in C.attention_backward(C.from_numpy(dout), *d, out, lse, C.from_numpy(mask)))
    assert not any(np.isnan(g).any() for g in (dq, dk, dv))
    assert not dq[0, 0, 5].any() and not dq[0, 1, 66].any()
    cpu = ops.attention_backward(dout, q, k, v, cpu_out, cpu_lse, mask)
    for name, got, want in zip(("dq", "dk", "dv"), (dq, dk, dv), cpu):
        assert_close(got, want.astype(np.float64), dtype, name)


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_no_keys_and_no_queries(dtype):
    q = C.from_numpy(np.ones((1, 2, 3, 4), dtype))
    kv = C.from_numpy(np.ones((1, 1, 0, 4), dtype))
    out, lse = C.attention_forward(q, kv, kv)
    assert out.shape == (1, 2, 3, 4) and not out.numpy().any() and np.isneginf(lse.numpy()).all()
    dq, dk, dv = C.attention_backward(C.from_numpy(np.ones((1, 2, 3, 4), dtype)), q, kv, kv, out, lse)
    assert dq.shape == (1, 2, 3, 4) and not dq.numpy().any() and dk.shape == dv.shape == (1, 1, 0, 4)
    q0 = C.from_numpy(np.ones((1, 2, 0, 4), dtype))
    k = C.from_numpy(np.ones((1, 1, 5, 4), dtype))
    out, lse = C.attention_forward(q0, k, k)
    assert out.shape == (1, 2, 0, 4) and lse.shape == (1, 2, 0)
    dq, dk, dv = C.attention_backward(out, q0, k, k, out, lse)
    assert dq.shape == (1, 2, 0, 4) and not dk.numpy().any() and not dv.numpy().any()


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_strided_views_and_scale(dtype):
    B, H, T, D = 2, 3, 41, 24
    rng = rng_for("strided")
    x = rng.standard_normal((B, T, H, 3 * D)).astype(dtype)  # fused (B, T, H, q|k|v) projections
    q, k, v = x[..., :D], x[..., D:2 * D], x[..., 2 * D:]
    # (B, T, H, D) -> (B, H, T, D) views of the fused array with a unit last stride, read in place
    dx = C.from_numpy(x)
    sb, st, sh, _ = dx.strides
    dq_ = dx.as_strided((B, H, T, D), (sb, sh, st, 1), 0)
    dk_ = dx.as_strided((B, H, T, D), (sb, sh, st, 1), D)
    # v with a non-unit last stride: (B, H, D, T) transposed (copied once by the binding)
    dv_ = C.from_numpy(np.ascontiguousarray(v.transpose(0, 2, 3, 1))).permute(0, 1, 3, 2)
    assert dv_.strides[-1] != 1
    qh, kh, vh = (a.transpose(0, 2, 1, 3) for a in (q, k, v))
    dout = rng.standard_normal((B, H, T, D)).astype(dtype)
    ddout = C.from_numpy(np.ascontiguousarray(dout.transpose(0, 2, 1, 3))).permute(0, 2, 1, 3)
    for causal in (False, True):
        # the backward reads the output through a (B, T, H, D) -> (B, H, T, D) view
        check_forward_backward((dq_, dk_, dv_), ddout, dout, ref_forward(qh, kh, vh, causal=causal, scale=0.37),
                               dtype, None, causal, 0.37, out_view=lambda out: C.from_numpy(
                                   np.ascontiguousarray(out.numpy().transpose(0, 2, 1, 3))).permute(0, 2, 1, 3))


@requires_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dropout_matches_cpu_and_numpy(causal, dtype):
    B, Hq, Hkv, Tq, Tk, D, p, seed = 2, 4, 2, 21, 70, 16, 0.3, 99
    rng = rng_for("dropout", causal)
    q, k, v = inputs(rng, B, Hq, Hkv, Tq, Tk, D, D, dtype)
    dout = rng.standard_normal((B, Hq, Tq, D)).astype(dtype)
    d = dev(q, k, v)
    out, lse = C.attention_forward(*d, None, causal, None, p, seed)
    cpu_out, cpu_lse = ops.attention_forward(q, k, v, None, causal, None, p, seed)
    assert_close(out.numpy(), cpu_out.astype(np.float64), dtype, "out vs CPU")
    assert_close(lse.numpy(), cpu_lse.astype(np.float64), dtype, "lse vs CPU")
    keep = keep_mask(B, Hq, Tq, Tk, p, seed)
    want_out, want_lse, saved = ref_forward(q, k, v, causal=causal, keep=keep, p=p)
    assert_close(out.numpy(), want_out, dtype, "out vs NumPy")
    grads = C.attention_backward(C.from_numpy(dout), *d, out, lse, None, causal, None, p, seed)
    cpu_grads = ops.attention_backward(dout, q, k, v, cpu_out, cpu_lse, None, causal, None, p, seed)
    for name, got, want_cpu, want in zip(("dq", "dk", "dv"), grads, cpu_grads, ref_backward(dout, saved)):
        assert_close(got.numpy(), want_cpu.astype(np.float64), dtype, name + " vs CPU")
        assert_close(got.numpy(), want, dtype, name + " vs NumPy")
    # another seed drops other elements
    other = C.attention_forward(*d, None, causal, None, p, seed + 1)[0].numpy()
    assert np.abs(other - out.numpy()).max() > 1e-3


@requires_gpu
def test_attention_errors():
    f32 = lambda *s: C.zeros(s, np.float32)  # noqa: E731
    q, kv = f32(1, 3, 2, 4), f32(1, 2, 8, 4)
    with pytest.raises(ValueError, match=r"^attention_forward: q has 3 heads .* not a multiple of the 2 kv heads"):
        C.attention_forward(q, kv, kv)
    q = f32(1, 2, 2, 4)
    with pytest.raises(ValueError, match=r"^attention_forward: head_dim mismatch"):
        C.attention_forward(q, f32(1, 2, 8, 5), kv)
    with pytest.raises(ValueError, match=r"^attention_forward: k has shape \(1, 2, 8, 4\) but v has shape"):
        C.attention_forward(q, kv, f32(1, 2, 7, 4))
    with pytest.raises(ValueError, match=r"^attention_forward: q must be 4-D"):
        C.attention_forward(f32(2, 2, 4), kv, kv)
    with pytest.raises(TypeError, match=r"^attention_forward: k has dtype float64 but q has dtype float32"):
        C.attention_forward(q, C.zeros((1, 2, 8, 4), np.float64), kv)
    with pytest.raises(TypeError, match=r"^attention_forward: q has dtype int64"):
        C.attention_forward(C.zeros((1, 2, 2, 4), np.int64), kv, kv)
    with pytest.raises(ValueError, match=r"^attention_forward: CUDA attention_forward supports head dims up to 128 "
                                         r"\(got D=130, Dv=4\)"):
        C.attention_forward(f32(1, 1, 2, 130), f32(1, 1, 3, 130), f32(1, 1, 3, 4))
    with pytest.raises(TypeError, match=r"^attention_forward: attn_mask has dtype float64; on CUDA it must be a float "
                                        r"mask of q's dtype float32"):
        C.attention_forward(q, kv, kv, C.zeros((8,), np.float64))
    with pytest.raises(ValueError, match=r"^attention_forward: attn_mask of shape \(3, 8\) is not broadcastable"):
        C.attention_forward(q, kv, kv, f32(3, 8))
    with pytest.raises(ValueError, match=r"^attention_forward: dropout_p must be in \[0, 1\), got 1"):
        C.attention_forward(q, kv, kv, dropout_p=1.0)
    out, lse = C.attention_forward(q, kv, kv)
    with pytest.raises(ValueError, match=r"^attention_backward: lse has shape \(1, 2\), expected \(1, 2, 2\)"):
        C.attention_backward(out, q, kv, kv, out, f32(1, 2))
    with pytest.raises(ValueError, match=r"^attention_backward: grad_out has shape \(1, 2, 2, 3\), expected"):
        C.attention_backward(f32(1, 2, 2, 3), q, kv, kv, out, lse)
    with pytest.raises(TypeError, match=r"^attention_backward: out has dtype float64"):
        C.attention_backward(out, q, kv, kv, C.zeros((1, 2, 2, 4), np.float64), lse)


@requires_gpu
def test_repeated_calls_are_deterministic():
    # dQ, dK and dV each have one writer (no atomics): bitwise equal run to run.
    rng = rng_for("determinism")
    q, k, v = inputs(rng, 2, 4, 1, 150, 150, 32, 32, np.float32)
    dout = C.from_numpy(rng.standard_normal((2, 4, 150, 32)).astype(np.float32))
    d = dev(q, k, v)
    runs = []
    for _ in range(2):
        out, lse = C.attention_forward(*d, is_causal=True)
        runs.append([out.numpy()] + [g.numpy() for g in C.attention_backward(dout, *d, out, lse, is_causal=True)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
