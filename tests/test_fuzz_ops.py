"""Property-based fuzz suite for every public op of dlkern.ops.

For each op (fuzz_specs.BUILDERS), hypothesis draws:
  * valid calls -- shapes with 0/1/odd/prime sizes, float32/float64, contiguous,
    Fortran, transposed, strided, negative-stride, zero-stride broadcast, read-only and
    misaligned views, every ISA path and 1 or 2 threads -- compared with a float64
    NumPy reference (fuzz_refs); inputs must come back unmodified unless documented
    as in place;
  * invalid calls -- wrong ndim/dtype/shape, mixed dtypes, non-arrays, bad or huge
    geometry -- which must raise TypeError or ValueError naming the op.

The seed is random per run (printed in the header and under failures); replay with
DLKERN_FUZZ_SEED=<seed>. DLKERN_FUZZ_PROFILE=dev (default) | ci | smoke sets the
example counts. A crashing kernel takes the process down: tests/fuzz_isolated.py runs
this file in subprocesses and names the crashing test and its seed.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import dlkern
import fuzz_refs as ref
import fuzz_seed
from fuzz_cases import F32, F64, assert_unchanged, close, kernel_env, op_names, snapshot, trace
from fuzz_specs import BUILDERS

ops = dlkern.ops

_COMMON = dict(deadline=None, derandomize=False, database=None, print_blob=True,
               suppress_health_check=list(HealthCheck))
settings.register_profile("smoke", max_examples=5, **_COMMON)
settings.register_profile("dev", max_examples=12, **_COMMON)
settings.register_profile("ci", max_examples=150, **_COMMON)
PROFILE = settings.get_profile(fuzz_seed.PROFILE)


def fuzz(fn):
    """given(data) under the run's profile and seed."""
    return seed(fuzz_seed.SEED)(PROFILE(given(data=st.data())(fn)))


OPS = sorted(BUILDERS)


@pytest.fixture(autouse=True)
def _trace_test(request):
    trace(request.node.nodeid, "test starts", {})


def test_every_public_op_is_fuzzed():
    missing = sorted(set(ops.__all__) - set(BUILDERS))
    assert not missing, f"public ops without a fuzz case builder in tests/fuzz_specs.py: {missing}"
    stale = sorted(set(BUILDERS) - set(ops.__all__))
    assert not stale, f"fuzz builders for names not in dlkern.ops.__all__: {stale}"


@pytest.mark.parametrize("name", OPS)
@fuzz
def test_fuzz_valid(name, data):
    case = BUILDERS[name](data)
    before = snapshot(case.kwargs, skip=case.inplace)
    trace(name, "valid", case.kwargs)
    try:
        with kernel_env(data):
            result = case.call(case.kwargs)
    except (TypeError, ValueError) as exc:
        if case.extreme and any(n in str(exc) for n in op_names(name)):
            return  # int64-sized geometry may be refused cleanly
        raise
    case.check(result)
    assert_unchanged(name, case.kwargs, before)


def _short(exc):
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


@pytest.mark.parametrize("name", OPS)
@fuzz
def test_fuzz_invalid(name, data):
    """Every invalid variant of a drawn valid call raises TypeError/ValueError naming the op."""
    case = BUILDERS[name](data)
    problems = []
    with kernel_env(data):
        for label, override in sorted(case.mutations().items()):
            kwargs = dict(case.kwargs, **override)
            trace(name, label, kwargs)
            try:
                case.call(kwargs)
            except (TypeError, ValueError) as exc:
                if not any(n in str(exc) for n in op_names(name)):
                    problems.append(f"[{label}] message does not name {name}: {_short(exc)}")
            except Exception as exc:  # noqa: BLE001 -- anything else is the defect being reported
                problems.append(f"[{label}] raised {_short(exc)} (expected TypeError or ValueError)")
            else:
                problems.append(f"[{label}] was accepted")
    assert not problems, f"{name}: {len(problems)} invalid call(s) mishandled:\n  " + "\n  ".join(problems)


# ----------------------------------------------------------------------------- properties beyond the table


