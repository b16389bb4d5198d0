"""PLACEHOLDER (issue 14): NumPy versions of the fused recurrent-cell kernels, so the
modules run before the C++ kernels land. The C++ binding (helper "rnnk") replaces this
file at merge; the names and signatures below are that binding's contract.

Gate orders are PyTorch's: LSTM (i, f, g, o), GRU (r, z, n). All arrays (B, k*H),
float32 or float64; results have the inputs' dtype."""

import numpy as np

__all__ = ["lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward"]


def _sigmoid(x):
    # 0.5 tanh(x / 2) + 0.5: no overflow for large |x|
    return np.tanh(x * 0.5) * 0.5 + 0.5


def lstm_cell_forward(gates, c_prev):
    """gates: (B, 4H) pre-activations; c_prev: (B, H). Returns (h, c, act), act (B, 4H) =
    [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)], c = f c_prev + i g, h = o tanh(c)."""
    H = c_prev.shape[1]
    act = _sigmoid(gates)
    act[:, 2 * H:3 * H] = np.tanh(gates[:, 2 * H:3 * H])
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    return h, c, act


def lstm_cell_backward(dh, dc, act, c_prev, c):
    """dh: (B, H) gradient of h; dc: (B, H) gradient reaching c from later steps. Returns
    (dgates (B, 4H) w.r.t. the pre-activations, dc_prev (B, H))."""
    H = c.shape[1]
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    tc = np.tanh(c)
    dct = dc + dh * o * (1 - tc * tc)
    dgates = np.empty_like(act)
    dgates[:, :H] = dct * g * i * (1 - i)
    dgates[:, H:2 * H] = dct * c_prev * f * (1 - f)
    dgates[:, 2 * H:3 * H] = dct * i * (1 - g * g)
    dgates[:, 3 * H:] = dh * tc * o * (1 - o)
    return dgates, dct * f


def gru_cell_forward(gi, gh, h_prev):
    """gi = x W_ih^T + b_ih, gh = h_prev W_hh^T + b_hh: (B, 3H); r = sigmoid(gi_r + gh_r),
    z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r gh_n), h = (1 - z) n + z h_prev.
    Returns (h, saved), saved (B, 4H) = [r, z, n, gh_n]."""
    H = h_prev.shape[1]
    saved = np.empty(gi.shape[:1] + (4 * H,), gi.dtype)
    rz = _sigmoid(gi[:, :2 * H] + gh[:, :2 * H])
    saved[:, :2 * H] = rz
    n = np.tanh(gi[:, 2 * H:] + rz[:, :H] * gh[:, 2 * H:])
    saved[:, 2 * H:3 * H] = n
    saved[:, 3 * H:] = gh[:, 2 * H:]
    z = rz[:, H:]
    return n + z * (h_prev - n), saved


def gru_cell_backward(dh, saved, h_prev):
    """Returns (dgi, dgh, dh_prev): gradients w.r.t. gi and gh (dgh_r = dgi_r, dgh_z = dgi_z,
    dgh_n = dgi_n r) and the direct part dh z of h_prev's gradient (the caller adds
    dgh @ W_hh)."""
    H = h_prev.shape[1]
    r, z, n, ghn = saved[:, :H], saved[:, H:2 * H], saved[:, 2 * H:3 * H], saved[:, 3 * H:]
    dn = dh * (1 - z) * (1 - n * n)
    dgi = np.empty(saved.shape[:1] + (3 * H,), saved.dtype)
    dgi[:, :H] = dn * ghn * r * (1 - r)
    dgi[:, H:2 * H] = dh * (h_prev - n) * z * (1 - z)
    dgi[:, 2 * H:] = dn
    dgh = dgi.copy()
    dgh[:, 2 * H:] *= r
    return dgi, dgh, dh * z
