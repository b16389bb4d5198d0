"""The recurrent cells' pointwise kernels (csrc/cpu/rnn.h, dlkern.ops.rnn): the gate
activations' accuracy over a dense sweep on every ISA path and 1 and 2 threads (against
sigmoid and tanh written here in float64), NaN/inf propagation, thread-count independence,
strided inputs, the argument errors, the CUDA namespace's composition on the host twin and
PyTorch parity (torch.lstm_cell / torch.gru_cell and their autograd). The op table
(tests/op_table.py rows lstm_cell, lstm_cell_c, gru_cell) checks the four kernels against
dlkern.reference over 0/1/odd/prime shapes and their gradients by finite differences."""

import numpy as np
import pytest

import dlkern
from dlkern import ops
from dlkern import reference as R
from dlkern.device import CUDADevice

import host_cuda


def sigmoid64(x):
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))  # never overflows: the two branches of the logistic function
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sweep(dtype):
    lin = np.linspace(-20, 20, 200001)
    tiny = np.geomspace(1e-30 if dtype == np.float32 else 1e-300, 1, 2001)
    big = np.array([30.0, 50.0, 87.0, 100.0, 700.0, 1e4, 3e38])
    x = np.concatenate([lin, tiny, -tiny, big, -big, [0.0, -0.0, 0.5, -0.5, np.nextafter(0.5, 0)]]).astype(dtype)
    return x


# Relative error bounds of the activations: float32 ~1.5e-7 measured (a little over one
# ulp), float64 a few ulp (the C library's exp and tanh).
REL_TOL = {np.float32: 1e-6, np.float64: 4e-15}


def _rel_err(got, want, floor):
    got = got.astype(np.float64)
    return np.abs(got - want) / np.maximum(np.abs(want), floor)


def test_gate_activations_accuracy(isa, threads, dtype):
    x = sweep(dtype)
    h = x.size
    # every gate block sees the whole sweep
    _, _, act = ops.lstm_cell_forward(np.tile(x, 4).reshape(1, -1), np.zeros((1, h), dtype))
    x64 = x.astype(np.float64)
    s, t = sigmoid64(x64), np.tanh(x64)
    # Below float32's normal range the sigmoid is compared absolutely (exp underflows there).
    floor = 1e-37 if dtype == np.float32 else 1e-300
    for k, (name, want) in enumerate(zip(("sigmoid(i)", "sigmoid(f)", "tanh(g)", "sigmoid(o)"), (s, s, t, s))):
        got = act[0, k * h:(k + 1) * h]
        err = _rel_err(got, want, floor)
        worst = int(np.argmax(err))
        assert err[worst] <= REL_TOL[dtype], f"{name} at x={x[worst]!r}: got {got[worst]!r}, want {want[worst]!r}"
    # Down through the subnormal range the sigmoid keeps its value (as PyTorch) instead of
    # flushing to 0: within the relative bound, or two units of the smallest subnormal
    # where that is looser; it reaches 0 only where the true value rounds to 0.
    tiny = np.finfo(dtype).smallest_subnormal
    deep = -np.linspace(80 if dtype == np.float32 else 700, 104 if dtype == np.float32 else 745, 2001)
    _, _, act = ops.lstm_cell_forward(np.tile(deep.astype(dtype), 4).reshape(1, -1), np.zeros((1, deep.size), dtype))
    want = sigmoid64(deep.astype(dtype).astype(np.float64))
    got = act[0, :deep.size].astype(np.float64)
    bound = np.maximum(REL_TOL[dtype] * want, 2 * float(tiny))
    worst = int(np.argmax(np.abs(got - want) / bound))
    assert abs(got[worst] - want[worst]) <= bound[worst], f"sigmoid({deep[worst]!r}): got {got[worst]!r}, want {want[worst]!r}"
    assert (got[want > 2 * float(tiny)] > 0).all()
    # tanh of the cell state: with gates f = +inf, i = -inf (so c = c_prev exactly) and
    # o = +inf, h = tanh(c_prev).
    inf = np.full((1, h), np.inf, dtype)
    hh, c, _ = ops.lstm_cell_forward(np.concatenate([-inf, inf, np.zeros((1, h), dtype), inf], axis=1),
                                     x.reshape(1, h))
    np.testing.assert_array_equal(c[0], x)
    err = _rel_err(hh[0], t, 1e-300)
    assert err.max() <= REL_TOL[dtype], f"tanh(c) at c={x[err.argmax()]!r}: {err.max():.3g}"