@fuzz
def test_fuzz_attention_dropout(data):
    """Dropout: the same seed gives the same output (any thread count/ISA); lse is the
    log-sum-exp of the undropped scores; the backward is the derivative of the forward
    with the same seed (central differences, float64)."""
    b, h, tq, tk, d = (data.draw(st.integers(1, n)) for n in (2, 2, 5, 7, 4))
    r = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    q, k, v = (r.standard_normal(s) for s in ((b, h, tq, d), (b, h, tk, d), (b, h, tk, d)))
    p = data.draw(st.sampled_from([0.1, 0.5, 0.9]))
    dseed = data.draw(st.integers(0, 2 ** 64 - 1))
    causal = data.draw(st.booleans())
    kw = dict(is_causal=causal, dropout_p=p, seed=dseed)
    with kernel_env(data):
        out, lse = ops.attention_forward(q, k, v, **kw)
    out2, lse2 = ops.attention_forward(q, k, v, **kw)
    np.testing.assert_allclose(out, out2, rtol=1e-12, atol=1e-12, err_msg="dropout mask not reproducible")
    _, lse_ref, _ = ref.attention(q, k, v, None, 0 if causal else None, None)
    close("attention_forward lse with dropout", lse, lse_ref, F64, 1 + math.sqrt(d) * 4)
    g = r.standard_normal(out.shape)
    dq, dk, dv = ops.attention_backward(g, q, k, v, out, lse, **kw)
    h_ = 1e-6
    for name, x, dx in (("q", q, dq), ("k", k, dk), ("v", v, dv)):
        direction = r.standard_normal(x.shape)
        args = dict(q=q, k=k, v=v)
        args[name] = x + h_ * direction
        up = np.sum(ops.attention_forward(**args, **kw)[0] * g)
        args[name] = x - h_ * direction
        down = np.sum(ops.attention_forward(**args, **kw)[0] * g)
        numeric, analytic = (up - down) / (2 * h_), np.sum(dx * direction)
        assert abs(numeric - analytic) <= 1e-5 * (1 + abs(numeric)), (
            f"attention_backward d{name} with dropout: {analytic} vs finite differences {numeric}")


@fuzz
def test_fuzz_rope_any_offset(data):
    """rope at any valid offset (0 .. 2**63-T: positions are int64 and never negative) runs,
    stays finite and is a rotation: each (i, i + D/2) pair keeps its length; rope_backward
    undoes it."""
    dt = data.draw(st.sampled_from([F32, F64]))
    t, half = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 8))
    offset = data.draw(st.one_of(st.sampled_from([2 ** 63 - 1, 2 ** 62, 2 ** 53 + 1, 0]),
                                 st.integers(0, 2 ** 63 - 1)))
    offset = min(offset, 2 ** 63 - t)  # positions offset..offset+T-1 must be int64
    r = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    x = r.uniform(-1, 1, (2, t, 2 * half)).astype(dt)
    with kernel_env(data):
        y = ops.rope(x, offset)
    assert y.dtype == dt and y.shape == x.shape and np.isfinite(y).all()
    norm = lambda a: np.hypot(a[..., :half].astype(F64), a[..., half:].astype(F64))  # noqa: E731
    tol = 64 * float(np.finfo(dt).eps)
    np.testing.assert_allclose(norm(y), norm(x), rtol=tol, atol=tol, err_msg=f"rope at offset {offset} is no rotation")
    close("rope_backward(rope(x))", ops.rope_backward(y, offset), x, dt, 1.0)


# ----------------------------------------------------------------------------- the oracle's own check


def _vjp_check(name, f, args, which, grads, r):
    """grads[i] must be the gradient of sum(f(*args) * w) w.r.t. args[which[i]], where w
    is the cotangent grads were computed with (checked along a random direction)."""
    h = 1e-6
    for i, g in zip(which, grads):
        d = r.standard_normal(np.shape(args[i]))
        up = list(args)
        up[i] = args[i] + h * d
        down = list(args)
        down[i] = args[i] - h * d
        numeric = (np.sum(f(*up)) - np.sum(f(*down))) / (2 * h)
        analytic = np.sum(g * d)
        assert abs(numeric - analytic) <= 1e-6 * (1 + abs(numeric)), (
            f"reference adjoint {name}, input {i}: {analytic} vs finite differences {numeric}")


@pytest.mark.parametrize("case", range(3))
def test_reference_adjoints(case):
    """Every backward reference in fuzz_refs is the adjoint of its forward."""
    r = np.random.default_rng(fuzz_seed.SEED + case)
    n = lambda *s: r.standard_normal(s)  # noqa: E731

    x, w, b = n(2, 4, 5, 6), n(3, 2, 2, 3), n(3)
    geo = ((2, 1), ((1, 2), (0, 1)), (1, 2), 2)
    y = ref.conv2d(x, w, b, *geo)
    cot = n(*y.shape)
    _vjp_check("conv2d", lambda x, w, b: ref.conv2d(x, w, b, *geo) * cot, [x, w, b], [0, 1, 2],
               ref.conv2d_backward(cot, x, w, *geo), r)

    x, w, b = n(2, 4, 9), n(6, 2, 3), n(6)
    for dil in (1, 2, 5):
        y = ref.causal_conv1d(x, w, b, dil, 2)
        np.testing.assert_allclose(y, ref.conv1d(x, w, b, 1, (2 * dil, 0), dil, 2), rtol=1e-12, atol=1e-12)
        cot = n(*y.shape)
        _vjp_check("causal_conv1d", lambda x, w, b: ref.causal_conv1d(x, w, b, dil, 2) * cot, [x, w, b], [0, 1, 2],
                   ref.causal_conv1d_backward(cot, x, w, dil, 2), r)

    x = n(2, 3, 7, 6)
    pool = ((3, 2), (2, 2), (1, 1), True, case == 1, [None, 2, None][case])
    cot = n(*ref.avg_pool2d(x, *pool).shape)
    _vjp_check("avg_pool2d", lambda x: ref.avg_pool2d(x, *pool) * cot, [x], [0],
               [ref.avg_pool2d_backward(cot, x.shape, *pool)], r)
    cot = n(2, 3, 3, 4)
    _vjp_check("adaptive_avg_pool2d", lambda x: ref.adaptive_avg_pool2d(x, (3, 4)) * cot, [x], [0],
               [ref.adaptive_avg_pool2d_backward(cot, x.shape)], r)
    y, idx = ref.max_pool2d(x, (2, 2), (2, 1), (1, 0), (1, 2), False)
    cot = n(*y.shape)
    _vjp_check("max_pool2d", lambda x: ref.max_pool2d(x, (2, 2), (2, 1), (1, 0), (1, 2), False)[0] * cot, [x], [0],
               [ref.max_pool2d_backward(cot, idx, x.shape)], r)

    x = n(3, 4, 5)
    for dim in (0, -1):
        cot = n(*x.shape)
        _vjp_check("softmax", lambda x: ref.softmax(x, dim) * cot, [x], [0],
                   [ref.softmax_backward(cot, ref.softmax(x, dim), dim)], r)
        _vjp_check("log_softmax", lambda x: ref.log_softmax(x, dim) * cot, [x], [0],
                   [ref.log_softmax_backward(cot, ref.log_softmax(x, dim), dim)], r)

    x, w, b, cot = n(3, 4, 5), n(4, 5), n(4, 5), n(3, 4, 5)
    _, mean, rstd = ref.layer_norm(x, 2, w, b, 0.1)
    _vjp_check("layer_norm", lambda x, w, b: ref.layer_norm(x, 2, w, b, 0.1)[0] * cot, [x, w, b], [0, 1, 2],
               ref.layer_norm_backward(cot, x, 2, w, mean, rstd), r)
    _, rstd = ref.rms_norm(x, 1, w[0], 0.1)
    _vjp_check("rms_norm", lambda x, w: ref.rms_norm(x, 1, w, 0.1)[0] * cot, [x, w[0]], [0, 1],
               ref.rms_norm_backward(cot, x, 1, w[0], rstd), r)
    x, w, b, cot = n(2, 6, 3, 2), n(6), n(6), n(2, 6, 3, 2)
    _, mean, rstd = ref.group_norm(x, 3, w, b, 0.1)
    _vjp_check("group_norm", lambda x, w, b: ref.group_norm(x, 3, w, b, 0.1)[0] * cot, [x, w, b], [0, 1, 2],
               ref.group_norm_backward(cot, x, 3, w, mean, rstd), r)
    _, mean, rstd, _, _ = ref.batch_norm(x, None, None, w, b, True, 0.1, 0.1)
    _vjp_check("batch_norm", lambda x, w, b: ref.batch_norm(x, None, None, w, b, True, 0.1, 0.1)[0] * cot,
               [x, w, b], [0, 1, 2], ref.batch_norm_backward(cot, x, w, mean, rstd, True), r)
    rm, rv = n(6), np.abs(n(6)) + 0.5
    _, mean, rstd, _, _ = ref.batch_norm(x, rm, rv, w, b, False, 0.1, 0.1)
    _vjp_check("batch_norm eval", lambda x, w, b: ref.batch_norm(x, rm, rv, w, b, False, 0.1, 0.1)[0] * cot,
               [x, w, b], [0, 1, 2], ref.batch_norm_backward(cot, x, w, mean, rstd, False), r)

    x, wt = n(4, 5, 3), np.abs(n(5)) + 0.1
    t = r.integers(0, 5, (4, 3))
    t[0, 0] = -100
    for red in ("none", "sum", "mean"):
        cot = n(4, 3) if red == "none" else np.asarray(1.7)
        _vjp_check(f"cross_entropy {red}", lambda x: ref.cross_entropy(x, t, wt, -100, red, 0.2)[0] * cot, [x], [0],
                   [ref.cross_entropy_backward(cot, x, t, wt, -100, red, 0.2)], r)

    q, k, v = n(2, 4, 5, 3), n(2, 2, 6, 3), n(2, 2, 6, 2)
    mask = r.random((5, 6)) < 0.7
    cot = n(2, 4, 5, 2)
    for m, off in ((None, 0), (mask, None), (n(5, 6), 1)):
        _vjp_check("attention", lambda q, k, v: ref.attention(q, k, v, m, off, 0.7)[0] * cot, [q, k, v], [0, 1, 2],
                   ref.attention_backward(cot, q, k, v, m, off, 0.7), r)

    x, cot = n(2, 5, 6), n(2, 5, 6)
    _vjp_check("rope", lambda x: ref.rope(x, 3, 100.0) * cot, [x], [0], [ref.rope(cot, 3, 100.0, inverse=True)], r)
    _vjp_check("gelu_tanh", lambda x: ref.gelu_tanh(x) * cot, [x], [0], [ref.gelu_tanh_backward(cot, x)], r)

    gates, c_prev, dh, dc = n(3, 20), n(3, 5), n(3, 5), n(3, 5)
    _, c, act = ref.lstm_cell_forward(gates, c_prev)
    _vjp_check("lstm_cell", lambda g, cp: sum(y * w for y, w in zip(ref.lstm_cell_forward(g, cp)[:2], (dh, dc))),
               [gates, c_prev], [0, 1], ref.lstm_cell_backward(dh, dc, act, c_prev, c), r)
    gi, gh, h_prev = n(3, 15), n(3, 15), n(3, 5)
    _, saved = ref.gru_cell_forward(gi, gh, h_prev)
    _vjp_check("gru_cell", lambda gi, gh, hp: ref.gru_cell_forward(gi, gh, hp)[0] * dh, [gi, gh, h_prev], [0, 1, 2],
               ref.gru_cell_backward(dh, saved, h_prev), r)