def test_special_values_propagate(isa, dtype):
    nan, inf = np.nan, np.inf
    # one row, H = 4: unit 0 a NaN gate, 1 saturated gates, 2 zeros, 3 an inf cell state
    gates = np.array([[nan, inf, 0.0, 1.0,  # i
                       0.0, -inf, 0.0, 0.0,  # f
                       0.0, inf, 0.0, 0.0,  # g
                       0.0, inf, 0.0, 0.0]], dtype)  # o
    c_prev = np.array([[1.0, 5.0, 0.0, inf]], dtype)
    h, c, act = ops.lstm_cell_forward(gates, c_prev)
    assert np.isnan(act[0, 0]) and np.isnan(c[0, 0]) and np.isnan(h[0, 0])
    assert act[0, 1] == 1 and act[0, 5] == 0 and act[0, 9] == 1 and act[0, 13] == 1
    assert c[0, 1] == 1 and abs(h[0, 1] - np.tanh(1.0)) <= 2e-7   # f = 0 forgets c_prev = 5 exactly
    assert c[0, 2] == 0 and h[0, 2] == 0 and act[0, 2] == 0.5 and act[0, 10] == 0
    assert c[0, 3] == inf and h[0, 3] == 0.5               # sigmoid(0) * tanh(inf)
    dgates, dc_prev = ops.lstm_cell_backward(np.array([[nan, 1, 1, 1]], dtype), np.zeros((1, 4), dtype), act,
                                             c_prev, c)
    assert np.isnan(dgates[0, 0::4]).all() and np.isnan(dc_prev[0, 0])
    assert np.isfinite(dgates[0, 2::4]).all()
    gi = np.array([[nan, 0, 0, inf, 0, -inf]], dtype)  # H = 2: blocks r, z, n
    gh = np.array([[0, 0, 0, 0, 0, 0]], dtype)
    h, saved = ops.gru_cell_forward(gi, gh, np.array([[1.0, 2.0]], dtype))
    assert np.isnan(h[0, 0]) and np.isnan(saved[0, 0])
    assert saved[0, 3] == 1 and saved[0, 5] == -1 and h[0, 1] == 2   # z = 1 keeps h_prev
    # z = sigmoid(-95) is subnormal in float32 and sigmoid(-720) in float64, not 0, so
    # (1 - z) * n + z * h_prev with h_prev = -inf is -inf (PyTorch's value), not 0 * inf = NaN.
    deep = -95.0 if dtype == np.float32 else -720.0
    h, _ = ops.gru_cell_forward(np.array([[0.0, deep, 0.0]], dtype), np.zeros((1, 3), dtype),
                                np.array([[-inf]], dtype))
    assert h[0, 0] == -inf


def _lstm_inputs(rng, b, h, dtype):
    return ((rng.uniform(-3, 3, (b, 4 * h))).astype(dtype), rng.uniform(-2, 2, (b, h)).astype(dtype),
            rng.standard_normal((b, h)).astype(dtype), rng.standard_normal((b, h)).astype(dtype))


def _gru_inputs(rng, b, h, dtype):
    return (rng.uniform(-3, 3, (b, 3 * h)).astype(dtype), rng.uniform(-3, 3, (b, 3 * h)).astype(dtype),
            rng.uniform(-1, 1, (b, h)).astype(dtype), rng.standard_normal((b, h)).astype(dtype))