# ----------------------------------------------------------------------------- named regressions
# Minimal reproducers of defects the fuzzer found; each also lies inside the drawn space
# above. Some crash the process until fixed: run tests/fuzz_isolated.py to see them all.


def test_regression_conv1d_large_dilation_next_to_input():
    # Heap corruption (free(): invalid next size) when dilation*(K-1) nearly spans the padded input.
    x, w = np.ones((1, 1, 1), np.float32), np.ones((1, 1, 2), np.float32)
    y = ops.conv1d(x, w, padding=50, dilation=100)
    np.testing.assert_array_equal(y, ref.conv1d(x, w, None, 1, (50, 50), 100, 1).astype(np.float32))


def test_regression_conv2d_large_dilation_next_to_input():
    x, w = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 2, 2), np.float32)
    y = ops.conv2d(x, w, padding=50, dilation=100)
    np.testing.assert_array_equal(y, ref.conv2d(x, w, None, (1, 1), ((50, 50),) * 2, (100, 100), 1))


def test_regression_causal_conv1d_large_dilation():
    x, w = np.ones((1, 1, 1), np.float32), np.ones((1, 1, 2), np.float32)
    y = ops.causal_conv1d(x, w, dilation=100)
    np.testing.assert_array_equal(y, ref.conv1d(x, w, None, 1, (100, 0), 100, 1))


def test_regression_kv_cache_append_offset_overflow():
    cache, new = np.zeros((1, 1, 4, 2), np.float32), np.ones((1, 1, 1, 2), np.float32)
    with pytest.raises(ValueError, match="kv_cache_append"):
        ops.kv_cache_append(cache, new, 2 ** 63 - 1)
    assert not cache.any()


def test_regression_causal_attention_masked_nan_does_not_leak():
    q = k = np.ones((1, 1, 2, 1), np.float32)
    v = np.array([1.0, np.nan], np.float32).reshape(1, 1, 2, 1)
    out, lse = ops.attention_forward(q, k, v, is_causal=True)
    assert np.isfinite(out[0, 0, 0]).all(), f"row 0 sees only key 0 but got {out[0, 0, 0]}"
    assert np.isfinite(lse[0, 0, 0])


@pytest.mark.parametrize("op", [ops.softmax, ops.log_softmax])
def test_regression_softmax_all_nan_slice_is_nan(op):
    y = op(np.full((2, 3), np.nan, np.float32))
    assert np.isnan(y).all(), f"{op.__name__} of an all-NaN slice gave {y}"


@pytest.mark.parametrize("call", [
    lambda z: ops.attention_forward(z, z, z),
    lambda z: ops.attention_backward(z, z, z, z, z, z),
    lambda z: ops.decode_attention(z, z, z, 1),
    lambda z: ops.kv_cache_append(z, z, 0),
    lambda z: ops.rope(z),
], ids=["attention_forward", "attention_backward", "decode_attention", "kv_cache_append", "rope"])
def test_regression_attention_ops_reject_0d(call):
    with pytest.raises(ValueError):
        call(np.ones((), np.float32))


# Found by this suite (beyond the defects known when it was written).


def test_regression_gemm_empty_m():
    # ValueError "c must have unit stride along its last axis (got 0 bytes)" although c is
    # not given: the (0, n) result numpy allocates has zero strides.
    y = ops.gemm(np.ones((0, 1), np.float32), np.ones((1, 2), np.float32))
    assert y.shape == (0, 2) and y.dtype == np.float32