def _all_outputs(dtype, b=67, h=45):
    rng = np.random.default_rng(5)
    gates, c_prev, dh, dc = _lstm_inputs(rng, b, h, dtype)
    hh, c, act = ops.lstm_cell_forward(gates, c_prev)
    gi, gh, h_prev, dh2 = _gru_inputs(rng, b, h, dtype)
    h2, saved = ops.gru_cell_forward(gi, gh, h_prev)
    return (hh, c, act, *ops.lstm_cell_backward(dh, dc, act, c_prev, c), h2, saved,
            *ops.gru_cell_backward(dh2, saved, h_prev))


def test_thread_count_does_not_change_results(isa, dtype):
    prev, scale = dlkern.get_num_threads(), dlkern._C.get_min_work_scale()
    try:
        dlkern.set_num_threads(1)
        one = _all_outputs(dtype)
        dlkern.set_num_threads(2)
        dlkern._C.set_min_work_scale(0.0)
        before = dlkern._C.parallel_decisions()
        two = _all_outputs(dtype)
        assert dlkern._C.parallel_decisions() > before, "the 2-thread run never forked"
    finally:
        dlkern.set_num_threads(prev)
        dlkern._C.set_min_work_scale(scale)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def _strided(a):
    """The same values through a non-contiguous view (every other column of a wider array)."""
    base = np.full((a.shape[0], 2 * a.shape[1]), 7.0, a.dtype)
    base[:, ::2] = a
    return base[:, ::2]


@pytest.mark.parametrize("layout", ["strided", "fortran"])
def test_non_contiguous_inputs_are_accepted(layout, dtype):
    view = _strided if layout == "strided" else np.asfortranarray
    rng = np.random.default_rng(2)
    gates, c_prev, dh, dc = _lstm_inputs(rng, 5, 7, dtype)
    gi, gh, h_prev, _ = _gru_inputs(rng, 5, 7, dtype)
    h, c, act = ops.lstm_cell_forward(gates, c_prev)
    h2, saved = ops.gru_cell_forward(gi, gh, h_prev)
    calls = [(ops.lstm_cell_forward, (gates, c_prev)), (ops.lstm_cell_backward, (dh, dc, act, c_prev, c)),
             (ops.gru_cell_forward, (gi, gh, h_prev)), (ops.gru_cell_backward, (dh, saved, h_prev))]
    for fn, args in calls:
        views = [view(a) for a in args]
        assert not any(v.flags.c_contiguous for v in views)
        before = [v.copy() for v in views]
        for got, want in zip(fn(*views), fn(*args)):
            assert got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)
        for v, b in zip(views, before):
            np.testing.assert_array_equal(v, b)   # inputs are never written


def test_empty_shapes():
    z = np.zeros
    assert [a.shape for a in ops.lstm_cell_forward(z((0, 12)), z((0, 3)))] == [(0, 3), (0, 3), (0, 12)]
    assert [a.shape for a in ops.lstm_cell_forward(z((2, 0)), z((2, 0)))] == [(2, 0), (2, 0), (2, 0)]
    assert [a.shape for a in ops.gru_cell_backward(z((0, 2)), z((0, 8)), z((0, 2)))] == [(0, 6), (0, 6), (0, 2)]
    out = ops.lstm_cell_backward(*(z((3, 0)),) * 2, z((3, 0)), z((3, 0)), z((3, 0)))
    assert [a.shape for a in out] == [(3, 0), (3, 0)]


F32, F64 = np.float32, np.float64


def _a(*shape, dtype=F32):
    return np.zeros(shape, dtype)