def test_regression_conv1d_huge_stride_with_padding():
    # stride 2**63-1 with padding read outside x (4.6e-44 instead of 0). Strides past the
    # documented 2**31 limit are now refused by name; the largest allowed one still
    # computes the padding-only output exactly.
    x = w = np.ones((1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="conv1d: stride"):
        ops.conv1d(x, w, stride=2 ** 63 - 1, padding=2)
    y = ops.conv1d(x, w, stride=2 ** 31, padding=2)
    np.testing.assert_array_equal(y, np.zeros((1, 1, 1), np.float32))


def test_regression_conv1d_backward_huge_stride_with_padding():
    # Garbage dweight (4.6e-44) and "double free or corruption (!prev)" at exit.
    one = np.ones((1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="conv1d_backward: stride"):
        ops.conv1d_backward(one, one, one, stride=2 ** 63 - 1, padding=2)
    dx, dw, db = ops.conv1d_backward(one, one, one, stride=2 ** 31, padding=2)
    np.testing.assert_array_equal(dx, np.zeros_like(one))
    np.testing.assert_array_equal(dw, np.zeros_like(one))
    np.testing.assert_array_equal(db, np.ones(1, np.float32))


def test_regression_causal_conv1d_int64_dilation():
    # (K-1)*dilation = 2**63-1 of causal padding: SIGSEGV. Only the last tap sees x.
    x, w = np.ones((1, 1, 1), np.float32), np.full((1, 1, 2), 3.0, np.float32)
    try:
        y = ops.causal_conv1d(x, w, dilation=2 ** 63 - 1)
    except ValueError as exc:  # refusing an int64-sized padding cleanly is fine too
        assert "causal_conv1d" in str(exc)
        return
    np.testing.assert_array_equal(y, np.full((1, 1, 1), 3.0, np.float32))


def test_regression_cross_entropy_backward_unbatched_out_shape():
    # For input (C,), out must have shape (C,); an out of shape (1, C) was accepted.
    x, t = np.array([0.5, -1.0, 2.0], np.float32), np.array(1)
    _, lse = ops.cross_entropy_forward(x, t)
    with pytest.raises(ValueError, match="cross_entropy_backward"):
        ops.cross_entropy_backward(1.0, x, t, lse, out=np.zeros((1, 3), np.float32))


def test_regression_group_norm_rejects_fractional_groups():
    # num_groups=1.5 was silently truncated to 1 (int(1.5)).
    with pytest.raises(TypeError, match="group_norm"):
        ops.group_norm(np.ones((1, 2, 3), np.float32), 1.5)


@pytest.mark.parametrize("op, call", [
    ("layer_norm", lambda: ops.layer_norm(np.ones((2, 3), np.float32), None)),
    ("layer_norm", lambda: ops.layer_norm(np.ones((2, 3), np.float32), 3, eps=None)),
    ("rms_norm", lambda: ops.rms_norm(np.ones((2, 3), np.float32), "ab")),
    ("group_norm", lambda: ops.group_norm(np.ones((1, 2, 3), np.float32), None)),
    ("batch_norm", lambda: ops.batch_norm(np.ones((2, 3), np.float32), None, None, training=True, eps=None)),
    ("rope", lambda: ops.rope(np.ones((2, 4), np.float32), base=None)),
    ("attention_forward", lambda: ops.attention_forward(*(np.ones((1, 1, 1, 1), np.float32),) * 3, dropout_p="x")),
    ("conv1d", lambda: ops.conv1d(np.ones((1, 1, 1), np.float32), np.ones((1, 1, 1), np.float32), padding=2 ** 40)),
    ("adaptive_avg_pool2d", lambda: ops.adaptive_avg_pool2d(np.ones((1, 1, 1, 1), np.float32), 2 ** 62)),
    ("max_pool2d_backward", lambda: ops.max_pool2d_backward(np.ones((1, 1, 1, 1), np.float32),
                                                            np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2 ** 62, 2 ** 62))),
], ids=["layer_norm-shape-None", "layer_norm-eps-None", "rms_norm-shape-str", "group_norm-groups-None",
        "batch_norm-eps-None", "rope-base-None", "attention-dropout-str",
        "conv1d-padding-2**40", "adaptive-output-2**62", "max_pool2d_backward-shape-2**62"])
def test_regression_bad_arguments_name_the_op(op, call):
    # Python-side int()/float() conversions, pybind11 overload errors and numpy's
    # "array is too big" escaped without the op's name (or as MemoryError).
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert op in str(info.value), f"{type(info.value).__name__} without the op name: {info.value}"


def test_regression_conv_span_equal_to_padded_input_one_thread():
    # With 1 thread and N >= 2, a kernel span (dilation*(K-1)+1) equal to the padded length
    # zeroes sample 0's output: got [0, 20] instead of [10, 20] (2 threads are right).
    # Probably the same defect as the heap corruption above, seen without a crash.
    x = np.array([1.0, 2.0], np.float32).reshape(2, 1, 1)
    w = np.array([1.0, 10.0, 100.0], np.float32).reshape(1, 1, 3)
    prev = dlkern.get_num_threads()
    dlkern.set_num_threads(1)
    try:
        y1 = ops.conv1d(x, w, padding=2, dilation=2)
        y2 = ops.conv2d(x[..., None], w[..., None], padding=(2, 0), dilation=(2, 1))
    finally:
        dlkern.set_num_threads(prev)
    np.testing.assert_array_equal(y1.ravel(), [10.0, 20.0])
    np.testing.assert_array_equal(y2.ravel(), [10.0, 20.0])


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_regression_bool_mask_masked_value_does_not_leak(value):
    # A key masked out by a bool attn_mask (False) still multiplies its value by 0:
    # NaN/inf there turns the output NaN (attention_forward and decode_attention).
    q, k = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 2, 1), np.float32)
    v = np.array([value, 0.5], np.float32).reshape(1, 1, 2, 1)
    mask = np.array([[False, True]])
    out, _ = ops.attention_forward(q, k, v, attn_mask=mask)
    np.testing.assert_array_equal(out.ravel(), [0.5])
    np.testing.assert_array_equal(ops.decode_attention(q, k, v, 2, attn_mask=mask).ravel(), [0.5])