BAD = [
    # (call, exception, words the message must hold)
    (lambda: ops.lstm_cell_forward(_a(2, 7), _a(2, 2)), ValueError, ["lstm_cell_forward", "gates", "4"]),
    (lambda: ops.lstm_cell_forward(_a(2, 8), _a(2, 3)), ValueError, ["lstm_cell_forward", "c_prev", "(2, 2)"]),
    (lambda: ops.lstm_cell_forward(_a(2, 8), _a(3, 2)), ValueError, ["lstm_cell_forward", "c_prev"]),
    (lambda: ops.lstm_cell_forward(_a(8), _a(2)), ValueError, ["lstm_cell_forward", "gates", "2-D"]),
    (lambda: ops.lstm_cell_forward(_a(1, 2, 8), _a(2, 2)), ValueError, ["lstm_cell_forward", "gates", "2-D"]),
    (lambda: ops.lstm_cell_forward(_a(2, 8), _a(2, 2, dtype=F64)), TypeError, ["lstm_cell_forward", "c_prev"]),
    (lambda: ops.lstm_cell_forward(_a(2, 8, dtype=np.int64), _a(2, 2)), TypeError, ["lstm_cell_forward", "gates"]),
    (lambda: ops.lstm_cell_forward(None, _a(2, 2)), TypeError, ["lstm_cell_forward", "gates"]),
    (lambda: ops.lstm_cell_forward(_a(2, 8), [[0.0, 0.0]] * 2), TypeError, ["lstm_cell_forward", "c_prev"]),
    (lambda: ops.lstm_cell_backward(_a(2, 2), _a(2, 2), _a(2, 6), _a(2, 2), _a(2, 2)), ValueError,
     ["lstm_cell_backward", "act", "(2, 8)"]),
    (lambda: ops.lstm_cell_backward(_a(2, 2), _a(2, 3), _a(2, 8), _a(2, 2), _a(2, 2)), ValueError,
     ["lstm_cell_backward", "dc"]),
    (lambda: ops.lstm_cell_backward(_a(2, 2), _a(2, 2), _a(2, 8), _a(2, 2), _a(1, 2)), ValueError,
     ["lstm_cell_backward", "c "]),
    (lambda: ops.lstm_cell_backward(_a(2, 2), _a(2, 2), _a(2, 8), _a(2, 2, dtype=F64), _a(2, 2)), TypeError,
     ["lstm_cell_backward", "c_prev"]),
    (lambda: ops.gru_cell_forward(_a(2, 7), _a(2, 7), _a(2, 2)), ValueError, ["gru_cell_forward", "gi", "3"]),
    (lambda: ops.gru_cell_forward(_a(2, 6), _a(2, 9), _a(2, 2)), ValueError, ["gru_cell_forward", "gh"]),
    (lambda: ops.gru_cell_forward(_a(2, 6), _a(2, 6), _a(2, 3)), ValueError, ["gru_cell_forward", "h_prev"]),
    (lambda: ops.gru_cell_forward(_a(2, 6), _a(2, 6, dtype=F64), _a(2, 2)), TypeError, ["gru_cell_forward", "gh"]),
    (lambda: ops.gru_cell_backward(_a(2, 2), _a(2, 6), _a(2, 2)), ValueError, ["gru_cell_backward", "saved"]),
    (lambda: ops.gru_cell_backward(_a(2, 2), _a(2, 8), _a(2)), ValueError, ["gru_cell_backward", "h_prev"]),
    (lambda: ops.gru_cell_backward(_a(2, 2, dtype=np.int16), _a(2, 8), _a(2, 2)), TypeError,
     ["gru_cell_backward", "dh"]),
]


@pytest.mark.parametrize("call, exc, words", BAD)
def test_bad_arguments_name_the_kernel_and_argument(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    assert msg.count(words[0]) == 1, f"the kernel's name is given once: {msg!r}"


def test_cuda_namespace_composes_the_cells_on_the_host_twin(dtype):
    """_C_cuda has no such kernels: the CUDA namespace computes them from its primitives."""
    assert "lstm_cell_forward" not in host_cuda.KERNELS and "gru_cell_backward" not in host_cuda.KERNELS
    dev = CUDADevice(0, module=host_cuda)
    rng = np.random.default_rng(9)
    gates, c_prev, dh, dc = _lstm_inputs(rng, 3, 5, dtype)
    gi, gh, h_prev, dh2 = _gru_inputs(rng, 3, 5, dtype)
    cpu_h, cpu_c, cpu_act = ops.lstm_cell_forward(gates, c_prev)
    cpu_saved = ops.gru_cell_forward(gi, gh, h_prev)[1]
    up = dev.from_host
    results = [
        (dev.lstm_cell_forward(up(gates), up(c_prev)), ops.lstm_cell_forward(gates, c_prev)),
        (dev.lstm_cell_backward(up(dh), up(dc), up(cpu_act), up(c_prev), up(cpu_c)),
         ops.lstm_cell_backward(dh, dc, cpu_act, c_prev, cpu_c)),
        (dev.gru_cell_forward(up(gi), up(gh), up(h_prev)), ops.gru_cell_forward(gi, gh, h_prev)),
        (dev.gru_cell_backward(up(dh2), up(cpu_saved), up(h_prev)), ops.gru_cell_backward(dh2, cpu_saved, h_prev)),
    ]
    tol = 2e-6 if dtype == np.float32 else 1e-14
    for got, want in results:
        assert len(got) == len(want)
        for g, w in zip(got, want):
            g = g.numpy()
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- PyTorch parity


def test_lstm_cell_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    b, h = 7, 13
    gates, c_prev, dh, dc = _lstm_inputs(rng, b, h, dtype)
    tg, tc = torch.from_numpy(gates).requires_grad_(), torch.from_numpy(c_prev).requires_grad_()
    tdt = tg.dtype
    # W_ih = I, W_hh = 0: PyTorch's gates are ours.
    th, tcn = torch.lstm_cell(tg, (torch.zeros(b, h, dtype=tdt), tc), torch.eye(4 * h, dtype=tdt),
                              torch.zeros(4 * h, h, dtype=tdt))
    dgates_t, dc_prev_t = torch.autograd.grad((th, tcn), (tg, tc), (torch.from_numpy(dh), torch.from_numpy(dc)))
    hh, c, act = ops.lstm_cell_forward(gates, c_prev)
    dgates, dc_prev = ops.lstm_cell_backward(dh, dc, act, c_prev, c)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for got, want in ((hh, th), (c, tcn), (dgates, dgates_t), (dc_prev, dc_prev_t)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=tol, atol=tol)


def test_gru_cell_matches_torch(dtype):
    """torch.gru_cell computes gh = h_prev W^T + b itself: its gradients w.r.t. b and W are
    sum(dgh) and dgh^T h_prev, and w.r.t. h_prev dh z + dgh W (our dh_prev plus the
    caller's matrix product)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    b, h = 6, 11
    gi, _, h_prev, dh = _gru_inputs(rng, b, h, dtype)
    w, bias = rng.uniform(-1, 1, (3 * h, h)).astype(dtype), rng.uniform(-1, 1, 3 * h).astype(dtype)
    gh = (h_prev @ w.T + bias).astype(dtype)
    t = [torch.from_numpy(a.copy()).requires_grad_() for a in (gi, h_prev, w, bias)]
    th = torch.gru_cell(t[0], t[1], torch.eye(3 * h, dtype=t[0].dtype), t[2], None, t[3])
    dgi_t, dhp_t, dw_t, db_t = torch.autograd.grad(th, t, torch.from_numpy(dh))
    hh, saved = ops.gru_cell_forward(gi, gh, h_prev)
    dgi, dgh, dh_prev = ops.gru_cell_backward(dh, saved, h_prev)
    tol = 5e-6 if dtype == np.float32 else 1e-13
    pairs = ((hh, th), (dgi, dgi_t), (dgh.sum(0), db_t), (dgh.T @ h_prev, dw_t), (dh_prev + dgh @ w, dhp_t))
    for got, want in pairs:
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_array_equal(saved[:, 3 * h:], gh[:, 2 * h:])   # gh_n is saved as given
